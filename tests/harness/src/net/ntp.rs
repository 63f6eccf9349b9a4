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
//! - `mt.net=1`: user-mode networking (virtio-net, no IPv6). The guest gets no default route,
//!   so it reaches only the 10.0.2.0/24 of QEMU's user network, where 10.0.2.2 is the host's
//!   loopback: there the harness runs an NTP server ([`migtime_ntp_sim::NtpSim`]) serving the
//!   simulated host's clock, passed to the guest as `mt.ntp=PORT`, switched at each `cont`
//!   ([`on_cont`]) to the destination's clock: `skew_ns` off the source's, with its own rate
//!   ([`host_ppm`]). Each QEMU also forwards a host UDP port to the guest's `mt_probe`, through
//!   which [`crate::net::pairing`] compares the guest's clock with the simulated host's.

use crate::base::output::Reporter;
use crate::migrate::opts::SimSettings;
use crate::net::pairing::{
    converge, describe, hostfwd_port, reset_ports, Convergence, PairSample, Probe, PROBE_GUEST_PORT,
};
use crate::record::ack::ExpectOutcome;
use crate::suite::scenarios::{Kind, Scenario};
use crate::vm::qemu::Mode;
use anyhow::Result;
use migtime_ntp_sim::{NtpSim, Timeline};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// QEMU arguments asked for by `append` (the guest's kernel command line).
pub fn extra_qemu_args(append: &str) -> Vec<String> {
    let mut a = Vec::new();
    for w in append.split_whitespace() {
        if w == "mt.vmclock=1" {
            a.extend(["-device".to_string(), "vmclock".to_string()]);
        } else if w == "mt.net=1" {
            // The host's probe reaches the guest's mt_probe through a port of this QEMU's own.
            let port = hostfwd_port();
            a.extend([
                "-netdev".to_string(),
                format!("user,id=n0,ipv6=off,hostfwd=udp:127.0.0.1:{port}-:{PROBE_GUEST_PORT}"),
                "-device".to_string(),
                "virtio-net-pci,netdev=n0,romfile=".to_string(),
            ]);
        }
    }
    a
}

/// The NTP server of the running scenario, if it has a network.
static NTP: Mutex<Option<NtpSim>> = Mutex::new(None);

/// The probe of the running scenario (see [`crate::net::pairing`]).
static PROBE: Mutex<Option<Probe>> = Mutex::new(None);

/// Host real time of the latest switch to a destination host (the resume), if any.
static RESUMED_AT: Mutex<Option<i64>> = Mutex::new(None);

/// The rate of simulated host `k` (0: the first source) against the real clock, ppm: tens of
/// ppm apart, as two hosts' oscillators.
pub fn host_ppm(k: u32) -> f64 {
    if k % 2 == 0 {
        -20.0
    } else {
        30.0
    }
}

/// Before a scenario: starts the NTP server and the probe when `run` asks for a network
/// (`mt.net=1`) and returns the command line words for the guest (`mt.ntp=PORT`), else "".
pub fn start_ntp(run: &str, dir: &Path, out: &dyn Reporter) -> Result<String> {
    let mut g = NTP.lock().expect("ntp lock");
    *g = None;
    *RESUMED_AT.lock().expect("resume lock") = None;
    reset_ports();
    if !run.split_whitespace().any(|w| w == "mt.net=1") {
        return Ok(String::new());
    }
    let sim = NtpSim::start("127.0.0.1:0".parse()?)?;
    sim.set(0, host_ppm(0));
    let port = sim.addr().port();
    out.stage(&format!(
        "NTP server for the simulated hosts on 127.0.0.1:{port} (guest: 10.0.2.2:{port})"
    ));
    *g = Some(sim);
    drop(g);
    std::fs::create_dir_all(dir)?;
    let tl: Arc<dyn Fn() -> Timeline + Send + Sync> = Arc::new(|| {
        NTP.lock()
            .expect("ntp lock")
            .as_ref()
            .map_or_else(Timeline::default, NtpSim::timeline)
    });
    *PROBE.lock().expect("probe lock") = Some(Probe::start(tl)?);
    Ok(format!("mt.ntp={port}"))
}

/// What the probe saw in a scenario with a network.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Probed {
    /// Every sample, in time order (in the run folder's `pairing.csv`, not in JSON).
    #[serde(skip)]
    pub samples: Vec<PairSample>,
    /// Host real time of the last switch to a destination host, ns.
    pub resume_ns: Option<i64>,
    /// The numbers after that resume.
    pub convergence: Option<Convergence>,
}

/// After a scenario: stops the probe and the NTP server; what the probe saw, if it ran.
pub fn stop_ntp(dir: &Path, out: &dyn Reporter) -> Option<Probed> {
    let probe = PROBE.lock().expect("probe lock").take();
    let r = probe.map(|p| {
        let samples = p.finish();
        let mut csv = String::from("host_ns,err_ns,bound_ns\n");
        for s in &samples {
            csv.push_str(&format!("{},{},{}\n", s.host_ns, s.err_ns, s.bound_ns));
        }
        let _ = std::fs::write(dir.join("pairing.csv"), csv);
        let resume_ns = *RESUMED_AT.lock().expect("resume lock");
        let convergence = resume_ns.map(|r| converge(&samples, r));
        match &convergence {
            Some(c) => out.stage(&describe(c)),
            None => out.stage(&format!("probe: {} samples, no migration", samples.len())),
        }
        let p = Probed {
            samples,
            resume_ns,
            convergence,
        };
        if let Ok(json) = serde_json::to_string(&p) {
            let _ = std::fs::write(dir.join("probe.json"), json);
        }
        p
    });
    if let Some(s) = NTP.lock().expect("ntp lock").take() {
        out.stage(&format!("NTP server: {} requests served", s.served()));
    }
    reset_ports();
    r
}

/// The host's own checks of a chrony scenario (`mt_chrony:expect=...` in `run`), on what the
/// probe saw: the guest ends within 5 ms of the new host (expect=vmclock, migtime), and with
/// the module's step (expect=migtime) gets there in one correction and never leaves. Each is
/// (passed, description).
pub fn host_checks(run: &str, p: Option<&Probed>) -> Vec<(bool, String)> {
    let expect = |e: &str| run.contains(&format!("mt_chrony:expect={e}"));
    if !expect("vmclock") && !expect("migtime") {
        return Vec::new();
    }
    let c = p.and_then(|p| p.convergence.clone()).unwrap_or_default();
    let mut v = vec![(
        c.settled_s.is_some() && c.held_s > 0.0,
        format!(
            "host probe: guest within 5 ms of the new host at the end ({} samples after resume, settled {})",
            c.samples,
            c.settled_s.map_or("never".into(), |s| format!("after {s:.2} s"))
        ),
    )];
    if expect("migtime") {
        v.push((
            c.one_step,
            format!(
                "host probe: one correction (the module's step) and no second one: once within 5 ms of the new host the guest never leaves it (pairing error median {:.2} ms, max {:.2} ms)",
                c.bound_median_ms, c.bound_max_ms
            ),
        ));
    }
    v
}

/// Just before `cont` of hop `hop` (1, 2, ...): the NTP server now serves destination host
/// `hop`, whose clock is `skew_ns` off the source's (the skew the page's Tout carries) and,
/// unless `same_rate`, runs at its own rate ([`host_ppm`]).
pub fn on_cont(hop: u32, skew_ns: i64, same_rate: bool, out: &dyn Reporter) {
    if let Some(s) = NTP.lock().expect("ntp lock").as_ref() {
        let old = s.timeline();
        let now = migtime_ntp_sim::real_ns();
        let ppm = if same_rate { old.ppm } else { host_ppm(hop) };
        let tl = s.set(old.offset_at(now) + skew_ns, ppm);
        *RESUMED_AT.lock().expect("resume lock") = Some(tl.since_ns);
        out.stage(&format!(
            "NTP server now serves host {hop}: {:+.3} ms off the source, rate {:+} ppm (source {:+} ppm)",
            (tl.offset_ns - old.offset_at(tl.since_ns)) as f64 / 1e6,
            tl.ppm,
            old.ppm
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
            run: "mt_companion:expect=vmclock:hops=2 mt.load=0 mt.vmclock=1",
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
            run: "mt_companion:expect=migtime:hops=2 mt.vmclock=1",
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
            run: "mt_chrony:expect=vmclock:hops=1:sync=60 mt.load=0 mt.vmclock=1 mt.net=1",
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
            run: "mt_chrony:expect=migtime:hops=1:sync=60 mt.net=1",
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
    use crate::base::output::Console;

    #[test]
    fn ntp_server_follows_the_hops() {
        let dir =
            std::env::temp_dir().join(format!("migtime-companion-ntp-{}", std::process::id()));
        assert_eq!(
            start_ntp("mt_companion:hops=2 mt.vmclock=1", &dir, &Console).unwrap(),
            ""
        );
        let w = start_ntp("mt_chrony:expect=migtime mt.net=1", &dir, &Console).unwrap();
        let port: u16 = w.strip_prefix("mt.ntp=").unwrap().parse().unwrap();
        assert_ne!(port, 0);
        let tl = || NTP.lock().unwrap().as_ref().unwrap().timeline();
        assert_eq!(NTP.lock().unwrap().as_ref().unwrap().addr().port(), port);
        assert_eq!((tl().offset_ns, tl().ppm), (0, host_ppm(0)));
        // Each destination is skew_ns off its source, the source's drift kept.
        let off = |t: Timeline| t.offset_at(t.since_ns);
        let src = tl();
        on_cont(1, 500_000_000, false, &Console);
        let d1 = tl();
        assert_eq!(off(d1) - src.offset_at(d1.since_ns), 500_000_000);
        assert_eq!(d1.ppm, host_ppm(1));
        on_cont(2, -500_000_000, true, &Console);
        let d2 = tl();
        assert_eq!(off(d2) - d1.offset_at(d2.since_ns), -500_000_000);
        assert_eq!(d2.ppm, d1.ppm, "same_rate keeps the source's rate");
        assert_ne!(host_ppm(1), host_ppm(2));
        let p = stop_ntp(&dir, &Console).expect("the probe ran");
        assert_eq!(p.resume_ns, Some(d2.since_ns));
        assert!(dir.join("pairing.csv").exists());
        assert!(NTP.lock().unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn host_checks_follow_the_expectation() {
        let conv = |one_step, settled_s| Probed {
            convergence: Some(Convergence {
                samples: 100,
                settled_s,
                held_s: 5.0,
                one_step,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(host_checks("mt_chrony:expect=none:sync=200 mt.net=1", None).is_empty());
        assert!(host_checks("mt_companion:expect=vmclock", None).is_empty());
        let good = conv(true, Some(0.1));
        let v = host_checks("mt_chrony:expect=migtime:hops=1 mt.net=1", Some(&good));
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|c| c.0), "{v:?}");
        let v = host_checks(
            "mt_chrony:expect=migtime mt.net=1",
            Some(&conv(false, Some(3.0))),
        );
        assert_eq!((v[0].0, v[1].0), (true, false));
        let v = host_checks(
            "mt_chrony:expect=vmclock mt.net=1",
            Some(&conv(false, None)),
        );
        assert_eq!(v.len(), 1);
        assert!(!v[0].0);
        // No probe at all fails too.
        assert!(host_checks("mt_chrony:expect=vmclock mt.net=1", None)
            .iter()
            .all(|c| !c.0));
    }

    #[test]
    fn devices_follow_the_command_line() {
        assert!(extra_qemu_args("mt.run=mt_basic").is_empty());
        assert_eq!(
            extra_qemu_args("mt.run=x mt.vmclock=1"),
            ["-device", "vmclock"]
        );
        assert!(extra_qemu_args("mt.vmclock=0 mt.net=0").is_empty());
        let net = extra_qemu_args("mt.net=1");
        assert_eq!(net[0], "-netdev");
        assert!(net[1].starts_with("user,") && net[1].contains("ipv6=off"));
        assert!(
            net[1].contains(&format!("-:{PROBE_GUEST_PORT}")),
            "{}",
            net[1]
        );
    }
}
