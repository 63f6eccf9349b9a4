// SPDX-License-Identifier: GPL-2.0

//! The step policy: unit tests and properties.

use migtime_abi::abi::{Outcome, FLAG_COMPENSATED};
use migtime_abi::fallback::{read_then_set, WindowEstimate};
use migtime_abi::model_clock::ModelClock;
use migtime_abi::rate::Rate;
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy};
use migtime_abi::seqlock::Snapshot;
use migtime_abi::tracker::{Settled, Tracker, MAX_STEP_ATTEMPTS, REFUSAL_BURST};
use proptest::prelude::*;

const SEC: i64 = 1_000_000_000;

fn pol(v: OnViolation) -> Policy {
    Policy::per_page(600 * SEC as u64, v)
}

/// Guest CLOCK_MONOTONIC of the `i`-th check when checks are `period` apart.
fn at(i: usize, period: i64) -> i64 {
    i as i64 * period
}

fn snap(seq: u64, flags: u32, delta: i64, total: i64) -> Snapshot {
    Snapshot {
        seq_count: 2,
        flags,
        migration_seq: seq,
        tai_delta_ns: delta,
        tai_delta_total_ns: total,
    }
}

fn base(seq: u64, total: i64) -> Baseline {
    Baseline {
        seq,
        total_ns: total,
    }
}

fn apply(step_ns: i64) -> Action {
    Action::Apply {
        step_ns,
        outcome: if step_ns == 0 {
            Outcome::Notified
        } else {
            Outcome::Stepped
        },
    }
}

#[test]
fn baseline_from_snapshot_means_no_step_at_bind() {
    let s = snap(9, 0, 5 * SEC, 77 * SEC);
    let b = Baseline::from_snapshot(&s);
    assert_eq!(b, base(9, 77 * SEC));
    assert_eq!(
        b.decide(&s, &pol(OnViolation::Refuse)).action,
        Action::Nothing
    );
}

#[test]
fn one_migration_steps_by_delta() {
    let d = base(3, 10).decide(
        &snap(4, 0, 2 * SEC, 10 + 2 * SEC),
        &pol(OnViolation::Refuse),
    );
    assert_eq!(d.action, apply(2 * SEC));
    assert_eq!(d.next, base(4, 10 + 2 * SEC));
    assert_eq!(d.pending_ns, Some(2 * SEC));
}

#[test]
fn negative_delta_steps_back() {
    let d = base(3, 0).decide(&snap(4, 0, -SEC, -SEC), &pol(OnViolation::Refuse));
    assert_eq!(d.action, apply(-SEC));
}

#[test]
fn catch_up_seq_plus_two_applies_total_exactly_once() {
    let p = pol(OnViolation::Refuse);
    // Two migrations while the guest did not run: +3 s then +4 s; the page shows the latest.
    let s = snap(7, 0, 4 * SEC, 100 + 7 * SEC);
    let d = base(5, 100).decide(&s, &p);
    assert_eq!(d.action, apply(7 * SEC));
    // Seeing the same page again does nothing.
    assert_eq!(d.next.decide(&s, &p).action, Action::Nothing);
}

#[test]
fn compensated_notifies_without_step() {
    let d = base(1, 50).decide(&snap(2, FLAG_COMPENSATED, 0, 50), &pol(OnViolation::Refuse));
    assert_eq!(d.action, apply(0));
    // Unknown flag bits are ignored.
    let d = base(1, 50).decide(&snap(2, 0x8000_0000, 0, 50), &pol(OnViolation::Refuse));
    assert_eq!(d.action, apply(0));
}

#[test]
fn compensated_with_a_delta_is_inconsistent() {
    for v in [OnViolation::Refuse, OnViolation::Warn] {
        let d = base(1, 0).decide(&snap(2, FLAG_COMPENSATED, SEC, SEC), &pol(v));
        assert_eq!(d.action, Action::Refuse(Outcome::RefusedInconsistent));
    }
}

#[test]
fn backwards_refused_warned_refused_panics() {
    let s = snap(4, 0, 0, 0);
    assert_eq!(
        base(5, 0).decide(&s, &pol(OnViolation::Refuse)).action,
        Action::Refuse(Outcome::RefusedSeqBackwards)
    );
    // Warn has no well-defined step for backwards: refuse.
    assert_eq!(
        base(5, 0).decide(&s, &pol(OnViolation::Warn)).action,
        Action::Refuse(Outcome::RefusedSeqBackwards)
    );
    assert_eq!(
        base(5, 0).decide(&s, &pol(OnViolation::Panic)).action,
        Action::Panic(Outcome::RefusedSeqBackwards)
    );
    // The baseline only moves forward: a backwards page leaves it where it was, so replaying
    // the page it was taken from later does nothing.
    let d = base(5, 0).decide(&s, &pol(OnViolation::Refuse));
    assert_eq!(d.next, base(5, 0));
}

#[test]
fn replayed_page_steps_once() {
    // seq 1 (+1 s), then seq 0 (total 0), then seq 1 (+1 s) again.
    let p = pol(OnViolation::Refuse);
    let mut t = Tracker::new(base(0, 0));
    let mut stepped = 0;
    let mut refusals = 0;
    for s in [snap(1, 0, SEC, SEC), snap(0, 0, 0, 0), snap(1, 0, SEC, SEC)] {
        // Each page is looked at several times (polls), as the module does.
        for _ in 0..3 {
            let d = t.decide(&s, &p, 0);
            match d.action {
                Action::Apply { step_ns, .. } => stepped += step_ns,
                Action::Refuse(_) => refusals += 1,
                Action::Nothing => {}
                Action::Panic(_) => unreachable!(),
            }
            t.settle(&s, &d, true, 0);
        }
    }
    assert_eq!(stepped, SEC);
    // The backwards page is reported once, not at every poll.
    assert_eq!(refusals, 1);
    assert_eq!(t.baseline(), base(1, SEC));
}

#[test]
fn reset_host_is_refused_until_rebaseline() {
    // A host that restarts counting at 0: distinct pages below the baseline are refused once
    // each, up to REFUSAL_BURST in a minute (the rest coalesced, counted), none is stepped, and
    // the baseline stays at 10 until the module re-baselines.
    let p = pol(OnViolation::Refuse);
    let mut t = Tracker::new(base(10, 0));
    let mut refused = 0;
    let mut i = 0;
    for seq in 0..10 {
        let s = snap(seq, 0, SEC, (seq as i64 + 1) * SEC);
        for _ in 0..2 {
            let now = at(i, SEC / 10);
            i += 1;
            let d = t.decide(&s, &p, now);
            assert!(!matches!(d.action, Action::Apply { .. }), "{d:?}");
            if matches!(d.action, Action::Refuse(_)) {
                refused += 1;
            }
            t.settle(&s, &d, true, now);
        }
    }
    assert_eq!(refused, REFUSAL_BURST);
    // Each read of a page beyond the burst is one coalesced refusal.
    assert_eq!(t.coalesced(), 2 * (10 - u64::from(REFUSAL_BURST)));
    assert_eq!(t.baseline(), base(10, 0));
    // The next real migration after the old baseline is applied normally.
    let s = snap(11, 0, 2 * SEC, 2 * SEC);
    assert_eq!(t.decide(&s, &p, at(i, SEC / 10)).action, apply(2 * SEC));
}

/// Feeds `pages` to `t` as the module does (each page read `reads` times, a minute apart so
/// that no refusal is coalesced, every step succeeding) and returns, per page, the actions that
/// were not [`Action::Nothing`].
fn play(t: &mut Tracker, p: &Policy, pages: &[Snapshot], reads: usize) -> Vec<Vec<Action>> {
    let mut i = 0;
    pages
        .iter()
        .map(|s| {
            let mut acted = Vec::new();
            for _ in 0..reads {
                let now = at(i, 61 * SEC);
                i += 1;
                let d = t.decide(s, p, now);
                if d.action != Action::Nothing {
                    acted.push(d.action);
                }
                t.settle(s, &d, true, now);
            }
            acted
        })
        .collect()
}

#[test]
fn reset_host_counting_past_the_old_baseline_is_applied_once_then_normally() {
    // The guest is in step with (4, 4 s): four migrations of 1 s. The host resets its count
    // and plays the same history again from 0: (0, 0), (1, 1 s), ..., (4, 4 s) (the baseline
    // itself), then counts on past it: (5, +1 s), (6, +2 s).
    let p = pol(OnViolation::Refuse);
    let mut t = Tracker::new(base(4, 4 * SEC));
    let mut pages: Vec<Snapshot> = (0..=4)
        .map(|i: i64| snap(i as u64, 0, if i > 0 { SEC } else { 0 }, i * SEC))
        .collect();
    pages.push(snap(5, 0, SEC, 5 * SEC));
    pages.push(snap(6, 0, 2 * SEC, 7 * SEC));
    let acted = play(&mut t, &p, &pages, 3);
    // Below the baseline: each page refused once (not at every read), the baseline kept.
    for (seq, a) in acted[..4].iter().enumerate() {
        assert_eq!(
            a,
            &[Action::Refuse(Outcome::RefusedSeqBackwards)],
            "seq {seq}"
        );
    }
    // The baseline's own page again: nothing changed.
    assert!(acted[4].is_empty(), "{:?}", acted[4]);
    // Past the old baseline: each migration stepped by its own delta, exactly once.
    assert_eq!(acted[5], [apply(SEC)]);
    assert_eq!(acted[6], [apply(2 * SEC)]);
    assert_eq!(t.baseline(), base(6, 7 * SEC));
    // A replay of the first page past the old baseline is now backwards.
    let acted = play(&mut t, &p, &[snap(5, 0, SEC, 5 * SEC)], 2);
    assert_eq!(acted[0], [Action::Refuse(Outcome::RefusedSeqBackwards)]);
    assert_eq!(t.baseline(), base(6, 7 * SEC));
}

#[test]
fn failed_step_keeps_baseline_and_is_retried_a_bounded_number_of_times() {
    let p = pol(OnViolation::Refuse);
    let mut t = Tracker::new(base(1, 0));
    let s = snap(2, 0, SEC, SEC);
    for attempt in 1..=MAX_STEP_ATTEMPTS {
        let d = t.decide(&s, &p, 0);
        assert_eq!(d.action, apply(SEC));
        let settled = t.settle(&s, &d, false, 0);
        if attempt < MAX_STEP_ATTEMPTS {
            assert_eq!(settled, Settled::Failed { attempts: attempt });
        } else {
            assert_eq!(settled, Settled::GaveUp);
        }
        assert_eq!(
            t.baseline(),
            base(1, 0),
            "a failed step must not move the baseline"
        );
    }
    // Given up: no more attempts at this page.
    assert_eq!(t.decide(&s, &p, 0).action, Action::Nothing);
    // A new page includes the delta that was never applied.
    let s = snap(3, 0, SEC, 2 * SEC);
    let d = t.decide(&s, &p, 0);
    assert_eq!(d.action, apply(2 * SEC));
    assert_eq!(t.settle(&s, &d, true, 0), Settled::Done);
    assert_eq!(t.baseline(), base(3, 2 * SEC));
}

#[test]
fn over_limit() {
    let big = 601 * SEC;
    let s = snap(2, 0, big, big);
    let d = base(1, 0).decide(&s, &pol(OnViolation::Refuse));
    assert_eq!(d.action, Action::Refuse(Outcome::RefusedOverLimit));
    assert_eq!(
        d.next.decide(&s, &pol(OnViolation::Refuse)).action,
        Action::Nothing
    );
    let d = base(1, 0).decide(&s, &pol(OnViolation::Warn));
    assert_eq!(d.action, apply(big));
    assert_eq!(d.warned, Some(Outcome::RefusedOverLimit));
    assert_eq!(
        base(1, 0).decide(&s, &pol(OnViolation::Panic)).action,
        Action::Panic(Outcome::RefusedOverLimit)
    );
    // Exactly at the limit is fine; also negative.
    let at = 600 * SEC;
    assert_eq!(
        base(1, 0)
            .decide(&snap(2, 0, at, at), &pol(OnViolation::Refuse))
            .action,
        apply(at)
    );
    assert_eq!(
        base(1, 0)
            .decide(&snap(2, 0, -at, -at), &pol(OnViolation::Refuse))
            .action,
        apply(-at)
    );
    assert_eq!(
        base(1, 0)
            .decide(&snap(2, 0, -at - 1, -at - 1), &pol(OnViolation::Refuse))
            .action,
        Action::Refuse(Outcome::RefusedOverLimit)
    );
}

#[test]
fn inconsistent_total_without_seq() {
    let s = snap(1, 0, 0, SEC);
    assert_eq!(
        base(1, 0).decide(&s, &pol(OnViolation::Refuse)).action,
        Action::Refuse(Outcome::RefusedInconsistent)
    );
    let d = base(1, 0).decide(&s, &pol(OnViolation::Warn));
    assert_eq!(d.action, apply(SEC));
    assert_eq!(d.warned, Some(Outcome::RefusedInconsistent));
    // seq+1 but delta disagrees with the total.
    let s = snap(2, 0, SEC, 2 * SEC);
    assert_eq!(
        base(1, 0).decide(&s, &pol(OnViolation::Refuse)).action,
        Action::Refuse(Outcome::RefusedInconsistent)
    );
}

#[test]
fn overflow_is_refused_not_a_panic() {
    for v in [OnViolation::Refuse, OnViolation::Warn] {
        let d = base(1, i64::MIN).decide(&snap(3, 0, 0, i64::MAX), &pol(v));
        assert_eq!(d.action, Action::Refuse(Outcome::RefusedInconsistent));
        assert_eq!(d.pending_ns, None);
        let d = base(1, i64::MAX).decide(&snap(3, 0, 0, i64::MIN), &pol(v));
        assert_eq!(d.action, Action::Refuse(Outcome::RefusedInconsistent));
    }
    // limit u64::MAX and |i64::MIN|.
    let p = Policy::per_page(u64::MAX, OnViolation::Refuse);
    let d = base(1, 0).decide(&snap(3, 0, 0, i64::MIN), &p);
    assert_eq!(d.action, apply(i64::MIN));
    // seq wrap-around: u64::MAX -> 0 is backwards, not +1.
    let d = base(u64::MAX, 0).decide(&snap(0, 0, 0, 0), &pol(OnViolation::Refuse));
    assert_eq!(d.action, Action::Refuse(Outcome::RefusedSeqBackwards));
}

/// One host update: a migration with a delta (0 and compensated if `comp`), seen or not.
#[derive(Clone, Debug)]
struct Update {
    delta: i64,
    comp: bool,
    seen: bool,
}

fn update() -> impl Strategy<Value = Update> {
    (-3600 * SEC..3600 * SEC, any::<bool>(), any::<bool>()).prop_map(|(delta, comp, seen)| Update {
        delta: if comp { 0 } else { delta },
        comp,
        seen,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For any sequence of valid host updates, whichever of them the guest observes, the sum
    /// of the applied steps equals final total - initial total (the final page is observed).
    #[test]
    fn applied_steps_sum_to_total(
        seq0 in 0u64..1_000_000,
        total0 in -1_000_000 * SEC..1_000_000 * SEC,
        ups in proptest::collection::vec(update(), 1..20),
    ) {
        let p = Policy::per_page(u64::MAX, OnViolation::Refuse);
        let mut b = Baseline { seq: seq0, total_ns: total0 };
        let (mut seq, mut total) = (seq0, total0);
        let mut applied: i64 = 0;
        let n = ups.len();
        for (i, u) in ups.iter().enumerate() {
            seq += 1;
            total += u.delta;
            if !(u.seen || i + 1 == n) {
                continue;
            }
            let flags = if u.comp { FLAG_COMPENSATED } else { 0 };
            let d = b.decide(&snap(seq, flags, u.delta, total), &p);
            match d.action {
                Action::Apply { step_ns, .. } => applied += step_ns,
                Action::Nothing => prop_assert!(false, "a new seq must not be Nothing"),
                other => prop_assert!(false, "valid update refused: {:?}", other),
            }
            b = d.next;
        }
        prop_assert_eq!(applied, total - total0);
        prop_assert_eq!(b, Baseline { seq, total_ns: total });
    }

    /// decide never panics, and its actions are coherent with the policy.
    #[test]
    fn decide_total(
        bseq in any::<u64>(), btotal in any::<i64>(),
        seq in any::<u64>(), flags in any::<u32>(), delta in any::<i64>(), total in any::<i64>(),
        limit in any::<u64>(), v in 0u32..3,
    ) {
        let p = Policy::per_page(limit, OnViolation::from_param(v).unwrap());
        let b = Baseline { seq: bseq, total_ns: btotal };
        let d = b.decide(&snap(seq, flags, delta, total), &p);
        match d.action {
            Action::Nothing => prop_assert_eq!((seq, total), (bseq, btotal)),
            Action::Apply { step_ns, .. } => {
                prop_assert_eq!(Some(step_ns), total.checked_sub(btotal));
                if d.warned.is_none() {
                    prop_assert!(step_ns.unsigned_abs() <= limit);
                }
                prop_assert!(seq >= bseq);
            }
            Action::Refuse(o) => {
                prop_assert!(o.is_refusal());
                prop_assert!(v != 2);
            }
            Action::Panic(o) => {
                prop_assert!(o.is_refusal());
                prop_assert_eq!(v, 2);
            }
        }
        // The baseline only moves forward (or, warned, to the same sequence).
        prop_assert!(d.next.seq >= bseq);
        if d.action != Action::Nothing && (seq > bseq || d.warned.is_some()) {
            prop_assert_eq!(d.next, Baseline { seq, total_ns: total });
        } else {
            prop_assert_eq!(d.next, b);
        }
    }

    /// The invariant against an adversarial host: whatever the page says, in whatever order
    /// (replays, backwards, jumps, resets, wraparound, repeated reads), and whichever sets the
    /// kernel rejects (the first: nothing applied; a later one: a partial step), the guest
    /// (on_violation=refuse, with the rate bound) moves the clock for each `migration_seq` at
    /// most once, the sequences it moves the clock for strictly increase, every step is
    /// total(page) - total(baseline) with the page's sequence above the baseline's, and the
    /// total clock movement equals the sum of what the steps reported as applied.
    #[test]
    fn never_steps_twice_for_one_seq(
        seq0 in any::<u64>(),
        total0 in any::<i64>(),
        pages in proptest::collection::vec(adversarial_page(), 1..60),
    ) {
        let p = Policy { rate: Rate { window_ns: 10 * SEC as u64, max_steps: 4 }, ..pol(OnViolation::Refuse) };
        let mut t = Tracker::new(Baseline { seq: seq0, total_ns: total0 });
        let mut clock = ModelClock::new(SEC, 1_700_000_000 * SEC, 0);
        let mut w = WindowEstimate::new();
        let mut last_moved: Option<u64> = None;
        let mut reported: i128 = 0;
        let mut now = 0;
        for (pg, fault, reads) in pages {
            let s = pg.resolve(t.baseline());
            for _ in 0..reads {
                now += SEC / 3;
                let before = t.baseline();
                let d = t.decide(&s, &p, now);
                let mut applied = false;
                if let Action::Apply { step_ns, .. } = d.action {
                    prop_assert!(s.migration_seq > before.seq);
                    prop_assert_eq!(Some(step_ns), s.tai_delta_total_ns.checked_sub(before.total_ns));
                    (clock.reject, clock.tick_ns, clock.set_calls) = (fault.reject, fault.tick_ns, 0);
                    let ours = clock.ours_ns;
                    if let Ok(a) = read_then_set(&mut clock, &mut w, step_ns) {
                        applied = true;
                        reported += i128::from(a.applied_ns);
                        if let Some(prev) = last_moved {
                            prop_assert!(s.migration_seq > prev, "seq {} moved the clock after {}", s.migration_seq, prev);
                        }
                        last_moved = Some(s.migration_seq);
                    } else {
                        prop_assert_eq!(clock.ours_ns, ours, "an error must mean nothing moved");
                    }
                }
                t.settle(&s, &d, applied, now);
                prop_assert!(t.baseline().seq >= before.seq);
            }
        }
        prop_assert_eq!(clock.ours_ns, reported);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A host that resets its `migration_seq` to any `reset` below the guest's baseline (S, T)
    /// and counts up by one per migration, past S, with any deltas and any total it restarts
    /// from: nothing at or below S is applied; from S+1 on every sequence is acted on exactly
    /// once (later reads of the page: nothing), S+2 and later are stepped by exactly their own
    /// delta, and S+1 is stepped by its delta when the page agrees with the baseline (the host's
    /// total at S was T: it replayed its history), else refused as inconsistent and adopted.
    #[test]
    fn reset_host_counting_past_the_baseline_steps_each_new_seq_once(
        bseq in prop_oneof![1u64..100, 1u64..u64::MAX - 8],
        btotal in -1_000_000 * SEC..1_000_000 * SEC,
        reset_back in 1u64..64,
        total_at_reset in -1_000_000 * SEC..1_000_000 * SEC,
        replays_history in any::<bool>(),
        deltas in proptest::collection::vec(-3600 * SEC..3600 * SEC, 72),
        past in 1usize..8,
        reads in 1usize..4,
    ) {
        let p = Policy::per_page(u64::MAX, OnViolation::Refuse);
        let reset = bseq.saturating_sub(reset_back);
        // The host's pages: seq reset..=bseq+past, the total a running sum of the deltas.
        let n = usize::try_from(bseq + past as u64 - reset).unwrap() + 1;
        let mut totals = Vec::with_capacity(n);
        let mut total = total_at_reset;
        for (i, d) in deltas[..n].iter().enumerate() {
            if i > 0 {
                total += d;
            }
            totals.push(total);
        }
        let at_base = usize::try_from(bseq - reset).unwrap();
        if replays_history {
            let shift = btotal - totals[at_base];
            totals.iter_mut().for_each(|t| *t += shift);
        }
        let pages: Vec<Snapshot> = (0..n)
            .map(|i| snap(reset + i as u64, 0, if i > 0 { deltas[i] } else { 0 }, totals[i]))
            .collect();
        let mut t = Tracker::new(Baseline { seq: bseq, total_ns: btotal });
        let acted = play(&mut t, &p, &pages, reads);
        for (i, a) in acted.iter().enumerate() {
            let seq = reset + i as u64;
            if seq < bseq {
                prop_assert_eq!(a, &vec![Action::Refuse(Outcome::RefusedSeqBackwards)], "seq {}", seq);
            } else if seq == bseq {
                let want = if totals[i] == btotal {
                    vec![]
                } else {
                    vec![Action::Refuse(Outcome::RefusedInconsistent)]
                };
                prop_assert_eq!(a, &want, "seq {} (the baseline's)", seq);
            } else if seq == bseq + 1 {
                let want = if totals[i] - btotal == deltas[i] {
                    apply(deltas[i])
                } else {
                    Action::Refuse(Outcome::RefusedInconsistent)
                };
                prop_assert!(!replays_history || want == apply(deltas[i]));
                prop_assert_eq!(a, &vec![want], "seq {} (the first past the baseline)", seq);
            } else {
                prop_assert_eq!(a, &vec![apply(deltas[i])], "seq {}", seq);
            }
        }
        prop_assert_eq!(t.baseline(), Baseline { seq: bseq + past as u64, total_ns: totals[n - 1] });
    }
}

/// A page an adversarial host may write, relative to the guest's current baseline (so that
/// interesting pages — replays of the baseline, one behind, one ahead — are common).
#[derive(Clone, Copy, Debug)]
enum AdvPage {
    /// Baseline's sequence + `ahead` (may wrap), total baseline + `delta`.
    Relative { ahead: i8, delta: i64, flags: u32 },
    /// Anything at all.
    Absolute {
        seq: u64,
        delta: i64,
        total: i64,
        flags: u32,
    },
}

impl AdvPage {
    fn resolve(self, b: Baseline) -> Snapshot {
        match self {
            AdvPage::Relative {
                ahead,
                delta,
                flags,
            } => snap(
                b.seq.wrapping_add_signed(i64::from(ahead)),
                flags,
                delta,
                b.total_ns.wrapping_add(delta),
            ),
            AdvPage::Absolute {
                seq,
                delta,
                total,
                flags,
            } => snap(seq, flags, delta, total),
        }
    }
}

/// How the kernel treats the sets of one step.
#[derive(Clone, Copy, Debug)]
struct Fault {
    /// Bit `n`: the `n`-th set of the step is rejected.
    reject: u64,
    /// Time per clock reading and per set (the read→set window's cause).
    tick_ns: i64,
}

fn adversarial_page() -> impl Strategy<Value = (AdvPage, Fault, u8)> {
    let small = prop_oneof![
        Just(0i64),
        Just(SEC),
        Just(-SEC),
        -10 * SEC..10 * SEC,
        any::<i64>()
    ];
    let flags = prop_oneof![Just(0u32), Just(FLAG_COMPENSATED), any::<u32>()];
    let page = prop_oneof![
        4 => (-3i8..=3, small.clone(), flags.clone())
            .prop_map(|(ahead, delta, flags)| AdvPage::Relative { ahead, delta, flags }),
        1 => (any::<u64>(), small, any::<i64>(), flags)
            .prop_map(|(seq, delta, total, flags)| AdvPage::Absolute { seq, delta, total, flags }),
    ];
    // Most steps succeed; some fail at the first set (nothing applied), some at a correction
    // (partial). A tick above the correction threshold makes the first step correct itself.
    let reject = prop_oneof![6 => Just(0u64), 1 => Just(1u64), 2 => Just(2u64), 1 => any::<u64>()];
    let tick = prop_oneof![Just(0i64), Just(20_000i64), 0i64..2_000_000];
    let fault = (reject, tick).prop_map(|(reject, tick_ns)| Fault { reject, tick_ns });
    // The guest reads each page 1-3 times.
    (page, fault, 1u8..4)
}
