// SPDX-License-Identifier: GPL-2.0

//! A minimal stderr logger: `migtime-companion[S.mmm]: LEVEL: message` with CLOCK_MONOTONIC
//! seconds, which is what the journal (which adds wall time) and the test harness want.

use crate::clock::monotonic_ms;
use log::LevelFilter;

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let ms = monotonic_ms();
            eprintln!(
                "migtime-companion[{}.{:03}]: {}: {}",
                ms / 1000,
                ms % 1000,
                r.level().as_str().to_lowercase(),
                r.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the logger at `level` (a second call keeps the first logger).
pub fn init(level: LevelFilter) {
    log::set_max_level(level);
    let _ = log::set_logger(&Logger);
}

/// Logs a warning for a failed step of an action.
pub fn warn_failed(what: &str, e: &anyhow::Error) {
    log::warn!("{what} failed: {e:#}");
}
