// SPDX-License-Identifier: GPL-2.0

//! One scenario of the suite as a typed value: what the guest runs and with
//! which devices, how the host drives it, what the host checks on top of the
//! guest's KTAP, and on which kernels it runs. The guest's kernel command
//! line and QEMU's devices are built from these fields; rows of the table
//! (`scenarios.rs`) are built with the short builders below.

use std::time::Duration;

use crate::migrate::opts::SimSettings;
use crate::record::ack::ExpectOutcome;
use crate::vm::image::Daemon;
use crate::vm::page::BadPage;
use crate::vm::qemu::{Mode, DEFAULT_VCPUS};

/// How a scenario runs.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `boot` (no migration).
    Boot { bad_page: Option<BadPage> },
    /// `sim` with these settings (the VMM behind the migration among them).
    Sim(SimSettings),
    /// `boot` of a guest that must panic with this console text.
    Panic { needle: &'static str },
}

/// A check the host makes itself, counted like a KTAP leaf result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCheck {
    /// The probe sees the guest end within 5 ms of the new host.
    ProbeSettles,
    /// The probe sees one correction (the module's step) and the guest never
    /// leave 5 ms of the new host after it.
    ProbeOneStep,
    /// From the module's step on (when the host saw the guest's ack) to the end of the
    /// hop, no probe sample is surely beyond 5 ms of the new host: the step, not a time
    /// daemon later, put the guest there.
    ProbeFromStep,
}

/// The guest kernels a scenario runs on by default (`check --suite`; the CI
/// budget). Debian's kernel (no KUnit, PREEMPT_DYNAMIC, NO_HZ_FULL) runs what
/// the module does there; scenarios testing the host side or the policy do not
/// depend on the guest kernel and run on the project's. The debug kernel
/// (lockdep, KASAN) runs the scenarios exercising the module's own code paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernel {
    /// The project's kernel (`make check`).
    Project,
    /// Debian 13's stock cloud kernel (`make check`).
    Debian,
    /// The stock kernel with lockdep, KASAN and friends (`make check-debug`).
    Debug,
    /// The Debian 13 image with systemd (`scripts/build-debian-image`; `make check`):
    /// its own kernel, the packages installed by apt.
    Image,
}

/// One row of the suite.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// The page device: ivshmem-plain (polling) or ivshmem-doorbell.
    pub mode: Mode,
    /// `-device vmclock` on both QEMUs.
    pub vmclock: bool,
    /// User-mode networking with the suite's NTP server and probe.
    pub net: bool,
    /// `/init` loads the module (else `mt.load=0`).
    pub module: bool,
    /// `mt.run=` (programs and `:`-separated arguments).
    pub run: &'static str,
    /// `mt.params=` (module parameters, commas for spaces).
    pub params: &'static str,
    /// vCPUs, at least the suite's.
    pub vcpus: u32,
    /// A time limit longer than the suite's, if it needs one.
    pub timeout: Option<Duration>,
    /// `mt.idle=`: seconds `/init` idles after the programs (0: none); a snapshot's guest
    /// waits there for the next load.
    pub idle_s: u32,
    pub host_checks: &'static [HostCheck],
    pub kernels: &'static [Kernel],
    /// Boots the Debian image with this daemon instead of the suite's kernel and
    /// initramfs (`suite/image.rs`); `run` and `params` are then unused.
    pub image: Option<Daemon>,
    pub kind: Kind,
}

/// The kernels most scenarios run on: the project's only.
pub const PROJECT: &[Kernel] = &[Kernel::Project];

/// A row running program `run` on a plain boot, with every default: the
/// project's kernel, ivshmem-plain, the module loaded, no extra device.
pub fn row(name: &'static str, about: &'static str, run: &'static str) -> Scenario {
    Scenario {
        name,
        about,
        mode: Mode::Plain,
        vmclock: false,
        net: false,
        module: true,
        run,
        params: "",
        vcpus: DEFAULT_VCPUS,
        timeout: None,
        idle_s: 0,
        host_checks: &[],
        kernels: PROJECT,
        image: None,
        kind: Kind::Boot { bad_page: None },
    }
}

/// A one-migration run of `blackout_ms` after which the guest must ack `expect`.
pub fn hop(blackout_ms: u64, expect: ExpectOutcome) -> SimSettings {
    SimSettings {
        blackout_ms,
        migrations: 1,
        expect: Some(expect),
        ..Default::default()
    }
}

impl Scenario {
    /// Migrated by the simulator with these settings.
    pub fn sim(self, s: SimSettings) -> Self {
        Self {
            kind: Kind::Sim(s),
            ..self
        }
    }

    /// Boots and must panic with `needle` on the console.
    pub fn panics(self, needle: &'static str) -> Self {
        Self {
            kind: Kind::Panic { needle },
            ..self
        }
    }

    /// With ivshmem-doorbell: the interrupt wakes the module.
    pub fn doorbell(self) -> Self {
        Self {
            mode: Mode::Doorbell,
            ..self
        }
    }

    /// With `-device migtime` (the patched QEMU): the page is QEMU's own, it rings the
    /// doorbell itself.
    pub fn device(self) -> Self {
        Self {
            mode: Mode::Device,
            ..self
        }
    }

    /// With module parameters.
    pub fn params(self, params: &'static str) -> Self {
        Self { params, ..self }
    }

    /// Without the module.
    pub fn no_module(self) -> Self {
        Self {
            module: false,
            ..self
        }
    }

    /// With `-device vmclock`.
    pub fn vmclock(self) -> Self {
        Self {
            vmclock: true,
            ..self
        }
    }

    /// With the network of the simulated hosts, and host checks on what the probe sees.
    pub fn net(self, host_checks: &'static [HostCheck]) -> Self {
        Self {
            net: true,
            host_checks,
            ..self
        }
    }

    /// With `vcpus` vCPUs.
    pub fn vcpus(self, vcpus: u32) -> Self {
        Self { vcpus, ..self }
    }

    /// With `/init` idling `secs` after the programs.
    pub fn idle(self, secs: u32) -> Self {
        Self {
            idle_s: secs,
            ..self
        }
    }

    /// With a time limit of at least `secs`.
    pub fn timeout_s(self, secs: u64) -> Self {
        Self {
            timeout: Some(Duration::from_secs(secs)),
            ..self
        }
    }

    /// The Debian image with `daemon`, on the image suite only.
    pub fn image(self, daemon: Daemon) -> Self {
        Self {
            image: Some(daemon),
            kernels: &[Kernel::Image],
            ..self
        }
    }

    /// On these kernels.
    pub fn on(self, kernels: &'static [Kernel]) -> Self {
        Self { kernels, ..self }
    }

    /// Whether it runs on `k` by default.
    pub fn runs_on(&self, k: Kernel) -> bool {
        self.kernels.contains(&k)
    }

    /// The vCPUs it runs with: its own, or the suite's if that is more.
    pub fn vcpus_with(&self, suite: u32) -> u32 {
        self.vcpus.max(suite)
    }

    /// Its time limit: its own, or the suite's if that is longer.
    pub fn timeout_with(&self, suite: Duration) -> Duration {
        self.timeout.map_or(suite, |t| t.max(suite))
    }
}
