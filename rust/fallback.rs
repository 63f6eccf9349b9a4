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
