// SPDX-License-Identifier: GPL-2.0

//! The de-duplication state machine: both orders of the two signals, acting alone after the
//! window, catch-up at start, and a property test over any order and timing.

use super::*;
use proptest::prelude::*;

const W: u64 = 1500;

fn key(m: u64) -> (u64, u64) {
    (m, 0)
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
        d.on_migtime(5, 1250, 1300),
        Verdict::Act(Trigger::Migtime {
            migration_seq: 5,
            covers_marker: Some(2)
        })
    );
    assert_eq!(d.next_deadline(), None);
    assert_eq!(d.on_tick(3000), None);
    // The same event re-read after reopening the device.
    assert_eq!(d.on_migtime(5, 1250, 4000), Verdict::Unchanged);
}

#[test]
fn migtime_then_marker_acts_once() {
    let mut d = Dedup::new(W, 60_000, 0);
    assert_eq!(d.on_vmclock(key(1), 1, true, 100), Verdict::Baseline);
    let acted = Trigger::Migtime {
        migration_seq: 1,
        covers_marker: None,
    };
    assert_eq!(d.on_migtime(1, 900, 1000), Verdict::Act(acted));
    assert_eq!(
        d.on_vmclock(key(2), 2, true, 1400),
        Verdict::Duplicate { acted }
    );
    assert_eq!(d.next_deadline(), None);
}

#[test]
fn marker_alone_acts_at_the_deadline_and_drops_a_late_event() {
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
    assert_eq!(d.on_migtime(4, 2600, 2700), Verdict::Duplicate { acted });
    // A later, real migration is acted on again.
    assert!(matches!(d.on_migtime(5, 9000, 9000), Verdict::Act(_)));
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
    assert_eq!(d.on_migtime(3, 10_000, 100_050), Verdict::Stale);
    let mut d = Dedup::new(W, 60_000, 100_000);
    assert!(matches!(d.on_migtime(3, 90_000, 100_050), Verdict::Act(_)));
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
}

fn migration() -> impl Strategy<Value = Migration> {
    (
        (4 * W)..20_000u64,
        proptest::option::of(0..W),
        // Up to 2 windows: later than the wait, so the late-event drop is exercised too.
        proptest::option::weighted(0.8, 0..2 * W),
    )
        .prop_map(|(gap, marker_at, event_at)| Migration {
            gap,
            marker_at,
            event_at,
        })
}

proptest! {
    /// Each migration that produced any signal is acted on exactly once, whichever order and
    /// timing (within the window) its two signals arrive in, with ticks at arbitrary times.
    #[test]
    fn one_action_per_migration(
        migs in proptest::collection::vec(migration(), 1..12),
        tick_every in 1u64..400,
    ) {
        let mut d = Dedup::new(W, 60_000, 0);
        d.on_vmclock(key(0), 0, true, 0);
        let mut t0 = 1000u64;
        let mut seq = 0u64;
        let mut marker = 0u64;
        for m in &migs {
            t0 += m.gap;
            let mut inputs: Vec<(u64, bool)> = Vec::new();
            if let Some(a) = m.marker_at { inputs.push((t0 + a, true)); }
            if let Some(a) = m.event_at { inputs.push((t0 + a, false)); }
            inputs.sort();
            let mut actions = 0;
            let mut now = t0;
            for (at, is_marker) in inputs {
                while now + tick_every < at {
                    now += tick_every;
                    if let Some(Verdict::Act(_)) = d.on_tick(now) { actions += 1; }
                }
                now = at;
                if let Some(Verdict::Act(_)) = d.on_tick(now) { actions += 1; }
                let v = if is_marker {
                    marker += 1;
                    d.on_vmclock(key(marker), marker, true, now)
                } else {
                    seq += 1;
                    d.on_migtime(seq, now, now)
                };
                if let Verdict::Act(_) = v { actions += 1; }
            }
            let end = t0 + 3 * W;
            while now < end {
                now += tick_every;
                if let Some(Verdict::Act(_)) = d.on_tick(now) { actions += 1; }
            }
            let expected = usize::from(m.marker_at.is_some() || m.event_at.is_some());
            prop_assert_eq!(actions, expected, "migration {:?}", m);
            prop_assert_eq!(d.next_deadline(), None);
        }
    }
}
