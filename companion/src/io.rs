// SPDX-License-Identifier: GPL-2.0

//! The companion's I/O: the two devices, the clock syscalls and the time daemon commands.
//! Every decision is in [`crate::logic`].

use crate::logic::{self, MigtimeEvent, SeqPage, VmclockPage, VMCLOCK_ABI_BYTES};
use anyhow::{anyhow, bail, Context, Result};
use log::{debug, info, warn};
use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::time::TimeValLike;
use nix::time::{clock_gettime, ClockId};
use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

/// CLOCK_MONOTONIC in milliseconds (the time base of [`logic::Dedup`]).
pub fn monotonic_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| u64::try_from(t.num_milliseconds()).unwrap_or(0))
        .unwrap_or(0)
}

/// Whether an open/read error means "the device is not there (yet/any more)": retry later.
pub fn is_device_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOENT | Errno::ENODEV | Errno::ENXIO | Errno::ESHUTDOWN)
    )
}

/// `/dev/migtime`, opened non-blocking.
pub struct MigtimeDev {
    file: File,
}

/// What one read of `/dev/migtime` gave.
pub enum MigtimeRead {
    /// A new event.
    Event(MigtimeEvent),
    /// Nothing new.
    Empty,
    /// The device was unbound or the module is going away.
    Gone,
}

impl MigtimeDev {
    /// Opens the device read-only and non-blocking.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Self { file })
    }

    /// The descriptor to poll for `POLLIN`.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }

    /// Reads one record without blocking.
    pub fn read(&mut self) -> Result<MigtimeRead> {
        let mut buf = [0u8; logic::EVENT_BYTES];
        loop {
            match self.file.read(&mut buf) {
                // End of file: not a migtime device any more (or a test's FIFO lost its writer).
                Ok(0) => return Ok(MigtimeRead::Gone),
                Ok(n) => {
                    return logic::parse_event(&buf[..n])
                        .map(MigtimeRead::Event)
                        .ok_or_else(|| anyhow!("short /dev/migtime record ({n} bytes)"));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(MigtimeRead::Empty)
                }
                Err(e) if is_device_gone(&e) => return Ok(MigtimeRead::Gone),
                Err(e) => return Err(e).context("read /dev/migtime"),
            }
        }
    }
}

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
                .add(logic::vmclock_off::SEQ_COUNT)
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
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
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
            match logic::parse_vmclock(&buf[..n]) {
                Err(logic::VmclockError::Unstable(_)) => continue,
                r => return r.map_err(|e| anyhow!("VMClock page: {e}")),
            }
        }
        bail!("VMClock page: seq_count kept changing")
    }

    /// One consistent read: through the mapping when there is one (no syscall), else `pread`.
    pub fn read(&mut self) -> Result<VmclockPage> {
        match self.map.as_mut() {
            Some(m) => {
                let buf = logic::read_seqcount(m, 1000)
                    .ok_or_else(|| anyhow!("VMClock page: seq_count kept changing"))?;
                logic::parse_vmclock(&buf).map_err(|e| anyhow!("VMClock page: {e}"))
            }
            None => self.read_pread(),
        }
    }

    /// The raw descriptor (for logs).
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

/// `NTP_PHASE_LIMIT` in µs (include/linux/timex.h): what the kernel's `ntp_clear()` sets
/// `time_maxerror` and `time_esterror` to.
pub const NTP_PHASE_LIMIT_US: libc::c_long = (500_000_000 / 1000) << 5;

fn clock_adjtime(tx: &mut libc::timex) -> Result<libc::c_int> {
    // SAFETY: `tx` is a valid, exclusively borrowed `struct timex`.
    let r = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, tx) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(r)
}

/// Resets the kernel's NTP state as `ntp_clear()` does on a step: `STA_UNSYNC`, maximum and
/// estimated error at the limit. Returns the old status.
pub fn ntp_reset() -> Result<i32> {
    // SAFETY: all-zero is a valid `struct timex` (modes 0: read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    clock_adjtime(&mut tx).context("adjtimex (read)")?;
    let old = tx.status;
    // SAFETY: as above.
    let mut set: libc::timex = unsafe { std::mem::zeroed() };
    set.modes = libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
    set.status = old | libc::STA_UNSYNC;
    set.maxerror = NTP_PHASE_LIMIT_US;
    set.esterror = NTP_PHASE_LIMIT_US;
    clock_adjtime(&mut set).context("adjtimex (STA_UNSYNC, maxerror, esterror)")?;
    Ok(old)
}

/// Steps CLOCK_REALTIME by +1 ns with `ADJ_SETOFFSET`: the kernel's `clock_was_set()` wakes
/// every `TFD_TIMER_CANCEL_ON_SET` timer (systemd-timesyncd re-syncs on that).
pub fn cancel_on_set_nudge() -> Result<()> {
    // SAFETY: all-zero is a valid `struct timex`.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
    tx.time.tv_sec = 0;
    tx.time.tv_usec = 1; // nanoseconds with ADJ_NANO
    clock_adjtime(&mut tx).context("clock_adjtime(ADJ_SETOFFSET, 1 ns)")?;
    Ok(())
}

/// Runs `cmd`, killing it after `timeout`; returns its combined output.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: timed out after {} ms", timeout.as_millis());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .replace('\n', " | ");
    if !status.success() {
        bail!("{what}: {status}: {text}");
    }
    Ok(text)
}

/// How to talk to chronyd.
#[derive(Clone, Debug)]
pub struct Chrony {
    /// `chronyc` to run.
    pub chronyc: PathBuf,
    /// chronyd's command socket.
    pub socket: PathBuf,
    /// Only when the socket exists (`auto`), or always (failures are warnings either way).
    pub required: bool,
    /// Commands, in order (`reset sources`, `makestep 0.1 1`, `burst 4/4`).
    pub commands: Vec<String>,
    /// Per-invocation timeout.
    pub timeout: Duration,
}

impl Chrony {
    /// Sends the commands with one `chronyc -m` run over the unix command socket.
    /// `Ok(None)`: skipped (auto mode, no chronyd socket).
    pub fn resync(&self) -> Result<Option<String>> {
        if !self.required && !self.socket.exists() {
            return Ok(None);
        }
        let mut cmd = Command::new(&self.chronyc);
        cmd.arg("-n").arg("-m").arg("-h").arg(&self.socket);
        cmd.args(&self.commands);
        run_with_timeout(cmd, self.timeout).map(Some)
    }
}

/// Runs the user's `--on-event` command through `/bin/sh -c` with the trigger in its
/// environment.
pub fn run_hook(hook: &str, env: &[(&str, String)], timeout: Duration) -> Result<String> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(hook);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_timeout(cmd, timeout)
}

/// Logs a successful open once per (re)appearance.
pub fn log_opened(what: &str, path: &Path, detail: &str) {
    info!("{}: opened {}{}", what, path.display(), detail);
}

/// Logs an open failure at info the first time, debug while it persists.
pub fn log_missing(path: &Path, e: &dyn std::fmt::Display, first: bool, retry_ms: u64) {
    if first {
        info!("{}: not available ({e}); retrying (backoff up to the configured maximum, next in {retry_ms} ms)", path.display());
    } else {
        debug!(
            "{}: still not available ({e}); next try in {retry_ms} ms",
            path.display()
        );
    }
}

/// Logs a warning for a failed step of an action.
pub fn warn_failed(what: &str, e: &anyhow::Error) {
    warn!("{what} failed: {e:#}");
}
