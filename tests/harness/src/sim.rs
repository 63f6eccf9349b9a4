// SPDX-License-Identifier: GPL-2.0

//! `sim`: the hypervisor simulator. Boots a source guest, live-migrates it
//! for real to a second QEMU (`-incoming defer -S`), holds the destination
//! paused for the blackout, writes the destination's page (seqlock), resumes
//! it, rings the doorbell, measures the guest's ack, and follows the guest to
//! its verdict. See `migtime-harness sim --help`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use migtime_abi::abi::{self, Outcome};
use serde::Serialize;
use serde_json::{json, Value};

use crate::boot::{print_failure, realtime_ns, shm_path, stage, tai_ns, verdict, Report};
use crate::ktap::Summary;
use crate::page::{BadPage, HostRaw, PageFile, Update};
use crate::qemu::{marker, Guest, GuestConfig, Marker, Tail};
use crate::qmp::{event_time_ns, Qmp};

/// Ten days, in nanoseconds: the `huge-delta` step.
pub const HUGE_DELTA_NS: i64 = 10 * 86_400 * 1_000_000_000;

/// Doorbell rings in the `doorbell-storm` burst.
pub const STORM_RINGS: u32 = 10_000;
/// How long `page-hammer` rewrites the page, ms.
pub const HAMMER_MS: u64 = 2000;
/// `page-hammer` phases: garbage under an odd count for this long, then the
/// correct values under an even count for as long (µs, busy-waited).
pub const HAMMER_ODD_US: u64 = 20;
pub const HAMMER_EVEN_US: u64 = 20;

/// Rewrites the page (a second mapping of `path`) with the seqlock protocol
/// for `dur`: count odd + garbage in `migration_seq`/`tai_delta_ns`/
/// `tai_delta_total_ns`/`flags`, hold, then the correct values `good` + count
/// even, hold. Returns the number of odd/even cycles written.
fn hammer(path: &std::path::Path, good: Update, dur: Duration) -> Result<u64> {
    use migtime_abi::abi::host_off;
    use std::sync::atomic::{fence, Ordering};
    let page = PageFile::open(path)?;
    let spin = |us: u64| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(us) {
            std::hint::spin_loop();
        }
    };
    let t0 = Instant::now();
    let mut n: u64 = 0;
    while t0.elapsed() < dur {
        let c = page.r32(host_off::SEQ_COUNT);
        let c = c.wrapping_add(c & 1); // even
        page.w32(host_off::SEQ_COUNT, c.wrapping_add(1));
        fence(Ordering::SeqCst);
        page.w32(host_off::FLAGS, 0xffff_ffff);
        page.w64(
            host_off::MIGRATION_SEQ,
            good.migration_seq.wrapping_add((1 << 40) + n),
        );
        page.w64(host_off::TAI_DELTA, (i64::MAX - n as i64) as u64);
        page.w64(host_off::TAI_DELTA_TOTAL, (i64::MIN + n as i64) as u64);
        fence(Ordering::SeqCst);
        spin(HAMMER_ODD_US);
        page.w32(host_off::FLAGS, good.flags);
        page.w64(host_off::MIGRATION_SEQ, good.migration_seq);
        page.w64(host_off::TAI_DELTA, good.tai_delta_ns as u64);
        page.w64(host_off::TAI_DELTA_TOTAL, good.tai_delta_total_ns as u64);
        fence(Ordering::SeqCst);
        page.w32(host_off::SEQ_COUNT, c.wrapping_add(2));
        fence(Ordering::SeqCst);
        spin(HAMMER_EVEN_US);
        n += 1;
    }
    Ok(n)
}

/// What the guest is expected to have written in its ack area (last hop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectOutcome {
    Stepped,
    Notified,
    RefusedSeqBackwards,
    RefusedOverLimit,
    RefusedInconsistent,
    /// No ack at all (module not bound, page unreadable, no migration).
    None,
}

impl ExpectOutcome {
    fn matches(self, o: Option<u32>) -> bool {
        let want = match self {
            Self::Stepped => Outcome::Stepped,
            Self::Notified => Outcome::Notified,
            Self::RefusedSeqBackwards => Outcome::RefusedSeqBackwards,
            Self::RefusedOverLimit => Outcome::RefusedOverLimit,
            Self::RefusedInconsistent => Outcome::RefusedInconsistent,
            Self::None => return o.is_none(),
        };
        o == Some(want as u32)
    }
}

/// What a migration run does to the guest: the scenario part of [`SimOpts`],
/// also what a row of the `check` table sets (the rest: defaults).
#[derive(Clone, Debug, Default)]
pub struct SimSettings {
    pub blackout_ms: u64,
    pub skew_ns: i64,
    pub compensated: bool,
    /// Migrations in the chain (0 is taken as 1).
    pub migrations: u32,
    pub no_guest_run_between: bool,
    pub cancel: bool,
    pub bad_page: Option<BadPage>,
    /// The outcome the guest must ack.
    pub expect: Option<ExpectOutcome>,
}

/// Options of `sim`.
#[derive(Clone, Debug)]
pub struct SimOpts {
    pub scenario: String,
    pub guest: GuestConfig,
    pub timeout: Duration,
    pub settings: SimSettings,
    /// How long to wait for the guest's ack after `cont`.
    pub ack_timeout: Duration,
}

/// The guest ack area, for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ack {
    pub outcome: String,
    pub outcome_raw: u32,
    pub ack_seq: u64,
    pub intended_ns: i64,
    pub applied_ns: i64,
    pub applied_total_ns: i64,
    pub ack_realtime_ns: i64,
    pub events: u64,
    /// Host time from `cont` returning to the ack being seen (1 ms polling).
    pub latency_ms: f64,
    /// Host CLOCK_REALTIME minus the guest's ack_realtime_ns, at detection
    /// (error bar: +0..1 ms polling, plus the guest's write-to-visible time).
    pub host_minus_guest_ns: i64,
}

/// One migration hop, for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Hop {
    pub from: String,
    pub to: String,
    /// `migrate` issued → MIGRATION completed on the source (host ms).
    pub migration_ms: f64,
    /// QEMU's own downtime figure (query-migrate), ms.
    pub downtime_ms: Option<f64>,
    pub blackout_ms: u64,
    /// Tout written (includes skew), ns; 0 if compensated.
    pub tout_ns: i64,
    /// Guest clock frozen → page written (host TAI), ns, before skew.
    pub frozen_ns: i64,
    /// RESUME event time minus the host time Tout was read at (the part of
    /// the freeze Tout does not cover), ns (µs resolution).
    pub resume_after_write_ns: Option<i64>,
    pub page: HostRaw,
    pub resumed: bool,
    pub ack: Option<Ack>,
    /// Host minus guest CLOCK_REALTIME before this hop, from the guest's last
    /// `# MIGTIME-CLOCK` marker (error bar: serial + 20 ms polling).
    pub host_minus_guest_before_ns: Option<i64>,
}

/// `RUN/summary.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimSummary {
    pub scenario: String,
    pub mode: String,
    pub ok: bool,
    pub problems: Vec<String>,
    pub boot_s: Option<f64>,
    pub hops: Vec<Hop>,
    pub cancelled: bool,
    /// dest-killed: the destination was killed and the source resumed.
    pub dest_killed: bool,
    /// doorbell-storm: rings sent in the burst and how long it took, ms.
    pub storm_rings: u32,
    pub storm_ms: f64,
    /// doorbell-storm: rings sent one at a time (each after QEMU consumed the previous), ms.
    pub storm_paced_rings: u32,
    pub storm_paced_ms: f64,
    /// page-hammer: odd/even write cycles and how long, ms.
    pub hammer_cycles: u64,
    pub hammer_ms: f64,
    /// storm/hammer: guest `events` before the hop and once things settled.
    pub events_before: u64,
    pub events_after: Option<u64>,
    /// publish-storm: what the host published after the migration.
    pub publish_storm: Option<crate::storm::StormReport>,
    pub tai_delta_total_ns: i64,
    pub outcome: Option<String>,
    pub expect_outcome: Option<ExpectOutcome>,
    pub done_status: Option<i64>,
    pub exit_status: Option<i32>,
    pub ktap: Summary,
    pub run_dir: PathBuf,
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let now = Instant::now();
    if now >= deadline {
        bail!("overall --timeout reached");
    }
    Ok(deadline - now)
}

enum Wait {
    Ready(String),
    Done(i64),
}

/// Follows `tail` until a READY or DONE marker (or QEMU exits).
fn wait_marker(
    g: &mut Guest,
    tail: &mut Tail,
    deadline: Instant,
    clock: &mut Option<i64>,
    boot: &mut Option<f64>,
) -> Result<Wait> {
    loop {
        while let Some(l) = tail.next_line() {
            if boot.is_none() {
                *boot = Some(g.started.elapsed().as_secs_f64());
                stage(format!(
                    "guest {} up: first results line after {:.2} s",
                    g.name,
                    boot.unwrap()
                ));
            }
            match marker(&l) {
                Some(Marker::Ready(s)) => return Ok(Wait::Ready(s)),
                Some(Marker::Done(st)) => return Ok(Wait::Done(st)),
                Some(Marker::Clock(guest_ns)) => *clock = Some(realtime_ns() - guest_ns),
                None => {}
            }
        }
        if let Some(st) = g.try_exit()? {
            tail.poll();
            bail!(
                "QEMU {} exited ({st}) before the guest reported READY/DONE",
                g.name
            );
        }
        if Instant::now() >= deadline {
            bail!("timeout waiting for a marker from guest {}", g.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ack_of(g: &abi::GuestArea, latency: Duration) -> Ack {
    Ack {
        outcome: Outcome::from_u32(g.outcome).map_or_else(
            || format!("unknown({})", g.outcome),
            |o| o.name().to_string(),
        ),
        outcome_raw: g.outcome,
        ack_seq: g.ack_seq,
        intended_ns: g.intended_ns,
        applied_ns: g.applied_ns,
        applied_total_ns: g.applied_total_ns,
        ack_realtime_ns: g.ack_realtime_ns,
        events: g.events,
        latency_ms: latency.as_secs_f64() * 1e3,
        host_minus_guest_ns: realtime_ns() - g.ack_realtime_ns,
    }
}

/// Polls the guest area until `events` moves past `events_before`.
fn wait_ack(
    page: &PageFile,
    events_before: u64,
    t_cont: Instant,
    timeout: Duration,
) -> Option<Ack> {
    let deadline = t_cont + timeout;
    loop {
        if let Some(g) = page.guest_area() {
            if g.events > events_before {
                return Some(ack_of(&g, t_cont.elapsed()));
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn query_migrate(q: &mut Qmp) -> Value {
    q.execute("query-migrate", None, Duration::from_secs(5))
        .unwrap_or(Value::Null)
}

/// Starts guest `name` (source or incoming destination) and its QMP.
fn start(
    cfg: &GuestConfig,
    name: &str,
    page: PageFile,
    incoming: bool,
    deadline: Instant,
) -> Result<(Guest, Qmp)> {
    let mut g = Guest::start(cfg, name, page, incoming)?;
    let q = Qmp::connect(
        &g.qmp_sock,
        name,
        Some(&cfg.run_dir.join("qmp.log")),
        remaining(deadline)?.min(Duration::from_secs(15)),
    );
    let mut q = match q {
        Ok(q) => q,
        Err(e) => {
            let _ = g.try_exit();
            return Err(e)
                .with_context(|| format!("QEMU {name}: {}", g.stderr_text(&cfg.run_dir).trim()));
        }
    };
    q.enable_migration_events(Duration::from_secs(5))?;
    if let Some(s) = &g.server {
        // QEMU's realize waits for the setup messages, so by now it is connected.
        let t = Instant::now();
        while !s.client_connected() && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !s.client_connected() {
            bail!("QEMU {name} is up but never connected to its ivshmem server");
        }
    }
    Ok((g, q))
}

/// Runs the simulator; see the module doc.
pub fn sim(o: &SimOpts) -> Result<Report> {
    let run = o.guest.run_dir.clone();
    std::fs::create_dir_all(&run)
        .with_context(|| format!("creating run folder {}", run.display()))?;
    let mut sum = SimSummary {
        scenario: o.scenario.clone(),
        mode: format!("{:?}", o.guest.mode).to_lowercase(),
        expect_outcome: o.settings.expect,
        run_dir: run.clone(),
        ..Default::default()
    };
    let mut names: Vec<String> = vec!["a".into()];
    let result = sim_inner(o, &mut sum, &mut names);
    let mut problems = sum.problems.clone();
    if let Err(e) = &result {
        problems.push(format!("{e:#}"));
    }
    let results: Vec<PathBuf> = names
        .iter()
        .map(|n| run.join(format!("results-{n}.ktap")))
        .collect();
    let refs: Vec<&std::path::Path> = results.iter().map(|p| p.as_path()).collect();
    let mut report = verdict(&run, &refs, sum.exit_status, sum.done_status, problems);
    sum.ok = report.ok;
    sum.problems = report.problems.clone();
    sum.ktap = report.ktap.clone();
    std::fs::write(
        run.join("summary.json"),
        serde_json::to_string_pretty(&sum)?,
    )?;
    report.run_dir = run.clone();
    if !report.ok {
        let ns: Vec<&str> = names.iter().map(String::as_str).collect();
        print_failure(&run, &ns, &report.problems);
    } else {
        stage(format!("summary: {}", run.join("summary.json").display()));
    }
    Ok(report)
}

fn sim_inner(o: &SimOpts, sum: &mut SimSummary, names: &mut Vec<String>) -> Result<()> {
    let deadline = Instant::now() + o.timeout;
    let cfg = &o.guest;
    let run = &cfg.run_dir;
    let hops_total = if o.settings.no_guest_run_between {
        2
    } else {
        o.settings.migrations.max(1)
    };
    if o.settings.cancel && o.settings.no_guest_run_between {
        bail!("--cancel and --no-guest-run-between do not combine");
    }
    let fault = o.settings.bad_page.filter(|k| k.is_fault());
    if fault.is_some() && (o.settings.cancel || o.settings.no_guest_run_between) {
        bail!("fault kinds of --bad-page do not combine with --cancel or --no-guest-run-between");
    }
    if fault == Some(BadPage::DoorbellStorm) && cfg.mode != crate::qemu::Mode::Doorbell {
        bail!("--bad-page doorbell-storm needs --mode doorbell");
    }
    if fault == Some(BadPage::PublishStorm) && cfg.mode != crate::qemu::Mode::Doorbell {
        bail!("--bad-page publish-storm needs --mode doorbell");
    }

    // The source page: valid, or with the header corrupted before boot.
    let src_page = PageFile::create(&shm_path("a"))?;
    src_page.init_valid(if o.settings.bad_page == Some(BadPage::SeqBackwards) {
        5
    } else {
        0
    });
    if let Some(k) = o.settings.bad_page.filter(|k| k.is_header()) {
        src_page.write_bad_header(k)?;
        stage(format!("source page header corrupted before boot: {k:?}"));
    }
    stage(format!(
        "starting source a ({}, {:?} mode)",
        crate::qemu::accel(),
        cfg.mode
    ));
    let (mut cur, mut cur_q) = start(cfg, "a", src_page, false, deadline)?;
    stage("source up");
    let mut tail = Tail::new(&cur.results);
    let mut clock: Option<i64> = None;
    let mut boot: Option<f64> = None;
    // Host TAI at which the guest's clock froze (source STOP), for Tout.
    let mut frozen_at: i64 = 0;
    let mut src_running = true;
    let mut last_ack: Option<Ack> = None;
    // The page total the guest is in step with (the policy's baseline).
    let mut baseline_total: i64 = 0;

    for hop in 0..hops_total {
        let last = hop + 1 == hops_total;
        if src_running {
            match wait_marker(&mut cur, &mut tail, deadline, &mut clock, &mut boot)? {
                Wait::Ready(s) => stage(format!("guest ready: {s}")),
                Wait::Done(st) => {
                    sum.boot_s = boot;
                    sum.done_status = Some(st);
                    if hop == 0 && o.settings.bad_page.is_some_and(|k| k.is_header()) {
                        stage("guest finished without asking to migrate (bad header: nothing to migrate)");
                        let st = cur.wait_exit(remaining(deadline)?)?;
                        sum.exit_status = st.code();
                        check_expect(o, sum, None);
                        return Ok(());
                    }
                    bail!(
                        "guest finished (MIGTIME-DONE {st}) before asking for migration {}",
                        hop + 1
                    );
                }
            }
        }
        sum.boot_s = boot;
        let dname = ((b'a' + hop as u8 + 1) as char).to_string();
        let dpage = PageFile::create(&shm_path(&dname))?;
        let (mut dst, mut dst_q) = start(cfg, &dname, dpage, true, deadline)?;
        names.push(dname.clone());
        let uri = format!("unix:{}", run.join(format!("mig-{dname}.sock")).display());
        dst_q.execute(
            "migrate-incoming",
            Some(json!({ "uri": uri })),
            Duration::from_secs(10),
        )?;
        let mut h = Hop {
            from: cur.name.clone(),
            to: dname.clone(),
            host_minus_guest_before_ns: clock,
            ..Default::default()
        };

        if o.settings.cancel {
            let before = cur.page.host_raw();
            cur_q.execute(
                "migrate-set-parameters",
                Some(json!({ "max-bandwidth": 1u64 << 20 })),
                Duration::from_secs(5),
            )?;
            stage(format!(
                "migrating {} -> {dname} at 1 MiB/s, to cancel it",
                cur.name
            ));
            cur_q.execute(
                "migrate",
                Some(json!({ "uri": uri })),
                Duration::from_secs(10),
            )?;
            cur_q.wait_migration(&["active"], remaining(deadline)?)?;
            std::thread::sleep(Duration::from_millis(500));
            cur_q.execute("migrate_cancel", None, Duration::from_secs(5))?;
            let ev = cur_q
                .wait_migration(&["cancelled", "completed", "failed"], remaining(deadline)?)?;
            if ev["data"]["status"] != "cancelled" {
                bail!("migration was not cancelled: {}", ev["data"]["status"]);
            }
            let st = cur_q.execute("query-status", None, Duration::from_secs(5))?;
            if st["running"] != true {
                sum.problems
                    .push(format!("source not running after cancel: {st}"));
            }
            let after = cur.page.host_raw();
            if after != before {
                sum.problems.push(format!(
                    "source page changed by a cancelled migration: {before:?} -> {after:?}"
                ));
            }
            stage(format!(
                "migration cancelled; source running ({}), page unchanged (seq {})",
                st["status"], after.migration_seq
            ));
            sum.cancelled = true;
            h.page = after;
            sum.hops.push(h);
            dst.kill();
            names.pop();
            drop(dst);
            let _ = std::fs::remove_file(run.join(format!("results-{dname}.ktap")));
            break;
        }

        stage(format!("migrating {} -> {dname}", cur.name));
        let t_mig = Instant::now();
        cur_q.execute(
            "migrate",
            Some(json!({ "uri": uri })),
            Duration::from_secs(10),
        )?;
        if src_running {
            let ev = cur_q.wait_named("STOP", remaining(deadline)?)?;
            let rt = event_time_ns(&ev).unwrap_or_else(realtime_ns);
            frozen_at = rt + (tai_ns() - realtime_ns());
        }
        let ev =
            cur_q.wait_migration(&["completed", "failed", "cancelled"], remaining(deadline)?)?;
        if ev["data"]["status"] != "completed" {
            let info = query_migrate(&mut cur_q);
            bail!(
                "migration {} -> {dname} {}: {}",
                cur.name,
                ev["data"]["status"],
                info["error-desc"]
            );
        }
        h.migration_ms = t_mig.elapsed().as_secs_f64() * 1e3;
        dst_q.wait_migration(&["completed", "failed"], remaining(deadline)?)?;
        let info = query_migrate(&mut cur_q);
        h.downtime_ms = info["downtime"].as_f64();
        stage(format!(
            "migration completed in {:.0} ms (QEMU downtime {} ms)",
            h.migration_ms,
            h.downtime_ms.map_or("?".into(), |d| d.to_string())
        ));

        // The destination page now holds the migrated content.
        let src_before = cur.page.host_raw();
        let old = dst.page.host_raw();
        if old != src_before {
            sum.problems.push(format!("destination page differs from the source after migration: {src_before:?} vs {old:?}"));
        }
        let events_before = dst.page.guest_area().map_or(0, |g| g.events);

        if fault == Some(BadPage::DestKilled) && last {
            if o.settings.blackout_ms > 0 {
                std::thread::sleep(Duration::from_millis(o.settings.blackout_ms));
                h.blackout_ms = o.settings.blackout_ms;
            }
            let pid = dst.child.as_ref().map(|c| c.id());
            dst.kill(); // Child::kill: SIGKILL
            stage(format!(
                "dest {dname} (pid {pid:?}) killed with SIGKILL before cont: {:?}",
                dst.exit
            ));
            names.pop();
            drop(dst);
            let _ = std::fs::remove_file(run.join(format!("results-{dname}.ktap")));
            let st = cur_q.execute("query-status", None, Duration::from_secs(5))?;
            stage(format!(
                "source {} status after completed migration: {}",
                cur.name, st["status"]
            ));
            cur_q
                .execute("cont", None, Duration::from_secs(10))
                .context("cont on the source after a completed migration")?;
            cur_q.wait_named("RESUME", remaining(deadline)?)?;
            let st = cur_q.execute("query-status", None, Duration::from_secs(5))?;
            if st["running"] != true {
                sum.problems
                    .push(format!("source not running after cont: {st}"));
            }
            let after = cur.page.host_raw();
            if after != src_before {
                sum.problems
                    .push(format!("source page changed: {src_before:?} -> {after:?}"));
            }
            stage(format!(
                "source {} resumed ({}), its page unchanged (seq {})",
                cur.name, st["status"], after.migration_seq
            ));
            sum.dest_killed = true;
            h.page = after;
            sum.hops.push(h);
            break;
        }
        if !o.settings.compensated
            && o.settings.blackout_ms > 0
            && !(o.settings.no_guest_run_between && hop == 1)
        {
            stage(format!("blackout {} ms", o.settings.blackout_ms));
            std::thread::sleep(Duration::from_millis(o.settings.blackout_ms));
            h.blackout_ms = o.settings.blackout_ms;
        }
        let now = tai_ns();
        let now_rt = realtime_ns();
        h.frozen_ns = now - frozen_at;
        let tout = h.frozen_ns + o.settings.skew_ns;
        let mut u = if o.settings.compensated {
            Update {
                migration_seq: old.migration_seq + 1,
                flags: (old.flags & !abi::FLAGS_KNOWN) | abi::FLAG_COMPENSATED,
                tai_delta_ns: 0,
                tai_delta_total_ns: old.tai_delta_total_ns,
                leave_odd: false,
            }
        } else {
            Update {
                migration_seq: old.migration_seq + 1,
                flags: old.flags & !abi::FLAG_COMPENSATED,
                tai_delta_ns: tout,
                tai_delta_total_ns: old.tai_delta_total_ns + tout,
                leave_odd: false,
            }
        };
        match o.settings.bad_page {
            Some(BadPage::StuckOdd) if last => u.leave_odd = true,
            Some(BadPage::SeqBackwards) if last => {
                u.migration_seq = old.migration_seq.saturating_sub(1)
            }
            Some(BadPage::HugeDelta) if last => {
                u.flags &= !abi::FLAG_COMPENSATED;
                u.tai_delta_ns = HUGE_DELTA_NS;
                u.tai_delta_total_ns = old.tai_delta_total_ns + HUGE_DELTA_NS;
            }
            _ => {}
        }
        dst.page.write_update(&u);
        let hammer_thread = if fault == Some(BadPage::PageHammer) && last {
            let (path, good) = (dst.page.path().to_path_buf(), u);
            stage(format!("page hammer: {HAMMER_MS} ms of seqlock rewrites ({HAMMER_ODD_US} us garbage odd / {HAMMER_EVEN_US} us correct even)"));
            Some(std::thread::spawn(move || {
                let t = Instant::now();
                hammer(&path, good, Duration::from_millis(HAMMER_MS)).map(|n| (n, t.elapsed()))
            }))
        } else {
            None
        };
        h.tout_ns = u.tai_delta_ns;
        h.page = dst.page.host_raw();
        sum.tai_delta_total_ns = h.page.tai_delta_total_ns;
        frozen_at = now; // a destination that does not run stays frozen from here
        stage(format!(
            "page written: seq {}, delta {} ns ({:.3} s), total {} ns, flags {:#x}, seq_count {}{}",
            u.migration_seq,
            u.tai_delta_ns,
            u.tai_delta_ns as f64 / 1e9,
            u.tai_delta_total_ns,
            u.flags,
            h.page.seq_count,
            if u.leave_odd { " (left odd)" } else { "" }
        ));

        let resume = !(o.settings.no_guest_run_between && hop == 0);
        let mut t_cont = Instant::now();
        if resume {
            dst_q.execute("cont", None, Duration::from_secs(10))?;
            t_cont = Instant::now();
            let ev = dst_q.wait_named("RESUME", remaining(deadline)?)?;
            h.resume_after_write_ns = event_time_ns(&ev).map(|t| t - now_rt);
            h.resumed = true;
            stage(format!("dest {dname} resumed"));
            if let Some(s) = &dst.server {
                s.ring(0)?;
                stage("doorbell rung (vector 0)");
                if fault == Some(BadPage::DoorbellStorm) && last {
                    let t = Instant::now();
                    for _ in 0..STORM_RINGS {
                        s.ring(0)?;
                    }
                    sum.storm_rings = STORM_RINGS;
                    sum.storm_ms = t.elapsed().as_secs_f64() * 1e3;
                    stage(format!(
                        "doorbell storm: {STORM_RINGS} rings in a burst in {:.1} ms",
                        sum.storm_ms
                    ));
                    // QEMU drains the eventfd once for the whole burst (one
                    // MSI-X message): also ring one at a time, each after QEMU
                    // consumed the previous one, so the guest takes as many
                    // interrupts as we can deliver.
                    let t = Instant::now();
                    let mut paced = 0;
                    while paced < STORM_RINGS && s.wait_consumed(0, Duration::from_millis(100))? {
                        s.ring(0)?;
                        paced += 1;
                    }
                    sum.storm_paced_rings = paced;
                    sum.storm_paced_ms = t.elapsed().as_secs_f64() * 1e3;
                    stage(format!("doorbell storm: {paced} paced rings (each consumed by QEMU before the next) in {:.1} ms", sum.storm_paced_ms));
                }
            }
        } else {
            stage(format!(
                "dest {dname} kept paused: migrating again before the guest runs"
            ));
        }

        if resume {
            let ack_timeout = if u.leave_odd {
                o.ack_timeout.min(Duration::from_secs(3))
            } else {
                o.ack_timeout
            };
            match wait_ack(&dst.page, events_before, t_cont, ack_timeout) {
                Some(a) => {
                    stage(format!(
                        "guest acked after {:.1} ms: {} (seq {}, intended {} ns, applied {} ns, host-guest {:.3} ms)",
                        a.latency_ms,
                        a.outcome,
                        a.ack_seq,
                        a.intended_ns,
                        a.applied_ns,
                        a.host_minus_guest_ns as f64 / 1e6
                    ));
                    // Host-side checks of the ack against the page we wrote.
                    let pending = h.page.tai_delta_total_ns - baseline_total;
                    if a.ack_seq != u.migration_seq {
                        sum.problems.push(format!(
                            "hop {}: guest acked seq {}, page seq is {}",
                            hop + 1,
                            a.ack_seq,
                            u.migration_seq
                        ));
                    }
                    let acted = a.outcome_raw == Outcome::Stepped as u32
                        || a.outcome_raw == Outcome::Notified as u32;
                    if acted && a.intended_ns != pending {
                        sum.problems.push(format!(
                            "hop {}: guest intended {} ns, pending total is {pending} ns",
                            hop + 1,
                            a.intended_ns
                        ));
                    }
                    if let Some(e) = o
                        .settings
                        .expect
                        .filter(|e| *e != ExpectOutcome::None && !last)
                    {
                        if !e.matches(Some(a.outcome_raw)) {
                            sum.problems.push(format!(
                                "hop {}: expected guest outcome {e:?}, got {}",
                                hop + 1,
                                a.outcome
                            ));
                        }
                    }
                    baseline_total = h.page.tai_delta_total_ns;
                    h.ack = Some(a.clone());
                    last_ack = Some(a);
                }
                None => {
                    stage(format!(
                        "no guest ack within {:.1} s",
                        ack_timeout.as_secs_f64()
                    ));
                    if o.settings.expect.is_some_and(|e| e != ExpectOutcome::None) && !last {
                        sum.problems.push(format!("hop {}: no guest ack", hop + 1));
                    }
                    last_ack = None;
                }
            }
        }
        if let Some(t) = hammer_thread {
            match t.join() {
                Ok(Ok((n, d))) => {
                    sum.hammer_cycles = n;
                    sum.hammer_ms = d.as_secs_f64() * 1e3;
                    stage(format!("page hammer done: {n} odd/even cycles in {:.0} ms; page is back to the correct values", sum.hammer_ms));
                }
                Ok(Err(e)) => sum.problems.push(format!("page hammer: {e:#}")),
                Err(_) => sum.problems.push("page hammer thread panicked".into()),
            }
            let end = dst.page.host_raw();
            if end.seq_count & 1 != 0
                || (HostRaw {
                    seq_count: h.page.seq_count,
                    ..end
                }) != h.page
            {
                sum.problems.push(format!(
                    "page after the hammer {end:?} differs from the update {:?}",
                    h.page
                ));
            }
        }
        if let (Some(BadPage::PublishStorm), true, Some(s)) = (fault, last, &dst.server) {
            let r = crate::storm::publish(&dst.page, s)?;
            stage(format!(
                "publish storm: {} updates (seq {}..={}, bursts of {} rung each, {} ms apart) in {:.0} ms; total {} -> {} ns",
                r.updates,
                r.first_seq,
                r.last_seq,
                crate::storm::BURST,
                crate::storm::GAP_MS,
                r.ms,
                r.total_before_ns,
                r.total_after_ns
            ));
            let p = crate::storm::check_settled(&dst.page, &r, Duration::from_secs(60));
            stage(format!(
                "publish storm: guest area after settling: {:?}{}",
                dst.page.guest_area(),
                if p.is_empty() { "" } else { " (problems)" }
            ));
            sum.problems.extend(p);
            sum.tai_delta_total_ns = r.total_after_ns;
            sum.publish_storm = Some(r);
        }
        if matches!(fault, Some(BadPage::DoorbellStorm | BadPage::PageHammer)) && last {
            // Let the guest's polls (1 s safety net in doorbell mode) see the
            // page again: still exactly one event for this hop.
            std::thread::sleep(Duration::from_millis(1500));
            let n = dst.page.guest_area().map(|g| g.events);
            sum.events_before = events_before;
            sum.events_after = n;
            stage(format!(
                "guest events: {events_before} before the hop, {n:?} after it settled"
            ));
            if n != Some(events_before + 1) {
                sum.problems.push(format!(
                    "{fault:?}: guest events {events_before} -> {n:?}, expected exactly one more"
                ));
            }
        }
        // The source is done (postmigrate, paused): quit it, after the ack
        // polling so that it does not delay the ack measurement.
        let _ = cur_q.execute("quit", None, Duration::from_secs(5));
        if let Err(e) = cur.wait_exit(Duration::from_secs(10)) {
            sum.problems.push(format!("{e:#}"));
        }
        let _ = std::fs::write(
            run.join(format!("page-{}.bin", cur.name)),
            cur.page.page_bytes(),
        );
        sum.hops.push(h);
        cur = dst;
        cur_q = dst_q;
        tail = Tail::new(&cur.results);
        src_running = resume;
        clock = None;
    }

    // Follow the (last) guest to its verdict.
    loop {
        match wait_marker(&mut cur, &mut tail, deadline, &mut clock, &mut boot) {
            Ok(Wait::Done(st)) => {
                sum.done_status = Some(st);
                break;
            }
            Ok(Wait::Ready(s)) => {
                sum.problems.push(format!(
                    "guest asked for another migration ({s}) after the last one"
                ));
            }
            Err(e) => {
                cur.kill();
                return Err(e);
            }
        }
    }
    stage(format!(
        "guest {} done: MIGTIME-DONE {}",
        cur.name,
        sum.done_status.unwrap_or(-1)
    ));
    let st = cur.wait_exit(
        remaining(deadline)
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(30)),
    )?;
    sum.exit_status = st.code();
    let _ = std::fs::write(
        run.join(format!("page-{}.bin", cur.name)),
        cur.page.page_bytes(),
    );
    if !sum.cancelled {
        let final_guest = cur.page.guest_area();
        if let Some(g) = final_guest {
            sum.outcome = Outcome::from_u32(g.outcome).map(|o| o.name().to_string());
        }
    }
    let outcome = if sum.cancelled || sum.dest_killed {
        None
    } else {
        last_ack.as_ref().map(|a| a.outcome_raw)
    };
    check_expect(o, sum, outcome);
    Ok(())
}

fn check_expect(o: &SimOpts, sum: &mut SimSummary, outcome: Option<u32>) {
    if let Some(e) = o.settings.expect {
        if !e.matches(outcome) {
            let got = outcome.map_or("no ack".to_string(), |v| {
                Outcome::from_u32(v).map_or(v.to_string(), |o| o.name().into())
            });
            sum.problems.push(format!(
                "host check: expected guest outcome {e:?}, got {got}"
            ));
        }
    }
}
