// SPDX-License-Identifier: GPL-2.0

//! The engine: read the page, decide, act, record — one check at a time.
//!
//! [`Engine::check`] is the whole path, each step a small function:
//! [`read_page`](Engine::read_page) (bounded seqlock read of BAR2),
//! [`Tracker::decide`] (pure policy), [`act`](crate::act) (step the clock, or refuse, or panic),
//! [`Tracker::settle`] (move the baseline only as the policy allows) and
//! [`record`](Engine::record) (counters, log line, guest area, `/dev/migtime` event). It runs
//! under the state lock from start to end, so the doorbell's interrupt thread and the poll work,
//! which may run at once on different CPUs, never decide on a stale snapshot after a newer one,
//! and events reach readers in order.
//!
//! Two contexts drive it ([`wake`](crate::wake)): the doorbell's interrupt thread, and the poll
//! work (the primary mechanism without a doorbell; a slower safety net with one).

use crate::abi::{
    GuestArea,
    Outcome,
    StepMethod,
    Timing,
    WakeSource,
    GUEST_AREA_SIZE,
    PAGE_BYTES, //
};
use crate::act::{
    self,
    Acted, //
};
use crate::clock::{
    self,
    Stepper, //
};
use crate::counters::Counters;
use crate::event::Event;
use crate::event_dev::EventHub;
use crate::page::{
    self,
    BarPage, //
};
use crate::params::Config;
use crate::policy::{
    self,
    Decision, //
};
use crate::seqlock::{
    self,
    ReadError,
    Snapshot, //
};
use crate::tracker::{
    self,
    Settled,
    Tracker, //
};
use kernel::{
    new_mutex, pci,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        Mutex,
        MutexGuard, //
    },
    workqueue::{
        new_delayed_work,
        DelayedWork, //
    },
};

/// Mutable state of a bound device, serialised by [`Engine::state`].
pub(crate) struct EngineState {
    /// The baseline, the rate window, and which bad pages were already reported.
    tracker: Tracker,
    /// How the clock is stepped.
    stepper: Stepper,
    /// Events recorded since bind.
    events: u64,
    /// The guest area's seqlock count (even).
    guest_seq: u32,
    /// Whether a bad header was already reported since the last good read.
    header_reported: bool,
}

/// The engine of a bound device, shared by the driver data, the poll work and the interrupt
/// handler.
#[pin_data]
pub(crate) struct Engine {
    pub(crate) bar: pci::DevresBar<PAGE_BYTES>,
    pub(crate) cfg: Config,
    /// Poll period, ms (the safety-net period in doorbell mode).
    pub(crate) poll_period_ms: Atomic<u32>,
    /// Set when unbinding: nothing is queued any more.
    pub(crate) stopping: Atomic<bool>,
    /// CLOCK_MONOTONIC of the first doorbell interrupt not yet consumed by a check (0: none).
    pub(crate) rang_mono_ns: Atomic<i64>,
    #[pin]
    state: Mutex<EngineState>,
    counters: Arc<Counters>,
    hub: Arc<EventHub>,
    #[pin]
    pub(crate) poll_work: DelayedWork<Engine, 2>,
}

impl Engine {
    /// A new engine in step with `baseline` (the page at bind: taken as already reflected in the
    /// clock).
    pub(crate) fn new(
        bar: pci::DevresBar<PAGE_BYTES>,
        cfg: Config,
        baseline: policy::Baseline,
        guest_seq: u32,
        counters: Arc<Counters>,
        hub: Arc<EventHub>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            bar,
            cfg,
            poll_period_ms: Atomic::new(crate::wake::poll_period_ms(cfg.poll_ms, false)),
            stopping: Atomic::new(false),
            rang_mono_ns: Atomic::new(0),
            state <- new_mutex!(EngineState {
                tracker: Tracker::new(baseline),
                stepper: Stepper::new(cfg.effective_step_method()),
                events: 0,
                guest_seq,
                header_reported: false,
            }),
            counters,
            hub,
            poll_work <- new_delayed_work!("migtime::poll_work"),
        })
    }

    /// The step method in use.
    pub(crate) fn step_method(&self) -> StepMethod {
        self.state.lock().stepper.method()
    }

    /// Reads the page, decides, acts and records; `woken_by` says which context runs it.
    pub(crate) fn check(&self, woken_by: WakeSource) {
        let work_ns = clock::monotonic_ns();
        let mut st = self.state.lock();
        // A doorbell rung since the last check is what woke us, whichever work got here first.
        let (source, wake_ns) = match self.rang_mono_ns.xchg(0, Relaxed) {
            0 => (woken_by, work_ns),
            rang => (WakeSource::Doorbell, rang),
        };
        let Some(snap) = self.read_page(&mut st) else {
            return;
        };
        let d = st.tracker.decide(&snap, &self.cfg.policy, work_ns);
        let baseline = st.tracker.baseline();
        let Some(acted) = act::act(&mut st.stepper, baseline, &self.counters, &snap, &d) else {
            // A coalesced refusal is counted by the tracker.
            st.tracker.settle(&snap, &d, false, work_ns);
            return;
        };
        let done_ns = clock::monotonic_ns();
        self.settle(&mut st, &snap, &d, &acted, work_ns);
        let timing = Timing {
            wake_mono_ns: wake_ns,
            work_mono_ns: work_ns,
            done_mono_ns: done_ns,
            wake_source: source as u32,
            step_method: if acted.sets > 0 {
                st.stepper.method() as u32
            } else {
                0
            },
            sets: acted.sets,
            ..Timing::default()
        };
        self.record(&mut st, &snap, &acted, timing);
    }

    /// Reads the page consistently (bounded); `None` when busy or the header went bad.
    fn read_page(&self, st: &mut MutexGuard<'_, EngineState>) -> Option<Snapshot> {
        let c = &self.counters;
        // The bar access guard is an RCU read-side section: read, then drop it before acting
        // (stepping the clock may sleep).
        let read = {
            let bar = self.bar.try_access()?;
            seqlock::read_snapshot(&BarPage(&bar), self.cfg.read_attempts)
        };
        match read {
            Ok(ok) => {
                c.read_retries
                    .add(u64::from(ok.attempts.saturating_sub(1)), Relaxed);
                st.header_reported = false;
                Some(ok.snapshot)
            }
            Err(ReadError::Busy { attempts }) => {
                c.read_retries
                    .add(u64::from(attempts.saturating_sub(1)), Relaxed);
                Counters::inc(&c.read_busy);
                None
            }
            Err(ReadError::Header(e)) => {
                if !st.header_reported {
                    pr_warn!("page header no longer valid ({e:?}): ignoring the page\n");
                    st.header_reported = true;
                }
                None
            }
        }
    }

    /// Moves the baseline as the policy allows (not at all for a failed step) and logs retries.
    fn settle(&self, st: &mut EngineState, snap: &Snapshot, d: &Decision, acted: &Acted, now: i64) {
        let prev = st.tracker.baseline();
        match st
            .tracker
            .settle(snap, d, acted.outcome != Outcome::Failed, now)
        {
            Settled::Failed { attempts } => pr_warn!(
                "seq={} not applied (attempt {} of {}): retrying at the next check\n",
                snap.migration_seq,
                attempts,
                tracker::MAX_STEP_ATTEMPTS
            ),
            Settled::GaveUp => pr_err!(
                "seq={} not applied after {} attempts: giving up on this page (baseline stays at seq={})\n",
                snap.migration_seq,
                tracker::MAX_STEP_ATTEMPTS,
                prev.seq
            ),
            Settled::Nothing | Settled::Done => {}
        }
    }

    /// Counts the event, logs it, acknowledges it in the guest area and publishes it on
    /// `/dev/migtime` (still under the state lock: events reach the hub in order).
    fn record(&self, st: &mut EngineState, snap: &Snapshot, a: &Acted, timing: Timing) {
        let c = &self.counters;
        st.events += 1;
        Counters::inc(&c.events);
        c.last_seq.store(snap.migration_seq, Relaxed);
        let ev = Event {
            event: st.events,
            migration_seq: snap.migration_seq,
            page_flags: snap.flags,
            outcome: a.outcome as u32,
            intended_ns: a.intended_ns,
            applied_ns: a.applied_ns,
            residual_ns: a.residual_ns,
            realtime_ns: clock::realtime_ns(),
            monotonic_ns: clock::monotonic_ns(),
            timing,
        };
        if !a.outcome.is_refusal() {
            let wake = if timing.wake_source == WakeSource::Doorbell as u32 {
                "doorbell"
            } else {
                "poll"
            };
            pr_info!(
                "event {} seq={} {} intended_ns={} applied_ns={} residual_ns={} sets={} wake={} wake_to_work_ns={} work_to_done_ns={}\n",
                ev.event,
                ev.migration_seq,
                a.outcome.name(),
                a.intended_ns,
                a.applied_ns,
                a.residual_ns,
                timing.sets,
                wake,
                timing.work_mono_ns.saturating_sub(timing.wake_mono_ns),
                timing.done_mono_ns.saturating_sub(timing.work_mono_ns)
            );
        }
        let g = GuestArea {
            seq_count: 0,
            outcome: a.outcome as u32,
            ack_seq: snap.migration_seq,
            intended_ns: a.intended_ns,
            applied_ns: a.applied_ns,
            // What the clock is in step with now: unchanged when the step failed.
            applied_total_ns: st.tracker.baseline().total_ns,
            ack_realtime_ns: ev.realtime_ns,
            events: st.events,
            // CAST: `GUEST_AREA_SIZE` is 128.
            size: GUEST_AREA_SIZE as u32,
            reserved: 0,
            timing,
        };
        if let Some(bar) = self.bar.try_access() {
            st.guest_seq = page::write_guest_area(&bar, st.guest_seq, &g);
        }
        self.hub.publish(ev);
    }
}

#[kunit_tests(migtime_core)]
mod tests {
    use super::*;
    use crate::abi::FLAG_COMPENSATED;
    use crate::policy::{
        Action,
        Baseline,
        OnViolation,
        Policy, //
    };

    #[test]
    fn policy_in_kernel() {
        let p = Policy::per_page(1_000_000_000, OnViolation::Refuse);
        let snap = |seq, flags, delta, total| Snapshot {
            seq_count: 2,
            flags,
            migration_seq: seq,
            tai_delta_ns: delta,
            tai_delta_total_ns: total,
        };
        let mut t = Tracker::new(Baseline {
            seq: 5,
            total_ns: 100,
        });
        // Catch-up (two migrations): the total difference, once.
        let s = snap(7, 0, 10, 170);
        let d = t.decide(&s, &p, 0);
        assert_eq!(
            d.action,
            Action::Apply {
                step_ns: 70,
                outcome: Outcome::Stepped
            }
        );
        t.settle(&s, &d, true, 0);
        assert_eq!(t.decide(&s, &p, 0).action, Action::Nothing);
        // A replay of an older page: refused once, never stepped, baseline kept.
        let old = snap(6, 0, 60, 160);
        let d = t.decide(&old, &p, 0);
        assert_eq!(d.action, Action::Refuse(Outcome::RefusedSeqBackwards));
        t.settle(&old, &d, true, 0);
        assert_eq!(t.decide(&old, &p, 0).action, Action::Nothing);
        assert_eq!(t.baseline().seq, 7);
        // Compensated: notify, no step.
        let s = snap(8, FLAG_COMPENSATED, 0, 170);
        assert_eq!(
            t.decide(&s, &p, 0).action,
            Action::Apply {
                step_ns: 0,
                outcome: Outcome::Notified
            }
        );
    }
}
