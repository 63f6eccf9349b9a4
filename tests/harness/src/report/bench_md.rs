// SPDX-License-Identifier: GPL-2.0

//! `bench`'s report: the markdown table (OUT/bench.md, also printed).

use crate::report::bench_report::ConfigResult;
use crate::report::machine::Machine;
use crate::report::opts::BenchOpts;

fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        // Three significant digits.
        let d = (-a.log10()).ceil() as usize + 2;
        format!("{v:.d$}")
    }
}

/// A cell: the value and, when the baseline has one, the ratio to it.
fn cell(v: Option<f64>, base: Option<f64>, is_base: bool) -> String {
    match (v, base) {
        (None, _) => "n/a".into(),
        (Some(v), Some(b)) if !is_base && b != 0.0 => format!("{} ({}×)", num(v), num(v / b)),
        (Some(v), _) => num(v),
    }
}

/// The sentence on the device configurations' QEMU, if the report has any.
fn device_note(m: &Machine, rs: &[ConfigResult]) -> String {
    if !rs.iter().any(|r| r.config.device) {
        return String::new();
    }
    let v = m.qemu_device.as_deref().filter(|v| !v.is_empty());
    format!(
        " The `-device migtime` configurations run the patched QEMU ({}): QEMU writes their page \
         itself at the resume and rings MSI-X, the harness only reads it back (HMP `xp` every 1 ms); \
         the file restore saves the stopped guest with `migrate file:`, quits, and loads the file in \
         a new QEMU after the blackout.",
        v.unwrap_or("version ?")
    )
}

/// The paragraph before the table: machine, setup, how to read it.
fn intro(m: &Machine, o: &BenchOpts, rs: &[ConfigResult]) -> String {
    format!(
        "{}: {} CPUs ({}), {:.1} GiB RAM; {}; guests under **{}** (QEMU's emulator, no hardware virtualisation), {} MiB, \
         live migrations between two QEMU processes on this host. {} migrations per configuration \
         (chains of up to {} per boot), blackout {} ms; {}. \
         Median / p99 (nearest rank: the max below 100 runs) / max; in parentheses the ratio to the baseline.{}\n\n",
        m.date_utc,
        m.nproc,
        m.cpu,
        m.mem_gib,
        if m.qemu.is_empty() { "QEMU ?".into() } else { m.qemu.clone() },
        m.accel.to_uppercase(),
        o.memory_mb,
        o.runs,
        o.hops_per_boot,
        o.blackout_ms,
        match o.idle_seconds {
            0 => "no idle cost measured (`--idle-seconds 0`)".to_string(),
            n => format!("idle cost over a quiet {n} s per configuration"),
        },
        device_note(m, rs)
    )
}

type Get = fn(&ConfigResult) -> Option<f64>;

/// The table's value rows: name and how to get the value.
fn value_rows() -> Vec<(&'static str, Get)> {
    vec![
        (
            "step residual \\|applied − intended\\|, µs: median",
            |r| r.residual_us.map(|s| s.median),
        ),
        ("… p99", |r| r.residual_us.map(|s| s.p99)),
        ("… max", |r| r.residual_us.map(|s| s.max)),
        ("latency `cont` → guest ack, ms: median", |r| {
            r.ack_latency_ms.map(|s| s.median)
        }),
        ("… p99", |r| r.ack_latency_ms.map(|s| s.p99)),
        ("… max", |r| r.ack_latency_ms.map(|s| s.max)),
        (
            "… of which QEMU/TCG resume → interrupt or poll (host, inferred), ms: median",
            |r| r.resume_ms.map(|s| s.median),
        ),
        ("… p99", |r| r.resume_ms.map(|s| s.p99)),
        (
            "… of which interrupt or poll → work start (guest), ms: median",
            |r| r.wake_to_work_ms.map(|s| s.median),
        ),
        ("… p99", |r| r.wake_to_work_ms.map(|s| s.p99)),
        (
            "… of which work start → step done (guest), ms: median",
            |r| r.work_to_done_ms.map(|s| s.median),
        ),
        ("… p99", |r| r.work_to_done_ms.map(|s| s.p99)),
        (
            "stale window: resume → step done (guest CLOCK_MONOTONIC), ms: median",
            |r| r.stale_ms.map(|s| s.median),
        ),
        ("… p99", |r| r.stale_ms.map(|s| s.p99)),
        ("… max", |r| r.stale_ms.map(|s| s.max)),
        (
            "wall-clock error after migration \\|Δ(guest − host)\\|, ms: median",
            |r| r.clock_error_ms.map(|s| s.median),
        ),
        ("… p99", |r| r.clock_error_ms.map(|s| s.p99)),
        ("… max", |r| r.clock_error_ms.map(|s| s.max)),
        ("cancel-on-set waiters woken (fraction)", |r| {
            (r.cancel_woken.1 > 0)
                .then(|| f64::from(r.cancel_woken.0) / f64::from(r.cancel_woken.1))
        }),
        ("idle: wakeups/s", |r| {
            r.idle.as_ref().and_then(|i| i.wakeups_per_s)
        }),
        ("idle: CPU busy %", |r| {
            r.idle.as_ref().and_then(|i| i.busy_pct)
        }),
    ]
}

/// The markdown report.
pub fn render_markdown(m: &Machine, o: &BenchOpts, rs: &[ConfigResult]) -> String {
    let mut s = String::new();
    s.push_str("## migtime bench\n\n");
    s.push_str(&intro(m, o, rs));
    s.push_str("| metric |");
    for r in rs {
        s.push_str(&format!(" {} |", r.config.title));
    }
    s.push_str("\n|---|");
    for _ in rs {
        s.push_str("---|");
    }
    s.push('\n');
    let base = rs.iter().find(|r| r.config.key == "baseline");
    let rows = value_rows();
    for (name, get) in rows {
        s.push_str(&format!("| {name} |"));
        let b = base.and_then(get);
        for r in rs {
            let mut c = cell(get(r), b, r.config.key == "baseline");
            if name.starts_with("cancel-on-set") {
                c = format!(
                    "{} ({}/{})",
                    get(r).map_or("n/a".into(), num),
                    r.cancel_woken.0,
                    r.cancel_woken.1
                );
            }
            s.push_str(&format!(" {c} |"));
        }
        s.push('\n');
    }
    s.push_str("| migrations measured / attempted |");
    for r in rs {
        s.push_str(&format!(
            " {}/{} |",
            r.hops
                .iter()
                .filter(|h| h.clock_change_ms.is_some())
                .count(),
            r.attempted
        ));
    }
    s.push_str("\n\n");
    s.push_str(
        "Residual and latency come from the guest ack area (written by the module, or by mt_daemon the same way); \
         the baseline has neither. Wall-clock error: median guest − host CLOCK_REALTIME offset 1–2 s after resume \
         minus the median over the last second before the source stopped (mt_clock samples paired with the host \
         clock when read; error bar ≈ a few ms). The latency split uses the module's timing block in the guest \
         area (guest CLOCK_MONOTONIC): interrupt or poll → work start → step done; the rest of `cont` → ack is \
         QEMU/TCG resuming the guest, the interrupt reaching it and the ack becoming visible (host polls every \
         1 ms). The stale window is how long the guest ran with the wrong time: from its clocks running \
         again at the resume (they stand still while the VM is stopped) to the step done, both in guest \
         CLOCK_MONOTONIC; the resume's guest time is the freeze's, mapped to the host's STOP through the \
         least-delayed mt_clock sample of the last second (long by that sample's read delay, a few ms at \
         most). Idle: mt_idle's local timer interrupts per second and non-idle CPU share over the window.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::bench_report::{HopRecord, Idle, Stats};
    use crate::report::configs::{configs, Config};
    use std::time::Duration;

    fn result(c: Config, hops: Vec<HopRecord>, idle: f64) -> ConfigResult {
        let mut r = ConfigResult::new(c);
        r.attempted = hops.len() as u32;
        r.hops = hops;
        r.idle = Some(Idle {
            seconds: Some(60.0),
            wakeups_per_s: Some(idle),
            busy_pct: Some(0.5),
            error: None,
        });
        r.summarise();
        r
    }

    fn hop(change_ms: f64, cancelled: bool) -> HopRecord {
        HopRecord {
            clock_change_ms: Some(change_ms),
            timerfd_cancelled: Some(cancelled),
            ..Default::default()
        }
    }

    /// A baseline and a migtime configuration, two hops each.
    fn two_configs() -> Vec<ConfigResult> {
        let c = configs(100);
        let base = result(
            c[0].clone(),
            vec![hop(-1000.0, false), hop(-1200.0, false)],
            100.0,
        );
        let pol = result(
            c[1].clone(),
            vec![
                HopRecord {
                    residual_ns: Some(-2000),
                    ack_latency_ms: Some(50.0),
                    wake_to_work_ms: Some(10.0),
                    work_to_done_ms: Some(1.0),
                    resume_ms: Some(39.0),
                    stale_ms: Some(20.0),
                    ..hop(-1.0, true)
                },
                HopRecord {
                    residual_ns: Some(4000),
                    ack_latency_ms: Some(70.0),
                    wake_to_work_ms: Some(20.0),
                    work_to_done_ms: Some(3.0),
                    resume_ms: Some(47.0),
                    stale_ms: Some(30.0),
                    ..hop(3.0, true)
                },
            ],
            110.0,
        );
        vec![base, pol]
    }

    fn markdown(rs: &[ConfigResult]) -> String {
        let o = BenchOpts {
            kernel: "k".into(),
            initrd: "i".into(),
            out_dir: "o".into(),
            runs: 2,
            hops_per_boot: 2,
            blackout_ms: 1000,
            idle_seconds: 60,
            period_ms: 20,
            before_ms: 1000,
            after_ms: 2500,
            daemon_ms: 100,
            only: vec![],
            timeout: Duration::from_secs(1),
            memory_mb: 256,
            debian: None,
            device: true,
            chrony_runs: 0,
            chrony_window_s: 240,
            chrony_hold_s: 95,
        };
        let m = Machine {
            date_utc: "2030-01-01 00:00 UTC".into(),
            nproc: 2,
            cpu: "CPU X".into(),
            mem_gib: 8.0,
            qemu: "QEMU emulator version 10.0.2".into(),
            qemu_device: Some("QEMU emulator version 10.0.13".into()),
            accel: "tcg".into(),
        };
        render_markdown(&m, &o, rs)
    }

    #[test]
    fn configurations_are_summarised() {
        let rs = two_configs();
        assert_eq!(
            rs[1].residual_us,
            Some(Stats {
                n: 2,
                median: 3.0,
                p99: 4.0,
                max: 4.0
            })
        );
        assert_eq!(rs[1].cancel_woken, (2, 2));
    }

    #[test]
    fn markdown_has_absolute_values_and_ratios() {
        let md = markdown(&two_configs());
        assert!(md.contains("2030-01-01 00:00 UTC: 2 CPUs (CPU X), 8.0 GiB RAM; QEMU emulator version 10.0.2; guests under **TCG**"));
        let line = |start: &str| {
            md.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no row {start}"))
                .to_string()
        };
        assert_eq!(
            line("| metric |"),
            "| metric | baseline (no module) | migtime inject, doorbell |"
        );
        // |change| median: baseline 1100, migtime 2 -> ratio 0.0018.
        assert_eq!(line("| wall-clock error"), "| wall-clock error after migration \\|Δ(guest − host)\\|, ms: median | 1100 | 2.00 (0.00182×) |");
        assert_eq!(
            line("| step residual"),
            "| step residual \\|applied − intended\\|, µs: median | n/a | 3.00 |"
        );
        // The latency split: medians of the guest's timing and the inferred rest.
        let split = |start: &str| md.lines().find(|l| l.contains(start)).map(str::to_string);
        assert_eq!(
            split("resume → interrupt or poll").as_deref(),
            Some("| … of which QEMU/TCG resume → interrupt or poll (host, inferred), ms: median | n/a | 43.0 |")
        );
        assert_eq!(
            split("work start → step done").as_deref(),
            Some("| … of which work start → step done (guest), ms: median | n/a | 2.00 |")
        );
        assert_eq!(
            split("stale window").as_deref(),
            Some("| stale window: resume → step done (guest CLOCK_MONOTONIC), ms: median | n/a | 25.0 |")
        );
        assert!(
            !md.contains("-device migtime"),
            "no device configuration, no device note"
        );
        assert_eq!(
            line("| cancel-on-set"),
            "| cancel-on-set waiters woken (fraction) | 0 (0/2) | 1.00 (2/2) |"
        );
        assert_eq!(
            line("| idle: wakeups/s"),
            "| idle: wakeups/s | 100 | 110 (1.10×) |"
        );
        assert_eq!(
            line("| migrations measured"),
            "| migrations measured / attempted | 2/2 | 2/2 |"
        );
        for l in md.lines().filter(|l| l.starts_with('|')) {
            assert_eq!(
                l.replace("\\|", "").matches('|').count(),
                4,
                "3 columns in {l}"
            );
        }
    }

    #[test]
    fn device_configurations_name_their_qemu() {
        let mut rs = two_configs();
        rs.push(result(configs(100)[6].clone(), vec![hop(-0.5, true)], 4.0));
        let md = markdown(&rs);
        assert!(md.contains("The `-device migtime` configurations run the patched QEMU (QEMU emulator version 10.0.13)"));
        assert!(md.contains("blackout 1000 ms; idle cost over a quiet 60 s per configuration."));
        assert!(md.contains("| metric | baseline (no module) | migtime inject, doorbell | migtime inject, QEMU -device migtime, live |"));
    }

    #[test]
    fn numbers_have_three_significant_digits_or_fewer() {
        assert_eq!(
            (
                num(0.0015),
                num(0.000812),
                num(-0.05),
                num(12.34),
                num(1234.0)
            ),
            (
                "0.00150".into(),
                "0.000812".into(),
                "-0.05".into(),
                "12.3".into(),
                "1234".into()
            )
        );
    }
}
