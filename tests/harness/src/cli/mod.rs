// SPDX-License-Identifier: GPL-2.0

//! The command line: clap's definitions and their translation into the
//! library's options (each validated by its layer's `opts`) and calls. `main.rs` only
//! parses and maps the result to the exit status.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

mod args;
pub use args::{BenchArgs, BootArgs, CheckArgs, Cli, Cmd, DemoArgs, GuestArgs, SimArgs};

use crate::base::output::Console;
use crate::migrate::opts::{SimOpts, SimSettings, Vmm};
use crate::net::network::Network;
use crate::report::opts::{BenchOpts, DemoOpts};
use crate::suite::check::CheckOpts;
use crate::vm::cmdline::append_for;
use crate::vm::devices::Devices;
use crate::vm::opts::{check_inputs, default_run_dir, BootOpts};
use crate::vm::qemu::{GuestConfig, Mode};

/// The guest of `boot`/`sim`, with the network it asked for (`--net`).
fn guest_config(
    g: &GuestArgs,
    mode: Mode,
    append: String,
    cmd: &str,
) -> Result<(GuestConfig, Option<Arc<Network>>)> {
    check_inputs(&g.kernel, &g.initrd)?;
    let network = if g.net {
        Some(Network::start(&Console)?)
    } else {
        None
    };
    let append = match &network {
        Some(n) => format!("{append} {}", n.cmdline()),
        None => append,
    };
    let cfg = GuestConfig {
        kernel: g.kernel.clone(),
        initrd: g.initrd.clone(),
        append_extra: append,
        mode,
        devices: Devices {
            vmclock: g.vmclock,
            net: network.as_ref().map(|n| n.ports()),
            migtime_offset_ns: 0,
            disk: None,
        },
        run_dir: g.run_dir.clone().unwrap_or_else(|| default_run_dir(cmd)),
        memory_mb: g.memory,
        vcpus: g.vcpus,
    };
    Ok((cfg, network))
}

fn boot(a: BootArgs) -> Result<bool> {
    let (guest, network) = guest_config(&a.g, a.mode, a.append_extra.clone(), "boot")?;
    let o = BootOpts {
        guest,
        timeout: Duration::from_secs(a.g.timeout),
        page_file: a.page_file,
        bad_page: a.bad_page,
        expect_panic: a.expect_panic,
    };
    o.validate()?;
    let r = crate::vm::vmtest::boot(&o, &Console)?;
    if let Some(n) = network {
        n.finish(&o.guest.run_dir, &Console);
    }
    println!("{}", r.counts_line());
    Ok(r.ok)
}

fn sim(a: SimArgs) -> Result<bool> {
    let append = append_for(&a.guest_run, &a.params, &a.append_extra);
    let (guest, network) = guest_config(&a.g, a.mode, append, "sim")?;
    let vmm = if guest.mode == Mode::Device {
        Vmm::QemuDevice
    } else {
        Vmm::Simulator
    };
    let o = SimOpts {
        scenario: a.scenario,
        guest,
        timeout: Duration::from_secs(a.g.timeout),
        settings: SimSettings {
            blackout_ms: a.blackout,
            skew_ns: a.skew_ns,
            same_rate: false,
            compensated: a.compensated,
            migrations: a.migrations,
            no_guest_run_between: a.no_guest_run_between,
            cancel: a.cancel,
            bad_page: a.bad_page,
            expect: a.expect_outcome,
            vmm,
            ..Default::default()
        },
        ack_timeout: Duration::from_secs_f64(a.ack_timeout),
        network,
    };
    o.validate()?;
    let r = crate::migrate::sim::sim(&o, &Console)?.report;
    if let Some(n) = &o.network {
        n.finish(&o.guest.run_dir, &Console);
    }
    println!("{}", r.counts_line());
    Ok(r.ok)
}

fn check(a: CheckArgs) -> Result<bool> {
    if a.list {
        crate::suite::list::list(&a.only, a.suite);
        return Ok(true);
    }
    let o = CheckOpts {
        kernel: a.kernel.unwrap_or_default(),
        initrd: a.initrd.unwrap_or_default(),
        run_dir: a.run_dir.unwrap_or_else(|| default_run_dir("check")),
        only: a.only,
        timeout: Duration::from_secs(a.timeout),
        keep_all: a.keep_all,
        memory_mb: a.memory,
        vcpus: a.vcpus.max(2),
        suite: a.suite,
        images: crate::suite::image::ImageDirs {
            chrony: a.image_chrony,
            timesyncd: a.image_timesyncd,
        },
    };
    o.validate()?;
    let (_, failed) = crate::suite::check::check(&o, &Console)?;
    Ok(failed == 0)
}

fn demo(a: DemoArgs) -> Result<bool> {
    let o = DemoOpts {
        kernel: a.kernel,
        initrd: a.initrd,
        out_dir: a.out_dir,
        blackout_ms: a.blackout,
        restore_pause_ms: a.restore_pause,
        params: a.params,
        period_ms: a.period_ms,
        before_ms: a.before_ms,
        after_ms: a.after_ms,
        timeout: Duration::from_secs(a.timeout),
        memory_mb: a.memory,
        chrony_window_s: if a.no_chrony { 0 } else { a.chrony_window },
    };
    o.validate()?;
    crate::report::demo::demo(&o, &Console)
}

fn bench(a: BenchArgs) -> Result<bool> {
    let o = BenchOpts {
        kernel: a.kernel,
        initrd: a.initrd,
        out_dir: a.out_dir,
        runs: a.runs,
        hops_per_boot: a.hops_per_boot,
        blackout_ms: a.blackout,
        idle_seconds: a.idle_seconds,
        period_ms: a.period_ms,
        before_ms: a.before_ms,
        after_ms: a.after_ms,
        daemon_ms: a.daemon_ms,
        only: a.only,
        timeout: Duration::from_secs(a.timeout),
        memory_mb: a.memory,
        debian: a.debian_kernel.zip(a.debian_initrd),
        device: !a.no_device && crate::vm::devices::device_qemu().is_ok(),
        chrony_runs: a.chrony_runs,
        chrony_window_s: a.chrony_window,
        chrony_hold_s: a.chrony_hold,
    };
    o.validate()?;
    crate::report::bench::bench(&o)
}

/// Runs the command; `Ok(false)` when a test failed.
pub fn run(cli: Cli) -> Result<bool> {
    match cli.cmd {
        Cmd::Boot(a) => boot(a),
        Cmd::Sim(a) => sim(a),
        Cmd::Check(a) => check(a),
        Cmd::Demo(a) => demo(a),
        Cmd::Bench(a) => bench(a),
    }
}
