// SPDX-License-Identifier: GPL-2.0

//! The read-then-set fallback's arithmetic (pure logic, `core` only).
//!
//! Without the kernel's atomic `timekeeping_inject_realtime_offset()`, the module steps
//! CLOCK_REALTIME by reading it and writing "now + step" with `do_settimeofday64()`. The time
//! between the read and the moment the kernel takes its own timestamp is lost from the step (the
//! "window"); the module measures what each set really did (the change of the realtime offset,
//! exact) and so knows every window afterwards.
//!
//! Why a last-sample estimate was not enough (measured under TCG: −66 to −96 µs on the first
//! step after load, p99 1.4 ms): the first step has no sample at all, and one preempted sample
//! (a window of a millisecond) over-corrects the next step. So:
//! - [`WindowEstimate`] keeps the last [`WINDOW_SAMPLES`] windows and uses their **minimum**:
//!   preemption only ever lengthens a window, so the minimum is the undisturbed cost;
//! - after a set, a residual beyond [`CORRECTION_THRESHOLD_NS`] (10 µs: above the set-to-set
//!   jitter, ~2 µs under TCG, so that corrections are made only when they help) is corrected by at most
//!   [`MAX_CORRECTIONS`] further sets within the same event, each compensated by the window just
//!   measured. Each correction resets NTP state and wakes clock-was-set waiters once more
//!   (harmless: they were just woken for the step), and each is counted in the event's `sets`.
//!
//! [`read_then_set`] is the whole loop (read, set, read back, correct), behind the small
//! [`RealtimeClock`] trait: the module implements it with the kernel's timekeeping calls
//! (`clock.rs`), the host tests with a model clock that can reject any set and let another agent
//! step in between. Two rules make it safe against both:
//! - once a set has succeeded the clock has moved, so a later failure never turns the step into
//!   an error: [`Applied`] reports what moved, with its residual ([`Stop::SetFailed`]); only a
//!   failure of the first set is a [`StepError`], with nothing applied;
//! - a read-back that moved by more than any window allows (the set's loss outside
//!   `0..=`[`MAX_WINDOW_NS`]) means another agent stepped the clock between the set and the
//!   read-back: no correction follows ([`Stop::Interfered`]), so that step is not undone. A
//!   foreign step within that bound is indistinguishable from a slow set and may be corrected
//!   away; one landing between the read and the set is overwritten by the set (the window,
//!   microseconds, bounds when that can happen).

/// Windows remembered for the estimate.
pub const WINDOW_SAMPLES: usize = 8;

/// Largest plausible window, nanoseconds: a longer one (or a negative one) is not recorded.
pub const MAX_WINDOW_NS: i64 = 10_000_000;

/// Residual (absolute) above which a correcting set is made, nanoseconds.
pub const CORRECTION_THRESHOLD_NS: i64 = 10_000;

/// Correcting sets made at most per event.
pub const MAX_CORRECTIONS: u32 = 2;

/// The read→set windows measured so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowEstimate {
    samples: [i64; WINDOW_SAMPLES],
    len: usize,
    next: usize,
}

impl WindowEstimate {
    /// No sample yet.
    pub const fn new() -> Self {
        Self {
            samples: [0; WINDOW_SAMPLES],
            len: 0,
            next: 0,
        }
    }

    /// Records the window a set lost: the step it aimed for (including the compensation it
    /// used) minus what it applied. Implausible values are ignored.
    pub fn record(&mut self, lost_ns: i64) {
        if !(0..=MAX_WINDOW_NS).contains(&lost_ns) {
            return;
        }
        self.samples[self.next] = lost_ns;
        self.next = (self.next + 1) % WINDOW_SAMPLES;
        if self.len < WINDOW_SAMPLES {
            self.len += 1;
        }
    }

    /// The compensation to add to the next step: the smallest recent window (0 with none).
    pub fn estimate(&self) -> i64 {
        self.samples[..self.len].iter().copied().min().unwrap_or(0)
    }

    /// How many windows are remembered.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no window was measured yet.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Whether a set that left `residual_ns` (applied − intended) deserves a correcting set, given
/// the `corrections` already made for this event.
pub const fn needs_correction(residual_ns: i64, corrections: u32) -> bool {
    corrections < MAX_CORRECTIONS && residual_ns.unsigned_abs() > CORRECTION_THRESHOLD_NS as u64
}

/// Most clock updates a zero step makes to move the realtime offset by at least 1 ns.
pub const MAX_NUDGES: u32 = 8;

/// The clock the read-then-set loop drives: the kernel implements it with its timekeeping
/// calls, the host tests with a model clock.
pub trait RealtimeClock {
    /// Why a set was rejected.
    type Error: Copy;
    /// CLOCK_MONOTONIC now, nanoseconds.
    fn monotonic_ns(&mut self) -> i64;
    /// The exact CLOCK_REALTIME - CLOCK_MONOTONIC offset, nanoseconds.
    fn offset_ns(&mut self) -> i64;
    /// Sets CLOCK_REALTIME to `ns` nanoseconds since the epoch.
    fn set_realtime_ns(&mut self, ns: i64) -> Result<(), Self::Error>;
}

/// Why a step stopped before reaching its target (after at least one set succeeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop<E> {
    /// The step is done (residual within the threshold, or corrections exhausted).
    Done,
    /// A later set was rejected: what the earlier sets applied stays, with its residual.
    SetFailed(E),
    /// A later set's target overflowed: as `SetFailed`.
    Overflow,
    /// The read-back moved by more than a read→set window can explain: another agent stepped
    /// the clock between the set and the read-back. No correction is made (it would undo that
    /// step); `applied_ns` includes the other agent's step.
    Interfered,
}

/// What a step did, once at least one set succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied<E> {
    /// The change of the realtime offset, nanoseconds.
    pub applied_ns: i64,
    /// `applied_ns - step_ns`.
    pub residual_ns: i64,
    /// Clock updates made (successful ones).
    pub sets: u32,
    /// Why the loop ended.
    pub stop: Stop<E>,
}

impl<E> Applied<E> {
    /// Whether a set was rejected after some of the step was applied.
    pub const fn is_partial(&self) -> bool {
        matches!(self.stop, Stop::SetFailed(_) | Stop::Overflow)
    }
}

/// Why a step applied nothing at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepError<E> {
    /// The target is not representable.
    Overflow,
    /// The first set was rejected.
    Set(E),
}

/// One compensated set aiming at "now + `delta_ns`"; returns what it applied and the window it
/// lost (`None`: more than any window, so another agent moved the clock).
fn set_once<C: RealtimeClock>(
    c: &mut C,
    w: &mut WindowEstimate,
    delta_ns: i64,
) -> Result<(i64, bool), StepError<C::Error>> {
    let aim = delta_ns
        .checked_add(w.estimate())
        .ok_or(StepError::Overflow)?;
    let off0 = c.offset_ns();
    let target = c
        .monotonic_ns()
        .checked_add(off0)
        .and_then(|t| t.checked_add(aim))
        .ok_or(StepError::Overflow)?;
    c.set_realtime_ns(target).map_err(StepError::Set)?;
    let applied = c.offset_ns().wrapping_sub(off0);
    // `lost` is the time between the read and the kernel's own timestamp: 0..=MAX_WINDOW_NS
    // unless something else moved the clock.
    let plausible = matches!(aim.checked_sub(applied), Some(l) if (0..=MAX_WINDOW_NS).contains(&l));
    if plausible {
        w.record(aim - applied);
    }
    Ok((applied, plausible))
}

/// The read-then-set step by `step_ns` (0: nudge until the offset moves): set, then correct a
/// residual beyond [`CORRECTION_THRESHOLD_NS`] at most [`MAX_CORRECTIONS`] times.
///
/// Once a set has succeeded the clock has moved: whatever happens next, the result is
/// [`Applied`] with what moved, never an error (the caller must not step again for it).
pub fn read_then_set<C: RealtimeClock>(
    c: &mut C,
    w: &mut WindowEstimate,
    step_ns: i64,
) -> Result<Applied<C::Error>, StepError<C::Error>> {
    let (mut applied, plausible) = set_once(c, w, step_ns)?;
    let mut sets = 1u32;
    let mut corrections = 0u32;
    let mut nudges = 0u32;
    let mut stop = if plausible {
        Stop::Done
    } else {
        Stop::Interfered
    };
    while matches!(stop, Stop::Done) {
        let residual = applied.wrapping_sub(step_ns);
        let want = if needs_correction(residual, corrections) {
            corrections += 1;
            residual.checked_neg()
        } else if applied == 0 && nudges < MAX_NUDGES {
            // The offset did not move: waiters would not fire. Nudge it.
            nudges += 1;
            Some(i64::from(nudges))
        } else {
            break;
        };
        let Some(want) = want else {
            stop = Stop::Overflow;
            break;
        };
        match set_once(c, w, want) {
            Ok((a, ok)) => {
                applied = applied.wrapping_add(a);
                sets += 1;
                if !ok {
                    stop = Stop::Interfered;
                }
            }
            Err(StepError::Set(e)) => stop = Stop::SetFailed(e),
            Err(StepError::Overflow) => stop = Stop::Overflow,
        }
    }
    Ok(Applied {
        applied_ns: applied,
        residual_ns: applied.wrapping_sub(step_ns),
        sets,
        stop,
    })
}
