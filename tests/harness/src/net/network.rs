// SPDX-License-Identifier: GPL-2.0

//! The simulated hosts' network, as a value the suite creates for a scenario
//! with a network and hands down: the NTP server ([`migtime_ntp_sim::NtpSim`])
//! serving the simulated host's clock (the guest gets its port as
//! `mt.ntp=PORT` and reaches it as 10.0.2.2), switched at each `cont`
//! ([`Network::on_cont`]) to the destination's clock: `skew_ns` off the
//! source's, with its own rate ([`host_ppm`]); and the probe
//! ([`crate::net::probe`]) comparing the guest's clock with the simulated
//! host's through the ports the QEMUs forward ([`ProbePorts`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use migtime_ntp_sim::{NtpSim, Timeline};

use crate::base::output::Reporter;
use crate::net::pairing::{converge, describe, Convergence};
use crate::net::probe::{PairSample, Probe};
use crate::vm::devices::ProbePorts;

/// The rate of simulated host `k` (0: the first source) against the real clock, ppm: tens of
/// ppm apart, as two hosts' oscillators.
pub fn host_ppm(k: u32) -> f64 {
    if k % 2 == 0 {
        -20.0
    } else {
        30.0
    }
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
    /// The numbers of every hop, in order: each from its resume to the next one.
    pub hops: Vec<Convergence>,
    /// Host real times of every hop's resume, in order.
    pub resumes: Vec<i64>,
}

/// One scenario's network: NTP server, probe, forwarded ports.
pub struct Network {
    ntp: Arc<NtpSim>,
    probe: Mutex<Option<Probe>>,
    /// Host real times of the switches to each destination host (the resumes).
    resumes: Mutex<Vec<i64>>,
    ports: ProbePorts,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("ntp", &self.ntp.addr())
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Starts the NTP server (serving host 0) on a free port, and the probe.
    pub fn start(out: &dyn Reporter) -> Result<Arc<Self>> {
        Self::start_on("127.0.0.1:0".parse()?, out)
    }

    /// As [`Network::start`], the NTP server on `addr` (a Debian image's daemons ask
    /// 10.0.2.2:123, QEMU's user network forwarding it to the host's 127.0.0.1:123).
    pub fn start_on(addr: SocketAddr, out: &dyn Reporter) -> Result<Arc<Self>> {
        let ntp = Arc::new(NtpSim::start(addr)?);
        ntp.set(0, host_ppm(0));
        let port = ntp.addr().port();
        out.stage(&format!(
            "NTP server for the simulated hosts on 127.0.0.1:{port} (guest: 10.0.2.2:{port})"
        ));
        let ports = ProbePorts::default();
        let sim = ntp.clone();
        let tl: Arc<dyn Fn() -> Timeline + Send + Sync> = Arc::new(move || sim.timeline());
        let probe = Probe::start(tl, ports.clone())?;
        Ok(Arc::new(Self {
            ntp,
            probe: Mutex::new(Some(probe)),
            resumes: Mutex::new(Vec::new()),
            ports,
        }))
    }

    /// The guest's command line word: `mt.ntp=PORT`.
    pub fn cmdline(&self) -> String {
        format!("mt.ntp={}", self.ntp.addr().port())
    }

    /// Where the QEMUs record the ports they forward to the guest's probe.
    pub fn ports(&self) -> ProbePorts {
        self.ports.clone()
    }

    /// The simulated host clock being served now.
    pub fn timeline(&self) -> Timeline {
        self.ntp.timeline()
    }

    /// Just before `cont` of hop `hop` (1, 2, ...): the NTP server now serves destination host
    /// `hop`, whose clock is `skew_ns` off the source's (the skew the page's Tout carries) and,
    /// unless `same_rate`, runs at its own rate ([`host_ppm`]).
    pub fn on_cont(&self, hop: u32, skew_ns: i64, same_rate: bool, out: &dyn Reporter) {
        let old = self.ntp.timeline();
        let now = migtime_ntp_sim::real_ns();
        let ppm = if same_rate { old.ppm } else { host_ppm(hop) };
        let tl = self.ntp.set(old.offset_at(now) + skew_ns, ppm);
        self.resumes.lock().expect("resume lock").push(tl.since_ns);
        out.stage(&format!(
            "NTP server now serves host {hop}: {:+.3} ms off the source, rate {:+} ppm (source {:+} ppm)",
            (tl.offset_ns - old.offset_at(tl.since_ns)) as f64 / 1e6,
            tl.ppm,
            old.ppm
        ));
    }

    /// After the scenario: stops the probe, writes `pairing.csv` and `probe.json` into `dir`;
    /// what the probe saw (None if already finished).
    pub fn finish(&self, dir: &Path, out: &dyn Reporter) -> Option<Probed> {
        let probe = self.probe.lock().expect("probe lock").take()?;
        let samples = probe.finish();
        let mut csv = String::from("host_ns,err_ns,bound_ns\n");
        for s in &samples {
            csv.push_str(&format!("{},{},{}\n", s.host_ns, s.err_ns, s.bound_ns));
        }
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join("pairing.csv"), csv);
        let resumes = self.resumes.lock().expect("resume lock").clone();
        let hops = per_hop(&samples, &resumes);
        match hops.last() {
            Some(_) if hops.len() > 1 => {
                for (i, c) in hops.iter().enumerate() {
                    out.stage(&format!("hop {}: {}", i + 1, describe(c)));
                }
            }
            Some(c) => out.stage(&describe(c)),
            None => out.stage(&format!("probe: {} samples, no migration", samples.len())),
        }
        let p = Probed {
            samples,
            resume_ns: resumes.last().copied(),
            convergence: hops.last().cloned(),
            hops,
            resumes,
        };
        if let Ok(json) = serde_json::to_string(&p) {
            let _ = std::fs::write(dir.join("probe.json"), json);
        }
        out.stage(&format!(
            "NTP server: {} requests served",
            self.ntp.served()
        ));
        Some(p)
    }
}

/// The numbers of each hop: from its resume to the next hop's.
fn per_hop(samples: &[PairSample], resumes: &[i64]) -> Vec<Convergence> {
    resumes
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let end = resumes.get(i + 1).copied().unwrap_or(i64::MAX);
            let upto = samples.partition_point(|s| s.host_ns < end);
            converge(&samples[..upto], r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::output::Console;

    #[test]
    fn ntp_server_follows_the_hops() {
        let dir = std::env::temp_dir().join(format!("migtime-network-{}", std::process::id()));
        let n = Network::start(&Console).unwrap();
        let port: u16 = n
            .cmdline()
            .strip_prefix("mt.ntp=")
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(port, 0);
        let tl = || n.timeline();
        assert_eq!((tl().offset_ns, tl().ppm), (0, host_ppm(0)));
        // Each destination is skew_ns off its source, the source's drift kept.
        let off = |t: Timeline| t.offset_at(t.since_ns);
        let src = tl();
        n.on_cont(1, 500_000_000, false, &Console);
        let d1 = tl();
        assert_eq!(off(d1) - src.offset_at(d1.since_ns), 500_000_000);
        assert_eq!(d1.ppm, host_ppm(1));
        n.on_cont(2, -500_000_000, true, &Console);
        let d2 = tl();
        assert_eq!(off(d2) - d1.offset_at(d2.since_ns), -500_000_000);
        assert_eq!(d2.ppm, d1.ppm, "same_rate keeps the source's rate");
        assert_ne!(host_ppm(1), host_ppm(2));
        let p = n.finish(&dir, &Console).expect("the probe ran");
        assert_eq!(p.resume_ns, Some(d2.since_ns));
        assert_eq!(p.hops.len(), 2);
        assert!(dir.join("pairing.csv").exists());
        assert!(n.finish(&dir, &Console).is_none(), "finished once");
        // Two networks at once do not share state.
        let (a, b) = (
            Network::start(&Console).unwrap(),
            Network::start(&Console).unwrap(),
        );
        a.on_cont(1, 7, false, &Console);
        assert_ne!(a.cmdline(), b.cmdline());
        assert_eq!(b.finish(&dir, &Console).unwrap().resume_ns, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
