// SPDX-License-Identifier: GPL-2.0

//! Statistics of a bound device, exported read-only in debugfs under `migtime/`, and the one
//! fault-injection knob the guest tests use (read-write, root only like all of debugfs).

use kernel::{
    debugfs::Scope,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
    },
};

/// The counters. Each one is a debugfs file of the same name holding a decimal number.
pub(crate) struct Counters {
    /// Events recorded (every decision that was not "nothing changed").
    pub(crate) events: Atomic<u64>,
    /// Non-zero steps applied.
    pub(crate) steps: Atomic<u64>,
    /// Compensated migrations notified (zero step).
    pub(crate) notifies: Atomic<u64>,
    /// Page changes refused (sequence backwards, over limit, inconsistent).
    pub(crate) refusals: Atomic<u64>,
    /// Steps the kernel rejected (the baseline stays; retried up to 3 times per page).
    pub(crate) step_failures: Atomic<u64>,
    /// Seqlock read attempts beyond the first, summed over all reads.
    pub(crate) read_retries: Atomic<u64>,
    /// Reads that gave up after `read_attempts` attempts (host busy or stuck odd).
    pub(crate) read_busy: Atomic<u64>,
    /// Residual of the latest step: applied minus intended, nanoseconds.
    pub(crate) last_residual_ns: Atomic<i64>,
    /// `migration_seq` of the latest event.
    pub(crate) last_seq: Atomic<u64>,
    /// Fault injection (`fault_partial_step`, read-write): when non-zero, the next
    /// read-then-set step makes its first set 1 ms short and has its first correcting set
    /// rejected with `EINVAL`, as `do_settimeofday64()` rejects a time near its validity limits.
    /// The step is then partial: the tests check that what moved is recorded and never applied
    /// again. Cleared by the step that consumes it; the inject method ignores it.
    pub(crate) fault_partial_step: Atomic<u32>,
}

impl Counters {
    /// All counters at zero.
    pub(crate) fn new() -> Self {
        Self {
            events: Atomic::new(0),
            steps: Atomic::new(0),
            notifies: Atomic::new(0),
            refusals: Atomic::new(0),
            step_failures: Atomic::new(0),
            read_retries: Atomic::new(0),
            read_busy: Atomic::new(0),
            last_residual_ns: Atomic::new(0),
            last_seq: Atomic::new(0),
            fault_partial_step: Atomic::new(0),
        }
    }

    /// Adds one to `c`.
    pub(crate) fn inc(c: &Atomic<u64>) {
        c.add(1u64, Relaxed);
    }
}

/// Creates the debugfs directory `migtime/` with one read-only file per counter and the
/// read-write fault knob. The directory is removed when the returned scope is dropped.
pub(crate) fn debugfs(counters: Arc<Counters>) -> impl PinInit<Scope<Arc<Counters>>> {
    Scope::dir(counters, c"migtime", |c, dir| {
        dir.read_only_file(c"events", &c.events);
        dir.read_only_file(c"steps", &c.steps);
        dir.read_only_file(c"notifies", &c.notifies);
        dir.read_only_file(c"refusals", &c.refusals);
        dir.read_only_file(c"step_failures", &c.step_failures);
        dir.read_only_file(c"read_retries", &c.read_retries);
        dir.read_only_file(c"read_busy", &c.read_busy);
        dir.read_only_file(c"last_residual_ns", &c.last_residual_ns);
        dir.read_only_file(c"last_seq", &c.last_seq);
        dir.read_write_file(c"fault_partial_step", &c.fault_partial_step);
    })
}
