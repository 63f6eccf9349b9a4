// SPDX-License-Identifier: GPL-2.0

//! The rate bound, the restore limit and refusal coalescing, with the module's defaults.

use migtime_abi::abi::{Outcome, FLAG_RESTORE};
use migtime_abi::policy::{Action, Baseline, Decision, OnViolation, Policy};
use migtime_abi::rate::Rate;
use migtime_abi::seqlock::Snapshot;
use migtime_abi::tracker::{Tracker, LOG_BURST, REFUSAL_BURST};

const SEC: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SEC;
const MS: u64 = 1_000_000;

/// The module's defaults: max_step_ms=600000, max_restore_ms=3650 days, max_steps=32,
/// step_window_ms=600000, on_violation=1.
fn defaults() -> Policy {
    Policy {
        limit_ns: 600_000 * MS,
        restore_limit_ns: 3650 * 86_400_000 * MS,
        rate: Rate {
            window_ns: 600_000 * MS,
            max_steps: 32,
        },
        on_violation: OnViolation::Refuse,
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

/// One check at `now`; returns the decision (every step succeeds).
fn check(t: &mut Tracker, p: &Policy, s: &Snapshot, now: i64) -> Decision {
    let d = t.decide(s, p, now);
    t.settle(s, &d, true, now);
    d
}

/// Sum of the steps applied.
fn applied(ds: &[Decision]) -> i64 {
    ds.iter()
        .map(|d| match d.action {
            Action::Apply { step_ns, .. } => step_ns,
            _ => 0,
        })
        .sum()
}

#[test]
fn twenty_pages_of_600_s_move_the_clock_by_at_most_the_limit() {
    // Consistent seq+1 pages of +600 s written 0.3 s apart, each read once.
    let p = defaults();
    let mut t = Tracker::new(Baseline::default());
    let ds: Vec<Decision> = (1..=20)
        .map(|i| {
            let s = snap(i, 0, 600 * SEC, i as i64 * 600 * SEC);
            check(&mut t, &p, &s, i as i64 * 300_000_000)
        })
        .collect();
    assert_eq!(applied(&ds), 600 * SEC);
    let rate = ds
        .iter()
        .filter(|d| d.action == Action::Refuse(Outcome::RefusedRate))
        .count();
    assert_eq!(rate, 19, "each refusal is visible, with its own outcome");
    // After the window the budget is back.
    let s = snap(21, 0, SEC, 20 * 600 * SEC + SEC);
    let d = check(&mut t, &p, &s, 601 * SEC);
    assert!(matches!(d.action, Action::Apply { step_ns, .. } if step_ns == SEC));
}

#[test]
fn honest_live_migrations_are_not_rate_limited() {
    // 32 migrations of 2 s a few seconds apart (a benchmark chain): all applied.
    let p = defaults();
    let mut t = Tracker::new(Baseline::default());
    let ds: Vec<Decision> = (1..=32)
        .map(|i| {
            check(
                &mut t,
                &p,
                &snap(i, 0, 2 * SEC, i as i64 * 2 * SEC),
                i as i64 * 3 * SEC,
            )
        })
        .collect();
    assert_eq!(applied(&ds), 64 * SEC);
}

#[test]
fn a_restore_after_three_days_is_applied_by_default() {
    let p = defaults();
    let mut t = Tracker::new(Baseline::default());
    let d = check(&mut t, &p, &snap(1, FLAG_RESTORE, 3 * DAY, 3 * DAY), SEC);
    assert_eq!(applied(&[d]), 3 * DAY);
    // The same Tout as a live migration is over the limit.
    let mut t = Tracker::new(Baseline::default());
    let d = check(&mut t, &p, &snap(1, 0, 3 * DAY, 3 * DAY), SEC);
    assert_eq!(d.action, Action::Refuse(Outcome::RefusedOverLimit));
    // Beyond the restore limit, a restore is refused too.
    let p = Policy {
        restore_limit_ns: 2 * DAY as u64,
        ..defaults()
    };
    let mut t = Tracker::new(Baseline::default());
    let d = check(&mut t, &p, &snap(1, FLAG_RESTORE, 3 * DAY, 3 * DAY), SEC);
    assert_eq!(d.action, Action::Refuse(Outcome::RefusedOverLimit));
}

#[test]
fn restores_are_bounded_in_number() {
    // A host marking every page as a restore of a day: at most max_steps per window.
    let p = defaults();
    let mut t = Tracker::new(Baseline::default());
    let ds: Vec<Decision> = (1..=100)
        .map(|i| {
            check(
                &mut t,
                &p,
                &snap(i, FLAG_RESTORE, DAY, i as i64 * DAY),
                i as i64 * SEC,
            )
        })
        .collect();
    assert_eq!(applied(&ds), 32 * DAY);
    // A restore does not use the live budget: a live migration of 500 s still fits... once the
    // step count allows it again.
    let d = check(
        &mut t,
        &p,
        &snap(101, 0, 500 * SEC, 100 * DAY + 500 * SEC),
        700 * SEC,
    );
    assert_eq!(applied(&[d]), 500 * SEC);
}

#[test]
fn warn_applies_past_the_rate_bound_with_a_warning() {
    let p = Policy {
        on_violation: OnViolation::Warn,
        ..defaults()
    };
    let mut t = Tracker::new(Baseline::default());
    check(&mut t, &p, &snap(1, 0, 600 * SEC, 600 * SEC), SEC);
    let d = check(&mut t, &p, &snap(2, 0, 600 * SEC, 1200 * SEC), 2 * SEC);
    assert!(matches!(d.action, Action::Apply { .. }));
    assert_eq!(d.warned, Some(Outcome::RefusedRate));
}

#[test]
fn alternating_backwards_pages_give_a_bounded_number_of_events() {
    // Baseline seq 10; the host alternates two older pages, 1000 checks 0.1 s apart.
    let p = defaults();
    let mut t = Tracker::new(Baseline {
        seq: 10,
        total_ns: 0,
    });
    let pages = [snap(8, 0, 0, 0), snap(9, 0, 0, SEC)];
    let refusals = (0..1000)
        .filter(|&i| {
            let d = check(&mut t, &p, &pages[i % 2], i as i64 * SEC / 10);
            matches!(d.action, Action::Refuse(_))
        })
        .count();
    assert_eq!(refusals, 2);
    assert_eq!(t.baseline().seq, 10);
}

#[test]
fn many_distinct_backwards_pages_are_coalesced_per_window() {
    // 1000 checks of 50 cycling older pages over 100 s: at most REFUSAL_BURST a minute.
    let p = defaults();
    let mut t = Tracker::new(Baseline {
        seq: 100,
        total_ns: 0,
    });
    let refusals = (0..1000)
        .filter(|&i| {
            let s = snap((i % 50) as u64, 0, 0, 0);
            matches!(
                check(&mut t, &p, &s, i as i64 * SEC / 10).action,
                Action::Refuse(_)
            )
        })
        .count();
    assert_eq!(refusals, 2 * REFUSAL_BURST as usize);
    assert!(t.coalesced() > 0);
}

#[test]
fn refusal_log_lines_are_budgeted() {
    // Newer pages, each over the limit (each moves the baseline, each is an event): the log
    // line is written for at most LOG_BURST of them per 5 s.
    let p = defaults();
    let mut t = Tracker::new(Baseline::default());
    let logged = (1..=100u64)
        .filter(|&i| {
            let s = snap(i, 0, 0, i as i64 * DAY);
            let d = check(&mut t, &p, &s, i as i64 * SEC / 100);
            assert!(matches!(d.action, Action::Refuse(_)));
            d.log
        })
        .count();
    assert_eq!(logged, LOG_BURST as usize);
}
