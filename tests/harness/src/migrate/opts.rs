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
    /// a destination (`-incoming defer`) loads it with `migrate-incoming file:`; each
    /// further load is another destination, the blackout later, from the same file.
    File,
    /// `snapshot-save` (a QMP job: the VM stops, is saved to a scratch qcow2 node added
    /// at run time, and runs on); the blackout later `snapshot-load` into the running VM
    /// (the job stops it and runs it on). Each further load rewinds the same QEMU to the
    /// same snapshot again, into a VM the user paused (`stop`, `snapshot-load`, the
    /// blackout, `cont`): QEMU keeps a paused VM paused while it loads, so its run state
    /// does not say that a snapshot is loading.
    Snapshot,
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
    /// How many times the saved state of `restore` is loaded (0 is taken as 1).
    pub loads: u32,
    /// The device's `x-clock-offset-ns` of each destination in hop order (the source has
    /// 0); a hop past the end, or an empty list, takes `skew_ns`.
    pub offsets_ns: Vec<i64>,
    /// The chain's last hop is a restore: `stop`, `migrate file:`, `quit`, the blackout, a
    /// fresh destination loads the file (the device only; one boot, both kinds of hop).
    pub then_restore: bool,
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
    /// Migrations in the chain: two for `no_guest_run_between`, else
    /// `migrations` (0 is taken as 1).
    pub fn hops(&self) -> u32 {
        if self.no_guest_run_between {
            2
        } else {
            self.migrations.max(1)
        }
    }

    /// Loads of the saved state (`loads`, 0 taken as 1).
    pub fn loads(&self) -> u32 {
        self.loads.max(1)
    }

    /// The device's clock offsets of hop `hop` (from 0): (the QEMU whose VM froze, the
    /// one that resumes it). Every load of saved state resumes the source's freeze.
    pub fn device_offsets_ns(&self, hop: u32) -> (i64, i64) {
        let dest = |h: u32| {
            let h = usize::try_from(h).unwrap_or(usize::MAX);
            self.offsets_ns.get(h).copied().unwrap_or(self.skew_ns)
        };
        if self.restore.is_some() || hop == 0 {
            (0, dest(hop))
        } else {
            (dest(hop - 1), dest(hop))
        }
    }

    /// How far hop `hop`'s destination host's clock is off its source's (the NTP server
    /// moves by it at `cont`): `skew_ns` on the simulator, the offset difference on the device.
    pub fn hop_skew_ns(&self, hop: u32) -> i64 {
        match self.vmm {
            Vmm::QemuDevice => {
                let (from, to) = self.device_offsets_ns(hop);
                to - from
            }
            Vmm::Simulator => self.skew_ns,
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
        if device && (self.bad_page.is_some() || self.no_guest_run_between) {
            bail!("the device publishes honest pages: no --bad-page or catch-up");
        }
        let saved = self.restore.is_some() || self.loads > 1;
        let device_only = saved || self.then_restore || self.stop_cont;
        if (device_only || !self.offsets_ns.is_empty()) && !device {
            bail!("a restore from saved state or per-hop clock offsets need the migtime device");
        }
        if self.loads > 1 && self.restore.is_none() {
            bail!("loading saved state twice needs a restore");
        }
        if saved && (self.migrations > 1 || self.cancel || self.stop_cont) {
            bail!("a restore is one saved state, loaded: no chain, cancel or stop/cont");
        }
        let offset = self.skew_ns != 0 || !self.offsets_ns.is_empty();
        if self.restore == Some(Restore::Snapshot) && offset {
            bail!("a snapshot loads in the source's own QEMU: no clock offset");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> SimSettings {
        SimSettings {
            vmm: Vmm::QemuDevice,
            migrations: 1,
            ..Default::default()
        }
    }

    #[test]
    fn device_offsets_follow_the_hops_and_every_load_resumes_the_source() {
        let chain = SimSettings {
            migrations: 3,
            offsets_ns: vec![5, -2],
            skew_ns: 9,
            ..device()
        };
        let o: Vec<_> = (0..3).map(|h| chain.device_offsets_ns(h)).collect();
        assert_eq!(o, [(0, 5), (5, -2), (-2, 9)]);
        let restore = SimSettings {
            restore: Some(Restore::File),
            loads: 2,
            skew_ns: 7,
            ..device()
        };
        assert_eq!(restore.device_offsets_ns(1), (0, 7));
        assert_eq!((restore.loads(), device().loads()), (2, 1));
    }

    #[test]
    fn saved_state_and_offsets_need_the_device_and_no_chain() {
        let m = Mode::Device;
        let ok = |s: SimSettings, mode| s.validate(mode).is_ok();
        let twice = SimSettings {
            restore: Some(Restore::Snapshot),
            loads: 2,
            ..device()
        };
        assert!(ok(twice.clone(), m));
        assert!(!ok(
            SimSettings {
                migrations: 2,
                ..twice.clone()
            },
            m
        ));
        let sim = SimSettings {
            vmm: Vmm::Simulator,
            ..twice
        };
        assert!(!ok(sim, Mode::Plain));
        assert!(!ok(
            SimSettings {
                loads: 2,
                ..device()
            },
            m
        ));
        let offsets = SimSettings {
            offsets_ns: vec![1],
            ..Default::default()
        };
        assert!(!ok(offsets, Mode::Plain));
        assert!(ok(
            SimSettings {
                cancel: true,
                ..device()
            },
            m
        ));
        let offset = SimSettings {
            restore: Some(Restore::Snapshot),
            skew_ns: 1,
            ..device()
        };
        assert!(!ok(offset, m));
    }
}
