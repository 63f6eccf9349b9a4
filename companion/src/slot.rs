// SPDX-License-Identifier: GPL-2.0

//! One watched device: open, or closed until its next reopen attempt with exponential backoff.

/// Reopen delays after a device is missing or went away: `initial`, doubling, capped at `max`
/// (a new `Backoff` after each successful open). Never zero, so a vanished device never makes a
/// busy loop.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    max_ms: u64,
    next_ms: u64,
}

impl Backoff {
    /// `initial_ms` and `max_ms` are raised to at least 1 ms, `max_ms` to at least `initial_ms`.
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        let initial_ms = initial_ms.max(1);
        Self {
            max_ms: max_ms.max(initial_ms),
            next_ms: initial_ms,
        }
    }

    /// The delay before the next attempt, and the one after it doubles.
    pub fn next_delay(&mut self) -> u64 {
        let d = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        d
    }
}

/// One watched device: open, or closed until `retry_at`.
pub enum Slot<D> {
    /// Open.
    Open(D),
    /// Missing or gone: reopened at `retry_at` (monotonic ms).
    Closed {
        /// Next attempt.
        retry_at: u64,
        /// Delays of the following attempts.
        backoff: Backoff,
        /// The absence has been logged at info already.
        reported: bool,
    },
    /// Not watched (`--no-migtime`, `--no-vmclock`).
    Disabled,
}

impl<D> Slot<D> {
    /// Closed, first attempt at `now`.
    pub fn closed(min: u64, max: u64, now: u64) -> Self {
        Slot::Closed {
            retry_at: now,
            backoff: Backoff::new(min, max),
            reported: false,
        }
    }

    /// Closed now, or `Disabled` if `disabled`.
    pub fn new(disabled: bool, min: u64, max: u64, now: u64) -> Self {
        if disabled {
            Slot::Disabled
        } else {
            Slot::closed(min, max, now)
        }
    }

    /// The device, if open.
    pub fn open(&self) -> Option<&D> {
        match self {
            Slot::Open(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the device is open.
    pub fn is_open(&self) -> bool {
        matches!(self, Slot::Open(_))
    }

    /// When the next reopen attempt is due, if closed.
    pub fn retry_at(&self) -> Option<u64> {
        match self {
            Slot::Closed { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }

    /// If closed and due at `now`, tries `open`; on failure logs (once at info) and backs off.
    /// Returns the value `open` gave alongside the device on success.
    pub fn reopen_due<T, E: std::fmt::Display>(
        &mut self,
        now: u64,
        path: &std::path::Path,
        open: impl FnOnce() -> Result<(D, T), E>,
    ) -> Option<T> {
        let Slot::Closed {
            retry_at,
            backoff,
            reported,
        } = self
        else {
            return None;
        };
        if now < *retry_at {
            return None;
        }
        match open() {
            Ok((d, extra)) => {
                *self = Slot::Open(d);
                Some(extra)
            }
            Err(e) => {
                let d = backoff.next_delay();
                log_missing(path, &e, !*reported, d);
                *reported = true;
                *retry_at = now + d;
                None
            }
        }
    }
}

/// Logs an open failure at info the first time, debug while it persists.
fn log_missing(path: &std::path::Path, e: &dyn std::fmt::Display, first: bool, retry_ms: u64) {
    if first {
        log::info!("{}: not available ({e}); retrying (backoff up to the configured maximum, next in {retry_ms} ms)", path.display());
    } else {
        log::debug!(
            "{}: still not available ({e}); next try in {retry_ms} ms",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut b = Backoff::new(100, 1000);
        let v: Vec<u64> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(v, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(Backoff::new(0, 0).next_delay(), 1);
        assert_eq!(Backoff::new(300, 10).next_delay(), 300);
    }
}
