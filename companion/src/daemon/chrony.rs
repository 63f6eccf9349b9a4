// SPDX-License-Identifier: GPL-2.0

//! chronyd, driven with its own client: `chronyc -n -m -h SOCKET 'reset sources' 'makestep
//! 0.1 1' 'burst 4/4'`. chronyc ships in the same package as chronyd, so it speaks the
//! daemon's cmdmon protocol version wherever the socket exists.

use super::{Action, TimeDaemon};
use crate::cli::{ChronyMode, Opts};
use crate::process::run_with_timeout;
use anyhow::Result;
use log::debug;
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
        })
    }

    /// Runs `chronyc -n -m -h SOCKET` with `commands`.
    fn chronyc(&self, commands: &[String]) -> Result<String> {
        let mut cmd = Command::new(&self.chronyc);
        cmd.arg("-n").arg("-m").arg("-h").arg(&self.socket);
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
        Ok(Some(format!(
            "chronyd: {} -> {out}",
            self.commands.join("; ")
        )))
    }
}
