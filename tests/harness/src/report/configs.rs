// SPDX-License-Identifier: GPL-2.0

//! The guest configurations `make bench` compares, side by side.

use serde::Serialize;

use crate::vm::qemu::Mode;

/// One configuration of the guest.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub key: &'static str,
    pub title: &'static str,
    pub mode: Mode,
    /// migtime.ko loaded.
    pub module: bool,
    /// mt_daemon poll period (the userspace comparator), ms.
    pub daemon_ms: Option<u32>,
    /// Module parameters (`mt.params=`), e.g. `step_method=2` for the fallback.
    pub params: &'static str,
    /// Boots the distribution kernel (`--debian-kernel`) instead of the project's.
    pub debian: bool,
    /// The patched QEMU's `-device migtime` publishes the page (`Vmm::QemuDevice`, on
    /// `MIGTIME_QEMU_DEVICE`), not the simulator.
    pub device: bool,
    /// Each hop saves the stopped guest with `migrate file:` and restores it after the
    /// blackout (`Restore::File`; the device only).
    pub restore: bool,
}

/// A configuration on the patched QEMU's `-device migtime`, with the module.
fn device(key: &'static str, title: &'static str, restore: bool) -> Config {
    Config {
        key,
        title,
        mode: Mode::Device,
        module: true,
        daemon_ms: None,
        params: "",
        debian: false,
        device: true,
        restore,
    }
}

/// The configurations, side by side. On the project's (patched) kernel "inject" steps with
/// `timekeeping_inject_realtime_offset()`; "fallback" forces the stock-kernel read-then-set path.
pub fn configs(daemon_ms: u32) -> Vec<Config> {
    let c = |key, title, mode, module, daemon_ms, params| Config {
        key,
        title,
        mode,
        module,
        daemon_ms,
        params,
        debian: false,
        device: false,
        restore: false,
    };
    vec![
        c(
            "baseline",
            "baseline (no module)",
            Mode::Plain,
            false,
            None,
            "",
        ),
        c(
            "doorbell",
            "migtime inject, doorbell",
            Mode::Doorbell,
            true,
            None,
            "",
        ),
        c(
            "fallback",
            "migtime fallback, doorbell",
            Mode::Doorbell,
            true,
            None,
            "step_method=2",
        ),
        c(
            "polling",
            "migtime inject, polling",
            Mode::Plain,
            true,
            None,
            "",
        ),
        c(
            "daemon",
            "userspace ADJ_SETOFFSET daemon",
            Mode::Plain,
            false,
            Some(daemon_ms),
            "",
        ),
        // Debian 13's stock cloud kernel (PREEMPT_DYNAMIC, NO_HZ_FULL, HZ=250): no patch
        // series, so the read-then-set fallback, under real preemption.
        Config {
            debian: true,
            ..c(
                "debian",
                "migtime on Debian's kernel, doorbell",
                Mode::Doorbell,
                true,
                None,
                "",
            )
        },
        // The patched QEMU's -device migtime (MSI-X doorbell, the project's kernel: inject):
        // QEMU writes the page before any vCPU runs; nothing outside QEMU touches it.
        device(
            "device",
            "migtime inject, QEMU -device migtime, live",
            false,
        ),
        device(
            "device-restore",
            "migtime inject, QEMU -device migtime, file restore",
            true,
        ),
    ]
}

impl Config {
    /// The kernel command line besides `mt.run`.
    pub fn append(&self) -> String {
        let mut v = vec![
            format!("mt.load={}", u8::from(self.module)),
            "mt.kunit=0".to_string(),
        ];
        if let Some(p) = self.daemon_ms {
            v.push(format!("mt.daemon={p}"));
        }
        if !self.params.is_empty() {
            v.push(format!("mt.params={}", self.params));
        }
        if self.debian {
            // Debian's IO_STRICT_DEVMEM: the guest programs map BAR2 (as in check).
            v.push("iomem=relaxed".to_string());
        }
        v.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_command_lines() {
        let c = configs(100);
        assert_eq!(
            c.iter().map(|c| c.key).collect::<Vec<_>>(),
            [
                "baseline",
                "doorbell",
                "fallback",
                "polling",
                "daemon",
                "debian",
                "device",
                "device-restore"
            ]
        );
        assert!(c[6].device && !c[6].restore && c[6].mode == Mode::Device);
        assert!(c[7].device && c[7].restore && c[7].mode == Mode::Device);
        assert_eq!(c[7].append(), "mt.load=1 mt.kunit=0");
        assert_eq!(c[5].append(), "mt.load=1 mt.kunit=0 iomem=relaxed");
        assert_eq!(c[0].append(), "mt.load=0 mt.kunit=0");
        assert_eq!(c[1].append(), "mt.load=1 mt.kunit=0");
        assert_eq!(c[1].mode, Mode::Doorbell);
        assert_eq!(
            c[2].append(),
            "mt.load=1 mt.kunit=0 mt.params=step_method=2"
        );
        assert_eq!(c[4].append(), "mt.load=0 mt.kunit=0 mt.daemon=100");
    }
}
