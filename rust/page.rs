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

/// Writes the guest area with its seqlock: `seq_count` odd, the fields, `seq_count` even.
///
/// `seq` is the guest's count before the write (even); returns the new even count.
pub(crate) fn write_guest_area(bar: &PageBar<'_>, seq: u32, g: &GuestArea) -> u32 {
    let odd = seq.wrapping_add(1) | 1;
    let even = odd.wrapping_add(1);
    // Offsets are compile-time constants below PAGE_BYTES: the checked writes cannot fail, and
    // a failure would only leave the area stale, so the results are ignored.
    let _ = bar.try_write32(odd, guest_off::SEQ_COUNT);
    mb(Write);
    let _ = bar.try_write32(g.outcome, guest_off::OUTCOME);
    let _ = bar.try_write64(g.ack_seq, guest_off::ACK_SEQ);
    let _ = bar.try_write64(g.intended_ns as u64, guest_off::INTENDED);
    let _ = bar.try_write64(g.applied_ns as u64, guest_off::APPLIED);
    let _ = bar.try_write64(g.applied_total_ns as u64, guest_off::APPLIED_TOTAL);
    let _ = bar.try_write64(g.ack_realtime_ns as u64, guest_off::ACK_REALTIME);
    let _ = bar.try_write64(g.events, guest_off::EVENTS);
    mb(Write);
    let _ = bar.try_write32(even, guest_off::SEQ_COUNT);
    even
}

/// The guest area's current seqlock count, rounded up to even (a previous user may have died
/// mid-write).
pub(crate) fn guest_seq(bar: &PageBar<'_>) -> u32 {
    let s = bar.try_read32(guest_off::SEQ_COUNT).unwrap_or(0);
    s.wrapping_add(s & 1)
}
