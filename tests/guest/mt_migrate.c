// SPDX-License-Identifier: GPL-2.0
/*
 * mt_migrate - what a guest sees across a migration, with migtime loaded.
 *
 * DESTRUCTIVE: this test steps CLOCK_REALTIME (through the module) and sets
 * NTP state; run it only in a throwaway guest (as
 * tools/testing/selftests/timers keeps its destructive tests apart).
 *
 * For each hop it records the clocks, arms a TFD_TIMER_CANCEL_ON_SET timerfd,
 * marks NTP as synchronised, prints "# MIGTIME-READY mt_migrate" and waits
 * for the host to migrate the VM (or, with self=NS, writes the page itself
 * through the BAR2 sysfs resource file). Then it checks what migtime did:
 *
 *   expect=step    realtime stepped by the page's pending total (tolerance),
 *                  monotonic/boottime not stepped, timerfd ECANCELED,
 *                  STA_UNSYNC set and maxerror/esterror reset, event matches
 *   expect=notify  compensated: no step beyond the residual, but timerfd
 *                  ECANCELED and NTP reset all the same
 *   expect=refuse  an event whose outcome is a refusal; clock, timerfd and
 *                  NTP state untouched
 *   expect=none    no event at all within wait=SECS; nothing touched
 *
 * Options (key=value): expect=..., hops=K (default 1), wait=SECS (default
 * 120; guest time, which does not run during the blackout), tol_us=N
 * (default 100000), outcome=NAME (the exact outcome: a refusal's name, or
 * partial for expect=step), fault=partial (debugfs fault_partial_step: the
 * module's next read-then-set step lands short and its correction is
 * rejected; with once=, that partial step must not be applied again),
 * self=NS[/c] (write the page ourselves: +NS uncompensated, /c compensated),
 * once=SECS (expect=step|notify: after the event, no further event may come
 * within SECS; for host storms), retries=1 (then debugfs read_retries must
 * be > 0: the host rewrote the page while the module read it).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/timerfd.h>
#include <sys/timex.h>

#include "kselftest.h"
#include "mt_page.h"

#define NTP_PHASE_LIMIT_US 16000000L /* ((MAXPHASE / NSEC_PER_USEC) << 5) */

enum expect { EXPECT_STEP, EXPECT_NOTIFY, EXPECT_REFUSE, EXPECT_NONE };

static enum expect expect = EXPECT_STEP;
static int hops = 1;
static int wait_s = 120;
/*
 * A correctness bound, not a performance target: every stepping scenario
 * moves the clock by 1 s or more, so 100 ms still tells "stepped right" from
 * "not stepped", "stepped twice" or "wrong sign", while staying clear of the
 * read->set window, which on a loaded 2-core host running TCG guests can
 * reach milliseconds. The residual's size is measured by `make bench`.
 */
static long long tol_ns = 100000000;
static const char *want_outcome;
static long long self_ns;
static int self_write, self_compensated;
static int once_s, want_retries, fault_partial;

/*
 * The host area, or (expect=none only: a host that leaves the count odd is
 * one of the cases) an all-zero view with *readable cleared.
 */
static struct mt_host_view read_host(int *readable)
{
	struct mt_host_view h = { 0 };

	*readable = !mt_read_host(&h, 1000000);
	if (!*readable && expect != EXPECT_NONE)
		ksft_exit_fail_msg("page seqcount never settled\n");
	return h;
}

/* Play the host: one migration of +delta (or compensated), seqlock-protected. */
static void write_host(int64_t delta, int compensated)
{
	int readable;
	struct mt_host_view h = read_host(&readable);

	mt_write_host(&h, delta, compensated);
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];

		if (!strcmp(a, "expect=step"))
			expect = EXPECT_STEP;
		else if (!strcmp(a, "expect=notify"))
			expect = EXPECT_NOTIFY;
		else if (!strcmp(a, "expect=refuse"))
			expect = EXPECT_REFUSE;
		else if (!strcmp(a, "expect=none"))
			expect = EXPECT_NONE;
		else if (!strncmp(a, "hops=", 5))
			hops = atoi(a + 5);
		else if (!strncmp(a, "wait=", 5))
			wait_s = atoi(a + 5);
		else if (!strncmp(a, "tol_us=", 7))
			tol_ns = atoll(a + 7) * 1000;
		else if (!strncmp(a, "once=", 5))
			once_s = atoi(a + 5);
		else if (!strcmp(a, "retries=1"))
			want_retries = 1;
		else if (!strcmp(a, "fault=partial"))
			fault_partial = 1;
		else if (!strncmp(a, "outcome=", 8))
			want_outcome = a + 8;
		else if (!strncmp(a, "self=", 5)) {
			char *end;

			self_write = 1;
			self_ns = strtoll(a + 5, &end, 0);
			self_compensated = !strcmp(end, "/c");
		} else
			ksft_exit_fail_msg("unknown argument '%s'\n", a);
	}
	if (hops < 1 || wait_s < 1 || tol_ns <= 0)
		ksft_exit_fail_msg("bad hops/wait/tol_us\n");
}

static const char *outcome_name(uint32_t o)
{
	switch (o) {
	case MIGTIME_OUTCOME_STEPPED: return "stepped";
	case MIGTIME_OUTCOME_NOTIFIED: return "notified";
	case MIGTIME_OUTCOME_REFUSED_SEQ_BACKWARDS: return "refused-seq-backwards";
	case MIGTIME_OUTCOME_REFUSED_OVER_LIMIT: return "refused-over-limit";
	case MIGTIME_OUTCOME_REFUSED_INCONSISTENT: return "refused-inconsistent";
	case MIGTIME_OUTCOME_FAILED: return "failed";
	case MIGTIME_OUTCOME_REFUSED_RATE: return "refused-rate";
	case MIGTIME_OUTCOME_PARTIAL: return "partial";
	default: return "unknown";
	}
}

static int is_refusal(uint32_t o)
{
	return o == MIGTIME_OUTCOME_REFUSED_SEQ_BACKWARDS ||
	       o == MIGTIME_OUTCOME_REFUSED_OVER_LIMIT ||
	       o == MIGTIME_OUTCOME_REFUSED_INCONSISTENT || o == MIGTIME_OUTCOME_REFUSED_RATE;
}

/* Drain events already queued for this fd (non-blocking). */
static void drain(int dev)
{
	struct migtime_event ev;

	while (read(dev, &ev, sizeof(ev)) == (ssize_t)sizeof(ev))
		;
}

/* The module's line of /proc/interrupts (doorbell mode), as a message. */
static void print_irq_line(void)
{
	char line[512];
	FILE *f = fopen("/proc/interrupts", "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "migtime"))
			ksft_print_msg("interrupts: %s", line);
	fclose(f);
}

/* once=/retries=: no second event for this hop, and the retry counter. */
static void after_event(int dev, int n, int got)
{
	if (once_s) {
		struct pollfd pfd = { .fd = dev, .events = POLLIN };
		struct migtime_event ev2 = { 0 };
		int more = poll(&pfd, 1, once_s * 1000) == 1 && (pfd.revents & POLLIN) &&
			   read(dev, &ev2, sizeof(ev2)) == (ssize_t)sizeof(ev2);

		print_irq_line();
		ksft_test_result(got && !more,
				 "hop%d exactly one event: no further event within %d s%s\n", n,
				 once_s, more ? " (got another)" : "");
		if (more)
			ksft_print_msg("hop %d: extra event %llu seq %llu outcome %s intended %lld\n", n,
				       (unsigned long long)ev2.event,
				       (unsigned long long)ev2.migration_seq,
				       outcome_name(ev2.outcome), (long long)ev2.intended_ns);
	}
	if (want_retries) {
		long long r = mt_debugfs_counter("read_retries"), b = mt_debugfs_counter("read_busy");

		ksft_print_msg("hop %d: debugfs read_retries %lld read_busy %lld events %lld\n", n, r,
			       b, mt_debugfs_counter("events"));
		ksft_test_result(r > 0, "hop%d module saw the host writing (read_retries %lld > 0)\n",
				 n, r);
	}
}

/* What one hop saw: the page, the event, the clocks, the timerfd, NTP. */
struct hop_view {
	struct mt_host_view before, after;
	int readable_before, readable_after;
	struct migtime_event ev;
	int got, cancelled;
	struct timex tx;
	/* realtime - monotonic and boottime - monotonic, before and after. */
	int64_t off_rm0, off_bm0, off_rm1, off_bm1, dstep;
};

/*
 * Arms the timerfd and NTP state, announces READY, waits for the event (or
 * writes the page first with self=) and reads everything back into v.
 */
static void observe_hop(int dev, int n, struct hop_view *v)
{
	struct pollfd pfd = { .fd = dev, .events = POLLIN };
	uint64_t ticks;
	int tfd, rc;
	ssize_t r;

	drain(dev);
	v->before = read_host(&v->readable_before);

	tfd = mt_arm_cancel_on_set();
	if (tfd < 0)
		ksft_exit_fail_msg("cancel-on-set timerfd: %s\n", strerror(errno));
	if (mt_set_ntp_synced())
		ksft_exit_fail_msg("adjtimex(set synced): %s\n", strerror(errno));

	v->off_rm0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	v->off_bm0 = mt_clock_offset(CLOCK_BOOTTIME, CLOCK_MONOTONIC);

	/* The host pairs this with its own clock: guest-host offset before. */
	printf("# MIGTIME-CLOCK %lld %lld\n", (long long)mt_clock_ns(CLOCK_REALTIME),
	       (long long)mt_clock_ns(CLOCK_MONOTONIC));
	printf("# MIGTIME-READY mt_migrate hop %d seq %llu total %lld\n", n,
	       (unsigned long long)v->before.seq, (long long)v->before.total);
	fflush(stdout);
	if (fault_partial && mt_debugfs_write("fault_partial_step", "1"))
		ksft_exit_fail_msg("debugfs fault_partial_step: %s\n", strerror(errno));
	if (self_write)
		write_host(self_ns, self_compensated);

	rc = poll(&pfd, 1, wait_s * 1000);
	v->got = rc == 1 && (pfd.revents & POLLIN);
	if (v->got) {
		r = read(dev, &v->ev, sizeof(v->ev));
		if (r != (ssize_t)sizeof(v->ev))
			ksft_exit_fail_msg("read /dev/migtime: %zd (%s)\n", r, strerror(errno));
	}
	v->after = read_host(&v->readable_after);
	v->off_rm1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	v->off_bm1 = mt_clock_offset(CLOCK_BOOTTIME, CLOCK_MONOTONIC);
	v->dstep = v->off_rm1 - v->off_rm0;
	v->cancelled = read(tfd, &ticks, sizeof(ticks)) < 0 && errno == ECANCELED;
	close(tfd);
	memset(&v->tx, 0, sizeof(v->tx));
	if (adjtimex(&v->tx) < 0)
		ksft_exit_fail_msg("adjtimex(read): %s\n", strerror(errno));
}

static void print_hop(int n, const struct hop_view *v)
{
	if (!v->readable_before || !v->readable_after)
		ksft_print_msg("hop %d: page unreadable (seqcount odd) %s the wait\n", n,
			       v->readable_before ? "after" : "before");
	ksft_print_msg("hop %d: page seq %llu->%llu total %lld->%lld flags %#x; event: %s seq %llu outcome %s intended %lld applied %lld residual %lld; realtime-monotonic moved %lld ns\n",
		       n, (unsigned long long)v->before.seq, (unsigned long long)v->after.seq,
		       (long long)v->before.total, (long long)v->after.total, v->after.flags,
		       v->got ? "yes" : "no", (unsigned long long)v->ev.migration_seq,
		       v->got ? outcome_name(v->ev.outcome) : "-", (long long)v->ev.intended_ns,
		       (long long)v->ev.applied_ns, (long long)v->ev.residual_ns,
		       (long long)v->dstep);
}

/*
 * The method the kernel allows, and its exactness: inject applies exactly
 * the step (a compensated migration: a 1 ns nudge); settimeofday only
 * within the tolerance.
 */
static void step_method_result(int n, const struct hop_view *v)
{
	const struct migtime_event *ev = &v->ev;
	unsigned int m = mt_expected_step_method();
	int exact = expect == EXPECT_STEP ? ev->residual_ns == 0
					  : ev->applied_ns == 1 && ev->residual_ns == 1;

	ksft_test_result(v->got && ev->timing.step_method == m && ev->timing.sets >= 1 &&
			 (m != MIGTIME_STEP_INJECT || (exact && ev->timing.sets == 1)),
			 "hop%d step method %u (want %u), %u set(s), residual %lld ns%s\n", n,
			 ev->timing.step_method, m, ev->timing.sets, (long long)ev->residual_ns,
			 m == MIGTIME_STEP_INJECT ? " (inject: exact)" : "");
}

/* expect=step|notify: the event, the step, the timerfd and NTP reset. */
static void check_acted(int dev, int n, const struct hop_view *v)
{
	const struct migtime_event *ev = &v->ev;
	int64_t want = v->after.total - v->before.total;
	int got = v->got;

	ksft_test_result(got, "hop%d event received within %d s\n", n, wait_s);
	ksft_test_result(got && ev->migration_seq == v->after.seq && v->after.seq > v->before.seq,
			 "hop%d event seq matches the page (%llu)\n", n,
			 (unsigned long long)v->after.seq);
	const char *want_name = want_outcome ? want_outcome
					     : expect == EXPECT_STEP ? "stepped" : "notified";

	ksft_test_result(got && !strcmp(outcome_name(ev->outcome), want_name),
			 "hop%d outcome is %s (got %s)\n", n, want_name,
			 got ? outcome_name(ev->outcome) : "no event");
	ksft_test_result(got && ev->intended_ns == want,
			 "hop%d intended step equals the page's pending total (%lld ns)\n", n,
			 (long long)want);
	ksft_test_result(llabs(v->dstep - want) <= tol_ns,
			 "hop%d realtime stepped by the pending total within %lld us (off by %lld ns)\n",
			 n, tol_ns / 1000, (long long)(v->dstep - want));
	ksft_test_result(llabs(v->off_bm1 - v->off_bm0) <= tol_ns,
			 "hop%d monotonic and boottime not stepped (boottime-monotonic moved %lld ns)\n",
			 n, (long long)(v->off_bm1 - v->off_bm0));
	ksft_test_result(got && llabs(ev->residual_ns) <= tol_ns &&
			 ev->residual_ns == ev->applied_ns - ev->intended_ns,
			 "hop%d residual %lld ns within %lld us\n", n, (long long)ev->residual_ns,
			 tol_ns / 1000);
	step_method_result(n, v);
	ksft_test_result(v->cancelled, "hop%d cancel-on-set timerfd read returns ECANCELED\n", n);
	ksft_test_result((v->tx.status & STA_UNSYNC) && v->tx.maxerror >= NTP_PHASE_LIMIT_US &&
			 v->tx.esterror == NTP_PHASE_LIMIT_US,
			 "hop%d NTP state reset (status %#x maxerror %ld esterror %ld)\n", n,
			 v->tx.status, v->tx.maxerror, v->tx.esterror);
	after_event(dev, n, got);
}

/* expect=refuse|none: clock, timerfd and NTP state untouched. */
static void check_untouched(int n, const struct hop_view *v)
{
	ksft_test_result(llabs(v->dstep) <= tol_ns, "hop%d realtime not stepped (moved %lld ns)\n",
			 n, (long long)v->dstep);
	ksft_test_result(!v->cancelled, "hop%d cancel-on-set timerfd not cancelled\n", n);
	ksft_test_result(!(v->tx.status & STA_UNSYNC),
			 "hop%d NTP state untouched (status %#x maxerror %ld esterror %ld)\n", n,
			 v->tx.status, v->tx.maxerror, v->tx.esterror);
}

static void hop(int dev, int n)
{
	struct hop_view v = { 0 };

	observe_hop(dev, n, &v);
	print_hop(n, &v);
	switch (expect) {
	case EXPECT_STEP:
	case EXPECT_NOTIFY:
		check_acted(dev, n, &v);
		break;
	case EXPECT_REFUSE:
		ksft_test_result(v.got && is_refusal(v.ev.outcome) &&
				 (!want_outcome || !strcmp(want_outcome, outcome_name(v.ev.outcome))),
				 "hop%d event is a refusal%s%s (got %s)\n", n,
				 want_outcome ? ": " : "", want_outcome ? want_outcome : "",
				 v.got ? outcome_name(v.ev.outcome) : "no event");
		check_untouched(n, &v);
		break;
	case EXPECT_NONE:
		ksft_test_result(!v.got, "hop%d no event within %d s\n", n, wait_s);
		check_untouched(n, &v);
		break;
	}
}

int main(int argc, char **argv)
{
	int per_hop, dev;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	ksft_print_header();
	per_hop = expect == EXPECT_REFUSE ? 4 : expect == EXPECT_NONE ? 4 : 10 + !!once_s + want_retries;
	ksft_set_plan(hops * per_hop);

	if (mt_map_page(self_write))
		ksft_exit_fail_msg("cannot map the migtime page\n");
	dev = open("/dev/migtime", O_RDONLY | O_NONBLOCK);
	if (dev < 0)
		ksft_exit_fail_msg("open /dev/migtime: %s\n", strerror(errno));
	for (int n = 1; n <= hops; n++)
		hop(dev, n);
	close(dev);
	ksft_finished();
}
