// SPDX-License-Identifier: GPL-2.0

//! What the guest remembers between checks (pure logic, `core` only): the [`Baseline`], the
//! rate window's steps, the refused pages already reported, the refusal and log budgets, and
//! the failed attempts at the current page. [`crate::policy`] describes the rules.

use crate::abi::FLAG_RESTORE;
use crate::policy::{
    Action,
    Baseline,
    Decision,
    Policy, //
};
use crate::rate::{
    Burst,
    StepLog, //
};
use crate::seqlock::Snapshot;

/// How many times the step for one page is attempted when the kernel rejects it.
pub const MAX_STEP_ATTEMPTS: u32 = 3;

/// Refused pages that did not move the baseline, remembered so that each is reported once.
pub const REFUSED_PAGES: usize = 8;

/// Refusals of pages that do not move the baseline reported at most per [`REFUSAL_WINDOW_NS`].
pub const REFUSAL_BURST: u32 = 8;

/// The window of [`REFUSAL_BURST`], nanoseconds (60 s).
pub const REFUSAL_WINDOW_NS: u64 = 60_000_000_000;

/// Refusal and warning log lines at most per [`LOG_WINDOW_NS`] (as the kernel's printk
/// ratelimit default).
pub const LOG_BURST: u32 = 10;

/// The window of [`LOG_BURST`], nanoseconds (5 s).
pub const LOG_WINDOW_NS: u64 = 5_000_000_000;

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
    /// The step was applied, wholly or partly (or the page refused): the baseline moved as
    /// decided.
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

/// What the guest remembers between checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    baseline: Baseline,
    /// Steps of the rate window.
    steps: StepLog,
    /// Refused pages that left the baseline where it was: not reported again.
    refused: [Option<PageKey>; REFUSED_PAGES],
    refused_next: usize,
    /// Reports of such refusals in the current window.
    quiet: Burst,
    /// Refusal and warning log lines in the current window.
    logs: Burst,
    /// Refusals not reported (coalesced) since bind.
    coalesced: u64,
    /// A newer page whose step the kernel rejected, and how many times.
    failed: Option<(PageKey, u32)>,
}

impl Tracker {
    /// A tracker in step with `baseline`.
    pub const fn new(baseline: Baseline) -> Self {
        Self {
            baseline,
            steps: StepLog::new(),
            refused: [None; REFUSED_PAGES],
            refused_next: 0,
            quiet: Burst::new(),
            logs: Burst::new(),
            coalesced: 0,
            failed: None,
        }
    }

    /// What the clock is in step with.
    pub const fn baseline(&self) -> Baseline {
        self.baseline
    }

    /// Refusals coalesced (not reported) since bind.
    pub const fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// Decides what `s` asks for at `now_ns` (guest CLOCK_MONOTONIC). A page already refused
    /// without moving the baseline, or given up on after [`MAX_STEP_ATTEMPTS`] failed steps, is
    /// [`Action::Nothing`]: it was reported; so is such a refusal beyond [`REFUSAL_BURST`] in
    /// the window (with [`Decision::coalesced`] set).
    pub fn decide(&self, s: &Snapshot, policy: &Policy, now_ns: i64) -> Decision {
        let key = PageKey::of(s);
        let reported = self.refused.contains(&Some(key))
            || matches!(self.failed, Some((k, n)) if k == key && n >= MAX_STEP_ATTEMPTS);
        if reported {
            return Decision::nothing(self.baseline, None, false);
        }
        let allows = self.steps.allowance(now_ns, policy.rate, policy.limit_ns);
        let mut d = self.baseline.decide_within(s, policy, allows);
        let quiet = d.next == self.baseline && matches!(d.action, Action::Refuse(_));
        if quiet && !self.quiet.allows(now_ns, REFUSAL_BURST, REFUSAL_WINDOW_NS) {
            return Decision::nothing(self.baseline, d.pending_ns, true);
        }
        d.log = self.logs.allows(now_ns, LOG_BURST, LOG_WINDOW_NS);
        d
    }

    /// Records what came of acting on `d` (decided by [`Tracker::decide`] for `s` at `now_ns`);
    /// `applied` is false when the kernel rejected the step before moving the clock at all. A
    /// failed step leaves the baseline alone; a partly applied one is applied.
    pub fn settle(&mut self, s: &Snapshot, d: &Decision, applied: bool, now_ns: i64) -> Settled {
        let key = PageKey::of(s);
        if d.coalesced {
            self.coalesced = self.coalesced.saturating_add(1);
        }
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
                self.note(s, d, key, now_ns);
                self.failed = None;
                self.baseline = d.next;
                Settled::Done
            }
        }
    }

    /// Updates the memories for an acted-on decision.
    fn note(&mut self, s: &Snapshot, d: &Decision, key: PageKey, now_ns: i64) {
        let refused = matches!(d.action, Action::Refuse(_));
        if refused && d.next == self.baseline {
            self.refused[self.refused_next] = Some(key);
            self.refused_next = (self.refused_next + 1) % REFUSED_PAGES;
            self.quiet.take(now_ns, REFUSAL_WINDOW_NS);
        }
        if d.log && (refused || d.warned.is_some()) {
            self.logs.take(now_ns, LOG_WINDOW_NS);
        }
        if let Action::Apply { step_ns, .. } = d.action {
            let live = if s.flags & FLAG_RESTORE != 0 {
                0
            } else {
                step_ns.unsigned_abs()
            };
            self.steps.record(now_ns, live);
        }
    }
}
