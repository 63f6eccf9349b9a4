// SPDX-License-Identifier: GPL-2.0

//! The host side of the page (ABI v1), shared by every host user: the
//! simulator (`tests/harness`), the host tests and the fuzz target.
//!
//! - [`PageWriter`]: stores into a page. The harness implements it (and
//!   [`PageReader`]) on its mapped page file, [`MemPage`] on plain memory.
//! - The seqlock writer: [`seqlocked`] turns field stores into the protocol's
//!   sequence (count odd, barrier, fields, barrier, count even) as data
//!   ([`Stores`]), so a test can interleave it with a reader store by store;
//!   [`write_update`] applies it to the host area.
//! - Raw views of both areas ([`host_area`], [`write_host_area`],
//!   [`init_page`]) and the guest-area reader with its seqlock retry
//!   ([`read_guest_area`]).
//! - [`Interleaved`]: a page whose writer runs between a reader's reads, for
//!   the torn-read tests and the fuzz target.
//!
//! Everything is built on `abi`'s types and offsets: a field added there is
//! one line in [`host_area`]/[`host_area_stores`] (or their guest twins).
//! The host area's *read* under the seqlock is `seqlock::read_snapshot`, the
//! module's own code.

use core::mem::offset_of;

use crate::abi::{
    self, guest_off, host_off, GuestArea, HostArea, Timing, FLAGS_KNOWN, FLAG_COMPENSATED,
    GUEST_AREA_OFFSET,
};
use crate::seqlock::{PageReader, Snapshot};

pub use crate::mempage::{Interleaved, MemPage};

/// Stores into a page. Offsets are byte offsets from the start of the page;
/// values are stored little-endian.
pub trait PageWriter {
    /// Stores a `u16`.
    fn write_u16(&mut self, off: usize, v: u16);
    /// Stores a `u32`.
    fn write_u32(&mut self, off: usize, v: u32);
    /// Stores a `u64`.
    fn write_u64(&mut self, off: usize, v: u64);
    /// Orders the stores before it before the stores after it (`smp_wmb()`).
    fn write_barrier(&mut self) {}
}

/// One store of a write sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// `write_u16(offset, value)`.
    U16(usize, u16),
    /// `write_u32(offset, value)`.
    U32(usize, u32),
    /// `write_u64(offset, value)`.
    U64(usize, u64),
    /// `write_barrier()`.
    Barrier,
}

impl Store {
    /// Performs the store on `w`.
    pub fn apply<W: PageWriter + ?Sized>(self, w: &mut W) {
        match self {
            Store::U16(off, v) => w.write_u16(off, v),
            Store::U32(off, v) => w.write_u32(off, v),
            Store::U64(off, v) => w.write_u64(off, v),
            Store::Barrier => w.write_barrier(),
        }
    }
}

/// Room for the longest sequence: a seqlocked write of the whole guest area
/// (14 fields + 5) or a raw write of the whole host area (11 stores).
const MAX_STORES: usize = 24;

/// A sequence of stores, in order (fixed capacity: the crate is `no_std`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stores {
    buf: [Store; MAX_STORES],
    len: usize,
}

impl Stores {
    fn new() -> Self {
        Self {
            buf: [Store::Barrier; MAX_STORES],
            len: 0,
        }
    }

    fn extend(&mut self, stores: &[Store]) {
        self.buf[self.len..self.len + stores.len()].copy_from_slice(stores);
        self.len += stores.len();
    }

    /// The stores, in order.
    pub fn as_slice(&self) -> &[Store] {
        &self.buf[..self.len]
    }

    /// Performs every store on `w`, in order.
    pub fn apply<W: PageWriter + ?Sized>(&self, w: &mut W) {
        for s in self.as_slice() {
            s.apply(w);
        }
    }
}

/// How a seqlocked write ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The count is made even: the write is published.
    Even,
    /// The count is left odd: a writer that never finished.
    LeaveOdd,
}

/// The odd count a writer starts with when the count is `count` now: the next
/// odd value (a count left odd by a writer that died moves on by two).
pub const fn odd_after(count: u32) -> u32 {
    if count & 1 == 1 {
        count.wrapping_add(2)
    } else {
        count.wrapping_add(1)
    }
}

/// The seqlock write of `fields` under the `u32` count at `count_off`, whose
/// value is `count` now: count odd, barrier, the fields, barrier, and (for
/// [`End::Even`]) count even (odd + 1) and a barrier.
pub fn seqlocked(count_off: usize, count: u32, fields: &[Store], end: End) -> Stores {
    let odd = odd_after(count);
    let mut s = Stores::new();
    s.extend(&[Store::U32(count_off, odd), Store::Barrier]);
    s.extend(fields);
    s.extend(&[Store::Barrier]);
    if end == End::Even {
        s.extend(&[Store::U32(count_off, odd.wrapping_add(1)), Store::Barrier]);
    }
    s
}

/// The host-area fields a host sets on each update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// `migration_seq`.
    pub migration_seq: u64,
    /// `flags`.
    pub flags: u32,
    /// `tai_delta_ns`.
    pub tai_delta_ns: i64,
    /// `tai_delta_total_ns`.
    pub tai_delta_total_ns: i64,
}

impl Update {
    /// The honest update after a migration from a page holding `cur`:
    /// `migration_seq + 1`; uncompensated: `tai_delta_ns = tout_ns` added to
    /// the total, the compensated flag cleared; compensated: the flag set,
    /// delta 0, total unchanged. Flag bits ABI v1 does not define are kept.
    /// `None` on overflow.
    pub fn next(cur: &HostArea, tout_ns: i64, compensated: bool) -> Option<Self> {
        let migration_seq = cur.migration_seq.checked_add(1)?;
        Some(if compensated {
            Self {
                migration_seq,
                flags: (cur.flags & !FLAGS_KNOWN) | FLAG_COMPENSATED,
                tai_delta_ns: 0,
                tai_delta_total_ns: cur.tai_delta_total_ns,
            }
        } else {
            Self {
                migration_seq,
                flags: cur.flags & !FLAG_COMPENSATED,
                tai_delta_ns: tout_ns,
                tai_delta_total_ns: cur.tai_delta_total_ns.checked_add(tout_ns)?,
            }
        })
    }

    /// The field stores of this update (no seqlock).
    pub fn stores(&self) -> [Store; 4] {
        [
            Store::U32(host_off::FLAGS, self.flags),
            Store::U64(host_off::MIGRATION_SEQ, self.migration_seq),
            Store::U64(host_off::TAI_DELTA, self.tai_delta_ns as u64),
            Store::U64(host_off::TAI_DELTA_TOTAL, self.tai_delta_total_ns as u64),
        ]
    }

    /// The seqlocked write of this update onto a host area whose count is
    /// `count` now.
    pub fn seqlocked(&self, count: u32, end: End) -> Stores {
        seqlocked(host_off::SEQ_COUNT, count, &self.stores(), end)
    }
}

/// Writes `u` into the host area with the seqlock protocol; returns the final
/// `seq_count` (odd for [`End::LeaveOdd`]).
pub fn write_update<P: PageReader + PageWriter + ?Sized>(p: &mut P, u: &Update, end: End) -> u32 {
    let count = p.read_u32(host_off::SEQ_COUNT);
    u.seqlocked(count, end).apply(p);
    p.read_u32(host_off::SEQ_COUNT)
}

/// Byte offset of `HostArea::reserved`.
const HOST_RESERVED: usize = offset_of!(HostArea, reserved);

/// The host area as stored now, read without the seqlock (for the host, its
/// only writer, or for a test that controls every writer).
pub fn host_area<R: PageReader + ?Sized>(r: &R) -> HostArea {
    HostArea {
        magic: r.read_u32(host_off::MAGIC),
        version: r.read_u16(host_off::VERSION),
        size: r.read_u16(host_off::SIZE),
        seq_count: r.read_u32(host_off::SEQ_COUNT),
        flags: r.read_u32(host_off::FLAGS),
        migration_seq: r.read_u64(host_off::MIGRATION_SEQ),
        tai_delta_ns: r.read_u64(host_off::TAI_DELTA) as i64,
        tai_delta_total_ns: r.read_u64(host_off::TAI_DELTA_TOTAL) as i64,
        reserved: core::array::from_fn(|i| r.read_u64(HOST_RESERVED + 8 * i)),
    }
}

/// Stores of every field of `h`, `seq_count` included, without the seqlock.
pub fn host_area_stores(h: &HostArea) -> Stores {
    let mut s = Stores::new();
    s.extend(&[
        Store::U32(host_off::MAGIC, h.magic),
        Store::U16(host_off::VERSION, h.version),
        Store::U16(host_off::SIZE, h.size),
        Store::U32(host_off::SEQ_COUNT, h.seq_count),
    ]);
    s.extend(&Update::from(*h).stores());
    for (i, v) in h.reserved.iter().enumerate() {
        s.extend(&[Store::U64(HOST_RESERVED + 8 * i, *v)]);
    }
    s
}

/// Writes every field of `h` as it is (no seqlock): a page's initial state,
/// or a dishonest host.
pub fn write_host_area<W: PageWriter + ?Sized>(w: &mut W, h: &HostArea) {
    host_area_stores(h).apply(w);
    w.write_barrier();
}

/// A valid ABI v1 host area: magic, version, size, `migration_seq`, the rest 0.
pub fn v1_host_area(migration_seq: u64) -> HostArea {
    HostArea {
        magic: abi::MAGIC,
        version: abi::VERSION,
        size: abi::HOST_AREA_V1_SIZE as u16,
        migration_seq,
        ..HostArea::default()
    }
}

/// Zeroes the host's part of the page (`0..GUEST_AREA_OFFSET`) and writes a
/// valid ABI v1 host area with `migration_seq`.
pub fn init_page<W: PageWriter + ?Sized>(w: &mut W, migration_seq: u64) {
    for off in (0..GUEST_AREA_OFFSET).step_by(8) {
        w.write_u64(off, 0);
    }
    write_host_area(w, &v1_host_area(migration_seq));
}

impl From<HostArea> for Update {
    fn from(h: HostArea) -> Self {
        Self {
            migration_seq: h.migration_seq,
            flags: h.flags,
            tai_delta_ns: h.tai_delta_ns,
            tai_delta_total_ns: h.tai_delta_total_ns,
        }
    }
}

/// What `seqlock::read_snapshot` returns for a page holding `h` (when its
/// count is even and its header valid).
pub fn snapshot_of(h: &HostArea) -> Snapshot {
    Snapshot {
        seq_count: h.seq_count,
        flags: h.flags,
        migration_seq: h.migration_seq,
        tai_delta_ns: h.tai_delta_ns,
        tai_delta_total_ns: h.tai_delta_total_ns,
    }
}

/// Byte offset of `GuestArea::reserved`.
const GUEST_RESERVED: usize = GUEST_AREA_OFFSET + offset_of!(GuestArea, reserved);
/// Byte offsets of `Timing::reserved0` and `Timing::reserved`.
const TIMING_RESERVED0: usize = guest_off::TIMING + offset_of!(Timing, reserved0);
const TIMING_RESERVED: usize = guest_off::TIMING + offset_of!(Timing, reserved);

/// The guest area's timing block as stored now.
fn timing_fields<R: PageReader + ?Sized>(r: &R) -> Timing {
    Timing {
        wake_mono_ns: r.read_u64(guest_off::WAKE) as i64,
        work_mono_ns: r.read_u64(guest_off::WORK) as i64,
        done_mono_ns: r.read_u64(guest_off::DONE) as i64,
        wake_source: r.read_u32(guest_off::WAKE_SOURCE),
        step_method: r.read_u32(guest_off::STEP_METHOD),
        sets: r.read_u32(guest_off::SETS),
        reserved0: r.read_u32(TIMING_RESERVED0),
        reserved: core::array::from_fn(|i| r.read_u64(TIMING_RESERVED + 8 * i)),
    }
}

/// The guest area's fields as stored now; `seq_count` is `count` (the value
/// the caller read); reserved words are read too.
fn guest_fields<R: PageReader + ?Sized>(r: &R, count: u32) -> GuestArea {
    GuestArea {
        seq_count: count,
        outcome: r.read_u32(guest_off::OUTCOME),
        ack_seq: r.read_u64(guest_off::ACK_SEQ),
        intended_ns: r.read_u64(guest_off::INTENDED) as i64,
        applied_ns: r.read_u64(guest_off::APPLIED) as i64,
        applied_total_ns: r.read_u64(guest_off::APPLIED_TOTAL) as i64,
        ack_realtime_ns: r.read_u64(guest_off::ACK_REALTIME) as i64,
        events: r.read_u64(guest_off::EVENTS),
        size: r.read_u32(guest_off::SIZE),
        reserved: r.read_u32(GUEST_RESERVED),
        timing: timing_fields(r),
    }
}

/// Reads the guest area under the guest's seqlock: an attempt succeeds when
/// the count is even and unchanged across the field reads. `None` when all
/// `max_attempts` (at least one) saw the guest mid-write.
pub fn read_guest_area<R: PageReader + ?Sized>(r: &R, max_attempts: u32) -> Option<GuestArea> {
    (0..max_attempts.max(1)).find_map(|attempt| {
        if attempt > 0 {
            r.relax();
        }
        let count = r.read_u32(guest_off::SEQ_COUNT);
        if count & 1 == 1 {
            return None;
        }
        r.read_barrier();
        let g = guest_fields(r, count);
        r.read_barrier();
        (r.read_u32(guest_off::SEQ_COUNT) == count).then_some(g)
    })
}

/// The guest's write of `g` (all but `seq_count` and the reserved words)
/// under its seqlock, on a guest area whose count is `count` now: what the
/// module does after acting, for tests that play the guest.
pub fn guest_area_write(count: u32, g: &GuestArea, end: End) -> Stores {
    let t = &g.timing;
    let fields = [
        Store::U32(guest_off::OUTCOME, g.outcome),
        Store::U64(guest_off::ACK_SEQ, g.ack_seq),
        Store::U64(guest_off::INTENDED, g.intended_ns as u64),
        Store::U64(guest_off::APPLIED, g.applied_ns as u64),
        Store::U64(guest_off::APPLIED_TOTAL, g.applied_total_ns as u64),
        Store::U64(guest_off::ACK_REALTIME, g.ack_realtime_ns as u64),
        Store::U64(guest_off::EVENTS, g.events),
        Store::U32(guest_off::SIZE, g.size),
        Store::U64(guest_off::WAKE, t.wake_mono_ns as u64),
        Store::U64(guest_off::WORK, t.work_mono_ns as u64),
        Store::U64(guest_off::DONE, t.done_mono_ns as u64),
        Store::U32(guest_off::WAKE_SOURCE, t.wake_source),
        Store::U32(guest_off::STEP_METHOD, t.step_method),
        Store::U32(guest_off::SETS, t.sets),
    ];
    seqlocked(guest_off::SEQ_COUNT, count, &fields, end)
}
