// SPDX-License-Identifier: GPL-2.0

//! Torn-read-safe reading of the host area (pure logic, `core` only).
//!
//! The host writes the page with the seqlock protocol (odd `seq_count` while
//! writing). [`read_snapshot`] reads `seq_count`, the header and the fields,
//! then `seq_count` again, and accepts the read only if both counts are equal
//! and even. It gives up after a bounded number of attempts, so a host that
//! leaves the count odd (or rewrites the page without pause) cannot make the
//! guest spin: the caller retries at its next poll or interrupt.
//!
//! The kernel module implements [`PageReader`] on the mapped BAR; the host
//! tests implement it on simulated pages, including adversarial writers.

use crate::abi::{
    check_header,
    host_off,
    HeaderError, //
};

/// Access to the page. Offsets are byte offsets from the start of the page.
pub trait PageReader {
    /// Reads a little-endian `u16`.
    fn read_u16(&self, off: usize) -> u16;
    /// Reads a little-endian `u32`.
    fn read_u32(&self, off: usize) -> u32;
    /// Reads a little-endian `u64`.
    fn read_u64(&self, off: usize) -> u64;
    /// Orders the reads before it before the reads after it (`smp_rmb()`).
    fn read_barrier(&self);
    /// Called between attempts (`cpu_relax()`).
    fn relax(&self) {}
}

/// A consistent copy of the host area's variable fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The (even) seqlock count the copy was taken under.
    pub seq_count: u32,
    /// `flags`.
    pub flags: u32,
    /// `migration_seq`.
    pub migration_seq: u64,
    /// `tai_delta_ns`.
    pub tai_delta_ns: i64,
    /// `tai_delta_total_ns`.
    pub tai_delta_total_ns: i64,
}

/// Why no snapshot could be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// A consistent read found a header that is not ABI v1 (the host
    /// rewrote it after the device was bound).
    Header(HeaderError),
    /// Every attempt saw an odd count or a count that changed during the read.
    Busy {
        /// Attempts made.
        attempts: u32,
    },
}

/// A snapshot and how many attempts it took (1 = no retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOk {
    /// The consistent copy.
    pub snapshot: Snapshot,
    /// Attempts made, `1..=max_attempts`.
    pub attempts: u32,
}

/// Reads the host area consistently, in at most `max_attempts` attempts
/// (at least one attempt is always made).
pub fn read_snapshot<R: PageReader + ?Sized>(
    r: &R,
    max_attempts: u32,
) -> Result<ReadOk, ReadError> {
    let max_attempts = if max_attempts == 0 { 1 } else { max_attempts };
    let mut attempt = 0;
    while attempt < max_attempts {
        attempt += 1;
        if attempt > 1 {
            r.relax();
        }
        let begin = r.read_u32(host_off::SEQ_COUNT);
        if begin & 1 != 0 {
            continue;
        }
        r.read_barrier();
        let magic = r.read_u32(host_off::MAGIC);
        let version = r.read_u16(host_off::VERSION);
        let size = r.read_u16(host_off::SIZE);
        let snapshot = Snapshot {
            seq_count: begin,
            flags: r.read_u32(host_off::FLAGS),
            migration_seq: r.read_u64(host_off::MIGRATION_SEQ),
            tai_delta_ns: r.read_u64(host_off::TAI_DELTA) as i64,
            tai_delta_total_ns: r.read_u64(host_off::TAI_DELTA_TOTAL) as i64,
        };
        r.read_barrier();
        let end = r.read_u32(host_off::SEQ_COUNT);
        if begin != end {
            continue;
        }
        if let Err(e) = check_header(magic, version, size) {
            return Err(ReadError::Header(e));
        }
        return Ok(ReadOk {
            snapshot,
            attempts: attempt,
        });
    }
    Err(ReadError::Busy {
        attempts: max_attempts,
    })
}
