// SPDX-License-Identifier: GPL-2.0

//! The kernel's timekeeping as the module needs it: absolute clock readings, and a [`Stepper`]
//! that moves CLOCK_REALTIME by a delta.
//!
//! `kernel::time` covers instants and durations but exposes neither absolute nanoseconds nor the
//! realtime offset, which the event record and the step measurement need; those three readings
//! are the small wrappers below. The step has two methods ([`StepMethod`]):
//!
//! - **inject**: `kernel::time::inject_realtime_offset()`, from the project's kernel patch series
//!   (`kernel-patches/`), available when `rust/Kbuild` finds `timekeeping_inject_realtime_offset`
//!   in the target kernel's exports (`--cfg migtime_inject`). One update under the timekeeper
//!   lock: the applied step is exactly the intended one.
//! - **settimeofday** (stock kernels, or `step_method=2`): read, then `do_settimeofday64()`, with
//!   the read→set window compensated and corrected by [`fallback::read_then_set`], the pure loop
//!   this file drives through [`RealtimeClock`] (the host tests drive the same loop with a model
//!   clock).
//!
//! Either way the realtime offset must change for TFD_TIMER_CANCEL_ON_SET timerfds to fire
//! (timerfd compares `offs_real`), so a zero step (compensated migration) is a 1 ns nudge.
//! Both may sleep: call them from process context only.

use crate::abi::StepMethod;
use crate::fallback::{
    self,
    Applied,
    RealtimeClock,
    StepError,
    WindowEstimate, //
};
use kernel::{bindings, error::to_result, prelude::*};

const NSEC_PER_SEC: i64 = 1_000_000_000;

/// CLOCK_MONOTONIC now, nanoseconds. Not for NMI context.
pub(crate) fn monotonic_ns() -> i64 {
    // SAFETY: `ktime_get()` may be called from any context but NMI, and the module never runs in
    // NMI context (only in process context: the interrupt thread, the poll work, probe and
    // remove; and in hard-IRQ context).
    unsafe { bindings::ktime_get() }
}

/// CLOCK_REALTIME now, nanoseconds since the epoch. Not for NMI context.
pub(crate) fn realtime_ns() -> i64 {
    // SAFETY: As for `monotonic_ns`: any context but NMI.
    unsafe { bindings::ktime_get_real() }
}

/// The exact CLOCK_REALTIME - CLOCK_MONOTONIC offset (the kernel's `offs_real`), nanoseconds.
/// Not for NMI context.
pub(crate) fn realtime_offset_ns() -> i64 {
    // SAFETY: `ktime_mono_to_any()` reads the timekeeper under its seqcount (any context but
    // NMI); `TK_OFFS_REAL` is one of the valid `tk_offsets` indices.
    unsafe { bindings::ktime_mono_to_any(0, bindings::tk_offsets_TK_OFFS_REAL) }
}

/// Splits nanoseconds since the epoch into a normalised `timespec64` (`0 <= tv_nsec < 1e9`).
fn ns_to_timespec(ns: i64) -> bindings::timespec64 {
    bindings::timespec64 {
        tv_sec: ns.div_euclid(NSEC_PER_SEC),
        // CAST: `rem_euclid` is in `0..1e9`, which fits a 64-bit `c_long`.
        tv_nsec: ns.rem_euclid(NSEC_PER_SEC) as kernel::ffi::c_long,
    }
}

/// Sets CLOCK_REALTIME to `ns` nanoseconds since the epoch; resets NTP state and calls
/// `clock_was_set()`. May sleep.
fn set_realtime_ns(ns: i64) -> Result {
    let ts = ns_to_timespec(ns);
    // SAFETY: `ts` is a valid, initialised `timespec64` that lives across the call;
    // `do_settimeofday64()` validates its value and only reads it. We are in process context
    // (the only caller is `Stepper::step`, called from the interrupt thread or a work item).
    to_result(unsafe { bindings::do_settimeofday64(&ts) })
}

/// What [`Stepper::step`] did once the clock moved: see [`fallback::Applied`].
pub(crate) type StepOutcome = Applied<Error>;

/// How far the first set of a faulted step falls short: far beyond
/// [`fallback::CORRECTION_THRESHOLD_NS`], so a correction always follows, and within
/// [`fallback::MAX_WINDOW_NS`], so it looks like a slow set, not another agent's step.
const FAULT_SHORTFALL_NS: i64 = 1_000_000;

/// The kernel's timekeeping as the read-then-set loop drives it.
struct KernelClock {
    /// Fault injection (debugfs `fault_partial_step`): the first set lands
    /// [`FAULT_SHORTFALL_NS`] short and the second is rejected with `EINVAL`.
    fault: bool,
    /// Sets attempted so far in this step.
    sets: u32,
}

impl RealtimeClock for KernelClock {
    type Error = Error;

    fn monotonic_ns(&mut self) -> i64 {
        monotonic_ns()
    }

    fn offset_ns(&mut self) -> i64 {
        realtime_offset_ns()
    }

    fn set_realtime_ns(&mut self, ns: i64) -> Result {
        self.sets += 1;
        match (self.fault, self.sets) {
            (true, 1) => set_realtime_ns(ns.saturating_sub(FAULT_SHORTFALL_NS)),
            (true, 2) => Err(EINVAL),
            _ => set_realtime_ns(ns),
        }
    }
}

/// Steps CLOCK_REALTIME by the chosen [`StepMethod`]. Lives in the engine's locked state: one
/// step at a time.
pub(crate) struct Stepper {
    method: StepMethod,
    /// Read→set windows measured by the settimeofday method.
    window: WindowEstimate,
}

impl Stepper {
    /// A stepper using `method`. [`StepMethod::Inject`] is only honoured where the kernel has the
    /// primitive (`Config` refuses it otherwise); here it falls back rather than fail.
    pub(crate) const fn new(method: StepMethod) -> Self {
        let method = match method {
            StepMethod::Inject if crate::params::INJECT_AVAILABLE => StepMethod::Inject,
            _ => StepMethod::SetTimeOfDay,
        };
        Self {
            method,
            window: WindowEstimate::new(),
        }
    }

    /// The method this stepper uses.
    pub(crate) const fn method(&self) -> StepMethod {
        self.method
    }

    /// Steps CLOCK_REALTIME by `step_ns` (0: a 1 ns nudge so waiters fire), which resets NTP state
    /// and wakes clock-was-set waiters. May sleep. An error means nothing was applied; once the
    /// clock moved the result is `Ok`, partial or not ([`Applied::stop`]). `fault` injects a
    /// rejected correction into a read-then-set step (see [`KernelClock`]).
    pub(crate) fn step(&mut self, step_ns: i64, fault: bool) -> Result<StepOutcome> {
        match self.method {
            StepMethod::Inject => inject(step_ns),
            StepMethod::SetTimeOfDay => {
                let mut clock = KernelClock { fault, sets: 0 };
                // A faulted step's windows are not the kernel's: measure them on a copy.
                let mut scratch = self.window;
                let window = if fault {
                    &mut scratch
                } else {
                    &mut self.window
                };
                fallback::read_then_set(&mut clock, window, step_ns).map_err(|e| match e {
                    StepError::Overflow => ERANGE,
                    StepError::Set(e) => e,
                })
            }
        }
    }
}

/// The inject method: exact, in one update.
#[cfg(migtime_inject)]
fn inject(step_ns: i64) -> Result<StepOutcome> {
    use kernel::time::{
        inject_realtime_offset,
        Delta, //
    };
    let delta = if step_ns == 0 { 1 } else { step_ns };
    let off0 = realtime_offset_ns();
    inject_realtime_offset(Delta::from_nanos(delta))?;
    // Exact unless another agent set the clock in between, which the residual then shows.
    let applied = realtime_offset_ns().wrapping_sub(off0);
    Ok(StepOutcome {
        applied_ns: applied,
        residual_ns: applied.wrapping_sub(step_ns),
        sets: 1,
        stop: fallback::Stop::Done,
    })
}

/// The inject method on a kernel without the primitive: never selected ([`Stepper::new`]).
#[cfg(not(migtime_inject))]
fn inject(_step_ns: i64) -> Result<StepOutcome> {
    Err(ENOTSUPP)
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
        for method in [StepMethod::Inject, StepMethod::SetTimeOfDay] {
            let mut s = Stepper::new(method);
            let before = realtime_offset_ns();
            assert!(s.step(i64::MAX, false).is_err());
            // A target before the epoch is rejected by the kernel, and the clock is left alone
            // (these tests never move the clock: the guest tests' NTP state must survive them).
            assert!(s.step(i64::MIN, false).is_err());
            assert_eq!(realtime_offset_ns(), before);
        }
    }
}
