// SPDX-License-Identifier: GPL-2.0

//! The options of a migration run (`sim`) and their validation.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::net::network::Network;
use crate::record::ack::ExpectOutcome;
use crate::vm::page::BadPage;
use crate::vm::qemu::{GuestConfig, Mode};

/// The VMM behind a migration: who publishes the destination's page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Vmm {
    /// Stock QEMU with an ivshmem page; the harness plays the hypervisor and writes the
    /// destination's page (seqlock) right after `cont`.
    #[default]
    Simulator,
    /// The patched QEMU's `-device migtime` ([`Mode::Device`]) on every guest: QEMU
    /// publishes the page and rings the doorbell itself; the harness only reads the page
    /// back from guest memory and checks it against QMP's STOP -> RESUME times.
    QemuDevice,
}

/// How a destination is brought back from saved state instead of a live migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The source is stopped and saved with `migrate file:` and quits; after the blackout
    /// the destination (`-incoming defer`) loads it with `migrate-incoming file:`.
    File,
    /// The chain's last hop as [`Restore::File`], the hops before it live migrations (one
    /// boot, both kinds: the Debian image's chrony scenario).
    LastHopFromFile,
}

/// How long the simulator waits for the guest's ack after `cont`: without the module
/// nothing acks, so do not wait 20 s per hop.
pub fn ack_timeout(module: bool) -> Duration {
    Duration::from_secs(if module { 20 } else { 2 })
}

/// What a migration run does to the guest: the scenario part of [`SimOpts`],
/// also what a row of the `check` table sets (the rest: defaults).
#[derive(Clone, Debug, Default)]
pub struct SimSettings {
    pub blackout_ms: u64,
    pub skew_ns: i64,
    /// The destination host's clock runs at the source's rate (no oscillator difference);
    /// only the NTP server of a networked guest has rates (`Network::on_cont`).
    pub same_rate: bool,
    pub compensated: bool,
    /// Migrations in the chain (0 is taken as 1).
    pub migrations: u32,
    pub no_guest_run_between: bool,
    pub cancel: bool,
    pub bad_page: Option<BadPage>,
    /// The outcome the guest must ack.
    pub expect: Option<ExpectOutcome>,
    /// Who publishes the page.
    pub vmm: Vmm,
    /// A restore from saved state instead of a live migration (the device only). With the
    /// device, `skew_ns` is the destination's `x-clock-offset-ns`.
    pub restore: Option<Restore>,
    /// No migration: a plain `stop`, the blackout, `cont` (the device only): no event.
    pub stop_cont: bool,
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
    /// The simulated hosts' network, if the guest has one: switched to each
    /// destination's clock at `cont`.
    pub network: Option<Arc<Network>>,
}

impl SimSettings {
    /// Whether a hop (the chain's `last` or not) is a restore from saved state.
    pub fn restores(&self, last: bool) -> bool {
        match self.restore {
            Some(Restore::File) => true,
            Some(Restore::LastHopFromFile) => last,
            None => false,
        }
    }

    /// How far hop `hop`'s (from 0) destination host's clock is off its source's: `skew_ns`
    /// for each hop of the simulator; with the device every destination reads its clock
    /// `skew_ns` off the real one (`x-clock-offset-ns`), so only the first hop lands on a host
    /// that far off its source.
    pub fn hop_skew_ns(&self, hop: u32) -> i64 {
        match self.vmm {
            Vmm::QemuDevice if hop > 0 => 0,
            _ => self.skew_ns,
        }
    }

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
        self.validate_vmm(mode)
    }

    fn validate_vmm(&self, mode: Mode) -> Result<()> {
        if (self.vmm == Vmm::QemuDevice) != (mode == Mode::Device) {
            bail!("the migtime device VMM and --mode device go together");
        }
        let device = self.vmm == Vmm::QemuDevice;
        if device && (self.bad_page.is_some() || self.cancel || self.no_guest_run_between) {
            bail!("the device publishes honest pages: no --bad-page, --cancel or catch-up");
        }
        if (self.restore.is_some() || self.stop_cont) && !device {
            bail!("a restore from saved state needs the migtime device");
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
