// SPDX-License-Identifier: GPL-2.0

//! What to do about a page snapshot (pure logic, `core` only).
//!
//! The guest keeps a [`Baseline`]: the `migration_seq` and
//! `tai_delta_total_ns` it is in step with. When the page's sequence differs,
//! the pending step is `total - baseline.total`: a guest that did not run
//! between two migrations (sequence +2) still applies every delta exactly once.
//! After any decision the baseline becomes the page's values: a refused delta
//! is dropped, never applied later by surprise.
//!
//! Checks, in order (each a "violation" handled per [`OnViolation`]):
//! 1. sequence went backwards → [`Outcome::RefusedSeqBackwards`] (never applied);
//! 2. the total changed while the sequence did not, or the pending delta
//!    overflows, or (sequence +1) the pending delta disagrees with
//!    `tai_delta_ns` / the compensated flag → [`Outcome::RefusedInconsistent`];
//! 3. `|pending| > limit_ns` → [`Outcome::RefusedOverLimit`].

use crate::abi::{
    Outcome,
    FLAG_COMPENSATED, //
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
    /// Largest step applied without a violation, in nanoseconds (absolute).
    pub limit_ns: u64,
    /// What a violation does.
    pub on_violation: OnViolation,
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

    /// Decides what a new snapshot asks for.
    pub fn decide(&self, s: &Snapshot, policy: &Policy) -> Decision {
        let next = Baseline::from_snapshot(s);
        let pending = s.tai_delta_total_ns.checked_sub(self.total_ns);

        if s.migration_seq == self.seq && s.tai_delta_total_ns == self.total_ns {
            return Decision {
                action: Action::Nothing,
                warned: None,
                pending_ns: Some(0),
                next: *self,
            };
        }

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
            Decision {
                action,
                warned,
                pending_ns: pending,
                next,
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
        if s.migration_seq == self.seq.wrapping_add(1) {
            // Exactly one migration: the page must agree with itself.
            let expected = if compensated { 0 } else { s.tai_delta_ns };
            if pending != expected || (compensated && s.tai_delta_ns != 0) {
                return violation(Outcome::RefusedInconsistent, None);
            }
        }
        if pending.unsigned_abs() > policy.limit_ns {
            return violation(Outcome::RefusedOverLimit, Some(pending));
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
        }
    }
}
