// SPDX-License-Identifier: GPL-2.0

//! The module parameters, validated once at load (and again at each bind).

use crate::abi::StepMethod;
use crate::policy::{
    OnViolation,
    Policy, //
};
use crate::rate::{
    Rate,
    MAX_RATE_STEPS, //
};
use core::ops::RangeInclusive;
use kernel::prelude::*;

// Each parameter's valid range, written once: `Config::validate` checks against it and the
// error message prints it. The `module!` descriptions in `migtime.rs` must be literals; the
// `descriptions_state_the_ranges` test keeps them in step.

/// `poll_ms`: the page poll period without a doorbell, ms.
pub(crate) const POLL_MS: RangeInclusive<u32> = 1..=60_000;
/// `max_step_ms`: the largest step applied without a violation, ms (its nanoseconds fit a `u64`).
pub(crate) const MAX_STEP_MS: RangeInclusive<u64> = 1..=u64::MAX / 1_000_000;
/// `read_attempts`: seqlock read attempts per check.
pub(crate) const READ_ATTEMPTS: RangeInclusive<u32> = 1..=100_000;
/// `max_restore_ms`: the largest restore step applied without a violation, ms.
pub(crate) const MAX_RESTORE_MS: RangeInclusive<u64> = 1..=u64::MAX / 1_000_000;
/// `max_steps`: steps allowed per `step_window_ms` (the rate bound's capacity).
// CAST: `MAX_RATE_STEPS` is 32.
pub(crate) const MAX_STEPS: RangeInclusive<u32> = 1..=MAX_RATE_STEPS as u32;
/// `step_window_ms`: the rate bound's window, ms (at most a day).
pub(crate) const STEP_WINDOW_MS: RangeInclusive<u32> = 1..=86_400_000;

/// Validated module parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// Page poll period without a doorbell, ms.
    pub(crate) poll_ms: u32,
    /// What steps are allowed and what a violation does.
    pub(crate) policy: Policy,
    /// Seqlock read attempts per check.
    pub(crate) read_attempts: u32,
    /// The step method the operator asked for (`None`: the best the kernel has).
    pub(crate) step_method: Option<StepMethod>,
}

/// Which module parameter is invalid, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamError {
    PollMs(u32),
    MaxStepMs(u64),
    OnViolation(u32),
    ReadAttempts(u32),
    StepMethod(u32),
    MaxRestoreMs(u64),
    MaxSteps(u32),
    StepWindowMs(u32),
    /// `step_method=1` (inject) on a kernel without `timekeeping_inject_realtime_offset()`.
    InjectUnavailable,
}

/// Raw parameter values, as `insmod` set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawParams {
    pub(crate) poll_ms: u32,
    pub(crate) max_step_ms: u64,
    pub(crate) on_violation: u32,
    pub(crate) read_attempts: u32,
    pub(crate) step_method: u32,
    pub(crate) max_restore_ms: u64,
    pub(crate) max_steps: u32,
    pub(crate) step_window_ms: u32,
}

/// Nanoseconds of `ms` milliseconds, if `ms` is in `range` and the nanoseconds fit a `u64`.
fn ms_to_ns(ms: u64, range: &RangeInclusive<u64>) -> Option<u64> {
    ms.checked_mul(1_000_000).filter(|_| range.contains(&ms))
}

/// Whether this build can step with `timekeeping_inject_realtime_offset()` (set by `rust/Kbuild`
/// when the target kernel exports it).
pub(crate) const INJECT_AVAILABLE: bool = cfg!(migtime_inject);

impl Config {
    /// Validates raw parameter values; `inject_available` says whether the kernel has the atomic
    /// primitive.
    pub(crate) fn validate(raw: RawParams, inject_available: bool) -> Result<Self, ParamError> {
        if !POLL_MS.contains(&raw.poll_ms) {
            return Err(ParamError::PollMs(raw.poll_ms));
        }
        let limit_ns = ms_to_ns(raw.max_step_ms, &MAX_STEP_MS)
            .ok_or(ParamError::MaxStepMs(raw.max_step_ms))?;
        let restore_limit_ns = ms_to_ns(raw.max_restore_ms, &MAX_RESTORE_MS)
            .ok_or(ParamError::MaxRestoreMs(raw.max_restore_ms))?;
        if !MAX_STEPS.contains(&raw.max_steps) {
            return Err(ParamError::MaxSteps(raw.max_steps));
        }
        if !STEP_WINDOW_MS.contains(&raw.step_window_ms) {
            return Err(ParamError::StepWindowMs(raw.step_window_ms));
        }
        let on_violation = OnViolation::from_param(raw.on_violation)
            .ok_or(ParamError::OnViolation(raw.on_violation))?;
        if !READ_ATTEMPTS.contains(&raw.read_attempts) {
            return Err(ParamError::ReadAttempts(raw.read_attempts));
        }
        let step_method = match raw.step_method {
            0 => None,
            1 if inject_available => Some(StepMethod::Inject),
            1 => return Err(ParamError::InjectUnavailable),
            2 => Some(StepMethod::SetTimeOfDay),
            v => return Err(ParamError::StepMethod(v)),
        };
        Ok(Self {
            poll_ms: raw.poll_ms,
            policy: Policy {
                limit_ns,
                restore_limit_ns,
                rate: Rate {
                    window_ns: u64::from(raw.step_window_ms) * 1_000_000,
                    max_steps: raw.max_steps,
                },
                on_violation,
            },
            read_attempts: raw.read_attempts,
            step_method,
        })
    }

    /// The step method to use: the one asked for, else the atomic one where the kernel has it.
    pub(crate) fn effective_step_method(&self) -> StepMethod {
        match self.step_method {
            Some(m) => m,
            None if INJECT_AVAILABLE => StepMethod::Inject,
            None => StepMethod::SetTimeOfDay,
        }
    }

    /// The module parameters, validated; logs the offending parameter and fails with `EINVAL`.
    pub(crate) fn from_params() -> Result<Self> {
        use crate::module_parameters as p;
        let raw = RawParams {
            poll_ms: p::poll_ms.value(),
            max_step_ms: p::max_step_ms.value(),
            on_violation: p::on_violation.value(),
            read_attempts: p::read_attempts.value(),
            step_method: p::step_method.value(),
            max_restore_ms: p::max_restore_ms.value(),
            max_steps: p::max_steps.value(),
            step_window_ms: p::step_window_ms.value(),
        };
        Self::validate(raw, INJECT_AVAILABLE).map_err(|e| {
            match e {
                ParamError::PollMs(v) => pr_err!(
                    "invalid poll_ms={v}: must be {}..={}\n",
                    POLL_MS.start(),
                    POLL_MS.end()
                ),
                ParamError::MaxStepMs(v) => pr_err!(
                    "invalid max_step_ms={v}: must be {}..={}\n",
                    MAX_STEP_MS.start(),
                    MAX_STEP_MS.end()
                ),
                ParamError::OnViolation(v) => {
                    pr_err!("invalid on_violation={v}: must be 0 (warn), 1 (refuse) or 2 (panic)\n")
                }
                ParamError::ReadAttempts(v) => pr_err!(
                    "invalid read_attempts={v}: must be {}..={}\n",
                    READ_ATTEMPTS.start(),
                    READ_ATTEMPTS.end()
                ),
                ParamError::StepMethod(v) => pr_err!(
                    "invalid step_method={v}: must be 0 (auto), 1 (inject) or 2 (settimeofday)\n"
                ),
                ParamError::MaxRestoreMs(v) => pr_err!(
                    "invalid max_restore_ms={v}: must be {}..={}\n",
                    MAX_RESTORE_MS.start(),
                    MAX_RESTORE_MS.end()
                ),
                ParamError::MaxSteps(v) => pr_err!(
                    "invalid max_steps={v}: must be {}..={}\n",
                    MAX_STEPS.start(),
                    MAX_STEPS.end()
                ),
                ParamError::StepWindowMs(v) => pr_err!(
                    "invalid step_window_ms={v}: must be {}..={}\n",
                    STEP_WINDOW_MS.start(),
                    STEP_WINDOW_MS.end()
                ),
                ParamError::InjectUnavailable => pr_err!(
                    "invalid step_method=1: this kernel has no timekeeping_inject_realtime_offset()\n"
                ),
            }
            EINVAL
        })
    }
}

#[kunit_tests(migtime_params)]
mod tests {
    use super::*;

    fn raw(
        poll_ms: u32,
        max_step_ms: u64,
        on_violation: u32,
        read_attempts: u32,
        step_method: u32,
    ) -> RawParams {
        RawParams {
            poll_ms,
            max_step_ms,
            on_violation,
            read_attempts,
            step_method,
            max_restore_ms: 1,
            max_steps: 1,
            step_window_ms: 1,
        }
    }

    #[test]
    fn params_validated() {
        let v = |r| Config::validate(r, true);
        assert!(v(raw(100, 600_000, 1, 64, 0)).is_ok());
        assert_eq!(v(raw(0, 1, 1, 1, 0)), Err(ParamError::PollMs(0)));
        assert_eq!(v(raw(60_001, 1, 1, 1, 0)), Err(ParamError::PollMs(60_001)));
        assert_eq!(v(raw(1, 0, 1, 1, 0)), Err(ParamError::MaxStepMs(0)));
        assert_eq!(
            v(raw(1, u64::MAX, 1, 1, 0)),
            Err(ParamError::MaxStepMs(u64::MAX))
        );
        assert_eq!(v(raw(1, 1, 3, 1, 0)), Err(ParamError::OnViolation(3)));
        assert_eq!(v(raw(1, 1, 1, 0, 0)), Err(ParamError::ReadAttempts(0)));
        assert_eq!(
            v(raw(1, 1, 1, 100_001, 0)),
            Err(ParamError::ReadAttempts(100_001))
        );
        assert_eq!(v(raw(1, 1, 1, 1, 3)), Err(ParamError::StepMethod(3)));
        let bad = |r: RawParams| v(r).err();
        assert_eq!(
            bad(RawParams {
                max_restore_ms: 0,
                ..raw(1, 1, 1, 1, 0)
            }),
            Some(ParamError::MaxRestoreMs(0))
        );
        assert_eq!(
            bad(RawParams {
                max_steps: 33,
                ..raw(1, 1, 1, 1, 0)
            }),
            Some(ParamError::MaxSteps(33))
        );
        assert_eq!(
            bad(RawParams {
                step_window_ms: 0,
                ..raw(1, 1, 1, 1, 0)
            }),
            Some(ParamError::StepWindowMs(0))
        );
        let c = v(raw(60_000, 1, 2, 100_000, 2)).unwrap();
        assert_eq!(c.policy.limit_ns, 1_000_000);
        assert_eq!(c.policy.on_violation, OnViolation::Panic);
        assert_eq!(c.effective_step_method(), StepMethod::SetTimeOfDay);
    }

    /// Whether `migtime.rs` has the parameter description ending in `(start..=end)`.
    fn described(name: &str, start: u64, end: u64) -> bool {
        let src = include_str!("migtime.rs");
        let Ok(want) = kernel::str::CString::try_from_fmt(fmt!("({start}..={end})\",")) else {
            return false;
        };
        let Ok(want) = want.to_str() else {
            return false;
        };
        // The description follows the parameter's name; the next `description:` is its own.
        src.split_once(name)
            .and_then(|(_, rest)| rest.split_once("description: \""))
            .and_then(|(_, rest)| rest.split_once('\n'))
            .is_some_and(|(line, _)| line.ends_with(want))
    }

    #[test]
    fn descriptions_state_the_ranges() {
        let wide = |r: &RangeInclusive<u32>| (u64::from(*r.start()), u64::from(*r.end()));
        let (s, e) = wide(&POLL_MS);
        assert!(described("poll_ms: u32", s, e));
        let (s, e) = wide(&READ_ATTEMPTS);
        assert!(described("read_attempts: u32", s, e));
        let (s, e) = wide(&MAX_STEPS);
        assert!(described("max_steps: u32", s, e));
        let (s, e) = wide(&STEP_WINDOW_MS);
        assert!(described("step_window_ms: u32", s, e));
        assert!(described(
            "max_step_ms: u64",
            *MAX_STEP_MS.start(),
            *MAX_STEP_MS.end()
        ));
        assert!(described(
            "max_restore_ms: u64",
            *MAX_RESTORE_MS.start(),
            *MAX_RESTORE_MS.end()
        ));
    }

    #[test]
    fn inject_only_where_the_kernel_has_it() {
        assert_eq!(
            Config::validate(raw(100, 1, 1, 1, 1), false),
            Err(ParamError::InjectUnavailable)
        );
        let c = Config::validate(raw(100, 1, 1, 1, 1), true).unwrap();
        assert_eq!(c.effective_step_method(), StepMethod::Inject);
        let auto = Config::validate(raw(100, 1, 1, 1, 0), INJECT_AVAILABLE).unwrap();
        let want = if INJECT_AVAILABLE {
            StepMethod::Inject
        } else {
            StepMethod::SetTimeOfDay
        };
        assert_eq!(auto.effective_step_method(), want);
    }
}
