// SPDX-License-Identifier: GPL-2.0

//! `demo`: the patched QEMU's `-device migtime` on both sides of every hop, nothing
//! outside QEMU writing the page. A live migration (the destination held paused for the
//! blackout) and a restore from a `migrate file:` save after a pause, each without migtime
//! (the module not loaded) and with it; what the guest's wall clock did in each.
//!
//! The guest runs `mt_clock`, which prints `# MIGTIME-CLOCK <realtime> <monotonic>` every
//! period; the watcher (`watch.rs`) pairs each sample with the host clock, `observe.rs` runs
//! the chain and analyses each hop from its typed results. The table is `demo_table.rs`,
//! the plot `demo_plot.rs`, the chronyd part `demo_chrony.rs`.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::base::output::Reporter;
use crate::migrate::observe::{mt_clock_run, observe, Observed};
use crate::migrate::opts::{Restore, SimOpts, SimSettings, Vmm};
use crate::report::demo_plot::plot;
use crate::report::demo_table::{print_table, row_of, DemoRun, RUNS};
use crate::report::opts::DemoOpts;
use crate::vm::cmdline::append_for;
use crate::vm::devices::Devices;
use crate::vm::qemu::{GuestConfig, Mode};

/// The settings of run `r`: one hop on the device.
fn settings(o: &DemoOpts, r: &DemoRun) -> SimSettings {
    SimSettings {
        blackout_ms: r.pause_ms(o),
        migrations: 1,
        vmm: Vmm::QemuDevice,
        restore: r.restore.then_some(Restore::File),
        ..Default::default()
    }
}

/// One run of the first part.
fn run(o: &DemoOpts, out: &dyn Reporter, r: &DemoRun) -> Observed {
    out.stage(&format!(
        "demo run '{}': boot, mt_clock, {} (-device migtime{})",
        r.label,
        r.what(o),
        if r.load { "" } else { ", mt.load=0" }
    ));
    let run = mt_clock_run(1, o.period_ms, o.before_ms, o.after_ms);
    let mut extra = format!("mt.load={} mt.kunit=0", u8::from(r.load));
    if !r.load {
        extra.push_str(" mt.rmmod=0");
    }
    let guest = GuestConfig {
        kernel: o.kernel.clone(),
        initrd: o.initrd.clone(),
        append_extra: append_for(&run, if r.load { &o.params } else { "" }, &extra),
        mode: Mode::Device,
        devices: Devices::default(),
        run_dir: o.out_dir.join("runs").join(r.slug),
        memory_mb: o.memory_mb,
        vcpus: crate::vm::qemu::DEFAULT_VCPUS,
    };
    let ob = observe(
        &SimOpts {
            scenario: format!("demo-{}", r.slug),
            guest,
            timeout: o.timeout + Duration::from_millis(r.pause_ms(o)),
            settings: settings(o, r),
            // Without the module nothing acks: do not wait long for it.
            ack_timeout: if r.load {
                Duration::from_secs(20)
            } else {
                Duration::from_millis(1500)
            },
            network: None,
        },
        out,
    );
    if let Some(e) = &ob.error {
        out.stage(&format!("run '{}' reported a problem: {e}", r.label));
    }
    ob
}

/// Runs the demo; returns whether every run produced its numbers.
pub fn demo(o: &DemoOpts, out: &dyn Reporter) -> Result<bool> {
    o.validate()?;
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("creating {}", o.out_dir.display()))?;
    let mut rows = Vec::new();
    let mut obs = Vec::new();
    for r in &RUNS {
        let ob = run(o, out, r);
        rows.push(row_of(r, &ob));
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
    use crate::report::opts::tests::opts;

    #[test]
    fn runs_are_on_the_device_live_then_restored() {
        let o = opts();
        let loads: Vec<bool> = RUNS.iter().map(|r| r.load).collect();
        assert_eq!(loads, [false, true, false, true]);
        for r in &RUNS {
            let s = settings(&o, r);
            assert_eq!(s.vmm, Vmm::QemuDevice, "{}", r.label);
            assert_eq!(s.restore.is_some(), r.restore, "{}", r.label);
            assert_eq!(s.blackout_ms, if r.restore { 20_000 } else { 2000 });
            assert_eq!(s.hops(), 1);
            s.validate(Mode::Device).unwrap();
        }
    }
}
