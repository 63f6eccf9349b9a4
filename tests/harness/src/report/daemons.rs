// SPDX-License-Identifier: GPL-2.0

//! A real time daemon in a migrated guest, three ways, measured for `make bench`
//! and shown by `make demo`:
//!
//! - (a) chronyd alone (the baseline: what a guest has today),
//! - (b) chronyd with VMClock and migtime-companion, no migtime page,
//! - (c) chronyd with the migtime module and migtime-companion,
//!
//! each after a migration with a blackout to a destination whose clock is the source's, or
//! ±0.5 s off it and running at another rate ([`conditions`]). The guest runs `mt_chrony`
//! (chronyd synchronised to the harness's NTP server before the migration, `makestep 1 3`
//! used up) and the host's probe ([`crate::net::pairing`]) measures guest - host all along: when
//! the guest got within 5 ms of the new host for good and for how long it stayed there,
//! the largest error after the resume; chronyd's own view (`chronyc tracking`) comes from
//! the guest's `# MIGTIME-CHRONY` lines. Numbers, not tests: the checks of (b) and (c) are
//! the `chrony-vmclock` and `chrony-migtime` scenarios of `make check`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::base::output::Reporter;
use crate::base::results::parse_kv;
use crate::migrate::opts::{ack_timeout, SimOpts, SimSettings, Vmm};
use crate::migrate::sim::sim;
use crate::net::network::{Network, Probed};
use crate::record::ack::ExpectOutcome;
use crate::vm::cmdline::{append_for, module_word};
use crate::vm::devices::Devices;
use crate::vm::qemu::{GuestConfig, Mode};

/// What drives the re-sync: `mt_chrony`'s `expect=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// chronyd alone.
    None,
    /// VMClock's disruption marker, through the companion.
    Vmclock,
    /// The migtime module, and its event through the companion.
    Migtime,
}

/// One of the three ways.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Case {
    pub key: &'static str,
    pub title: &'static str,
    pub expect: Expect,
}

/// (a), (b), (c).
pub fn cases() -> [Case; 3] {
    [
        Case {
            key: "chrony-alone",
            title: "(a) chronyd alone",
            expect: Expect::None,
        },
        Case {
            key: "chrony-vmclock",
            title: "(b) chronyd + VMClock + companion",
            expect: Expect::Vmclock,
        },
        Case {
            key: "chrony-migtime",
            title: "(c) chronyd + migtime + companion",
            expect: Expect::Migtime,
        },
    ]
}

/// The destination host's clock against the source's.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Condition {
    pub key: &'static str,
    pub title: &'static str,
    pub skew_ns: i64,
    pub same_rate: bool,
}

/// Same clock; +0.5 s and another rate; -0.5 s and another rate.
pub fn conditions() -> [Condition; 3] {
    [
        Condition {
            key: "same",
            title: "same clock",
            skew_ns: 0,
            same_rate: true,
        },
        Condition {
            key: "plus",
            title: "+0.5 s, +50 ppm",
            skew_ns: 500_000_000,
            same_rate: false,
        },
        Condition {
            key: "minus",
            title: "−0.5 s, +50 ppm",
            skew_ns: -500_000_000,
            same_rate: false,
        },
    ]
}

impl Case {
    /// The guest's program: `mt_chrony` observing `window_s` after the migration (a), or
    /// until chronyd is synchronised again and `hold_s` more (b, c).
    pub fn run(&self, window_s: u64, hold_s: u64) -> String {
        match self.expect {
            Expect::None => format!("mt_chrony:expect=none:sync={window_s}:hold=0"),
            Expect::Vmclock => format!("mt_chrony:expect=vmclock:sync=60:hold={hold_s}"),
            Expect::Migtime => format!("mt_chrony:expect=migtime:sync=60:hold={hold_s}"),
        }
    }

    /// Whether the guest loads the module: only (c).
    pub fn module(&self) -> bool {
        self.expect == Expect::Migtime
    }

    /// Whether the guest has VMClock: (b) only.
    pub fn vmclock(&self) -> bool {
        self.expect == Expect::Vmclock
    }

    /// The ack the simulator waits for.
    fn outcome(&self) -> ExpectOutcome {
        if self.expect == Expect::Migtime {
            ExpectOutcome::Stepped
        } else {
            ExpectOutcome::None
        }
    }
}

/// chronyd's view at one moment (`# MIGTIME-CHRONY`): `chronyc tracking`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ChronyView {
    /// Seconds since the guest saw the migration.
    pub t_s: f64,
    pub leap: String,
    /// System time offset (positive: the clock is fast), s.
    pub offset_s: f64,
    /// Last measured offset, s.
    pub last_s: f64,
    /// Frequency error estimate, ppm.
    pub freq_ppm: f64,
}

/// The `# MIGTIME-CHRONY` lines of a results channel.
pub fn chrony_views(text: &str) -> Vec<ChronyView> {
    text.lines()
        .filter_map(|l| parse_kv(l, "MIGTIME-CHRONY"))
        .map(|m| {
            let f = |k: &str| m.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            ChronyView {
                t_s: f("t"),
                leap: m.get("leap").cloned().unwrap_or_default(),
                offset_s: f("offset"),
                last_s: f("last"),
                freq_ppm: f("freq"),
            }
        })
        .collect()
}

/// The clock steps chronyd made (`# MIGTIME-CHRONY-RESULT ... steps=N`).
fn chrony_steps(text: &str) -> Option<u32> {
    text.lines()
        .filter_map(|l| parse_kv(l, "MIGTIME-CHRONY-RESULT"))
        .find_map(|m| m.get("steps")?.parse().ok())
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct DaemonRun {
    pub case: Case,
    pub condition: Condition,
    /// What the probe measured (its samples, the resume, the numbers after it).
    #[serde(flatten)]
    pub probe: Probed,
    /// chronyd's view once a second after the migration.
    pub chrony: Vec<ChronyView>,
    /// Clock steps chronyd made over the whole boot (`makestep 1 3` at boot included).
    pub chrony_steps: Option<u32>,
    /// The run passed its own checks (KTAP, ack).
    pub ok: bool,
    pub problems: Vec<String>,
}

/// What every run shares.
#[derive(Clone, Debug)]
pub struct DaemonOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub blackout_ms: u64,
    /// (a)'s window after the migration, s.
    pub window_s: u64,
    /// (b), (c): how long to keep measuring once chronyd is synchronised again, s.
    pub hold_s: u64,
    pub memory_mb: u32,
    /// The patched QEMU's `-device migtime` publishes the page (the destination's clock
    /// offset as its `x-clock-offset-ns`), not the simulator.
    pub device: bool,
}

/// Boots a guest, lets chronyd synchronise, migrates it once and measures.
pub fn run_case(
    o: &DaemonOpts,
    case: &Case,
    cond: &Condition,
    dir: &Path,
    out: &dyn Reporter,
) -> DaemonRun {
    let _ = std::fs::remove_dir_all(dir);
    let run = case.run(o.window_s, o.hold_s);
    let mut r = DaemonRun {
        case: *case,
        condition: *cond,
        probe: Probed::default(),
        chrony: Vec::new(),
        chrony_steps: None,
        ok: false,
        problems: Vec::new(),
    };
    let network = match Network::start(out) {
        Ok(n) => n,
        Err(e) => {
            r.problems.push(format!("NTP server: {e:#}"));
            return r;
        }
    };
    let words: Vec<String> = [module_word(case.module()), "mt.kunit=0"]
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(String::from)
        .chain([network.cmdline()])
        .collect();
    let observe_s = o.window_s.max(60 + o.hold_s);
    let so = SimOpts {
        scenario: format!("{}-{}", case.key, cond.key),
        guest: GuestConfig {
            kernel: o.kernel.clone(),
            initrd: o.initrd.clone(),
            append_extra: append_for(&run, "", &words.join(" ")),
            mode: if o.device { Mode::Device } else { Mode::Plain },
            devices: Devices {
                vmclock: case.vmclock(),
                net: Some(network.ports()),
                migtime_offset_ns: 0,
                disk: None,
            },
            run_dir: dir.to_path_buf(),
            memory_mb: o.memory_mb,
            vcpus: crate::vm::qemu::DEFAULT_VCPUS,
        },
        // Boot, chronyd's first synchronisation (up to 240 s), the window.
        timeout: Duration::from_secs(300 + observe_s),
        settings: SimSettings {
            blackout_ms: o.blackout_ms,
            skew_ns: cond.skew_ns,
            same_rate: cond.same_rate,
            migrations: 1,
            expect: Some(case.outcome()),
            vmm: if o.device {
                Vmm::QemuDevice
            } else {
                Vmm::Simulator
            },
            ..Default::default()
        },
        ack_timeout: ack_timeout(case.module()),
        network: Some(network.clone()),
    };
    match sim(&so, out) {
        Ok(s) => {
            r.ok = s.report.ok;
            r.problems = s.report.problems;
        }
        Err(e) => r.problems.push(format!("{e:#}")),
    }
    r.probe = network.finish(dir, out).unwrap_or_default();
    let text: String = ["a", "b"]
        .iter()
        .filter_map(|g| std::fs::read_to_string(dir.join(format!("results-{g}.ktap"))).ok())
        .collect();
    r.chrony = chrony_views(&text);
    r.chrony_steps = chrony_steps(&text);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_ask_for_their_devices() {
        let [a, b, c] = cases();
        assert_eq!(a.run(240, 90), "mt_chrony:expect=none:sync=240:hold=0");
        assert!(b.run(240, 90).ends_with(":hold=90"));
        assert_eq!((a.module(), b.module(), c.module()), (false, false, true));
        assert_eq!(
            (a.vmclock(), b.vmclock(), c.vmclock()),
            (false, true, false)
        );
        assert_eq!(c.outcome(), ExpectOutcome::Stepped);
        assert_eq!(a.outcome(), ExpectOutcome::None);
    }

    #[test]
    fn chrony_lines_parse() {
        let t = "    # MIGTIME-CHRONY hop=1 t=3.0 leap=Normal offset=-0.000120 last=0.000050 freq=-21.500 reftime=1.0\n\
                 ok 3 x\n    # MIGTIME-CHRONY-RESULT hop=1 expect=none synced_after_s=-1.0 worst_update_offset_s=0.1 steps=2\n";
        let v = chrony_views(t);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].leap, "Normal");
        assert_eq!(v[0].t_s, 3.0);
        assert_eq!(v[0].freq_ppm, -21.5);
        assert_eq!(chrony_steps(t), Some(2));
    }
}
