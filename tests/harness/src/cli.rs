// SPDX-License-Identifier: GPL-2.0

//! The command line: clap's definitions and their translation into the
//! library's options (each validated by its layer's `opts`) and calls. `main.rs` only
//! parses and maps the result to the exit status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::base::output::Console;
use crate::migrate::opts::{SimOpts, SimSettings, Vmm};
use crate::net::network::Network;
use crate::record::ack::ExpectOutcome;
use crate::report::opts::{BenchOpts, DemoOpts};
use crate::suite::check::CheckOpts;
use crate::suite::scenario::Kernel;
use crate::vm::cmdline::append_for;
use crate::vm::devices::Devices;
use crate::vm::opts::{check_inputs, default_run_dir, BootOpts};
use crate::vm::page::BadPage;
use crate::vm::qemu::{GuestConfig, Mode};

/// migtime host harness and hypervisor simulator.
///
/// Guests run under QEMU with TCG (set MIGTIME_ACCEL=kvm on a machine with
/// real KVM). Every run keeps its QEMU command lines (commands.log), QMP
/// transcript (qmp.log), serial logs (console-NAME.log, results-NAME.ktap)
/// and pages (page-NAME.bin) in its run folder.
///
/// Exit status: 0 when everything passed, 1 when a test failed, 2 on usage
/// or setup errors.
#[derive(Parser)]
#[command(name = "migtime-harness", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Boot one guest, run its tests, check its KTAP results and exit status.
    Boot(BootArgs),
    /// Hypervisor simulator: boot a source guest, live-migrate it for real to
    /// a paused destination QEMU, write the page, resume, measure the ack.
    ///
    /// Flow: boot source; wait for `# MIGTIME-READY` on the results channel;
    /// migrate over a unix socket to a `-incoming defer -S` QEMU; hold it
    /// paused for the blackout; write the destination page (seqlock) with
    /// Tout = (host TAI now) - (host TAI at source STOP) + skew; `cont`;
    /// ring the doorbell (doorbell mode); quit the source; poll the guest
    /// ack area; follow the destination to `# MIGTIME-DONE`. Writes
    /// RUN/summary.json.
    Sim(SimArgs),
    /// Run the whole suite (built-in scenario table), one scenario at a time.
    ///
    /// Prints `ok`/`not ok` per scenario and ends with the line
    /// `N passed, N failed` counting KTAP leaf tests over all scenarios; a
    /// scenario failing outside its KTAP (exit status, timeout, host-side
    /// check) adds one failure. Failed scenarios keep their run folders.
    Check(CheckArgs),
    /// `make demo`: live-migrate a guest twice with the same blackout, once
    /// without migtime (mt.load=0) and once with it, and show the guest's
    /// wall clock against the host's.
    ///
    /// The guest runs mt_clock (a CLOCK sample every --period-ms); a thread
    /// reads the results files every 2 ms and pairs each sample with the
    /// host's CLOCK_REALTIME. Prints a table (offset change, step applied,
    /// cancel-on-set timer, NTP state, Tout) and writes OUT/demo.png and
    /// OUT/demo.json. Then a real chronyd in the guest, alone against chronyd with
    /// migtime and its companion, across the same migration to a host 0.5 s ahead
    /// and 50 ppm faster: a table of guest - host after the resume (the host's UDP
    /// probe) and OUT/demo-chrony.png (--no-chrony leaves this part out).
    Demo(DemoArgs),
    /// `make bench`: numbers, not tests. N live migrations per configuration
    /// (baseline without the module, migtime polling, migtime doorbell, the
    /// userspace comparator mt_daemon), plus one quiet boot each for the
    /// idle cost; writes OUT/bench.json and OUT/bench.md and prints the
    /// markdown table. Never fails on timing; exits 1 only when a
    /// configuration produced no numbers.
    Bench(BenchArgs),
}

#[derive(Args)]
pub struct BenchArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL")]
    kernel: PathBuf,
    /// Guest initramfs.
    #[arg(long, env = "MIGTIME_INITRD")]
    initrd: PathBuf,
    /// Output folder (bench.json, bench.md, bench.log, runs/).
    #[arg(long, default_value = "build/bench")]
    out_dir: PathBuf,
    /// Migrations per configuration (the default takes about 10 min under TCG on 2 cores).
    #[arg(long, default_value_t = 12)]
    runs: u32,
    /// Migrations chained in one boot (1..=20).
    #[arg(long, default_value_t = 6)]
    hops_per_boot: u32,
    /// Blackout per migration, ms.
    #[arg(long, default_value_t = 1000)]
    blackout: u64,
    /// Quiet window for the idle cost, seconds (0: skip).
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// mt_clock sample period, ms.
    #[arg(long, default_value_t = 20)]
    period_ms: u64,
    /// mt_clock guest time before each migration, ms.
    #[arg(long, default_value_t = 1000)]
    before_ms: u64,
    /// mt_clock guest time after each migration, ms (>= 2000: the clock error is read 1-2 s after resume).
    #[arg(long, default_value_t = 2500)]
    after_ms: u64,
    /// Poll period of the userspace comparator (mt.daemon), ms.
    #[arg(long, default_value_t = 100)]
    daemon_ms: u32,
    /// Only these configurations (baseline, doorbell, fallback, polling, daemon, debian,
    /// and the time-daemon cases chrony-alone, chrony-vmclock, chrony-migtime; repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Runs of each time-daemon case per destination clock (same clock, +0.5 s, -0.5 s with
    /// another rate): a real chronyd in the guest, 2 s blackout; 0 leaves them out.
    #[arg(long, default_value_t = 1)]
    chrony_runs: u32,
    /// Window after the migration for chronyd alone (a), seconds.
    #[arg(long, default_value_t = 240)]
    chrony_window: u64,
    /// How long (b) and (c) keep measuring once chronyd is synchronised again, seconds.
    #[arg(long, default_value_t = 95)]
    chrony_hold: u64,
    /// Time limit per boot, seconds (plus 20 s per migration).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// A distribution kernel (e.g. Debian's stock vmlinuz) for the "debian" configuration.
    #[arg(long, requires = "debian_initrd")]
    debian_kernel: Option<PathBuf>,
    /// The initramfs with migtime.ko built for `--debian-kernel`.
    #[arg(long, requires = "debian_kernel")]
    debian_initrd: Option<PathBuf>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL")]
    kernel: PathBuf,
    /// Guest initramfs.
    #[arg(long, env = "MIGTIME_INITRD")]
    initrd: PathBuf,
    /// Output folder (demo.png, demo.json, runs/).
    #[arg(long, default_value = "build/demo")]
    out_dir: PathBuf,
    /// Blackout: how long the destination stays paused, ms.
    #[arg(long, default_value_t = 2000)]
    blackout: u64,
    /// Page device for the migtime run: plain (the module polls) or doorbell.
    #[arg(long, value_enum, default_value_t = Mode::Plain)]
    mode: Mode,
    /// Module parameters for the migtime run (mt.params), e.g. "poll_ms=20".
    #[arg(long, default_value = "")]
    params: String,
    /// mt_clock sample period, ms (also bounds the read-latency error bar).
    #[arg(long, default_value_t = 20)]
    period_ms: u64,
    /// Guest time sampled before asking for the migration, ms.
    #[arg(long, default_value_t = 3000)]
    before_ms: u64,
    /// Guest time sampled after the migration, ms.
    #[arg(long, default_value_t = 5000)]
    after_ms: u64,
    /// Time limit per run, seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Seconds observed after the migration in the second part, a real chronyd alone
    /// against chronyd with migtime (two runs of about 1.5 + this each).
    #[arg(long, default_value_t = 120)]
    chrony_window: u64,
    /// Leave out the chronyd part.
    #[arg(long)]
    no_chrony: bool,
}

#[derive(Args, Clone)]
pub struct GuestArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL")]
    kernel: PathBuf,
    /// Guest initramfs (cpio, as scripts/mkinitramfs builds it).
    #[arg(long, env = "MIGTIME_INITRD")]
    initrd: PathBuf,
    /// Run folder for logs and results [default: runs/<command>-<time>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Overall time limit, seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Guest vCPUs (-smp; TCG runs multi-threaded).
    #[arg(long, default_value_t = crate::vm::qemu::DEFAULT_VCPUS)]
    vcpus: u32,
    /// Give the guest `-device vmclock`.
    #[arg(long)]
    vmclock: bool,
    /// Give the guest user-mode networking with the simulated hosts' NTP
    /// server (`mt.ntp=PORT`) and the clock probe.
    #[arg(long)]
    net: bool,
}

#[derive(Args)]
pub struct BootArgs {
    #[command(flatten)]
    g: GuestArgs,
    /// Page device: ivshmem-plain (polling) or ivshmem-doorbell (interrupts).
    #[arg(long, value_enum, default_value_t = Mode::Plain)]
    mode: Mode,
    /// Extra kernel command line, e.g. "mt.run=mt_basic mt.params=a=1,b=2".
    #[arg(long, default_value = "")]
    append_extra: String,
    /// Page file to use (created with a valid v1 page if missing, kept);
    /// default: a fresh /dev/shm/migtime-<pid>-... file, removed at the end.
    #[arg(long)]
    page_file: Option<PathBuf>,
    /// Corrupt the page header before boot (bad-magic, bad-version, bad-size).
    #[arg(long, value_enum)]
    bad_page: Option<BadPage>,
    /// The guest must panic: pass only if QEMU exits by itself without
    /// `# MIGTIME-DONE` and the console log contains TEXT.
    #[arg(long, value_name = "TEXT")]
    expect_panic: Option<String>,
}

#[derive(Args)]
pub struct SimArgs {
    #[command(flatten)]
    g: GuestArgs,
    /// Page device: ivshmem-plain (polling) or ivshmem-doorbell (interrupts).
    #[arg(long, value_enum, default_value_t = Mode::Plain)]
    mode: Mode,
    /// Guest programs to run (mt.run), e.g. "mt_migrate:expect=step".
    #[arg(long, default_value = "")]
    guest_run: String,
    /// Module parameters (mt.params), commas for spaces, e.g. "a=1,b=2".
    #[arg(long, default_value = "")]
    params: String,
    /// Extra kernel command line.
    #[arg(long, default_value = "")]
    append_extra: String,
    /// Hold the destination paused this long before writing the page, ms.
    #[arg(long, default_value_t = 0)]
    blackout: u64,
    /// Simulated host clock skew added to Tout, ns.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    skew_ns: i64,
    /// Compensated migration: no extra pause, flag set, delta 0, total unchanged.
    #[arg(long, conflicts_with = "blackout")]
    compensated: bool,
    /// Chain K migrations (A->B->C...); each waits for the next MIGTIME-READY.
    #[arg(long, default_value_t = 1)]
    migrations: u32,
    /// Two migrations back to back, no `cont` in between (seq +2 before the guest runs).
    #[arg(long, conflicts_with_all = ["migrations", "cancel"])]
    no_guest_run_between: bool,
    /// Start a throttled migration and cancel it: source resumes, page unchanged.
    #[arg(long)]
    cancel: bool,
    /// Misbehave: header kinds are written before boot, the others on the
    /// (last) destination page.
    #[arg(long, value_enum)]
    bad_page: Option<BadPage>,
    /// Host-side check of the guest's ack area after the last hop.
    #[arg(long, value_enum)]
    expect_outcome: Option<ExpectOutcome>,
    /// How long to wait for the guest's ack after `cont`, seconds.
    #[arg(long, default_value_t = 20.0)]
    ack_timeout: f64,
    /// Scenario name for summary.json.
    #[arg(long, default_value = "sim")]
    scenario: String,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL", required_unless_present = "list")]
    kernel: Option<PathBuf>,
    /// Guest initramfs.
    #[arg(long, env = "MIGTIME_INITRD", required_unless_present = "list")]
    initrd: Option<PathBuf>,
    /// Folder for the scenarios' run folders [default: runs/check-<time>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Run only this scenario (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// List the scenarios (those selected by --only or --suite) and exit.
    #[arg(long)]
    list: bool,
    /// Without --only: run (or list) the scenarios of this kernel's suite.
    #[arg(long, value_enum)]
    suite: Option<Kernel>,
    /// Keep the run folders of passing scenarios too.
    #[arg(long, alias = "keep")]
    keep_all: bool,
    /// Time limit per scenario, seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Guest vCPUs of every scenario (-smp, at least 2); a scenario may ask for more.
    #[arg(long, default_value_t = crate::vm::qemu::DEFAULT_VCPUS)]
    vcpus: u32,
}

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
            vmm: Vmm::Simulator,
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
        crate::suite::check::list(&a.only, a.suite);
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
        mode: a.mode,
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
