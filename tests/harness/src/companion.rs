// SPDX-License-Identifier: GPL-2.0

//! The userspace companion's scenarios (issue 10) and the guest devices they need.
//!
//! Kept in its own file so that the scenario table (check.rs) and the QEMU command line
//! (qemu.rs) each need a one-line hook only. The extra guest hardware is asked for on the
//! kernel command line, which both QEMUs of a migration share (the guest contract,
//! tests/README.md):
//!
//! - `mt.vmclock=1`: QEMU `-device vmclock` (Linux `ptp_vmclock`, `/dev/vmclock0`); QEMU
//!   bumps its `disruption_marker` on the destination in `post_load`;
//! - `mt.smp=N`: `-smp N`.

use crate::check::{Kind, Scenario};
use crate::qemu::Mode;
use crate::sim::{ExpectOutcome, SimSettings};

/// QEMU arguments asked for by `append` (the guest's kernel command line).
pub fn extra_qemu_args(append: &str) -> Vec<String> {
    let mut a = Vec::new();
    for w in append.split_whitespace() {
        if w == "mt.vmclock=1" {
            a.extend(["-device".to_string(), "vmclock".to_string()]);
        } else if let Some(n) = w
            .strip_prefix("mt.smp=")
            .filter(|n| n.parse::<u32>().is_ok_and(|n| n >= 1))
        {
            a.extend(["-smp".to_string(), n.to_string()]);
        }
    }
    a
}

/// The companion's scenarios. A scenario has no field for extra kernel command line words,
/// so they ride after the program's arguments in `run` (`mt.run=` ends at the space).
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "companion-vmclock",
            about: "VMClock guest without the module, two hops: migtime-companion acts once per migration on the disruption marker (NTP reset, cancel-on-set nudge, chronyc)",
            mode: Mode::Plain,
            run: "mt_companion:expect=vmclock:hops=2 mt.load=0 mt.vmclock=1 mt.smp=2",
            params: "",
            kind: Kind::Sim(SimSettings {
                blackout_ms: 1000,
                migrations: 2,
                expect: Some(ExpectOutcome::None),
                ..Default::default()
            }),
        },
        Scenario {
            name: "companion-migtime",
            about: "module and VMClock, two hops: migtime-companion acts once per migration on the migtime event, the marker of the same migration is paired and dropped",
            mode: Mode::Plain,
            run: "mt_companion:expect=migtime:hops=2 mt.vmclock=1 mt.smp=2",
            params: "",
            kind: Kind::Sim(SimSettings {
                blackout_ms: 1000,
                migrations: 2,
                expect: Some(ExpectOutcome::Stepped),
                ..Default::default()
            }),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_follow_the_command_line() {
        assert!(extra_qemu_args("mt.run=mt_basic").is_empty());
        assert_eq!(
            extra_qemu_args("mt.run=x mt.vmclock=1 mt.smp=2"),
            ["-device", "vmclock", "-smp", "2"]
        );
        assert!(extra_qemu_args("mt.vmclock=0 mt.smp=0 mt.smp=x").is_empty());
    }
}
