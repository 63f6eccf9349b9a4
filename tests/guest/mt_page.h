/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest userspace access to the migtime page through the ivshmem device's
 * BAR2 sysfs resource file, shared by the guest programs. Seqlock-protected
 * reads and writes of the host area, plain access to the guest area.
 */
#ifndef MT_PAGE_H
#define MT_PAGE_H

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include "migtime_abi.h"

#define MT_NSEC_PER_SEC 1000000000LL
#define MT_KO "/lib/modules/migtime.ko"

/* The mapped page, or NULL. */
static volatile uint8_t *mt_page;

/* A host-area field of the mapped page, as a volatile lvalue of its own type. */
#define MT_HOST(f) \
	(*(volatile __typeof__(((struct migtime_host_area *)0)->f) *)(mt_page + \
		offsetof(struct migtime_host_area, f)))
/* A guest-area field of the mapped page. */
#define MT_GUEST(f) \
	(*(volatile __typeof__(((struct migtime_guest_area *)0)->f) *)(mt_page + \
		MIGTIME_GUEST_AREA_OFFSET + offsetof(struct migtime_guest_area, f)))

struct mt_host_view {
	uint64_t seq;
	int64_t delta, total;
	uint32_t flags;
};

static inline int mt_read_hex(const char *dir, const char *name, unsigned long *out)
{
	char p[512], v[32] = "";
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "r");
	if (!f)
		return -1;
	if (!fgets(v, sizeof(v), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	*out = strtoul(v, NULL, 0);
	return 0;
}

/*
 * Map the BAR2 of the first page device, ivshmem (1af4:1110) or QEMU's
 * -device migtime (1b36:0016); returns 0, or -1 with a message.
 */
static inline int mt_map_page(int writable)
{
	glob_t g;
	int fd = -1;

	if (glob("/sys/bus/pci/devices/*", 0, NULL, &g)) {
		fprintf(stderr, "no PCI devices\n");
		return -1;
	}
	for (size_t i = 0; i < g.gl_pathc && fd < 0; i++) {
		unsigned long v, d;
		char p[512];

		if (mt_read_hex(g.gl_pathv[i], "vendor", &v) ||
		    mt_read_hex(g.gl_pathv[i], "device", &d))
			continue;
		if (!(v == 0x1af4 && d == 0x1110) && !(v == 0x1b36 && d == 0x0016))
			continue;
		snprintf(p, sizeof(p), "%s/resource2", g.gl_pathv[i]);
		fd = open(p, writable ? O_RDWR | O_SYNC : O_RDONLY | O_SYNC);
		if (fd < 0) {
			fprintf(stderr, "open %s: %s\n", p, strerror(errno));
			globfree(&g);
			return -1;
		}
	}
	globfree(&g);
	if (fd < 0) {
		fprintf(stderr, "no page device (1af4:1110 or 1b36:0016)\n");
		return -1;
	}
	mt_page = mmap(NULL, MIGTIME_PAGE_BYTES, PROT_READ | (writable ? PROT_WRITE : 0),
		       MAP_SHARED, fd, 0);
	close(fd);
	if (mt_page == MAP_FAILED) {
		mt_page = NULL;
		fprintf(stderr, "mmap resource2: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* A consistent read of the host area; -1 if the seqcount never settles. */
static inline int mt_read_host(struct mt_host_view *h, long attempts)
{
	for (long i = 0; i < attempts; i++) {
		uint32_t c0 = MT_HOST(seq_count), c1;

		__sync_synchronize();
		h->seq = MT_HOST(migration_seq);
		h->delta = MT_HOST(tai_delta_ns);
		h->total = MT_HOST(tai_delta_total_ns);
		h->flags = MT_HOST(flags);
		__sync_synchronize();
		c1 = MT_HOST(seq_count);
		if (c0 == c1 && !(c0 & 1))
			return 0;
	}
	return -1;
}

/*
 * Play the host: publish one migration after the view *h (which the caller
 * read), seqlock-protected like a real host: count odd, fields, count even.
 * Compensated: flag set, no delta. Updates *h to what was written.
 */
static inline void mt_write_host(struct mt_host_view *h, int64_t delta, int compensated)
{
	uint32_t c = MT_HOST(seq_count);
	int64_t d = compensated ? 0 : delta;

	MT_HOST(seq_count) = c + 1;
	__sync_synchronize();
	MT_HOST(migration_seq) = h->seq + 1;
	MT_HOST(tai_delta_ns) = d;
	MT_HOST(tai_delta_total_ns) = h->total + d;
	MT_HOST(flags) = compensated ? MIGTIME_FLAG_COMPENSATED : 0;
	__sync_synchronize();
	MT_HOST(seq_count) = c + 2;
	h->seq += 1;
	h->delta = d;
	h->total += d;
	h->flags = compensated ? MIGTIME_FLAG_COMPENSATED : 0;
}

static inline int64_t mt_clock_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (int64_t)t.tv_sec * MT_NSEC_PER_SEC + t.tv_nsec;
}

/*
 * offset(A) - offset(B), e.g. CLOCK_REALTIME - CLOCK_MONOTONIC, read as
 * tightly as possible: the best of several B, A, B sandwiches (smallest
 * window), A minus the midpoint of the B reads.
 */
static inline int64_t mt_clock_offset(clockid_t a, clockid_t b)
{
	int64_t best_win = INT64_MAX, best = 0;

	for (int i = 0; i < 16; i++) {
		int64_t b0 = mt_clock_ns(b), av = mt_clock_ns(a), b1 = mt_clock_ns(b);

		if (b1 - b0 < best_win) {
			best_win = b1 - b0;
			best = av - (b0 + (b1 - b0) / 2);
		}
	}
	return best;
}

/*
 * A CLOCK_REALTIME timerfd an hour ahead with TFD_TIMER_CANCEL_ON_SET: its
 * read fails with ECANCELED once the clock was set. Returns the fd, or -1.
 */
static inline int mt_arm_cancel_on_set(void)
{
	struct itimerspec its = { 0 };
	int tfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);

	if (tfd < 0)
		return -1;
	its.it_value.tv_sec = mt_clock_ns(CLOCK_REALTIME) / MT_NSEC_PER_SEC + 3600;
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL)) {
		close(tfd);
		return -1;
	}
	return tfd;
}

/* Pretend NTP has synchronised us: STA_UNSYNC clear, small error bounds. */
static inline int mt_set_ntp_synced(void)
{
	struct timex tx = { 0 };

	tx.modes = ADJ_STATUS | ADJ_MAXERROR | ADJ_ESTERROR;
	tx.status = 0;
	tx.maxerror = 1000;
	tx.esterror = 1000;
	return adjtimex(&tx) < 0 ? -1 : 0;
}

/* Writes `val` to debugfs migtime/NAME (a test knob); 0, or -1 with errno. */
static inline int mt_debugfs_write(const char *name, const char *val)
{
	char p[128];
	FILE *f;
	int rc;

	snprintf(p, sizeof(p), "/sys/kernel/debug/migtime/%s", name);
	f = fopen(p, "w");
	if (!f)
		return -1;
	rc = fputs(val, f) < 0 ? -1 : 0;
	if (fclose(f))
		rc = -1;
	return rc;
}

/* A debugfs counter of the bound device (/sys/kernel/debug/migtime/NAME), or -1. */
static inline long long mt_debugfs_counter(const char *name)
{
	char p[128];
	long long v = -1;
	FILE *f;

	snprintf(p, sizeof(p), "/sys/kernel/debug/migtime/%s", name);
	f = fopen(p, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/*
 * The step method the loaded module must use: settimeofday when asked for
 * (step_method=2 in mt.params on the kernel command line: Rust module
 * parameters are not in sysfs) or when the kernel lacks the patch series'
 * export timekeeping_inject_realtime_offset (seen in /proc/kallsyms), else
 * inject.
 */
static inline unsigned int mt_expected_step_method(void)
{
	char line[4096];
	int has_inject = 0;
	FILE *f = fopen("/proc/cmdline", "r");

	if (f) {
		int forced = fgets(line, sizeof(line), f) && strstr(line, "step_method=2");

		fclose(f);
		if (forced)
			return MIGTIME_STEP_SETTIMEOFDAY;
	}
	f = fopen("/proc/kallsyms", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, " timekeeping_inject_realtime_offset\n")) {
			has_inject = 1;
			break;
		}
	if (f)
		fclose(f);
	return has_inject ? MIGTIME_STEP_INJECT : MIGTIME_STEP_SETTIMEOFDAY;
}

/* insmod MT_KO with PARAMS ("" for none): 0 or -errno. */
static inline int mt_insmod(const char *params)
{
	int fd = open(MT_KO, O_RDONLY | O_CLOEXEC), r;
	char all[512];

	if (fd < 0)
		return -errno;
	/* The test pages are ivshmem: opt in, as /init does (a later ivshmem=0 wins). */
	snprintf(all, sizeof(all), "ivshmem=1 %s", params);
	r = syscall(SYS_finit_module, fd, all, 0) ? -errno : 0;
	close(fd);
	return r;
}

/* rmmod migtime: 0 or -errno. */
static inline int mt_rmmod(void)
{
	return syscall(SYS_delete_module, "migtime", O_NONBLOCK) ? -errno : 0;
}

#endif /* MT_PAGE_H */
