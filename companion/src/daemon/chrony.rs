// SPDX-License-Identifier: GPL-2.0

//! chronyd, driven with its own client: `chronyc -n -m -h SOCKET 'reset sources' 'makestep
//! 0.1 1' 'burst 4/4'`. chronyc ships in the same package as chronyd, so it speaks the
//! daemon's cmdmon protocol version wherever the socket exists.
//!
//! `makestep 0.1 1` replaces the admin's `makestep`; when that loses something (a negative
//! limit, see [`chrony_conf`](super::chrony_conf)) the admin's value is given back after
//! chronyd's next clock update, which is when the companion's step allowance has been used:
//! `chronyc -c tracking` is read once a second until its reference time moves on.

use super::chrony_conf::{admin_makestep, restore_command};
use super::{Action, TimeDaemon};
use crate::cli::{ChronyMode, Opts};
use crate::clock::monotonic_ms;
use crate::logger::warn_failed;
use crate::process::run_with_timeout;
use anyhow::{anyhow, Result};
use log::{debug, info, warn};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

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
    /// chronyd's configuration, read for the admin's `makestep` at each action.
    pub conf: PathBuf,
    /// A `makestep` to give back after chronyd's next clock update.
    pending: Option<PendingRestore>,
}

/// How often chronyd's reference time is read while a restore waits, ms.
const RESTORE_CHECK_MS: u64 = 1000;
/// After this long without a clock update the admin's `makestep` is given back anyway, ms.
const RESTORE_GIVE_UP_MS: u64 = 120_000;

/// The admin's `makestep`, waiting for chronyd's next clock update.
#[derive(Clone, Debug)]
struct PendingRestore {
    command: String,
    /// `chronyc -c tracking`'s reference time right after the re-sync.
    reftime: String,
    next_check_ms: u64,
    give_up_ms: u64,
}

/// The reference time field of `chronyc -c tracking` (ID,name,stratum,reftime,...).
pub fn tracking_reftime(csv: &str) -> Option<&str> {
    let line = csv.lines().rfind(|l| l.contains(','))?;
    line.split(',').nth(3).filter(|f| f.parse::<f64>().is_ok())
}

impl Chrony {
    /// From `--chrony`, `--chronyc`, `--chrony-socket`, `--makestep`, `--burst`; `None` for
    /// `--chrony never`.
    pub fn from_opts(o: &Opts) -> Option<Self> {
        if o.chrony == ChronyMode::Never {
            return None;
        }
        let mut commands = vec!["reset sources".to_string()];
        if !o.makestep.trim().is_empty() {
            commands.push(format!("makestep {}", o.makestep.trim()));
        }
        if !o.burst.trim().is_empty() {
            commands.push(format!("burst {}", o.burst.trim()));
        }
        Some(Self {
            chronyc: o.chronyc.clone(),
            socket: o.chrony_socket.clone(),
            required: o.chrony == ChronyMode::Always,
            commands,
            timeout: Duration::from_millis(o.command_timeout_ms),
            conf: o.chrony_conf.clone(),
            pending: None,
        })
    }

    /// chronyd's reference time (changes with each clock update).
    fn reftime(&self) -> Result<String> {
        let out = self.chronyc_with(&["-c"], &["tracking".to_string()])?;
        tracking_reftime(&out)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no reference time in `chronyc -c tracking`: {out}"))
    }

    /// After a re-sync with the companion's `makestep`: if the admin's is lost by it, waits
    /// for the next clock update to give it back.
    fn schedule_restore(&mut self) {
        self.pending = None;
        if !self.commands.iter().any(|c| c.starts_with("makestep ")) {
            return;
        }
        let Some(command) = restore_command(admin_makestep(&self.conf).as_ref()) else {
            return;
        };
        match self.reftime() {
            Ok(reftime) => {
                let now = monotonic_ms();
                info!(
                    "chronyd: `{command}' (from {}) given back after its next clock update",
                    self.conf.display()
                );
                self.pending = Some(PendingRestore {
                    command,
                    reftime,
                    next_check_ms: now + RESTORE_CHECK_MS,
                    give_up_ms: now + RESTORE_GIVE_UP_MS,
                });
            }
            Err(e) => {
                warn_failed("chronyd tracking", &e);
                self.restore(&command, "reference time unknown");
            }
        }
    }

    fn restore(&self, command: &str, why: &str) {
        match self.chronyc(&[command.to_string()]) {
            Ok(out) => {
                info!("chronyd: {command} -> {out} (the admin's makestep given back: {why})")
            }
            Err(e) => warn_failed("chronyd makestep restore", &e),
        }
    }

    /// Runs `chronyc -n -m -h SOCKET` with `commands`.
    fn chronyc(&self, commands: &[String]) -> Result<String> {
        self.chronyc_with(&[], commands)
    }

    /// Runs `chronyc -n [FLAGS] -m -h SOCKET` with `commands`.
    fn chronyc_with(&self, flags: &[&str], commands: &[String]) -> Result<String> {
        let mut cmd = Command::new(&self.chronyc);
        cmd.arg("-n")
            .args(flags)
            .arg("-m")
            .arg("-h")
            .arg(&self.socket);
        cmd.args(commands);
        run_with_timeout(cmd, self.timeout)
    }
}

impl TimeDaemon for Chrony {
    fn name(&self) -> &'static str {
        "chronyd re-sync"
    }

    fn resync(&mut self, _action: &Action<'_>) -> Result<Option<String>> {
        if !self.required && !self.socket.exists() {
            debug!("no chronyd socket at {}, skipped", self.socket.display());
            return Ok(None);
        }
        let out = self.chronyc(&self.commands)?;
        self.schedule_restore();
        Ok(Some(format!(
            "chronyd: {} -> {out}",
            self.commands.join("; ")
        )))
    }

    fn next_deadline(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.next_check_ms)
    }

    fn on_tick(&mut self, now_ms: u64) {
        let Some(p) = self.pending.clone().filter(|p| now_ms >= p.next_check_ms) else {
            return;
        };
        let moved = match self.reftime() {
            Ok(r) => r != p.reftime,
            Err(e) => {
                debug!("chronyd tracking: {e:#}");
                false
            }
        };
        if !moved && now_ms < p.give_up_ms {
            if let Some(q) = self.pending.as_mut() {
                q.next_check_ms = now_ms + RESTORE_CHECK_MS;
            }
            return;
        }
        self.pending = None;
        if moved {
            self.restore(&p.command, "chronyd made a clock update since the re-sync");
        } else {
            warn!(
                "chronyd made no clock update within {} s of the re-sync",
                RESTORE_GIVE_UP_MS / 1000
            );
            self.restore(&p.command, "no clock update, given back anyway");
        }
    }
}
