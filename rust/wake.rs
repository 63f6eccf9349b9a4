// SPDX-License-Identifier: GPL-2.0

//! What wakes the [`Engine`]: the doorbell interrupt and its work item, and the poll.
//!
//! - The interrupt handler timestamps the ring and queues the doorbell work on the high-priority
//!   system queue: nothing but the page check runs before the step.
//! - Without a doorbell the poll work is the mechanism: a normal timer every `poll_ms`.
//! - With a doorbell it is only a safety net (a ring lost, or rung before the guest resumed):
//!   its timer is **deferrable**, so it never wakes an idle guest; a missed ring is caught at the
//!   guest's next wakeup, before anything runs for long on stale time.
//!
//! Both work items hold an `Arc<Engine>` reference while queued; [`stop`] cancels them and
//! gives back the references of items cancelled before they ran.

use crate::abi::WakeSource;
use crate::clock;
use crate::engine::Engine;
use kernel::{
    bindings, irq,
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
    time::msecs_to_jiffies,
    workqueue::{
        self,
        impl_has_delayed_work,
        impl_has_work,
        DelayedWork,
        Work,
        WorkItem, //
    },
};

impl_has_work! {
    impl HasWork<Self, 1> for Engine { self.doorbell_work }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Engine { self.poll_work }
}

impl WorkItem<1> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        this.check(WakeSource::Doorbell);
    }
}

impl WorkItem<2> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        this.check(WakeSource::Poll);
        arm_poll(&this);
    }
}

/// The doorbell interrupt handler: timestamps the ring and queues the check.
pub(crate) struct Doorbell {
    pub(crate) engine: Arc<Engine>,
}

impl irq::Handler for Doorbell {
    fn handle(&self) -> irq::IrqReturn {
        let e = &self.engine;
        // Keep the first unconsumed ring: that is when the guest learnt of the change.
        let _ = e.rang_mono_ns.cmpxchg(0, clock::monotonic_ns(), Relaxed);
        if !e.stopping.load(Relaxed) {
            // Already queued is fine: the pending run will see the new page.
            let _ = workqueue::system_highpri().enqueue::<Arc<Engine>, 1>(e.clone());
        }
        irq::IrqReturn::Handled
    }
}

/// Queues the next poll.
pub(crate) fn arm_poll(this: &Arc<Engine>) {
    if !this.stopping.load(Relaxed) {
        let j = msecs_to_jiffies(this.poll_period_ms.load(Relaxed));
        let _ = workqueue::system().enqueue_delayed::<Arc<Engine>, 2>(this.clone(), j);
    }
}

/// Makes the poll's timer deferrable (doorbell mode: a safety net that must not wake an idle
/// guest).
///
/// # Safety
///
/// The poll work must never have been queued, and must not be queued concurrently.
pub(crate) unsafe fn make_poll_deferrable(this: &Engine) {
    let dwork = delayed_work_ptr(&this.poll_work);
    // SAFETY: `dwork` points at the initialised `delayed_work` (see `delayed_work_ptr`). Its
    // timer was set up by `DelayedWork::new` with `TIMER_IRQSAFE` and, by this function's
    // contract, was never queued and cannot be queued while we write: adding
    // `TIMER_DEFERRABLE` now is what `INIT_DEFERRABLE_WORK()` would have done at init.
    unsafe { (*dwork).timer.flags |= bindings::TIMER_DEFERRABLE };
}

/// Stops both work items and waits for running ones; reclaims the references of cancelled ones.
/// `stopping` must be set first, so that nothing queues them again.
pub(crate) fn stop(this: &Arc<Engine>) {
    this.stopping.store(true, Relaxed);
    let work = core::ptr::from_ref(&this.doorbell_work).cast_mut();
    // SAFETY: `work` points at the initialised `Work` in `*this`, alive while `this` is.
    let raw = unsafe { Work::raw_get(work) };
    // SAFETY: `raw` is a valid, initialised `work_struct`; cancelling may sleep (process context:
    // unbind).
    if unsafe { bindings::cancel_work_sync(raw) } {
        // SAFETY: The doorbell work of `this` was cancelled before it ran.
        unsafe { reclaim_cancelled(this) };
    }
    let dwork = delayed_work_ptr(&this.poll_work);
    // SAFETY: `dwork` is a valid, initialised `delayed_work`. Cancelling also waits for a
    // running instance, whose re-arm attempt fails (`stopping` is set).
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
/// `cancel_work_sync()` or `cancel_delayed_work_sync()` must just have returned true for a work
/// item embedded in `*this`, and this must be called once per such return.
unsafe fn reclaim_cancelled(this: &Arc<Engine>) {
    // SAFETY: By the contract, the cancelled enqueue leaked exactly one `Arc<Engine>` pointing at
    // `*this` that nobody else will reclaim; rebuilding and dropping it releases it once.
    drop(unsafe { Arc::from_raw(Arc::as_ptr(this)) });
}
