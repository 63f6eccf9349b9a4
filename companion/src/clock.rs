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

/// The `adjtimex` request of [`ntp_reset`]: maximum and estimated error at `NTP_PHASE_LIMIT`,
/// nothing else. The status word is not written (`ADJ_STATUS` replaces it whole), so a leap
/// second chronyd has armed (`STA_INS`, `STA_DEL`) or any flag it sets meanwhile stays; the
/// kernel sets `STA_UNSYNC` itself at its next second overflow, when `time_maxerror` passes the
/// limit (kernel/time/ntp.c, `second_overflow`).
pub fn ntp_reset_request() -> libc::timex {
    // SAFETY: all-zero is a valid `struct timex`.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
    tx.maxerror = NTP_PHASE_LIMIT_US;
    tx.esterror = NTP_PHASE_LIMIT_US;
    tx
}

/// Resets the kernel's NTP state as `ntp_clear()` does on a step, without touching the status
/// word ([`ntp_reset_request`]): maximum and estimated error at the limit, `STA_UNSYNC` within
/// a second. Returns the status at the time of the call.
pub fn ntp_reset() -> Result<i32> {
    let mut tx = ntp_reset_request();
    clock_adjtime(&mut tx).context("adjtimex (maxerror, esterror)")?;
    Ok(tx.status)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_reset_leaves_the_status_word_alone() {
        let tx = ntp_reset_request();
        assert_eq!(
            tx.modes & libc::ADJ_STATUS,
            0,
            "ADJ_STATUS rewrites STA_INS/STA_DEL"
        );
        assert_eq!(tx.modes, libc::ADJ_MAXERROR | libc::ADJ_ESTERROR);
        // Exactly the limit: the kernel's next second overflow adds to it, clamps it and sets
        // STA_UNSYNC.
        assert_eq!((tx.maxerror, tx.esterror), (16_000_000, 16_000_000));
    }
}
