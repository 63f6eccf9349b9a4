// SPDX-License-Identifier: GPL-2.0

//! `--on-event CMD`: the user's command, through `/bin/sh -c`, with the action in its
//! environment (`MIGTIME_TRIGGER`, `MIGTIME_SEQ`, `MIGTIME_OUTCOME`, `MIGTIME_APPLIED_NS`,
//! `MIGTIME_MARKER`): the way to drive a daemon the companion does not know.

use super::{Action, TimeDaemon};
use crate::cli::Opts;
use crate::migtime::outcome_name;
use crate::process::run_with_timeout;
use anyhow::Result;
use std::process::Command;
use std::time::Duration;

/// The `--on-event` command.
#[derive(Clone, Debug)]
pub struct Hook {
    /// The shell command.
    pub cmd: String,
    /// Its timeout.
    pub timeout: Duration,
}

impl Hook {
    /// From `--on-event` and `--command-timeout-ms`; `None` without `--on-event`.
    pub fn from_opts(o: &Opts) -> Option<Self> {
        o.on_event.as_ref().map(|cmd| Self {
            cmd: cmd.clone(),
            timeout: Duration::from_millis(o.command_timeout_ms),
        })
    }
}

/// The command's environment for `a`.
pub fn env(a: &Action<'_>) -> [(&'static str, String); 5] {
    let trigger = if a.seq().is_some() {
        "migtime"
    } else {
        "vmclock"
    };
    [
        ("MIGTIME_TRIGGER", trigger.to_string()),
        (
            "MIGTIME_SEQ",
            a.seq().map(|s| s.to_string()).unwrap_or_default(),
        ),
        (
            "MIGTIME_OUTCOME",
            a.event
                .map(|e| outcome_name(e).to_string())
                .unwrap_or_default(),
        ),
        (
            "MIGTIME_APPLIED_NS",
            a.event
                .map(|e| e.applied_ns.to_string())
                .unwrap_or_default(),
        ),
        (
            "MIGTIME_MARKER",
            a.marker().map(|m| m.to_string()).unwrap_or_default(),
        ),
    ]
}

impl TimeDaemon for Hook {
    fn name(&self) -> &'static str {
        "--on-event"
    }

    fn resync(&mut self, action: &Action<'_>) -> Result<Option<String>> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(&self.cmd);
        cmd.envs(env(action));
        let out = run_with_timeout(cmd, self.timeout)?;
        Ok(Some(if out.is_empty() {
            "--on-event ran".to_string()
        } else {
            format!("--on-event ran: {out}")
        }))
    }
}
