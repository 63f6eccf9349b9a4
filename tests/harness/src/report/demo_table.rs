// SPDX-License-Identifier: GPL-2.0

//! `demo`'s first part: its runs, and the table with one row per run, from the observed hop.

use serde::Serialize;

use crate::migrate::observe::Observed;
use crate::migrate::watch::WATCH_PERIOD;
use crate::report::opts::DemoOpts;
use crate::report::text::fixed_width;

/// One run of the demo's first part.
#[derive(Clone, Copy, Debug)]
pub struct DemoRun {
    pub label: &'static str,
    /// Its run folder under OUT/runs.
    pub slug: &'static str,
    /// migtime.ko loaded.
    pub load: bool,
    /// A restore from a `migrate file:` save instead of a live migration.
    pub restore: bool,
}

/// The first part's runs, in table order: live without and with, then restore.
pub const RUNS: [DemoRun; 4] = [
    DemoRun {
        label: "live migration, without migtime",
        slug: "live-without",
        load: false,
        restore: false,
    },
    DemoRun {
        label: "live migration, with migtime",
        slug: "live-with",
        load: true,
        restore: false,
    },
    DemoRun {
        label: "file restore, without migtime",
        slug: "restore-without",
        load: false,
        restore: true,
    },
    DemoRun {
        label: "file restore, with migtime",
        slug: "restore-with",
        load: true,
        restore: true,
    },
];

impl DemoRun {
    /// The pause this run's guest spends stopped, ms.
    pub fn pause_ms(&self, o: &DemoOpts) -> u64 {
        if self.restore {
            o.restore_pause_ms
        } else {
            o.blackout_ms
        }
    }

    /// What happens to the guest, for the progress line.
    pub fn what(&self, o: &DemoOpts) -> String {
        if self.restore {
            format!(
                "stop, migrate file:, quit; a new QEMU restores it {} s later",
                o.restore_pause_ms as f64 / 1e3
            )
        } else {
            format!(
                "live migration, destination held paused {} ms",
                o.blackout_ms
            )
        }
    }
}

/// One demo run, as the table shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DemoRow {
    pub run: String,
    pub module_loaded: bool,
    /// A restore from a `migrate file:` save (else a live migration).
    pub restore: bool,
    pub change_first_ms: Option<f64>,
    pub change_settled_ms: Option<f64>,
    pub before_abs_ms: Option<f64>,
    pub after_abs_ms: Option<f64>,
    pub error_bar_ms: Option<f64>,
    pub step_applied_ns: Option<i64>,
    pub ack_latency_ms: Option<f64>,
    /// The guest's stale window: resume -> step done, guest CLOCK_MONOTONIC, ms.
    pub stale_ms: Option<f64>,
    pub timerfd_cancelled: Option<bool>,
    pub sta_unsync: Option<bool>,
    pub tout_ns: Option<i64>,
    /// The device page's flags (RESTORE: 0x2).
    pub flags: Option<u32>,
    pub error: Option<String>,
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:+.1} ms"))
}

fn yes_no(v: Option<bool>, yes: &str, no: &str) -> String {
    v.map_or("?".into(), |b| if b { yes.into() } else { no.into() })
}

/// The step column: the step and how long the guest ran with the wrong time (its stale
/// window; the host's `cont` -> ack when the guest gave no timing).
fn step_cell(r: &DemoRow) -> String {
    let Some(ns) = r.step_applied_ns else {
        return "none".into();
    };
    let s = ns as f64 / 1e9;
    match (r.stale_ms, r.ack_latency_ms) {
        (Some(st), _) => format!("{s:+.3} s, {st:.0} ms after resume"),
        (None, Some(l)) => format!("{s:+.3} s ({l:.0} ms after cont)"),
        (None, None) => format!("{s:+.3} s"),
    }
}

/// The page QEMU published: Tout, and RESTORE when set.
fn tout_cell(r: &DemoRow) -> String {
    let Some(t) = r.tout_ns else {
        return "?".into();
    };
    let restore = r
        .flags
        .is_some_and(|f| f & migtime_abi::abi::FLAG_RESTORE != 0);
    format!(
        "{:.3} s{}",
        t as f64 / 1e9,
        if restore { ", RESTORE" } else { "" }
    )
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
        "Tout QEMU wrote",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        cells.push(vec![
            r.run.clone(),
            fmt_ms(r.change_first_ms),
            fmt_ms(r.change_settled_ms),
            step_cell(r),
            yes_no(r.timerfd_cancelled, "fired", "not fired"),
            yes_no(r.sta_unsync, "STA_UNSYNC (resync)", "synced (stale)"),
            tout_cell(r),
        ]);
    }
    fixed_width(&cells)
}

/// The row of run `r` from what was observed.
pub fn row_of(r: &DemoRun, ob: &Observed) -> DemoRow {
    let h = ob.hops.first();
    let c = h.and_then(|h| h.clock.as_ref());
    let ack = h.and_then(|h| h.ack.as_ref());
    let res = h.and_then(|h| h.result.as_ref());
    let page = ob
        .summary
        .as_ref()
        .and_then(|s| s.hops.first())
        .map(|h| h.page);
    DemoRow {
        run: r.label.into(),
        module_loaded: r.load,
        restore: r.restore,
        change_first_ms: c.and_then(|c| c.first_after_change_ms),
        change_settled_ms: c.and_then(|c| c.change_ms),
        before_abs_ms: c.map(|c| c.before_ms),
        after_abs_ms: c.and_then(|c| c.after_ms),
        error_bar_ms: c.map(|c| c.before_spread_ms),
        step_applied_ns: ack.map(|a| a.area.applied_ns),
        ack_latency_ms: ack.map(|a| a.latency_ms),
        stale_ms: h.and_then(|h| h.stale_ms()),
        timerfd_cancelled: res.map(|r| r.timerfd_cancelled),
        sta_unsync: res.map(|r| r.sta_unsync),
        tout_ns: h.and_then(|h| h.tout_ns),
        flags: page.map(|p| p.flags),
        error: ob.error.clone(),
    }
}

/// The table and its explanation.
pub fn print_table(o: &DemoOpts, rows: &[DemoRow]) {
    println!();
    println!("migtime demo: guest wall clock vs host, QEMU's -device migtime on both sides (TCG, 2 vCPUs)");
    println!(
        "live: the destination held paused {} ms before cont; file restore: stop, migrate file:, quit, a new QEMU restores it {} s later",
        o.blackout_ms,
        o.restore_pause_ms as f64 / 1e3
    );
    println!("QEMU writes the page (Tout = now - the guest's freeze) before any vCPU runs and rings MSI-X; nothing else writes it.");
    println!();
    print!("{}", render_table(rows));
    println!();
    println!("offset change = (guest - host CLOCK_REALTIME) after the migration minus the same before it: the clock");
    println!("error the migration introduced. 'first sample' is the first line the guest printed after resuming,");
    println!("'settled' the median sample 1-2 s after resume. 'after resume': how long the guest ran with the old time,");
    println!("in its own CLOCK_MONOTONIC, from its clocks running again to the step done (the module's timing block;");
    println!("the resume mapped through the best-paired sample, a few ms long at most). Tout is what QEMU published");
    println!("(read back from guest memory), RESTORE the flag of a restore from a file. The absolute offset before");
    println!("migration is arbitrary (a second or two): the guest sets its wall clock at boot from the CMOS RTC, which has");
    println!("1 s resolution, and a TCG guest's clock drifts while it boots. Absolute values:");
    for r in rows {
        println!(
            "  {:<32} before {:>10}   after {:>10}   (error bar: read latency, serial + {} ms polling: spread {})",
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
        println!("note: a run without migtime reports STA_UNSYNC too: the guest kernel did not keep the synchronised");
        println!("      NTP state mt_clock set before the migration (same without any migration), so the NTP column");
        println!("      does not tell the runs apart on this guest.");
    }
    for r in rows.iter().filter(|r| r.error.is_some()) {
        println!(
            "problem in '{}': {}",
            r.run,
            r.error.as_deref().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str) -> DemoRow {
        DemoRow {
            run: run.into(),
            module_loaded: true,
            restore: true,
            change_first_ms: Some(-20600.0),
            change_settled_ms: Some(-0.4),
            before_abs_ms: Some(300.0),
            after_abs_ms: Some(299.6),
            error_bar_ms: Some(3.0),
            step_applied_ns: Some(20_600_000_000),
            ack_latency_ms: Some(40.0),
            stale_ms: Some(24.6),
            timerfd_cancelled: Some(true),
            sta_unsync: Some(true),
            tout_ns: Some(20_600_000_000),
            flags: Some(migtime_abi::abi::FLAG_RESTORE),
            error: None,
        }
    }

    #[test]
    fn table_has_a_row_per_run() {
        let without = DemoRow {
            module_loaded: false,
            restore: false,
            step_applied_ns: None,
            ack_latency_ms: None,
            stale_ms: None,
            timerfd_cancelled: Some(false),
            flags: Some(0),
            tout_ns: Some(2_041_000_000),
            ..row("live migration, without migtime")
        };
        let t = render_table(&[without, row("file restore, with migtime")]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].ends_with("Tout QEMU wrote"));
        assert!(lines[2].starts_with("live migration, without migtime"));
        assert!(lines[2].contains("| none ") && lines[2].contains("not fired"));
        assert!(lines[2].ends_with("| 2.041 s"), "{}", lines[2]);
        assert!(lines[3].starts_with("file restore, with migtime"));
        assert!(
            lines[3].contains("-0.4 ms")
                && lines[3].contains("+20.600 s, 25 ms after resume")
                && lines[3].contains("| fired")
                && lines[3].ends_with("20.600 s, RESTORE"),
            "{}",
            lines[3]
        );
        assert_eq!(lines[0].find('|'), lines[3].find('|'), "columns aligned");
    }

    #[test]
    fn the_step_falls_back_to_the_host_latency() {
        let r = DemoRow {
            stale_ms: None,
            ..row("x")
        };
        assert_eq!(step_cell(&r), "+20.600 s (40 ms after cont)");
        let r = DemoRow {
            ack_latency_ms: None,
            ..r
        };
        assert_eq!(step_cell(&r), "+20.600 s");
        let r = DemoRow { tout_ns: None, ..r };
        assert_eq!(tout_cell(&r), "?");
    }
}
