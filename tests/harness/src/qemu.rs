// SPDX-License-Identifier: GPL-2.0

//! Starting QEMU guests the way the guest contract (tests/README.md) and the
//! platform facts (TCG, main RAM as a backend, ivshmem master=on) require,
//! and following their results channel.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::ivshmem::DoorbellServer;
use crate::page::PageFile;

/// How the page reaches the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `ivshmem-plain,master=on` on a `memory-backend-file`: the module polls.
    Plain,
    /// `ivshmem-doorbell,master=on,vectors=1` with our own server: interrupts.
    Doorbell,
}

/// What a guest is started with.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Appended to `console=ttyS0 panic=-1`.
    pub append_extra: String,
    pub mode: Mode,
    pub run_dir: PathBuf,
    pub memory_mb: u32,
    /// Virtual CPUs (`-smp`); the suite never runs fewer than 2.
    pub vcpus: u32,
}

/// vCPUs of every guest unless a scenario asks for more: SMP everywhere, so
/// races between the doorbell work, the poll work and readers can show.
pub const DEFAULT_VCPUS: u32 = 2;

/// One running QEMU with its page (and doorbell server).
pub struct Guest {
    pub name: String,
    pub child: Option<Child>,
    pub page: PageFile,
    pub server: Option<DoorbellServer>,
    pub console: PathBuf,
    pub results: PathBuf,
    pub qmp_sock: PathBuf,
    pub started: Instant,
    pub exit: Option<ExitStatus>,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The accelerator: TCG unless `MIGTIME_ACCEL` says otherwise.
pub fn accel() -> String {
    std::env::var("MIGTIME_ACCEL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tcg".into())
}

/// The `-accel` argument: multi-threaded TCG (one host thread per vCPU, so
/// the vCPUs of an SMP guest really run concurrently), other accelerators as
/// given.
pub fn accel_arg() -> String {
    let a = accel();
    if a == "tcg" {
        "tcg,thread=multi".into()
    } else {
        a
    }
}

/// The QEMU arguments for guest `name` (no program name).
pub fn qemu_args(
    cfg: &GuestConfig,
    name: &str,
    page: &Path,
    doorbell_sock: Option<&Path>,
    incoming: bool,
) -> Vec<String> {
    let run = &cfg.run_dir;
    let m = cfg.memory_mb;
    let mut a: Vec<String> = vec![
        "-accel".into(),
        accel_arg(),
        "-smp".into(),
        cfg.vcpus.max(1).to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-m".into(),
        format!("{m}M"),
        // Main RAM as a backend first: works around the TCG abort in
        // tlb_reset_dirty_range_all when a file backend is present.
        "-object".into(),
        format!("memory-backend-ram,id=ram0,size={m}M"),
        "-machine".into(),
        "q35,memory-backend=ram0".into(),
    ];
    match (cfg.mode, doorbell_sock) {
        (Mode::Doorbell, Some(sock)) => {
            a.push("-chardev".into());
            a.push(format!("socket,id=ivsh,path={}", sock.display()));
            a.push("-device".into());
            a.push("ivshmem-doorbell,chardev=ivsh,vectors=1,master=on".into());
        }
        _ => {
            a.push("-object".into());
            a.push(format!(
                "memory-backend-file,id=pv,size=1M,mem-path={},share=on",
                page.display()
            ));
            a.push("-device".into());
            a.push("ivshmem-plain,memdev=pv,master=on".into());
        }
    }
    // MIGTIME_CMDLINE: extra kernel parameters for every guest of this run
    // (e.g. iomem=relaxed on a distribution kernel with IO_STRICT_DEVMEM).
    let extra = std::env::var("MIGTIME_CMDLINE").unwrap_or_default();
    let append = format!("console=ttyS0 panic=-1 {extra} {}", cfg.append_extra)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    a.extend([
        "-kernel".into(),
        cfg.kernel.display().to_string(),
        "-initrd".into(),
        cfg.initrd.display().to_string(),
        "-append".into(),
        append,
        "-serial".into(),
        format!("file:{}", run.join(format!("console-{name}.log")).display()),
        "-serial".into(),
        format!(
            "file:{}",
            run.join(format!("results-{name}.ktap")).display()
        ),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        "-qmp".into(),
        format!(
            "unix:{},server=on,wait=off",
            run.join(format!("qmp-{name}.sock")).display()
        ),
    ]);
    if incoming {
        a.extend(["-incoming".into(), "defer".into(), "-S".into()]);
    }
    a
}

impl Guest {
    /// Starts QEMU for guest `name` on `page` (doorbell mode: also its server).
    pub fn start(cfg: &GuestConfig, name: &str, page: PageFile, incoming: bool) -> Result<Self> {
        let run = &cfg.run_dir;
        let server = match cfg.mode {
            Mode::Doorbell => Some(DoorbellServer::start(
                &run.join(format!("ivshmem-{name}.sock")),
                page.path(),
                1,
            )?),
            Mode::Plain => None,
        };
        let sock = run.join(format!("ivshmem-{name}.sock"));
        let args = qemu_args(
            cfg,
            name,
            page.path(),
            server.as_ref().map(|_| sock.as_path()),
            incoming,
        );
        let qemu = std::env::var("MIGTIME_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
        let line = std::iter::once(qemu.clone())
            .chain(args.iter().cloned())
            .map(|s| shell_quote(&s))
            .collect::<Vec<_>>()
            .join(" ");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.join("commands.log"))?;
        writeln!(log, "# {name}\n{line}")?;
        let console = run.join(format!("console-{name}.log"));
        let results = run.join(format!("results-{name}.ktap"));
        let qmp_sock = run.join(format!("qmp-{name}.sock"));
        for p in [&console, &results, &qmp_sock] {
            let _ = std::fs::remove_file(p);
        }
        let stderr = File::create(run.join(format!("qemu-{name}.stderr")))?;
        let child = Command::new(&qemu)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {qemu} (is qemu-system-x86 installed?)"))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            page,
            server,
            console,
            results,
            qmp_sock,
            started: Instant::now(),
            exit: None,
        })
    }

    /// Polls for exit; returns the status once QEMU is gone.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            if let Some(c) = &mut self.child {
                if let Some(st) = c.try_wait()? {
                    self.exit = Some(st);
                    self.child = None;
                }
            }
        }
        Ok(self.exit)
    }

    /// Waits for QEMU to exit, killing it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "QEMU {} did not exit within {:.0} s (killed)",
                    self.name,
                    timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills our QEMU (by its pid) if it still runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(st) = c.wait() {
                self.exit = Some(st);
            }
        }
    }

    /// Stderr of QEMU (for error messages).
    pub fn stderr_text(&self, run: &Path) -> String {
        std::fs::read_to_string(run.join(format!("qemu-{}.stderr", self.name))).unwrap_or_default()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Follows a growing results file line by line.
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
    /// Every complete line read so far.
    pub lines: Vec<String>,
    queue: std::collections::VecDeque<String>,
}

impl Tail {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
            lines: Vec::new(),
            queue: Default::default(),
        }
    }

    /// The next unconsumed line, if one is available now.
    pub fn next_line(&mut self) -> Option<String> {
        if self.queue.is_empty() {
            let new = self.poll();
            self.queue.extend(new);
        }
        self.queue.pop_front()
    }

    /// Reads what was appended; returns the new complete lines.
    pub fn poll(&mut self) -> Vec<String> {
        let Ok(mut f) = File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut new = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            new.push(line.clone());
            self.lines.push(line);
        }
        new
    }
}

/// A host synchronisation marker found on the results channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker {
    /// `# MIGTIME-READY <rest>`
    Ready(String),
    /// `# MIGTIME-DONE <status>`
    Done(i64),
    /// `# MIGTIME-CLOCK <realtime_ns>` (optional: guest wall clock)
    Clock(i64),
}

/// Recognises a marker line (at any indentation).
pub fn marker(line: &str) -> Option<Marker> {
    let t = line.trim();
    let t = t.strip_prefix('#')?.trim_start();
    if let Some(r) = t.strip_prefix("MIGTIME-READY") {
        return Some(Marker::Ready(r.trim().to_string()));
    }
    if let Some(r) = t.strip_prefix("MIGTIME-DONE") {
        return Some(Marker::Done(r.trim().parse().unwrap_or(-1)));
    }
    crate::demo::parse_clock(line).map(|(realtime_ns, _)| Marker::Clock(realtime_ns))
}

/// Last `n` lines of a file (for failure reports).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(
            marker("    # MIGTIME-READY mt_migrate hop 1"),
            Some(Marker::Ready("mt_migrate hop 1".into()))
        );
        assert_eq!(marker("# MIGTIME-DONE 0\r"), Some(Marker::Done(0)));
        assert_eq!(marker("# MIGTIME-DONE 3"), Some(Marker::Done(3)));
        assert_eq!(
            marker("# MIGTIME-CLOCK 1700000000123456789"),
            Some(Marker::Clock(1_700_000_000_123_456_789))
        );
        // mt_clock and mt_migrate print realtime and monotonic.
        assert_eq!(
            marker("    # MIGTIME-CLOCK 1700000000123456789 42"),
            Some(Marker::Clock(1_700_000_000_123_456_789))
        );
        assert_eq!(marker("ok 1 MIGTIME-DONE"), None);
    }

    #[test]
    fn command_line_follows_the_platform_facts() {
        let cfg = GuestConfig {
            kernel: "/k".into(),
            initrd: "/i".into(),
            append_extra: "mt.run=mt_basic".into(),
            mode: Mode::Plain,
            run_dir: "/run".into(),
            memory_mb: 256,
            vcpus: 2,
        };
        let a = qemu_args(&cfg, "a", Path::new("/dev/shm/p"), None, false).join(" ");
        let ram = a.find("memory-backend-ram,id=ram0").unwrap();
        let file = a
            .find("memory-backend-file,id=pv,size=1M,mem-path=/dev/shm/p,share=on")
            .unwrap();
        assert!(
            ram < file,
            "main RAM backend must come before the file backend"
        );
        assert!(a.contains("ivshmem-plain,memdev=pv,master=on"));
        assert!(a.contains("-append console=ttyS0 panic=-1 mt.run=mt_basic"));
        assert!(a.contains("-serial file:/run/console-a.log -serial file:/run/results-a.ktap"));
        assert!(!a.contains("-incoming"));
        assert!(a.starts_with("-accel tcg,thread=multi -smp 2 "), "{a}");
        let cfg = GuestConfig {
            mode: Mode::Doorbell,
            ..cfg
        };
        let a = qemu_args(
            &cfg,
            "b",
            Path::new("/dev/shm/p"),
            Some(Path::new("/run/s")),
            true,
        )
        .join(" ");
        assert!(a.contains("-chardev socket,id=ivsh,path=/run/s -device ivshmem-doorbell,chardev=ivsh,vectors=1,master=on"));
        assert!(!a.contains("memory-backend-file"));
        assert!(a.ends_with("-incoming defer -S"));
    }

    #[test]
    fn tail_returns_only_complete_new_lines() {
        let p = std::env::temp_dir().join(format!("mth-tail-{}", std::process::id()));
        std::fs::write(&p, "a\r\nb").unwrap();
        let mut t = Tail::new(&p);
        assert_eq!(t.poll(), vec!["a".to_string()]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"c\nd\n")
            .unwrap();
        assert_eq!(t.poll(), vec!["bc".to_string(), "d".to_string()]);
        assert!(t.poll().is_empty());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn next_line_keeps_lines_after_a_marker_for_later() {
        let p = std::env::temp_dir().join(format!("mth-tail2-{}", std::process::id()));
        std::fs::write(&p, "# MIGTIME-READY x\n# MIGTIME-DONE 0\n").unwrap();
        let mut t = Tail::new(&p);
        assert_eq!(
            marker(&t.next_line().unwrap()),
            Some(Marker::Ready("x".into()))
        );
        assert_eq!(marker(&t.next_line().unwrap()), Some(Marker::Done(0)));
        assert_eq!(t.next_line(), None);
        assert_eq!(t.lines.len(), 2);
        std::fs::remove_file(&p).unwrap();
    }
}
