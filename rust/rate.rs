// SPDX-License-Identifier: GPL-2.0

//! Rate bounds of the step policy (pure logic, `core` only): how many steps, and how much live
//! migration movement, a window of guest CLOCK_MONOTONIC time allows, and how many refusal
//! reports.
//!
//! A host that writes consistent pages quickly could otherwise move the clock by `max_step_ms`
//! per page, any number of pages per second. [`StepLog`] remembers the last [`MAX_RATE_STEPS`]
//! steps (time and size) so that the policy can bound, within any [`Rate::window_ns`]:
//! - the number of steps of every kind (live, restore, compensated notify) to
//!   [`Rate::max_steps`];
//! - the sum of the live migration steps' sizes to the per-page limit itself (`max_step_ms`):
//!   the limit bounds the sum over the window, not only each page.
//!
//! Times are whatever monotonic nanosecond clock the caller passes in (the module: guest
//! CLOCK_MONOTONIC); a time earlier than a remembered one counts that step as recent.

/// Most steps a window can allow (the size of [`StepLog`]).
pub const MAX_RATE_STEPS: usize = 32;

/// The rate bound over all steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// The window, nanoseconds (0: no rate bound).
    pub window_ns: u64,
    /// Steps allowed per window, `1..=MAX_RATE_STEPS`.
    pub max_steps: u32,
}

impl Rate {
    /// No rate bound.
    pub const UNLIMITED: Self = Self {
        window_ns: 0,
        max_steps: MAX_RATE_STEPS as u32,
    };
}

/// What the window still allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// Steps left.
    pub steps: u32,
    /// Live migration movement left, nanoseconds (absolute).
    pub live_ns: u64,
}

impl Allowance {
    /// Anything.
    pub const UNLIMITED: Self = Self {
        steps: u32::MAX,
        live_ns: u64::MAX,
    };
}

/// Whether a step at `at` is within `window_ns` before `now`.
fn recent(now: i64, at: i64, window_ns: u64) -> bool {
    i128::from(now) - i128::from(at) < i128::from(window_ns)
}

/// The last steps made: when, and how much live movement each counted for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepLog {
    at: [i64; MAX_RATE_STEPS],
    live_ns: [u64; MAX_RATE_STEPS],
    len: usize,
    next: usize,
}

impl StepLog {
    /// No step yet.
    pub const fn new() -> Self {
        Self {
            at: [0; MAX_RATE_STEPS],
            live_ns: [0; MAX_RATE_STEPS],
            len: 0,
            next: 0,
        }
    }

    /// What `rate` still allows at `now`, with `live_budget_ns` of live movement per window.
    pub fn allowance(&self, now: i64, rate: Rate, live_budget_ns: u64) -> Allowance {
        if rate.window_ns == 0 {
            return Allowance::UNLIMITED;
        }
        let (mut steps, mut live) = (0u32, 0u64);
        for i in 0..self.len {
            if recent(now, self.at[i], rate.window_ns) {
                steps += 1;
                live = live.saturating_add(self.live_ns[i]);
            }
        }
        Allowance {
            steps: rate.max_steps.saturating_sub(steps),
            live_ns: live_budget_ns.saturating_sub(live),
        }
    }

    /// Records a step at `now` that counted `live_ns` against the live budget (0 for a restore).
    pub fn record(&mut self, now: i64, live_ns: u64) {
        self.at[self.next] = now;
        self.live_ns[self.next] = live_ns;
        self.next = (self.next + 1) % MAX_RATE_STEPS;
        if self.len < MAX_RATE_STEPS {
            self.len += 1;
        }
    }
}

/// At most `burst` reports per window of `window_ns` (a fixed window starting at the first
/// report after the previous window ended).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Burst {
    start: Option<i64>,
    n: u32,
}

impl Burst {
    /// Nothing reported yet.
    pub const fn new() -> Self {
        Self { start: None, n: 0 }
    }

    /// Whether one more report is allowed at `now`.
    pub fn allows(&self, now: i64, burst: u32, window_ns: u64) -> bool {
        match self.start {
            Some(s) if recent(now, s, window_ns) => self.n < burst,
            _ => true,
        }
    }

    /// Counts a report made at `now`.
    pub fn take(&mut self, now: i64, window_ns: u64) {
        match self.start {
            Some(s) if recent(now, s, window_ns) => self.n = self.n.saturating_add(1),
            _ => {
                self.start = Some(now);
                self.n = 1;
            }
        }
    }
}
