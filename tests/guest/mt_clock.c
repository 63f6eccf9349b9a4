// SPDX-License-Identifier: GPL-2.0
/*
 * mt_clock - the guest's view of a migration, for `make demo` and `make bench`.
 *
 * Not a pass/fail test of migtime: it works with or without the module and
 * reports what happened. It arms a TFD_TIMER_CANCEL_ON_SET timerfd, marks NTP
 * as synchronised, then prints a clock sample every period_ms:
 *
 *   # MIGTIME-CLOCK <CLOCK_REALTIME ns> <CLOCK_MONOTONIC ns>
 *
 * (the host pairs each with its own clock when it reads the line), prints
 * "# MIGTIME-READY mt_clock" after before_ms, keeps sampling for after_ms of
 * guest time (which does not run during the blackout), and ends with
 *
 *   # MIGTIME-RESULT timerfd_cancelled=0|1 sta_unsync=0|1 maxerror_us=N
 *     event=0|1 outcome=N intended_ns=N applied_ns=N residual_ns=N
 *
 * Two checks keep the sampler honest: CLOCK_MONOTONIC never went back from
 * one sample to the next, and CLOCK_REALTIME ended ahead of where it
 * started (the run spans before_ms + after_ms of guest time, more than any
 * step a demo or bench configuration makes backwards).
 *
 * Options (key=value): period_ms (100), before_ms (1500), after_ms (6000).
 */
#define _GNU_SOURCE
#include <sys/timerfd.h>
#include <sys/timex.h>

#include "kselftest.h"
#include "mt_page.h"

int main(int argc, char **argv)
{
	long period_ms = 100, before_ms = 1500, after_ms = 6000;
	struct migtime_event ev = { 0 };
	struct timex tx = { 0 };
	int64_t start, ready_at = 0, prev_mono = 0, first_real = 0, last_real = 0;
	uint64_t ticks;
	int tfd, dev, cancelled, got = 0, samples = 0, mono_back = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "period_ms=", 10))
			period_ms = atol(argv[i] + 10);
		else if (!strncmp(argv[i], "before_ms=", 10))
			before_ms = atol(argv[i] + 10);
		else if (!strncmp(argv[i], "after_ms=", 9))
			after_ms = atol(argv[i] + 9);
		else
			ksft_exit_fail_msg("unknown argument '%s'\n", argv[i]);
	}
	if (period_ms < 1 || before_ms < 0 || after_ms < 0)
		ksft_exit_fail_msg("bad period_ms/before_ms/after_ms\n");
	ksft_print_header();
	ksft_set_plan(2);

	tfd = mt_arm_cancel_on_set();
	if (tfd < 0)
		ksft_exit_fail_msg("cancel-on-set timerfd: %s\n", strerror(errno));
	if (mt_set_ntp_synced())
		ksft_exit_fail_msg("adjtimex: %s\n", strerror(errno));
	/* Opened before the migration, so an event after it is "new" for us. */
	dev = open("/dev/migtime", O_RDONLY | O_NONBLOCK);
	if (dev >= 0)
		while (read(dev, &ev, sizeof(ev)) == (ssize_t)sizeof(ev))
			;

	start = mt_clock_ns(CLOCK_MONOTONIC);
	for (;;) {
		int64_t mono = mt_clock_ns(CLOCK_MONOTONIC);
		int64_t real = mt_clock_ns(CLOCK_REALTIME);

		printf("# MIGTIME-CLOCK %lld %lld\n", (long long)real, (long long)mono);
		if (samples++ && mono < prev_mono) {
			mono_back++;
			ksft_print_msg("CLOCK_MONOTONIC went back %lld ns\n",
				       (long long)(prev_mono - mono));
		}
		if (samples == 1)
			first_real = real;
		prev_mono = mono;
		last_real = real;
		if (!ready_at && mono - start >= before_ms * 1000000LL) {
			printf("# MIGTIME-READY mt_clock\n");
			ready_at = mono;
		}
		if (ready_at && mono - ready_at >= after_ms * 1000000LL)
			break;
		usleep(period_ms * 1000);
	}

	cancelled = read(tfd, &ticks, sizeof(ticks)) < 0 && errno == ECANCELED;
	memset(&tx, 0, sizeof(tx));
	adjtimex(&tx);
	memset(&ev, 0, sizeof(ev));
	if (dev >= 0)
		got = read(dev, &ev, sizeof(ev)) == (ssize_t)sizeof(ev);
	printf("# MIGTIME-RESULT timerfd_cancelled=%d sta_unsync=%d maxerror_us=%ld event=%d outcome=%u intended_ns=%lld applied_ns=%lld residual_ns=%lld\n",
	       cancelled, !!(tx.status & STA_UNSYNC), tx.maxerror, got, ev.outcome,
	       (long long)ev.intended_ns, (long long)ev.applied_ns, (long long)ev.residual_ns);
	ksft_test_result(!mono_back, "CLOCK_MONOTONIC never went back (%d samples)\n", samples);
	ksft_test_result(last_real > first_real,
			 "CLOCK_REALTIME advanced over the run (by %lld ns)\n",
			 (long long)(last_real - first_real));
	ksft_finished();
}
