// SPDX-License-Identifier: GPL-2.0

//! The options of `demo` and `bench`, validated in one place.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::report::configs::configs;
use crate::vm::opts::check_inputs;

/// Options of `demo`.
#[derive(Clone, Debug)]
pub struct DemoOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub out_dir: PathBuf,
    /// How long the live migration's destination is held paused, ms.
    pub blackout_ms: u64,
    /// How long a file restore waits with no QEMU before loading the save, ms.
    pub restore_pause_ms: u64,
    pub params: String,
    pub period_ms: u64,
    pub before_ms: u64,
    pub after_ms: u64,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Seconds observed after the migration in the chronyd part ((a) against (c)); 0 skips it.
    pub chrony_window_s: u64,
}

/// Options of `bench`.
#[derive(Clone, Debug)]
pub struct BenchOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub out_dir: PathBuf,
    pub runs: u32,
    pub hops_per_boot: u32,
    pub blackout_ms: u64,
    pub idle_seconds: u64,
    pub period_ms: u64,
    pub before_ms: u64,
    pub after_ms: u64,
    pub daemon_ms: u32,
    pub only: Vec<String>,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Kernel and initramfs of the "debian" configuration (a distribution kernel), if any.
    pub debian: Option<(PathBuf, PathBuf)>,
    /// Run the `-device migtime` configurations (the patched QEMU is set up).
    pub device: bool,
    /// Runs per time-daemon case and destination ([`crate::report::daemons`]; 0: none).
    pub chrony_runs: u32,
    /// Window after the migration for chronyd alone, s.
    pub chrony_window_s: u64,
    /// How long (b) and (c) keep measuring once chronyd is synchronised again, s.
    pub chrony_hold_s: u64,
}

impl DemoOpts {
    /// The inputs exist.
    pub fn validate(&self) -> Result<()> {
        check_inputs(&self.kernel, &self.initrd)
    }
}

impl BenchOpts {
    /// At least one run; every `only` names a configuration it can run; the inputs exist.
    pub fn validate(&self) -> Result<()> {
        check_inputs(&self.kernel, &self.initrd)?;
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        let all = configs(self.daemon_ms);
        let daemons = crate::report::daemons::cases();
        for k in &self.only {
            match all.iter().find(|c| c.key == k) {
                None if daemons.iter().any(|c| c.key == k) => {}
                None => bail!(
                    "unknown configuration {k:?} ({}, {})",
                    all.iter().map(|c| c.key).collect::<Vec<_>>().join(", "),
                    daemons.iter().map(|c| c.key).collect::<Vec<_>>().join(", ")
                ),
                Some(c) if c.debian && self.debian.is_none() => {
                    bail!("configuration {k:?} needs --debian-kernel and --debian-initrd")
                }
                Some(c) if c.device && !self.device => {
                    bail!("configuration {k:?} needs the patched QEMU (MIGTIME_QEMU_DEVICE)")
                }
                Some(_) => {}
            }
        }
        if let Some((k, i)) = &self.debian {
            check_inputs(k, i)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Demo options for the report's unit tests (2 s live blackout, 20 s restore pause).
    pub(crate) fn opts() -> DemoOpts {
        DemoOpts {
            kernel: "k".into(),
            initrd: "i".into(),
            out_dir: "o".into(),
            blackout_ms: 2000,
            restore_pause_ms: 20_000,
            params: String::new(),
            period_ms: 20,
            before_ms: 3000,
            after_ms: 5000,
            timeout: Duration::from_secs(1),
            memory_mb: 256,
            chrony_window_s: 0,
        }
    }
}
