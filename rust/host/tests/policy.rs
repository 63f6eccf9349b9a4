// SPDX-License-Identifier: GPL-2.0

//! The step policy: unit tests and properties.

use migtime_abi::abi::{Outcome, FLAG_COMPENSATED};
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy};
use migtime_abi::seqlock::Snapshot;
use proptest::prelude::*;

const SEC: i64 = 1_000_000_000;

fn pol(v: OnViolation) -> Policy {
    Policy {
        limit_ns: 600 * SEC as u64,
        on_violation: v,
    }
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
    // The baseline follows the page: a refused change is dropped, never applied later.
    let d = base(5, 0).decide(&s, &pol(OnViolation::Refuse));
    assert_eq!(d.next, base(4, 0));
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
    let p = Policy {
        limit_ns: u64::MAX,
        on_violation: OnViolation::Refuse,
    };
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
        let p = Policy { limit_ns: u64::MAX, on_violation: OnViolation::Refuse };
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
        let p = Policy { limit_ns: limit, on_violation: OnViolation::from_param(v).unwrap() };
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
        if d.action != Action::Nothing {
            prop_assert_eq!(d.next, Baseline { seq, total_ns: total });
        }
    }
}
