// SPDX-License-Identifier: GPL-2.0

//! `demo`: live-migrate a guest twice with the same blackout, once without
//! migtime and once with it, and show what the guest's wall clock did.
//!
//! The guest runs `mt_clock`, which prints `# MIGTIME-CLOCK <realtime>
//! <monotonic>` every period; the watcher (`watch.rs`) pairs each sample
//! with the host clock, `observe.rs` runs the simulator and analyses each
//! hop from its typed results. This file only tabulates and plots.

use anyhow::{Context, Result};
use plotters::chart::SeriesLabelPosition;
use plotters::style::RGBColor;
use serde::Serialize;

use crate::base::output::Reporter;
use crate::migrate::observe::{mt_clock_run, observe, Observed};
use crate::migrate::opts::{SimOpts, SimSettings};
use crate::migrate::watch::WATCH_PERIOD;
use crate::report::opts::DemoOpts;
use crate::report::plot::{line_plot_png, Band, LinePlot, Series};
use crate::report::text::fixed_width;
use crate::vm::cmdline::append_for;
use crate::vm::devices::Devices;
use crate::vm::qemu::{GuestConfig, Mode};
use std::time::Duration;

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
    fixed_width(&cells)
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
        step_applied_ns: ack.map(|a| a.area.applied_ns),
        ack_latency_ms: ack.map(|a| a.latency_ms),
        timerfd_cancelled: res.map(|r| r.timerfd_cancelled),
        sta_unsync: res.map(|r| r.sta_unsync),
        tout_ns: h.and_then(|h| h.tout_ns),
        error: ob.error.clone(),
    }
}

/// Points of one plotted line: (host s since STOP, offset change ms).
type Segment = Vec<(f64, f64)>;

/// Plot segments for a run, one per guest (QEMU); and the host s of RESUME.
fn plot_points(ob: &Observed) -> Option<(Vec<Segment>, f64)> {
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

fn mode_name(mode: Mode) -> &'static str {
    if mode == Mode::Plain {
        "polling"
    } else {
        "doorbell"
    }
}

/// One run of the demo: with or without the module.
fn run(o: &DemoOpts, out: &dyn Reporter, label: &str, load: bool, slug: &str) -> Observed {
    out.stage(&format!(
        "demo run '{label}': boot, mt_clock, live migration with a {} ms blackout ({} mode{})",
        o.blackout_ms,
        mode_name(o.mode),
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
        devices: Devices::default(),
        run_dir: o.out_dir.join("runs").join(slug),
        memory_mb: o.memory_mb,
        vcpus: crate::vm::qemu::DEFAULT_VCPUS,
    };
    let ob = observe(
        &SimOpts {
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
            network: None,
        },
        out,
    );
    if let Some(e) = &ob.error {
        out.stage(&format!("run '{label}' reported a problem: {e}"));
    }
    ob
}

/// The table and its explanation.
fn print_table(o: &DemoOpts, rows: &[DemoRow]) {
    println!();
    println!("migtime demo: guest wall clock vs host across a live migration ({} ms blackout, TCG, {} mode)", o.blackout_ms,
        mode_name(o.mode));
    println!();
    print!("{}", render_table(rows));
    println!();
    println!("offset change = (guest - host CLOCK_REALTIME) after the migration minus the same before it: the clock");
    println!("error the migration introduced. 'first sample' is the first line the guest printed after resuming,");
    println!("'settled' the median sample 1-2 s after resume. The absolute offset before migration is arbitrary (a second");
    println!("or two): the guest sets its wall clock at boot from the CMOS RTC, which has 1 s resolution, and a TCG guest's");
    println!("clock drifts while it boots. Absolute values:");
    for r in rows {
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
}

/// Plots both runs to OUT/demo.png; whether it worked.
fn plot(o: &DemoOpts, rows: &[DemoRow], obs: &[Observed]) -> bool {
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
            mode_name(o.mode),
            o.period_ms
        )],
        legend: SeriesLabelPosition::LowerLeft,
    };
    match line_plot_png(&png, (1100, 650), &plot) {
        Ok(()) => {
            println!();
            println!("plot: {}", png.display());
            true
        }
        Err(e) => {
            eprintln!("migtime-harness: plot failed: {e:#}");
            false
        }
    }
}

/// Runs the demo; returns whether both runs produced their numbers.
pub fn demo(o: &DemoOpts, out: &dyn Reporter) -> Result<bool> {
    o.validate()?;
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("creating {}", o.out_dir.display()))?;
    let runs = [
        ("without migtime", false, "without"),
        ("with migtime", true, "with"),
    ];
    let mut rows = Vec::new();
    let mut obs = Vec::new();
    for (label, load, slug) in runs {
        let ob = run(o, out, label, load, slug);
        rows.push(row_of(label, load, &ob));
        obs.push(ob);
    }
    print_table(o, &rows);
    let plotted = plot(o, &rows, &obs);
    let (chrony, chrony_ok) = if o.chrony_window_s > 0 {
        crate::report::demo_chrony::demo_chrony(o, out)
    } else {
        (Vec::new(), true)
    };
    let json = serde_json::json!({ "rows": rows, "runs": obs, "chrony": chrony });
    std::fs::write(
        o.out_dir.join("demo.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("data: {}", o.out_dir.join("demo.json").display());
    let ok = plotted
        && chrony_ok
        && rows
            .iter()
            .all(|r| r.change_settled_ms.is_some() && r.timerfd_cancelled.is_some());
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

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
