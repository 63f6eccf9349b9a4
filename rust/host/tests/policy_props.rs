// SPDX-License-Identifier: GPL-2.0

//! The step policy's properties: sums, totality, the adversarial host (with partial steps on a
//! model clock) and a host that resets its count.

mod common;

use common::{apply, play, pol, snap, SEC};
use migtime_abi::abi::{Outcome, FLAG_COMPENSATED};
use migtime_abi::fallback::{read_then_set, WindowEstimate};
use migtime_abi::model_clock::ModelClock;
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy};
use migtime_abi::rate::Rate;
use migtime_abi::seqlock::Snapshot;
use migtime_abi::tracker::Tracker;
use proptest::prelude::*;

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
