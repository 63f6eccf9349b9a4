// SPDX-License-Identifier: GPL-2.0

//! One `sim` run observed from outside, for `demo` and `bench`: the clock
//! watcher around the simulator, and per hop what the guest's wall clock did
//! (from the samples and the STOP/RESUME times the simulator reports).

use std::path::PathBuf;

use serde::Serialize;

use crate::base::output::Reporter;
use crate::base::results::ClockResult;
use crate::migrate::opts::SimOpts;
use crate::migrate::sim::sim;
use crate::migrate::watch::{ClockWatch, Sample};
use crate::record::ack::Ack;
use crate::record::hop::SimSummary;

/// What the guest's wall clock did across one migration hop.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HopClock {
    /// Host realtime of the source's STOP and the destination's RESUME.
    pub stop_ns: i64,
    pub resume_ns: i64,
    /// Guest minus host realtime before the migration, ms: the median
    /// sample offset in the last second before STOP.
    pub before_ms: f64,
    /// Spread (max - min) of the sample offsets in that second, ms: the
    /// read-latency error bar (serial + polling).
    pub before_spread_ms: f64,
    pub before_samples: usize,
    /// The first destination sample's offset minus `before_ms`, ms.
    pub first_after_change_ms: Option<f64>,
    /// Absolute offset settled after the migration: the median sample
    /// offset between 1 s and 2 s of host time after RESUME, ms.
    pub after_ms: Option<f64>,
    /// `after_ms - before_ms`: the clock error the migration introduced.
    pub change_ms: Option<f64>,
    /// The guest's CLOCK_MONOTONIC when its clocks froze at STOP, ns ([`freeze_mono_ns`]);
    /// the guest's clocks do not run while the VM is stopped, so it is also the guest's
    /// monotonic time when they run again at RESUME.
    pub freeze_mono_ns: Option<i64>,
}

/// Settling window after RESUME: [SETTLE_FROM, SETTLE_TO) ns.
pub const SETTLE_FROM_NS: i64 = 1_000_000_000;
pub const SETTLE_TO_NS: i64 = 2_000_000_000;

fn median_i64(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    })
}

/// Analyses the hop `src` -> `dst` from the samples and the event times.
///
/// Offsets are medians, not the least delayed sample: the guest's results
/// channel goes through a pipe that can hold a line until the next one
/// (busybox sed reads one line ahead), which delays most samples by up to a
/// period. That bias is the same before and after, so it cancels in the
/// change; the spread is reported as the error bar.
pub fn analyse_hop(
    samples: &[Sample],
    src: &str,
    dst: &str,
    stop_ns: i64,
    resume_ns: i64,
) -> Option<HopClock> {
    let mut pre: Vec<i64> = samples
        .iter()
        .filter(|s| {
            s.guest == src && s.host_rt_ns < stop_ns && s.host_rt_ns >= stop_ns - 1_000_000_000
        })
        .map(Sample::offset_ns)
        .collect();
    let freeze = freeze_mono_ns(
        samples.iter().filter(|s| {
            s.guest == src && s.host_rt_ns < stop_ns && s.host_rt_ns >= stop_ns - 1_000_000_000
        }),
        stop_ns,
    );
    let before = median_i64(&mut pre)?;
    let spread = pre.last()? - pre.first()?;
    let post: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.guest == dst && s.host_rt_ns >= resume_ns)
        .collect();
    let first = post
        .iter()
        .min_by_key(|s| s.host_rt_ns)
        .map(|s| (s.offset_ns() - before) as f64 / 1e6);
    let mut settled: Vec<i64> = post
        .iter()
        .filter(|s| {
            s.host_rt_ns >= resume_ns + SETTLE_FROM_NS && s.host_rt_ns < resume_ns + SETTLE_TO_NS
        })
        .map(|s| s.offset_ns())
        .collect();
    let settled = median_i64(&mut settled);
    Some(HopClock {
        stop_ns,
        resume_ns,
        before_ms: before as f64 / 1e6,
        before_spread_ms: spread as f64 / 1e6,
        before_samples: pre.len(),
        first_after_change_ms: first,
        after_ms: settled.map(|v| v as f64 / 1e6),
        change_ms: settled.map(|v| (v - before) as f64 / 1e6),
        freeze_mono_ns: freeze,
    })
}

/// The guest's CLOCK_MONOTONIC at host realtime `stop_ns`, from `samples` taken before it:
/// the sample with the smallest (host read time - guest monotonic) was read with the least
/// delay, so its pairing maps guest monotonic to host realtime best. The estimate is early
/// by that sample's read delay (the watcher's 2 ms polling plus the serial path), so a
/// duration measured from it is long by as much. `None` without monotonic samples.
pub fn freeze_mono_ns<'a>(samples: impl Iterator<Item = &'a Sample>, stop_ns: i64) -> Option<i64> {
    samples
        .filter_map(|s| s.guest_mono_ns.map(|m| s.host_rt_ns - m))
        .min()
        .map(|k| stop_ns - k)
}

/// The guest names of a chain of `hops` migrations, as `sim` names them.
pub fn chain_names(hops: u32) -> Vec<String> {
    (0..=hops)
        .map(|i| ((b'a' + i as u8) as char).to_string())
        .collect()
}

/// The `mt.run` of `count` mt_clock runs.
pub fn mt_clock_run(count: u32, period_ms: u64, before_ms: u64, after_ms: u64) -> String {
    vec![
        format!("mt_clock:period_ms={period_ms}:before_ms={before_ms}:after_ms={after_ms}");
        count as usize
    ]
    .join(",")
}

/// One `sim` run with the watcher around it, and what came out of it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observed {
    pub run_dir: PathBuf,
    /// `sim`'s verdict (its own checks; informational here).
    pub sim_ok: bool,
    pub error: Option<String>,
    /// What `sim` measured (also its RUN/summary.json); none if it failed
    /// before it could report.
    pub summary: Option<SimSummary>,
    pub hops: Vec<ObservedHop>,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ObservedHop {
    pub src: String,
    pub dst: String,
    pub clock: Option<HopClock>,
    /// mt_clock's RESULT for this hop (printed on the destination).
    pub result: Option<ClockResult>,
    pub tout_ns: Option<i64>,
    pub ack: Option<Ack>,
}

impl ObservedHop {
    /// The guest's stale window, ms: from its clocks running again at RESUME to the step
    /// done, in guest CLOCK_MONOTONIC (the ack's `done_mono_ns` minus [`freeze_mono_ns`]).
    /// Long by the freeze estimate's read delay (a few ms at most). `None` without a
    /// module's timing block (no ack, mt_daemon, an older module) or monotonic samples.
    pub fn stale_ms(&self) -> Option<f64> {
        let freeze = self.clock.as_ref()?.freeze_mono_ns?;
        let a = &self.ack.as_ref()?.area;
        let done = a.timing.done_mono_ns;
        let timed = a.size as usize >= migtime_abi::abi::GUEST_AREA_SIZE && done > 0;
        timed.then(|| (done - freeze) as f64 / 1e6)
    }
}

/// Runs `sim` (fresh run folder) with the clock watcher and gathers it all.
pub fn observe(o: &SimOpts, out: &dyn Reporter) -> Observed {
    let run = o.guest.run_dir.clone();
    let _ = std::fs::remove_dir_all(&run);
    let _ = std::fs::create_dir_all(&run);
    let watch = ClockWatch::start(&run);
    let r = sim(o, out);
    let mut seen = watch.finish();
    let mut ob = Observed {
        run_dir: run.clone(),
        ..Default::default()
    };
    match r {
        Ok(res) => {
            ob.sim_ok = res.report.ok;
            if !res.report.ok {
                ob.error = Some(res.report.problems.join("; "));
            }
            ob.summary = Some(res.summary);
        }
        Err(e) => ob.error = Some(format!("{e:#}")),
    }
    let hops = ob.summary.as_ref().map_or(&[][..], |s| &s.hops[..]);
    let names = chain_names(o.settings.migrations);
    let mut observed = Vec::new();
    for (i, w) in names.windows(2).enumerate() {
        let (src, dst) = (&w[0], &w[1]);
        let sh = hops.get(i);
        let clock = match (sh.and_then(|h| h.stop_ns), sh.and_then(|h| h.resume_ns)) {
            (Some(s), Some(r)) => analyse_hop(&seen.samples, src, dst, s, r),
            _ => None,
        };
        let result = seen.results.remove(dst).and_then(|v| v.into_iter().next());
        if sh.is_none() && clock.is_none() && result.is_none() {
            break;
        }
        observed.push(ObservedHop {
            src: src.clone(),
            dst: dst.clone(),
            clock,
            result,
            tout_ns: sh.map(|h| h.tout_ns),
            ack: sh.and_then(|h| h.ack.clone()),
        });
    }
    ob.hops = observed;
    ob.samples = seen.samples;
    ob
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(g: &str, guest_ms: i64, host_ms: i64) -> Sample {
        Sample {
            guest: g.into(),
            guest_rt_ns: guest_ms * 1_000_000,
            guest_mono_ns: None,
            host_rt_ns: host_ms * 1_000_000,
        }
    }

    #[test]
    fn hop_analysis_uses_medians_and_the_settle_window() {
        // Guest 300 ms ahead of the host before (one sample read 5 ms late,
        // one 2 ms); STOP at 10 s, RESUME at 13 s.
        let mut v = vec![
            s("a", 9_300 + 300, 9_300),
            s("a", 9_600 + 300, 9_605),
            s("a", 9_900 + 300, 9_902),
        ];
        v.push(s("a", 1_000, 5_000)); // older than 1 s before STOP: ignored
                                      // After: the guest lags 3 s (first sample), then is stepped back.
        v.push(s("b", 13_010 - 2_700, 13_010));
        v.push(s("b", 14_200 + 301, 14_202)); // offset 299
        v.push(s("b", 14_500 + 300, 14_500)); // 300
        v.push(s("b", 14_600 + 300, 14_604)); // 296
        v.push(s("b", 16_000 + 900, 16_000)); // outside the settle window
        let h = analyse_hop(&v, "a", "b", 10_000_000_000, 13_000_000_000).unwrap();
        assert_eq!(h.before_ms, 298.0);
        assert_eq!(h.before_spread_ms, 5.0);
        assert_eq!(h.before_samples, 3);
        assert_eq!(h.first_after_change_ms, Some(-2998.0));
        assert_eq!(h.after_ms, Some(299.0));
        assert_eq!(h.change_ms, Some(1.0));
        assert!(analyse_hop(&v, "x", "b", 10_000_000_000, 13_000_000_000).is_none());
        let mut even = vec![4, 1, 3, 2];
        assert_eq!(median_i64(&mut even), Some(2));
        assert_eq!(median_i64(&mut []), None);
    }

    #[test]
    fn freeze_time_and_stale_window_from_the_least_delayed_sample() {
        // Guest monotonic = host realtime - 1000 s; samples read 3, 1 and 6 ms late.
        let m = |host_ms: i64, late_ms: i64| Sample {
            guest_mono_ns: Some((host_ms - 1_000_000) * 1_000_000),
            ..s("a", 0, host_ms + late_ms)
        };
        let v = [m(1_009_000, 3), m(1_009_500, 1), m(1_009_900, 6)];
        let stop = 1_010_000_000_000;
        // Early by the best sample's 1 ms delay.
        assert_eq!(freeze_mono_ns(v.iter(), stop), Some(9_999_000_000));
        assert_eq!(freeze_mono_ns([s("a", 0, 5)].iter(), stop), None);
        let mut h = ObservedHop {
            clock: Some(HopClock {
                freeze_mono_ns: Some(9_999_000_000),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(h.stale_ms(), None, "no ack");
        let mut area = migtime_abi::abi::GuestArea {
            size: migtime_abi::abi::GUEST_AREA_SIZE as u32,
            ..Default::default()
        };
        area.timing.done_mono_ns = 10_024_000_000;
        h.ack = Some(Ack {
            area,
            ..Default::default()
        });
        assert_eq!(h.stale_ms(), Some(25.0));
        h.ack.as_mut().unwrap().area.size = 64; // no timing block
        assert_eq!(h.stale_ms(), None);
    }

    #[test]
    fn chain_names_and_run_list() {
        assert_eq!(chain_names(2), vec!["a", "b", "c"]);
        assert_eq!(mt_clock_run(2, 50, 1000, 2000), "mt_clock:period_ms=50:before_ms=1000:after_ms=2000,mt_clock:period_ms=50:before_ms=1000:after_ms=2000");
    }
}
