// SPDX-License-Identifier: GPL-2.0

//! Helpers shared by the policy tests.

// Each test crate uses a part of these.
#![allow(dead_code)]

use migtime_abi::abi::Outcome;
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy};
use migtime_abi::seqlock::Snapshot;
use migtime_abi::tracker::Tracker;

pub const SEC: i64 = 1_000_000_000;

pub fn pol(v: OnViolation) -> Policy {
    Policy::per_page(600 * SEC as u64, v)
}

/// Guest CLOCK_MONOTONIC of the `i`-th check when checks are `period` apart.
pub fn at(i: usize, period: i64) -> i64 {
    i as i64 * period
}

pub fn snap(seq: u64, flags: u32, delta: i64, total: i64) -> Snapshot {
    Snapshot {
        seq_count: 2,
        flags,
        migration_seq: seq,
        tai_delta_ns: delta,
        tai_delta_total_ns: total,
    }
}

pub fn base(seq: u64, total: i64) -> Baseline {
    Baseline {
        seq,
        total_ns: total,
    }
}

pub fn apply(step_ns: i64) -> Action {
    Action::Apply {
        step_ns,
        outcome: if step_ns == 0 {
            Outcome::Notified
        } else {
            Outcome::Stepped
        },
    }
}

/// Feeds `pages` to `t` as the module does (each page read `reads` times, a minute apart so
/// that no refusal is coalesced, every step succeeding) and returns, per page, the actions that
/// were not [`Action::Nothing`].
pub fn play(t: &mut Tracker, p: &Policy, pages: &[Snapshot], reads: usize) -> Vec<Vec<Action>> {
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
