// SPDX-License-Identifier: GPL-2.0

//! The time daemons' runs (`daemons.rs`) as progress lines and as the
//! markdown section of `bench.md`.

use crate::net::pairing::Convergence;
use crate::report::daemons::{
    cases, conditions, Case, ChronyView, Condition, DaemonOpts, DaemonRun,
};

/// One progress line for a run.
pub fn progress_line(r: &DaemonRun) -> String {
    let c = r.probe.convergence.clone().unwrap_or_default();
    let end = r.chrony.last();
    format!(
        "{:<34} {:<16} within 5 ms after {}, held {:.0} s; worst {:.1} ms; chronyd at the end: offset {}, freq {}, {}; {}",
        r.case.title,
        r.condition.title,
        c.settled_s.map_or("never".into(), |s| format!("{s:.2} s")),
        c.held_s,
        c.worst_ms,
        end.map_or("?".into(), |v| format!("{:+.3} ms", v.offset_s * 1e3)),
        end.map_or("?".into(), |v| format!("{:+.2} ppm", v.freq_ppm)),
        end.map_or("?", |v| v.leap.as_str()),
        if r.ok {
            "ok".to_string()
        } else {
            format!("problems: {}", r.problems.join("; "))
        }
    )
}

/// The markdown section of `bench.md`: one row per case and condition, over its runs.
pub fn render_markdown(o: &DaemonOpts, runs: &[DaemonRun]) -> String {
    let mut s = format!(
        "\n### Time daemons: chronyd 4.3 in the guest\n\n\
         One live migration per run, {} ms blackout; chronyd (`makestep 1 3` used up, `maxpoll 4`) \
         synchronised beforehand to the harness's NTP server, which serves the source host's clock \
         and from `cont` on the destination's. guest − host comes from the host's UDP probe \
         (pairing error: half the round trip, given per row). \"Within 5 ms after\": from the \
         resume until |guest − host| < 5 ms for good; \"held\": how long it then stayed there \
         (to the end of the window: (a) {} s after the migration, (b)/(c) {} s after chronyd \
         resynchronised). The overshoot and the error once settled are of each second's best-paired sample; \
         the worst error is of any sample. chronyd's view is `chronyc tracking` at the end of the window (median over the runs).\n\n\
         | case | destination | runs | within 5 ms after, s: median (max) | held, s (min) | worst \\|error\\| after resume, ms: median (max) | overshoot past the new host, ms: max | \\|error\\| once settled, ms: max | one correction | chronyd at the end: offset, freq, leap | pairing error, ms: median (max) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        o.blackout_ms, o.window_s, o.hold_s
    );
    for case in cases() {
        for cond in conditions() {
            let rs: Vec<&DaemonRun> = runs
                .iter()
                .filter(|r| r.case.key == case.key && r.condition.key == cond.key)
                .collect();
            if rs.is_empty() {
                continue;
            }
            s.push_str(&row(&case, &cond, &rs));
        }
    }
    s
}

fn med_max(mut v: Vec<f64>) -> Option<(f64, f64)> {
    v.sort_by(f64::total_cmp);
    Some((*v.get(v.len() / 2)?, *v.last()?))
}

fn row(case: &Case, cond: &Condition, rs: &[&DaemonRun]) -> String {
    let convs: Vec<Convergence> = rs
        .iter()
        .filter_map(|r| r.probe.convergence.clone())
        .collect();
    let never = convs.iter().filter(|c| c.settled_s.is_none()).count();
    let settled = med_max(convs.iter().filter_map(|c| c.settled_s).collect());
    let held = convs
        .iter()
        .map(|c| c.held_s)
        .min_by(f64::total_cmp)
        .unwrap_or(0.0);
    let worst = med_max(convs.iter().map(|c| c.worst_ms).collect());
    let bound = med_max(convs.iter().map(|c| c.bound_median_ms).collect());
    let bound_max = convs
        .iter()
        .map(|c| c.bound_max_ms)
        .max_by(f64::total_cmp)
        .unwrap_or(0.0);
    let one = convs.iter().filter(|c| c.one_step).count();
    let overshoot = med_max(convs.iter().map(|c| c.overshoot_ms).collect());
    let settled_err = med_max(convs.iter().filter_map(|c| c.after_settled_ms).collect());
    let ends: Vec<&ChronyView> = rs.iter().filter_map(|r| r.chrony.last()).collect();
    let mut leaps: Vec<&str> = ends.iter().map(|v| v.leap.as_str()).collect();
    leaps.sort_unstable();
    leaps.dedup();
    let end = med_max(ends.iter().map(|v| v.offset_s * 1e3).collect())
        .zip(med_max(ends.iter().map(|v| v.freq_ppm).collect()))
        .map_or("—".into(), |((o, _), (f, _))| {
            format!("{o:+.2} ms, {f:+.1} ppm, {}", leaps.join("/"))
        });
    let failed = rs.iter().filter(|r| !r.ok).count();
    format!(
        "| {} | {} | {}{} | {}{} | {:.0} | {} | {} | {} | {}/{} | {} | {} |\n",
        case.title,
        cond.title,
        rs.len(),
        if failed > 0 {
            format!(" ({failed} with problems)")
        } else {
            String::new()
        },
        settled.map_or("—".into(), |(m, x)| format!("{m:.2} ({x:.2})")),
        if never > 0 {
            format!("; {never} never")
        } else {
            String::new()
        },
        held,
        worst.map_or("—".into(), |(m, x)| format!("{m:.1} ({x:.1})")),
        overshoot.map_or("—".into(), |(_, x)| format!("{x:.1}")),
        settled_err.map_or("—".into(), |(_, x)| format!("{x:.2}")),
        one,
        convs.len(),
        end,
        bound.map_or("—".into(), |(m, _)| format!("{m:.2} ({bound_max:.2})")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::network::Probed;

    #[test]
    fn table_rows_summarise_runs() {
        let mk = |settled, worst, ok| DaemonRun {
            case: cases()[2],
            condition: conditions()[1],
            probe: Probed {
                convergence: Some(Convergence {
                    settled_s: settled,
                    held_s: 95.0,
                    worst_ms: worst,
                    bound_median_ms: 0.3,
                    bound_max_ms: 2.0,
                    one_step: true,
                    samples: 2000,
                    overshoot_ms: 0.3,
                    after_settled_ms: Some(0.45),
                    ..Default::default()
                }),
                ..Default::default()
            },
            chrony: vec![ChronyView {
                t_s: 100.0,
                leap: "Normal".into(),
                offset_s: 0.0001,
                last_s: 0.0,
                freq_ppm: 29.9,
            }],
            chrony_steps: Some(1),
            ok,
            problems: Vec::new(),
        };
        let o = DaemonOpts {
            kernel: "k".into(),
            initrd: "i".into(),
            blackout_ms: 2000,
            window_s: 240,
            hold_s: 90,
            memory_mb: 256,
            device: false,
        };
        let md = render_markdown(
            &o,
            &[
                mk(Some(0.1), 2500.0, true),
                mk(Some(0.3), 2600.0, false),
                mk(None, 2700.0, true),
            ],
        );
        let row = md
            .lines()
            .find(|l| l.starts_with("| (c)"))
            .expect("a (c) row");
        assert!(row.contains("| 3 (1 with problems) |"), "{row}");
        assert!(row.contains("0.30 (0.30); 1 never"), "{row}");
        assert!(row.contains("2600.0 (2700.0)"), "{row}");
        assert!(row.contains("3/3"), "{row}");
        assert!(row.contains("| 0.3 | 0.45 |"), "{row}");
        assert!(row.contains("+0.10 ms, +29.9 ppm, Normal"), "{row}");
        assert!(row.contains("0.30 (2.00)"), "{row}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| (")).count(), 1);
    }
}
