// SPDX-License-Identifier: GPL-2.0
/*
 * mt_readers - userspace abuse of /dev/migtime.
 *
 * DESTRUCTIVE: writes the migtime page itself through the ivshmem BAR2 sysfs
 * resource file (playing the host: two small uncompensated steps), so the
 * module steps CLOCK_REALTIME; at the end it unbinds and rebinds the driver.
 * Needs the module loaded and bound (plain or doorbell mode), no host action.
 *
 *  - 32 threads blocked in read() and 32 in poll() (each on its own fd): one
 *    page update wakes all of them and each gets the same 64-byte event;
 *  - the step is in the kernel log: one "clock step:" line with its seq, the
 *    applied and intended deltas and the method (no audit record exists for a
 *    step made from a kernel thread);
 *  - a fresh fd returns the latest event at once, exactly once (the same event
 *    number as the waiters got), then EAGAIN: a reader that starts late learns
 *    of the last migration and tells it from a new one by its event number;
 *  - read with a 1 MiB buffer returns exactly 64 bytes, 1 and 63 bytes are
 *    EINVAL, O_NONBLOCK without a new event is EAGAIN, poll reports nothing;
 *  - write (O_RDWR fd) EINVAL, ioctl ENOTTY, mmap ENODEV;
 *  - close() of an fd another thread is blocked reading returns at once, and
 *    that reader still gets the next event;
 *  - unbinding the device wakes a blocked reader with ENODEV, then reads are
 *    ENODEV and poll reports POLLHUP|POLLERR; rebinding brings /dev/migtime
 *    back.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "kselftest.h"
#include "mt_page.h"

#define WAITERS 64 /* the first half read(), the second half poll() */
#define DEV "/dev/migtime"
#define DRV "/sys/bus/pci/drivers/migtime"

#include "mt_waiters.h"

/* Play the host: one migration of +delta, seqlock-protected. */
static struct mt_host_view write_host(int64_t delta)
{
	struct mt_host_view h;

	if (mt_read_host(&h, 1000000))
		ksft_exit_fail_msg("page seqcount never settled\n");
	mt_write_host(&h, delta, 0);
	return h;
}

static int open_dev(int flags)
{
	int fd = open(DEV, flags);

	if (fd < 0)
		ksft_exit_fail_msg("open %s: %s\n", DEV, strerror(errno));
	return fd;
}

/* Consumes whatever is readable on a fresh fd (the latest event). */
static void consume(int fd)
{
	struct migtime_event ev;
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (read(fd, &ev, sizeof(ev)) > 0)
		;
	fcntl(fd, F_SETFL, fl);
}

/* The PCI address the driver is bound to, from DRV/<address> links. */
static int bound_device(char *addr, size_t len)
{
	DIR *d = opendir(DRV);
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "0000:", 5) && !found) {
			snprintf(addr, len, "%s", e->d_name);
			found = 1;
		}
	closedir(d);
	return found;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	ssize_t r;

	if (fd < 0)
		return -1;
	r = write(fd, s, strlen(s));
	close(fd);
	return r == (ssize_t)strlen(s) ? 0 : -1;
}

/* The kernel log has the step line of @ev. */
static void step_is_logged(const struct migtime_event *ev)
{
	static char klog[1 << 20];
	char want[256];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, klog, sizeof(klog) - 1);

	klog[n < 0 ? 0 : n] = 0;
	snprintf(want, sizeof(want),
		 "migtime: clock step: CLOCK_REALTIME moved by %lld ns (intended %lld ns) for migration_seq %llu, method %s, event %llu\n",
		 (long long)ev->applied_ns, (long long)ev->intended_ns,
		 (unsigned long long)ev->migration_seq,
		 ev->timing.step_method == MIGTIME_STEP_INJECT ? "inject" : "settimeofday",
		 (unsigned long long)ev->event);
	ksft_test_result(strstr(klog, want) != NULL, "the kernel log has the step: %s", want);
}

/* A fresh fd returns the latest event at once, exactly once, then EAGAIN. */
static void fresh_fd_gets_latest_once(const struct migtime_event *latest)
{
	struct migtime_event late, again;
	int fd = open_dev(O_RDONLY | O_NONBLOCK);
	ssize_t r = read(fd, &late, sizeof(late));
	ssize_t r2 = read(fd, &again, sizeof(again));
	int err = errno;

	ksft_test_result(r == MIGTIME_EVENT_BYTES && late.event == latest->event && r2 == -1 &&
				 err == EAGAIN,
			 "a fresh fd returns the latest event (event %llu) once, then EAGAIN (%zd, %zd)\n",
			 r == MIGTIME_EVENT_BYTES ? (unsigned long long)late.event : 0ULL, r, r2);
	close(fd);
}

/* 1-3: 64 waiters, one update; returns the event they got. */
static struct migtime_event many_waiters_one_update(void)
{
	struct migtime_event ev0;
	struct mt_host_view h;
	int woken, same = 0, errs = 0;
	int64_t t0, dt;

	for (int i = 0; i < WAITERS; i++) {
		w[i].use_poll = i >= WAITERS / 2;
		w[i].fd = open_dev(w[i].use_poll ? O_RDONLY | O_NONBLOCK : O_RDONLY);
		consume(w[i].fd);
	}
	if (!start_waiters(0, WAITERS))
		ksft_exit_fail_msg("waiters never blocked\n");
	ksft_print_msg("%d waiters asleep (%d in read, %d in poll); updating the page\n", WAITERS,
		       WAITERS / 2, WAITERS / 2);
	t0 = mt_clock_ns(CLOCK_MONOTONIC);
	h = write_host(7000000);
	woken = join_waiters(0, WAITERS, 10);
	dt = mt_clock_ns(CLOCK_MONOTONIC) - t0;
	ksft_test_result(woken == WAITERS, "all %d waiters woken by one update (%d, in %lld ms)\n",
			 WAITERS, woken, (long long)(dt / 1000000));
	for (int i = 0; i < WAITERS; i++)
		same += w[i].n == MIGTIME_EVENT_BYTES && !memcmp(w[i].buf, w[0].buf, MIGTIME_EVENT_BYTES);
	for (int i = 0; i < WAITERS; i++)
		if (w[i].n != MIGTIME_EVENT_BYTES && errs++ < 4)
			ksft_print_msg("waiter %d (%s): %zd (%s)\n", i, w[i].use_poll ? "poll" : "read",
				       w[i].n, strerror(w[i].err));
	ksft_test_result(same == WAITERS, "each waiter got the same 64-byte event (%d of %d)\n",
			 same, WAITERS);
	memcpy(&ev0, w[0].buf, sizeof(ev0));
	ksft_test_result(ev0.migration_seq == h.seq && ev0.intended_ns == h.delta &&
			 ev0.outcome == MIGTIME_OUTCOME_STEPPED,
			 "the event is the update (seq %llu, intended %lld ns, outcome %u)\n",
			 (unsigned long long)ev0.migration_seq, (long long)ev0.intended_ns, ev0.outcome);
	for (int i = 0; i < WAITERS; i++)
		close(w[i].fd);
	return ev0;
}

/* 6-10: buffer sizes, non-blocking, poll; @ev0 is the latest event. */
static void buffer_sizes(const struct migtime_event *ev0)
{
	static unsigned char big[1 << 20];
	int fd = open_dev(O_RDONLY | O_NONBLOCK), ok, t;
	ssize_t r;

	memset(big, 0xaa, sizeof(big));
	r = read(fd, big, 1);
	ksft_test_result(r == -1 && errno == EINVAL, "read with a 1-byte buffer is EINVAL (%zd, %s)\n",
			 r, r < 0 ? strerror(errno) : "-");
	r = read(fd, big, MIGTIME_EVENT_V1_BYTES - 1);
	ksft_test_result(r == -1 && errno == EINVAL,
			 "read with a 63-byte buffer is EINVAL (%zd, %s)\n", r,
			 r < 0 ? strerror(errno) : "-");
	{
		/* ABI compatibility: a buffer too small for the whole record gets the v1 prefix. */
		int fd2 = open_dev(O_RDONLY | O_NONBLOCK);
		unsigned char v1[MIGTIME_EVENT_BYTES];

		memset(v1, 0xaa, sizeof(v1));
		r = read(fd2, v1, MIGTIME_EVENT_BYTES - 1);
		ok = r == MIGTIME_EVENT_V1_BYTES && !memcmp(v1, ev0, MIGTIME_EVENT_V1_BYTES) &&
		     v1[MIGTIME_EVENT_V1_BYTES] == 0xaa;
		ksft_test_result(ok, "read with a 127-byte buffer returns the 64-byte v1 prefix (%zd)\n", r);
		close(fd2);
	}
	r = read(fd, big, sizeof(big));
	ok = r == MIGTIME_EVENT_BYTES && !memcmp(big, ev0, sizeof(*ev0));
	for (size_t i = MIGTIME_EVENT_BYTES; ok && i < sizeof(big); i++)
		ok = big[i] == 0xaa;
	ksft_test_result(ok, "read with a 1 MiB buffer returns exactly %d bytes, the rest untouched (%zd)\n",
			 MIGTIME_EVENT_BYTES, r);
	r = read(fd, big, sizeof(big));
	ksft_test_result(r == -1 && errno == EAGAIN,
			 "O_NONBLOCK read without a new event is EAGAIN (%zd, %s)\n", r,
			 r < 0 ? strerror(errno) : "-");
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		t = poll(&p, 1, 100);
		ksft_test_result(t == 0, "poll without a new event reports nothing (%d, revents %#x)\n",
				 t, p.revents);
	}
	close(fd);
}

/* 11-13: write, ioctl, mmap refused. */
static void refusals(void)
{
	unsigned char one = 0;
	int rw = open(DEV, O_RDWR), t;
	ssize_t r;
	void *m;

	if (rw < 0) {
		ksft_test_result(errno == EACCES || errno == EPERM,
				 "write refused: open O_RDWR fails (%s)\n", strerror(errno));
		rw = open_dev(O_RDONLY);
	} else {
		r = write(rw, &one, 1);
		ksft_test_result(r == -1 && errno == EINVAL, "write is EINVAL (%zd, %s)\n", r,
				 r < 0 ? strerror(errno) : "-");
	}
	t = ioctl(rw, _IO('m', 1), 0);
	ksft_test_result(t == -1 && errno == ENOTTY, "ioctl is ENOTTY (%d, %s)\n", t,
			 t < 0 ? strerror(errno) : "-");
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, rw, 0);
	ksft_test_result(m == MAP_FAILED && errno == ENODEV, "mmap is ENODEV (%s)\n",
			 m == MAP_FAILED ? strerror(errno) : "mapped!");
	if (m != MAP_FAILED)
		munmap(m, 4096);
	close(rw);
}

/* 14-15: close while another thread is blocked in read. */
static void close_while_blocked(void)
{
	struct migtime_event ev;
	struct mt_host_view h;
	int woken, t;
	int64_t t0, dt;

	w[WAITERS].use_poll = 0;
	w[WAITERS].fd = open_dev(O_RDONLY);
	consume(w[WAITERS].fd);
	if (!start_waiters(WAITERS, WAITERS + 1))
		ksft_exit_fail_msg("reader never blocked\n");
	t0 = mt_clock_ns(CLOCK_MONOTONIC);
	t = close(w[WAITERS].fd);
	dt = mt_clock_ns(CLOCK_MONOTONIC) - t0;
	/* The bug this guards against is a close that waits for the reader (forever). */
	ksft_test_result(t == 0 && dt < 10000000000LL,
			 "close while another thread is blocked in read returns (%d, %lld us)\n",
			 t, (long long)(dt / 1000));
	h = write_host(3000000);
	woken = join_waiters(WAITERS, WAITERS + 1, 10);
	memcpy(&ev, w[WAITERS].buf, sizeof(ev));
	ksft_test_result(woken == 1 && w[WAITERS].n == MIGTIME_EVENT_BYTES &&
			 ev.migration_seq == h.seq,
			 "the reader of the closed fd gets the next event and returns (%zd, seq %llu)\n",
			 w[WAITERS].n, (unsigned long long)ev.migration_seq);
}

/* 16-18: unbind wakes blocked readers with ENODEV; rebind. */
static void unbind_and_rebind(void)
{
	static unsigned char big[4096];
	struct waiter *x = &w[WAITERS + 1];
	char addr[300];
	int fd, woken, ok;
	ssize_t r;

	if (!bound_device(addr, sizeof(addr)))
		ksft_exit_fail_msg("no device bound to %s\n", DRV);
	x->use_poll = 0;
	x->fd = open_dev(O_RDONLY);
	consume(x->fd);
	fd = open_dev(O_RDONLY | O_NONBLOCK);
	consume(fd);
	if (!start_waiters(WAITERS + 1, WAITERS + 2))
		ksft_exit_fail_msg("reader never blocked\n");
	if (write_file(DRV "/unbind", addr))
		ksft_exit_fail_msg("unbind %s: %s\n", addr, strerror(errno));
	woken = join_waiters(WAITERS + 1, WAITERS + 2, 10);
	ksft_test_result(woken == 1 && x->n == -1 && x->err == ENODEV,
			 "unbind wakes a blocked reader with ENODEV (%zd, %s)\n", x->n,
			 x->n < 0 ? strerror(x->err) : "-");
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, 0);

		r = read(fd, big, sizeof(big));
		ksft_test_result(r == -1 && errno == ENODEV && pr == 1 &&
				 (p.revents & (POLLHUP | POLLERR)) == (POLLHUP | POLLERR),
				 "after unbind: read ENODEV (%zd, %s), poll POLLHUP|POLLERR (%#x)\n", r,
				 r < 0 ? strerror(errno) : "-", p.revents);
	}
	close(fd);
	close(x->fd);
	ok = !write_file(DRV "/bind", addr);
	fd = ok ? open(DEV, O_RDONLY | O_NONBLOCK) : -1;
	ksft_test_result(ok && fd >= 0, "rebind %s: %s is back\n", addr, DEV);
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	struct migtime_event ev0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ksft_print_header();
	ksft_set_plan(19);
	if (mt_map_page(1))
		ksft_exit_fail_msg("cannot map the migtime page\n");

	ev0 = many_waiters_one_update();
	/* 4-5: the step is logged; a fresh fd gets the latest event at once, once. */
	step_is_logged(&ev0);
	fresh_fd_gets_latest_once(&ev0);
	buffer_sizes(&ev0);
	refusals();
	close_while_blocked();
	unbind_and_rebind();
	ksft_finished();
}
