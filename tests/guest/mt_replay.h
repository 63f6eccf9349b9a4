/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mt_replay's host and its checks: writing any values at all into the host
 * area, reloading the module at a chosen page, waiting for the event a write
 * produced, and the kernel log's refusal lines. Only mt_replay.c includes it.
 */
#ifndef MT_REPLAY_H
#define MT_REPLAY_H

#include <poll.h>
#include <stdbool.h>
#include <sys/klog.h>
#include <sys/stat.h>

#include "kselftest.h"
#include "mt_page.h"

#define DEV "/dev/migtime"
#define MS 1000000LL
#define TOL_NS (10 * MS)

static char params[256] = "poll_ms=5";
static bool wrap_forward;
static int ev_fd = -1;

struct counts {
	long long events, steps, refusals;
};

static struct counts counts(void)
{
	return (struct counts){ mt_debugfs_counter("events"), mt_debugfs_counter("steps"),
				mt_debugfs_counter("refusals") };
}

/* Writes the host area (seqlock protocol), any values at all. */
static void put(uint64_t seq, int64_t delta, int64_t total)
{
	uint32_t c = MT_HOST(seq_count);

	if (c & 1)
		c++;
	MT_HOST(seq_count) = c + 1;
	__sync_synchronize();
	MT_HOST(migration_seq) = seq;
	MT_HOST(tai_delta_ns) = delta;
	MT_HOST(tai_delta_total_ns) = total;
	MT_HOST(flags) = 0;
	__sync_synchronize();
	MT_HOST(seq_count) = c + 2;
}

static void page(struct mt_host_view *h)
{
	if (mt_read_host(h, 1000000))
		ksft_exit_fail_msg("page seqcount never settled\n");
}

static void open_dev(void)
{
	struct migtime_event ev;

	for (int i = 0; i < 200 && ev_fd < 0; i++) {
		ev_fd = open(DEV, O_RDONLY | O_NONBLOCK);
		if (ev_fd < 0)
			usleep(10000);
	}
	if (ev_fd < 0)
		ksft_exit_fail_msg("open %s: %s\n", DEV, strerror(errno));
	while (read(ev_fd, &ev, sizeof(ev)) > 0)
		;
}

/*
 * rmmod + insmod: the module re-baselines at the page as it is at load; with
 * write, the page is first set to (seq, delta, total) while it is unloaded.
 */
static void reload_at(bool write, uint64_t seq, int64_t delta, int64_t total)
{
	int r;

	if (ev_fd >= 0)
		close(ev_fd);
	ev_fd = -1;
	r = mt_rmmod();
	if (r && r != -ENOENT)
		ksft_exit_fail_msg("rmmod: %s\n", strerror(-r));
	if (write)
		put(seq, delta, total);
	r = mt_insmod(params);
	if (r)
		ksft_exit_fail_msg("insmod %s: %s\n", params, strerror(-r));
	open_dev();
}

static void reload(void)
{
	reload_at(false, 0, 0, 0);
}

/*
 * After a page write: the event the module published for it, if any. Waits
 * up to 1 s (200 poll periods at poll_ms=5) for one; no event is also an
 * answer (a page equal to the baseline is "nothing changed").
 */
static bool wait_event(struct migtime_event *ev)
{
	struct pollfd pfd = { .fd = ev_fd, .events = POLLIN };
	bool got = false;

	if (poll(&pfd, 1, 1000) == 1) {
		/* Let a second, unexpected event (a double action) arrive too. */
		usleep(100000);
		while (read(ev_fd, ev, sizeof(*ev)) == (ssize_t)sizeof(*ev))
			got = true;
	}
	return got;
}

static void show(const char *what, bool got, const struct migtime_event *ev)
{
	if (got)
		ksft_print_msg("%s: event %llu seq=%llu outcome=%u intended_ns=%lld applied_ns=%lld\n",
			       what, (unsigned long long)ev->event,
			       (unsigned long long)ev->migration_seq, ev->outcome,
			       (long long)ev->intended_ns, (long long)ev->applied_ns);
	else
		ksft_print_msg("%s: no event\n", what);
}

static bool near(int64_t got, int64_t want)
{
	return llabs(got - want) <= TOL_NS;
}

static bool stepped(bool got, const struct migtime_event *ev, uint64_t seq, int64_t ns)
{
	return got && ev->outcome == MIGTIME_OUTCOME_STEPPED && ev->migration_seq == seq &&
	       ev->intended_ns == ns;
}

static bool refused(bool got, const struct migtime_event *ev, uint64_t seq)
{
	return got && ev->migration_seq == seq && ev->outcome >= MIGTIME_OUTCOME_REFUSED_SEQ_BACKWARDS &&
	       ev->outcome <= MIGTIME_OUTCOME_REFUSED_INCONSISTENT;
}

/* The kernel log has a "refused seq=SEQ " line after the marker. */
static bool log_refused(const char *marker, uint64_t seq)
{
	int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	char *log, *p, want[64];
	bool found = false;

	if (size <= 0)
		return false;
	log = calloc(1, size + 1);
	if (!log || klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, size) < 0) {
		free(log);
		return false;
	}
	p = strstr(log, marker);
	snprintf(want, sizeof(want), "refused seq=%llu ", (unsigned long long)seq);
	found = p && strstr(p, want);
	free(log);
	return found;
}

static void kmsg(const char *s)
{
	int fd = open("/dev/kmsg", O_WRONLY);

	if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		ksft_exit_fail_msg("/dev/kmsg: %s\n", strerror(errno));
	close(fd);
}

#endif /* MT_REPLAY_H */
