// SPDX-License-Identifier: GPL-2.0
/*
 * mt_header - the host breaks the page header after the module bound.
 *
 * DESTRUCTIVE (steps the clock once). Playing the host through the BAR2
 * sysfs resource file: corrupt the magic, publish a migration (+1 s) while it
 * is corrupt, wait; then restore the magic. While the header is bad the
 * module must ignore the page (no event, no step) and say so once in the
 * kernel log; once it is good again the pending migration is applied
 * exactly once.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/klog.h>

#include "kselftest.h"
#include "mt_page.h"

#define DELTA_NS 1000000000LL
/* Correctness bound (see mt_migrate.c): the step is 1 s. */
#define TOL_NS 100000000LL
#define LOG_LINE "page header no longer valid (BadMagic("

static char klog[1 << 20];

static int klog_count(const char *needle)
{
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, klog, sizeof(klog) - 1), c = 0;

	if (n < 0)
		return -1;
	klog[n] = 0;
	for (char *p = klog; (p = strstr(p, needle)); p++)
		c++;
	return c;
}

int main(void)
{
	struct pollfd pfd;
	struct migtime_event ev;
	struct mt_host_view h;
	int64_t off0, off1, off2;
	uint32_t magic;
	int dev, got;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ksft_print_header();
	ksft_set_plan(7);
	if (mt_map_page(1) || mt_read_host(&h, 1000000))
		ksft_exit_fail_msg("cannot map or read the page\n");
	dev = open("/dev/migtime", O_RDONLY | O_NONBLOCK);
	if (dev < 0)
		ksft_exit_fail_msg("open /dev/migtime: %s\n", strerror(errno));
	pfd = (struct pollfd){ .fd = dev, .events = POLLIN };

	/* Break the header (under the seqlock, as a host would), then publish. */
	magic = MT_HOST(magic);
	MT_HOST(seq_count) = MT_HOST(seq_count) + 1;
	__sync_synchronize();
	MT_HOST(magic) = magic ^ 0xffffffffU;
	__sync_synchronize();
	MT_HOST(seq_count) = MT_HOST(seq_count) + 1;
	off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	mt_write_host(&h, DELTA_NS, 0);

	got = poll(&pfd, 1, 2000) == 1;
	off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	ksft_test_result(!got, "no event while the header is bad\n");
	ksft_test_result(llabs(off1 - off0) < TOL_NS, "realtime not stepped (moved %lld ns)\n",
			 (long long)(off1 - off0));
	ksft_test_result(klog_count(LOG_LINE) == 1, "kernel log says so exactly once (%d)\n",
			 klog_count(LOG_LINE));

	/* Restore it: the pending migration must now be applied, once. */
	MT_HOST(seq_count) = MT_HOST(seq_count) + 1;
	__sync_synchronize();
	MT_HOST(magic) = magic;
	__sync_synchronize();
	MT_HOST(seq_count) = MT_HOST(seq_count) + 1;
	got = poll(&pfd, 1, 5000) == 1 && read(dev, &ev, sizeof(ev)) == (ssize_t)sizeof(ev);
	off2 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	ksft_test_result(got && ev.migration_seq == h.seq && ev.outcome == MIGTIME_OUTCOME_STEPPED,
			 "after the header is restored: one stepped event for seq %llu\n",
			 (unsigned long long)h.seq);
	ksft_test_result(got && ev.intended_ns == DELTA_NS, "intended step is the published delta\n");
	ksft_test_result(llabs(off2 - off0 - DELTA_NS) < TOL_NS,
			 "realtime stepped by the delta (off by %lld ns)\n",
			 (long long)(off2 - off0 - DELTA_NS));
	ksft_test_result(poll(&pfd, 1, 1000) == 0, "no second event\n");
	close(dev);
	ksft_finished();
}
