// SPDX-License-Identifier: GPL-2.0

//! The step policy: unit tests (the properties are in `policy_props.rs`).

use migtime_abi::abi::{Outcome, FLAG_COMPENSATED};
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy};
use migtime_abi::seqlock::Snapshot;
use migtime_abi::tracker::{Settled, Tracker, MAX_STEP_ATTEMPTS, REFUSAL_BURST};

mod common;

use common::{apply, at, base, play, pol, snap, SEC};

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
