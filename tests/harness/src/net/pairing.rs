// SPDX-License-Identifier: GPL-2.0

//! What the probe's samples (`probe.rs`) say about a migration: [`converge`]
//! gives when the guest got within [`WITHIN_NS`] of the new host for good, for
//! how long, the worst error after the resume, and whether it got there in one
//! correction.

use serde::Serialize;

use crate::net::probe::{PairSample, WITHIN_NS};

/// What the guest clock did after a migration, as seen by the probe.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Convergence {
    /// Samples after the resume.
    pub samples: usize,
    /// Seconds from the resume to the first sample surely within 5 ms after the last one
    /// surely beyond (none if it never settled before the window ended).
    pub settled_s: Option<f64>,
    /// Seconds it then stayed within 5 ms: to the end of the window.
    pub held_s: f64,
    /// Seconds of samples after the resume.
    pub window_s: f64,
    /// The largest |guest - host| after the resume, and its sample's pairing error, ms.
    pub worst_ms: f64,
    pub worst_bound_ms: f64,
    /// guest - host over the 5 s before the migration (chronyd's sync to the source), median, ms.
    pub before_ms: Option<f64>,
    /// The pairing error (half round trip) of the samples after the resume: median, max, ms.
    pub bound_median_ms: f64,
    pub bound_max_ms: f64,
    /// After the resume the guest was only ever at its pre-migration time (within 5 ms of the
    /// best-paired sample before it first got within 5 ms of the new host) or not surely
    /// beyond 5 ms of the new host, and never left the new host's time once there: one
    /// correction, no second one, no slew through the gap.
    pub one_step: bool,
    /// The largest error past the new host's time, on the other side from where the guest
    /// resumed (a slew that overshoots), ms; 0 if it never crossed. Of each second's
    /// best-paired sample.
    pub overshoot_ms: f64,
    /// The largest |guest - host| once settled (to the end of the window), of each second's
    /// best-paired sample, ms.
    pub after_settled_ms: Option<f64>,
}

/// Of each second after `resume_ns`, the sample with the smallest pairing error (as NTP's
/// clock filter does): the error curve without the samples a delayed exchange blurs.
fn best_per_second<'a>(after: &[&'a PairSample], resume_ns: i64) -> Vec<&'a PairSample> {
    let mut v: Vec<&PairSample> = Vec::new();
    for s in after {
        let k = (s.host_ns - resume_ns).div_euclid(1_000_000_000);
        match v.last_mut() {
            Some(b) if (b.host_ns - resume_ns).div_euclid(1_000_000_000) == k => {
                if s.bound_ns < b.bound_ns {
                    *b = s;
                }
            }
            _ => v.push(s),
        }
    }
    v
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The numbers of a migration resumed at host real time `resume_ns`; `samples` in time order.
pub fn converge(samples: &[PairSample], resume_ns: i64) -> Convergence {
    // The last 5 s before the source stopped (no replies come during the blackout).
    let before: Vec<i64> = match samples.iter().rfind(|s| s.host_ns < resume_ns) {
        Some(l) => samples
            .iter()
            .filter(|s| s.host_ns <= l.host_ns && l.host_ns - s.host_ns < 5_000_000_000)
            .map(|s| s.err_ns)
            .collect(),
        None => Vec::new(),
    };
    let after: Vec<&PairSample> = samples.iter().filter(|s| s.host_ns >= resume_ns).collect();
    let mut c = Convergence {
        samples: after.len(),
        before_ms: (!before.is_empty()).then(|| median(before) as f64 / 1e6),
        ..Default::default()
    };
    let Some(last) = after.last() else {
        return c;
    };
    let secs = |s: &PairSample| (s.host_ns - resume_ns) as f64 / 1e9;
    c.window_s = secs(last);
    let worst = after
        .iter()
        .max_by_key(|s| s.err_ns.abs())
        .expect("non-empty");
    c.worst_ms = worst.err_ns.abs() as f64 / 1e6;
    c.worst_bound_ms = worst.bound_ns as f64 / 1e6;
    let bounds: Vec<i64> = after.iter().map(|s| s.bound_ns).collect();
    c.bound_max_ms = *bounds.iter().max().expect("non-empty") as f64 / 1e6;
    c.bound_median_ms = median(bounds) as f64 / 1e6;
    let from = after
        .iter()
        .rposition(|s| s.surely_out())
        .map_or(0, |i| i + 1);
    let best = best_per_second(&after, resume_ns);
    if let Some(k) = after[from..].iter().position(|s| s.surely_in()) {
        let s = after[from + k];
        c.settled_s = Some(secs(s));
        c.held_s = secs(last) - secs(s);
        c.after_settled_ms = best
            .iter()
            .filter(|b| b.host_ns >= s.host_ns)
            .map(|b| b.err_ns.abs())
            .max()
            .map(|e| e as f64 / 1e6);
    }
    let sign = after[0].err_ns.signum();
    c.overshoot_ms = best
        .iter()
        .filter(|s| s.err_ns.signum() == -sign)
        .map(|s| s.err_ns.abs())
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    // One correction: before the first sample surely within 5 ms, every sample agrees with
    // the pre-migration time (the best-paired of them) or is not surely beyond 5 ms; from it
    // on, none is surely beyond.
    let first_in = after.iter().position(|s| s.surely_in());
    c.one_step = first_in.is_some_and(|i| {
        let old = after[..i].iter().min_by_key(|s| s.bound_ns);
        let agrees = |s: &PairSample| {
            old.is_some_and(|o| (s.err_ns - o.err_ns).abs() - s.bound_ns - o.bound_ns < WITHIN_NS)
        };
        after[..i].iter().all(|s| agrees(s) || !s.surely_out())
            && after[i..].iter().all(|s| !s.surely_out())
    });
    c
}

/// One line for the log: what [`converge`] found.
pub fn describe(c: &Convergence) -> String {
    let settled = match c.settled_s {
        Some(s) => format!(
            "within 5 ms of the new host {s:.2} s after resume and for the {:.0} s after",
            c.held_s
        ),
        None => format!("not within 5 ms for good in the {:.0} s window", c.window_s),
    };
    format!(
        "probe: guest-host {settled}; worst |err| {:.1} ms (+-{:.2}), overshoot {:.1} ms, once settled {}; {}; before the migration {}; pairing error (half round trip) median {:.2} ms, max {:.2} ms, {} samples",
        c.worst_ms,
        c.worst_bound_ms,
        c.overshoot_ms,
        c.after_settled_ms.map_or("n/a".into(), |e| format!("within {e:.2} ms")),
        if c.one_step {
            "one correction"
        } else {
            "not a single correction"
        },
        c.before_ms.map_or("n/a".into(), |b| format!("{b:+.2} ms")),
        c.bound_median_ms,
        c.bound_max_ms,
        c.samples
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `errs_ms[k]` at 10 samples a second from `t0_s`, pairing error 0.3 ms.
    fn run(t0_s: i64, errs_ms: &[f64]) -> Vec<PairSample> {
        errs_ms
            .iter()
            .enumerate()
            .map(|(k, e)| PairSample {
                host_ns: t0_s * 1_000_000_000 + k as i64 * 100_000_000,
                err_ns: (e * 1e6) as i64,
                bound_ns: 300_000,
            })
            .collect()
    }

    #[test]
    fn a_module_step_settles_at_once_and_is_one_correction() {
        let mut v = run(0, &[0.5; 50]);
        let mut after = vec![-2500.0, -2500.2];
        after.extend([0.4; 30]);
        v.extend(run(10, &after));
        let c = converge(&v, 10_000_000_000);
        assert_eq!(c.samples, 32);
        assert_eq!(c.settled_s, Some(0.2));
        assert!((c.held_s - 2.9).abs() < 1e-9);
        assert_eq!(c.before_ms, Some(0.5));
        assert_eq!(c.worst_ms, 2500.2);
        assert!(c.one_step);
        assert_eq!((c.bound_median_ms, c.bound_max_ms), (0.3, 0.3));
        assert_eq!(c.overshoot_ms, 0.4, "the residual on the far side counts");
        assert_eq!(c.after_settled_ms, Some(0.4));
    }

    #[test]
    fn a_slew_and_an_overshoot_are_not_one_step_and_settle_late() {
        // Chrony alone: behind, slewing through zero, overshooting, back within 5 ms.
        let errs = [
            -2500.0, -1200.0, -300.0, 2.0, 270.0, 40.0, 8.0, 4.0, 1.0, 0.5,
        ];
        let c = converge(&run(10, &errs), 10_000_000_000);
        assert_eq!(c.settled_s, Some(0.7));
        assert!(!c.one_step, "a slew is not one correction");
        assert_eq!(c.worst_ms, 2500.0);
        // A second correction after a right step.
        let c = converge(&run(10, &[-2500.0, 0.1, 0.2, 500.0, 0.2]), 10_000_000_000);
        assert!(!c.one_step);
        assert_eq!(c.settled_s, Some(0.4));
        // Never settled.
        let c = converge(&run(10, &[-2500.0, -2400.0]), 10_000_000_000);
        assert_eq!(c.settled_s, None);
        assert!(!c.one_step);
        assert!(describe(&c).contains("not within 5 ms"));
    }

    #[test]
    fn overshoot_and_settled_error_use_each_seconds_best_sample() {
        // One sample a second: behind, through zero, 270 ms past, back; in second 6 also a
        // delayed sample (+8 ms, pairing error 4 ms) beside a good one (+1 ms).
        let mut v: Vec<PairSample> = [-2500.0, -1200.0, 270.0, 40.0, 1.0, 0.5, 1.0]
            .iter()
            .enumerate()
            .map(|(k, e)| PairSample {
                host_ns: 10_000_000_000 + k as i64 * 1_000_000_000,
                err_ns: (e * 1e6) as i64,
                bound_ns: 300_000,
            })
            .collect();
        v.push(PairSample {
            host_ns: 16_500_000_000,
            err_ns: 8_000_000,
            bound_ns: 4_000_000,
        });
        let c = converge(&v, 10_000_000_000);
        assert_eq!(c.overshoot_ms, 270.0);
        assert_eq!(c.settled_s, Some(4.0));
        assert_eq!(
            c.after_settled_ms,
            Some(1.0),
            "the delayed sample is not the second's best"
        );
        assert_eq!(c.worst_ms, 2500.0);
    }

    #[test]
    fn uncertain_samples_neither_settle_nor_unsettle() {
        // 4.9 ms with 0.3 ms pairing error: neither surely in nor surely out.
        let c = converge(&run(10, &[-2500.0, 4.9, 4.9, 1.0]), 10_000_000_000);
        assert_eq!(c.settled_s, Some(0.3));
        assert!(c.one_step);
    }
}
