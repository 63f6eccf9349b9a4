// SPDX-License-Identifier: GPL-2.0

//! `demo`'s second part: a real chronyd in the guest, (a) alone against (c) with the migtime
//! module and migtime-companion, across a live migration on `-device migtime` to a host
//! whose clock is 0.5 s ahead (the device's `x-clock-offset-ns`) and runs 50 ppm faster
//! ([`crate::report::daemons`] runs them; the host's probe measures). A table of
//! guest - host at moments after the resume, and OUT/demo-chrony.png.

use plotters::chart::SeriesLabelPosition;
use plotters::style::RGBColor;
use serde::Serialize;

use crate::base::output::Reporter;
use crate::net::probe::PairSample;
use crate::report::daemons::{cases, conditions, run_case, DaemonOpts, DaemonRun};
use crate::report::opts::DemoOpts;
use crate::report::plot::{announce_png, line_plot_png, LinePlot, Series};

/// Moments after the resume the table shows, s.
const AT_S: [f64; 6] = [1.0, 5.0, 10.0, 30.0, 60.0, 100.0];

/// One row of the chrony table.
#[derive(Clone, Debug, Serialize)]
pub struct ChronyRow {
    pub run: String,
    /// guest - host at each of [`AT_S`], ms (best-paired sample within 0.5 s).
    pub at_ms: Vec<Option<f64>>,
    pub settled_s: Option<f64>,
    pub worst_ms: Option<f64>,
    /// The largest error past the new host's time, ms.
    pub overshoot_ms: Option<f64>,
    pub chrony_steps: Option<u32>,
    pub ok: bool,
}

/// guest - host `t_s` after `resume_ns`: the sample with the smallest pairing error within
/// 0.5 s of it, ms.
pub fn err_at(samples: &[PairSample], resume_ns: i64, t_s: f64) -> Option<f64> {
    let at = resume_ns + (t_s * 1e9) as i64;
    samples
        .iter()
        .filter(|s| (s.host_ns - at).abs() <= 500_000_000)
        .min_by_key(|s| s.bound_ns)
        .map(|s| s.err_ns as f64 / 1e6)
}

fn row_of(r: &DaemonRun) -> ChronyRow {
    let c = r.probe.convergence.as_ref();
    ChronyRow {
        run: r.case.title.to_string(),
        at_ms: AT_S
            .iter()
            .map(|t| {
                r.probe
                    .resume_ns
                    .and_then(|rn| err_at(&r.probe.samples, rn, *t))
            })
            .collect(),
        settled_s: c.and_then(|c| c.settled_s),
        worst_ms: c.map(|c| c.worst_ms),
        overshoot_ms: c.map(|c| c.overshoot_ms),
        chrony_steps: r.chrony_steps,
        ok: r.ok,
    }
}

/// The table (plain text, fixed width).
pub fn render(rows: &[ChronyRow]) -> String {
    let mut head = vec!["run".to_string()];
    head.extend(AT_S.iter().map(|t| format!("{t:.0} s after")));
    head.extend([
        "within 5 ms after".into(),
        "worst".into(),
        "overshoot".into(),
    ]);
    let mut cells = vec![head];
    for r in rows {
        let mut c = vec![r.run.clone()];
        c.extend(
            r.at_ms
                .iter()
                .map(|v| v.map_or("—".into(), |v| format!("{v:+.1} ms"))),
        );
        c.push(
            r.settled_s
                .map_or("not in the window".into(), |s| format!("{s:.2} s")),
        );
        c.push(r.worst_ms.map_or("?".into(), |w| format!("{w:.0} ms")));
        c.push(r.overshoot_ms.map_or("?".into(), |w| format!("{w:.1} ms")));
        cells.push(c);
    }
    crate::report::text::fixed_width(&cells)
}

/// The runs' options: on `-device migtime`, (c) held 20 s less than (a)'s window.
fn daemon_opts(o: &DemoOpts) -> DaemonOpts {
    DaemonOpts {
        kernel: o.kernel.clone(),
        initrd: o.initrd.clone(),
        blackout_ms: o.blackout_ms,
        window_s: o.chrony_window_s,
        hold_s: o.chrony_window_s.saturating_sub(20),
        memory_mb: o.memory_mb,
        device: true,
    }
}

/// Runs (a) and (c), prints the table, plots; the rows, and whether both produced numbers.
pub fn demo_chrony(o: &DemoOpts, out: &dyn Reporter) -> (Vec<ChronyRow>, bool) {
    let [alone, _, migtime] = cases();
    let cond = conditions()[1];
    let d = daemon_opts(o);
    let mut runs = Vec::new();
    for case in [alone, migtime] {
        out.stage(&format!(
            "demo run '{}': boot, chronyd synchronises, live migration with a {} ms blackout to a host {}, {} s observed (a few minutes)",
            case.title, o.blackout_ms, cond.title, o.chrony_window_s
        ));
        let dir = o.out_dir.join("runs").join(case.key);
        runs.push(run_case(&d, &case, &cond, &dir, out));
    }
    let rows: Vec<ChronyRow> = runs.iter().map(row_of).collect();
    println!();
    println!(
        "chronyd 4.3 in the guest (makestep 1 3 used up), -device migtime, {} ms blackout, destination host {}: guest - host",
        o.blackout_ms, cond.title
    );
    println!("(the host's UDP probe, pairing error about 0.3 ms; the destination's device reads its clock 0.5 s ahead:");
    println!(
        "x-clock-offset-ns, as the NTP server serves the destination host's clock from cont on)"
    );
    println!();
    print!("{}", render(&rows));
    for r in runs.iter().filter(|r| !r.ok) {
        println!("  {}: {}", r.case.title, r.problems.join("; "));
    }
    let plotted = plot(o, &runs);
    let ok = plotted && runs.iter().all(|r| r.probe.convergence.is_some());
    (rows, ok)
}

/// OUT/demo-chrony.png: guest - host over the seconds after the resume, both runs.
fn plot(o: &DemoOpts, runs: &[DaemonRun]) -> bool {
    let png = o.out_dir.join("demo-chrony.png");
    let colors = [RGBColor(200, 40, 40), RGBColor(30, 90, 200)];
    let series = runs
        .iter()
        .zip(colors)
        .filter_map(|(r, color)| {
            let rn = r.probe.resume_ns?;
            // Before the migration and after the resume: no line across the blackout.
            let pt = |s: &PairSample| ((s.host_ns - rn) as f64 / 1e9, s.err_ns as f64 / 1e6);
            let (before, after): (Vec<&PairSample>, Vec<&PairSample>) = r
                .probe
                .samples
                .iter()
                .filter(|s| s.host_ns >= rn - 8_000_000_000)
                .partition(|s| s.host_ns < rn);
            let segs = [before, after]
                .into_iter()
                .map(|v| v.into_iter().map(pt).collect())
                .collect();
            Some(Series {
                label: r.case.title.to_string(),
                color,
                segments: segs,
            })
        })
        .collect();
    let plot = LinePlot {
        title: "Guest wall clock against the new host, chronyd in the guest".into(),
        x_label: "seconds since the destination resumed".into(),
        y_label: "guest - host (ms)".into(),
        series,
        bands: Vec::new(),
        notes: vec![format!(
            "QEMU TCG, -device migtime, {} ms blackout (no samples: the gap before 0), destination +0.5 s and +50 ppm; UDP probe every 50 ms, pairing error ~0.3 ms",
            o.blackout_ms
        )],
        legend: SeriesLabelPosition::LowerRight,
    };
    announce_png(&png, line_plot_png(&png, (1100, 650), &plot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chrony_runs_are_on_the_device() {
        let o = DemoOpts {
            chrony_window_s: 120,
            ..crate::report::opts::tests::opts()
        };
        let d = daemon_opts(&o);
        assert!(d.device);
        assert_eq!((d.window_s, d.hold_s, d.blackout_ms), (120, 100, 2000));
    }

    #[test]
    fn error_at_a_moment_takes_the_best_paired_sample() {
        let s = |t_ms: i64, err_ms: i64, bound_us: i64| PairSample {
            host_ns: 10_000_000_000 + t_ms * 1_000_000,
            err_ns: err_ms * 1_000_000,
            bound_ns: bound_us * 1000,
        };
        let v = [
            s(900, -7, 2000),
            s(1000, -5, 300),
            s(1400, -4, 250),
            s(3000, 1, 100),
        ];
        assert_eq!(err_at(&v, 10_000_000_000, 1.0), Some(-4.0));
        assert_eq!(err_at(&v, 10_000_000_000, 2.0), None);
        let rows = [ChronyRow {
            run: "(c) x".into(),
            at_ms: vec![Some(-0.2), None, Some(0.1), None, None, None],
            settled_s: Some(0.07),
            worst_ms: Some(2540.0),
            overshoot_ms: Some(0.3),
            chrony_steps: Some(1),
            ok: true,
        }];
        let t = render(&rows);
        let l: Vec<&str> = t.lines().collect();
        assert_eq!(l.len(), 3);
        assert!(l[0].starts_with("run") && l[0].contains("100 s after"));
        assert!(l[2].contains("-0.2 ms") && l[2].contains("0.07 s") && l[2].contains("2540 ms"));
        assert!(l[0].contains("overshoot") && l[2].ends_with("0.3 ms"));
        assert_eq!(l[0].find('|'), l[2].find('|'));
    }
}
