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
//! - `mt.smp=N`: `-smp N`;
//! - `mt.net=1`: user-mode networking (virtio-net, no IPv6). The guest gets no default route,
//!   so it reaches only the 10.0.2.0/24 of QEMU's user network, where 10.0.2.2 is the host's
//!   loopback: there the harness runs an NTP server ([`migtime_ntp_sim::NtpSim`]) serving the
//!   simulated host's clock, passed to the guest as `mt.ntp=PORT`, switched at each `cont`
//!   ([`on_cont`]) to the destination's clock: `hop x skew_ns` off the real clock, with its
//!   own rate ([`host_ppm`]).

use crate::check::{Kind, Scenario};
use crate::qemu::Mode;
use crate::sim::{ExpectOutcome, SimSettings};
use anyhow::Result;
use migtime_ntp_sim::NtpSim;
use std::sync::Mutex;

/// QEMU arguments asked for by `append` (the guest's kernel command line).
pub fn extra_qemu_args(append: &str) -> Vec<String> {
    let mut a = Vec::new();
    for w in append.split_whitespace() {
        if w == "mt.vmclock=1" {
            a.extend(["-device".to_string(), "vmclock".to_string()]);
        } else if w == "mt.net=1" {
            a.extend([
                "-netdev".to_string(),
                "user,id=n0,ipv6=off".to_string(),
                "-device".to_string(),
                "virtio-net-pci,netdev=n0,romfile=".to_string(),
            ]);
        } else if let Some(n) = w
            .strip_prefix("mt.smp=")
            .filter(|n| n.parse::<u32>().is_ok_and(|n| n >= 1))
        {
            a.extend(["-smp".to_string(), n.to_string()]);
        }
    }
    a
}

/// The NTP server of the running scenario, if it has a network.
static NTP: Mutex<Option<NtpSim>> = Mutex::new(None);

/// The rate of simulated host `k` (0: the first source) against the real clock, ppm: tens of
/// ppm apart, as two hosts' oscillators.
pub fn host_ppm(k: u32) -> f64 {
    if k % 2 == 0 {
        -20.0
    } else {
        30.0
    }
}

/// Before a scenario: starts the NTP server when `run` asks for a network (`mt.net=1`) and
/// returns the command line words for the guest (`mt.ntp=PORT`), else "".
pub fn start_ntp(run: &str) -> Result<String> {
    let mut g = NTP.lock().expect("ntp lock");
    *g = None;
    if !run.split_whitespace().any(|w| w == "mt.net=1") {
        return Ok(String::new());
    }
    let sim = NtpSim::start("127.0.0.1:0".parse()?)?;
    sim.set(0, host_ppm(0));
    let port = sim.addr().port();
    crate::boot::stage(format!(
        "NTP server for the simulated hosts on 127.0.0.1:{port} (guest: 10.0.2.2:{port})"
    ));
    *g = Some(sim);
    Ok(format!("mt.ntp={port}"))
}

/// After a scenario: stops the NTP server.
pub fn stop_ntp() {
    if let Some(s) = NTP.lock().expect("ntp lock").take() {
        crate::boot::stage(format!("NTP server: {} requests served", s.served()));
    }
}

/// Just before `cont` of hop `hop` (1, 2, ...): the NTP server now serves destination host
/// `hop`, whose clock is `hop x skew_ns` off the real one (the skew the page's Tout carries).
pub fn on_cont(hop: u32, skew_ns: i64) {
    if let Some(s) = NTP.lock().expect("ntp lock").as_ref() {
        let tl = s.set(i64::from(hop) * skew_ns, host_ppm(hop));
        crate::boot::stage(format!(
            "NTP server now serves host {hop}: offset {:+.3} ms, rate {:+} ppm",
            tl.offset_ns as f64 / 1e6,
            tl.ppm
        ));
    }
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
        Scenario {
            name: "chrony-vmclock",
            about: "(b) real chronyd 4.3 synced over the network to the simulated host, VMClock, no module; 2 s blackout, +0.5 s skew, rate change: the companion acts once and chronyd re-syncs to the new host",
            mode: Mode::Plain,
            run: "mt_chrony:expect=vmclock:hops=1:sync=60 mt.load=0 mt.vmclock=1 mt.smp=2 mt.net=1",
            params: "",
            kind: Kind::Sim(SimSettings {
                blackout_ms: 2000,
                skew_ns: 500_000_000,
                migrations: 1,
                expect: Some(ExpectOutcome::None),
                ..Default::default()
            }),
        },
        Scenario {
            name: "chrony-migtime",
            about: "(c) real chronyd 4.3 as in chrony-vmclock, with the migtime module stepping: the companion acts once on the event and chronyd re-syncs to the new host",
            mode: Mode::Plain,
            run: "mt_chrony:expect=migtime:hops=1:sync=60 mt.smp=2 mt.net=1",
            params: "",
            kind: Kind::Sim(SimSettings {
                blackout_ms: 2000,
                skew_ns: 500_000_000,
                migrations: 1,
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
    fn ntp_server_follows_the_hops() {
        assert_eq!(start_ntp("mt_companion:hops=2 mt.vmclock=1").unwrap(), "");
        let w = start_ntp("mt_chrony:expect=migtime mt.net=1").unwrap();
        let port: u16 = w.strip_prefix("mt.ntp=").unwrap().parse().unwrap();
        assert_ne!(port, 0);
        let tl = |f: &dyn Fn(&NtpSim)| f(NTP.lock().unwrap().as_ref().unwrap());
        tl(&|s| {
            assert_eq!(s.addr().port(), port);
            assert_eq!((s.timeline().offset_ns, s.timeline().ppm), (0, host_ppm(0)));
        });
        on_cont(1, 500_000_000);
        tl(&|s| {
            assert_eq!(
                (s.timeline().offset_ns, s.timeline().ppm),
                (500_000_000, host_ppm(1))
            )
        });
        on_cont(2, 500_000_000);
        tl(&|s| {
            assert_eq!(
                (s.timeline().offset_ns, s.timeline().ppm),
                (1_000_000_000, host_ppm(2))
            )
        });
        assert_ne!(host_ppm(1), host_ppm(2));
        stop_ntp();
        assert!(NTP.lock().unwrap().is_none());
    }

    #[test]
    fn devices_follow_the_command_line() {
        assert!(extra_qemu_args("mt.run=mt_basic").is_empty());
        assert_eq!(
            extra_qemu_args("mt.run=x mt.vmclock=1 mt.smp=2"),
            ["-device", "vmclock", "-smp", "2"]
        );
        assert!(extra_qemu_args("mt.vmclock=0 mt.smp=0 mt.smp=x").is_empty());
        let net = extra_qemu_args("mt.net=1");
        assert_eq!(net[0], "-netdev");
        assert!(net[1].starts_with("user,") && net[1].contains("ipv6=off"));
    }
}
