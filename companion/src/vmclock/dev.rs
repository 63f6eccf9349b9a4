// SPDX-License-Identifier: GPL-2.0

//! The VMClock device: read through its read-only mapping with the seqcount retry, or with
//! `pread` (the driver retries on the seqcount itself; a read also re-arms the driver's
//! `poll`).

use super::VMCLOCK_ABI_BYTES;
use super::{off, parse_vmclock, read_seqcount, SeqPage, VmclockError, VmclockPage};
use anyhow::{anyhow, bail, Context, Result};
use log::debug;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

/// The read-only mapping of the VMClock page.
struct Mapping {
    ptr: NonNull<c_void>,
}

impl Mapping {
    fn bytes(&self) -> *const u8 {
        self.ptr.as_ptr().cast()
    }
}

impl SeqPage for Mapping {
    fn seq(&mut self) -> u32 {
        fence(Ordering::Acquire);
        // SAFETY: the mapping is PAGE_SIZE bytes, SEQ_COUNT + 4 is within it, and the field is
        // 4-byte aligned (offset 12 of a page-aligned mapping).
        let v = unsafe {
            self.bytes()
                .add(off::SEQ_COUNT)
                .cast::<u32>()
                .read_volatile()
        };
        fence(Ordering::Acquire);
        u32::from_le(v)
    }

    fn copy(&mut self, out: &mut [u8; VMCLOCK_ABI_BYTES]) {
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: i < VMCLOCK_ABI_BYTES <= PAGE_SIZE, the mapping's length.
            *b = unsafe { self.bytes().add(i).read_volatile() };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `mmap` of PAGE_SIZE bytes and is unmapped only here.
        let _ = unsafe { munmap(self.ptr, page_size()) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// `/dev/vmclock0`: read through its mapping with the seqcount retry, or with `pread` (the
/// driver retries on the seqcount itself; a read also re-arms the driver's `poll`).
pub struct VmclockDev {
    file: File,
    map: Option<Mapping>,
    /// The device notifies (`VMCLOCK_FLAG_NOTIFICATION_PRESENT`): `poll()` it.
    pub notifications: bool,
}

impl VmclockDev {
    /// Opens and maps the device; the first page read tells whether it notifies.
    pub fn open(path: &Path) -> Result<(Self, VmclockPage), std::io::Error> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        let len = NonZeroUsize::new(page_size()).expect("page size");
        // SAFETY: a fresh shared read-only mapping of the device's one page; no Rust reference
        // to it is ever formed (only volatile reads).
        let map = match unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                &file,
                0,
            )
        } {
            Ok(ptr) => Some(Mapping { ptr }),
            Err(e) => {
                debug!("{}: mmap failed ({e}); reading with pread", path.display());
                None
            }
        };
        let mut dev = Self {
            file,
            map,
            notifications: false,
        };
        let page = dev.read_pread().map_err(std::io::Error::other)?;
        dev.notifications = page.notifications();
        Ok((dev, page))
    }

    /// The descriptor to poll (only when [`VmclockDev::notifications`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// One consistent read via `pread` at offset 0 (re-arms `poll`).
    pub fn read_pread(&mut self) -> Result<VmclockPage> {
        let mut buf = [0u8; VMCLOCK_ABI_BYTES];
        for _ in 0..16 {
            let n = loop {
                match self.file.read_at(&mut buf, 0) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r.context("read VMClock page")?,
                }
            };
            match parse_vmclock(&buf[..n]) {
                Err(VmclockError::Unstable(_)) => continue,
                r => return r.map_err(|e| anyhow!("VMClock page: {e}")),
            }
        }
        bail!("VMClock page: seq_count kept changing")
    }

    /// One consistent read: through the mapping when there is one (no syscall), else `pread`.
    pub fn read(&mut self) -> Result<VmclockPage> {
        match self.map.as_mut() {
            Some(m) => {
                let buf = read_seqcount(m, 1000)
                    .ok_or_else(|| anyhow!("VMClock page: seq_count kept changing"))?;
                parse_vmclock(&buf).map_err(|e| anyhow!("VMClock page: {e}"))
            }
            None => self.read_pread(),
        }
    }

    /// The raw descriptor (for logs).
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}
