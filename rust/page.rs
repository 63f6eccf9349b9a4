// SPDX-License-Identifier: GPL-2.0

//! The shared page as seen through BAR2: a [`PageReader`] for the seqlock read, and the writer
//! of the guest area.

use crate::abi::{
    guest_off,
    GuestArea,
    PAGE_BYTES, //
};
use crate::seqlock::PageReader;
use kernel::{
    io::Io,
    pci,
    sync::barrier::{
        mb,
        Read,
        Write, //
    },
};

/// The mapped page: BAR2, at least [`PAGE_BYTES`] long (checked when it is mapped).
pub(crate) type PageBar<'a> = pci::Bar<'a, PAGE_BYTES>;

/// [`PageReader`] over the mapped BAR.
///
/// Reads are runtime bounds-checked; an offset past the BAR (impossible for the ABI's offsets,
/// which are below [`PAGE_BYTES`]) reads as all ones, which is an odd seqlock count, so such a
/// read can never be accepted.
pub(crate) struct BarPage<'a, 'b>(pub(crate) &'a PageBar<'b>);

impl PageReader for BarPage<'_, '_> {
    fn read_u16(&self, off: usize) -> u16 {
        self.0.try_read16(off).unwrap_or(u16::MAX)
    }

    fn read_u32(&self, off: usize) -> u32 {
        self.0.try_read32(off).unwrap_or(u32::MAX)
    }

    fn read_u64(&self, off: usize) -> u64 {
        self.0.try_read64(off).unwrap_or(u64::MAX)
    }

    fn read_barrier(&self) {
        // The host writes from another process (another CPU): order our reads with a full read
        // barrier (`rmb()`), valid for both cache-coherent memory and MMIO.
        mb(Read);
    }

    fn relax(&self) {
        kernel::processor::cpu_relax();
    }
}

/// Writes a little-endian `u64` at the constant offset `off` as two checked 32-bit writes.
///
/// `kernel::io` checks offsets at compile time only for accesses no wider than the BAR's
/// guaranteed alignment (4 bytes), so a 64-bit field is written in halves. Both halves are
/// inside the guest area's seqlock, so a reader never acts on a half-written value.
#[inline(always)]
fn write_u64(bar: &PageBar<'_>, v: u64, off: usize) {
    // CAST: the low and the high 32 bits.
    bar.write32(v as u32, off);
    bar.write32((v >> 32) as u32, off + 4);
}

/// Writes the guest area with its seqlock: `seq_count` odd, the fields, `seq_count` even.
///
/// `seq` is the guest's count before the write (even); returns the new even count. The offsets
/// are constants below [`PAGE_BYTES`], checked against the BAR's size at compile time.
pub(crate) fn write_guest_area(bar: &PageBar<'_>, seq: u32, g: &GuestArea) -> u32 {
    let odd = seq.wrapping_add(1) | 1;
    let even = odd.wrapping_add(1);
    bar.write32(odd, guest_off::SEQ_COUNT);
    mb(Write);
    bar.write32(g.outcome, guest_off::OUTCOME);
    write_u64(bar, g.ack_seq, guest_off::ACK_SEQ);
    // CAST: the signed fields are stored as their two's-complement bits (little-endian).
    write_u64(bar, g.intended_ns as u64, guest_off::INTENDED);
    write_u64(bar, g.applied_ns as u64, guest_off::APPLIED);
    write_u64(bar, g.applied_total_ns as u64, guest_off::APPLIED_TOTAL);
    write_u64(bar, g.ack_realtime_ns as u64, guest_off::ACK_REALTIME);
    write_u64(bar, g.events, guest_off::EVENTS);
    bar.write32(g.size, guest_off::SIZE);
    let t = &g.timing;
    write_u64(bar, t.wake_mono_ns as u64, guest_off::WAKE);
    write_u64(bar, t.work_mono_ns as u64, guest_off::WORK);
    write_u64(bar, t.done_mono_ns as u64, guest_off::DONE);
    bar.write32(t.wake_source, guest_off::WAKE_SOURCE);
    bar.write32(t.step_method, guest_off::STEP_METHOD);
    bar.write32(t.sets, guest_off::SETS);
    mb(Write);
    bar.write32(even, guest_off::SEQ_COUNT);
    even
}

/// The guest area's current seqlock count, rounded up to even (a previous user may have died
/// mid-write).
pub(crate) fn guest_seq(bar: &PageBar<'_>) -> u32 {
    let s = bar.read32(guest_off::SEQ_COUNT);
    s.wrapping_add(s & 1)
}
