// SPDX-License-Identifier: GPL-2.0

//! The host side of the migtime page (ABI v1): creating the shared-memory
//! file, writing the host area with the seqlock protocol, reading the guest
//! ack area.
//!
//! The file is the `mem-path` of QEMU's `memory-backend-file` (ivshmem-plain)
//! or the fd the doorbell server hands out (ivshmem-doorbell). We map it
//! `MAP_SHARED` and write it with volatile stores and fences, exactly as a
//! hypervisor writing guest memory would, so a running guest can read it
//! concurrently.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use anyhow::{bail, Context, Result};
use migtime_abi::abi::{self, guest_off, host_off, GuestArea};
use migtime_abi::seqlock::PageReader;

/// Size of the shared-memory region (ivshmem needs a power of two).
pub const REGION_BYTES: usize = 1 << 20;

/// A page header corruption written before boot: the module must not bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BadPage {
    /// `magic` is not "MIGT".
    BadMagic,
    /// `version` is 2.
    BadVersion,
    /// `size` is 8 (smaller than the v1 host area).
    BadSize,
    /// The destination page is left with an odd `seq_count` (host "crashed"
    /// mid-write): the guest can never read a consistent snapshot.
    StuckOdd,
    /// The destination page announces a `migration_seq` lower than the
    /// source's (the source page starts at 5, the destination writes 4).
    SeqBackwards,
    /// A consistent page asking for a +10 days step: over the module's limit.
    HugeDelta,
    /// Not a page content: the migration completes, then the destination
    /// QEMU is killed (SIGKILL) before `cont` and the source is resumed.
    /// The source page was never written: the guest must see nothing.
    DestKilled,
    /// Doorbell mode: after the update and the normal ring, ring the vector
    /// 10 000 times in a burst. Exactly one event.
    DoorbellStorm,
    /// After the update, a host thread rewrites the page for 2 s: garbage
    /// (huge seq/delta/total) under an odd count, then the correct values
    /// under an even count. Exactly one event, with the correct values.
    PageHammer,
    /// Doorbell mode: after the ack, publish 2000 more updates back to back
    /// (bursts of 10, each update rung), see `storm.rs`. The guest ends in
    /// step with the last page; the guest program checks the rest.
    PublishStorm,
}

impl BadPage {
    /// Whether the corruption is in the header (written before boot).
    pub fn is_header(self) -> bool {
        matches!(
            self,
            BadPage::BadMagic | BadPage::BadVersion | BadPage::BadSize
        )
    }

    /// Whether the kind is a host-side fault around the last migration
    /// rather than page content.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            BadPage::DestKilled
                | BadPage::DoorbellStorm
                | BadPage::PageHammer
                | BadPage::PublishStorm
        )
    }
}

/// The raw host area, read without the seqlock (the host is the only writer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostRaw {
    pub magic: u32,
    pub version: u16,
    pub size: u16,
    pub seq_count: u32,
    pub flags: u32,
    pub migration_seq: u64,
    pub tai_delta_ns: i64,
    pub tai_delta_total_ns: i64,
}

/// One host-area update (the variable fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub migration_seq: u64,
    pub flags: u32,
    pub tai_delta_ns: i64,
    pub tai_delta_total_ns: i64,
    /// Leave `seq_count` odd (a writer that never finished).
    pub leave_odd: bool,
}

/// A mapped page file.
pub struct PageFile {
    path: PathBuf,
    ptr: *mut u8,
    len: usize,
    remove_on_drop: bool,
}

// SAFETY: `ptr` is a MAP_SHARED mapping owned by this value (unmapped only in
// `drop`), not tied to the creating thread; every access is a bounds-checked
// volatile read or write, so moving the owner to another thread is sound.
unsafe impl Send for PageFile {}

impl PageFile {
    /// Creates (or truncates) `path` with [`REGION_BYTES`] zero bytes and maps it.
    /// The file is removed when the value is dropped.
    pub fn create(path: &Path) -> Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("creating page file {}", path.display()))?;
        f.set_len(REGION_BYTES as u64)
            .with_context(|| format!("sizing page file {}", path.display()))?;
        let mut p = Self::map(path, &f)?;
        p.remove_on_drop = true;
        Ok(p)
    }

    /// Maps an existing file (at least one ABI page long). Not removed on drop.
    pub fn open(path: &Path) -> Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening page file {}", path.display()))?;
        Self::map(path, &f)
    }

    fn map(path: &Path, f: &std::fs::File) -> Result<Self> {
        let len = f.metadata()?.len() as usize;
        if len < abi::PAGE_BYTES {
            bail!(
                "page file {} is {} bytes, need at least {}",
                path.display(),
                len,
                abi::PAGE_BYTES
            );
        }
        // SAFETY: mapping a regular file we opened read-write; checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mmap {}", path.display()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            ptr: ptr as *mut u8,
            len,
            remove_on_drop: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep (or not) the file when dropped.
    pub fn set_remove_on_drop(&mut self, remove: bool) {
        self.remove_on_drop = remove;
    }

    fn check(&self, off: usize, n: usize) {
        assert!(
            off + n <= self.len && off % n == 0,
            "page access {off}+{n} out of range"
        );
    }

    pub fn r16(&self, off: usize) -> u16 {
        self.check(off, 2);
        // SAFETY: in range and aligned (checked); shared memory is read volatile.
        u16::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u16) })
    }
    pub fn r32(&self, off: usize) -> u32 {
        self.check(off, 4);
        // SAFETY: as above.
        u32::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u32) })
    }
    pub fn r64(&self, off: usize) -> u64 {
        self.check(off, 8);
        // SAFETY: as above.
        u64::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u64) })
    }
    pub fn w16(&self, off: usize, v: u16) {
        self.check(off, 2);
        // SAFETY: as above; the host owns the host area.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u16, v.to_le()) }
    }
    pub fn w32(&self, off: usize, v: u32) {
        self.check(off, 4);
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u32, v.to_le()) }
    }
    pub fn w64(&self, off: usize, v: u64) {
        self.check(off, 8);
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u64, v.to_le()) }
    }

    /// Writes a fresh, valid ABI v1 host area: magic, version 1, size 64,
    /// seq_count 0, flags 0, the given `migration_seq`, totals 0, reserved 0.
    pub fn init_valid(&self, migration_seq: u64) {
        for off in (0..abi::GUEST_AREA_OFFSET).step_by(8) {
            self.w64(off, 0);
        }
        self.w32(host_off::MAGIC, abi::MAGIC);
        self.w16(host_off::VERSION, abi::VERSION);
        self.w16(host_off::SIZE, abi::HOST_AREA_V1_SIZE as u16);
        self.w64(host_off::MIGRATION_SEQ, migration_seq);
        fence(Ordering::SeqCst);
    }

    /// Corrupts the header the way `kind` says (header kinds only).
    pub fn write_bad_header(&self, kind: BadPage) -> Result<()> {
        match kind {
            BadPage::BadMagic => self.w32(host_off::MAGIC, u32::from_le_bytes(*b"GARB")),
            BadPage::BadVersion => self.w16(host_off::VERSION, abi::VERSION + 1),
            BadPage::BadSize => self.w16(host_off::SIZE, 8),
            other => bail!("{other:?} is not a header corruption"),
        }
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// The host area as it is now (no seqlock: the host is the only writer).
    pub fn host_raw(&self) -> HostRaw {
        HostRaw {
            magic: self.r32(host_off::MAGIC),
            version: self.r16(host_off::VERSION),
            size: self.r16(host_off::SIZE),
            seq_count: self.r32(host_off::SEQ_COUNT),
            flags: self.r32(host_off::FLAGS),
            migration_seq: self.r64(host_off::MIGRATION_SEQ),
            tai_delta_ns: self.r64(host_off::TAI_DELTA) as i64,
            tai_delta_total_ns: self.r64(host_off::TAI_DELTA_TOTAL) as i64,
        }
    }

    /// Writes `u` with the seqlock protocol: `seq_count` odd, fields, fence,
    /// `seq_count` even (odd + 1). A count left odd by an earlier writer is
    /// moved on to the next odd value first. Returns the final `seq_count`.
    pub fn write_update(&self, u: &Update) -> u32 {
        let c = self.r32(host_off::SEQ_COUNT);
        let odd = if c & 1 == 1 {
            c.wrapping_add(2)
        } else {
            c.wrapping_add(1)
        };
        self.w32(host_off::SEQ_COUNT, odd);
        fence(Ordering::SeqCst);
        self.w32(host_off::FLAGS, u.flags);
        self.w64(host_off::MIGRATION_SEQ, u.migration_seq);
        self.w64(host_off::TAI_DELTA, u.tai_delta_ns as u64);
        self.w64(host_off::TAI_DELTA_TOTAL, u.tai_delta_total_ns as u64);
        fence(Ordering::SeqCst);
        if u.leave_odd {
            return odd;
        }
        let even = odd.wrapping_add(1);
        self.w32(host_off::SEQ_COUNT, even);
        fence(Ordering::SeqCst);
        even
    }

    /// Reads the guest area under the guest's seqlock; `None` if the guest is
    /// mid-write (odd or changing count) in every one of a few attempts.
    pub fn guest_area(&self) -> Option<GuestArea> {
        for _ in 0..100 {
            let c0 = self.r32(guest_off::SEQ_COUNT);
            if c0 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            fence(Ordering::SeqCst);
            let g = GuestArea {
                seq_count: c0,
                outcome: self.r32(guest_off::OUTCOME),
                ack_seq: self.r64(guest_off::ACK_SEQ),
                intended_ns: self.r64(guest_off::INTENDED) as i64,
                applied_ns: self.r64(guest_off::APPLIED) as i64,
                applied_total_ns: self.r64(guest_off::APPLIED_TOTAL) as i64,
                ack_realtime_ns: self.r64(guest_off::ACK_REALTIME) as i64,
                events: self.r64(guest_off::EVENTS),
                size: self.r32(guest_off::SIZE),
                reserved: 0,
                timing: abi::Timing {
                    wake_mono_ns: self.r64(guest_off::WAKE) as i64,
                    work_mono_ns: self.r64(guest_off::WORK) as i64,
                    done_mono_ns: self.r64(guest_off::DONE) as i64,
                    wake_source: self.r32(guest_off::WAKE_SOURCE),
                    step_method: self.r32(guest_off::STEP_METHOD),
                    sets: self.r32(guest_off::SETS),
                    ..abi::Timing::default()
                },
            };
            fence(Ordering::SeqCst);
            if self.r32(guest_off::SEQ_COUNT) == c0 {
                return Some(g);
            }
        }
        None
    }

    /// A copy of the first ABI page (for the run folder).
    pub fn page_bytes(&self) -> Vec<u8> {
        (0..abi::PAGE_BYTES)
            .map(|i| {
                // SAFETY: i < PAGE_BYTES <= len.
                unsafe { std::ptr::read_volatile(self.ptr.add(i)) }
            })
            .collect()
    }
}

impl PageReader for PageFile {
    fn read_u16(&self, off: usize) -> u16 {
        self.r16(off)
    }
    fn read_u32(&self, off: usize) -> u32 {
        self.r32(off)
    }
    fn read_u64(&self, off: usize) -> u64 {
        self.r64(off)
    }
    fn read_barrier(&self) {
        fence(Ordering::SeqCst);
    }
}

impl Drop for PageFile {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A [`PageReader`] over plain bytes (a copy of a page).
#[cfg_attr(not(test), allow(dead_code))]
pub struct BytesReader<'a>(pub &'a [u8]);

impl PageReader for BytesReader<'_> {
    fn read_u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.0[off..off + 2].try_into().unwrap())
    }
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
    }
    fn read_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.0[off..off + 8].try_into().unwrap())
    }
    fn read_barrier(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use migtime_abi::abi::HeaderError;
    use migtime_abi::seqlock::{read_snapshot, ReadError, Snapshot};

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("migtime-harness-test-{}-{tag}", std::process::id()))
    }

    fn file_bytes(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn fresh_page_reads_back_as_valid_v1() {
        let path = temp_path("fresh");
        let page = PageFile::create(&path).unwrap();
        page.init_valid(0);
        let bytes = file_bytes(&path);
        assert_eq!(bytes.len(), REGION_BYTES);
        assert_eq!(&bytes[0..4], b"MIGT");
        let ok = read_snapshot(&BytesReader(&bytes), 1).unwrap();
        assert_eq!(ok.snapshot, Snapshot::default());
        assert_eq!(page.host_raw().size, 64);
        drop(page);
        assert!(!path.exists(), "created page file must be removed on drop");
    }

    #[test]
    fn update_is_read_back_consistently() {
        let path = temp_path("update");
        let page = PageFile::create(&path).unwrap();
        page.init_valid(0);
        let seq = page.write_update(&Update {
            migration_seq: 1,
            flags: 0,
            tai_delta_ns: 2_000_123_456,
            tai_delta_total_ns: 2_000_123_456,
            leave_odd: false,
        });
        assert_eq!(seq, 2);
        let bytes = file_bytes(&path);
        let s = read_snapshot(&BytesReader(&bytes), 1).unwrap().snapshot;
        assert_eq!(
            s,
            Snapshot {
                seq_count: 2,
                flags: 0,
                migration_seq: 1,
                tai_delta_ns: 2_000_123_456,
                tai_delta_total_ns: 2_000_123_456
            }
        );
        // A second, compensated update: negative values survive the round trip.
        page.write_update(&Update {
            migration_seq: 2,
            flags: abi::FLAG_COMPENSATED,
            tai_delta_ns: 0,
            tai_delta_total_ns: -5,
            leave_odd: false,
        });
        let s = read_snapshot(&BytesReader(&file_bytes(&path)), 1)
            .unwrap()
            .snapshot;
        assert_eq!(
            (s.seq_count, s.flags, s.migration_seq, s.tai_delta_total_ns),
            (4, 1, 2, -5)
        );
    }

    #[test]
    fn stuck_odd_page_is_unreadable_and_next_write_recovers() {
        let path = temp_path("odd");
        let page = PageFile::create(&path).unwrap();
        page.init_valid(0);
        let c = page.write_update(&Update {
            migration_seq: 1,
            leave_odd: true,
            ..Default::default()
        });
        assert_eq!(c, 1);
        let bytes = file_bytes(&path);
        assert_eq!(
            read_snapshot(&BytesReader(&bytes), 3),
            Err(ReadError::Busy { attempts: 3 })
        );
        let c = page.write_update(&Update {
            migration_seq: 2,
            ..Default::default()
        });
        assert_eq!(c, 4);
        assert!(read_snapshot(&BytesReader(&file_bytes(&path)), 1).is_ok());
    }

    #[test]
    fn bad_headers_are_rejected_by_the_reader() {
        for (kind, want) in [
            (
                BadPage::BadMagic,
                HeaderError::BadMagic(u32::from_le_bytes(*b"GARB")),
            ),
            (BadPage::BadVersion, HeaderError::BadVersion(2)),
            (BadPage::BadSize, HeaderError::BadSize(8)),
        ] {
            let path = temp_path(&format!("{kind:?}"));
            let page = PageFile::create(&path).unwrap();
            page.init_valid(0);
            page.write_bad_header(kind).unwrap();
            let bytes = file_bytes(&path);
            assert_eq!(
                read_snapshot(&BytesReader(&bytes), 1),
                Err(ReadError::Header(want))
            );
        }
        let path = temp_path("notheader");
        let page = PageFile::create(&path).unwrap();
        assert!(page.write_bad_header(BadPage::HugeDelta).is_err());
    }

    #[test]
    fn guest_area_reads_what_a_guest_wrote() {
        let path = temp_path("guest");
        let page = PageFile::create(&path).unwrap();
        assert_eq!(page.guest_area().unwrap().ack_seq, 0);
        page.w32(guest_off::SEQ_COUNT, 1);
        assert!(page.guest_area().is_none(), "odd guest count must not read");
        page.w32(guest_off::OUTCOME, 1);
        page.w64(guest_off::ACK_SEQ, 7);
        page.w64(guest_off::APPLIED, (-3i64) as u64);
        page.w32(guest_off::SEQ_COUNT, 2);
        let g = page.guest_area().unwrap();
        assert_eq!((g.outcome, g.ack_seq, g.applied_ns), (1, 7, -3));
    }
}
