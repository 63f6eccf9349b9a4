// SPDX-License-Identifier: GPL-2.0

//! The command line: options (clap) and the manual that `--help` prints.

use clap::{Parser, ValueEnum};
use log::LevelFilter;
use std::path::PathBuf;

/// One line for `-h`.
pub const ABOUT: &str =
    "Make the guest's time daemon drop stale samples and re-sync after a live migration";

/// The manual, for `--help`.
pub const LONG_ABOUT: &str = "\
NAME
    migtime-companion - re-sync the guest's time daemon after a live migration

SYNOPSIS
    migtime-companion [OPTIONS]

DESCRIPTION
    After a live migration the guest runs on another host: the migtime kernel
    module steps CLOCK_REALTIME by the host-supplied delta, but the time daemon
    (chronyd) still holds samples and a frequency estimate that describe the old
    host, and chronyd ignores the kernel's STA_UNSYNC. This program closes that
    gap. It waits (poll) on two signals:

    /dev/migtime    one 64-byte record (struct migtime_event) per migration the
                    module handled; carries migration_seq and the outcome.
    /dev/vmclock0   the VMClock page (Linux ptp_vmclock; QEMU -device vmclock,
                    Firecracker, EC2): its disruption_marker (and, where
                    present, vm_generation_counter) changes on every migration
                    or snapshot restore, but it carries no time delta. When the
                    device notifies (VMCLOCK_FLAG_NOTIFICATION_PRESENT) it is
                    watched with poll() and re-read with pread() on each
                    wakeup; a wakeup that finds no disruption (a clock update,
                    or readiness without a notification) keeps the device out
                    of poll() for min(--vmclock-poll-ms, 250) ms, so nothing
                    spins. Otherwise it is read through its read-only mapping
                    every --vmclock-poll-ms with the seq_count retry.

ACTIONS
    On a migtime event (the module already stepped the clock, reset the
    kernel's NTP state and woke TFD_TIMER_CANCEL_ON_SET timers):
        chronyd: reset sources; makestep 0.1 1; burst 4/4
        then --on-event CMD, if given.
    If the module refused or failed to act, the VMClock actions below are
    taken as well.

    On a VMClock disruption with no migtime event for it (the step is unknown):
        kernel NTP state reset (adjtimex: STA_UNSYNC, maxerror and esterror
        at NTP_PHASE_LIMIT), then a +1 ns clock_adjtime(ADJ_SETOFFSET) nudge
        that wakes every cancel-on-set timer (systemd-timesyncd re-syncs on
        it), then the chronyd commands and --on-event as above.

    `reset sources' drops the samples taken on the old host; `makestep 0.1 1'
    re-arms chronyd's step allowance (cloud images' `makestep 1 3' is used up
    after boot) so that the first update from the new host steps instead of
    slewing for a minute; `burst 4/4' takes those samples at once.
    Every action is logged with the event's migration_seq (or the VMClock
    marker) and is taken once per migration (a step the module applies
    after the companion acted alone is a second, re-sync action).

    `makestep 0.1 1' replaces the admin's makestep. After chronyd's next
    clock update it leaves the step limit at 0, which is what a positive
    limit (`makestep 1 3') is once used up after boot. A negative limit
    (`makestep 1 -1': step whenever the error is over 1 s) would be lost:
    the companion reads it from --chrony-conf (following include and
    confdir; the last makestep wins) and gives it back with chronyc once
    `chronyc -c tracking' shows a clock update after the re-sync (read
    every second; given back anyway after 120 s).

    chronyd is driven by running its own client, chronyc, over the unix
    command socket (`chronyc -n -m -h /run/chrony/chronyd.sock ...'). chronyc
    ships in the same package as chronyd, so it speaks the daemon's cmdmon
    protocol version wherever the socket exists; the binary protocol is not
    re-implemented here.

DE-DUPLICATION
    QEMU bumps the VMClock marker in post_load, before the guest resumes; the
    migtime event follows 50-300 ms after resume (the module's poll period,
    or its doorbell; at worst its safety poll, max(poll_ms, 1000) ms). With
    /dev/migtime open, a marker change therefore waits up to --window-ms
    (default 1500: the 1000 ms safety poll plus scheduling slack) for the
    migtime event, which then acts once for both. If none comes, the
    companion acts alone at the deadline. A migtime event that follows is
    the same migration: if the module stepped the clock, the companion acts
    again, as a re-sync, because chronyd's samples since the first action
    span the kernel's step (every step the module applies reaches chronyd);
    if the module left the clock alone, the event is logged and not acted on.
    A marker change within --window-ms after a migtime action is dropped.
    Without /dev/migtime (no module bound) a marker change acts at once.
    Each action pairs with at most one signal of the other kind. A record is
    known by its migration_seq, outcome and applied step together, so a
    failed check followed by a stepped one for the same migration_seq is
    acted on twice.

REFUSALS
    An event whose outcome left the clock alone (refused-*, failed with
    nothing applied) makes the companion reset the kernel's NTP state, nudge
    cancel-on-set timers and re-sync chronyd. A host writing a stream of
    bad pages would keep chronyd unsynchronised that way, so such an event
    is acted on at most once per --refusal-holdoff-s (default 60 s); the
    ones within the hold-off are logged (the first at info, the rest at
    debug) and not acted on. Steps and VMClock disruptions are never held
    off.

DEVICE LIFETIME
    A missing or vanished device (module not loaded, device unbound: read
    returns ENODEV, poll POLLHUP) is reopened with exponential backoff
    (--reopen-min-ms doubling to --reopen-max-ms); there is no busy loop.
    While /dev/migtime is open it holds a reference on the module, so
    `rmmod migtime' fails with EBUSY: stop the service first (or unbind the
    device in sysfs, which the companion survives).
    At start, an event the module recorded earlier is acted on only if it is
    at most --catch-up-s old (a migration while the companion was restarting).

ENVIRONMENT OF --on-event
    MIGTIME_TRIGGER   migtime or vmclock
    MIGTIME_SEQ       the event's migration_seq (empty for vmclock)
    MIGTIME_OUTCOME   stepped, notified, refused-*, failed (empty for vmclock)
    MIGTIME_APPLIED_NS the step applied by the module, ns (empty for vmclock)
    MIGTIME_MARKER    the VMClock disruption_marker (empty if none)

EXIT STATUS
    Runs until killed. 1 on a usage error or an unexpected I/O error.

FILES
    /dev/migtime, /dev/vmclock0, /run/chrony/chronyd.sock,
    /etc/chrony/chrony.conf
    migtime-companion.service (systemd unit shipped beside the source)

EXAMPLES
    migtime-companion
    migtime-companion --chrony never --on-event 'systemctl restart ntpsec'
    migtime-companion --log-level debug --vmclock-poll-ms 100

SEE ALSO
    chronyc(1), chrony.conf(5), adjtimex(2), timerfd_create(2)";

/// `--chrony`: when to drive chronyd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChronyMode {
    /// Talk to chronyd when its command socket exists.
    Auto,
    /// Always run chronyc (a missing socket is a logged failure).
    Always,
    /// Never talk to chronyd.
    Never,
}

/// The options.
#[derive(Parser, Debug)]
#[command(name = "migtime-companion", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Opts {
    /// migtime event device.
    #[arg(long, default_value = "/dev/migtime", value_name = "PATH")]
    pub device: PathBuf,
    /// VMClock device.
    #[arg(long, default_value = "/dev/vmclock0", value_name = "PATH")]
    pub vmclock: PathBuf,
    /// Do not watch VMClock.
    #[arg(long)]
    pub no_vmclock: bool,
    /// Do not watch /dev/migtime.
    #[arg(long)]
    pub no_migtime: bool,
    /// VMClock read period when the device does not notify, ms (when it does: the pause after a
    /// wakeup that found no disruption, at most 250).
    #[arg(long, default_value_t = 250, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub vmclock_poll_ms: u64,
    /// How long a VMClock disruption waits for the matching migtime event, ms (see DE-DUPLICATION).
    #[arg(long, default_value_t = 1500, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub window_ms: u64,
    /// React to migtime events that left the clock alone (refused, failed) at most once per
    /// this many seconds (see REFUSALS); 0: every time.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub refusal_holdoff_s: u64,
    /// At start, act on an earlier migtime event only if at most this old, s.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub catch_up_s: u64,
    /// First reopen delay for a missing device, ms.
    #[arg(long, default_value_t = 200, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub reopen_min_ms: u64,
    /// Largest reopen delay, ms.
    #[arg(long, default_value_t = 5000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub reopen_max_ms: u64,
    /// Whether to drive chronyd.
    #[arg(long, value_enum, default_value_t = ChronyMode::Auto)]
    pub chrony: ChronyMode,
    /// chronyc binary.
    #[arg(long, default_value = "chronyc", value_name = "PATH")]
    pub chronyc: PathBuf,
    /// chronyd's command socket.
    #[arg(long, default_value = "/run/chrony/chronyd.sock", value_name = "PATH")]
    pub chrony_socket: PathBuf,
    /// chronyd's configuration: the admin's `makestep` in it is given back after a re-sync.
    #[arg(long, default_value = "/etc/chrony/chrony.conf", value_name = "PATH")]
    pub chrony_conf: PathBuf,
    /// Arguments of chronyd's `makestep` (re-armed step allowance); "" to skip.
    #[arg(long, default_value = "0.1 1", value_name = "THRESHOLD LIMIT")]
    pub makestep: String,
    /// Arguments of chronyd's `burst`; "" to skip.
    #[arg(long, default_value = "4/4", value_name = "GOOD/MAX")]
    pub burst: String,
    /// Shell command run after each action (for daemons other than chronyd).
    #[arg(long, value_name = "CMD")]
    pub on_event: Option<String>,
    /// Timeout for chronyc and --on-event, ms.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub command_timeout_ms: u64,
    /// Skip the kernel NTP reset and the cancel-on-set nudge of a VMClock action (for tests on a
    /// shared host, or when another agent resets the clock state).
    #[arg(long)]
    pub no_clock_actions: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info", value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: LevelFilter,
}

/// Parses `--log-level`.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("unknown log level {s:?} (error, warn, info, debug, trace, off)"))
}
