// SPDX-License-Identifier: GPL-2.0

//! The host's own checks of a scenario ([`HostCheck`]), on what the network's
//! probe saw; each counts like a KTAP leaf result.

use crate::net::network::Probed;
use crate::net::pairing::Convergence;
use crate::net::probe::PairSample;
use crate::suite::scenario::HostCheck;

/// Evaluates `checks` on what the probe saw after each hop (nothing seen fails them), with
/// the host times the guest's acks were seen (`acks`, per hop): each is (passed,
/// description), one per check and hop.
pub fn evaluate(
    checks: &[HostCheck],
    p: Option<&Probed>,
    acks: &[Option<i64>],
) -> Vec<(bool, String)> {
    let mut hops = p.map(|p| p.hops.clone()).unwrap_or_default();
    if hops.is_empty() {
        hops.push(p.and_then(|p| p.convergence.clone()).unwrap_or_default());
    }
    let n = hops.len();
    let mut v = Vec::new();
    for (i, c) in hops.iter().enumerate() {
        let end = p
            .and_then(|p| p.resumes.get(i + 1).copied())
            .unwrap_or(i64::MAX);
        let samples = p.map_or(&[][..], |p| &p.samples[..]);
        let from_step = from_step(samples, acks.get(i).copied().flatten(), end);
        for (ok, what) in evaluate_hop(checks, c, &from_step) {
            let what = if n > 1 {
                format!("hop {}: {what}", i + 1)
            } else {
                what
            };
            v.push((ok, what));
        }
    }
    v
}

/// The samples sent after the ack at host time `ack` (the exchange's midpoint less its
/// pairing error, about its send time: none straddles the step) and before `end`:
/// (samples, those surely beyond 5 ms, the worst of them in ms); None without an ack.
fn from_step(s: &[PairSample], ack: Option<i64>, end: i64) -> Option<(usize, usize, f64)> {
    let ack = ack?;
    let after: Vec<&PairSample> = s
        .iter()
        .filter(|x| x.host_ns - x.bound_ns > ack && x.host_ns < end)
        .collect();
    let out: Vec<&&PairSample> = after.iter().filter(|x| x.surely_out()).collect();
    let worst = out.iter().map(|x| x.err_ns.abs()).max().unwrap_or(0) as f64 / 1e6;
    Some((after.len(), out.len(), worst))
}

fn evaluate_hop(
    checks: &[HostCheck],
    c: &Convergence,
    from_step: &Option<(usize, usize, f64)>,
) -> Vec<(bool, String)> {
    checks
        .iter()
        .map(|k| match k {
            HostCheck::ProbeSettles => (
                c.settled_s.is_some() && c.held_s > 0.0,
                format!(
                    "host probe: guest within 5 ms of the new host at the end ({} samples after resume, settled {})",
                    c.samples,
                    c.settled_s.map_or("never".into(), |s| format!("after {s:.2} s"))
                ),
            ),
            HostCheck::ProbeOneStep => (
                c.one_step,
                format!(
                    "host probe: one correction (the module's step) and no second one: once within 5 ms of the new host the guest never leaves it (pairing error median {:.2} ms, max {:.2} ms)",
                    c.bound_median_ms, c.bound_max_ms
                ),
            ),
            HostCheck::ProbeFromStep => match from_step {
                Some((n, out, worst)) => (
                    *n > 0 && *out == 0,
                    format!(
                        "host probe: from the module's step (the guest's ack) on, within 5 ms of the new host: {out} of {n} samples surely beyond (worst {worst:.1} ms)"
                    ),
                ),
                None => (false, "host probe: within 5 ms of the new host from the module's step on: no ack of the step".into()),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use HostCheck::{ProbeFromStep, ProbeOneStep, ProbeSettles};

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
        assert!(evaluate(&[], None, &[]).is_empty());
        let both = [ProbeSettles, ProbeOneStep];
        let v = evaluate(&both, Some(&conv(true, Some(0.1))), &[]);
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|c| c.0), "{v:?}");
        let v = evaluate(&both, Some(&conv(false, Some(3.0))), &[]);
        assert_eq!((v[0].0, v[1].0), (true, false));
        let v = evaluate(&[ProbeSettles], Some(&conv(false, None)), &[]);
        assert_eq!(v.len(), 1);
        assert!(!v[0].0);
        // No probe at all fails too.
        assert!(evaluate(&[ProbeSettles], None, &[]).iter().all(|c| !c.0));
        // Every hop is checked: one that never settled fails its row.
        let mut two = conv(true, Some(0.1));
        let c = two.convergence.clone().unwrap();
        let never = Convergence {
            settled_s: None,
            ..c.clone()
        };
        two.hops = vec![c, never];
        let v = evaluate(&[ProbeSettles], Some(&two), &[]);
        assert_eq!((v.len(), v[0].0, v[1].0), (2, true, false), "{v:?}");
        assert!(v[1].1.starts_with("hop 2: "));
        // From the step on: a sample surely beyond 5 ms after the ack fails its hop, one
        // before the ack does not; no ack fails.
        let ms = 1_000_000;
        let s = |t: i64, err_ns| PairSample {
            host_ns: t * ms,
            err_ns,
            bound_ns: ms,
        };
        two.samples = vec![s(10, -900 * ms), s(20, ms), s(30, ms / 10), s(60, 9 * ms)];
        two.resumes = vec![0, 50 * ms];
        // The first sample was sent (midpoint less its pairing error) before the ack.
        let v = evaluate(
            &[ProbeFromStep],
            Some(&two),
            &[Some(12 * ms), Some(55 * ms)],
        );
        assert_eq!((v[0].0, v[1].0), (true, false), "{v:?}");
        let v = evaluate(&[ProbeFromStep], Some(&two), &[Some(8 * ms), Some(70 * ms)]);
        assert_eq!((v[0].0, v[1].0), (false, false), "{v:?}");
    }
}
