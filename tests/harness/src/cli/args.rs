// SPDX-License-Identifier: GPL-2.0

//! The command line's definitions (clap); `mod.rs` turns them into the
//! library's options and runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::record::ack::ExpectOutcome;
use crate::suite::scenario::Kernel;
use crate::vm::page::BadPage;
use crate::vm::qemu::Mode;

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
    /// `make demo`: on the patched QEMU's -device migtime (MIGTIME_QEMU_DEVICE or
    /// MIGTIME_QEMU), a live migration (destination held paused --blackout) and a restore
    /// from a `migrate file:` save --restore-pause later, each without migtime
    /// (mt.load=0) and with it; the guest's wall clock against the host's.
    ///
    /// The guest runs mt_clock (a CLOCK sample every --period-ms); a thread
    /// reads the results files every 2 ms and pairs each sample with the
    /// host's CLOCK_REALTIME. Prints a table (offset change, step applied and the
    /// guest's stale window, cancel-on-set timer, NTP state, the Tout QEMU wrote) and
    /// writes OUT/demo.png (a panel per kind) and OUT/demo.json. Then a real chronyd in the guest, alone against chronyd with
    /// migtime and its companion, across the same migration to a host 0.5 s ahead
    /// and 50 ppm faster: a table of guest - host after the resume (the host's UDP
    /// probe) and OUT/demo-chrony.png (--no-chrony leaves this part out).
    Demo(DemoArgs),
    /// `make bench`: numbers, not tests. N live migrations per configuration
    /// (baseline without the module, migtime polling, migtime doorbell, the
    /// userspace comparator mt_daemon, QEMU's -device migtime live and file
    /// restore), plus one quiet boot each for the
    /// idle cost; writes OUT/bench.json and OUT/bench.md and prints the
    /// markdown table. Never fails on timing; exits 1 only when a
    /// configuration produced no numbers.
    Bench(BenchArgs),
}

#[derive(Args)]
pub struct BenchArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL")]
    pub kernel: PathBuf,
    /// Guest initramfs.
    #[arg(long, env = "MIGTIME_INITRD")]
    pub initrd: PathBuf,
    /// Output folder (bench.json, bench.md, bench.log, runs/).
    #[arg(long, default_value = "build/bench")]
    pub out_dir: PathBuf,
    /// Migrations per configuration (the default takes about 10 min under TCG on 2 cores).
    #[arg(long, default_value_t = 12)]
    pub runs: u32,
    /// Migrations chained in one boot (1..=20).
    #[arg(long, default_value_t = 6)]
    pub hops_per_boot: u32,
    /// Blackout per migration, ms.
    #[arg(long, default_value_t = 1000)]
    pub blackout: u64,
    /// Quiet window for the idle cost, seconds (0: skip).
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
    /// mt_clock sample period, ms.
    #[arg(long, default_value_t = 20)]
    pub period_ms: u64,
    /// mt_clock guest time before each migration, ms.
    #[arg(long, default_value_t = 1000)]
    pub before_ms: u64,
    /// mt_clock guest time after each migration, ms (>= 2000: the clock error is read 1-2 s after resume).
    #[arg(long, default_value_t = 2500)]
    pub after_ms: u64,
    /// Poll period of the userspace comparator (mt.daemon), ms.
    #[arg(long, default_value_t = 100)]
    pub daemon_ms: u32,
    /// Only these configurations (baseline, doorbell, fallback, polling, daemon, debian,
    /// device, device-restore, and the time-daemon cases chrony-alone, chrony-vmclock, chrony-migtime; repeatable).
    #[arg(long)]
    pub only: Vec<String>,
    /// Runs of each time-daemon case per destination clock (same clock, +0.5 s, -0.5 s with
    /// another rate): a real chronyd in the guest, 2 s blackout; 0 leaves them out.
    #[arg(long, default_value_t = 1)]
    pub chrony_runs: u32,
    /// Window after the migration for chronyd alone (a), seconds.
    #[arg(long, default_value_t = 240)]
    pub chrony_window: u64,
    /// How long (b) and (c) keep measuring once chronyd is synchronised again, seconds.
    #[arg(long, default_value_t = 95)]
    pub chrony_hold: u64,
    /// Time limit per boot, seconds (plus 20 s per migration).
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// A distribution kernel (e.g. Debian's stock vmlinuz) for the "debian" configuration.
    #[arg(long, requires = "debian_initrd")]
    pub debian_kernel: Option<PathBuf>,
    /// The initramfs with migtime.ko built for `--debian-kernel`.
    #[arg(long, requires = "debian_kernel")]
    pub debian_initrd: Option<PathBuf>,
    /// Leave out the `-device migtime` configurations (device, device-restore), which run
    /// the patched QEMU named by MIGTIME_QEMU_DEVICE (left out anyway without it).
    #[arg(long)]
    pub no_device: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL")]
    pub kernel: PathBuf,
    /// Guest initramfs.
    #[arg(long, env = "MIGTIME_INITRD")]
    pub initrd: PathBuf,
    /// Output folder (demo.png, demo.json, runs/).
    #[arg(long, default_value = "build/demo")]
    pub out_dir: PathBuf,
    /// Blackout: how long the live migration's destination stays paused, ms (also the
    /// chronyd part's).
    #[arg(long, default_value_t = 2000)]
    pub blackout: u64,
    /// How long the file restore waits, with the guest saved and no QEMU running, before a
    /// new QEMU loads the save, ms.
    #[arg(long, default_value_t = 20000)]
    pub restore_pause: u64,
    /// Module parameters for the migtime runs (mt.params), e.g. "max_restore_ms=60000".
    #[arg(long, default_value = "")]
    pub params: String,
    /// mt_clock sample period, ms (also bounds the read-latency error bar).
    #[arg(long, default_value_t = 20)]
    pub period_ms: u64,
    /// Guest time sampled before asking for the migration, ms.
    #[arg(long, default_value_t = 3000)]
    pub before_ms: u64,
    /// Guest time sampled after the migration, ms.
    #[arg(long, default_value_t = 5000)]
    pub after_ms: u64,
    /// Time limit per run, seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// Seconds observed after the migration in the second part, a real chronyd alone
    /// against chronyd with migtime (two runs of about 1.5 + this each).
    #[arg(long, default_value_t = 120)]
    pub chrony_window: u64,
    /// Leave out the chronyd part.
    #[arg(long)]
    pub no_chrony: bool,
}

#[derive(Args, Clone)]
pub struct GuestArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL")]
    pub kernel: PathBuf,
    /// Guest initramfs (cpio, as scripts/mkinitramfs builds it).
    #[arg(long, env = "MIGTIME_INITRD")]
    pub initrd: PathBuf,
    /// Run folder for logs and results [default: runs/<command>-<time>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Overall time limit, seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// Guest vCPUs (-smp; TCG runs multi-threaded).
    #[arg(long, default_value_t = crate::vm::qemu::DEFAULT_VCPUS)]
    pub vcpus: u32,
    /// Give the guest `-device vmclock`.
    #[arg(long)]
    pub vmclock: bool,
    /// Give the guest user-mode networking with the simulated hosts' NTP
    /// server (`mt.ntp=PORT`) and the clock probe.
    #[arg(long)]
    pub net: bool,
}

#[derive(Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub g: GuestArgs,
    /// Page device: ivshmem-plain (polling) or ivshmem-doorbell (interrupts).
    #[arg(long, value_enum, default_value_t = Mode::Plain)]
    pub mode: Mode,
    /// Extra kernel command line, e.g. "mt.run=mt_basic mt.params=a=1,b=2".
    #[arg(long, default_value = "")]
    pub append_extra: String,
    /// Page file to use (created with a valid v1 page if missing, kept);
    /// default: a fresh /dev/shm/migtime-<pid>-... file, removed at the end.
    #[arg(long)]
    pub page_file: Option<PathBuf>,
    /// Corrupt the page header before boot (bad-magic, bad-version, bad-size).
    #[arg(long, value_enum)]
    pub bad_page: Option<BadPage>,
    /// The guest must panic: pass only if QEMU exits by itself without
    /// `# MIGTIME-DONE` and the console log contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub expect_panic: Option<String>,
}

#[derive(Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub g: GuestArgs,
    /// Page device: ivshmem-plain (polling) or ivshmem-doorbell (interrupts).
    #[arg(long, value_enum, default_value_t = Mode::Plain)]
    pub mode: Mode,
    /// Guest programs to run (mt.run), e.g. "mt_migrate:expect=step".
    #[arg(long, default_value = "")]
    pub guest_run: String,
    /// Module parameters (mt.params), commas for spaces, e.g. "a=1,b=2".
    #[arg(long, default_value = "")]
    pub params: String,
    /// Extra kernel command line.
    #[arg(long, default_value = "")]
    pub append_extra: String,
    /// Hold the destination paused this long before writing the page, ms.
    #[arg(long, default_value_t = 0)]
    pub blackout: u64,
    /// Simulated host clock skew added to Tout, ns.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub skew_ns: i64,
    /// Compensated migration: no extra pause, flag set, delta 0, total unchanged.
    #[arg(long, conflicts_with = "blackout")]
    pub compensated: bool,
    /// Chain K migrations (A->B->C...); each waits for the next MIGTIME-READY.
    #[arg(long, default_value_t = 1)]
    pub migrations: u32,
    /// Two migrations back to back, no `cont` in between (seq +2 before the guest runs).
    #[arg(long, conflicts_with_all = ["migrations", "cancel"])]
    pub no_guest_run_between: bool,
    /// Start a throttled migration and cancel it: source resumes, page unchanged.
    #[arg(long)]
    pub cancel: bool,
    /// Misbehave: header kinds are written before boot, the others on the
    /// (last) destination page.
    #[arg(long, value_enum)]
    pub bad_page: Option<BadPage>,
    /// Host-side check of the guest's ack area after the last hop.
    #[arg(long, value_enum)]
    pub expect_outcome: Option<ExpectOutcome>,
    /// How long to wait for the guest's ack after `cont`, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub ack_timeout: f64,
    /// Scenario name for summary.json.
    #[arg(long, default_value = "sim")]
    pub scenario: String,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Guest kernel (bzImage).
    #[arg(long, env = "MIGTIME_KERNEL", required_unless_present = "list")]
    pub kernel: Option<PathBuf>,
    /// Guest initramfs.
    #[arg(long, env = "MIGTIME_INITRD", required_unless_present = "list")]
    pub initrd: Option<PathBuf>,
    /// Folder for the scenarios' run folders [default: runs/check-<time>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Run only this scenario (repeatable).
    #[arg(long)]
    pub only: Vec<String>,
    /// List the scenarios (those selected by --only or --suite) and exit.
    #[arg(long)]
    pub list: bool,
    /// Without --only: run (or list) the scenarios of this kernel's suite.
    #[arg(long, value_enum)]
    pub suite: Option<Kernel>,
    /// Keep the run folders of passing scenarios too.
    #[arg(long, alias = "keep")]
    pub keep_all: bool,
    /// Time limit per scenario, seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// Guest vCPUs of every scenario (-smp, at least 2); a scenario may ask for more.
    #[arg(long, default_value_t = crate::vm::qemu::DEFAULT_VCPUS)]
    pub vcpus: u32,
    /// The Debian image with chrony (scripts/build-debian-image --daemon chrony) for the
    /// image-chrony scenario.
    #[arg(long)]
    pub image_chrony: Option<PathBuf>,
    /// The Debian image with systemd-timesyncd, for image-timesyncd.
    #[arg(long)]
    pub image_timesyncd: Option<PathBuf>,
}
