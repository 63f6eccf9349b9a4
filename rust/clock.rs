// SPDX-License-Identifier: GPL-2.0

//! A small safe wrapper around the kernel's timekeeping: read the clocks, and step
//! CLOCK_REALTIME by a delta with `do_settimeofday64()`.
//!
//! The kernel exports no "add this delta" primitive (`timekeeping_inject_offset` is static), so
//! a step is read-then-set: `target = now + step`. The error of that is the time between the read
//! and the set. [`step_realtime`] reads "now" as late as possible (monotonic right before the
//! call, plus the exact CLOCK_REALTIME - CLOCK_MONOTONIC offset), measures what the set really
//! did (the change of that offset, exact to the nanosecond) and compensates the next step by the
//! read→set window it measured this time.
//!
//! `do_settimeofday64()` may sleep: call these from process context only.

use kernel::{
    bindings,
    error::to_result,
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

const NSEC_PER_SEC: i64 = 1_000_000_000;

/// Largest read→set window estimate used to compensate a step (1 ms). A larger measured window
/// (a preempted worker) is treated as noise and not used for the next step.
const MAX_WINDOW_NS: i64 = 1_000_000;

/// How many times a zero step is retried with a growing nudge until the offset changes.
const MAX_NUDGES: i64 = 8;

/// CLOCK_MONOTONIC now, nanoseconds.
pub(crate) fn monotonic_ns() -> i64 {
    // SAFETY: `ktime_get()` has no preconditions; it may be called from any context.
    unsafe { bindings::ktime_get() }
}

/// CLOCK_REALTIME now, nanoseconds since the epoch.
pub(crate) fn realtime_ns() -> i64 {
    // SAFETY: `ktime_get_real()` has no preconditions; it may be called from any context.
    unsafe { bindings::ktime_get_real() }
}

/// The exact CLOCK_REALTIME - CLOCK_MONOTONIC offset (the kernel's `offs_real`), nanoseconds.
pub(crate) fn realtime_offset_ns() -> i64 {
    // SAFETY: `ktime_mono_to_any()` only reads the timekeeper under its seqcount; any
    // `tk_offsets` value below `TK_OFFS_MAX` is valid, and `TK_OFFS_REAL` is one.
    unsafe { bindings::ktime_mono_to_any(0, bindings::tk_offsets_TK_OFFS_REAL) }
}

/// Splits nanoseconds since the epoch into a normalised `timespec64` (`0 <= tv_nsec < 1e9`).
pub(crate) fn ns_to_timespec(ns: i64) -> bindings::timespec64 {
    bindings::timespec64 {
        tv_sec: ns.div_euclid(NSEC_PER_SEC),
        // CAST: `rem_euclid` is in `0..1e9`, which fits a 64-bit `c_long`.
        tv_nsec: ns.rem_euclid(NSEC_PER_SEC) as kernel::ffi::c_long,
    }
}

/// Sets CLOCK_REALTIME to `ns` nanoseconds since the epoch. Resets NTP state and calls
/// `clock_was_set()`. May sleep.
fn set_realtime_ns(ns: i64) -> Result {
    let ts = ns_to_timespec(ns);
    // SAFETY: `ts` is a valid, initialised `timespec64` living across the call;
    // `do_settimeofday64()` validates its value and only reads it.
    to_result(unsafe { bindings::do_settimeofday64(&ts) })
}

/// What [`Stepper::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StepOutcome {
    /// The change of the CLOCK_REALTIME - CLOCK_MONOTONIC offset, nanoseconds.
    pub(crate) applied_ns: i64,
    /// `applied_ns - step_ns`.
    pub(crate) residual_ns: i64,
    /// Calls to `do_settimeofday64()` made (more than one only for a zero step).
    pub(crate) sets: u32,
}

/// Steps CLOCK_REALTIME, remembering the read→set window to compensate the next step.
pub(crate) struct Stepper {
    /// Estimated read→set window, nanoseconds (`0..=MAX_WINDOW_NS`).
    window_ns: Atomic<i64>,
}

impl Stepper {
    /// A stepper with no window estimate yet.
    pub(crate) const fn new() -> Self {
        Self {
            window_ns: Atomic::new(0),
        }
    }

    /// Current read→set window estimate, nanoseconds.
    pub(crate) fn window_ns(&self) -> i64 {
        self.window_ns.load(Relaxed)
    }

    /// One read-then-set of CLOCK_REALTIME to "now + `delta_ns`"; returns the measured change
    /// of the realtime offset.
    fn set_once(&self, delta_ns: i64) -> Result<i64> {
        let window = self.window_ns();
        let off0 = realtime_offset_ns();
        let m1 = monotonic_ns();
        let target = m1
            .checked_add(off0)
            .and_then(|t| t.checked_add(delta_ns))
            .and_then(|t| t.checked_add(window))
            .ok_or(ERANGE)?;
        set_realtime_ns(target)?;
        let off1 = realtime_offset_ns();
        let applied = off1.checked_sub(off0).ok_or(ERANGE)?;
        // What the set really lost: intended (delta + window) minus applied.
        if let Some(lost) = delta_ns
            .checked_add(window)
            .and_then(|i| i.checked_sub(applied))
        {
            if (0..=MAX_WINDOW_NS).contains(&lost) {
                self.window_ns.store(lost, Relaxed);
            }
        }
        Ok(applied)
    }

    /// Steps CLOCK_REALTIME by `step_ns` (may be 0) and resets NTP state.
    ///
    /// The realtime offset always changes, so TFD_TIMER_CANCEL_ON_SET timerfds fire (timerfd
    /// compares `offs_real`): a zero step that happened to change nothing is retried with a
    /// nudge of +1, +2, ... ns. May sleep.
    pub(crate) fn step(&self, step_ns: i64) -> Result<StepOutcome> {
        let mut sets = 0u32;
        let mut nudge = 0i64;
        loop {
            let delta = step_ns.checked_add(nudge).ok_or(ERANGE)?;
            let applied = self.set_once(delta)?;
            sets += 1;
            if applied != 0 || nudge >= MAX_NUDGES {
                return Ok(StepOutcome {
                    applied_ns: applied,
                    residual_ns: applied.checked_sub(step_ns).ok_or(ERANGE)?,
                    sets,
                });
            }
            nudge += 1;
        }
    }
}

#[kunit_tests(migtime_clock)]
mod tests {
    use super::*;

    #[test]
    fn timespec_normalised() {
        let t = ns_to_timespec(1_500_000_000);
        assert_eq!((t.tv_sec, t.tv_nsec), (1, 500_000_000));
        let t = ns_to_timespec(-1);
        assert_eq!((t.tv_sec, t.tv_nsec), (-1, 999_999_999));
        let t = ns_to_timespec(i64::MAX);
        assert_eq!(t.tv_sec, i64::MAX / NSEC_PER_SEC);
        let t = ns_to_timespec(i64::MIN);
        assert!(t.tv_nsec >= 0 && t.tv_nsec < 1_000_000_000);
    }

    #[test]
    fn offset_matches_clocks() {
        // realtime - monotonic, read around the exact offset, agrees within a generous bound.
        let m = monotonic_ns();
        let r = realtime_ns();
        let off = realtime_offset_ns();
        let m2 = monotonic_ns();
        let slack = m2 - m + 1_000_000;
        assert!((r - m - off).abs() <= slack);
        // The offset is stable without a set.
        assert_eq!(realtime_offset_ns(), off);
    }

    #[test]
    fn step_overflow_is_an_error_not_a_panic() {
        let s = Stepper::new();
        assert_eq!(s.step(i64::MAX).err(), Some(ERANGE));
        // A target before the epoch is rejected by the kernel, and the clock is left alone.
        assert!(s.step(i64::MIN).is_err());
    }
}
