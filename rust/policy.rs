// SPDX-License-Identifier: GPL-2.0

//! What to do about a page snapshot (pure logic, `core` only).
//!
//! The guest keeps a [`Baseline`]: the `migration_seq` and
//! `tai_delta_total_ns` it is in step with. When the page's sequence is above
//! the baseline's, the pending step is `total - baseline.total`: a guest that
//! did not run between two migrations (sequence +2) still applies every delta
//! exactly once.
//!
//! **Invariant: the baseline's `migration_seq` only moves forward.** A page
//! whose sequence is not above the baseline's never causes a step and never
//! moves the baseline (the only exception is [`OnViolation::Warn`], chosen by
//! the operator: a total changed under the same sequence is then stepped and
//! adopted). A newer page moves the baseline to itself once it is acted on,
//! whether it was applied or refused: a refused delta is dropped, never applied
//! later by surprise. So no sequence of page contents, however hostile, makes
//! the guest step twice for one `migration_seq`. The sequence does not wrap: a
//! page going from `u64::MAX` to 0 is "backwards" (at one migration a second,
//! 2^64 takes 584 billion years; a host that resets its sequence gets
//! refusals, reported once per distinct page, until the guest re-baselines by
//! reloading the module).
//!
//! Checks, in order (each a "violation" handled per [`OnViolation`]):
//! 1. sequence went backwards → [`Outcome::RefusedSeqBackwards`] (never applied);
//! 2. the total changed while the sequence did not, or the pending delta
//!    overflows, or (sequence +1) the pending delta disagrees with
//!    `tai_delta_ns` / the compensated flag → [`Outcome::RefusedInconsistent`];
//! 3. `|pending| > limit` → [`Outcome::RefusedOverLimit`], where the limit is
//!    [`Policy::limit_ns`] (`max_step_ms`) for a live migration and
//!    [`Policy::restore_limit_ns`] for a page with [`FLAG_RESTORE`] (the VM
//!    was brought back from saved state: hours or days are normal);
//! 4. the rate bound ([`crate::rate`]): more than [`Rate::max_steps`] steps in
//!    [`Rate::window_ns`], or live migration steps adding up to more than
//!    `limit_ns` in that window → [`Outcome::RefusedRate`].
//!
//! A newer page refused for any reason is adopted and its delta dropped. The
//! rate bound thus caps what a host writing consistent pages quickly can do:
//! within any window, live migrations move the clock by at most `limit_ns` in
//! total, and restores at most `max_steps` times by at most
//! `restore_limit_ns` each.
//!
//! [`Tracker`](crate::tracker::Tracker) adds what the guest remembers between
//! checks: the steps of the rate window; refused pages that did not move the
//! baseline (the last 8, each reported once, and at most 8 such reports per
//! minute, the rest coalesced: a host alternating backwards pages gets a
//! bounded number of events); a log budget for refusals (10 lines per 5 s, as
//! the kernel's printk ratelimit); and a step the kernel
//! rejected, retried a bounded number of times ([`MAX_STEP_ATTEMPTS`](crate::tracker::MAX_STEP_ATTEMPTS)) with
//! the baseline left where it was. A step that moved the clock only partly
//! (a later set rejected) counts as applied: the baseline moves, the
//! remainder is reported as its residual and never re-applied.

use crate::abi::{
    Outcome,
    FLAG_COMPENSATED,
    FLAG_RESTORE, //
};
use crate::rate::{
    Allowance,
    Rate, //
};
use crate::seqlock::Snapshot;

/// What to do when the page violates a check (module parameter `on_violation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnViolation {
    /// Log a warning and apply the delta anyway where one is well defined
    /// (over-limit, total changed without sequence); otherwise as `Refuse`.
    Warn,
    /// Log a warning and leave the clock alone (default).
    Refuse,
    /// Panic the guest: "cooperate or die hard".
    Panic,
}

impl OnViolation {
    /// Parses the module parameter value: 0 warn, 1 refuse, 2 panic.
    pub const fn from_param(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Warn),
            1 => Some(Self::Refuse),
            2 => Some(Self::Panic),
            _ => None,
        }
    }
}

/// The step policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Largest live migration step applied without a violation, in nanoseconds (absolute); also
    /// the live steps' budget per rate window.
    pub limit_ns: u64,
    /// Largest step for a page with [`FLAG_RESTORE`], nanoseconds (absolute).
    pub restore_limit_ns: u64,
    /// The rate bound over all steps.
    pub rate: Rate,
    /// What a violation does.
    pub on_violation: OnViolation,
}

impl Policy {
    /// A policy with one limit for every page and no rate bound.
    pub const fn per_page(limit_ns: u64, on_violation: OnViolation) -> Self {
        Self {
            limit_ns,
            restore_limit_ns: limit_ns,
            rate: Rate::UNLIMITED,
            on_violation,
        }
    }
}

/// The page state the guest is in step with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    /// `migration_seq` last acted on.
    pub seq: u64,
    /// `tai_delta_total_ns` the clock already includes.
    pub total_ns: i64,
}

/// What the caller must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed.
    Nothing,
    /// Step CLOCK_REALTIME by `step_ns` (0: no step beyond the minimal nudge
    /// that makes clock-was-set waiters fire), reset NTP state, notify.
    Apply {
        /// Nanoseconds to add to CLOCK_REALTIME.
        step_ns: i64,
        /// [`Outcome::Stepped`] or [`Outcome::Notified`].
        outcome: Outcome,
    },
    /// Leave the clock alone.
    Refuse(Outcome),
    /// Panic the guest.
    Panic(Outcome),
}

/// The result of [`Baseline::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// A violation that was found but acted upon anyway ([`OnViolation::Warn`]).
    pub warned: Option<Outcome>,
    /// The pending delta computed from the page, if it is defined.
    pub pending_ns: Option<i64>,
    /// The baseline to keep after acting.
    pub next: Baseline,
    /// Whether a refusal or warning may be logged (the log budget allows it).
    pub log: bool,
    /// A refusal not reported because too many were reported lately ([`Action::Nothing`]).
    pub coalesced: bool,
}

impl Decision {
    /// Nothing to do; the baseline stays `b`.
    pub const fn nothing(b: Baseline, pending_ns: Option<i64>, coalesced: bool) -> Self {
        Self {
            action: Action::Nothing,
            warned: None,
            pending_ns,
            next: b,
            log: false,
            coalesced,
        }
    }
}

impl Baseline {
    /// The baseline adopted when the module binds: what the page says now is
    /// taken as already reflected in the clock (the guest booted, or was last
    /// set, on this host).
    pub const fn from_snapshot(s: &Snapshot) -> Self {
        Self {
            seq: s.migration_seq,
            total_ns: s.tai_delta_total_ns,
        }
    }

    /// Decides what a new snapshot asks for, with no rate bound.
    pub fn decide(&self, s: &Snapshot, policy: &Policy) -> Decision {
        self.decide_within(s, policy, Allowance::UNLIMITED)
    }

    /// Decides what a new snapshot asks for, given what the rate window still `allows`.
    pub fn decide_within(&self, s: &Snapshot, policy: &Policy, allows: Allowance) -> Decision {
        let next = Baseline::from_snapshot(s);
        let pending = s.tai_delta_total_ns.checked_sub(self.total_ns);

        if s.migration_seq == self.seq && s.tai_delta_total_ns == self.total_ns {
            return Decision::nothing(*self, Some(0), false);
        }

        // Only a newer page may move the baseline (a warned apply adopts the page too).
        let newer = s.migration_seq > self.seq;
        let violation = |outcome: Outcome, applicable: Option<i64>| -> Decision {
            let (action, warned) = match (policy.on_violation, applicable) {
                (OnViolation::Panic, _) => (Action::Panic(outcome), None),
                (OnViolation::Warn, Some(step_ns)) => (
                    Action::Apply {
                        step_ns,
                        outcome: Outcome::Stepped,
                    },
                    Some(outcome),
                ),
                (OnViolation::Warn, None) | (OnViolation::Refuse, _) => {
                    (Action::Refuse(outcome), None)
                }
            };
            let adopt = newer || warned.is_some();
            Decision {
                action,
                warned,
                pending_ns: pending,
                next: if adopt { next } else { *self },
                log: true,
                coalesced: false,
            }
        };

        if s.migration_seq < self.seq {
            return violation(Outcome::RefusedSeqBackwards, None);
        }
        let pending = match pending {
            Some(p) => p,
            None => return violation(Outcome::RefusedInconsistent, None),
        };
        if s.migration_seq == self.seq {
            // The total moved but no migration was announced.
            return violation(Outcome::RefusedInconsistent, Some(pending));
        }
        let compensated = s.flags & FLAG_COMPENSATED != 0;
        if self.seq.checked_add(1) == Some(s.migration_seq) {
            // Exactly one migration: the page must agree with itself.
            let expected = if compensated { 0 } else { s.tai_delta_ns };
            if pending != expected || (compensated && s.tai_delta_ns != 0) {
                return violation(Outcome::RefusedInconsistent, None);
            }
        }
        let restore = s.flags & FLAG_RESTORE != 0;
        let limit = if restore {
            policy.restore_limit_ns
        } else {
            policy.limit_ns
        };
        if pending.unsigned_abs() > limit {
            return violation(Outcome::RefusedOverLimit, Some(pending));
        }
        if allows.steps == 0 || (!restore && pending.unsigned_abs() > allows.live_ns) {
            return violation(Outcome::RefusedRate, Some(pending));
        }
        let outcome = if pending == 0 {
            Outcome::Notified
        } else {
            Outcome::Stepped
        };
        Decision {
            action: Action::Apply {
                step_ns: pending,
                outcome,
            },
            warned: None,
            pending_ns: Some(pending),
            next,
            log: true,
            coalesced: false,
        }
    }
}
