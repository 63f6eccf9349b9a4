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
//! 3. `|pending| > limit_ns` → [`Outcome::RefusedOverLimit`].
//!
//! [`Tracker`] adds what the guest remembers between checks: a refused page
//! that did not move the baseline is reported once, not at every poll, and a
//! step the kernel rejected is retried a bounded number of times
//! ([`MAX_STEP_ATTEMPTS`]) with the baseline left where it was.

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

/// How many times the step for one page is attempted when the kernel rejects it.
pub const MAX_STEP_ATTEMPTS: u32 = 3;

/// The page content a decision was about (everything but the seqlock count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PageKey {
    flags: u32,
    migration_seq: u64,
    tai_delta_ns: i64,
    tai_delta_total_ns: i64,
}

impl PageKey {
    const fn of(s: &Snapshot) -> Self {
        Self {
            flags: s.flags,
            migration_seq: s.migration_seq,
            tai_delta_ns: s.tai_delta_ns,
            tai_delta_total_ns: s.tai_delta_total_ns,
        }
    }
}

/// How acting on a [`Decision`] went, for [`Tracker::settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was to be done.
    Nothing,
    /// The step was applied (or the page refused): the baseline moved as decided.
    Done,
    /// The step failed; it will be tried again at the next check (`attempts` so far).
    Failed {
        /// Attempts made for this page, `1..MAX_STEP_ATTEMPTS`.
        attempts: u32,
    },
    /// The step failed [`MAX_STEP_ATTEMPTS`] times: the page is given up on (not retried,
    /// baseline unchanged) until the host writes a different page.
    GaveUp,
}

/// What the guest remembers between checks: the baseline, a refused page that did not move it
/// (reported once), and the failed attempts at the current newer page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    baseline: Baseline,
    /// A refused page that left the baseline where it was: not reported again while the page
    /// stays the same.
    refused: Option<PageKey>,
    /// A newer page whose step the kernel rejected, and how many times.
    failed: Option<(PageKey, u32)>,
}

impl Tracker {
    /// A tracker in step with `baseline`.
    pub const fn new(baseline: Baseline) -> Self {
        Self {
            baseline,
            refused: None,
            failed: None,
        }
    }

    /// What the clock is in step with.
    pub const fn baseline(&self) -> Baseline {
        self.baseline
    }

    /// Decides what `s` asks for. A page already refused without moving the baseline, or given
    /// up on after [`MAX_STEP_ATTEMPTS`] failed steps, is [`Action::Nothing`]: it was reported.
    pub fn decide(&self, s: &Snapshot, policy: &Policy) -> Decision {
        let key = PageKey::of(s);
        let reported = self.refused == Some(key)
            || matches!(self.failed, Some((k, n)) if k == key && n >= MAX_STEP_ATTEMPTS);
        if reported {
            return Decision {
                action: Action::Nothing,
                warned: None,
                pending_ns: None,
                next: self.baseline,
            };
        }
        self.baseline.decide(s, policy)
    }

    /// Records what came of acting on `d` (decided by [`Tracker::decide`] for `s`); `applied`
    /// is false when the kernel rejected the step. A failed step leaves the baseline alone.
    pub fn settle(&mut self, s: &Snapshot, d: &Decision, applied: bool) -> Settled {
        let key = PageKey::of(s);
        match d.action {
            Action::Nothing => Settled::Nothing,
            Action::Apply { .. } if !applied => {
                let attempts = match self.failed {
                    Some((k, n)) if k == key => n.saturating_add(1),
                    _ => 1,
                };
                self.failed = Some((key, attempts));
                if attempts >= MAX_STEP_ATTEMPTS {
                    Settled::GaveUp
                } else {
                    Settled::Failed { attempts }
                }
            }
            Action::Apply { .. } | Action::Refuse(_) | Action::Panic(_) => {
                self.refused = (d.next == self.baseline && matches!(d.action, Action::Refuse(_)))
                    .then_some(key);
                self.failed = None;
                self.baseline = d.next;
                Settled::Done
            }
        }
    }
}
