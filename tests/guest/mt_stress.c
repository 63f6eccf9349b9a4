// SPDX-License-Identifier: GPL-2.0
/*
 * mt_stress - readers of /dev/migtime on every CPU while the host migrates the
 * guest and then publishes many updates back to back, ringing the doorbell
 * after each (harness: --bad-page publish-storm, doorbell mode, 4 vCPUs).
 *
 * Not destructive beyond what the host does (the module steps the clock).
 * Needs the module loaded (doorbell mode) and the host's storm.
 *
 * Before READY: on each CPU one reader thread (pinned with sched_setaffinity)
 * with its own fd, plus, on each CPU, a second thread that shares one fd with
 * the second thread of the next CPU (two threads, one cursor). Each blocks in
 * read() and records every event it gets until the run is over.
 * Then it waits until the page has the migration's and the storm's updates
 * (seq >= start + 1 + updates) and the module acked the last one, plus 2 s
 * (past the 1 s safety-net poll), and checks, from the kernel log since a
 * marker ("migtime: event N seq=S stepped intended_ns= applied_ns="), the
 * debugfs counters and what the readers saw:
 *   - the event lines are numbered N, N+1, ... without gaps and their
 *     migration_seq strictly increase: each page acted on once, in order;
 *   - debugfs events grew by the number of event lines (pages acted on), no
 *     refusal (the host is honest, only fast), steps = events;
 *   - the intended steps add up to the page's total change (the host's
 *     Touts: nothing lost, nothing doubled);
 *   - CLOCK_REALTIME - CLOCK_MONOTONIC moved by the sum of the applied steps;
 *   - every reader's events have strictly increasing event numbers and
 *     migration_seq, and each equals the kernel log's event of that number
 *     (an older event never replaces a newer one in the hub);
 *   - two threads sharing an fd never both get the same event.
 *
 * Options: updates=N (storm updates the host publishes, default 2000).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/klog.h>

#include "kselftest.h"
#include "mt_page.h"

#define DEV "/dev/migtime"
#define MAXCPU 16
#define MAXEV 4096
#define MAXLOG 4096

struct reader {
	pthread_t th;
	int cpu, fd, shared;
	int n;
	struct migtime_event ev[MAXEV];
	int overflow, errors;
};

static struct reader rd[2 * MAXCPU];
static volatile int stop;

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(r->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		r->errors++;
	while (!stop) {
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		struct migtime_event e;

		if (poll(&pfd, 1, 100) != 1)
			continue;
		if (read(r->fd, &e, sizeof(e)) != (ssize_t)sizeof(e)) {
			if (errno != EAGAIN)
				r->errors++;
			continue;
		}
		if (r->n < MAXEV)
			r->ev[r->n++] = e;
		else
			r->overflow++;
	}
	return NULL;
}

struct logev {
	unsigned long long event, seq;
	char what[32];
	long long intended, applied;
};

static struct logev lg[MAXLOG];
static int nlog;

/* What the run measured before and after the migration and the storm. */
struct run {
	long updates, ncpu;
	int nreaders;
	long long ev0, ev1, st0, st1, rf0, rf1;
	int64_t off0, off1, sum_applied, sum_intended;
	struct mt_host_view h0, h;
};

static void parse_args(int argc, char **argv, struct run *s)
{
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "updates=", 8))
			s->updates = atol(argv[i] + 8);
		else
			ksft_exit_fail_msg("unknown argument '%s'\n", argv[i]);
	}
}

/* Readers: one own-fd thread per CPU, then one per CPU sharing fds in pairs. */
static void start_readers(struct run *s)
{
	s->nreaders = 2 * s->ncpu;
	for (int i = 0; i < s->nreaders; i++) {
		struct reader *r = &rd[i];

		r->cpu = i % s->ncpu;
		if (i < s->ncpu) {
			r->fd = open(DEV, O_RDONLY | O_NONBLOCK);
		} else if ((i - s->ncpu) % 2 == 0) {
			r->fd = open(DEV, O_RDONLY | O_NONBLOCK);
			r->shared = 1;
		} else {
			r->fd = rd[i - 1].fd;
			r->shared = 1;
		}
		if (r->fd < 0)
			ksft_exit_fail_msg("open %s: %s\n", DEV, strerror(errno));
		if (pthread_create(&r->th, NULL, reader_main, r))
			ksft_exit_fail_msg("pthread_create\n");
	}
}

/* The kernel log marker the checks read from. */
static void mark_kernel_log(void)
{
	int fd = open("/dev/kmsg", O_WRONLY);

	if (fd < 0 || write(fd, "mt_stress: start\n", 17) != 17)
		ksft_exit_fail_msg("/dev/kmsg: %s\n", strerror(errno));
	close(fd);
}

/*
 * The migration and the storm: up to 3 minutes (TCG, 4 vCPUs on 2 cores),
 * then 2 s past the safety-net poll; the readers stop.
 */
static void wait_for_storm(struct run *s)
{
	for (int i = 0;; i++) {
		if (mt_read_host(&s->h, 1000000) == 0 &&
		    s->h.seq >= s->h0.seq + 1 + (uint64_t)s->updates && MT_GUEST(ack_seq) == s->h.seq)
			break;
		if (i > 18000)
			ksft_exit_fail_msg("no migration + storm acked within 180 s (page seq %llu, ack %llu)\n",
					   (unsigned long long)s->h.seq,
					   (unsigned long long)MT_GUEST(ack_seq));
		usleep(10000);
	}
	sleep(2);
	s->off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	s->ev1 = mt_debugfs_counter("events");
	s->st1 = mt_debugfs_counter("steps");
	s->rf1 = mt_debugfs_counter("refusals");
	stop = 1;
	for (int i = 0; i < s->nreaders; i++)
		pthread_join(rd[i].th, NULL);
}

/*
 * The kernel log's event lines since the marker into lg[], summing the
 * steps; returns how many break the numbering or the seq order.
 */
static int read_kernel_log(struct run *s)
{
	int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	char *log = size > 0 ? calloc(1, size + 1) : NULL, *p;
	int order_bad = 0;

	if (!log || klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, size) < 0)
		ksft_exit_fail_msg("klogctl: %s\n", strerror(errno));
	p = strstr(log, "mt_stress: start");
	if (!p)
		ksft_exit_fail_msg("the start marker fell out of the kernel log buffer\n");
	for (; (p = strstr(p, "migtime: event ")); p++) {
		struct logev e;
		long long res;

		if (sscanf(p, "migtime: event %llu seq=%llu %31s intended_ns=%lld applied_ns=%lld residual_ns=%lld",
			   &e.event, &e.seq, e.what, &e.intended, &e.applied, &res) != 6)
			continue;
		if (nlog >= MAXLOG)
			ksft_exit_fail_msg("more than %d events\n", MAXLOG);
		if (nlog && (e.event != lg[nlog - 1].event + 1 || e.seq <= lg[nlog - 1].seq)) {
			order_bad++;
			ksft_print_msg("log: event %llu seq %llu after event %llu seq %llu\n", e.event,
				       e.seq, lg[nlog - 1].event, lg[nlog - 1].seq);
		}
		lg[nlog++] = e;
		s->sum_applied += e.applied;
		s->sum_intended += e.intended;
	}
	free(log);
	return order_bad;
}

/* Reader i's events that are out of order or unlike the kernel log's. */
static int reader_bad(int i, int shown)
{
	const struct reader *r = &rd[i];
	int bad = 0;

	for (int k = 0; k < r->n; k++) {
		const struct migtime_event *e = &r->ev[k];
		const struct logev *l = NULL;

		for (int j = 0; j < nlog; j++)
			if (lg[j].event == e->event)
				l = &lg[j];
		if ((k && (e->event <= r->ev[k - 1].event ||
			   e->migration_seq <= r->ev[k - 1].migration_seq)) ||
		    !l || l->seq != e->migration_seq || l->intended != e->intended_ns ||
		    l->applied != e->applied_ns) {
			if (shown + bad++ < 10)
				ksft_print_msg("reader %d (cpu %d): event %llu seq %llu%s\n", i, r->cpu,
					       (unsigned long long)e->event,
					       (unsigned long long)e->migration_seq,
					       l ? " out of order or unlike the log's" : " not in the log");
		}
	}
	return bad;
}

/* Events both threads sharing reader i's fd got (i the second of the pair). */
static int shared_duplicates(int i)
{
	const struct reader *r = &rd[i], *a = &rd[i - 1];
	int dup = 0;

	for (int k = 0; k < r->n; k++)
		for (int j = 0; j < a->n; j++)
			if (a->ev[j].event == r->ev[k].event)
				dup++;
	return dup;
}

static void print_reader_counts(int nreaders)
{
	char counts[256] = "";
	size_t o = 0;

	for (int i = 0; i < nreaders && o < sizeof(counts) - 8; i++)
		o += snprintf(counts + o, sizeof(counts) - o, "%d ", rd[i].n);
	ksft_print_msg("events per reader: %s\n", counts);
}

/* The log, debugfs, the page total and the clock: the first four results. */
static void check_kernel_side(struct run *s)
{
	int order_bad = read_kernel_log(s);

	ksft_print_msg("page seq %llu -> %llu, total %lld -> %lld; %d events acted on (kernel log), debugfs events %lld -> %lld, steps %lld -> %lld, refusals %lld -> %lld\n",
		       (unsigned long long)s->h0.seq, (unsigned long long)s->h.seq,
		       (long long)s->h0.total, (long long)s->h.total, nlog, s->ev0, s->ev1, s->st0,
		       s->st1, s->rf0, s->rf1);
	ksft_test_result(nlog > 0 && !order_bad,
			 "events numbered without gaps, migration_seq strictly increasing (%d events)\n",
			 nlog);
	ksft_test_result(s->ev1 - s->ev0 == nlog && s->st1 - s->st0 == nlog && s->rf1 == s->rf0,
			 "debugfs: events +%lld = pages acted on %d, steps +%lld, refusals +%lld\n",
			 s->ev1 - s->ev0, nlog, s->st1 - s->st0, s->rf1 - s->rf0);
	ksft_test_result(s->sum_intended == s->h.total - s->h0.total,
			 "intended steps add up to the host's total change (%lld of %lld ns)\n",
			 (long long)s->sum_intended, (long long)(s->h.total - s->h0.total));
	/*
	 * The module measures each applied step as the change of the same
	 * offset, so the two agree up to our two offset reads: 6-10 ns
	 * measured. 100 µs absorbs TCG jitter in those reads and stays well
	 * below the smallest wrong answer (a step of 1 ms + i µs applied twice
	 * or lost; a stale read of the clock once made it 21 ms).
	 */
	ksft_test_result(llabs(s->off1 - s->off0 - s->sum_applied) <= 100000,
			 "realtime moved by the sum of the applied steps (moved %lld ns, applied %lld ns)\n",
			 (long long)(s->off1 - s->off0), (long long)s->sum_applied);
}

/* What the readers saw: the last three results. */
static void check_readers(struct run *s)
{
	int rd_bad = 0, shared_dup = 0, errors = 0;

	for (int i = 0; i < s->nreaders; i++) {
		errors += rd[i].errors + rd[i].overflow;
		rd_bad += reader_bad(i, rd_bad);
		if (rd[i].shared && (i - s->ncpu) % 2 == 1)
			shared_dup += shared_duplicates(i);
	}
	print_reader_counts(s->nreaders);
	ksft_test_result(!rd_bad && !errors && rd[0].n > 0,
			 "every reader's events are in order and match the kernel log (%d bad, %d errors)\n",
			 rd_bad, errors);
	ksft_test_result(!shared_dup, "threads sharing an fd never got the same event (%d duplicates)\n",
			 shared_dup);
	ksft_test_result(MT_GUEST(ack_seq) == s->h.seq && MT_GUEST(applied_total_ns) == s->h.total,
			 "the module ends in step with the last page (ack seq %llu, total %lld)\n",
			 (unsigned long long)MT_GUEST(ack_seq), (long long)MT_GUEST(applied_total_ns));
}

int main(int argc, char **argv)
{
	struct run s = { .updates = 2000, .ncpu = sysconf(_SC_NPROCESSORS_ONLN) };

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv, &s);
	ksft_print_header();
	ksft_set_plan(7);
	if (s.ncpu < 2 || s.ncpu > MAXCPU)
		ksft_exit_fail_msg("needs 2..%d CPUs, has %ld\n", MAXCPU, s.ncpu);
	if (mt_map_page(0))
		ksft_exit_fail_msg("cannot map the migtime page\n");
	if (mt_read_host(&s.h0, 1000000))
		ksft_exit_fail_msg("page seqcount never settled\n");

	start_readers(&s);
	mark_kernel_log();
	s.ev0 = mt_debugfs_counter("events");
	s.st0 = mt_debugfs_counter("steps");
	s.rf0 = mt_debugfs_counter("refusals");
	s.off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	ksft_print_msg("%d readers on %ld CPUs; page seq %llu total %lld; waiting for 1 migration + %ld updates\n",
		       s.nreaders, s.ncpu, (unsigned long long)s.h0.seq, (long long)s.h0.total,
		       s.updates);
	printf("# MIGTIME-READY mt_stress\n");

	wait_for_storm(&s);
	check_kernel_side(&s);
	check_readers(&s);
	ksft_finished();
}
