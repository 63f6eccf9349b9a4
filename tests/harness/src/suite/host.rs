// SPDX-License-Identifier: GPL-2.0

//! The host's own checks of a scenario ([`HostCheck`]), on what the network's
//! probe saw; each counts like a KTAP leaf result.

use crate::net::network::Probed;
use crate::net::pairing::Convergence;
use crate::suite::scenario::HostCheck;

/// Evaluates `checks` on what the probe saw after each hop (nothing seen fails them): each
/// is (passed, description), one per check and hop.
pub fn evaluate(checks: &[HostCheck], p: Option<&Probed>) -> Vec<(bool, String)> {
    let mut hops = p.map(|p| p.hops.clone()).unwrap_or_default();
    if hops.is_empty() {
        hops.push(p.and_then(|p| p.convergence.clone()).unwrap_or_default());
    }
    let n = hops.len();
    let mut v = Vec::new();
    for (i, c) in hops.iter().enumerate() {
        for (ok, what) in evaluate_hop(checks, c) {
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

fn evaluate_hop(checks: &[HostCheck], c: &Convergence) -> Vec<(bool, String)> {
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
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use HostCheck::{ProbeOneStep, ProbeSettles};

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
        assert!(evaluate(&[], None).is_empty());
        let both = [ProbeSettles, ProbeOneStep];
        let v = evaluate(&both, Some(&conv(true, Some(0.1))));
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|c| c.0), "{v:?}");
        let v = evaluate(&both, Some(&conv(false, Some(3.0))));
        assert_eq!((v[0].0, v[1].0), (true, false));
        let v = evaluate(&[ProbeSettles], Some(&conv(false, None)));
        assert_eq!(v.len(), 1);
        assert!(!v[0].0);
        // No probe at all fails too.
        assert!(evaluate(&[ProbeSettles], None).iter().all(|c| !c.0));
        // Every hop is checked: one that never settled fails its row.
        let mut two = conv(true, Some(0.1));
        let c = two.convergence.clone().unwrap();
        let never = Convergence {
            settled_s: None,
            ..c.clone()
        };
        two.hops = vec![c, never];
        let v = evaluate(&[ProbeSettles], Some(&two));
        assert_eq!((v.len(), v[0].0, v[1].0), (2, true, false), "{v:?}");
        assert!(v[1].1.starts_with("hop 2: "));
    }
}
