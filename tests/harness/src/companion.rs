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
//!   ([`on_cont`]) to the destination's clock: `hop x skew_ns` off the real clock, with its
//!   own rate ([`host_ppm`]).

use crate::ack::ExpectOutcome;
use crate::options::SimSettings;
use crate::output::Reporter;
use crate::qemu::Mode;
use crate::scenarios::{Kind, Scenario};
use anyhow::Result;
use migtime_ntp_sim::{real_ns, NtpSim, Timeline};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
        }
    }
    a
}

/// The NTP server of the running scenario, if it has a network.
static NTP: Mutex<Option<NtpSim>> = Mutex::new(None);

/// The guest-host pairing of the running scenario (see [`Pairing`]).
static PAIRING: Mutex<Option<Pairing>> = Mutex::new(None);

/// One guest clock sample paired with the simulated host clock when the harness read it.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Host real time when the line was read, ns.
    host_ns: i64,
    /// Guest CLOCK_REALTIME in the line, ns.
    guest_ns: i64,
    /// Guest minus the simulated host clock serving at that moment, ns.
    err_ns: i64,
}

/// Tails the run folder's `results-*.ktap` every millisecond and pairs each
/// `# MIGTIME-CLOCK <realtime_ns> <monotonic_ns>` line with the simulated host's clock (the NTP
/// server's timeline) when it is read: guest - host, with the serial path and the 1 ms poll as
/// the pairing error (the line is printed after the guest reads its clock, so the error is
/// one-sided: the guest looks behind by the print-to-read delay).
struct Pairing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
    dir: PathBuf,
}

impl Pairing {
    fn start(dir: &Path, timeline: Arc<dyn Fn() -> Timeline + Send + Sync>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, dir2) = (stop.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut files: Vec<(PathBuf, u64, String)> = Vec::new();
            let mut out = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                if let Ok(rd) = std::fs::read_dir(&dir2) {
                    for e in rd.flatten() {
                        let p = e.path();
                        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        if n.starts_with("results-")
                            && n.ends_with(".ktap")
                            && !files.iter().any(|f| f.0 == p)
                        {
                            files.push((p, 0, String::new()));
                        }
                    }
                }
                for (p, pos, partial) in files.iter_mut() {
                    let Ok(mut f) = std::fs::File::open(&*p) else {
                        continue;
                    };
                    if f.seek(SeekFrom::Start(*pos)).is_err() {
                        continue;
                    }
                    let mut buf = String::new();
                    if let Ok(n) = f.read_to_string(&mut buf) {
                        *pos += n as u64;
                    }
                    if buf.is_empty() {
                        continue;
                    }
                    let host_ns = real_ns();
                    let tl = timeline();
                    partial.push_str(&buf);
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        let mut w = line.split_whitespace();
                        if w.any(|x| x == "MIGTIME-CLOCK") {
                            if let Some(Ok(g)) = w.next().map(str::parse::<i64>) {
                                out.push(Sample {
                                    host_ns,
                                    guest_ns: g,
                                    err_ns: g - tl.at(host_ns),
                                });
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            out
        });
        Self {
            stop,
            thread: Some(thread),
            dir: dir.to_path_buf(),
        }
    }

    /// Stops, writes `pairing.csv` and returns the summary line, if there were samples.
    fn finish(mut self, resume_ns: Option<i64>) -> Option<String> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.take()?.join().ok()?;
        let mut csv = String::from("host_ns,guest_ns,err_ns\n");
        for s in &samples {
            csv.push_str(&format!("{},{},{}\n", s.host_ns, s.guest_ns, s.err_ns));
        }
        let _ = std::fs::write(self.dir.join("pairing.csv"), csv);
        let resume = resume_ns?;
        Some(summarize(&samples, resume))
    }
}

/// After `resume_ns`: the time from which guest - host stays below 5 ms to the last sample
/// (per 1 s window, its least-delayed sample: the pairing error is one-sided, a few ms of serial
/// path under TCG), the largest |guest - host| of a single sample, the window covered, and the
/// pairing error seen over the 5 s before the migration, when chronyd had the guest in sync.
fn summarize(samples: &[Sample], resume_ns: i64) -> String {
    fn median(mut v: Vec<i64>) -> i64 {
        v.sort_unstable();
        v[v.len() / 2]
    }
    // The last 5 s of samples before the source stopped (none come during the blackout).
    let last_before = samples
        .iter()
        .filter(|s| s.host_ns < resume_ns)
        .map(|s| s.host_ns)
        .max();
    let before: Vec<i64> = samples
        .iter()
        .filter(|s| last_before.is_some_and(|l| s.host_ns <= l && s.host_ns > l - 5_000_000_000))
        .map(|s| s.err_ns)
        .collect();
    let pairing = if before.is_empty() {
        "pairing error n/a".to_string()
    } else {
        format!(
            "pairing error before the migration: median {:+.1} ms, {:+.1}..{:+.1} ms",
            median(before.clone()) as f64 / 1e6,
            *before.iter().min().unwrap() as f64 / 1e6,
            *before.iter().max().unwrap() as f64 / 1e6
        )
    };
    let after: Vec<&Sample> = samples.iter().filter(|s| s.host_ns >= resume_ns).collect();
    let Some(last) = after.last() else {
        return format!("no guest clock samples after resume; {pairing}");
    };
    let worst = after.iter().map(|s| s.err_ns.abs()).max().unwrap_or(0);
    // 1 s windows from the resume.
    let mut windows: Vec<(i64, Vec<i64>)> = Vec::new();
    for s in &after {
        let k = (s.host_ns - resume_ns) / 1_000_000_000;
        match windows.last_mut() {
            Some((w, v)) if *w == k => v.push(s.err_ns),
            _ => windows.push((k, vec![s.err_ns])),
        }
    }
    // Per window the sample with the least delay: the pairing error only makes the guest look
    // behind (it read its clock before the line reached the host), so the largest guest - host
    // of a window is its best estimate.
    let meds: Vec<(i64, i64)> = windows
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().max().unwrap_or(0)))
        .collect();
    let settled = match meds.iter().rposition(|(_, m)| m.abs() >= 5_000_000) {
        None => Some(meds[0].0),
        Some(i) => meds.get(i + 1).map(|(k, _)| *k),
    };
    let window = (last.host_ns - resume_ns) as f64 / 1e9;
    match settled {
        Some(k) => format!(
            "guest-host after resume: within 5 ms (least-delayed sample per second) from {k} s on (to the end of the {window:.0} s window), worst |err| {:.1} ms, {} samples; {pairing}",
            worst as f64 / 1e6,
            after.len()
        ),
        None => format!(
            "guest-host after resume: not within 5 ms at the end of the {window:.0} s window (last {:+.1} ms), worst |err| {:.1} ms, {} samples; {pairing}",
            meds.last().map_or(0, |m| m.1) as f64 / 1e6,
            worst as f64 / 1e6,
            after.len()
        ),
    }
}

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

/// Before a scenario: starts the NTP server when `run` asks for a network (`mt.net=1`) and
/// returns the command line words for the guest (`mt.ntp=PORT`), else "".
pub fn start_ntp(run: &str, dir: &Path, out: &dyn Reporter) -> Result<String> {
    let mut g = NTP.lock().expect("ntp lock");
    *g = None;
    *RESUMED_AT.lock().expect("resume lock") = None;
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
    *PAIRING.lock().expect("pairing lock") = Some(Pairing::start(dir, tl));
    Ok(format!("mt.ntp={port}"))
}

/// After a scenario: stops the NTP server.
pub fn stop_ntp(out: &dyn Reporter) {
    if let Some(p) = PAIRING.lock().expect("pairing lock").take() {
        if let Some(line) = p.finish(*RESUMED_AT.lock().expect("resume lock")) {
            out.stage(&line);
        }
    }
    if let Some(s) = NTP.lock().expect("ntp lock").take() {
        out.stage(&format!("NTP server: {} requests served", s.served()));
    }
}

/// Just before `cont` of hop `hop` (1, 2, ...): the NTP server now serves destination host
/// `hop`, whose clock is `hop x skew_ns` off the real one (the skew the page's Tout carries).
pub fn on_cont(hop: u32, skew_ns: i64, out: &dyn Reporter) {
    if let Some(s) = NTP.lock().expect("ntp lock").as_ref() {
        let tl = s.set(i64::from(hop) * skew_ns, host_ppm(hop));
        *RESUMED_AT.lock().expect("resume lock") = Some(tl.since_ns);
        out.stage(&format!(
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
    use crate::output::Console;

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
        let tl = |f: &dyn Fn(&NtpSim)| f(NTP.lock().unwrap().as_ref().unwrap());
        tl(&|s| {
            assert_eq!(s.addr().port(), port);
            assert_eq!((s.timeline().offset_ns, s.timeline().ppm), (0, host_ppm(0)));
        });
        on_cont(1, 500_000_000, &Console);
        tl(&|s| {
            assert_eq!(
                (s.timeline().offset_ns, s.timeline().ppm),
                (500_000_000, host_ppm(1))
            )
        });
        on_cont(2, 500_000_000, &Console);
        tl(&|s| {
            assert_eq!(
                (s.timeline().offset_ns, s.timeline().ppm),
                (1_000_000_000, host_ppm(2))
            )
        });
        assert_ne!(host_ppm(1), host_ppm(2));
        stop_ntp(&Console);
        assert!(NTP.lock().unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Ten samples a second, `per_s[k]` ms of error in second k after a resume at 10 s; a
    /// 7 pre-migration seconds at -1.5 ms.
    fn samples(per_s: &[f64]) -> Vec<Sample> {
        let mut v = Vec::new();
        for (k, e) in std::iter::repeat_n(&-1.5, 7).chain(per_s).enumerate() {
            for j in 0..10 {
                // One delayed sample of -4.9 ms a second: the least-delayed one counts.
                let spike = if j == 3 { -4.9 } else { *e };
                v.push(Sample {
                    host_ns: 3_000_000_000 + k as i64 * 1_000_000_000 + j * 100_000_000,
                    guest_ns: 0,
                    err_ns: (spike * 1e6) as i64,
                });
            }
        }
        v
    }

    #[test]
    fn summary_finds_when_the_error_settles_for_good() {
        let resume = 10_000_000_000;
        let s = summarize(&samples(&[-2000.0, 1.0, 30.0, 4.0, -3.0, 0.5]), resume);
        assert!(s.contains("from 3 s on"), "{s}");
        assert!(s.contains("worst |err| 2000.0 ms"), "{s}");
        assert!(
            s.contains("pairing error before the migration: median -1.5 ms, -4.9..-1.5 ms"),
            "{s}"
        );
        let s = summarize(&samples(&[-2000.0, 1.0, 30.0]), resume);
        assert!(s.contains("not within 5 ms"), "{s}");
        let s = summarize(&samples(&[1.0, 2.0]), resume);
        assert!(
            s.contains("(least-delayed sample per second) from 0 s on"),
            "{s}"
        );
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
    }
}
