// SPDX-License-Identifier: GPL-2.0

//! What the host tests share: the real `migtime-companion` binary against stand-ins for its
//! devices (a regular file holding a VMClock page, which mmap and pread read as they read
//! `/dev/vmclock0`; a FIFO for `/dev/migtime`: 64-byte records, EOF when the writer goes, like
//! ENODEV; a fake `chronyc` that appends its arguments to a file), and a real chronyd 4.3 run
//! with `-x` (it never touches the host's clock) when `MIGTIME_CHRONY_ROOT` is set.

// Each test crate uses its own part of these helpers.
#![allow(dead_code)]

use migtime_companion::migtime::{MigtimeEvent, EVENT_BYTES};
use migtime_companion::vmclock::{off, VmclockPage};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const LIVENESS: Duration = Duration::from_secs(20);

pub struct Fixture {
    pub dir: PathBuf,
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn vmclock_page(seq: u32, marker: u64) -> Vec<u8> {
    vmclock_page_flags(seq, marker, 0)
}

/// A page as QEMU's `-device vmclock` writes it (no counter, no time), in a 4096-byte file.
pub fn vmclock_page_flags(seq: u32, marker: u64, flags: u64) -> Vec<u8> {
    let page = VmclockPage {
        seq_count: seq,
        size: 4096,
        counter_id: 0xff,
        disruption_marker: marker,
        flags,
        clock_status: 0,
        vm_generation_counter: None,
    };
    let mut b = page.to_bytes().to_vec();
    b.resize(4096, 0);
    b
}

/// The 64-byte ABI v1 prefix of an event record: what the companion's 64-byte read gets.
pub fn event(n: u64, seq: u64) -> Vec<u8> {
    event_with(n, seq, 1, 2_000_000_050)
}

/// An event record with `outcome` (`MIGTIME_OUTCOME_*`) having applied `applied_ns`.
pub fn event_with(n: u64, seq: u64, outcome: u32, applied_ns: i64) -> Vec<u8> {
    MigtimeEvent {
        event: n,
        migration_seq: seq,
        outcome,
        intended_ns: 2_000_000_000,
        applied_ns,
        residual_ns: applied_ns - 2_000_000_000,
        monotonic_ns: i64::try_from(now_monotonic_ns()).unwrap(),
        ..Default::default()
    }
    .to_le_bytes()[..EVENT_BYTES]
        .to_vec()
}

pub fn now_monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap()
}

impl Fixture {
    pub fn new(name: &str, with_fifo: bool, extra: &[&str]) -> Self {
        Self::with_page(name, with_fifo, extra, &vmclock_page(2, 100))
    }

    pub fn with_page(name: &str, with_fifo: bool, extra: &[&str], page: &[u8]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("migtime-companion-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vmclock"), page).unwrap();
        if with_fifo {
            mkfifo(&dir.join("migtime"));
        }
        let chronyc = dir.join("chronyc");
        fs::write(
            &chronyc,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}/chronyc.log\necho 200 OK\n",
                dir.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&chronyc, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("chronyd.sock"), b"").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_migtime-companion"));
        cmd.arg("--device")
            .arg(dir.join("migtime"))
            .arg("--vmclock")
            .arg(dir.join("vmclock"));
        if !extra.iter().any(|a| a.starts_with("--vmclock-poll-ms")) {
            cmd.arg("--vmclock-poll-ms=20");
        }
        cmd.arg("--reopen-min-ms=20")
            .arg("--reopen-max-ms=200")
            .arg("--no-clock-actions");
        if !extra.contains(&"--chrony-conf") {
            // Not the host's /etc/chrony: no makestep to give back unless a test sets one.
            cmd.arg("--chrony-conf").arg(dir.join("chrony.conf"));
        }
        if !extra.contains(&"--chronyc") {
            cmd.arg("--chronyc")
                .arg(&chronyc)
                .arg("--chrony-socket")
                .arg(dir.join("chronyd.sock"));
        }
        cmd.arg("--on-event")
            .arg(format!(
                "echo \"$MIGTIME_TRIGGER seq=$MIGTIME_SEQ marker=$MIGTIME_MARKER\" >> {}/hook.log",
                dir.display()
            ))
            .args(extra)
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("  | {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self {
            dir,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `pat`; returns it.
    pub fn expect(&mut self, pat: &str) -> String {
        let end = Instant::now() + LIVENESS;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(pat) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no log line containing {pat:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub fn set_marker(&self, seq: u32, marker: u64) {
        let f = OpenOptions::new()
            .write(true)
            .open(self.dir.join("vmclock"))
            .unwrap();
        // Seqcount write: odd, fields, even.
        let seq_at = off::SEQ_COUNT as u64;
        f.write_all_at(&(seq - 1).to_le_bytes(), seq_at).unwrap();
        f.write_all_at(&marker.to_le_bytes(), off::DISRUPTION_MARKER as u64)
            .unwrap();
        f.write_all_at(&seq.to_le_bytes(), seq_at).unwrap();
    }

    pub fn hook_log(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("hook.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn chronyc_log(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("chronyc.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn writer(&self) -> File {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.dir.join("migtime"))
            .unwrap()
    }
}

pub fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// The trace line of a poll wakeup that found no disruption (watch.rs, notification path).
pub const QUIET_WAKEUP: &str = "VMClock poll wakeup: no disruption";

/// Milliseconds of CLOCK_MONOTONIC in a log line's `migtime-companion[S.mmm]:` prefix.
pub fn log_ms(line: &str) -> Option<u64> {
    let t = line.split_once('[')?.1.split_once(']')?.0;
    let (s, ms) = t.split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1000 + ms.parse::<u64>().ok()?)
}

/// User + system CPU time of a process, ms (`/proc/PID/stat` fields 14 and 15).
pub fn cpu_ms(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) * 1000 / hz
}
