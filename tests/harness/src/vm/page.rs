// SPDX-License-Identifier: GPL-2.0

//! The host side of the migtime page (ABI v1): creating the shared-memory
//! file, writing the host area with the seqlock protocol, reading the guest
//! ack area.
//!
//! The file is the `mem-path` of QEMU's `memory-backend-file` (ivshmem-plain)
//! or the fd the doorbell server hands out (ivshmem-doorbell). We map it
//! `MAP_SHARED` and write it with volatile stores and fences, exactly as a
//! hypervisor writing guest memory would, so a running guest can read it
//! concurrently. The page's layout and protocols are `migtime_abi::page`'s
//! (built on `abi.rs`); this file only maps the file and implements that
//! layer's [`PageReader`] and [`PageWriter`] on it.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{fence, Ordering};

use anyhow::{bail, Context, Result};
use migtime_abi::abi::{self, host_off, GuestArea, HostArea};
use migtime_abi::page::{self as layer, End, PageWriter, Update};
use migtime_abi::seqlock::PageReader;

/// Size of the shared-memory region (ivshmem needs a power of two).
pub const REGION_BYTES: usize = 1 << 20;

/// A unique `/dev/shm` page path for guest `name` of this process.
pub fn shm_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::var("MIGTIME_SHM_DIR").unwrap_or_else(|_| "/dev/shm".into());
    PathBuf::from(dir).join(format!("migtime-{}-{n}-{name}", std::process::id()))
}

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

/// Guest-area read attempts before the host gives up until its next poll.
const GUEST_READ_ATTEMPTS: u32 = 100;

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

    /// Writes a fresh, valid ABI v1 host area: magic, version 1, size 64,
    /// seq_count 0, flags 0, the given `migration_seq`, totals 0, reserved 0.
    pub fn init_valid(&mut self, migration_seq: u64) {
        layer::init_page(self, migration_seq);
    }

    /// Corrupts the header the way `kind` says (header kinds only).
    pub fn write_bad_header(&mut self, kind: BadPage) -> Result<()> {
        match kind {
            BadPage::BadMagic => self.write_u32(host_off::MAGIC, u32::from_le_bytes(*b"GARB")),
            BadPage::BadVersion => self.write_u16(host_off::VERSION, abi::VERSION + 1),
            BadPage::BadSize => self.write_u16(host_off::SIZE, 8),
            other => bail!("{other:?} is not a header corruption"),
        }
        self.write_barrier();
        Ok(())
    }

    /// The host area as it is now (no seqlock: the host is the only writer).
    pub fn host_area(&self) -> HostArea {
        layer::host_area(self)
    }

    /// Writes `u` with the seqlock protocol (`migtime_abi::page`); returns
    /// the final `seq_count`.
    pub fn write_update(&mut self, u: &Update, end: End) -> u32 {
        layer::write_update(self, u, end)
    }

    /// Reads the guest area under the guest's seqlock; `None` if the guest is
    /// mid-write (odd or changing count) in every one of a few attempts.
    pub fn guest_area(&self) -> Option<GuestArea> {
        layer::read_guest_area(self, GUEST_READ_ATTEMPTS)
    }

    /// Overwrites the start of the page with `words` (little-endian): the page as read
    /// from a guest's memory, for a page device the harness does not write.
    pub fn load(&mut self, words: &[u64]) {
        for (i, w) in words.iter().enumerate().take(self.len / 8) {
            self.write_u64(i * 8, *w);
        }
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
        self.check(off, 2);
        // SAFETY: in range and aligned (checked); shared memory is read volatile.
        u16::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u16) })
    }
    fn read_u32(&self, off: usize) -> u32 {
        self.check(off, 4);
        // SAFETY: as above.
        u32::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u32) })
    }
    fn read_u64(&self, off: usize) -> u64 {
        self.check(off, 8);
        // SAFETY: as above.
        u64::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u64) })
    }
    fn read_barrier(&self) {
        fence(Ordering::SeqCst);
    }
    fn relax(&self) {
        std::hint::spin_loop();
    }
}

impl PageWriter for PageFile {
    fn write_u16(&mut self, off: usize, v: u16) {
        self.check(off, 2);
        // SAFETY: in range and aligned (checked); the host owns the host area.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u16, v.to_le()) }
    }
    fn write_u32(&mut self, off: usize, v: u32) {
        self.check(off, 4);
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u32, v.to_le()) }
    }
    fn write_u64(&mut self, off: usize, v: u64) {
        self.check(off, 8);
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u64, v.to_le()) }
    }
    fn write_barrier(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use migtime_abi::abi::HeaderError;
    use migtime_abi::page::{guest_area_write, MemPage};
    use migtime_abi::seqlock::{read_snapshot, ReadError, Snapshot};

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("migtime-harness-test-{}-{tag}", std::process::id()))
    }

    /// The file's content, as a page (what the guest sees through BAR2).
    fn file_page(p: &Path) -> MemPage {
        MemPage::from_bytes(&std::fs::read(p).unwrap())
    }

    #[test]
    fn fresh_page_reads_back_as_valid_v1() {
        let path = temp_path("fresh");
        let mut page = PageFile::create(&path).unwrap();
        page.init_valid(0);
        assert_eq!(std::fs::read(&path).unwrap().len(), REGION_BYTES);
        let file = file_page(&path);
        assert_eq!(&file.bytes()[0..4], b"MIGT");
        let ok = read_snapshot(&file, 1).unwrap();
        assert_eq!(ok.snapshot, Snapshot::default());
        assert_eq!(page.host_area().size, 64);
        drop(page);
        assert!(!path.exists(), "created page file must be removed on drop");
    }

    #[test]
    fn updates_reach_the_file() {
        let path = temp_path("update");
        let mut page = PageFile::create(&path).unwrap();
        page.init_valid(0);
        let u = Update {
            migration_seq: 1,
            flags: 0,
            tai_delta_ns: 2_000_123_456,
            tai_delta_total_ns: 2_000_123_456,
        };
        assert_eq!(page.write_update(&u, End::Even), 2);
        let s = read_snapshot(&file_page(&path), 1).unwrap().snapshot;
        assert_eq!(
            (s.seq_count, s.migration_seq, s.tai_delta_ns),
            (2, 1, 2_000_123_456)
        );
        assert_eq!(page.write_update(&u, End::LeaveOdd), 3);
        assert_eq!(
            read_snapshot(&file_page(&path), 3),
            Err(ReadError::Busy { attempts: 3 })
        );
        assert_eq!(page.write_update(&u, End::Even), 6);
        assert!(read_snapshot(&file_page(&path), 1).is_ok());
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
            let mut page = PageFile::create(&path).unwrap();
            page.init_valid(0);
            page.write_bad_header(kind).unwrap();
            assert_eq!(
                read_snapshot(&file_page(&path), 1),
                Err(ReadError::Header(want))
            );
        }
        let path = temp_path("notheader");
        let mut page = PageFile::create(&path).unwrap();
        assert!(page.write_bad_header(BadPage::HugeDelta).is_err());
    }

    #[test]
    fn guest_area_reads_what_a_guest_wrote() {
        let path = temp_path("guest");
        let mut page = PageFile::create(&path).unwrap();
        assert_eq!(page.guest_area().unwrap().ack_seq, 0);
        page.write_u32(abi::guest_off::SEQ_COUNT, 1);
        assert!(page.guest_area().is_none(), "odd guest count must not read");
        let g = GuestArea {
            outcome: 1,
            ack_seq: 7,
            applied_ns: -3,
            ..GuestArea::default()
        };
        guest_area_write(1, &g, End::Even).apply(&mut page);
        let g = page.guest_area().unwrap();
        assert_eq!((g.outcome, g.ack_seq, g.applied_ns), (1, 7, -3));
    }
}
