// SPDX-License-Identifier: GPL-2.0

//! The `/dev/migtime` event record, ABI version 1, and its little-endian codec.
//!
//! Like [`abi`](crate::abi) (the page layout, whose [`Timing`] block the record embeds), this
//! file uses nothing but `core`: the very same file is compiled into the kernel module (as
//! `crate::event`) and into the host crate `migtime-abi` (`rust/host/`), which the host tests
//! and the userspace companion use to parse what `read(2)` returns. The C view is
//! `struct migtime_event` in `include/migtime_abi.h`; `docs/abi.md` specifies it; a host test
//! compiles the header and checks that both agree.
//!
//! The record is [`EVENT_BYTES`] long; its first [`EVENT_V1_BYTES`] bytes are the record as
//! ABI v1 first defined it and never change ([`Event::read_len`]: a reader with a 64-byte
//! buffer gets exactly that prefix).

use crate::abi::Timing;
use core::mem::{
    offset_of,
    size_of, //
};

/// The `/dev/migtime` event record: what `read(2)` returns, little-endian. Same layout as
/// `struct migtime_event` in `include/migtime_abi.h`.
///
/// The first [`EVENT_V1_BYTES`] bytes are the record as ABI v1 first defined it and never
/// change; [`Timing`] follows. `read(2)` returns [`EVENT_BYTES`] bytes when the buffer has room
/// for them, else the v1 prefix (a buffer shorter than that is `EINVAL`): a reader asking for
/// 64 bytes gets exactly what it always got.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Number of this event since the module was loaded (1, 2, ...).
    pub event: u64,
    /// The page's `migration_seq` acted on.
    pub migration_seq: u64,
    /// The page's `flags` at that time.
    pub page_flags: u32,
    /// An [`Outcome`](crate::abi::Outcome) value.
    pub outcome: u32,
    /// Step intended (pending delta), nanoseconds.
    pub intended_ns: i64,
    /// Step applied, measured as the change of CLOCK_REALTIME - CLOCK_MONOTONIC.
    pub applied_ns: i64,
    /// `applied_ns - intended_ns`.
    pub residual_ns: i64,
    /// Guest CLOCK_REALTIME when the event was recorded, nanoseconds.
    pub realtime_ns: i64,
    /// Guest CLOCK_MONOTONIC when the event was recorded, nanoseconds.
    pub monotonic_ns: i64,
    /// Where the time went, and how the clock was stepped.
    pub timing: Timing,
}

/// Size of one full [`Event`] record.
pub const EVENT_BYTES: usize = size_of::<Event>();

/// Size of the ABI v1 prefix of an [`Event`] record.
pub const EVENT_V1_BYTES: usize = 64;

// The timing block is laid out in `abi.rs` (the guest area has it too), but only the record is
// ever encoded as bytes: its codec lives here, next to the record's.
impl Timing {
    /// The block as little-endian bytes (bytes [`EVENT_V1_BYTES`].. of an [`Event`] record).
    pub fn to_le_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&self.wake_mono_ns.to_le_bytes());
        b[8..16].copy_from_slice(&self.work_mono_ns.to_le_bytes());
        b[16..24].copy_from_slice(&self.done_mono_ns.to_le_bytes());
        b[24..28].copy_from_slice(&self.wake_source.to_le_bytes());
        b[28..32].copy_from_slice(&self.step_method.to_le_bytes());
        b[32..36].copy_from_slice(&self.sets.to_le_bytes());
        b
    }
}

impl Event {
    /// The record as little-endian bytes, as `read(2)` returns it.
    pub fn to_le_bytes(&self) -> [u8; EVENT_BYTES] {
        let mut b = [0u8; EVENT_BYTES];
        b[0..8].copy_from_slice(&self.event.to_le_bytes());
        b[8..16].copy_from_slice(&self.migration_seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.page_flags.to_le_bytes());
        b[20..24].copy_from_slice(&self.outcome.to_le_bytes());
        b[24..32].copy_from_slice(&self.intended_ns.to_le_bytes());
        b[32..40].copy_from_slice(&self.applied_ns.to_le_bytes());
        b[40..48].copy_from_slice(&self.residual_ns.to_le_bytes());
        b[48..56].copy_from_slice(&self.realtime_ns.to_le_bytes());
        b[56..64].copy_from_slice(&self.monotonic_ns.to_le_bytes());
        b[64..128].copy_from_slice(&self.timing.to_le_bytes());
        b
    }

    /// Parses a record as `read(2)` returned it: the whole record, or its v1 prefix (the timing
    /// block then reads as zero); `None` for any other length.
    pub fn from_le_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != EVENT_BYTES && b.len() != EVENT_V1_BYTES {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        // CAST: the signed fields are stored as their two's-complement bits.
        let i64_at = |o: usize| u64_at(o) as i64;
        let timing = if b.len() == EVENT_BYTES {
            Timing {
                wake_mono_ns: i64_at(64),
                work_mono_ns: i64_at(72),
                done_mono_ns: i64_at(80),
                wake_source: u32_at(88),
                step_method: u32_at(92),
                sets: u32_at(96),
                ..Timing::default()
            }
        } else {
            Timing::default()
        };
        Some(Self {
            event: u64_at(0),
            migration_seq: u64_at(8),
            page_flags: u32_at(16),
            outcome: u32_at(20),
            intended_ns: i64_at(24),
            applied_ns: i64_at(32),
            residual_ns: i64_at(40),
            realtime_ns: i64_at(48),
            monotonic_ns: i64_at(56),
            timing,
        })
    }

    /// How many bytes of the record a `read(2)` with a buffer of `len` bytes returns: the whole
    /// record, the v1 prefix, or `None` (too short: `EINVAL`).
    pub const fn read_len(len: usize) -> Option<usize> {
        if len >= EVENT_BYTES {
            Some(EVENT_BYTES)
        } else if len >= EVENT_V1_BYTES {
            Some(EVENT_V1_BYTES)
        } else {
            None
        }
    }
}

/// Whether [`Event`] has the layout `docs/abi.md` and `include/migtime_abi.h` specify. Both the
/// module (`static_assert!`) and the host crate (`static_assertions::const_assert!`) assert it at
/// compile time.
pub const fn event_layout_is_v1() -> bool {
    EVENT_BYTES == 128
        && EVENT_V1_BYTES == 64
        && offset_of!(Event, migration_seq) == 8
        && offset_of!(Event, page_flags) == 16
        && offset_of!(Event, outcome) == 20
        && offset_of!(Event, intended_ns) == 24
        && offset_of!(Event, applied_ns) == 32
        && offset_of!(Event, residual_ns) == 40
        && offset_of!(Event, realtime_ns) == 48
        && offset_of!(Event, monotonic_ns) == 56
        && offset_of!(Event, timing) == EVENT_V1_BYTES
        && offset_of!(Timing, wake_mono_ns) == 0
        && offset_of!(Timing, work_mono_ns) == 8
        && offset_of!(Timing, done_mono_ns) == 16
        && offset_of!(Timing, wake_source) == 24
        && offset_of!(Timing, step_method) == 28
        && offset_of!(Timing, sets) == 32
}
