// SPDX-License-Identifier: GPL-2.0

//! `--bad-page publish-storm`: after the (last) migration was acked, the host
//! publishes [`UPDATES`] more updates back to back, ringing the doorbell after
//! each, in bursts of [`BURST`] with [`GAP_MS`] between bursts (so the storm
//! spans the guest's 1 s safety-net poll and the doorbell work and the poll
//! work can run at once on different vCPUs). Each update is a plain
//! one-migration page (`seq + 1`, `delta`, `total + delta`) with a distinct
//! small delta. The guest (`mt_stress`) checks what it saw; the host checks
//! that the guest ends in step with the last page: `ack_seq` = its sequence,
//! `applied_total_ns` = its total, and no refusal among the acks.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use migtime_abi::abi;
use migtime_abi::page::{End, Update};

use crate::base::output::Reporter;
use crate::record::hop::SimSummary;
use crate::record::storm::StormReport;
use crate::vm::ivshmem::DoorbellServer;
use crate::vm::page::PageFile;
use crate::vm::qemu::Guest;

/// Updates published after the migration.
pub const UPDATES: u64 = 2000;
/// Updates per back-to-back burst.
pub const BURST: u64 = 10;
/// Pause between bursts, ms.
pub const GAP_MS: u64 = 20;

/// Delta of the `i`-th storm update (0-based): 1 ms + i µs, all distinct.
pub fn delta_ns(i: u64) -> i64 {
    1_000_000 + 1_000 * i as i64
}

/// Publishes the storm on `page`, ringing vector 0 of `server` after each
/// update (each the honest one-migration update, `migtime_abi::page`).
pub fn publish(page: &mut PageFile, server: &DoorbellServer) -> Result<StormReport> {
    let start = page.host_area();
    let mut cur = start;
    let t = Instant::now();
    for i in 0..UPDATES {
        let u = Update::next(&cur, delta_ns(i), false)
            .context("publish-storm: the page's sequence or total would overflow")?;
        page.write_update(&u, End::Even);
        cur = page.host_area();
        server.ring(0)?;
        if (i + 1) % BURST == 0 {
            std::thread::sleep(Duration::from_millis(GAP_MS));
        }
    }
    Ok(StormReport {
        updates: UPDATES,
        first_seq: start.migration_seq + 1,
        last_seq: cur.migration_seq,
        total_before_ns: start.tai_delta_total_ns,
        total_after_ns: cur.tai_delta_total_ns,
        ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// Waits (up to `timeout`) until the guest area acks the storm's last page,
/// then 1.5 s more (past the safety-net poll) for anything after it; returns
/// the problems found.
pub fn check_settled(page: &PageFile, r: &StormReport, timeout: Duration) -> Vec<String> {
    let t = Instant::now();
    let mut g = page.guest_area();
    while t.elapsed() < timeout && g.is_none_or(|g| g.ack_seq != r.last_seq) {
        std::thread::sleep(Duration::from_millis(5));
        g = page.guest_area();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let end = page.guest_area();
    let mut p = Vec::new();
    match (g, end) {
        (Some(g), Some(e)) => {
            if g.ack_seq != r.last_seq {
                p.push(format!(
                    "publish-storm: guest acked seq {} within {:.0} s, the last page is seq {}",
                    g.ack_seq,
                    timeout.as_secs_f64(),
                    r.last_seq
                ));
            }
            if e.events != g.events || e.ack_seq != g.ack_seq {
                p.push(format!(
                    "publish-storm: guest acted again after acking the last page: {g:?} -> {e:?}"
                ));
            }
            if e.applied_total_ns != r.total_after_ns {
                p.push(format!(
                    "publish-storm: guest in step with total {} ns, the last page's total is {} ns",
                    e.applied_total_ns, r.total_after_ns
                ));
            }
            if e.outcome != abi::Outcome::Stepped as u32 {
                p.push(format!(
                    "publish-storm: last guest outcome {}, expected stepped",
                    e.outcome
                ));
            }
        }
        _ => p.push("publish-storm: guest area never readable".into()),
    }
    p
}

/// The `publish-storm` fault on the destination guest `g`, after the hop's ack:
/// publish, then check that the guest settled on the last page.
pub fn publish_storm(sum: &mut SimSummary, out: &dyn Reporter, g: &mut Guest) -> Result<()> {
    let Some(server) = &g.server else {
        return Ok(());
    };
    let r = publish(&mut g.page, server)?;
    out.stage(&format!(
        "publish storm: {} updates (seq {}..={}, bursts of {} rung each, {} ms apart) in {:.0} ms; total {} -> {} ns",
        r.updates,
        r.first_seq,
        r.last_seq,
        BURST,
        GAP_MS,
        r.ms,
        r.total_before_ns,
        r.total_after_ns
    ));
    let p = check_settled(&g.page, &r, Duration::from_secs(60));
    out.stage(&format!(
        "publish storm: guest area after settling: {:?}{}",
        g.page.guest_area(),
        if p.is_empty() { "" } else { " (problems)" }
    ));
    sum.problems.extend(p);
    sum.tai_delta_total_ns = r.total_after_ns;
    sum.publish_storm = Some(r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_distinct_and_sum_as_the_guest_expects() {
        let sum: i64 = (0..UPDATES).map(delta_ns).sum();
        // mt_stress computes the same sum from updates=UPDATES.
        let n = UPDATES as i64;
        assert_eq!(sum, n * 1_000_000 + 1_000 * n * (n - 1) / 2);
        assert!(delta_ns(1) > delta_ns(0));
    }
}
