// SPDX-License-Identifier: GPL-2.0

//! What `bench` measured and how it reports it: per-hop records from the
//! observed runs, statistics per configuration, the machine, the markdown
//! table.

use serde::Serialize;

use crate::base::results::parse_kv;
use crate::migrate::observe::Observed;
use crate::record::ack::Ack;
use crate::report::configs::Config;

/// Median, p99 (nearest rank) and max of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

/// [`Stats`] of `v` (NaNs ignored); `None` when empty. The median of an even
/// count is the mean of the two middle values; p99 is the nearest-rank
/// percentile (the max below 100 values).
pub fn stats(v: &[f64]) -> Option<Stats> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
    Some(Stats {
        n,
        median,
        p99: s[rank - 1],
        max: s[n - 1],
    })
}

/// One migration, as measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HopRecord {
    pub boot: u32,
    pub hop: u32,
    pub tout_ns: Option<i64>,
    pub outcome: Option<String>,
    /// Guest area: applied - intended, ns.
    pub residual_ns: Option<i64>,
    /// Host: `cont` returned -> guest ack seen, ms.
    pub ack_latency_ms: Option<f64>,
    /// Guest timing block (module only): doorbell interrupt or poll -> work start, ms.
    pub wake_to_work_ms: Option<f64>,
    /// Guest: work start -> clock stepped, ms.
    pub work_to_done_ms: Option<f64>,
    /// `ack_latency_ms` minus the guest's wake -> done: QEMU/TCG resuming the guest and the
    /// interrupt (or poll) reaching it, plus the ack becoming visible (1 ms host polling), ms.
    pub resume_ms: Option<f64>,
    /// The guest's stale window: its clocks running again at RESUME -> clock stepped, in
    /// guest CLOCK_MONOTONIC (`ObservedHop::stale_ms`), ms.
    pub stale_ms: Option<f64>,
    /// Guest: step method (1 inject, 2 settimeofday) and clock updates made.
    pub step_method: Option<u32>,
    pub sets: Option<u32>,
    /// Offset change (guest - host realtime, after minus before), ms.
    pub clock_change_ms: Option<f64>,
    pub clock_first_change_ms: Option<f64>,
    pub timerfd_cancelled: Option<bool>,
    pub sta_unsync: Option<bool>,
}

/// The idle cost of a configuration (mt_idle over a quiet window).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Idle {
    pub seconds: Option<f64>,
    pub wakeups_per_s: Option<f64>,
    pub busy_pct: Option<f64>,
    pub error: Option<String>,
}

impl Idle {
    /// From a `# MIGTIME-IDLE seconds=.. wakeups_per_s=.. busy_pct=..` line.
    pub fn parse(line: &str) -> Option<Self> {
        let m = parse_kv(line, "MIGTIME-IDLE")?;
        let f = |k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
        let i = Self {
            seconds: f("seconds"),
            wakeups_per_s: f("wakeups_per_s"),
            busy_pct: f("busy_pct"),
            error: None,
        };
        i.wakeups_per_s.map(|_| i)
    }
}

/// Everything about one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    pub config: Config,
    pub attempted: u32,
    pub hops: Vec<HopRecord>,
    pub errors: Vec<String>,
    /// |applied - intended|, µs.
    pub residual_us: Option<Stats>,
    pub ack_latency_ms: Option<Stats>,
    pub resume_ms: Option<Stats>,
    pub wake_to_work_ms: Option<Stats>,
    pub work_to_done_ms: Option<Stats>,
    pub stale_ms: Option<Stats>,
    /// |offset change|, ms.
    pub clock_error_ms: Option<Stats>,
    /// (timerfds cancelled, runs with a RESULT).
    pub cancel_woken: (u32, u32),
    pub idle: Option<Idle>,
}

impl ConfigResult {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            attempted: 0,
            hops: vec![],
            errors: vec![],
            residual_us: None,
            ack_latency_ms: None,
            resume_ms: None,
            wake_to_work_ms: None,
            work_to_done_ms: None,
            stale_ms: None,
            clock_error_ms: None,
            cancel_woken: (0, 0),
            idle: None,
        }
    }

    pub fn summarise(&mut self) {
        let col = |f: &dyn Fn(&HopRecord) -> Option<f64>| -> Vec<f64> {
            self.hops.iter().filter_map(f).collect()
        };
        self.residual_us = stats(&col(&|h| {
            h.residual_ns.map(|r| r.unsigned_abs() as f64 / 1e3)
        }));
        self.ack_latency_ms = stats(&col(&|h| h.ack_latency_ms));
        self.resume_ms = stats(&col(&|h| h.resume_ms));
        self.wake_to_work_ms = stats(&col(&|h| h.wake_to_work_ms));
        self.work_to_done_ms = stats(&col(&|h| h.work_to_done_ms));
        self.stale_ms = stats(&col(&|h| h.stale_ms));
        self.clock_error_ms = stats(&col(&|h| h.clock_change_ms.map(f64::abs)));
        let res: Vec<bool> = self
            .hops
            .iter()
            .filter_map(|h| h.timerfd_cancelled)
            .collect();
        self.cancel_woken = (res.iter().filter(|&&b| b).count() as u32, res.len() as u32);
    }
}

/// The measured hops of one observed boot (`boot_no`, from 1).
pub fn records(ob: &Observed, boot_no: u32) -> Vec<HopRecord> {
    ob.hops
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let ack = h.ack.as_ref();
            let split = ack.and_then(guest_split);
            HopRecord {
                boot: boot_no,
                hop: i as u32 + 1,
                tout_ns: h.tout_ns,
                outcome: ack.map(Ack::outcome),
                residual_ns: ack.map(|a| a.area.applied_ns - a.area.intended_ns),
                ack_latency_ms: ack.map(|a| a.latency_ms),
                wake_to_work_ms: split.map(|s| s.0),
                work_to_done_ms: split.map(|s| s.1),
                resume_ms: ack.zip(split).map(|(a, s)| a.latency_ms - s.0 - s.1),
                stale_ms: h.stale_ms(),
                step_method: ack.map(|a| a.area.timing.step_method).filter(|&m| m != 0),
                sets: ack.map(|a| a.area.timing.sets).filter(|&n| n != 0),
                clock_change_ms: h.clock.as_ref().and_then(|c| c.change_ms),
                clock_first_change_ms: h.clock.as_ref().and_then(|c| c.first_after_change_ms),
                timerfd_cancelled: h.result.as_ref().map(|r| r.timerfd_cancelled),
                sta_unsync: h.result.as_ref().map(|r| r.sta_unsync),
            }
        })
        .collect()
}

/// The guest's own timing of an ack (ABI guest-area timing block, written by the module):
/// (wake -> work, work -> done) in ms; `None` for a guest that did not fill it in (mt_daemon,
/// an older module).
fn guest_split(a: &Ack) -> Option<(f64, f64)> {
    let t = &a.area.timing;
    let have = a.area.size as usize >= migtime_abi::abi::GUEST_AREA_SIZE
        && t.wake_mono_ns > 0
        && t.work_mono_ns >= t.wake_mono_ns
        && t.done_mono_ns >= t.work_mono_ns;
    have.then(|| {
        (
            (t.work_mono_ns - t.wake_mono_ns) as f64 / 1e6,
            (t.done_mono_ns - t.work_mono_ns) as f64 / 1e6,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_p99_max() {
        assert_eq!(stats(&[]), None);
        assert_eq!(
            stats(&[5.0]),
            Some(Stats {
                n: 1,
                median: 5.0,
                p99: 5.0,
                max: 5.0
            })
        );
        let s = stats(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.p99, s.max), (2.5, 10.0, 10.0));
        // 1..=200: p99 by nearest rank is the 198th value.
        let v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let s = stats(&v).unwrap();
        assert_eq!((s.n, s.median, s.p99, s.max), (200, 100.5, 198.0, 200.0));
        let s = stats(&[f64::NAN, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median), (3, 2.0));
    }

    #[test]
    fn idle_marker_parsing() {
        let i =
            Idle::parse("    # MIGTIME-IDLE seconds=60.002 wakeups_per_s=101.25 busy_pct=0.812")
                .unwrap();
        assert_eq!(
            (i.seconds, i.wakeups_per_s, i.busy_pct),
            (Some(60.002), Some(101.25), Some(0.812))
        );
        assert!(
            Idle::parse("# MIGTIME-IDLE 60").is_none(),
            "/init's own idle marker is not a result"
        );
        assert!(Idle::parse("# MIGTIME-IDLE seconds=1").is_none());
    }
}
