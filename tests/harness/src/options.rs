// SPDX-License-Identifier: GPL-2.0

//! The options of every run, and their validation in one place: the CLI
//! (`cli.rs`) builds them and calls `validate`; the runs call it again, so a
//! library caller gets the same checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::bench::configs;
use crate::page::BadPage;
use crate::qemu::{GuestConfig, Mode};
use crate::scenarios::table;
use crate::sim::ExpectOutcome;

/// Options of `boot`.
#[derive(Clone, Debug)]
pub struct BootOpts {
    pub guest: GuestConfig,
    pub timeout: Duration,
    pub page_file: Option<PathBuf>,
    pub bad_page: Option<BadPage>,
    /// The guest must panic on purpose: pass only if QEMU exits by itself,
    /// without `# MIGTIME-DONE`, and the console log contains this text.
    pub expect_panic: Option<String>,
}

/// What a migration run does to the guest: the scenario part of [`SimOpts`],
/// also what a row of the `check` table sets (the rest: defaults).
#[derive(Clone, Debug, Default)]
pub struct SimSettings {
    pub blackout_ms: u64,
    pub skew_ns: i64,
    /// The destination host's clock runs at the source's rate (no oscillator difference);
    /// only the NTP server of a networked guest has rates (`crate::companion::on_cont`).
    pub same_rate: bool,
    pub compensated: bool,
    /// Migrations in the chain (0 is taken as 1).
    pub migrations: u32,
    pub no_guest_run_between: bool,
    pub cancel: bool,
    pub bad_page: Option<BadPage>,
    /// The outcome the guest must ack.
    pub expect: Option<ExpectOutcome>,
}

/// Options of `sim`.
#[derive(Clone, Debug)]
pub struct SimOpts {
    pub scenario: String,
    pub guest: GuestConfig,
    pub timeout: Duration,
    pub settings: SimSettings,
    /// How long to wait for the guest's ack after `cont`.
    pub ack_timeout: Duration,
}

/// Options of `check`.
pub struct CheckOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub run_dir: PathBuf,
    pub only: Vec<String>,
    pub timeout: Duration,
    pub keep_all: bool,
    pub memory_mb: u32,
    /// vCPUs of every guest (at least 2); see [`crate::scenarios::vcpus_for`].
    pub vcpus: u32,
}

/// Options of `demo`.
#[derive(Clone, Debug)]
pub struct DemoOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub out_dir: PathBuf,
    pub blackout_ms: u64,
    pub mode: Mode,
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
    /// Runs per time-daemon case and destination ([`crate::daemons`]; 0: none).
    pub chrony_runs: u32,
    /// Window after the migration for chronyd alone, s.
    pub chrony_window_s: u64,
    /// How long (b) and (c) keep measuring once chronyd is synchronised again, s.
    pub chrony_hold_s: u64,
}

/// `runs/<command>-<time>-<pid>`: a run folder nobody asked for.
pub fn default_run_dir(cmd: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{cmd}-{t}-{}", std::process::id()))
}

/// The guest kernel and initramfs must exist.
pub fn check_inputs(kernel: &Path, initrd: &Path) -> Result<()> {
    if !kernel.is_file() {
        bail!(
            "guest kernel {} not found (build it with scripts/build-kernel)",
            kernel.display()
        );
    }
    if !initrd.is_file() {
        bail!(
            "initramfs {} not found (build it with scripts/mkinitramfs)",
            initrd.display()
        );
    }
    Ok(())
}

impl BootOpts {
    /// `bad_page` must be a header kind (written before boot).
    pub fn validate(&self) -> Result<()> {
        if let Some(k) = self.bad_page.filter(|k| !k.is_header()) {
            bail!(
                "--bad-page for boot takes a header kind (bad-magic, bad-version, bad-size): \
                 {k:?} is not a header corruption"
            );
        }
        Ok(())
    }
}

impl SimSettings {
    /// Migrations in the chain: two for `no_guest_run_between`, else
    /// `migrations` (0 is taken as 1).
    pub fn hops(&self) -> u32 {
        if self.no_guest_run_between {
            2
        } else {
            self.migrations.max(1)
        }
    }

    /// The host-side fault (a [`BadPage`] fault kind), if any.
    pub fn fault(&self) -> Option<BadPage> {
        self.bad_page.filter(|k| k.is_fault())
    }

    /// The combinations a chain can run.
    pub fn validate(&self, mode: Mode) -> Result<()> {
        if self.migrations == 0 {
            bail!("--migrations must be at least 1");
        }
        if self.cancel && self.no_guest_run_between {
            bail!("--cancel and --no-guest-run-between do not combine");
        }
        if self.fault().is_some() && (self.cancel || self.no_guest_run_between) {
            bail!(
                "fault kinds of --bad-page do not combine with --cancel or --no-guest-run-between"
            );
        }
        if self.bad_page == Some(BadPage::DoorbellStorm) && mode != Mode::Doorbell {
            bail!("--bad-page doorbell-storm needs --mode doorbell");
        }
        if self.bad_page == Some(BadPage::PublishStorm) && mode != Mode::Doorbell {
            bail!("--bad-page publish-storm needs --mode doorbell");
        }
        Ok(())
    }
}

impl SimOpts {
    /// See [`SimSettings::validate`].
    pub fn validate(&self) -> Result<()> {
        self.settings.validate(self.guest.mode)
    }
}

impl CheckOpts {
    /// Every `only` names a scenario.
    pub fn validate(&self) -> Result<()> {
        let all = table();
        for n in &self.only {
            if !all.iter().any(|s| s.name == n) {
                bail!("no scenario named {n:?} (see --list)");
            }
        }
        check_inputs(&self.kernel, &self.initrd)
    }
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
        let daemons = crate::daemons::cases();
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
                Some(_) => {}
            }
        }
        if let Some((k, i)) = &self.debian {
            check_inputs(k, i)?;
        }
        Ok(())
    }
}
