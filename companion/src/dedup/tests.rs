// SPDX-License-Identifier: GPL-2.0

//! The de-duplication state machine: both orders of the two signals, acting alone after the
//! window, catch-up at start, and a property test over any order and timing.

use super::*;
use migtime_abi::abi::Outcome;
use proptest::prelude::*;

const W: u64 = 1500;

fn key(m: u64) -> (u64, u64) {
    (m, 0)
}

/// An event of `migration_seq` with `outcome`, having applied `applied_ns`.
fn event(migration_seq: u64, outcome: Outcome, applied_ns: i64) -> EventKey {
    EventKey {
        migration_seq,
        outcome: outcome as u32,
        applied_ns,
    }
}

/// A `stepped` event of `migration_seq` (2 s applied).
fn stepped(migration_seq: u64) -> EventKey {
    event(migration_seq, Outcome::Stepped, 2_000_000_000)
}

/// A refused event of `migration_seq` (nothing applied).
fn refused(migration_seq: u64) -> EventKey {
    event(migration_seq, Outcome::RefusedSeqBackwards, 0)
}

#[test]
fn marker_then_migtime_acts_once() {
    let mut d = Dedup::new(W, 60_000, 0);
    assert_eq!(d.on_vmclock(key(1), 1, true, 100), Verdict::Baseline);
    assert_eq!(d.on_vmclock(key(1), 1, true, 200), Verdict::Unchanged);
    assert_eq!(
        d.on_vmclock(key(2), 2, true, 1000),
        Verdict::Wait { deadline_ms: 2500 }
    );
    assert_eq!(d.next_deadline(), Some(2500));
    assert_eq!(d.on_tick(1200), None);
    assert_eq!(
        d.on_migtime(stepped(5), 1250, 1300),
        Verdict::Act(Trigger::Migtime {
            migration_seq: 5,
            covers_marker: Some(2),
            after_marker: None,
        })
    );
    assert_eq!(d.next_deadline(), None);
    assert_eq!(d.on_tick(3000), None);
    // The same event re-read after reopening the device.
    assert_eq!(d.on_migtime(stepped(5), 1250, 4000), Verdict::Unchanged);
}

#[test]
fn migtime_then_marker_acts_once() {
    let mut d = Dedup::new(W, 60_000, 0);
    assert_eq!(d.on_vmclock(key(1), 1, true, 100), Verdict::Baseline);
    let acted = Trigger::Migtime {
        migration_seq: 1,
        covers_marker: None,
        after_marker: None,
    };
    assert_eq!(d.on_migtime(stepped(1), 900, 1000), Verdict::Act(acted));
    assert_eq!(
        d.on_vmclock(key(2), 2, true, 1400),
        Verdict::Duplicate { acted }
    );
    assert_eq!(d.next_deadline(), None);
}

#[test]
fn marker_alone_acts_at_the_deadline_and_drops_a_late_notification() {
    let mut d = Dedup::new(W, 60_000, 0);
    d.on_vmclock(key(1), 1, true, 0);
    assert_eq!(
        d.on_vmclock(key(2), 2, true, 1000),
        Verdict::Wait { deadline_ms: 2500 }
    );
    assert_eq!(d.on_tick(2499), None);
    let acted = Trigger::Vmclock {
        marker: 2,
        waited: true,
    };
    assert_eq!(d.on_tick(2500), Some(Verdict::Act(acted)));
    // The host compensated (nothing applied): the action alone covered it.
    assert_eq!(
        d.on_migtime(event(4, Outcome::Notified, 0), 2600, 2700),
        Verdict::Duplicate { acted }
    );
    // A later, real migration is acted on again.
    assert!(matches!(
        d.on_migtime(stepped(5), 9000, 9000),
        Verdict::Act(_)
    ));
}

#[test]
fn without_migtime_the_marker_acts_at_once() {
    let mut d = Dedup::new(W, 60_000, 0);
    d.on_vmclock(key(1), 1, false, 0);
    assert_eq!(
        d.on_vmclock(key(2), 2, false, 10),
        Verdict::Act(Trigger::Vmclock {
            marker: 2,
            waited: false
        })
    );
    assert_eq!(
        d.on_vmclock(key(3), 3, false, 20),
        Verdict::Act(Trigger::Vmclock {
            marker: 3,
            waited: false
        })
    );
}

#[test]
fn generation_counter_alone_is_a_disruption() {
    let mut d = Dedup::new(W, 60_000, 0);
    d.on_vmclock((1, 1), 1, false, 0);
    assert_eq!(
        d.on_vmclock((1, 2), 1, false, 10),
        Verdict::Act(Trigger::Vmclock {
            marker: 1,
            waited: false
        })
    );
}

#[test]
fn old_event_at_start_is_stale_recent_one_is_caught_up() {
    let mut d = Dedup::new(W, 60_000, 100_000);
    assert_eq!(d.on_migtime(stepped(3), 10_000, 100_050), Verdict::Stale);
    let mut d = Dedup::new(W, 60_000, 100_000);
    assert!(matches!(
        d.on_migtime(stepped(3), 90_000, 100_050),
        Verdict::Act(_)
    ));
}

/// Inputs of the property test: two migration signals per migration, in any order and delay.
#[derive(Clone, Debug)]
struct Migration {
    /// ms from the previous migration (well apart: > 4 windows, so that its action is over
    /// a window before this migration's first signal).
    gap: u64,
    /// marker change seen at this offset (ms) from the migration (None: no VMClock).
    marker_at: Option<u64>,
    /// migtime event at this offset (ms) (None: no migtime event).
    event_at: Option<u64>,
    /// The event applied a step (else: refused).
    stepped: bool,
}

fn migration() -> impl Strategy<Value = Migration> {
    (
        (4 * W)..20_000u64,
        proptest::option::of(0..W),
        // Up to 2 windows: later than the wait, so the late event is exercised too.
        proptest::option::weighted(0.8, 0..2 * W),
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(gap, marker_at, event_at, stepped)| Migration {
            gap,
            marker_at,
            event_at,
            stepped,
        })
}

/// Feeds one migration's signals (ticking every `tick_every` ms) and returns the triggers
/// acted on and whether the companion had acted alone before the event came.
fn feed(d: &mut Dedup, m: &Migration, t0: u64, n: u64, tick_every: u64) -> (Vec<Trigger>, bool) {
    let mut inputs: Vec<(u64, bool)> = Vec::new();
    if let Some(a) = m.marker_at {
        inputs.push((t0 + a, true));
    }
    if let Some(a) = m.event_at {
        inputs.push((t0 + a, false));
    }
    inputs.sort();
    let mut acts = Vec::new();
    let mut alone_before_event = false;
    let mut now = t0;
    let take = |v: Option<Verdict>, acts: &mut Vec<Trigger>| {
        if let Some(Verdict::Act(t)) = v {
            acts.push(t);
        }
    };
    for (at, is_marker) in inputs {
        while now + tick_every < at {
            now += tick_every;
            take(d.on_tick(now), &mut acts);
        }
        now = at;
        take(d.on_tick(now), &mut acts);
        let v = if is_marker {
            d.on_vmclock(key(n), n, true, now)
        } else {
            alone_before_event = !acts.is_empty();
            let k = if m.stepped { stepped(n) } else { refused(n) };
            d.on_migtime(k, now, now)
        };
        take(Some(v), &mut acts);
    }
    while now < t0 + 3 * W {
        now += tick_every;
        take(d.on_tick(now), &mut acts);
    }
    (acts, alone_before_event)
}

proptest! {
    /// Each migration that produced any signal is acted on exactly once, whichever order and
    /// timing (within the window) its two signals arrive in, with ticks at arbitrary times;
    /// and once more, as a re-sync, exactly when its event applied a step after the companion
    /// had acted alone on the marker.
    #[test]
    fn one_action_per_migration_and_every_step_reaches_the_daemon(
        migs in proptest::collection::vec(migration(), 1..12),
        tick_every in 1u64..400,
    ) {
        let mut d = Dedup::new(W, 60_000, 0);
        d.on_vmclock(key(0), 0, true, 0);
        let mut t0 = 1000u64;
        for (i, m) in migs.iter().enumerate() {
            t0 += m.gap;
            let (acts, alone_first) = feed(&mut d, m, t0, i as u64 + 1, tick_every);
            let resyncs = acts
                .iter()
                .filter(|t| matches!(t, Trigger::Migtime { after_marker: Some(_), .. }))
                .count();
            let expected = usize::from(m.marker_at.is_some() || m.event_at.is_some());
            prop_assert_eq!(acts.len() - resyncs, expected, "migration {:?}: {:?}", m, acts);
            prop_assert_eq!(resyncs, usize::from(m.stepped && alone_first), "migration {:?}: {:?}", m, acts);
            prop_assert_eq!(d.next_deadline(), None);
        }
    }
}

#[test]
fn stepped_event_after_acting_alone_resyncs() {
    // The marker's wait runs out first (a module polling every 5 s); the kernel steps later.
    let mut d = Dedup::new(W, 60_000, 0);
    d.on_vmclock(key(1), 1, true, 0);
    assert!(matches!(
        d.on_vmclock(key(2), 2, true, 1000),
        Verdict::Wait { .. }
    ));
    let alone = Trigger::Vmclock {
        marker: 2,
        waited: true,
    };
    assert_eq!(d.on_tick(2500), Some(Verdict::Act(alone)));
    assert_eq!(
        d.on_migtime(stepped(4), 3600, 3700),
        Verdict::Act(Trigger::Migtime {
            migration_seq: 4,
            covers_marker: None,
            after_marker: Some(2),
        })
    );
    // Re-reading the same record after a reopen is not news.
    assert_eq!(d.on_migtime(stepped(4), 3600, 3800), Verdict::Unchanged);
}

#[test]
fn refused_event_after_acting_alone_is_a_duplicate() {
    let mut d = Dedup::new(W, 60_000, 0);
    d.on_vmclock(key(1), 1, true, 0);
    d.on_vmclock(key(2), 2, true, 1000);
    assert!(matches!(d.on_tick(2500), Some(Verdict::Act(_))));
    assert!(matches!(
        d.on_migtime(refused(4), 3600, 3700),
        Verdict::Duplicate { .. }
    ));
}

#[test]
fn failed_then_stepped_for_one_seq_acts_on_both() {
    let mut d = Dedup::new(W, 60_000, 0);
    let failed = event(3, Outcome::Failed, 0);
    assert!(matches!(d.on_migtime(failed, 100, 100), Verdict::Act(_)));
    assert_eq!(d.on_migtime(failed, 100, 150), Verdict::Unchanged);
    assert_eq!(
        d.on_migtime(stepped(3), 200, 200),
        Verdict::Act(Trigger::Migtime {
            migration_seq: 3,
            covers_marker: None,
            after_marker: None,
        })
    );
    // A failed check that moved the clock part of the way is a step too.
    let partial = event(4, Outcome::Failed, 1_500_000_000);
    assert!(partial.applied() && !partial.left_alone());
}

#[test]
fn refusal_storm_is_acted_on_once_per_holdoff() {
    let mut d = Dedup::new(W, 60_000, 0).with_refusal_holdoff(60_000);
    let (mut acts, mut steps) = (0, 0);
    // 1000 refused pages 300 ms apart (300 s), a real step every 100th.
    for i in 0..1000u64 {
        let now = 1000 + i * 300;
        let k = if i % 100 == 50 {
            stepped(i)
        } else {
            refused(i)
        };
        match d.on_migtime(k, now, now) {
            Verdict::Act(_) if k.applied() => steps += 1,
            Verdict::Act(_) => acts += 1,
            Verdict::Suppressed { until_ms } => assert!(until_ms > now),
            v => panic!("unexpected {v:?}"),
        }
    }
    assert_eq!(steps, 10, "every step is acted on");
    assert_eq!(acts, 5, "refusals: once per 60 s over 300 s");
    // Without a hold-off each one is.
    let mut d = Dedup::new(W, 60_000, 0);
    let n = (0..10u64)
        .filter(|&i| matches!(d.on_migtime(refused(i), i * 300, i * 300), Verdict::Act(_)))
        .count();
    assert_eq!(n, 10);
}
