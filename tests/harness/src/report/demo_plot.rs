// SPDX-License-Identifier: GPL-2.0

//! `demo`'s plot, OUT/demo.png: the guest's offset change over host time, one panel for
//! the live migration and one for the file restore, each without and with migtime.

use plotters::chart::SeriesLabelPosition;
use plotters::style::RGBColor;

use crate::migrate::observe::Observed;
use crate::report::demo_table::{DemoRow, RUNS};
use crate::report::opts::DemoOpts;
use crate::report::plot::{announce_png, line_plots_png, Band, LinePlot, Series, BAND_COLOR};

/// Points of one plotted line: (host s since STOP, offset change ms).
type Segment = Vec<(f64, f64)>;

/// Plot segments for a run, one per guest (QEMU); and the host s of RESUME.
pub fn plot_points(ob: &Observed) -> Option<(Vec<Segment>, f64)> {
    let c = ob.hops.first()?.clock.as_ref()?;
    let before = (c.before_ms * 1e6) as i64;
    let mut guests: Vec<&str> = ob.samples.iter().map(|s| s.guest.as_str()).collect();
    guests.sort_unstable();
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

/// One panel: the runs of one kind (`restore` or live), without and with migtime, and a band
/// for the time the VMs stood still: up to the earlier resume, labelled with each run's
/// (saving and loading take varying time, so the runs resume apart).
fn panel(o: &DemoOpts, rows: &[DemoRow], obs: &[Observed], restore: bool) -> LinePlot {
    let colors = [RGBColor(200, 40, 40), RGBColor(30, 90, 200)];
    let (mut series, mut stood) = (Vec::new(), Vec::new());
    let runs = RUNS.iter().zip(rows).zip(obs);
    for ((_, row), ob) in runs.filter(|((r, _), _)| r.restore == restore) {
        if let Some((pts, resume_s)) = plot_points(ob) {
            let who = if row.module_loaded { "with" } else { "without" };
            stood.push((resume_s, format!("{resume_s:.1} s {who}")));
            series.push(Series {
                label: row.run.clone(),
                color: colors[usize::from(row.module_loaded)],
                segments: pts,
            });
        }
    }
    let what = if restore { "stopped" } else { "paused" };
    let bands = stood
        .iter()
        .map(|s| s.0)
        .min_by(f64::total_cmp)
        .map(|to| Band {
            label: format!(
                "VM {what} ({})",
                stood
                    .iter()
                    .map(|s| s.1.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            from: 0.0,
            to,
            color: BAND_COLOR,
        })
        .into_iter()
        .collect();
    let title = if restore {
        format!(
            "File restore: stop, migrate file:, quit; a new QEMU loads it {} s later",
            o.restore_pause_ms as f64 / 1e3
        )
    } else {
        format!(
            "Live migration, destination held paused {} ms",
            o.blackout_ms
        )
    };
    LinePlot {
        title,
        x_label: "host time since the source stopped (s)".into(),
        y_label: "guest - host offset change (ms)".into(),
        series,
        bands,
        notes: vec![format!(
            "QEMU -device migtime on both sides (TCG); guest samples every {} ms paired with the host clock when read",
            o.period_ms
        )],
        legend: SeriesLabelPosition::LowerLeft,
    }
}

/// Plots both kinds to OUT/demo.png; whether it worked.
pub fn plot(o: &DemoOpts, rows: &[DemoRow], obs: &[Observed]) -> bool {
    let png = o.out_dir.join("demo.png");
    let panels = [panel(o, rows, obs, false), panel(o, rows, obs, true)];
    // A blank line after the table, before the plot's path.
    let written = line_plots_png(&png, (1100, 560), &panels).map(|()| println!());
    announce_png(&png, written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::observe::{HopClock, ObservedHop};
    use crate::migrate::watch::Sample;
    use crate::report::demo_table::row_of;

    fn s(g: &str, guest_ms: i64, host_ms: i64) -> Sample {
        Sample {
            guest: g.into(),
            guest_rt_ns: guest_ms * 1_000_000,
            guest_mono_ns: None,
            host_rt_ns: host_ms * 1_000_000,
        }
    }

    /// A run stopped at 10 s for `stood_ms`, 300 ms ahead of the host before.
    fn observed(stood_ms: i64) -> Observed {
        Observed {
            hops: vec![ObservedHop {
                clock: Some(HopClock {
                    stop_ns: 10_000_000_000,
                    resume_ns: (10_000 + stood_ms) * 1_000_000,
                    before_ms: 300.0,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            samples: vec![
                s("b", 13_000 - 2_200, 13_000),
                s("a", 9_900 + 300, 9_900),
                s("a", 9_800 + 300, 9_800),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_panel_holds_its_kind_and_bands_the_earlier_resume() {
        let o = crate::report::opts::tests::opts();
        let obs: Vec<Observed> = [2000, 2100, 23_400, 20_700].map(observed).into();
        let rows: Vec<DemoRow> = RUNS.iter().zip(&obs).map(|(r, ob)| row_of(r, ob)).collect();
        let p = panel(&o, &rows, &obs, true);
        let labels: Vec<&str> = p.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "file restore, without migtime",
                "file restore, with migtime"
            ]
        );
        assert_eq!(p.series[0].color, RGBColor(200, 40, 40));
        assert_eq!(p.bands.len(), 1);
        assert_eq!((p.bands[0].from, p.bands[0].to), (0.0, 20.7));
        assert_eq!(p.bands[0].label, "VM stopped (23.4 s without, 20.7 s with)");
        let live = panel(&o, &rows, &obs, false);
        assert_eq!(live.bands[0].to, 2.0);
        assert!(live.title.starts_with("Live migration"));
    }

    #[test]
    fn points_are_offset_changes_since_stop_one_segment_per_guest() {
        let ob = observed(2500);
        let (segs, resume) = plot_points(&ob).unwrap();
        assert_eq!(resume, 2.5);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0], vec![(-0.2, 0.0), (-0.1, 0.0)]);
        assert_eq!(segs[1], vec![(3.0, -2500.0)]);
        assert!(plot_points(&Observed::default()).is_none());
    }
}
