// SPDX-License-Identifier: GPL-2.0
/*
 * mt_replay - a hostile or buggy host that replays, rewinds, jumps, resets
 * and wraps migration_seq: the guest acts on each migration_seq at most once.
 *
 * DESTRUCTIVE: plays the host through the ivshmem BAR2 sysfs resource file
 * (writes the host area with the seqlock protocol, like a real host), so the
 * module steps CLOCK_REALTIME; reloads /lib/modules/migtime.ko between cases
 * (a reload re-baselines at the page as it is). Needs mt.load=1; leaves the
 * module loaded.
 *
 * Cases (seq S, total T: the page when the case starts):
 *   replay  (S+1, +1 s), (S, T), (S+1, +1 s) again: steps once (+1 s), the
 *           rewind is refused visibly (refusals counter, a refused event on
 *           /dev/migtime, a "refused seq=" kernel log line), the replay of
 *           S+1 is not applied again.
 *   jump    (S+5, T+500 ms): +500 ms once (a jump applies the total);
 *           (S+3, T+200 ms): refused, the baseline stays at S+5;
 *           (S+6, T+600 ms): +100 ms, not +400 ms.
 *   reset   the host restarts its count: (0, 0), (1, +100 ms), (2, +200 ms),
 *           all below the baseline: refused, no step; after a module reload
 *           (re-baseline at (2, +200 ms)), (3, +300 ms) steps +100 ms once.
 *   reset-past  baseline (4, T+400 ms) (page written while unloaded, then
 *           loaded); the host restarts its count and plays its history
 *           again, counting past the baseline, no reload: (0, T), (1, T+100 ms),
 *           (2, ..), (3, ..) refused, (4, T+400 ms) nothing new; (5, T+500 ms)
 *           steps +100 ms exactly once (rewriting it: nothing), and from then
 *           on migrations apply normally: (6, T+700 ms) steps +200 ms once.
 *   wrap    baseline at seq 2^64-1 (page written while unloaded, then
 *           loaded); (0, T+200 ms): wrap=refuse (the default, docs/abi.md:
 *           the sequence does not wrap) expects a refusal and no step;
 *           wrap=forward expects +200 ms once.
 *
 * Every case also checks that CLOCK_REALTIME moved (against
 * CLOCK_MONOTONIC) by exactly the steps it expects: ±10 ms. The largest
 * step residual measured in this suite is 13.6 ms, and only with a doorbell
 * storm overlapping the step (docs/threat-model.md); polling without storms
 * has measured under 0.1 ms. 10 ms is far below the smallest wrong answer
 * here (a replayed or re-applied step is 100 ms or more).
 *
 * Options: wrap=refuse|forward, params=STRING (module parameters for the
 * reloads, commas for spaces; default "poll_ms=5").
 */
#define _GNU_SOURCE
#include "mt_replay.h"

static void case_replay(void)
{
	struct migtime_event e1, e2, e3;
	struct mt_host_view h;
	struct counts c0, c2, c3;
	bool g1, g2, g3;
	int64_t off0, off1;

	reload();
	kmsg("mt_replay: replay\n");
	page(&h);
	c0 = counts();
	off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	put(h.seq + 1, 1000 * MS, h.total + 1000 * MS);
	g1 = wait_event(&e1);
	show("replay: (S+1, +1 s)", g1, &e1);
	put(h.seq, 0, h.total);
	g2 = wait_event(&e2);
	show("replay: (S, T)", g2, &e2);
	c2 = counts();
	put(h.seq + 1, 1000 * MS, h.total + 1000 * MS);
	g3 = wait_event(&e3);
	show("replay: (S+1, +1 s) again", g3, &e3);
	c3 = counts();
	off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);

	ksft_test_result(stepped(g1, &e1, h.seq + 1, 1000 * MS),
			 "replay: the first (S+1, +1 s) is stepped by 1 s\n");
	ksft_test_result(refused(g2, &e2, h.seq) && c2.refusals == c0.refusals + 1 &&
				 log_refused("mt_replay: replay", h.seq),
			 "replay: the rewind to (S, T) is refused visibly (event, refusals %lld -> %lld, kernel log)\n",
			 c0.refusals, c2.refusals);
	ksft_test_result(!(g3 && e3.outcome == MIGTIME_OUTCOME_STEPPED) && c3.steps == c0.steps + 1,
			 "replay: the replayed (S+1, +1 s) is not applied again (steps %lld -> %lld)\n",
			 c0.steps, c3.steps);
	ksft_test_result(near(off1 - off0, 1000 * MS),
			 "replay: realtime moved by +1 s once (moved %lld ns)\n",
			 (long long)(off1 - off0));
}

static void case_jump(void)
{
	struct migtime_event e1, e2, e3;
	struct mt_host_view h;
	struct counts c0, c3;
	bool g1, g2, g3;
	int64_t off0, off1;

	reload();
	kmsg("mt_replay: jump\n");
	page(&h);
	c0 = counts();
	off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	put(h.seq + 5, 300 * MS, h.total + 500 * MS);
	g1 = wait_event(&e1);
	show("jump: (S+5, T+500 ms)", g1, &e1);
	put(h.seq + 3, 100 * MS, h.total + 200 * MS);
	g2 = wait_event(&e2);
	show("jump: (S+3, T+200 ms)", g2, &e2);
	put(h.seq + 6, 100 * MS, h.total + 600 * MS);
	g3 = wait_event(&e3);
	show("jump: (S+6, T+600 ms)", g3, &e3);
	c3 = counts();
	off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);

	ksft_test_result(stepped(g1, &e1, h.seq + 5, 500 * MS),
			 "jump: a jump of 5 applies the total's change once (+500 ms)\n");
	ksft_test_result(refused(g2, &e2, h.seq + 3) && log_refused("mt_replay: jump", h.seq + 3),
			 "jump: back to S+3 is refused visibly\n");
	ksft_test_result(stepped(g3, &e3, h.seq + 6, 100 * MS) && c3.steps == c0.steps + 2,
			 "jump: S+6 steps by its own 100 ms, not by the rewound baseline's 400 ms (steps %lld -> %lld)\n",
			 c0.steps, c3.steps);
	ksft_test_result(near(off1 - off0, 600 * MS),
			 "jump: realtime moved by +600 ms in all (moved %lld ns)\n",
			 (long long)(off1 - off0));
}

static void case_reset(void)
{
	struct migtime_event e[3], e4;
	struct mt_host_view h;
	struct counts c0, c3, c4;
	bool g[3], g4, all_refused = true, no_step;
	int64_t off0, off1;

	reload();
	kmsg("mt_replay: reset\n");
	page(&h);
	if (h.seq < 3)
		ksft_exit_fail_msg("reset: needs a baseline above 2 (the cases before leave 7), seq %llu\n",
				   (unsigned long long)h.seq);
	c0 = counts();
	off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	for (int i = 0; i < 3; i++) {
		char what[64];

		put(i, i ? 100 * MS : 0, i * 100 * MS);
		g[i] = wait_event(&e[i]);
		snprintf(what, sizeof(what), "reset: (%d, %d ms)", i, i * 100);
		show(what, g[i], &e[i]);
		all_refused = all_refused && refused(g[i], &e[i], i);
	}
	c3 = counts();
	no_step = c3.steps == c0.steps;
	for (int i = 0; i < 3; i++)
		no_step = no_step && !(g[i] && e[i].outcome == MIGTIME_OUTCOME_STEPPED);
	ksft_test_result(all_refused && c3.refusals >= c0.refusals + 1 &&
				 log_refused("mt_replay: reset", 0),
			 "reset: a host counting again from 0 below the baseline is refused visibly (refusals %lld -> %lld)\n",
			 c0.refusals, c3.refusals);
	ksft_test_result(no_step, "reset: nothing stepped before the re-baseline (steps %lld -> %lld)\n",
			 c0.steps, c3.steps);

	/* An explicit re-baseline: reload the module at (2, +200 ms). */
	reload();
	c3 = counts();
	put(3, 100 * MS, 300 * MS);
	g4 = wait_event(&e4);
	show("reset: after reload, (3, +300 ms)", g4, &e4);
	c4 = counts();
	off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	ksft_test_result(stepped(g4, &e4, 3, 100 * MS) && c4.steps == c3.steps + 1,
			 "reset: after a reload (re-baseline) the next migration steps by its delta once\n");
	ksft_test_result(near(off1 - off0, 100 * MS),
			 "reset: realtime moved by +100 ms in all (moved %lld ns)\n",
			 (long long)(off1 - off0));
}

static void case_reset_past(void)
{
	enum { B = 4 }; /* the baseline's sequence */
	struct migtime_event e[B + 1], e5, e5r, e6;
	struct mt_host_view h;
	struct counts c0, c1, c2, c3, c4;
	bool g[B + 1], g5, g5r, g6, all_refused = true;
	int64_t t0, off0, off1;

	page(&h);
	t0 = h.total;
	reload_at(true, B, 100 * MS, t0 + B * 100 * MS); /* the load's baseline: B */
	kmsg("mt_replay: reset-past\n");
	c0 = counts();
	off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	/* The host's history again from 0, up to the guest's baseline (B). */
	for (int i = 0; i <= B; i++) {
		char what[64];

		put(i, i ? 100 * MS : 0, t0 + i * 100 * MS);
		g[i] = wait_event(&e[i]);
		snprintf(what, sizeof(what), "reset-past: (%d, T+%d ms)", i, i * 100);
		show(what, g[i], &e[i]);
		if (i < B)
			all_refused = all_refused && refused(g[i], &e[i], i) &&
				      e[i].outcome == MIGTIME_OUTCOME_REFUSED_SEQ_BACKWARDS;
	}
	c1 = counts();
	/* Past the old baseline. */
	put(B + 1, 100 * MS, t0 + (B + 1) * 100 * MS);
	g5 = wait_event(&e5);
	show("reset-past: (5, T+500 ms)", g5, &e5);
	c2 = counts();
	put(B + 1, 100 * MS, t0 + (B + 1) * 100 * MS); /* the same page, written again */
	g5r = wait_event(&e5r);
	show("reset-past: (5, T+500 ms) again", g5r, &e5r);
	c3 = counts();
	put(B + 2, 200 * MS, t0 + (B + 3) * 100 * MS);
	g6 = wait_event(&e6);
	show("reset-past: (6, T+700 ms)", g6, &e6);
	c4 = counts();
	off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);

	ksft_test_result(all_refused && c1.refusals == c0.refusals + B &&
				 log_refused("mt_replay: reset-past", 0) && !g[B] &&
				 c1.steps == c0.steps,
			 "reset-past: the count again from 0 is refused visibly below the baseline, the baseline's own page is nothing new, nothing stepped (refusals %lld -> %lld, steps %lld -> %lld)\n",
			 c0.refusals, c1.refusals, c0.steps, c1.steps);
	ksft_test_result(stepped(g5, &e5, B + 1, 100 * MS) && c2.steps == c1.steps + 1 &&
				 c2.events == c1.events + 1 && !g5r && c3.steps == c2.steps &&
				 c3.events == c2.events,
			 "reset-past: (5, T+500 ms), the first past the old baseline, is stepped by its 100 ms exactly once, no reload (steps %lld -> %lld -> %lld, events %lld -> %lld -> %lld)\n",
			 c1.steps, c2.steps, c3.steps, c1.events, c2.events, c3.events);
	ksft_test_result(stepped(g6, &e6, B + 2, 200 * MS) && c4.steps == c3.steps + 1 &&
				 c4.events == c3.events + 1,
			 "reset-past: from then on migrations apply normally: (6, T+700 ms) is stepped by its 200 ms once (steps %lld -> %lld)\n",
			 c3.steps, c4.steps);
	ksft_test_result(near(off1 - off0, 300 * MS),
			 "reset-past: realtime moved by +300 ms in all (moved %lld ns)\n",
			 (long long)(off1 - off0));
}

static void case_wrap(void)
{
	struct migtime_event e1, e2;
	struct mt_host_view h;
	struct counts c0, c2;
	bool g1, g2;
	int64_t off0, off1, want = wrap_forward ? 200 * MS : 0;

	page(&h);
	reload_at(true, UINT64_MAX, 0, h.total); /* the load's baseline: 2^64-1 */
	kmsg("mt_replay: wrap\n");
	c0 = counts();
	off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	put(0, 200 * MS, h.total + 200 * MS);
	g1 = wait_event(&e1);
	show("wrap: (2^64-1) -> (0, T+200 ms)", g1, &e1);
	put(UINT64_MAX, 0, h.total);
	g2 = wait_event(&e2);
	show("wrap: back to (2^64-1, T)", g2, &e2);
	c2 = counts();
	off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
	if (wrap_forward)
		ksft_test_result(stepped(g1, &e1, 0, 200 * MS) && c2.steps == c0.steps + 1,
				 "wrap=forward: 2^64-1 -> 0 is the next migration, stepped once (steps %lld -> %lld)\n",
				 c0.steps, c2.steps);
	else
		ksft_test_result(refused(g1, &e1, 0) && c2.steps == c0.steps &&
					 log_refused("mt_replay: wrap", 0),
				 "wrap=refuse: 2^64-1 -> 0 is backwards, refused visibly, no step (steps %lld -> %lld)\n",
				 c0.steps, c2.steps);
	(void)g2;
	ksft_test_result(near(off1 - off0, want),
			 "wrap: realtime moved by %lld ns as expected (moved %lld ns)\n", (long long)want,
			 (long long)(off1 - off0));
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "wrap=forward"))
			wrap_forward = true;
		else if (!strcmp(argv[i], "wrap=refuse"))
			wrap_forward = false;
		else if (!strncmp(argv[i], "params=", 7)) {
			snprintf(params, sizeof(params), "%s", argv[i] + 7);
			for (char *p = params; *p; p++)
				if (*p == ',')
					*p = ' ';
		} else
			ksft_exit_fail_msg("unknown argument '%s'\n", argv[i]);
	}
	ksft_print_header();
	ksft_set_plan(4 + 4 + 4 + 4 + 2);
	if (mt_map_page(1))
		ksft_exit_fail_msg("cannot map the migtime page\n");
	case_replay();
	case_jump();
	case_reset();
	case_reset_past();
	case_wrap();
	ksft_finished();
}
