// SPDX-License-Identifier: GPL-2.0

//! migtime: step the guest's CLOCK_REALTIME after a live migration.
//!
//! The hypervisor exposes a paravirtual clock page (ABI v1, see [`abi`] and `docs/abi.md`) in
//! BAR2 of a QEMU ivshmem device. After every migration the destination host bumps
//! `migration_seq` and publishes Tout (`tai_delta_ns`, and the running `tai_delta_total_ns`).
//! This driver notices the change (MSI-X doorbell interrupt with ivshmem-doorbell, polling with
//! ivshmem-plain), decides with [`policy`] and, in process context, steps CLOCK_REALTIME with
//! `do_settimeofday64()` ([`clock`]), which also resets NTP state and wakes
//! TFD_TIMER_CANCEL_ON_SET timerfds. A compensated migration gets a zero step that still moves
//! the realtime offset by at least 1 ns so those timerfds fire. Insane pages are refused (or
//! warned about, or panic the guest: module parameter `on_violation`).
//!
//! The guest writes back what it did in the page's guest area, publishes an event on
//! `/dev/migtime` ([`event_dev`]) and keeps counters in debugfs `migtime/` ([`counters`]).

use kernel::{
    bindings,
    device::{
        Bound,
        Core, //
    },
    driver, irq, new_mutex, pci,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        Mutex, //
    },
    time::msecs_to_jiffies,
    workqueue::{
        self,
        impl_has_delayed_work,
        impl_has_work,
        new_delayed_work,
        new_work,
        DelayedWork,
        Work,
        WorkItem, //
    },
};

pub mod abi;
mod clock;
mod counters;
mod event_dev;
mod page;
pub mod policy;
pub mod seqlock;

use abi::{
    Event,
    GuestArea,
    Outcome,
    PAGE_BYTES, //
};
use counters::Counters;
use event_dev::{
    EventDevice,
    EventHub, //
};
use page::{
    BarPage,
    PageBar, //
};
use policy::{
    Action,
    Baseline,
    OnViolation,
    Policy,
    Settled,
    Tracker, //
};
use seqlock::ReadError;

kernel::static_assert!(abi::layout_is_v1());
kernel::static_assert!(abi::event_layout_is_v1());

module! {
    type: Migtime,
    name: "migtime",
    authors: ["migtime developers"],
    description: "Step CLOCK_REALTIME after live migration (paravirtual clock page on ivshmem)",
    license: "GPL",
    params: {
        poll_ms: u32 {
            default: 100,
            description: "Page poll period in ms without a doorbell interrupt (1..=60000)",
        },
        max_step_ms: u64 {
            default: 600000,
            description: "Largest step applied without a violation, in ms (> 0)",
        },
        on_violation: u32 {
            default: 1,
            description: "On an insane page: 0 warn and apply if defined, 1 refuse, 2 panic",
        },
        read_attempts: u32 {
            default: 64,
            description: "Seqlock read attempts before giving up until the next check (1..=100000)",
        },
    },
}

/// Safety-net poll period in doorbell mode, in ms (at least `poll_ms`). A lost or early
/// doorbell (e.g. rung before the guest resumed) is then noticed within a second.
const DOORBELL_SAFETY_POLL_MS: u32 = 1000;

/// Validated module parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Config {
    poll_ms: u32,
    policy: Policy,
    read_attempts: u32,
}

/// Which module parameter is invalid, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParamError {
    PollMs(u32),
    MaxStepMs(u64),
    OnViolation(u32),
    ReadAttempts(u32),
}

impl Config {
    /// Validates raw parameter values.
    fn validate(
        poll_ms: u32,
        max_step_ms: u64,
        on_violation: u32,
        read_attempts: u32,
    ) -> Result<Self, ParamError> {
        if !(1..=60_000).contains(&poll_ms) {
            return Err(ParamError::PollMs(poll_ms));
        }
        let limit_ns = match max_step_ms.checked_mul(1_000_000) {
            Some(ns) if max_step_ms > 0 => ns,
            _ => return Err(ParamError::MaxStepMs(max_step_ms)),
        };
        let on_violation =
            OnViolation::from_param(on_violation).ok_or(ParamError::OnViolation(on_violation))?;
        if !(1..=100_000).contains(&read_attempts) {
            return Err(ParamError::ReadAttempts(read_attempts));
        }
        Ok(Self {
            poll_ms,
            policy: Policy {
                limit_ns,
                on_violation,
            },
            read_attempts,
        })
    }

    /// The module parameters, validated; logs the offending parameter and fails with `EINVAL`.
    fn from_params() -> Result<Self> {
        let r = Self::validate(
            module_parameters::poll_ms.value(),
            module_parameters::max_step_ms.value(),
            module_parameters::on_violation.value(),
            module_parameters::read_attempts.value(),
        );
        r.map_err(|e| {
            match e {
                ParamError::PollMs(v) => pr_err!("invalid poll_ms={v}: must be 1..=60000\n"),
                ParamError::MaxStepMs(v) => {
                    pr_err!("invalid max_step_ms={v}: must be 1..=18446744073709\n")
                }
                ParamError::OnViolation(v) => {
                    pr_err!("invalid on_violation={v}: must be 0 (warn), 1 (refuse) or 2 (panic)\n")
                }
                ParamError::ReadAttempts(v) => {
                    pr_err!("invalid read_attempts={v}: must be 1..=100000\n")
                }
            }
            EINVAL
        })
    }
}

/// Panics the guest with `reason` (`on_violation=2`): a real `panic()`, not a Rust panic (which
/// would only oops the worker).
fn die(reason: &'static CStr) -> ! {
    // SAFETY: The format is a valid C string with one `%s`, matched by `reason`, a valid
    // NUL-terminated string.
    unsafe { bindings::panic(c"migtime: %s\n".as_char_ptr(), reason.as_char_ptr()) }
}

/// The reason text of a refusal for logs and `panic()`.
fn reason(o: Outcome) -> &'static CStr {
    match o {
        Outcome::RefusedSeqBackwards => c"migration_seq went backwards",
        Outcome::RefusedOverLimit => c"pending delta beyond max_step_ms",
        Outcome::RefusedInconsistent => {
            c"page inconsistent (total changed without seq, overflow, or seq+1 delta mismatch)"
        }
        _ => c"page violation",
    }
}

/// Mutable state of a bound device, serialised by [`Shared::state`].
struct State {
    /// What the clock is in step with, and which bad pages were already reported.
    tracker: Tracker,
    /// Events recorded since bind.
    events: u64,
    /// The guest area's seqlock count (even).
    guest_seq: u32,
    /// Whether a bad header was already reported since the last good read.
    header_reported: bool,
}

/// State shared by the driver data, the work items and the interrupt handler.
#[pin_data]
struct Shared {
    bar: pci::DevresBar<PAGE_BYTES>,
    cfg: Config,
    /// Poll period, ms (the safety-net period in doorbell mode).
    poll_period_ms: Atomic<u32>,
    /// Set when unbinding: nothing is queued any more.
    stopping: Atomic<bool>,
    #[pin]
    state: Mutex<State>,
    stepper: clock::Stepper,
    counters: Arc<Counters>,
    hub: Arc<EventHub>,
    #[pin]
    work: Work<Shared, 1>,
    #[pin]
    poll: DelayedWork<Shared, 2>,
}

impl_has_work! {
    impl HasWork<Self, 1> for Shared { self.work }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Shared { self.poll }
}

impl WorkItem<1> for Shared {
    type Pointer = Arc<Shared>;

    fn run(this: Arc<Shared>) {
        this.check();
    }
}

impl WorkItem<2> for Shared {
    type Pointer = Arc<Shared>;

    fn run(this: Arc<Shared>) {
        this.check();
        Self::arm_poll(&this);
    }
}

impl Shared {
    /// Queues the check (from the interrupt handler): cheap, never sleeps.
    fn kick(this: &Arc<Self>) {
        if !this.stopping.load(Relaxed) {
            // Already queued is fine: the pending run will see the new page.
            let _ = workqueue::system().enqueue::<Arc<Self>, 1>(this.clone());
        }
    }

    /// Queues the next poll.
    fn arm_poll(this: &Arc<Self>) {
        if !this.stopping.load(Relaxed) {
            let j = msecs_to_jiffies(this.poll_period_ms.load(Relaxed));
            let _ = workqueue::system().enqueue_delayed::<Arc<Self>, 2>(this.clone(), j);
        }
    }

    /// Stops both work items and waits for them; drops the references queued items held.
    fn stop(this: &Arc<Self>) {
        this.stopping.store(true, Relaxed);
        let work = core::ptr::from_ref(&this.work).cast_mut();
        // SAFETY: `work` points at the initialised `Work` in `*this`, alive while `this` is.
        let raw = unsafe { Work::raw_get(work) };
        // SAFETY: `raw` is a valid, initialised `work_struct`.
        if unsafe { bindings::cancel_work_sync(raw) } {
            // SAFETY: A pending item was cancelled before it ran: the reference `enqueue` leaked
            // with `Arc::into_raw` will never be reclaimed by `run`, so reclaim it here.
            drop(unsafe { Arc::from_raw(Arc::as_ptr(this)) });
        }
        // CAST: `DelayedWork` is `repr(transparent)` over `Opaque<delayed_work>`, itself
        // `repr(transparent)` over the C struct.
        let dwork = core::ptr::from_ref(&this.poll)
            .cast_mut()
            .cast::<bindings::delayed_work>();
        // SAFETY: `dwork` is a valid, initialised `delayed_work` (see above). Cancelling also
        // waits for a running instance, whose re-arm attempt fails (the item is being
        // cancelled, and `stopping` is set for any later attempt).
        if unsafe { bindings::cancel_delayed_work_sync(dwork) } {
            // SAFETY: As for `work`: reclaim the reference the cancelled enqueue leaked.
            drop(unsafe { Arc::from_raw(Arc::as_ptr(this)) });
        }
    }

    /// Reads the page and acts on it.
    ///
    /// One decision at a time: the doorbell work and the poll work may run at once on an SMP
    /// guest, so the page is read, decided on, acted on, recorded and published under the state
    /// lock. A snapshot read before another check's newer one can therefore never be decided
    /// after it.
    fn check(&self) {
        let attempts = self.cfg.read_attempts;
        let c = &self.counters;
        let mut st = self.state.lock();
        // The bar access guard is an RCU read-side section: read, then drop it before acting
        // (do_settimeofday64() may sleep).
        let read = match self.bar.try_access() {
            Some(bar) => seqlock::read_snapshot(&BarPage(&bar), attempts),
            None => return,
        };
        let snap = match read {
            Ok(ok) => {
                c.read_retries
                    .add(u64::from(ok.attempts.saturating_sub(1)), Relaxed);
                st.header_reported = false;
                ok.snapshot
            }
            Err(ReadError::Busy { attempts }) => {
                c.read_retries
                    .add(u64::from(attempts.saturating_sub(1)), Relaxed);
                Counters::inc(&c.read_busy);
                return;
            }
            Err(ReadError::Header(e)) => {
                if !st.header_reported {
                    pr_warn!("page header no longer valid ({e:?}): ignoring the page\n");
                    st.header_reported = true;
                }
                return;
            }
        };

        let prev = st.tracker.baseline();
        let d = st.tracker.decide(&snap, &self.cfg.policy);
        let pending = d.pending_ns.unwrap_or(0);
        let (outcome, intended, applied, residual) = match d.action {
            Action::Nothing => return,
            Action::Panic(o) => die(reason(o)),
            Action::Refuse(o) => {
                pr_warn!(
                    "refused seq={} baseline_seq={} pending_ns={}: {} ({})\n",
                    snap.migration_seq,
                    prev.seq,
                    pending,
                    o.name(),
                    reason(o).to_str().unwrap_or("?")
                );
                Counters::inc(&c.refusals);
                (o, pending, 0, 0)
            }
            Action::Apply { step_ns, outcome } => {
                if let Some(w) = d.warned {
                    pr_warn!(
                        "violation {} at seq={} (on_violation=warn): stepping by {} ns anyway\n",
                        w.name(),
                        snap.migration_seq,
                        step_ns
                    );
                }
                match self.stepper.step(step_ns) {
                    Ok(r) => {
                        Counters::inc(if outcome == Outcome::Stepped {
                            &c.steps
                        } else {
                            &c.notifies
                        });
                        c.last_residual_ns.store(r.residual_ns, Relaxed);
                        (outcome, step_ns, r.applied_ns, r.residual_ns)
                    }
                    Err(e) => {
                        pr_err!(
                            "step by {} ns at seq={} failed: {:?}\n",
                            step_ns,
                            snap.migration_seq,
                            e
                        );
                        Counters::inc(&c.step_failures);
                        (Outcome::Failed, step_ns, 0, 0)
                    }
                }
            }
        };
        match st.tracker.settle(&snap, &d, outcome != Outcome::Failed) {
            Settled::Failed { attempts } => pr_warn!(
                "seq={} not applied (attempt {} of {}): retrying at the next check\n",
                snap.migration_seq,
                attempts,
                policy::MAX_STEP_ATTEMPTS
            ),
            Settled::GaveUp => pr_err!(
                "seq={} not applied after {} attempts: giving up on this page (baseline stays at seq={})\n",
                snap.migration_seq,
                policy::MAX_STEP_ATTEMPTS,
                prev.seq
            ),
            Settled::Nothing | Settled::Done => {}
        }
        st.events += 1;
        Counters::inc(&c.events);
        c.last_seq.store(snap.migration_seq, Relaxed);

        let ev = Event {
            event: st.events,
            migration_seq: snap.migration_seq,
            page_flags: snap.flags,
            outcome: outcome as u32,
            intended_ns: intended,
            applied_ns: applied,
            residual_ns: residual,
            realtime_ns: clock::realtime_ns(),
            monotonic_ns: clock::monotonic_ns(),
        };
        if !outcome.is_refusal() {
            pr_info!(
                "event {} seq={} {} intended_ns={} applied_ns={} residual_ns={}\n",
                ev.event,
                ev.migration_seq,
                outcome.name(),
                intended,
                applied,
                residual
            );
        }
        let g = GuestArea {
            seq_count: 0,
            outcome: outcome as u32,
            ack_seq: snap.migration_seq,
            intended_ns: intended,
            applied_ns: applied,
            // What the clock is in step with now: unchanged when the step failed.
            applied_total_ns: st.tracker.baseline().total_ns,
            ack_realtime_ns: ev.realtime_ns,
            events: st.events,
            reserved: 0,
        };
        if let Some(bar) = self.bar.try_access() {
            st.guest_seq = page::write_guest_area(&bar, st.guest_seq, &g);
        }
        // Published before the lock is dropped: events reach the hub in order.
        self.hub.publish(ev);
    }
}

/// The doorbell interrupt handler: only queues the check.
struct Doorbell {
    shared: Arc<Shared>,
}

impl irq::Handler for Doorbell {
    fn handle(&self) -> irq::IrqReturn {
        Shared::kick(&self.shared);
        irq::IrqReturn::Handled
    }
}

/// The MSI-X vector and its handler.
struct IrqParts<'bound> {
    /// Dropped (freeing the IRQ) before `vectors`, in `Drop`.
    reg: Option<Pin<KBox<irq::Registration<'bound, Doorbell>>>>,
    _vectors: Pin<KBox<pci::IrqVectorRegistration<'bound>>>,
}

impl Drop for IrqParts<'_> {
    fn drop(&mut self) {
        // Free the IRQ (waits for a running handler) before the vectors go.
        self.reg.take();
    }
}

/// Tries to set up the MSI-X doorbell (ivshmem-doorbell, `vectors=1`).
fn setup_doorbell<'bound>(
    dev: &'bound pci::Device<Bound>,
    shared: &Arc<Shared>,
) -> Result<IrqParts<'bound>> {
    let msix = pci::IrqTypes::default().with(pci::IrqType::MsiX);
    let vectors = KBox::pin(dev.alloc_irq_vectors(1, 1, msix)?, GFP_KERNEL)?;
    // SAFETY: `vectors` is heap-allocated and pinned: the registration does not move while the
    // box lives, and `IrqParts` keeps the box alive and untouched until after `reg` (the only
    // user of this reference) is dropped. So the reference is valid for as long as it is used,
    // even though the type system only sees `'bound`.
    let vref: &'bound pci::IrqVectorRegistration<'bound> =
        unsafe { &*core::ptr::from_ref::<pci::IrqVectorRegistration<'bound>>(&*vectors) };
    let vector = vref.index(0)?;
    let handler = Doorbell {
        shared: shared.clone(),
    };
    // SAFETY: The registration is stored in `IrqParts` and dropped normally, never forgotten.
    let reg = unsafe {
        irq::Registration::new(
            irq::IrqRequest::from(vector),
            irq::Flags::TRIGGER_NONE,
            c"migtime",
            Ok::<_, Error>(handler),
        )
    };
    let reg = KBox::pin_init(reg, GFP_KERNEL)?;
    Ok(IrqParts {
        reg: Some(reg),
        _vectors: vectors,
    })
}

/// Driver data of a bound device.
struct MigDev<'bound> {
    irq: Option<IrqParts<'bound>>,
    shared: Arc<Shared>,
    _misc: Pin<KBox<EventDevice>>,
    _debugfs: Pin<KBox<kernel::debugfs::Scope<Arc<Counters>>>>,
}

impl Drop for MigDev<'_> {
    fn drop(&mut self) {
        // Order: no new work (stopping), no interrupt, no queued or running work; then the
        // misc device and debugfs go with the fields.
        self.shared.stopping.store(true, Relaxed);
        self.irq.take();
        Shared::stop(&self.shared);
        pr_info!("unbound\n");
    }
}

struct MigtimeDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <MigtimeDriver as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, 0x1110),
        ()
    )]
);

impl MigtimeDriver {
    fn bind<'bound>(pdev: &'bound pci::Device<Core<'_>>) -> Result<MigDev<'bound>> {
        let cfg = Config::from_params()?;
        let dev: &'bound pci::Device<Bound> = pdev;
        let len = dev.resource_len(2)?;
        if len < PAGE_BYTES as u64 {
            dev_info!(pdev, "no migtime page: BAR2 is {len} bytes, not binding\n");
            return Err(ENODEV);
        }
        pdev.enable_device_mem()?;
        let bar: PageBar<'bound> = dev.iomap_region_sized::<PAGE_BYTES>(2, c"migtime")?;
        let snap = match seqlock::read_snapshot(&BarPage(&bar), cfg.read_attempts) {
            Ok(ok) => ok.snapshot,
            Err(ReadError::Header(e)) => {
                dev_info!(pdev, "no migtime page ({e:?}), not binding\n");
                return Err(ENODEV);
            }
            Err(ReadError::Busy { attempts }) => {
                dev_info!(
                    pdev,
                    "no migtime page (seqlock busy after {attempts} attempts), not binding\n"
                );
                return Err(ENODEV);
            }
        };
        let guest_seq = page::guest_seq(&bar);
        let bar = bar.into_devres()?;
        let counters = Arc::new(Counters::new(), GFP_KERNEL)?;
        counters.last_seq.store(snap.migration_seq, Relaxed);
        let hub = EventHub::new()?;
        let (hub2, counters2) = (hub.clone(), counters.clone());
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                bar,
                cfg,
                poll_period_ms: Atomic::new(cfg.poll_ms),
                stopping: Atomic::new(false),
                state <- new_mutex!(State {
                    tracker: Tracker::new(Baseline::from_snapshot(&snap)),
                    events: 0,
                    guest_seq,
                    header_reported: false,
                }),
                stepper: clock::Stepper::new(),
                counters: counters2,
                hub: hub2,
                work <- new_work!("migtime::work"),
                poll <- new_delayed_work!("migtime::poll"),
            }),
            GFP_KERNEL,
        )?;
        let misc = KBox::pin_init(EventDevice::register(hub), GFP_KERNEL)?;
        let debugfs = KBox::pin_init(counters::debugfs(counters), GFP_KERNEL)?;

        // MSI-X messages are memory writes by the device: it must be a bus master.
        pdev.set_master();
        let irq = setup_doorbell(dev, &shared).ok();
        let mode = if irq.is_some() { "doorbell" } else { "polling" };
        if irq.is_some() {
            // Safety-net poll, slower than the doorbell.
            let p = cfg.poll_ms.max(DOORBELL_SAFETY_POLL_MS);
            shared.poll_period_ms.store(p, Relaxed);
        }
        let data = MigDev {
            irq,
            shared,
            _misc: misc,
            _debugfs: debugfs,
        };
        dev_info!(
            pdev,
            "bound: mode={} poll_ms={} seq={} total_ns={}\n",
            mode,
            data.shared.poll_period_ms.load(Relaxed),
            snap.migration_seq,
            snap.tai_delta_total_ns
        );
        Shared::arm_poll(&data.shared);
        Ok(data)
    }
}

impl pci::Driver for MigtimeDriver {
    type IdInfo = ();
    type Data<'bound> = MigDev<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        Self::bind(pdev)
    }
}

/// The module: validates the parameters, then registers the PCI driver.
#[pin_data]
struct Migtime {
    #[pin]
    _driver: driver::Registration<pci::Adapter<MigtimeDriver>>,
    _log: UnloadLog,
}

/// Logs the unload line after the driver is unregistered (fields drop in order).
struct UnloadLog;

impl Drop for UnloadLog {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}

impl kernel::InPlaceModule for Migtime {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let cfg = Config::from_params();
        try_pin_init!(Self {
            _: {
                let cfg = cfg?;
                pr_info!(
                    "loaded (ABI v{}, poll_ms={} max_step_ms={} on_violation={} read_attempts={})\n",
                    abi::VERSION,
                    cfg.poll_ms,
                    cfg.policy.limit_ns / 1_000_000,
                    module_parameters::on_violation.value(),
                    cfg.read_attempts
                );
            },
            _driver <- driver::Registration::new(c"migtime", module),
            _log: UnloadLog,
        })
    }
}

#[kunit_tests(migtime_core)]
mod tests {
    use super::*;
    use crate::seqlock::Snapshot;

    #[test]
    fn params_validated() {
        assert!(Config::validate(100, 600_000, 1, 64).is_ok());
        assert_eq!(Config::validate(0, 1, 1, 1), Err(ParamError::PollMs(0)));
        assert_eq!(
            Config::validate(60_001, 1, 1, 1),
            Err(ParamError::PollMs(60_001))
        );
        assert_eq!(Config::validate(1, 0, 1, 1), Err(ParamError::MaxStepMs(0)));
        assert_eq!(
            Config::validate(1, u64::MAX, 1, 1),
            Err(ParamError::MaxStepMs(u64::MAX))
        );
        assert_eq!(
            Config::validate(1, 1, 3, 1),
            Err(ParamError::OnViolation(3))
        );
        assert_eq!(
            Config::validate(1, 1, 1, 0),
            Err(ParamError::ReadAttempts(0))
        );
        assert_eq!(
            Config::validate(1, 1, 1, 100_001),
            Err(ParamError::ReadAttempts(100_001))
        );
        let c = Config::validate(60_000, 1, 2, 100_000).unwrap();
        assert_eq!(c.policy.limit_ns, 1_000_000);
        assert_eq!(c.policy.on_violation, OnViolation::Panic);
    }

    #[test]
    fn event_encoding_le() {
        let ev = Event {
            event: 1,
            migration_seq: 0x0102_0304_0506_0708,
            page_flags: 1,
            outcome: Outcome::Stepped as u32,
            intended_ns: -2,
            applied_ns: 3,
            residual_ns: 5,
            realtime_ns: 6,
            monotonic_ns: 7,
        };
        let b = ev.to_le_bytes();
        assert_eq!(b.len(), 64);
        assert_eq!(b[8], 0x08);
        assert_eq!(b[15], 0x01);
        assert_eq!(&b[20..24], &1u32.to_le_bytes());
        assert_eq!(&b[24..32], &(-2i64).to_le_bytes());
        assert_eq!(&b[56..64], &7i64.to_le_bytes());
    }

    #[test]
    fn policy_in_kernel() {
        let p = Policy {
            limit_ns: 1_000_000_000,
            on_violation: OnViolation::Refuse,
        };
        let base = Baseline {
            seq: 5,
            total_ns: 100,
        };
        let snap = |seq, flags, delta, total| Snapshot {
            seq_count: 2,
            flags,
            migration_seq: seq,
            tai_delta_ns: delta,
            tai_delta_total_ns: total,
        };
        // One migration, uncompensated.
        let d = base.decide(&snap(6, 0, 50, 150), &p);
        assert_eq!(
            d.action,
            Action::Apply {
                step_ns: 50,
                outcome: Outcome::Stepped
            }
        );
        // Two migrations: the total difference, once.
        let d = base.decide(&snap(7, 0, 10, 170), &p);
        assert_eq!(
            d.action,
            Action::Apply {
                step_ns: 70,
                outcome: Outcome::Stepped
            }
        );
        assert_eq!(
            d.next.decide(&snap(7, 0, 10, 170), &p).action,
            Action::Nothing
        );
        // Compensated.
        let d = base.decide(&snap(6, abi::FLAG_COMPENSATED, 0, 100), &p);
        assert_eq!(
            d.action,
            Action::Apply {
                step_ns: 0,
                outcome: Outcome::Notified
            }
        );
        // Backwards, over the limit, overflow.
        let d = base.decide(&snap(4, 0, 0, 100), &p);
        assert_eq!(d.action, Action::Refuse(Outcome::RefusedSeqBackwards));
        let d = base.decide(&snap(6, 0, 2_000_000_000, 2_000_000_100), &p);
        assert_eq!(d.action, Action::Refuse(Outcome::RefusedOverLimit));
        let d = Baseline {
            seq: 1,
            total_ns: i64::MIN,
        }
        .decide(&snap(3, 0, 0, i64::MAX), &p);
        assert_eq!(d.action, Action::Refuse(Outcome::RefusedInconsistent));
    }

    #[test]
    fn hub_publishes() {
        let hub = EventHub::new().unwrap();
        assert!(hub.latest().is_none());
        hub.publish(Event {
            event: 1,
            ..Event::default()
        });
        assert_eq!(hub.latest().map(|e| e.event), Some(1));
    }
}
