// SPDX-License-Identifier: GPL-2.0

//! A model of the kernel's realtime clock for the read-then-set loop
//! ([`migtime_abi::fallback::read_then_set`](crate::fallback::read_then_set)).
//!
//! CLOCK_MONOTONIC advances by `tick_ns` at every reading and at every set (the
//! kernel takes its own timestamp inside `do_settimeofday64()`), so each set
//! loses a window as the real one does. Any set can be rejected (`reject`, a
//! bit per set call), and another agent can step the clock by `agent_ns` just
//! before a set (`agent_before`: the set overwrites it) or between a set and
//! its read-back (`agent_after`). The model keeps what moved the clock apart:
//! `ours_ns` (the sets made through the trait) and `foreign_ns` (the agent).

use crate::fallback::RealtimeClock;

/// The model clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelClock {
    /// CLOCK_MONOTONIC, nanoseconds.
    pub mono_ns: i64,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, nanoseconds.
    pub offset_ns: i64,
    /// Monotonic time passing per reading and per set, nanoseconds.
    pub tick_ns: i64,
    /// Bit `n`: the `n`-th set call (from 0) is rejected.
    pub reject: u64,
    /// Bit `n`: the agent steps just before the `n`-th set call.
    pub agent_before: u64,
    /// Bit `n`: the agent steps just after the `n`-th set call, before anything reads.
    pub agent_after: u64,
    /// The agent's step, nanoseconds.
    pub agent_ns: i64,
    /// Set calls made.
    pub set_calls: u32,
    /// Clock movement made by successful sets, nanoseconds.
    pub ours_ns: i128,
    /// Clock movement made by the agent, nanoseconds.
    pub foreign_ns: i128,
}

/// Why the model rejected a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

impl ModelClock {
    /// A clock at `realtime_ns` with CLOCK_MONOTONIC at `mono_ns`, `tick_ns` per call, no
    /// rejection and no agent.
    pub const fn new(mono_ns: i64, realtime_ns: i64, tick_ns: i64) -> Self {
        Self {
            mono_ns,
            offset_ns: realtime_ns.wrapping_sub(mono_ns),
            tick_ns,
            reject: 0,
            agent_before: 0,
            agent_after: 0,
            agent_ns: 0,
            set_calls: 0,
            ours_ns: 0,
            foreign_ns: 0,
        }
    }

    fn bit(mask: u64, n: u32) -> bool {
        n < 64 && mask >> n & 1 == 1
    }

    fn agent_steps(&mut self) {
        self.offset_ns = self.offset_ns.wrapping_add(self.agent_ns);
        self.foreign_ns += i128::from(self.agent_ns);
    }
}

impl RealtimeClock for ModelClock {
    type Error = Rejected;

    fn monotonic_ns(&mut self) -> i64 {
        self.mono_ns = self.mono_ns.wrapping_add(self.tick_ns);
        self.mono_ns
    }

    fn offset_ns(&mut self) -> i64 {
        self.offset_ns
    }

    fn set_realtime_ns(&mut self, ns: i64) -> Result<(), Rejected> {
        let n = self.set_calls;
        self.set_calls += 1;
        if Self::bit(self.agent_before, n) {
            self.agent_steps();
        }
        // As the kernel, a time before the epoch is invalid.
        if Self::bit(self.reject, n) || ns < 0 {
            return Err(Rejected);
        }
        self.mono_ns = self.mono_ns.wrapping_add(self.tick_ns);
        let offset = ns.wrapping_sub(self.mono_ns);
        self.ours_ns += i128::from(offset) - i128::from(self.offset_ns);
        self.offset_ns = offset;
        if Self::bit(self.agent_after, n) {
            self.agent_steps();
        }
        Ok(())
    }
}
