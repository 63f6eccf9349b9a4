// SPDX-License-Identifier: GPL-2.0

//! migtime-companion: tells the guest's time daemon to re-sync after a live migration.
//! See `migtime-companion --help` (the man page) and companion/README.md.

mod io;
mod logic;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use io::{MigtimeDev, MigtimeRead, VmclockDev};
use log::{debug, info, trace, warn, LevelFilter};
use logic::{Backoff, Dedup, MigtimeEvent, Trigger, Verdict, VmclockPage};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::path::PathBuf;
use std::time::Duration;

/// With notifications, how long (at most) the VMClock descriptor stays out of `poll()` after a
/// wakeup whose read found no disruption; `--vmclock-poll-ms` if shorter. A descriptor that is
/// readable without a new notification (a regular file, a driver that reports readiness it
/// does not have, a hypervisor rewriting the clock fields faster than that) is thus re-read at
/// most this often instead of in a busy loop; a disruption in the pause is seen when it ends.
const NOTIFY_RECHECK_MS: u64 = 250;

const ABOUT: &str =
    "Make the guest's time daemon drop stale samples and re-sync after a live migration";

const LONG_ABOUT: &str = "\
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
    marker) and is taken once per migration.

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
    companion acts alone at the deadline, and a migtime event within
    --window-ms after that is the same migration: logged, not acted on again.
    A marker change within --window-ms after a migtime action is dropped
    likewise. Without /dev/migtime (no module bound) a marker change acts at
    once. Each action pairs with at most one signal of the other kind.

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
    /dev/migtime, /dev/vmclock0, /run/chrony/chronyd.sock
    migtime-companion.service (systemd unit shipped beside the source)

EXAMPLES
    migtime-companion
    migtime-companion --chrony never --on-event 'systemctl restart ntpsec'
    migtime-companion --log-level debug --vmclock-poll-ms 100

SEE ALSO
    chronyc(1), chrony.conf(5), adjtimex(2), timerfd_create(2)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ChronyMode {
    /// Talk to chronyd when its command socket exists.
    Auto,
    /// Always run chronyc (a missing socket is a logged failure).
    Always,
    /// Never talk to chronyd.
    Never,
}

#[derive(Parser, Debug)]
#[command(name = "migtime-companion", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Opts {
    /// migtime event device.
    #[arg(long, default_value = "/dev/migtime", value_name = "PATH")]
    device: PathBuf,
    /// VMClock device.
    #[arg(long, default_value = "/dev/vmclock0", value_name = "PATH")]
    vmclock: PathBuf,
    /// Do not watch VMClock.
    #[arg(long)]
    no_vmclock: bool,
    /// Do not watch /dev/migtime.
    #[arg(long)]
    no_migtime: bool,
    /// VMClock read period when the device does not notify, ms (when it does: the pause after a
    /// wakeup that found no disruption, at most 250).
    #[arg(long, default_value_t = 250, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    vmclock_poll_ms: u64,
    /// How long a VMClock disruption waits for the matching migtime event, ms (see DE-DUPLICATION).
    #[arg(long, default_value_t = 1500, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    window_ms: u64,
    /// At start, act on an earlier migtime event only if at most this old, s.
    #[arg(long, default_value_t = 60, value_name = "S")]
    catch_up_s: u64,
    /// First reopen delay for a missing device, ms.
    #[arg(long, default_value_t = 200, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    reopen_min_ms: u64,
    /// Largest reopen delay, ms.
    #[arg(long, default_value_t = 5000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    reopen_max_ms: u64,
    /// Whether to drive chronyd.
    #[arg(long, value_enum, default_value_t = ChronyMode::Auto)]
    chrony: ChronyMode,
    /// chronyc binary.
    #[arg(long, default_value = "chronyc", value_name = "PATH")]
    chronyc: PathBuf,
    /// chronyd's command socket.
    #[arg(long, default_value = "/run/chrony/chronyd.sock", value_name = "PATH")]
    chrony_socket: PathBuf,
    /// Arguments of chronyd's `makestep` (re-armed step allowance); "" to skip.
    #[arg(long, default_value = "0.1 1", value_name = "THRESHOLD LIMIT")]
    makestep: String,
    /// Arguments of chronyd's `burst`; "" to skip.
    #[arg(long, default_value = "4/4", value_name = "GOOD/MAX")]
    burst: String,
    /// Shell command run after each action (for daemons other than chronyd).
    #[arg(long, value_name = "CMD")]
    on_event: Option<String>,
    /// Timeout for chronyc and --on-event, ms.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    command_timeout_ms: u64,
    /// Skip the kernel NTP reset and the cancel-on-set nudge of a VMClock action (for tests on a
    /// shared host, or when another agent resets the clock state).
    #[arg(long)]
    no_clock_actions: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info", value_name = "LEVEL", value_parser = parse_level)]
    log_level: LevelFilter,
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("unknown log level {s:?} (error, warn, info, debug, trace, off)"))
}

/// A minimal stderr logger: `migtime-companion: LEVEL: message` with CLOCK_MONOTONIC seconds,
/// which is what the journal (which adds wall time) and the test harness want.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let ms = io::monotonic_ms();
            eprintln!(
                "migtime-companion[{}.{:03}]: {}: {}",
                ms / 1000,
                ms % 1000,
                r.level().as_str().to_lowercase(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

/// The configured actions.
struct Actor {
    chrony: Option<io::Chrony>,
    hook: Option<String>,
    timeout: Duration,
    clock_actions: bool,
    /// Actions taken (for the log).
    actions: u64,
}

impl Actor {
    fn act(&mut self, trigger: Trigger, ev: Option<&MigtimeEvent>, window_ms: u64) {
        self.actions += 1;
        let (what, seq, marker, local_reset) = match trigger {
            Trigger::Migtime {
                migration_seq,
                covers_marker,
            } => {
                let ev = ev.expect("a migtime trigger comes with its event");
                let acted = logic::stepped(ev) || logic::outcome_name(ev) == "notified";
                let what = format!(
                    "migtime event {} outcome={} applied_ns={} residual_ns={}{}",
                    ev.event,
                    logic::outcome_name(ev),
                    ev.applied_ns,
                    ev.residual_ns,
                    covers_marker.map_or(String::new(), |m| format!(
                        " (also covers VMClock marker {m:#x})"
                    )),
                );
                (what, Some(migration_seq), covers_marker, !acted)
            }
            Trigger::Vmclock { marker, waited } => {
                (
                    if waited {
                        format!("VMClock disruption marker={marker:#x}, no migtime event within {window_ms} ms")
                    } else {
                        format!("VMClock disruption marker={marker:#x} (no /dev/migtime: acting at once)")
                    },
                    None,
                    Some(marker),
                    true,
                )
            }
        };
        let seq_s = seq.map_or("none".to_string(), |s| s.to_string());
        info!("action {}: migration_seq={seq_s}: {what}", self.actions);
        if local_reset && !self.clock_actions {
            info!("migration_seq={seq_s}: kernel NTP reset and nudge skipped (--no-clock-actions)");
        }
        if local_reset && self.clock_actions {
            match io::ntp_reset() {
                Ok(old) => info!("migration_seq={seq_s}: kernel NTP state reset (STA_UNSYNC, maxerror/esterror at limit; old status {old:#x})"),
                Err(e) => io::warn_failed("NTP state reset", &e),
            }
            match io::cancel_on_set_nudge() {
                Ok(()) => {
                    info!("migration_seq={seq_s}: cancel-on-set timers woken (+1 ns ADJ_SETOFFSET)")
                }
                Err(e) => io::warn_failed("cancel-on-set nudge", &e),
            }
        }
        if let Some(c) = &self.chrony {
            match c.resync() {
                Ok(Some(out)) => info!(
                    "migration_seq={seq_s}: chronyd: {} -> {out}",
                    c.commands.join("; ")
                ),
                Ok(None) => debug!(
                    "migration_seq={seq_s}: no chronyd socket at {}, skipped",
                    c.socket.display()
                ),
                Err(e) => io::warn_failed("chronyd re-sync", &e),
            }
        }
        if let Some(hook) = &self.hook {
            let env = [
                (
                    "MIGTIME_TRIGGER",
                    if seq.is_some() { "migtime" } else { "vmclock" }.to_string(),
                ),
                (
                    "MIGTIME_SEQ",
                    seq.map(|s| s.to_string()).unwrap_or_default(),
                ),
                (
                    "MIGTIME_OUTCOME",
                    ev.map(|e| logic::outcome_name(e).to_string())
                        .unwrap_or_default(),
                ),
                (
                    "MIGTIME_APPLIED_NS",
                    ev.map(|e| e.applied_ns.to_string()).unwrap_or_default(),
                ),
                (
                    "MIGTIME_MARKER",
                    marker.map(|m| m.to_string()).unwrap_or_default(),
                ),
            ];
            match io::run_hook(hook, &env, self.timeout) {
                Ok(out) => info!(
                    "migration_seq={seq_s}: --on-event ran{}",
                    if out.is_empty() {
                        String::new()
                    } else {
                        format!(": {out}")
                    }
                ),
                Err(e) => io::warn_failed("--on-event", &e),
            }
        }
    }
}

/// One watched device: open, or closed until `retry_at`.
enum Slot<D> {
    Open(D),
    Closed {
        retry_at: u64,
        backoff: Backoff,
        reported: bool,
    },
    Disabled,
}

impl<D> Slot<D> {
    fn closed(min: u64, max: u64, now: u64) -> Self {
        Slot::Closed {
            retry_at: now,
            backoff: Backoff::new(min, max),
            reported: false,
        }
    }
}

fn run(o: Opts) -> Result<()> {
    if o.no_migtime && o.no_vmclock {
        bail!("nothing to watch: both --no-migtime and --no-vmclock given");
    }
    let chrony = (o.chrony != ChronyMode::Never).then(|| {
        let mut commands = vec!["reset sources".to_string()];
        if !o.makestep.trim().is_empty() {
            commands.push(format!("makestep {}", o.makestep.trim()));
        }
        if !o.burst.trim().is_empty() {
            commands.push(format!("burst {}", o.burst.trim()));
        }
        io::Chrony {
            chronyc: o.chronyc.clone(),
            socket: o.chrony_socket.clone(),
            required: o.chrony == ChronyMode::Always,
            commands,
            timeout: Duration::from_millis(o.command_timeout_ms),
        }
    });
    let mut actor = Actor {
        chrony,
        hook: o.on_event.clone(),
        timeout: Duration::from_millis(o.command_timeout_ms),
        clock_actions: !o.no_clock_actions,
        actions: 0,
    };
    let start = io::monotonic_ms();
    let mut dedup = Dedup::new(o.window_ms, o.catch_up_s.saturating_mul(1000), start);
    let (rmin, rmax) = (o.reopen_min_ms, o.reopen_max_ms);
    let mut mig: Slot<MigtimeDev> = if o.no_migtime {
        Slot::Disabled
    } else {
        Slot::closed(rmin, rmax, start)
    };
    let mut vmc: Slot<VmclockDev> = if o.no_vmclock {
        Slot::Disabled
    } else {
        Slot::closed(rmin, rmax, start)
    };
    let mut vmc_next_read = start;
    // With notifications: the VMClock descriptor is left out of poll() until then.
    let mut vmc_poll_after = start;
    let notify_recheck_ms = o.vmclock_poll_ms.min(NOTIFY_RECHECK_MS);
    // The event that triggered the latest migtime action, for the action log.
    info!(
        "started: migtime {}, VMClock {}, window {} ms, chronyd {:?}",
        if o.no_migtime {
            "off".to_string()
        } else {
            o.device.display().to_string()
        },
        if o.no_vmclock {
            "off".to_string()
        } else {
            o.vmclock.display().to_string()
        },
        o.window_ms,
        o.chrony
    );

    loop {
        let now = io::monotonic_ms();

        // (Re)open what is due.
        if let Slot::Closed {
            retry_at,
            backoff,
            reported,
        } = &mut mig
        {
            if now >= *retry_at {
                match MigtimeDev::open(&o.device) {
                    Ok(d) => {
                        io::log_opened("migtime", &o.device, "");
                        mig = Slot::Open(d);
                    }
                    Err(e) => {
                        let d = backoff.next_delay();
                        io::log_missing(&o.device, &e, !*reported, d);
                        *reported = true;
                        *retry_at = now + d;
                    }
                }
            }
        }
        if let Slot::Closed {
            retry_at,
            backoff,
            reported,
        } = &mut vmc
        {
            if now >= *retry_at {
                match VmclockDev::open(&o.vmclock) {
                    Ok((d, page)) => {
                        io::log_opened(
                            "VMClock",
                            &o.vmclock,
                            &format!(
                                " (fd {}, marker {:#x}, flags {:#x}, {})",
                                d.raw_fd(),
                                page.disruption_marker,
                                page.flags,
                                if d.notifications {
                                    "notifications: poll"
                                } else {
                                    "no notifications: periodic reads"
                                }
                            ),
                        );
                        let v = dedup.on_vmclock(
                            page.disruption_key(),
                            page.disruption_marker,
                            matches!(mig, Slot::Open(_)),
                            now,
                        );
                        handle_verdict(&mut actor, v, None, dedup.window_ms());
                        vmc_next_read = now + o.vmclock_poll_ms;
                        vmc_poll_after = now;
                        vmc = Slot::Open(d);
                    }
                    Err(e) => {
                        let d = backoff.next_delay();
                        io::log_missing(&o.vmclock, &e, !*reported, d);
                        *reported = true;
                        *retry_at = now + d;
                    }
                }
            }
        }

        // Drain /dev/migtime (also right after opening: the latest event may predate us).
        let mut mig_gone = false;
        if let Slot::Open(d) = &mut mig {
            loop {
                match d.read() {
                    Ok(MigtimeRead::Event(ev)) => {
                        let now = io::monotonic_ms();
                        let ev_ms = u64::try_from(ev.monotonic_ns / 1_000_000).unwrap_or(0);
                        let v = dedup.on_migtime(ev.migration_seq, ev_ms, now);
                        if !matches!(v, Verdict::Act(_)) {
                            info!(
                                "migration_seq={}: migtime event {} outcome={}: {}",
                                ev.migration_seq,
                                ev.event,
                                logic::outcome_name(&ev),
                                describe(v)
                            );
                        }
                        handle_verdict(&mut actor, v, Some(&ev), dedup.window_ms());
                    }
                    Ok(MigtimeRead::Empty) => break,
                    Ok(MigtimeRead::Gone) => {
                        mig_gone = true;
                        break;
                    }
                    Err(e) => {
                        warn!("{e:#}; reopening");
                        mig_gone = true;
                        break;
                    }
                }
            }
        }
        if mig_gone {
            info!(
                "{}: device gone (unbound or module unloading); reopening with backoff",
                o.device.display()
            );
            mig = Slot::closed(rmin, rmax, io::monotonic_ms() + rmin);
        }

        // VMClock periodic read.
        let now = io::monotonic_ms();
        let mut vmc_gone = false;
        if let Slot::Open(d) = &mut vmc {
            if !d.notifications && now >= vmc_next_read {
                vmc_next_read = now + o.vmclock_poll_ms;
                vmc_gone |= vmclock_input(
                    d,
                    false,
                    &mut dedup,
                    &mut actor,
                    matches!(mig, Slot::Open(_)),
                )
                .is_none();
            }
        }
        if vmc_gone {
            vmc = Slot::closed(rmin, rmax, io::monotonic_ms() + rmin);
        }

        if let Some(Verdict::Act(t)) = dedup.on_tick(io::monotonic_ms()) {
            actor.act(t, None, dedup.window_ms());
        }

        // Sleep until something happens or the next deadline.
        let now = io::monotonic_ms();
        let mut deadline = u64::MAX;
        for s in [slot_retry(&mig), slot_retry(&vmc), dedup.next_deadline()]
            .into_iter()
            .flatten()
        {
            deadline = deadline.min(s);
        }
        let vmc_polled = match &vmc {
            Slot::Open(d) if !d.notifications => {
                deadline = deadline.min(vmc_next_read);
                false
            }
            Slot::Open(_) if now < vmc_poll_after => {
                deadline = deadline.min(vmc_poll_after);
                false
            }
            Slot::Open(_) => true,
            _ => false,
        };
        let timeout = if deadline == u64::MAX {
            PollTimeout::NONE
        } else {
            PollTimeout::try_from(deadline.saturating_sub(now).min(60_000))
                .unwrap_or(PollTimeout::MAX)
        };
        let mut fds = Vec::new();
        let mut who = Vec::new();
        if let Slot::Open(d) = &mig {
            fds.push(PollFd::new(d.fd(), PollFlags::POLLIN));
            who.push(0);
        }
        if let Slot::Open(d) = &vmc {
            if vmc_polled {
                fds.push(PollFd::new(d.fd(), PollFlags::POLLIN));
                who.push(1);
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("poll: {e}"),
        }
        let revents: Vec<(i32, PollFlags)> = who
            .iter()
            .zip(fds.iter())
            .map(|(w, f)| (*w, f.revents().unwrap_or(PollFlags::empty())))
            .collect();
        drop(fds);
        for (w, r) in revents {
            if w == 1 && !r.is_empty() {
                // Notification (or HUP/ERR): a read re-arms the driver's poll.
                let mut gone =
                    r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL);
                if let Slot::Open(d) = &mut vmc {
                    if !gone {
                        match vmclock_input(
                            d,
                            true,
                            &mut dedup,
                            &mut actor,
                            matches!(mig, Slot::Open(_)),
                        ) {
                            None => gone = true,
                            Some((p, Verdict::Unchanged)) => {
                                // Nothing to act on: do not poll again before the pause ends
                                // (an always-readable descriptor would otherwise spin).
                                vmc_poll_after = io::monotonic_ms() + notify_recheck_ms;
                                trace!(
                                    "VMClock poll wakeup: no disruption (marker {:#x}, seq_count {}); not polled again for {notify_recheck_ms} ms",
                                    p.disruption_marker,
                                    p.seq_count
                                );
                            }
                            Some(_) => {}
                        }
                    } else {
                        // A device without notifications answers POLLHUP: fall back to reads.
                        d.notifications = false;
                        gone = false;
                        debug!("VMClock poll gave {r:?}; switching to periodic reads");
                    }
                }
                if gone {
                    vmc = Slot::closed(rmin, rmax, io::monotonic_ms() + rmin);
                }
            }
            // migtime: POLLIN/POLLHUP are handled by the drain at the top of the loop.
        }
    }
}

/// Reads VMClock once and feeds the state machine: the page and the verdict, `None` when the
/// device went away.
fn vmclock_input(
    d: &mut VmclockDev,
    via_pread: bool,
    dedup: &mut Dedup,
    actor: &mut Actor,
    migtime_open: bool,
) -> Option<(VmclockPage, Verdict)> {
    let page = if via_pread { d.read_pread() } else { d.read() };
    match page {
        Ok(p) => {
            let v = dedup.on_vmclock(
                p.disruption_key(),
                p.disruption_marker,
                migtime_open,
                io::monotonic_ms(),
            );
            if !matches!(v, Verdict::Unchanged | Verdict::Act(_)) {
                info!(
                    "VMClock marker {:#x} (seq_count {}): {}",
                    p.disruption_marker,
                    p.seq_count,
                    describe(v)
                );
            }
            handle_verdict(actor, v, None, dedup.window_ms());
            Some((p, v))
        }
        Err(e) => {
            warn!("VMClock: {e:#}; reopening");
            None
        }
    }
}

fn slot_retry<D>(s: &Slot<D>) -> Option<u64> {
    match s {
        Slot::Closed { retry_at, .. } => Some(*retry_at),
        _ => None,
    }
}

fn describe(v: Verdict) -> String {
    match v {
        Verdict::Act(t) => format!("act ({t:?})"),
        Verdict::Baseline => "baseline (first read)".into(),
        Verdict::Unchanged => "unchanged".into(),
        Verdict::Wait { deadline_ms } => format!(
            "disruption: waiting for the migtime event until t={}.{:03}",
            deadline_ms / 1000,
            deadline_ms % 1000
        ),
        Verdict::Merged => "another disruption while one is pending: merged".into(),
        Verdict::Duplicate { acted } => {
            format!("duplicate: this migration was already acted on ({acted:?}); not acting again")
        }
        Verdict::Stale => {
            "recorded before this companion started and older than --catch-up-s: not acted on"
                .into()
        }
    }
}

fn handle_verdict(actor: &mut Actor, v: Verdict, ev: Option<&MigtimeEvent>, window_ms: u64) {
    if let Verdict::Act(t) = v {
        actor.act(t, ev, window_ms);
    }
}

fn main() {
    let o = Opts::parse();
    log::set_max_level(o.log_level);
    let _ = log::set_logger(&Logger);
    if let Err(e) = run(o) {
        log::error!("{e:#}");
        std::process::exit(1);
    }
}
