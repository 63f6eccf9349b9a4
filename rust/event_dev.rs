// SPDX-License-Identifier: GPL-2.0

//! `/dev/migtime`: the latest event for userspace, with blocking read and poll.
//!
//! The 7.3 [`kernel::miscdevice::MiscDevice`] trait has no `poll`, so this file carries a small
//! misc device of its own: a `struct miscdevice` with hand-written `file_operations`
//! (open/release/read/poll; no write, no ioctl), modelled on binder's. Files are streams
//! (`stream_open`): no position, `lseek` and `pread` fail with `ESPIPE`.
//!
//! Semantics, per open file: `read(2)` returns the latest [`Event`] once it is newer than the
//! last event this file returned; it blocks until then (`O_NONBLOCK`: `EAGAIN`). A new file has
//! returned nothing yet, so its first read returns the latest event at once if there is one: a
//! reader started after a migration learns of it, and must tell an event it already handled
//! (same `event` number and `realtime_ns`) from a new one. The record is
//! [`EVENT_BYTES`](crate::event::EVENT_BYTES) little-endian bytes, or its first
//! [`EVENT_V1_BYTES`](crate::event::EVENT_V1_BYTES) bytes into a buffer shorter than that; a
//! shorter buffer is `EINVAL`. `poll(2)` reports
//! `EPOLLIN | EPOLLRDNORM` when a newer event exists. After the device is unbound, reads return
//! `ENODEV` and poll reports `EPOLLHUP | EPOLLERR`.
//!
//! The node is mode 0440, owned by root: the kernel cannot name a group, so the udev rule the
//! package ships gives it to the group the companion runs in (`docs/threat-model.md`).
//!
//! Every event that moved the clock is also logged ([`crate::steplog`]).

use crate::event::Event;
use kernel::{
    bindings, container_of,
    error::to_result,
    ffi::{
        c_char,
        c_int,
        c_void, //
    },
    fs::File,
    new_poll_condvar, new_spinlock,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        poll::{
            PollCondVar,
            PollTable, //
        },
        Arc, SpinLock,
    },
    types::{
        ForeignOwnable,
        Opaque, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// The state readers wait on.
struct HubState {
    /// The latest event (`event == 0`: none yet).
    latest: Event,
    /// The device was unbound: no event will come any more.
    gone: bool,
}

/// The latest event and the readers waiting for the next one.
#[pin_data]
pub(crate) struct EventHub {
    #[pin]
    state: SpinLock<HubState>,
    #[pin]
    cv: PollCondVar,
}

impl EventHub {
    /// A hub with no event yet.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                state <- new_spinlock!(HubState {
                    latest: Event::default(),
                    gone: false,
                }),
                cv <- new_poll_condvar!("migtime::EventHub::cv"),
            }),
            GFP_KERNEL,
        )
    }

    /// Publishes `ev` and wakes readers and pollers. An event not newer than the latest one
    /// (a smaller `event` number) is ignored: the hub only moves forward.
    pub(crate) fn publish(&self, ev: Event) {
        {
            let mut st = self.state.lock();
            if ev.event <= st.latest.event {
                return;
            }
            st.latest = ev;
        }
        crate::steplog::log_step(&ev);
        self.cv.notify_all();
    }

    /// Marks the hub dead (device unbound) and wakes everybody.
    pub(crate) fn shut_down(&self) {
        self.state.lock().gone = true;
        self.cv.notify_all();
    }

    /// The latest event, if one exists.
    #[cfg(CONFIG_KUNIT = "y")]
    pub(crate) fn latest(&self) -> Option<Event> {
        let ev = self.state.lock().latest;
        (ev.event != 0).then_some(ev)
    }
}

/// Per-open-file state.
struct OpenFile {
    hub: Arc<EventHub>,
    /// `event` number of the last event this file returned (0: none).
    last: Atomic<u64>,
}

impl OpenFile {
    /// Waits for an event newer than the last one this file returned, claims it (under the hub
    /// lock, so two threads reading one file never both get the same event) and returns it
    /// with the cursor value it replaced.
    fn claim_event(&self, nonblock: bool) -> Result<(Event, u64)> {
        let mut guard = self.hub.state.lock();
        loop {
            let last = self.last.load(Relaxed);
            if guard.latest.event > last {
                self.last.store(guard.latest.event, Relaxed);
                return Ok((guard.latest, last));
            }
            if guard.gone {
                return Err(ENODEV);
            }
            if nonblock {
                return Err(EAGAIN);
            }
            if self.hub.cv.wait_interruptible(&mut guard) {
                return Err(ERESTARTSYS);
            }
        }
    }

    /// `read(2)`: one event record into `out`.
    fn read(&self, out: UserSlice, len: usize, nonblock: bool) -> Result<usize> {
        let n = Event::read_len(len).ok_or(EINVAL)?;
        let (ev, prev) = self.claim_event(nonblock)?;
        if let Err(e) = out.writer().write_slice(&ev.to_le_bytes()[..n]) {
            // Not delivered: give the event back unless another reader moved on meanwhile.
            let _guard = self.hub.state.lock();
            if self.last.load(Relaxed) == ev.event {
                self.last.store(prev, Relaxed);
            }
            return Err(e);
        }
        Ok(n)
    }

    /// `poll(2)` mask.
    fn poll(&self, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, &self.hub.cv);
        let guard = self.hub.state.lock();
        let mut mask = 0;
        if guard.latest.event > self.last.load(Relaxed) {
            mask |= bindings::POLLIN | bindings::POLLRDNORM;
        } else if guard.gone {
            mask |= bindings::POLLHUP | bindings::POLLERR;
        }
        mask
    }
}

/// A registered `/dev/migtime` misc device.
///
/// # Invariants
///
/// `misc` holds a `struct miscdevice` registered with `misc_register()` whose `fops` are
/// [`FOPS`]; it is deregistered exactly once, in `drop`.
#[pin_data(PinnedDrop)]
pub(crate) struct EventDevice {
    hub: Arc<EventHub>,
    #[pin]
    misc: Opaque<bindings::miscdevice>,
}

// SAFETY: `misc` is only touched by the misc core (which serialises with `misc_mtx`) and by
// `drop`; `hub` is `Send + Sync`.
unsafe impl Send for EventDevice {}
// SAFETY: See `Send`; no `&self` method mutates anything.
unsafe impl Sync for EventDevice {}

/// Makes a `file_operations` usable in a `static`.
#[repr(transparent)]
struct Fops(bindings::file_operations);
// SAFETY: The table is immutable after compile time and only read by the VFS.
unsafe impl Sync for Fops {}

static FOPS: Fops = Fops(bindings::file_operations {
    owner: kernel::module::this_module::<crate::LocalModule>().as_ptr(),
    open: Some(fops_open),
    release: Some(fops_release),
    read: Some(fops_read),
    poll: Some(fops_poll),
    // No `llseek`: `stream_open` in `fops_open` makes every seek fail with `ESPIPE`.
    ..pin_init::zeroed()
});

impl EventDevice {
    /// Registers `/dev/migtime` (mode 0440, root:root; udev gives it a group) serving events
    /// from `hub`.
    pub(crate) fn register(hub: Arc<EventHub>) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            hub,
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut m: bindings::miscdevice = pin_init::zeroed();
                m.minor = bindings::MISC_DYNAMIC_MINOR as c_int;
                m.name = c"migtime".as_char_ptr();
                m.fops = &FOPS.0;
                m.mode = 0o440;
                // SAFETY: The initializer may write to `slot`.
                unsafe { slot.write(m) };
                // SAFETY: `slot` holds a valid `miscdevice`; it is pinned and deregistered in
                // `drop` before its memory goes away. `hub` is already initialised (fields are
                // initialised in order), so `fops_open` may run as soon as this returns.
                // INVARIANT: On success `slot` is registered with `FOPS`.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for EventDevice {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant the device is registered; after this no new `open` can
        // reach `self` (misc_deregister takes `misc_mtx`, as `misc_open` does).
        unsafe { bindings::misc_deregister(self.misc.get()) };
        self.hub.shut_down();
    }
}

/// # Safety
///
/// Called by `misc_open()` with `misc_mtx` held and `file->private_data` pointing at the
/// `miscdevice` embedded in a live [`EventDevice`].
unsafe extern "C" fn fops_open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: `misc_open()` set `private_data` to our `miscdevice` before calling us.
    let misc = unsafe { (*file).private_data }.cast::<Opaque<bindings::miscdevice>>();
    // SAFETY: `misc` is the `misc` field (an `Opaque<miscdevice>`, same layout as the C struct)
    // of an `EventDevice` (only `FOPS` registered via `EventDevice::register` lead here), which
    // stays alive while `misc_mtx` is held since deregistration takes it too.
    let dev = unsafe { &*container_of!(misc, EventDevice, misc) };
    let of = KBox::new(
        OpenFile {
            hub: dev.hub.clone(),
            last: Atomic::new(0),
        },
        GFP_KERNEL,
    );
    let Ok(of) = of else {
        return ENOMEM.to_errno();
    };
    // SAFETY: `inode` and `file` are the ones being opened, valid during this call;
    // `stream_open` only adjusts `file->f_mode` (it cannot fail).
    let ret = unsafe { bindings::stream_open(inode, file) };
    if ret != 0 {
        return ret;
    }
    // SAFETY: The open callback owns `private_data`; `fops_release` reclaims it.
    unsafe { (*file).private_data = of.into_foreign() };
    0
}

/// # Safety
///
/// Called by the VFS once, when the last reference to a file opened by `fops_open` goes away.
unsafe extern "C" fn fops_release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `fops_open` stored a `KBox<OpenFile>` there; release owns it now, and no other
    // file operation can run concurrently with or after release.
    drop(unsafe { KBox::<OpenFile>::from_foreign((*file).private_data) });
    0
}

/// # Safety
///
/// Called by the VFS for a file opened by `fops_open`, with `buf` a user pointer valid for the
/// checks `copy_to_user` does and `count` its length.
unsafe extern "C" fn fops_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: `private_data` is the `KBox<OpenFile>` from `fops_open`, alive until release,
    // which cannot run during this call.
    let of = unsafe { KBox::<OpenFile>::borrow((*file).private_data) };
    // SAFETY: The VFS guarantees `file` is valid for the duration of this call; we never use
    // the file position, so no `fdget_pos` region can conflict.
    let nonblock = unsafe { File::from_raw_file(file) }.flags() & bindings::O_NONBLOCK != 0;
    let out = UserSlice::new(UserPtr::from_ptr(buf.cast::<c_void>()), count);
    match of.read(out, count, nonblock) {
        // CAST: `n` is at most `EVENT_BYTES` (128).
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by the VFS for a file opened by `fops_open`, with `wait` null or a valid poll table.
unsafe extern "C" fn fops_poll(
    file: *mut bindings::file,
    wait: *mut bindings::poll_table_struct,
) -> bindings::__poll_t {
    // SAFETY: `private_data` is the `KBox<OpenFile>` from `fops_open`, alive until release.
    let of = unsafe { KBox::<OpenFile>::borrow((*file).private_data) };
    // SAFETY: The VFS guarantees `file` is valid for the duration of this call and there is no
    // `fdget_pos` region we could conflict with (we never use the position).
    let fref = unsafe { File::from_raw_file(file) };
    // SAFETY: `wait` is null or a valid `poll_table` for the duration of this call.
    let table = unsafe { PollTable::from_raw(wait) };
    of.poll(fref, table)
}

#[kunit_tests(migtime_event_dev)]
mod tests {
    use super::*;
    use crate::abi::{
        Outcome,
        Timing, //
    };
    use crate::event::{
        EVENT_BYTES,
        EVENT_V1_BYTES, //
    };

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
            timing: Timing {
                wake_mono_ns: 8,
                sets: 9,
                ..Timing::default()
            },
        };
        let b = ev.to_le_bytes();
        assert_eq!(b.len(), EVENT_BYTES);
        assert_eq!(b[8], 0x08);
        assert_eq!(b[15], 0x01);
        assert_eq!(&b[20..24], &1u32.to_le_bytes());
        assert_eq!(&b[24..32], &(-2i64).to_le_bytes());
        assert_eq!(&b[56..64], &7i64.to_le_bytes());
        assert_eq!(&b[64..72], &8i64.to_le_bytes());
        assert_eq!(&b[96..100], &9u32.to_le_bytes());
    }

    #[test]
    fn read_lengths() {
        assert_eq!(Event::read_len(EVENT_V1_BYTES - 1), None);
        assert_eq!(Event::read_len(EVENT_V1_BYTES), Some(EVENT_V1_BYTES));
        assert_eq!(Event::read_len(EVENT_BYTES - 1), Some(EVENT_V1_BYTES));
        assert_eq!(Event::read_len(4096), Some(EVENT_BYTES));
    }

    #[test]
    fn hub_publishes_in_order() {
        let hub = EventHub::new().unwrap();
        assert!(hub.latest().is_none());
        hub.publish(Event {
            event: 2,
            ..Event::default()
        });
        // An older event never replaces a newer one.
        hub.publish(Event {
            event: 1,
            ..Event::default()
        });
        assert_eq!(hub.latest().map(|e| e.event), Some(2));
    }
}
