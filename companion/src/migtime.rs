// SPDX-License-Identifier: GPL-2.0

//! `/dev/migtime`: one 64-byte record (`struct migtime_event`) per migration the module
//! handled, read without blocking.

use anyhow::{anyhow, Context, Result};
use migtime_abi::abi::Outcome;
use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Bytes of one `/dev/migtime` record as the companion reads it: the ABI v1 prefix
/// (`MIGTIME_EVENT_V1_BYTES`), which the module returns for a buffer of this size.
pub const EVENT_BYTES: usize = migtime_abi::event::EVENT_V1_BYTES;

/// One `/dev/migtime` record (`struct migtime_event`, include/migtime_abi.h): the module's own
/// type, from the event file it compiles (`rust/event.rs`).
pub type MigtimeEvent = migtime_abi::event::Event;

/// The outcome's name as the module logs it (`stepped`, `notified`, ...).
pub fn outcome_name(ev: &MigtimeEvent) -> &'static str {
    Outcome::from_u32(ev.outcome).map_or("unknown", Outcome::name)
}

/// Whether the module stepped the clock for this event.
pub fn stepped(ev: &MigtimeEvent) -> bool {
    Outcome::from_u32(ev.outcome) == Some(Outcome::Stepped)
}

/// Parses one record; `None` unless `b` is exactly [`EVENT_BYTES`] long (what `read(2)` returns).
pub fn parse_event(b: &[u8]) -> Option<MigtimeEvent> {
    if b.len() != EVENT_BYTES {
        return None;
    }
    MigtimeEvent::from_le_bytes(b)
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
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads one record without blocking.
    pub fn read(&mut self) -> Result<MigtimeRead> {
        let mut buf = [0u8; EVENT_BYTES];
        loop {
            match self.file.read(&mut buf) {
                // End of file: not a migtime device any more (or a test's FIFO lost its writer).
                Ok(0) => return Ok(MigtimeRead::Gone),
                Ok(n) => {
                    return parse_event(&buf[..n])
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

#[cfg(test)]
mod tests {
    use super::*;
    use migtime_abi::event::Event;

    #[test]
    fn event_parses_what_the_module_writes() {
        let ev = Event {
            event: 3,
            migration_seq: 7,
            page_flags: 1,
            outcome: 1,
            intended_ns: 2_000_000_000,
            applied_ns: 2_000_000_123,
            residual_ns: 123,
            realtime_ns: -5,
            monotonic_ns: 9_000_000_000,
            ..Default::default()
        };
        // The companion reads with a 64-byte buffer: the module returns the ABI v1 prefix.
        let p = parse_event(&ev.to_le_bytes()[..EVENT_BYTES]).unwrap();
        assert_eq!(
            (p.event, p.migration_seq, p.page_flags, p.outcome),
            (3, 7, 1, 1)
        );
        assert_eq!(
            (
                p.intended_ns,
                p.applied_ns,
                p.residual_ns,
                p.realtime_ns,
                p.monotonic_ns
            ),
            (2_000_000_000, 2_000_000_123, 123, -5, 9_000_000_000)
        );
        assert!(stepped(&p));
        assert_eq!(outcome_name(&p), "stepped");
        assert_eq!(parse_event(&[0u8; 63]), None);
        assert_eq!(parse_event(&[0u8; 65]), None);
    }
}
