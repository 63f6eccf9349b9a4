// SPDX-License-Identifier: GPL-2.0

//! What wakes the [`Engine`]: the doorbell interrupt, and the poll.
//!
//! - The doorbell is a threaded interrupt: the hard handler only timestamps the ring; the
//!   handler's own kernel thread (SCHED_FIFO) then runs the check, so nothing but the page check
//!   stands between the interrupt and the step (no work queue, no kworker to wake). Rings that
//!   arrive while the thread runs coalesce into one more run.
//! - Without a doorbell the poll work is the mechanism: a timer every `poll_ms`.
//! - With a doorbell it is only a safety net (a ring lost, or rung before the guest resumed),
//!   every [`DOORBELL_SAFETY_POLL_MS`] (or `poll_ms`, if longer). Its timer is a normal one,
//!   not deferrable, and not pinned (the system work queue queues delayed work on no CPU in
//!   particular): a deferrable timer would only fire when the CPU that armed it next wakes, which
//!   can be never on a guest whose other CPUs are busy. So a lost ring is caught within that
//!   period, at the cost of waking an idle guest once per period.
//!
//! The poll work holds an `Arc<Engine>` reference while queued; [`stop`] cancels it and gives
//! back the reference of an item cancelled before it ran.

use crate::abi::WakeSource;
use crate::clock;
use crate::engine::Engine;
use kernel::{
    bindings, irq,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
    time::msecs_to_jiffies,
    workqueue::{
        self,
        impl_has_delayed_work,
        DelayedWork,
        WorkItem, //
    },
};

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Engine { self.poll_work }
}

impl WorkItem<2> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        this.check(WakeSource::Poll);
        arm_poll(&this);
    }
}

/// The doorbell interrupt handler.
pub(crate) struct Doorbell {
    pub(crate) engine: Arc<Engine>,
}

impl irq::ThreadedHandler for Doorbell {
    /// Hard interrupt: keep the first unconsumed ring's time (when the guest learnt of the
    /// change) and wake the thread.
    fn handle(&self) -> irq::ThreadedIrqReturn {
        let _ = self
            .engine
            .rang_mono_ns
            .cmpxchg(0, clock::monotonic_ns(), Relaxed);
        irq::ThreadedIrqReturn::WakeThread
    }

    /// The interrupt thread (process context): check the page, step if asked.
    fn handle_threaded(&self) -> irq::IrqReturn {
        if !self.engine.stopping.load(Relaxed) {
            self.engine.check(WakeSource::Doorbell);
        }
        irq::IrqReturn::Handled
    }
}

/// Safety-net poll period in doorbell mode, ms (at least `poll_ms`).
const DOORBELL_SAFETY_POLL_MS: u32 = 1000;

/// The poll period: `poll_ms` without a doorbell, the safety-net period with one.
pub(crate) fn poll_period_ms(poll_ms: u32, doorbell: bool) -> u32 {
    if doorbell {
        poll_ms.max(DOORBELL_SAFETY_POLL_MS)
    } else {
        poll_ms
    }
}

/// Queues the next poll.
pub(crate) fn arm_poll(this: &Arc<Engine>) {
    if !this.stopping.load(Relaxed) {
        let j = msecs_to_jiffies(this.poll_period_ms.load(Relaxed));
        let _ = workqueue::system().enqueue_delayed::<Arc<Engine>, 2>(this.clone(), j);
    }
}

/// Stops the poll work and waits for a running instance; reclaims the reference of a cancelled
/// one. The doorbell interrupt must already be freed.
pub(crate) fn stop(this: &Arc<Engine>) {
    this.stopping.store(true, Relaxed);
    let dwork = delayed_work_ptr(&this.poll_work);
    // SAFETY: `dwork` is a valid, initialised `delayed_work`; cancelling may sleep (process
    // context: unbind). It also waits for a running instance, whose re-arm attempt fails
    // (`stopping` is set).
    if unsafe { bindings::cancel_delayed_work_sync(dwork) } {
        // SAFETY: The poll work of `this` was cancelled before it ran.
        unsafe { reclaim_cancelled(this) };
    }
}

/// The C `delayed_work` inside a [`DelayedWork`].
fn delayed_work_ptr(dw: &DelayedWork<Engine, 2>) -> *mut bindings::delayed_work {
    // CAST: `DelayedWork` is `repr(transparent)` over `Opaque<delayed_work>`, itself
    // `repr(transparent)` over the C struct.
    core::ptr::from_ref(dw)
        .cast_mut()
        .cast::<bindings::delayed_work>()
}

/// Gives back the reference a cancelled work item held.
///
/// `kernel::workqueue` enqueues an `Arc<T>` by leaking it with `Arc::into_raw` and reclaims it
/// in the item's `run`. An item cancelled before it ran never runs, so its reference must be
/// reclaimed by whoever cancelled it: this is that single place.
///
/// # Safety
///
/// `cancel_delayed_work_sync()` must just have returned true for the work item embedded in
/// `*this`, and this must be called once per such return.
unsafe fn reclaim_cancelled(this: &Arc<Engine>) {
    // SAFETY: By the contract, the cancelled enqueue leaked exactly one `Arc<Engine>` pointing at
    // `*this` that nobody else will reclaim; rebuilding and dropping it releases it once.
    drop(unsafe { Arc::from_raw(Arc::as_ptr(this)) });
}
