// SPDX-License-Identifier: GPL-2.0

//! The host's clocks, as the simulator reads them for Tout and the ack.

/// Host clock readings (nanoseconds).
pub fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}
/// Host CLOCK_REALTIME, ns.
pub fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}
/// Host CLOCK_TAI, ns.
pub fn tai_ns() -> i64 {
    clock_ns(libc::CLOCK_TAI)
}
