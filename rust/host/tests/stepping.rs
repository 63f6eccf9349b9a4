// SPDX-License-Identifier: GPL-2.0

//! The read-then-set loop (`fallback::read_then_set`, the module's own loop) against a model
//! clock that rejects sets and lets another agent step, and the loop composed with the tracker
//! as the engine composes them.

use migtime_abi::fallback::{
    read_then_set, Applied, StepError, Stop, WindowEstimate, CORRECTION_THRESHOLD_NS,
    MAX_CORRECTIONS, MAX_NUDGES, MAX_WINDOW_NS,
};
use migtime_abi::model_clock::{ModelClock, Rejected};
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy};
use migtime_abi::seqlock::Snapshot;
use migtime_abi::tracker::Tracker;
use proptest::prelude::*;

const SEC: i64 = 1_000_000_000;
const US: i64 = 1_000;

/// A clock at a realistic time whose every reading and set takes `tick` ns.
fn clock(tick: i64) -> ModelClock {
    ModelClock::new(100 * SEC, 1_700_000_000 * SEC, tick)
}

#[test]
fn undisturbed_first_step_is_corrected_to_exact() {
    // 20 µs per call: the first set (no estimate yet) loses 20 µs, the correction makes it good.
    let mut c = clock(20 * US);
    let mut w = WindowEstimate::new();
    let a = read_then_set(&mut c, &mut w, SEC).unwrap();
    assert_eq!(a.stop, Stop::Done);
    assert_eq!(a.sets, 2);
    assert_eq!(a.residual_ns, 0);
    assert_eq!(c.ours_ns, i128::from(SEC));
    // The next step is compensated in advance: one set.
    let a = read_then_set(&mut c, &mut w, SEC).unwrap();
    assert_eq!((a.sets, a.residual_ns), (1, 0));
}

#[test]
fn a_rejected_correction_reports_what_moved() {
    // The first set moves the clock by 1 s - 20 µs; the correcting set is rejected. The step is
    // not an error: the caller must not step again for it.
    let mut c = clock(20 * US);
    c.reject = 0b10;
    let a = read_then_set(&mut c, &mut WindowEstimate::new(), SEC).unwrap();
    assert_eq!(a.stop, Stop::SetFailed(Rejected));
    assert!(a.is_partial());
    assert_eq!(a.applied_ns, SEC - 20 * US);
    assert_eq!(a.residual_ns, -20 * US);
    assert_eq!(a.sets, 1);
    assert_eq!(c.ours_ns, i128::from(a.applied_ns));
}

#[test]
fn only_a_rejected_first_set_is_an_error() {
    let mut c = clock(20 * US);
    c.reject = 0b1;
    let r = read_then_set(&mut c, &mut WindowEstimate::new(), SEC);
    assert_eq!(r, Err(StepError::Set(Rejected)));
    assert_eq!(c.ours_ns, 0);
    // A target before the epoch is the kernel's rejection too, and nothing moves.
    let mut c = clock(0);
    let r = read_then_set(&mut c, &mut WindowEstimate::new(), -1_800_000_000 * SEC);
    assert_eq!(r, Err(StepError::Set(Rejected)));
    assert_eq!(c.ours_ns, 0);
    // An unrepresentable target is an error before any set.
    let r = read_then_set(&mut clock(0), &mut WindowEstimate::new(), i64::MAX);
    assert_eq!(r, Err(StepError::Overflow));
}

#[test]
fn another_agents_step_after_the_set_is_not_undone() {
    // chronyd steps +5 s between our set and its read-back: the read-back shows 5 s more than
    // any window allows; no correction follows, so the +5 s stays.
    let mut c = clock(20 * US);
    c.agent_after = 0b1;
    c.agent_ns = 5 * SEC;
    let before = c.offset_ns;
    let a = read_then_set(&mut c, &mut WindowEstimate::new(), SEC).unwrap();
    assert_eq!(a.stop, Stop::Interfered);
    assert_eq!(a.sets, 1);
    assert_eq!(c.set_calls, 1, "no correcting set after interference");
    // The clock holds both steps (ours less its 20 µs window); the report says what moved.
    assert_eq!(c.offset_ns - before, 6 * SEC - 20 * US);
    assert_eq!(i128::from(a.applied_ns), c.ours_ns + c.foreign_ns);
}

#[test]
fn interference_is_detected_beyond_the_window_bound() {
    // Backwards too, and a step just beyond the largest window.
    for agent in [-3 * SEC, MAX_WINDOW_NS + 1, -(MAX_WINDOW_NS + 1)] {
        let mut c = clock(0);
        c.agent_after = 0b1;
        c.agent_ns = agent;
        let a = read_then_set(&mut c, &mut WindowEstimate::new(), SEC).unwrap();
        assert_eq!(a.stop, Stop::Interfered, "agent step {agent}");
        assert_eq!(c.set_calls, 1);
    }
}

#[test]
fn a_zero_step_nudges_until_the_offset_moves() {
    let mut c = clock(0);
    let a = read_then_set(&mut c, &mut WindowEstimate::new(), 0).unwrap();
    assert_eq!((a.applied_ns, a.sets), (1, 2));
    assert_eq!(c.ours_ns, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever the kernel rejects and whenever another agent steps: an error means nothing of
    /// ours moved; otherwise the report is exactly what moved the clock during the step (ours
    /// and the agent's), the number of sets is the number that succeeded, nothing is set after
    /// a detected interference, and an undisturbed, complete step is within the threshold.
    #[test]
    fn the_report_is_what_moved(
        step in prop_oneof![Just(0i64), -3600 * SEC..3600 * SEC],
        tick in prop_oneof![Just(0i64), Just(20 * US), 0..2 * MAX_WINDOW_NS],
        reject in prop_oneof![Just(0u64), Just(1u64), Just(2u64), any::<u64>()],
        agent_before in prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
        agent_after in prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
        agent_ns in prop_oneof![-10 * SEC..10 * SEC, Just(MAX_WINDOW_NS + 1)],
        warm in 0usize..3,
    ) {
        let mut c = clock(tick);
        let mut w = WindowEstimate::new();
        for _ in 0..warm {
            let _ = read_then_set(&mut c, &mut w, SEC);
        }
        (c.reject, c.agent_before, c.agent_after, c.agent_ns) = (reject, agent_before, agent_after, agent_ns);
        (c.set_calls, c.ours_ns, c.foreign_ns) = (0, 0, 0);
        match read_then_set(&mut c, &mut w, step) {
            Err(_) => prop_assert_eq!(c.ours_ns, 0),
            Ok(a) => check_applied(&c, &a, step, agent_before | agent_after == 0)?,
        }
    }
}

fn check_applied(
    c: &ModelClock,
    a: &Applied<Rejected>,
    step: i64,
    no_agent: bool,
) -> Result<(), TestCaseError> {
    // (An agent's step just before a set the kernel then rejects is outside any measurement.)
    if c.agent_before & c.reject == 0 {
        prop_assert_eq!(i128::from(a.applied_ns), c.ours_ns + c.foreign_ns);
    }
    prop_assert_eq!(a.residual_ns, a.applied_ns - step);
    prop_assert!(a.sets >= 1 && a.sets <= 1 + MAX_CORRECTIONS + MAX_NUDGES);
    if a.stop == Stop::Interfered {
        // The interfering set was the last one made: the agent stepped right after it, or the
        // set itself took longer than any plausible window.
        let last = c.set_calls - 1;
        prop_assert!(c.agent_after >> last & 1 == 1 || c.tick_ns > MAX_WINDOW_NS);
    }
    if no_agent && a.stop == Stop::Done && c.tick_ns <= MAX_WINDOW_NS {
        prop_assert!(
            a.residual_ns.abs() <= CORRECTION_THRESHOLD_NS || a.sets == 1 + MAX_CORRECTIONS
        );
    }
    Ok(())
}

fn snap(seq: u64, delta: i64, total: i64) -> Snapshot {
    Snapshot {
        seq_count: 2,
        flags: 0,
        migration_seq: seq,
        tai_delta_ns: delta,
        tai_delta_total_ns: total,
    }
}

/// One check as the engine runs it: decide, step through the loop, settle (applied unless the
/// loop returned an error).
fn check(t: &mut Tracker, c: &mut ModelClock, w: &mut WindowEstimate, s: &Snapshot, p: &Policy) {
    let d = t.decide(s, p, 0);
    let applied = match d.action {
        Action::Apply { step_ns, .. } => read_then_set(c, w, step_ns).is_ok(),
        _ => false,
    };
    t.settle(s, &d, applied, 0);
}

#[test]
fn a_partial_step_is_never_applied_again() {
    // The host asks for +1 s once (seq 1). The first step's correction is rejected: the clock
    // moved +1 s - 20 µs. Later checks of the same page must not step again.
    let p = Policy::per_page(600 * SEC as u64, OnViolation::Refuse);
    let mut t = Tracker::new(Baseline {
        seq: 0,
        total_ns: 0,
    });
    let mut c = clock(20 * US);
    c.reject = 0b10;
    let mut w = WindowEstimate::new();
    let s = snap(1, SEC, SEC);
    for _ in 0..5 {
        check(&mut t, &mut c, &mut w, &s, &p);
    }
    assert_eq!(c.ours_ns, i128::from(SEC - 20 * US));
    assert_eq!(
        t.baseline(),
        Baseline {
            seq: 1,
            total_ns: SEC
        }
    );
}
