// SPDX-License-Identifier: GPL-2.0

//! `demo`: live-migrate a guest twice with the same blackout, once without
//! migtime and once with it, and show what the guest's wall clock did.
//!
//! The guest runs `mt_clock`, which prints `# MIGTIME-CLOCK <realtime>
//! <monotonic>` every period. A watcher thread tails the results files of
//! every QEMU in the run folder every [`WATCH_PERIOD`] and pairs each sample
//! with the host CLOCK_REALTIME at which it read the line. The migration
//! itself is the simulator's ([`crate::sim`]); this file only watches,
//! analyses, tabulates and plots. The pieces shared with `bench` (watcher,
//! marker parsing, per-hop analysis) live here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use plotters::style::RGBColor;
use serde::Serialize;
use serde_json::Value;

use crate::boot::{realtime_ns, stage};
use crate::check::append_for;
use crate::plot::{line_plot_png, Band, LinePlot, Series};
use crate::qemu::{GuestConfig, Mode, Tail};
use crate::sim::{sim, SimOpts, SimSettings};

/// How often the watcher reads the results files.
pub const WATCH_PERIOD: Duration = Duration::from_millis(2);

// ---------------------------------------------------------------- markers

/// `# MIGTIME-CLOCK <realtime_ns> [<monotonic_ns>]` (at any indentation).
pub fn parse_clock(line: &str) -> Option<(i64, Option<i64>)> {
    let r = line
        .trim()
        .strip_prefix('#')?
        .trim_start()
        .strip_prefix("MIGTIME-CLOCK")?;
    if !r.starts_with(char::is_whitespace) {
        return None;
    }
    let mut it = r.split_whitespace();
    let rt = it.next()?.parse().ok()?;
    let mono = match it.next() {
        Some(m) => Some(m.parse().ok()?),
        None => None,
    };
    if it.next().is_some() {
        return None;
    }
    Some((rt, mono))
}

/// `# <TAG> k=v k=v...` (at any indentation) as a map; `None` if the line is
/// not that marker or a word is not `k=v`.
pub fn parse_kv(line: &str, tag: &str) -> Option<BTreeMap<String, String>> {
    let r = line
        .trim()
        .strip_prefix('#')?
        .trim_start()
        .strip_prefix(tag)?;
    if !r.is_empty() && !r.starts_with(char::is_whitespace) {
        return None;
    }
    let mut m = BTreeMap::new();
    for w in r.split_whitespace() {
        let (k, v) = w.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        m.insert(k.to_string(), v.to_string());
    }
    Some(m)
}

/// The `# MIGTIME-RESULT` line of mt_clock.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClockResult {
    pub timerfd_cancelled: bool,
    pub sta_unsync: bool,
    pub maxerror_us: i64,
    pub event: bool,
    pub outcome: u32,
    pub intended_ns: i64,
    pub applied_ns: i64,
    pub residual_ns: i64,
}

impl ClockResult {
    pub fn parse(line: &str) -> Option<Self> {
        let m = parse_kv(line, "MIGTIME-RESULT")?;
        let i = |k: &str| -> Option<i64> { m.get(k)?.parse().ok() };
        Some(Self {
            timerfd_cancelled: i("timerfd_cancelled")? != 0,
            sta_unsync: i("sta_unsync")? != 0,
            maxerror_us: i("maxerror_us").unwrap_or(0),
            event: i("event").unwrap_or(0) != 0,
            outcome: i("outcome").unwrap_or(0) as u32,
            intended_ns: i("intended_ns").unwrap_or(0),
            applied_ns: i("applied_ns").unwrap_or(0),
            residual_ns: i("residual_ns").unwrap_or(0),
        })
    }
}

/// All `# MIGTIME-RESULT` lines of a results file, in order.
pub fn results_in(path: &Path) -> Vec<ClockResult> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(ClockResult::parse)
        .collect()
}

// ---------------------------------------------------------------- watcher

/// One clock sample: the guest's clocks and the host realtime at read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// The guest (QEMU) whose results file the line was in ("a", "b", ...).
    pub guest: String,
    pub guest_rt_ns: i64,
    pub guest_mono_ns: Option<i64>,
    pub host_rt_ns: i64,
}

impl Sample {
    /// Guest minus host CLOCK_REALTIME, ns (biased low by the read latency).
    pub fn offset_ns(&self) -> i64 {
        self.guest_rt_ns - self.host_rt_ns
    }
}

/// Tails every `results-*.ktap` in a run folder on its own thread.
pub struct ClockWatch {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
}

impl ClockWatch {
    pub fn start(run_dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (st, sa, dir) = (stop.clone(), samples.clone(), run_dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut tails: BTreeMap<String, Tail> = BTreeMap::new();
            let mut last_scan: Option<Instant> = None;
            loop {
                let stopping = st.load(Ordering::Relaxed);
                if last_scan.is_none_or(|t| t.elapsed() >= Duration::from_millis(50)) || stopping {
                    last_scan = Some(Instant::now());
                    if let Ok(rd) = std::fs::read_dir(&dir) {
                        for e in rd.flatten() {
                            let n = e.file_name().to_string_lossy().to_string();
                            if let Some(g) = n
                                .strip_prefix("results-")
                                .and_then(|s| s.strip_suffix(".ktap"))
                            {
                                tails
                                    .entry(g.to_string())
                                    .or_insert_with(|| Tail::new(&e.path()));
                            }
                        }
                    }
                }
                for (g, t) in tails.iter_mut() {
                    let lines = t.poll();
                    if lines.is_empty() {
                        continue;
                    }
                    let host = realtime_ns();
                    let mut v = sa.lock().unwrap();
                    for l in lines {
                        if let Some((rt, mono)) = parse_clock(&l) {
                            v.push(Sample {
                                guest: g.clone(),
                                guest_rt_ns: rt,
                                guest_mono_ns: mono,
                                host_rt_ns: host,
                            });
                        }
                    }
                }
                if stopping {
                    break;
                }
                std::thread::sleep(WATCH_PERIOD);
            }
        });
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops the thread (after one last read) and returns every sample.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

impl Drop for ClockWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- QMP times

/// Host realtime (ns, µs resolution) of the first `event` QEMU `guest` sent,
/// from the run's QMP transcript (`t name <- {json}` lines).
pub fn qmp_event_time(qmp_log: &str, guest: &str, event: &str) -> Option<i64> {
    for l in qmp_log.lines() {
        let mut parts = l.split_whitespace();
        let (Some(_t), Some(name), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if name != guest || dir != "<-" {
            continue;
        }
        let Some(i) = l.find('{') else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&l[i..]) else {
            continue;
        };
        if v["event"] == event {
            return crate::qmp::event_time_ns(&v);
        }
    }
    None
}

// ---------------------------------------------------------------- analysis

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
    })
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
    /// RUN/summary.json as written by `sim`.
    pub summary: Value,
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
    pub ack: Option<Value>,
}

/// Runs `sim` (fresh run folder) with the clock watcher and gathers it all.
pub fn observe(o: &SimOpts) -> Observed {
    let run = o.guest.run_dir.clone();
    let _ = std::fs::remove_dir_all(&run);
    let _ = std::fs::create_dir_all(&run);
    let watch = ClockWatch::start(&run);
    let r = sim(o);
    let samples = watch.finish();
    let mut ob = Observed {
        run_dir: run.clone(),
        samples,
        ..Default::default()
    };
    match r {
        Ok(rep) => {
            ob.sim_ok = rep.ok;
            if !rep.ok {
                ob.error = Some(rep.problems.join("; "));
            }
        }
        Err(e) => ob.error = Some(format!("{e:#}")),
    }
    ob.summary = std::fs::read_to_string(run.join("summary.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let qmp = std::fs::read_to_string(run.join("qmp.log")).unwrap_or_default();
    let names = chain_names(o.settings.migrations);
    let shops = ob.summary["hops"].as_array().cloned().unwrap_or_default();
    for (i, w) in names.windows(2).enumerate() {
        let (src, dst) = (&w[0], &w[1]);
        let sh = shops.get(i);
        let clock = match (
            qmp_event_time(&qmp, src, "STOP"),
            qmp_event_time(&qmp, dst, "RESUME"),
        ) {
            (Some(s), Some(r)) => analyse_hop(&ob.samples, src, dst, s, r),
            _ => None,
        };
        let result = results_in(&run.join(format!("results-{dst}.ktap")))
            .into_iter()
            .next();
        if sh.is_none() && clock.is_none() && result.is_none() {
            break;
        }
        ob.hops.push(ObservedHop {
            src: src.clone(),
            dst: dst.clone(),
            clock,
            result,
            tout_ns: sh.and_then(|h| h["tout_ns"].as_i64()),
            ack: sh.map(|h| h["ack"].clone()).filter(|a| !a.is_null()),
        });
    }
    ob
}

// ---------------------------------------------------------------- demo

/// Options of `demo`.
#[derive(Clone, Debug)]
pub struct DemoOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub out_dir: PathBuf,
    pub blackout_ms: u64,
    pub mode: Mode,
    pub params: String,
    pub period_ms: u64,
    pub before_ms: u64,
    pub after_ms: u64,
    pub timeout: Duration,
    pub memory_mb: u32,
}

/// One demo run, as the table shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DemoRow {
    pub run: String,
    pub module_loaded: bool,
    pub change_first_ms: Option<f64>,
    pub change_settled_ms: Option<f64>,
    pub before_abs_ms: Option<f64>,
    pub after_abs_ms: Option<f64>,
    pub error_bar_ms: Option<f64>,
    pub step_applied_ns: Option<i64>,
    pub ack_latency_ms: Option<f64>,
    pub timerfd_cancelled: Option<bool>,
    pub sta_unsync: Option<bool>,
    pub tout_ns: Option<i64>,
    pub error: Option<String>,
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:+.1} ms"))
}

fn yes_no(v: Option<bool>, yes: &str, no: &str) -> String {
    v.map_or("?".into(), |b| if b { yes.into() } else { no.into() })
}

/// The demo table (plain text, fixed width).
pub fn render_table(rows: &[DemoRow]) -> String {
    let head = [
        "run",
        "offset change: first sample",
        "offset change: settled",
        "step applied",
        "cancel-on-set timer",
        "NTP state",
        "Tout written",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        cells.push(vec![
            r.run.clone(),
            fmt_ms(r.change_first_ms),
            fmt_ms(r.change_settled_ms),
            match (r.step_applied_ns, r.ack_latency_ms) {
                (Some(ns), Some(l)) => format!("{:+.3} s ({l:.0} ms after cont)", ns as f64 / 1e9),
                (Some(ns), None) => format!("{:+.3} s", ns as f64 / 1e9),
                _ => "none".into(),
            },
            yes_no(r.timerfd_cancelled, "fired", "not fired"),
            yes_no(r.sta_unsync, "STA_UNSYNC (resync)", "synced (stale)"),
            r.tout_ns
                .map_or("?".into(), |t| format!("{:.3} s", t as f64 / 1e9)),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in cells.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&sep.join("-+-"));
            out.push('\n');
        }
    }
    out
}

fn row_of(run: &str, loaded: bool, ob: &Observed) -> DemoRow {
    let h = ob.hops.first();
    let c = h.and_then(|h| h.clock.as_ref());
    let ack = h.and_then(|h| h.ack.as_ref());
    let res = h.and_then(|h| h.result.as_ref());
    DemoRow {
        run: run.into(),
        module_loaded: loaded,
        change_first_ms: c.and_then(|c| c.first_after_change_ms),
        change_settled_ms: c.and_then(|c| c.change_ms),
        before_abs_ms: c.map(|c| c.before_ms),
        after_abs_ms: c.and_then(|c| c.after_ms),
        error_bar_ms: c.map(|c| c.before_spread_ms),
        step_applied_ns: ack.and_then(|a| a["applied_ns"].as_i64()),
        ack_latency_ms: ack.and_then(|a| a["latency_ms"].as_f64()),
        timerfd_cancelled: res.map(|r| r.timerfd_cancelled),
        sta_unsync: res.map(|r| r.sta_unsync),
        tout_ns: h.and_then(|h| h.tout_ns),
        error: ob.error.clone(),
    }
}

/// Plot segments for a run, one per guest (QEMU): (host s since STOP,
/// offset change ms); and the host s of RESUME.
fn plot_points(ob: &Observed) -> Option<(Vec<Vec<(f64, f64)>>, f64)> {
    let c = ob.hops.first()?.clock.as_ref()?;
    let before = (c.before_ms * 1e6) as i64;
    let mut guests: Vec<&str> = ob.samples.iter().map(|s| s.guest.as_str()).collect();
    guests.dedup();
    let segs = guests
        .iter()
        .map(|g| {
            let mut pts: Vec<(f64, f64)> = ob
                .samples
                .iter()
                .filter(|s| s.guest == *g)
                .map(|s| {
                    (
                        (s.host_rt_ns - c.stop_ns) as f64 / 1e9,
                        (s.offset_ns() - before) as f64 / 1e6,
                    )
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts
        })
        .collect();
    Some((segs, (c.resume_ns - c.stop_ns) as f64 / 1e9))
}

/// Runs the demo; returns whether both runs produced their numbers.
pub fn demo(o: &DemoOpts) -> Result<bool> {
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("creating {}", o.out_dir.display()))?;
    let runs = [
        ("without migtime", false, "without"),
        ("with migtime", true, "with"),
    ];
    let mut rows = Vec::new();
    let mut obs = Vec::new();
    for (label, load, slug) in runs {
        stage(format!(
            "demo run '{label}': boot, mt_clock, live migration with a {} ms blackout ({} mode{})",
            o.blackout_ms,
            if o.mode == Mode::Plain {
                "polling"
            } else {
                "doorbell"
            },
            if load { "" } else { ", mt.load=0" }
        ));
        let run = mt_clock_run(1, o.period_ms, o.before_ms, o.after_ms);
        let mut extra = format!("mt.load={} mt.kunit=0", u8::from(load));
        if !load {
            extra.push_str(" mt.rmmod=0");
        }
        let guest = GuestConfig {
            kernel: o.kernel.clone(),
            initrd: o.initrd.clone(),
            append_extra: append_for(&run, if load { &o.params } else { "" }, &extra),
            mode: o.mode,
            run_dir: o.out_dir.join("runs").join(slug),
            memory_mb: o.memory_mb,
            vcpus: crate::qemu::DEFAULT_VCPUS,
        };
        let ob = observe(&SimOpts {
            scenario: format!("demo-{slug}"),
            guest,
            timeout: o.timeout,
            settings: SimSettings {
                blackout_ms: o.blackout_ms,
                migrations: 1,
                ..Default::default()
            },
            // Without the module nothing acks: do not wait long for it.
            ack_timeout: if load {
                Duration::from_secs(20)
            } else {
                Duration::from_millis(1500)
            },
        });
        if let Some(e) = &ob.error {
            stage(format!("run '{label}' reported a problem: {e}"));
        }
        rows.push(row_of(label, load, &ob));
        obs.push(ob);
    }

    println!();
    println!("migtime demo: guest wall clock vs host across a live migration ({} ms blackout, TCG, {} mode)", o.blackout_ms,
        if o.mode == Mode::Plain { "polling" } else { "doorbell" });
    println!();
    print!("{}", render_table(&rows));
    println!();
    println!("offset change = (guest - host CLOCK_REALTIME) after the migration minus the same before it: the clock");
    println!("error the migration introduced. 'first sample' is the first line the guest printed after resuming,");
    println!("'settled' the median sample 1-2 s after resume. The absolute offset before migration is arbitrary (a second");
    println!("or two): the guest sets its wall clock at boot from the CMOS RTC, which has 1 s resolution, and a TCG guest's");
    println!("clock drifts while it boots. Absolute values:");
    for r in &rows {
        println!(
            "  {:<16} before {:>10}   after {:>10}   (error bar: read latency, serial + {} ms polling: spread {})",
            r.run,
            r.before_abs_ms.map_or("?".into(), |v| format!("{v:+.1} ms")),
            r.after_abs_ms.map_or("?".into(), |v| format!("{v:+.1} ms")),
            WATCH_PERIOD.as_millis(),
            r.error_bar_ms.map_or("?".into(), |v| format!("{v:.1} ms"))
        );
    }

    if rows
        .iter()
        .any(|r| !r.module_loaded && r.sta_unsync == Some(true))
    {
        println!("note: the run without migtime reports STA_UNSYNC too: the guest kernel did not keep the synchronised");
        println!("      NTP state mt_clock set before the migration (same without any migration), so the NTP column");
        println!("      does not tell the runs apart on this guest.");
    }

    let png = o.out_dir.join("demo.png");
    let colors = [RGBColor(200, 40, 40), RGBColor(30, 90, 200)];
    let mut series = Vec::new();
    let mut blackout = None;
    for (i, ob) in obs.iter().enumerate() {
        if let Some((pts, resume_s)) = plot_points(ob) {
            blackout.get_or_insert(resume_s);
            series.push(Series {
                label: rows[i].run.clone(),
                color: colors[i % 2],
                segments: pts,
            });
        }
    }
    let plot = LinePlot {
        title: "Guest wall-clock error introduced by a live migration".into(),
        x_label: "host time since source STOP (s)".into(),
        y_label: "guest - host offset change (ms)".into(),
        series,
        bands: blackout
            .map(|r| Band {
                label: format!("VM paused ({} ms blackout + migration)", o.blackout_ms),
                from: 0.0,
                to: r,
            })
            .into_iter()
            .collect(),
        notes: vec![format!(
            "QEMU TCG, {} mode, samples every {} ms paired with the host clock when read",
            if o.mode == Mode::Plain {
                "polling"
            } else {
                "doorbell"
            },
            o.period_ms
        )],
    };
    let plotted = match line_plot_png(&png, (1100, 650), &plot) {
        Ok(()) => {
            println!();
            println!("plot: {}", png.display());
            true
        }
        Err(e) => {
            eprintln!("migtime-harness: plot failed: {e:#}");
            false
        }
    };
    let json = serde_json::json!({ "rows": rows, "runs": obs });
    std::fs::write(
        o.out_dir.join("demo.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("data: {}", o.out_dir.join("demo.json").display());
    let ok = plotted
        && rows
            .iter()
            .all(|r| r.change_settled_ms.is_some() && r.timerfd_cancelled.is_some());
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_marker_parsing() {
        assert_eq!(
            parse_clock("    # MIGTIME-CLOCK 1700000000123456789 5000"),
            Some((1_700_000_000_123_456_789, Some(5000)))
        );
        assert_eq!(parse_clock("# MIGTIME-CLOCK 12"), Some((12, None)));
        assert_eq!(parse_clock("# MIGTIME-CLOCK x 1"), None);
        assert_eq!(parse_clock("# MIGTIME-CLOCK 1 2 3"), None);
        assert_eq!(parse_clock("# MIGTIME-CLOCKS 1 2"), None);
        assert_eq!(parse_clock("ok 1 MIGTIME-CLOCK 1 2"), None);
    }

    #[test]
    fn result_marker_parsing() {
        let l = "    # MIGTIME-RESULT timerfd_cancelled=1 sta_unsync=1 maxerror_us=16000000 event=1 outcome=1 intended_ns=2613000000 applied_ns=2613000001 residual_ns=1";
        let r = ClockResult::parse(l).unwrap();
        assert!(r.timerfd_cancelled && r.sta_unsync && r.event);
        assert_eq!(
            (r.outcome, r.intended_ns, r.applied_ns, r.residual_ns),
            (1, 2_613_000_000, 2_613_000_001, 1)
        );
        let r = ClockResult::parse("# MIGTIME-RESULT timerfd_cancelled=0 sta_unsync=0 maxerror_us=1000 event=0 outcome=0 intended_ns=0 applied_ns=0 residual_ns=0").unwrap();
        assert!(!r.timerfd_cancelled && !r.sta_unsync);
        assert_eq!(
            ClockResult::parse("# MIGTIME-RESULT sta_unsync=0"),
            None,
            "timerfd_cancelled is required"
        );
        assert_eq!(
            ClockResult::parse("# MIGTIME-RESULTS timerfd_cancelled=1 sta_unsync=1"),
            None
        );
        assert!(parse_kv("# MIGTIME-IDLE seconds=60.001 garbage", "MIGTIME-IDLE").is_none());
        let m = parse_kv(
            "  # MIGTIME-IDLE seconds=60.001 wakeups_per_s=12.5 busy_pct=0.4",
            "MIGTIME-IDLE",
        )
        .unwrap();
        assert_eq!(m["wakeups_per_s"], "12.5");
    }

    #[test]
    fn qmp_transcript_event_times() {
        let log = "    0.001 a -> {\"execute\":\"qmp_capabilities\",\"id\":1}\n    \
                   3.000 a <- {\"timestamp\": {\"seconds\": 100, \"microseconds\": 5}, \"event\": \"STOP\"}\n    \
                   3.500 b <- {\"timestamp\": {\"seconds\": 102, \"microseconds\": 0}, \"event\": \"RESUME\"}\n    \
                   9.000 b <- {\"timestamp\": {\"seconds\": 200, \"microseconds\": 0}, \"event\": \"STOP\"}\n";
        assert_eq!(qmp_event_time(log, "a", "STOP"), Some(100_000_005_000));
        assert_eq!(qmp_event_time(log, "b", "STOP"), Some(200_000_000_000));
        assert_eq!(qmp_event_time(log, "b", "RESUME"), Some(102_000_000_000));
        assert_eq!(qmp_event_time(log, "a", "RESUME"), None);
    }

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
    fn chain_names_and_run_list() {
        assert_eq!(chain_names(2), vec!["a", "b", "c"]);
        assert_eq!(mt_clock_run(2, 50, 1000, 2000), "mt_clock:period_ms=50:before_ms=1000:after_ms=2000,mt_clock:period_ms=50:before_ms=1000:after_ms=2000");
    }

    #[test]
    fn table_has_a_row_per_run() {
        let r = DemoRow {
            run: "with migtime".into(),
            module_loaded: true,
            change_first_ms: Some(-2600.0),
            change_settled_ms: Some(-0.4),
            before_abs_ms: Some(300.0),
            after_abs_ms: Some(299.6),
            error_bar_ms: Some(3.0),
            step_applied_ns: Some(2_600_000_000),
            ack_latency_ms: Some(40.0),
            timerfd_cancelled: Some(true),
            sta_unsync: Some(true),
            tout_ns: Some(2_600_000_000),
            error: None,
        };
        let t = render_table(&[r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("with migtime"));
        assert!(
            lines[2].contains("-0.4 ms")
                && lines[2].contains("+2.600 s (40 ms after cont)")
                && lines[2].contains("fired")
        );
        assert_eq!(lines[0].find('|'), lines[2].find('|'), "columns aligned");
    }
}
