// SPDX-License-Identifier: GPL-2.0

//! The migtime paravirtual clock page, ABI version 1.
//!
//! This file is the single definition of the page layout. It uses nothing but
//! `core`, so the very same file is compiled into the kernel module (as
//! `crate::abi`) and into the host crate `migtime-abi` (`rust/host/`), which the
//! simulator and the host tests use. The C view of the same layout is
//! `include/migtime_abi.h`; `docs/abi.md` is the specification; a host test
//! compiles the header and checks that both agree.
//!
//! The page lives at offset 0 of the shared memory region (BAR2 of an ivshmem
//! device). All fields are little-endian. The first [`GUEST_AREA_OFFSET`] bytes
//! are written by the host only, under the seqlock [`HostArea::seq_count`]; the
//! guest area at [`GUEST_AREA_OFFSET`] is written by the guest only, under its
//! own seqlock [`GuestArea::seq_count`].
//!
//! The `/dev/migtime` event record, which embeds [`Timing`], and its byte codec are in
//! `event.rs` ([`Event`](crate::event::Event)), compiled alongside this file in both crates.

use core::mem::{
    offset_of,
    size_of, //
};

/// `magic`: the ASCII bytes "MIGT" read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"MIGT");

/// The ABI version this file describes.
pub const VERSION: u16 = 1;

/// Bytes reserved for the whole page (host area, guest area and padding).
pub const PAGE_BYTES: usize = 4096;

/// `flags` bit 0: the host already applied Tout through the guest TSC; the
/// guest must not step, but still resets NTP state and notifies waiters.
pub const FLAG_COMPENSATED: u32 = 1 << 0;

/// `flags` bit 1: the VM was brought back from saved state (a restore from a
/// file or a snapshot) rather than live-migrated; Tout may be hours or days.
/// The guest applies such a page under its restore limit instead of the live
/// migration limit. An older guest ignores the bit and treats the page as a
/// migration.
pub const FLAG_RESTORE: u32 = 1 << 1;

/// The flag bits ABI v1 defines. Hosts write the other bits as zero; guests
/// ignore them (and report them in the event's `page_flags`).
pub const FLAGS_KNOWN: u32 = FLAG_COMPENSATED | FLAG_RESTORE;

/// Byte offset of the guest-written area: its own cache line, and room for the
/// host area to grow in later versions.
pub const GUEST_AREA_OFFSET: usize = 256;

/// The host-written part of the page, at offset 0.
///
/// The host updates it with the seqlock protocol: make `seq_count` odd, write
/// the fields, make `seq_count` even again (one more than the odd value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostArea {
    /// [`MAGIC`].
    pub magic: u32,
    /// [`VERSION`].
    pub version: u16,
    /// Bytes of the host-written part the host fills in: at least
    /// [`HOST_AREA_V1_SIZE`], at most [`GUEST_AREA_OFFSET`].
    pub size: u16,
    /// Seqlock counter: odd while the host writes.
    pub seq_count: u32,
    /// Flags, see [`FLAG_COMPENSATED`] and [`FLAG_RESTORE`].
    pub flags: u32,
    /// Incremented by one on every migration or restore.
    pub migration_seq: u64,
    /// Tout of the latest migration: destination minus source clock TAI,
    /// including the blackout, in nanoseconds; 0 if compensated.
    pub tai_delta_ns: i64,
    /// Sum of every uncompensated Tout since the VM was created.
    pub tai_delta_total_ns: i64,
    /// Reserved, written as zero.
    pub reserved: [u64; 3],
}

/// The guest-written part of the page, at [`GUEST_AREA_OFFSET`].
///
/// The guest writes it after acting on a migration, with the same seqlock
/// protocol as the host uses for [`HostArea`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestArea {
    /// Seqlock counter: odd while the guest writes.
    pub seq_count: u32,
    /// What the guest did, an [`Outcome`] value.
    pub outcome: u32,
    /// The `migration_seq` the guest acted on.
    pub ack_seq: u64,
    /// The step the guest intended for this event (nanoseconds).
    pub intended_ns: i64,
    /// The step the guest measured as applied: the change of the kernel's
    /// CLOCK_REALTIME - CLOCK_MONOTONIC offset (nanoseconds).
    pub applied_ns: i64,
    /// The host's `tai_delta_total_ns` the guest is now in step with.
    pub applied_total_ns: i64,
    /// Guest CLOCK_REALTIME right after acting (nanoseconds since the epoch).
    pub ack_realtime_ns: i64,
    /// Number of events the guest has acted on since the module was loaded.
    pub events: u64,
    /// Bytes of the guest area this guest fills in: [`GUEST_AREA_SIZE`], or 0 for a guest
    /// that predates this field (it wrote the v1 area, [`GUEST_AREA_V1_SIZE`] bytes).
    pub size: u32,
    /// Reserved, written as zero.
    pub reserved: u32,
    /// How the latest event was handled in time (present when `size >= GUEST_AREA_SIZE`).
    pub timing: Timing,
}

/// Where the guest's time went for one event, and how it stepped the clock: the extension of
/// the guest area and of the `/dev/migtime` record. All times are guest CLOCK_MONOTONIC in
/// nanoseconds (0: did not happen).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// When the change was noticed: the doorbell interrupt, or the start of the poll that saw it.
    pub wake_mono_ns: i64,
    /// When the work that read and decided started.
    pub work_mono_ns: i64,
    /// When the clock had been stepped (or the decision made, when nothing was stepped).
    pub done_mono_ns: i64,
    /// A [`WakeSource`] value.
    pub wake_source: u32,
    /// A [`StepMethod`] value (0: no step was attempted).
    pub step_method: u32,
    /// Clock updates the step took (1; more for a fallback correction or a zero-step nudge).
    pub sets: u32,
    /// Reserved, written as zero.
    pub reserved0: u32,
    /// Reserved, written as zero.
    pub reserved: [u64; 3],
}

/// What woke the guest for an event ([`Timing::wake_source`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeSource {
    /// The ivshmem doorbell interrupt.
    Doorbell = 1,
    /// The periodic page poll (or the safety poll in doorbell mode).
    Poll = 2,
}

/// How the guest stepped CLOCK_REALTIME ([`Timing::step_method`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepMethod {
    /// `timekeeping_inject_realtime_offset()`: one atomic update, exact.
    Inject = 1,
    /// Read, then `do_settimeofday64()`: loses the read-to-set window, measured and compensated.
    SetTimeOfDay = 2,
}

/// Bytes of the guest area as ABI v1 first defined it (up to and including `events` and the
/// then-reserved word).
pub const GUEST_AREA_V1_SIZE: usize = 64;

/// Bytes of the guest area this file describes (v1 plus [`Timing`]).
pub const GUEST_AREA_SIZE: usize = size_of::<GuestArea>();

/// Bytes of the host area ABI v1 defines.
pub const HOST_AREA_V1_SIZE: usize = size_of::<HostArea>();

/// Offsets of the host area fields (relative to the start of the page).
pub mod host_off {
    use super::*;
    /// `magic` (u32).
    pub const MAGIC: usize = offset_of!(HostArea, magic);
    /// `version` (u16).
    pub const VERSION: usize = offset_of!(HostArea, version);
    /// `size` (u16).
    pub const SIZE: usize = offset_of!(HostArea, size);
    /// `seq_count` (u32).
    pub const SEQ_COUNT: usize = offset_of!(HostArea, seq_count);
    /// `flags` (u32).
    pub const FLAGS: usize = offset_of!(HostArea, flags);
    /// `migration_seq` (u64).
    pub const MIGRATION_SEQ: usize = offset_of!(HostArea, migration_seq);
    /// `tai_delta_ns` (i64).
    pub const TAI_DELTA: usize = offset_of!(HostArea, tai_delta_ns);
    /// `tai_delta_total_ns` (i64).
    pub const TAI_DELTA_TOTAL: usize = offset_of!(HostArea, tai_delta_total_ns);
}

/// Offsets of the guest area fields (relative to the start of the page).
pub mod guest_off {
    use super::*;
    /// `seq_count` (u32).
    pub const SEQ_COUNT: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, seq_count);
    /// `outcome` (u32).
    pub const OUTCOME: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, outcome);
    /// `ack_seq` (u64).
    pub const ACK_SEQ: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, ack_seq);
    /// `intended_ns` (i64).
    pub const INTENDED: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, intended_ns);
    /// `applied_ns` (i64).
    pub const APPLIED: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, applied_ns);
    /// `applied_total_ns` (i64).
    pub const APPLIED_TOTAL: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, applied_total_ns);
    /// `ack_realtime_ns` (i64).
    pub const ACK_REALTIME: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, ack_realtime_ns);
    /// `events` (u64).
    pub const EVENTS: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, events);
    /// `size` (u32).
    pub const SIZE: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, size);
    /// `timing.wake_mono_ns` (i64).
    pub const WAKE: usize = TIMING + offset_of!(Timing, wake_mono_ns);
    /// `timing.work_mono_ns` (i64).
    pub const WORK: usize = TIMING + offset_of!(Timing, work_mono_ns);
    /// `timing.done_mono_ns` (i64).
    pub const DONE: usize = TIMING + offset_of!(Timing, done_mono_ns);
    /// `timing.wake_source` (u32).
    pub const WAKE_SOURCE: usize = TIMING + offset_of!(Timing, wake_source);
    /// `timing.step_method` (u32).
    pub const STEP_METHOD: usize = TIMING + offset_of!(Timing, step_method);
    /// `timing.sets` (u32).
    pub const SETS: usize = TIMING + offset_of!(Timing, sets);
    /// `timing` ([`Timing`]).
    pub const TIMING: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, timing);
}

/// Whether the layout is the one `docs/abi.md` and `include/migtime_abi.h`
/// specify. Both the module (`static_assert!`) and the host crate
/// (`static_assertions::const_assert!`) assert it at compile time.
pub const fn layout_is_v1() -> bool {
    size_of::<HostArea>() == 64
        && host_off::MAGIC == 0
        && host_off::VERSION == 4
        && host_off::SIZE == 6
        && host_off::SEQ_COUNT == 8
        && host_off::FLAGS == 12
        && host_off::MIGRATION_SEQ == 16
        && host_off::TAI_DELTA == 24
        && host_off::TAI_DELTA_TOTAL == 32
        && offset_of!(GuestArea, timing) == GUEST_AREA_V1_SIZE
        && GUEST_AREA_OFFSET % 64 == 0
        && GUEST_AREA_OFFSET >= HOST_AREA_V1_SIZE
        && guest_off::SEQ_COUNT == 256
        && guest_off::OUTCOME == 260
        && guest_off::ACK_SEQ == 264
        && guest_off::INTENDED == 272
        && guest_off::APPLIED == 280
        && guest_off::APPLIED_TOTAL == 288
        && guest_off::ACK_REALTIME == 296
        && guest_off::EVENTS == 304
        && guest_off::SIZE == 312
        && GUEST_AREA_V1_SIZE == 64
        && size_of::<Timing>() == 64
        && guest_off::TIMING == 320
        && guest_off::WAKE == 320
        && guest_off::WORK == 328
        && guest_off::DONE == 336
        && guest_off::WAKE_SOURCE == 344
        && guest_off::STEP_METHOD == 348
        && guest_off::SETS == 352
        && GUEST_AREA_SIZE == 128
        && GUEST_AREA_OFFSET + GUEST_AREA_SIZE <= PAGE_BYTES
}

/// What the guest did about a page change, written to [`GuestArea::outcome`]
/// and reported in `/dev/migtime` events.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// CLOCK_REALTIME was stepped by the pending delta.
    Stepped = 1,
    /// Nothing was pending (compensated migration): NTP state was reset and
    /// clock-was-set waiters notified, with no step beyond the residual.
    Notified = 2,
    /// Refused: `migration_seq` went backwards.
    RefusedSeqBackwards = 3,
    /// Refused: the pending delta is beyond the configured limit.
    RefusedOverLimit = 4,
    /// Refused: `tai_delta_total_ns` changed while `migration_seq` did not, or
    /// the pending delta overflows.
    RefusedInconsistent = 5,
    /// The step was attempted but the kernel rejected the new time: nothing
    /// was applied.
    Failed = 6,
    /// Refused: the rate bound (steps per window, or live migration steps
    /// adding up to more than the limit within the window) was reached.
    RefusedRate = 7,
    /// Stepped in part: a set after the first was rejected; `applied_ns` is
    /// what moved, the residual is not re-applied.
    Partial = 8,
}

impl Outcome {
    /// Converts a raw value back; `None` for values this ABI does not define.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Stepped,
            2 => Self::Notified,
            3 => Self::RefusedSeqBackwards,
            4 => Self::RefusedOverLimit,
            5 => Self::RefusedInconsistent,
            6 => Self::Failed,
            7 => Self::RefusedRate,
            8 => Self::Partial,
            _ => return None,
        })
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Stepped => "stepped",
            Self::Notified => "notified",
            Self::RefusedSeqBackwards => "refused-seq-backwards",
            Self::RefusedOverLimit => "refused-over-limit",
            Self::RefusedInconsistent => "refused-inconsistent",
            Self::Failed => "failed",
            Self::RefusedRate => "refused-rate",
            Self::Partial => "partial",
        }
    }

    /// Whether this outcome refused the page's request.
    pub const fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::RefusedSeqBackwards
                | Self::RefusedOverLimit
                | Self::RefusedInconsistent
                | Self::RefusedRate
        )
    }
}

/// Why the page's header was rejected: the device is not a migtime page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// `magic` is not [`MAGIC`].
    BadMagic(u32),
    /// `version` is not [`VERSION`].
    BadVersion(u16),
    /// `size` is outside `HOST_AREA_V1_SIZE..=GUEST_AREA_OFFSET`.
    BadSize(u16),
}

/// Checks the page header: magic, version and size.
pub const fn check_header(magic: u32, version: u16, size: u16) -> Result<(), HeaderError> {
    if magic != MAGIC {
        return Err(HeaderError::BadMagic(magic));
    }
    if version != VERSION {
        return Err(HeaderError::BadVersion(version));
    }
    if (size as usize) < HOST_AREA_V1_SIZE || (size as usize) > GUEST_AREA_OFFSET {
        return Err(HeaderError::BadSize(size));
    }
    Ok(())
}
