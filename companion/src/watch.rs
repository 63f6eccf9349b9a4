// SPDX-License-Identifier: GPL-2.0

//! The wait loop: (re)open the two devices with backoff, drain `/dev/migtime`, read VMClock
//! (periodically, or on `poll()` wakeups when it notifies), hand each signal to
//! [`Dedup`], act on its verdicts, and sleep in `poll()` until the next input or deadline.

use crate::actor::Actor;
use crate::cli::Opts;
use crate::clock::monotonic_ms;
use crate::daemon;
use crate::dedup::{Dedup, EventKey, Verdict};
use crate::migtime::{outcome_name, MigtimeDev, MigtimeEvent, MigtimeRead};
use crate::slot::Slot;
use crate::vmclock::{VmclockDev, VmclockPage};
use anyhow::{bail, Result};
use log::{debug, info, log, trace, warn, Level};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// With notifications, how long (at most) the VMClock descriptor stays out of `poll()` after a
/// wakeup whose read found no disruption; `--vmclock-poll-ms` if shorter. A descriptor that is
/// readable without a new notification (a regular file, a driver that reports readiness it
/// does not have, a hypervisor rewriting the clock fields faster than that) is thus re-read at
/// most this often instead of in a busy loop; a disruption in the pause is seen when it ends.
const NOTIFY_RECHECK_MS: u64 = 250;

/// Runs the companion until killed (or an unexpected error).
pub fn run(o: Opts) -> Result<()> {
    if o.no_migtime && o.no_vmclock {
        bail!("nothing to watch: both --no-migtime and --no-vmclock given");
    }
    let mut w = Watcher::new(o);
    w.log_start();
    loop {
        w.iterate()?;
    }
}

/// The loop's state.
struct Watcher {
    o: Opts,
    actor: Actor,
    dedup: Dedup,
    mig: Slot<MigtimeDev>,
    vmc: Slot<VmclockDev>,
    /// Without notifications: the next periodic VMClock read.
    vmc_next_read: u64,
    /// With notifications: the VMClock descriptor is left out of poll() until then.
    vmc_poll_after: u64,
    notify_recheck_ms: u64,
    /// The end of the refusal hold-off last logged at info.
    suppressed_until: Option<u64>,
}

impl Watcher {
    fn new(o: Opts) -> Self {
        let start = monotonic_ms();
        let (rmin, rmax) = (o.reopen_min_ms, o.reopen_max_ms);
        Self {
            actor: Actor::new(daemon::from_opts(&o), !o.no_clock_actions),
            dedup: Dedup::new(o.window_ms, o.catch_up_s.saturating_mul(1000), start)
                .with_refusal_holdoff(o.refusal_holdoff_s.saturating_mul(1000)),
            mig: Slot::new(o.no_migtime, rmin, rmax, start),
            vmc: Slot::new(o.no_vmclock, rmin, rmax, start),
            vmc_next_read: start,
            vmc_poll_after: start,
            notify_recheck_ms: o.vmclock_poll_ms.min(NOTIFY_RECHECK_MS),
            suppressed_until: None,
            o,
        }
    }

    fn log_start(&self) {
        let path = |off: bool, p: &std::path::Path| {
            if off {
                "off".to_string()
            } else {
                p.display().to_string()
            }
        };
        info!(
            "started: migtime {}, VMClock {}, window {} ms, chronyd {:?}",
            path(self.o.no_migtime, &self.o.device),
            path(self.o.no_vmclock, &self.o.vmclock),
            self.o.window_ms,
            self.o.chrony
        );
    }

    /// One turn of the loop.
    fn iterate(&mut self) -> Result<()> {
        let now = monotonic_ms();
        self.reopen_migtime(now);
        self.reopen_vmclock(now);
        // Also right after opening: the latest event may predate us.
        self.drain_migtime();
        self.read_vmclock_periodic();
        self.tick();
        if let Some(r) = self.wait()? {
            self.on_vmclock_wakeup(r);
        }
        // migtime: POLLIN/POLLHUP are handled by the drain at the top of the loop.
        Ok(())
    }

    fn close_mig(&mut self) {
        self.mig = Slot::closed(
            self.o.reopen_min_ms,
            self.o.reopen_max_ms,
            monotonic_ms() + self.o.reopen_min_ms,
        );
    }

    fn close_vmc(&mut self) {
        self.vmc = Slot::closed(
            self.o.reopen_min_ms,
            self.o.reopen_max_ms,
            monotonic_ms() + self.o.reopen_min_ms,
        );
    }

    fn reopen_migtime(&mut self, now: u64) {
        let path = self.o.device.clone();
        if self
            .mig
            .reopen_due(now, &path, || MigtimeDev::open(&path).map(|d| (d, ())))
            .is_some()
        {
            info!("migtime: opened {}", path.display());
        }
    }

    fn reopen_vmclock(&mut self, now: u64) {
        let path = self.o.vmclock.clone();
        let Some(page) = self.vmc.reopen_due(now, &path, || VmclockDev::open(&path)) else {
            return;
        };
        let Some(d) = self.vmc.open() else {
            return;
        };
        info!(
            "VMClock: opened {} (fd {}, marker {:#x}, flags {:#x}, {})",
            path.display(),
            d.raw_fd(),
            page.disruption_marker,
            page.flags,
            if d.notifications {
                "notifications: poll"
            } else {
                "no notifications: periodic reads"
            }
        );
        let v = self.dedup.on_vmclock(
            page.disruption_key(),
            page.disruption_marker,
            self.mig.is_open(),
            now,
        );
        self.handle(v, None);
        self.vmc_next_read = now + self.o.vmclock_poll_ms;
        self.vmc_poll_after = now;
    }

    fn drain_migtime(&mut self) {
        loop {
            let Slot::Open(d) = &mut self.mig else {
                return;
            };
            match d.read() {
                Ok(MigtimeRead::Event(ev)) => self.on_migtime_event(&ev),
                Ok(MigtimeRead::Empty) => return,
                Ok(MigtimeRead::Gone) => break,
                Err(e) => {
                    warn!("{e:#}; reopening");
                    break;
                }
            }
        }
        info!(
            "{}: device gone (unbound or module unloading); reopening with backoff",
            self.o.device.display()
        );
        self.close_mig();
    }

    fn on_migtime_event(&mut self, ev: &MigtimeEvent) {
        let now = monotonic_ms();
        let ev_ms = u64::try_from(ev.monotonic_ns / 1_000_000).unwrap_or(0);
        let v = self.dedup.on_migtime(EventKey::of(ev), ev_ms, now);
        if let Verdict::Suppressed { until_ms } = v {
            // One line per hold-off at info: a refusal storm does not flood the journal.
            let first = self.suppressed_until.replace(until_ms) != Some(until_ms);
            let level = if first { Level::Info } else { Level::Debug };
            log!(
                level,
                "migration_seq={}: migtime event {} outcome={}: {}",
                ev.migration_seq,
                ev.event,
                outcome_name(ev),
                v.describe()
            );
        } else if !matches!(v, Verdict::Act(_)) {
            info!(
                "migration_seq={}: migtime event {} outcome={}: {}",
                ev.migration_seq,
                ev.event,
                outcome_name(ev),
                v.describe()
            );
        }
        self.handle(v, Some(ev));
    }

    fn read_vmclock_periodic(&mut self) {
        let now = monotonic_ms();
        match self.vmc.open() {
            Some(d) if !d.notifications && now >= self.vmc_next_read => {}
            _ => return,
        }
        self.vmc_next_read = now + self.o.vmclock_poll_ms;
        if self.vmclock_input(false).is_none() {
            self.close_vmc();
        }
    }

    /// Reads VMClock once and feeds the state machine: the page and the verdict, `None` when
    /// the device went away.
    fn vmclock_input(&mut self, via_pread: bool) -> Option<(VmclockPage, Verdict)> {
        let Slot::Open(d) = &mut self.vmc else {
            return None;
        };
        let p = match if via_pread { d.read_pread() } else { d.read() } {
            Ok(p) => p,
            Err(e) => {
                warn!("VMClock: {e:#}; reopening");
                return None;
            }
        };
        let v = self.dedup.on_vmclock(
            p.disruption_key(),
            p.disruption_marker,
            self.mig.is_open(),
            monotonic_ms(),
        );
        if !matches!(v, Verdict::Unchanged | Verdict::Act(_)) {
            info!(
                "VMClock marker {:#x} (seq_count {}): {}",
                p.disruption_marker,
                p.seq_count,
                v.describe()
            );
        }
        self.handle(v, None);
        Some((p, v))
    }

    fn tick(&mut self) {
        let now = monotonic_ms();
        if let Some(Verdict::Act(t)) = self.dedup.on_tick(now) {
            self.actor.act(t, None, self.dedup.window_ms());
        }
        self.actor.on_tick(now);
    }

    fn handle(&mut self, v: Verdict, ev: Option<&MigtimeEvent>) {
        if let Verdict::Act(t) = v {
            self.actor.act(t, ev, self.dedup.window_ms());
        }
    }

    /// The poll timeout until the next deadline, and whether the VMClock descriptor is polled.
    fn timeout(&self, now: u64) -> (PollTimeout, bool) {
        let mut deadline = [
            self.mig.retry_at(),
            self.vmc.retry_at(),
            self.dedup.next_deadline(),
            self.actor.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX);
        let vmc_polled = match self.vmc.open() {
            Some(d) if !d.notifications => {
                deadline = deadline.min(self.vmc_next_read);
                false
            }
            Some(_) if now < self.vmc_poll_after => {
                deadline = deadline.min(self.vmc_poll_after);
                false
            }
            Some(_) => true,
            None => false,
        };
        let timeout = if deadline == u64::MAX {
            PollTimeout::NONE
        } else {
            PollTimeout::try_from(deadline.saturating_sub(now).min(60_000))
                .unwrap_or(PollTimeout::MAX)
        };
        (timeout, vmc_polled)
    }

    /// Sleeps until something happens or the next deadline; the VMClock descriptor's revents
    /// when it was polled and woke.
    fn wait(&mut self) -> Result<Option<PollFlags>> {
        let (timeout, vmc_polled) = self.timeout(monotonic_ms());
        let mut fds = Vec::new();
        if let Some(d) = self.mig.open() {
            fds.push(PollFd::new(d.fd(), PollFlags::POLLIN));
        }
        let vmc_at = fds.len();
        if let Some(d) = self.vmc.open().filter(|_| vmc_polled) {
            fds.push(PollFd::new(d.fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("poll: {e}"),
        }
        Ok(fds
            .get(vmc_at)
            .and_then(|f| f.revents())
            .filter(|r| !r.is_empty()))
    }

    /// A VMClock notification (or HUP/ERR): a read re-arms the driver's poll.
    fn on_vmclock_wakeup(&mut self, r: PollFlags) {
        if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            // A device without notifications answers POLLHUP: fall back to reads.
            if let Slot::Open(d) = &mut self.vmc {
                d.notifications = false;
                debug!("VMClock poll gave {r:?}; switching to periodic reads");
            }
            return;
        }
        match self.vmclock_input(true) {
            None => self.close_vmc(),
            Some((p, Verdict::Unchanged)) => {
                // Nothing to act on: do not poll again before the pause ends (an
                // always-readable descriptor would otherwise spin).
                let pause = self.notify_recheck_ms;
                self.vmc_poll_after = monotonic_ms() + pause;
                trace!(
                    "VMClock poll wakeup: no disruption (marker {:#x}, seq_count {}); not polled again for {pause} ms",
                    p.disruption_marker,
                    p.seq_count
                );
            }
            Some(_) => {}
        }
    }
}
