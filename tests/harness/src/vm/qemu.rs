// SPDX-License-Identifier: GPL-2.0

//! Starting QEMU guests the way the guest contract (tests/README.md) and the
//! platform facts (TCG, main RAM as a backend, ivshmem master=on) require,
//! with their QMP connection, and waiting for them to exit.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::vm::devices::{device_qemu, Devices};
use crate::vm::ivshmem::DoorbellServer;
use crate::vm::page::PageFile;
use crate::vm::qmp::Qmp;

/// How the page reaches the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `ivshmem-plain,master=on` on a `memory-backend-file`: the module polls.
    Plain,
    /// `ivshmem-doorbell,master=on,vectors=1` with our own server: interrupts.
    Doorbell,
    /// `-device migtime` (the patched QEMU, [`device_qemu`]): QEMU itself writes the page in
    /// the device's BAR2 and rings its MSI-X vector; no ivshmem, no page file.
    Device,
}

/// What a guest is started with.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Appended to `console=ttyS0 panic=-1 no_timer_check`.
    pub append_extra: String,
    pub mode: Mode,
    /// VMClock, network.
    pub devices: Devices,
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
        (Mode::Device, _) => a.extend(["-device".into(), cfg.devices.migtime_arg()]),
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
    a.extend(cfg.devices.qemu_args());
    // no_timer_check: a loaded host's vCPUs miss the IO-APIC check's ticks: boot panic.
    let base = "console=ttyS0 panic=-1 no_timer_check";
    let append = format!("{base} {extra} {}", cfg.append_extra)
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
            Mode::Plain | Mode::Device => None,
        };
        let sock = run.join(format!("ivshmem-{name}.sock"));
        let args = qemu_args(
            cfg,
            name,
            page.path(),
            server.as_ref().map(|_| sock.as_path()),
            incoming,
        );
        let qemu = if cfg.mode == Mode::Device {
            device_qemu()?
        } else {
            std::env::var("MIGTIME_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
        };
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

    /// Starts guest `name` (source or incoming destination) and connects its
    /// QMP (migration events on); in doorbell mode also waits for QEMU to
    /// connect to its ivshmem server.
    pub fn start_with_qmp(
        cfg: &GuestConfig,
        name: &str,
        page: PageFile,
        incoming: bool,
        deadline: Instant,
    ) -> Result<(Self, Qmp)> {
        let mut g = Self::start(cfg, name, page, incoming)?;
        let q = Qmp::connect(
            &g.qmp_sock,
            name,
            Some(&cfg.run_dir.join("qmp.log")),
            remaining(deadline)?.min(Duration::from_secs(15)),
        );
        let mut q = match q {
            Ok(q) => q,
            Err(e) => {
                let _ = g.try_exit();
                let stderr = g.stderr_text(&cfg.run_dir);
                return Err(e).with_context(|| format!("QEMU {name}: {}", stderr.trim()));
            }
        };
        q.enable_migration_events(Duration::from_secs(5))?;
        if let Some(s) = &g.server {
            // QEMU's realize waits for the setup messages, so by now it is connected.
            let t = Instant::now();
            while !s.client_connected() && t.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !s.client_connected() {
                bail!("QEMU {name} is up but never connected to its ivshmem server");
            }
        }
        Ok((g, q))
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

/// Time left until `deadline`; an error once it has passed.
pub fn remaining(deadline: Instant) -> Result<Duration> {
    let now = Instant::now();
    if now >= deadline {
        bail!("overall --timeout reached");
    }
    Ok(deadline - now)
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_follows_the_platform_facts() {
        let cfg = GuestConfig {
            kernel: "/k".into(),
            initrd: "/i".into(),
            append_extra: "mt.run=mt_basic".into(),
            mode: Mode::Plain,
            devices: Devices::default(),
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
        assert!(a.contains("-append console=ttyS0 panic=-1 no_timer_check mt.run=mt_basic"));
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
        let cfg = GuestConfig {
            mode: Mode::Device,
            ..cfg
        };
        let a = qemu_args(&cfg, "c", Path::new("/p"), None, true).join(" ");
        assert!(
            a.contains(" -device migtime,id=mt -") && !a.contains("ivsh"),
            "{a}"
        );
    }
}
