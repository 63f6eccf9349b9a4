// SPDX-License-Identifier: GPL-2.0

//! Host faults around the (last) hop of a [`Chain`]: a cancelled migration,
//! the destination killed after `completed`, a doorbell storm, a host
//! hammering the page with seqlock rewrites; and the check that the guest
//! took exactly one event through the storm or the hammer.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use migtime_abi::abi::{host_off, HostArea};
use migtime_abi::page::{End, PageWriter, Update};
use migtime_abi::seqlock::PageReader;
use serde_json::{json, Value};

use crate::base::output::Reporter;
use crate::migrate::chain::{Chain, Dest};
use crate::migrate::device::read_page;
use crate::migrate::opts::Vmm;
use crate::record::hop::{Hop, SimSummary};
use crate::vm::ivshmem::DoorbellServer;
use crate::vm::page::{BadPage, PageFile};
use crate::vm::qemu::remaining;

/// Doorbell rings in the `doorbell-storm` burst.
pub const STORM_RINGS: u32 = 10_000;
/// How long `page-hammer` rewrites the page, ms.
pub const HAMMER_MS: u64 = 2000;
/// `page-hammer` phases: garbage under an odd count for this long, then the
/// correct values under an even count for as long (µs, busy-waited).
pub const HAMMER_ODD_US: u64 = 20;
pub const HAMMER_EVEN_US: u64 = 20;

/// Drops the destination of a hop that will never run: it leaves the
/// verdict (its results file too).
fn discard_destination(c: &mut Chain<'_>, mut d: Dest) {
    let name = d.g.name.clone();
    d.g.kill();
    c.names.pop();
    drop(d);
    let results = c.o.guest.run_dir.join(format!("results-{name}.ktap"));
    let _ = std::fs::remove_file(results);
}

/// The source after a migration that did not happen (`after`: "cancel" or
/// "cont"): it must run, its page must still be `before`. Returns its status
/// and page.
fn source_after(
    c: &mut Chain<'_>,
    after: &str,
    how: &str,
    before: &HostArea,
) -> Result<(Value, HostArea)> {
    let st = c
        .cur_q
        .execute("query-status", None, Duration::from_secs(5))?;
    if st["running"] != true {
        c.sum
            .problems
            .push(format!("source not running after {after}: {st}"));
    }
    let page = c.cur.page.host_area();
    if page != *before {
        let how = if how.is_empty() {
            String::new()
        } else {
            format!(" {how}")
        };
        c.sum
            .problems
            .push(format!("source page changed{how}: {before:?} -> {page:?}"));
    }
    Ok((st, page))
}

/// `--cancel`: a migration throttled to 1 MiB/s, cancelled after 0.5 s; the
/// source must run on with its page unchanged. On the migtime device the migration
/// instead pauses before the switchover (`pause-before-switchover`: the source VM is
/// stopped, the guest's clock frozen), stays there for the blackout and is cancelled
/// then: the source resumes, and the device, which loaded nothing, must publish nothing.
pub fn cancel(c: &mut Chain<'_>, d: Dest, mut h: Hop) -> Result<()> {
    let device = c.o.settings.vmm == Vmm::QemuDevice;
    if device {
        read_page(&mut c.cur_q, &mut c.cur.page)?;
    }
    let before = c.cur.page.host_area();
    let (src, dname) = (c.cur.name.clone(), d.g.name.clone());
    let t = Duration::from_secs(5);
    if device {
        let cap =
            json!({"capabilities": [{"capability": "pause-before-switchover", "state": true}]});
        c.cur_q.execute("migrate-set-capabilities", Some(cap), t)?;
        c.out.stage(&format!(
            "migrating {src} -> {dname}, pausing before the switchover, to cancel it"
        ));
    } else {
        let limit = Some(json!({ "max-bandwidth": 1u64 << 20 }));
        c.cur_q.execute("migrate-set-parameters", limit, t)?;
        c.out.stage(&format!(
            "migrating {src} -> {dname} at 1 MiB/s, to cancel it"
        ));
    }
    let args = Some(json!({ "uri": d.uri }));
    c.cur_q.execute("migrate", args, Duration::from_secs(10))?;
    if device {
        c.cur_q
            .wait_migration(&["pre-switchover"], remaining(c.deadline)?)?;
        let ev = c.cur_q.wait_named("STOP", remaining(c.deadline)?)?;
        h.stop_ns = crate::vm::qmp::event_time_ns(&ev);
        h.blackout_ms = c.o.settings.blackout_ms;
        c.out.stage(&format!(
            "source stopped before the switchover; cancelling after {} ms",
            h.blackout_ms
        ));
        std::thread::sleep(Duration::from_millis(h.blackout_ms));
    } else {
        c.cur_q
            .wait_migration(&["active"], remaining(c.deadline)?)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    c.cur_q.execute("migrate_cancel", None, t)?;
    let ends = ["cancelled", "completed", "failed"];
    let ev = c.cur_q.wait_migration(&ends, remaining(c.deadline)?)?;
    if ev["data"]["status"] != "cancelled" {
        bail!("migration was not cancelled: {}", ev["data"]["status"]);
    }
    if device {
        let ev = c.cur_q.wait_named("RESUME", remaining(c.deadline)?)?;
        h.resume_ns = crate::vm::qmp::event_time_ns(&ev);
        read_page(&mut c.cur_q, &mut c.cur.page)?;
    }
    let (st, after) = source_after(c, "cancel", "by a cancelled migration", &before)?;
    c.out.stage(&format!(
        "migration cancelled; source running ({}), page unchanged (seq {})",
        st["status"], after.migration_seq
    ));
    c.sum.cancelled = true;
    h.page = after;
    c.sum.hops.push(h);
    discard_destination(c, d);
    Ok(())
}

/// `dest-killed`: the migration completed; the destination is SIGKILLed
/// before `cont` and the source resumed (QEMU allows `postmigrate` ->
/// running). The source page was never written: it must be unchanged.
pub fn kill_destination(c: &mut Chain<'_>, mut d: Dest, mut h: Hop) -> Result<()> {
    let src_before = c.cur.page.host_area();
    let blackout = c.o.settings.blackout_ms;
    if blackout > 0 {
        std::thread::sleep(Duration::from_millis(blackout));
        h.blackout_ms = blackout;
    }
    let pid = d.g.child.as_ref().map(|c| c.id());
    d.g.kill(); // Child::kill: SIGKILL
    c.out.stage(&format!(
        "dest {} (pid {pid:?}) killed with SIGKILL before cont: {:?}",
        d.g.name, d.g.exit
    ));
    discard_destination(c, d);
    let st = c
        .cur_q
        .execute("query-status", None, Duration::from_secs(5))?;
    c.out.stage(&format!(
        "source {} status after completed migration: {}",
        c.cur.name, st["status"]
    ));
    c.cur_q
        .execute("cont", None, Duration::from_secs(10))
        .context("cont on the source after a completed migration")?;
    c.cur_q.wait_named("RESUME", remaining(c.deadline)?)?;
    let (st, after) = source_after(c, "cont", "", &src_before)?;
    c.out.stage(&format!(
        "source {} resumed ({}), its page unchanged (seq {})",
        c.cur.name, st["status"], after.migration_seq
    ));
    c.sum.dest_killed = true;
    h.page = after;
    c.sum.hops.push(h);
    Ok(())
}

/// `doorbell-storm`, after the normal ring: [`STORM_RINGS`] rings in a
/// burst, then as many one at a time, each after QEMU consumed the previous.
pub fn storm(s: &DoorbellServer, sum: &mut SimSummary, out: &dyn Reporter) -> Result<()> {
    let t = Instant::now();
    for _ in 0..STORM_RINGS {
        s.ring(0)?;
    }
    sum.storm_rings = STORM_RINGS;
    sum.storm_ms = t.elapsed().as_secs_f64() * 1e3;
    out.stage(&format!(
        "doorbell storm: {STORM_RINGS} rings in a burst in {:.1} ms",
        sum.storm_ms
    ));
    // QEMU drains the eventfd once for the whole burst (one MSI-X message):
    // also ring one at a time, each after QEMU consumed the previous one, so
    // the guest takes as many interrupts as we can deliver.
    let t = Instant::now();
    let mut paced = 0;
    while paced < STORM_RINGS && s.wait_consumed(0, Duration::from_millis(100))? {
        s.ring(0)?;
        paced += 1;
    }
    sum.storm_paced_rings = paced;
    sum.storm_paced_ms = t.elapsed().as_secs_f64() * 1e3;
    out.stage(&format!(
        "doorbell storm: {paced} paced rings (each consumed by QEMU before the next) in {:.1} ms",
        sum.storm_paced_ms
    ));
    Ok(())
}

/// Rewrites the page (a second mapping of `path`) with the seqlock protocol
/// for `dur`: count odd + garbage in `migration_seq`/`tai_delta_ns`/
/// `tai_delta_total_ns`/`flags`, hold, then the correct values `good` + count
/// even, hold. Returns the number of odd/even cycles written.
fn hammer(path: &Path, good: Update, dur: Duration) -> Result<u64> {
    let mut page = PageFile::open(path)?;
    let spin = |us: u64| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(us) {
            std::hint::spin_loop();
        }
    };
    let t0 = Instant::now();
    let mut n: u64 = 0;
    while t0.elapsed() < dur {
        let c = page.read_u32(host_off::SEQ_COUNT);
        let c = c.wrapping_add(c & 1); // even
        let garbage = Update {
            migration_seq: good.migration_seq.wrapping_add((1 << 40) + n),
            flags: 0xffff_ffff,
            tai_delta_ns: i64::MAX - n as i64,
            tai_delta_total_ns: i64::MIN + n as i64,
        };
        garbage.seqlocked(c, End::LeaveOdd).apply(&mut page);
        spin(HAMMER_ODD_US);
        for st in good.stores() {
            st.apply(&mut page);
        }
        page.write_barrier();
        page.write_u32(host_off::SEQ_COUNT, c.wrapping_add(2));
        page.write_barrier();
        spin(HAMMER_EVEN_US);
        n += 1;
    }
    Ok(n)
}

/// `page-hammer`: the hammer thread, started right after the page write.
pub struct Hammer(JoinHandle<Result<(u64, Duration)>>);

impl Hammer {
    /// Starts [`hammer`] on the page file at `path` for [`HAMMER_MS`].
    pub fn start(out: &dyn Reporter, path: &Path, good: Update) -> Self {
        let path = path.to_path_buf();
        out.stage(&format!("page hammer: {HAMMER_MS} ms of seqlock rewrites ({HAMMER_ODD_US} us garbage odd / {HAMMER_EVEN_US} us correct even)"));
        Self(std::thread::spawn(move || {
            let t = Instant::now();
            hammer(&path, good, Duration::from_millis(HAMMER_MS)).map(|n| (n, t.elapsed()))
        }))
    }

    /// Joins the thread; the page must be back to the update `h.page`.
    pub fn finish(self, sum: &mut SimSummary, out: &dyn Reporter, d: &Dest, h: &Hop) {
        match self.0.join() {
            Ok(Ok((n, t))) => {
                sum.hammer_cycles = n;
                sum.hammer_ms = t.as_secs_f64() * 1e3;
                out.stage(&format!("page hammer done: {n} odd/even cycles in {:.0} ms; page is back to the correct values", sum.hammer_ms));
            }
            Ok(Err(e)) => sum.problems.push(format!("page hammer: {e:#}")),
            Err(_) => sum.problems.push("page hammer thread panicked".into()),
        }
        let after = d.g.page.host_area();
        let same_but_count = HostArea {
            seq_count: h.page.seq_count,
            ..after
        } == h.page;
        if after.seq_count & 1 != 0 || !same_but_count {
            sum.problems.push(format!(
                "page after the hammer {after:?} differs from the update {:?}",
                h.page
            ));
        }
    }
}

/// After a storm or the hammer, once the guest's polls (1 s safety net in
/// doorbell mode) saw the page again: still exactly one event for the hop.
pub fn check_one_event(
    sum: &mut SimSummary,
    out: &dyn Reporter,
    d: &Dest,
    fault: BadPage,
    events_before: u64,
) {
    std::thread::sleep(Duration::from_millis(1500));
    let n = d.g.page.guest_area().map(|g| g.events);
    sum.events_before = events_before;
    sum.events_after = n;
    out.stage(&format!(
        "guest events: {events_before} before the hop, {n:?} after it settled"
    ));
    if n != Some(events_before + 1) {
        sum.problems.push(format!(
            "{:?}: guest events {events_before} -> {n:?}, expected exactly one more",
            Some(fault)
        ));
    }
}
