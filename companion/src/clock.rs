// SPDX-License-Identifier: GPL-2.0

//! The clock syscalls: CLOCK_MONOTONIC for the companion's own timing, and the two kernel
//! clock actions of a migration the module did not step (NTP state reset, cancel-on-set nudge).

use anyhow::{Context, Result};
use nix::sys::time::TimeValLike;
use nix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC in milliseconds (the time base of [`crate::dedup::Dedup`]).
pub fn monotonic_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| u64::try_from(t.num_milliseconds()).unwrap_or(0))
        .unwrap_or(0)
}

/// `NTP_PHASE_LIMIT` in µs (include/linux/timex.h): what the kernel's `ntp_clear()` sets
/// `time_maxerror` and `time_esterror` to.
pub const NTP_PHASE_LIMIT_US: libc::c_long = (500_000_000 / 1000) << 5;

fn clock_adjtime(tx: &mut libc::timex) -> Result<libc::c_int> {
    // SAFETY: `tx` is a valid, exclusively borrowed `struct timex`.
    let r = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, tx) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(r)
}

/// Resets the kernel's NTP state as `ntp_clear()` does on a step: `STA_UNSYNC`, maximum and
/// estimated error at the limit. Returns the old status.
pub fn ntp_reset() -> Result<i32> {
    // SAFETY: all-zero is a valid `struct timex` (modes 0: read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    clock_adjtime(&mut tx).context("adjtimex (read)")?;
    let old = tx.status;
    // SAFETY: as above.
    let mut set: libc::timex = unsafe { std::mem::zeroed() };
    set.modes = libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
    set.status = old | libc::STA_UNSYNC;
    set.maxerror = NTP_PHASE_LIMIT_US;
    set.esterror = NTP_PHASE_LIMIT_US;
    clock_adjtime(&mut set).context("adjtimex (STA_UNSYNC, maxerror, esterror)")?;
    Ok(old)
}

/// Steps CLOCK_REALTIME by +1 ns with `ADJ_SETOFFSET`: the kernel's `clock_was_set()` wakes
/// every `TFD_TIMER_CANCEL_ON_SET` timer (systemd-timesyncd re-syncs on that).
pub fn cancel_on_set_nudge() -> Result<()> {
    // SAFETY: all-zero is a valid `struct timex`.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
    tx.time.tv_sec = 0;
    tx.time.tv_usec = 1; // nanoseconds with ADJ_NANO
    clock_adjtime(&mut tx).context("clock_adjtime(ADJ_SETOFFSET, 1 ns)")?;
    Ok(())
}
