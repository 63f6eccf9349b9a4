// SPDX-License-Identifier: GPL-2.0

//! A page in plain memory ([`MemPage`]) and one whose writer runs between a
//! reader's reads ([`Interleaved`]); re-exported by [`crate::page`].

use core::cell::{Cell, RefCell};

use crate::abi::{HostArea, PAGE_BYTES};
use crate::page::{write_host_area, PageWriter};
use crate::seqlock::PageReader;

/// A page in plain memory, little-endian, [`PAGE_BYTES`] long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemPage {
    bytes: [u8; PAGE_BYTES],
}

impl Default for MemPage {
    fn default() -> Self {
        Self {
            bytes: [0; PAGE_BYTES],
        }
    }
}

impl MemPage {
    /// An all-zero page.
    pub fn new() -> Self {
        Self::default()
    }

    /// A page holding `h` (written raw) and a zero guest area.
    pub fn with_host_area(h: &HostArea) -> Self {
        let mut p = Self::new();
        write_host_area(&mut p, h);
        p
    }

    /// A copy of the first [`PAGE_BYTES`] of `b` (zero-padded if shorter).
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut p = Self::new();
        let n = b.len().min(PAGE_BYTES);
        p.bytes[..n].copy_from_slice(&b[..n]);
        p
    }

    /// The page's bytes.
    pub fn bytes(&self) -> &[u8; PAGE_BYTES] {
        &self.bytes
    }

    /// The page's bytes, for raw (dishonest) writes.
    pub fn bytes_mut(&mut self) -> &mut [u8; PAGE_BYTES] {
        &mut self.bytes
    }

    fn get<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut b = [0; N];
        b.copy_from_slice(&self.bytes[off..off + N]);
        b
    }
}

impl PageReader for MemPage {
    fn read_u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.get(off))
    }
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.get(off))
    }
    fn read_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.get(off))
    }
    fn read_barrier(&self) {}
}

impl PageWriter for MemPage {
    fn write_u16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn write_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn write_u64(&mut self, off: usize, v: u64) {
        self.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// A [`MemPage`] whose writer runs between a reader's reads: after read
/// number `n` (from 0, any width) `step(n, page)` may store into the page.
/// Tests and the fuzz target drive the seqlock readers with it, so reads
/// interleave with writes at any point they choose.
pub struct Interleaved<F: FnMut(u64, &mut MemPage)> {
    page: RefCell<MemPage>,
    reads: Cell<u64>,
    step: RefCell<F>,
}

impl<F: FnMut(u64, &mut MemPage)> Interleaved<F> {
    /// `page`, written by `step` between reads.
    pub fn new(page: MemPage, step: F) -> Self {
        Self {
            page: RefCell::new(page),
            reads: Cell::new(0),
            step: RefCell::new(step),
        }
    }

    /// Reads made so far.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// The page as it is now.
    pub fn into_page(self) -> MemPage {
        self.page.into_inner()
    }

    fn after_read<T>(&self, v: T) -> T {
        let n = self.reads.get();
        self.reads.set(n + 1);
        (self.step.borrow_mut())(n, &mut self.page.borrow_mut());
        v
    }
}

impl<F: FnMut(u64, &mut MemPage)> PageReader for Interleaved<F> {
    fn read_u16(&self, off: usize) -> u16 {
        let v = self.page.borrow().read_u16(off);
        self.after_read(v)
    }
    fn read_u32(&self, off: usize) -> u32 {
        let v = self.page.borrow().read_u32(off);
        self.after_read(v)
    }
    fn read_u64(&self, off: usize) -> u64 {
        let v = self.page.borrow().read_u64(off);
        self.after_read(v)
    }
    fn read_barrier(&self) {}
}
