// SPDX-License-Identifier: GPL-2.0

//! migtime: step the guest's CLOCK_REALTIME after a live migration.
//!
//! The hypervisor exposes a paravirtual clock page (ABI v1, see [`abi`] and `docs/abi.md`) in
//! BAR2 of QEMU's `-device migtime` or, where the operator allows it (`ivshmem=1`), of an
//! ivshmem device. After every migration the destination host bumps
//! `migration_seq` and publishes Tout (`tai_delta_ns`, and the running `tai_delta_total_ns`).
//! This driver ([`driver`]) notices the change ([`wake`]: the MSI-X doorbell interrupt with
//! the migtime device and ivshmem-doorbell, polling with ivshmem-plain), and its [`engine`] decides with [`policy`]
//! and, in process context, steps CLOCK_REALTIME ([`clock`]): atomically with the kernel patch
//! series' `timekeeping_inject_realtime_offset()` where the kernel has it, else read-then-set
//! with `do_settimeofday64()` ([`fallback`]). Either resets NTP state and wakes
//! TFD_TIMER_CANCEL_ON_SET timerfds; a compensated migration gets a 1 ns nudge so that those
//! fire. Insane pages are refused (or warned about, or panic the guest: `on_violation`); the
//! baseline's sequence only moves forward, so no page makes the guest step twice for one
//! migration.
//!
//! The guest writes back what it did in the page's guest area ([`page`]), publishes an event
//! ([`event`]) on `/dev/migtime` ([`event_dev`]) and keeps counters in debugfs `migtime/`
//! ([`counters`]).
//! Module parameters are validated in [`params`].

use kernel::{
    pci,
    prelude::*, //
};

pub mod abi;
mod act;
mod clock;
mod counters;
mod driver;
mod engine;
pub mod event;
mod event_dev;
pub mod fallback;
mod kernel_id;
mod page;
mod params;
pub mod policy;
pub mod rate;
pub mod seqlock;
mod steplog;
pub mod tracker;
mod wake;

kernel::static_assert!(abi::layout_is_v1());
kernel::static_assert!(event::event_layout_is_v1());

module! {
    type: Migtime,
    name: "migtime",
    authors: ["migtime developers"],
    description: "Step CLOCK_REALTIME after live migration (paravirtual clock page)",
    license: "GPL",
    params: {
        poll_ms: u32 {
            default: 100,
            description: "Page poll period in ms without a doorbell interrupt (1..=60000)",
        },
        max_step_ms: u64 {
            default: 600000,
            description: "Largest live migration step applied without a violation, and the live steps' sum allowed per step_window_ms, in ms (1..=18446744073709)",
        },
        on_violation: u32 {
            default: 1,
            description: "On an insane page: 0 warn and apply if defined, 1 refuse, 2 panic",
        },
        read_attempts: u32 {
            default: 64,
            description: "Seqlock read attempts before giving up until the next check (1..=100000)",
        },
        max_restore_ms: u64 {
            default: 315360000000,
            description: "Largest step for a restore from saved state (page flag RESTORE), default 3650 days, in ms (1..=18446744073709)",
        },
        max_steps: u32 {
            default: 32,
            description: "Steps allowed per step_window_ms, of every kind (1..=32)",
        },
        step_window_ms: u32 {
            default: 600000,
            description: "Rate window in ms: at most max_steps steps, and live steps adding up to at most max_step_ms, per window (1..=86400000)",
        },
        step_method: u32 {
            default: 0,
            description: "0 auto (atomic inject where the kernel has it), 1 inject, 2 settimeofday",
        },
        ivshmem: bool {
            default: false,
            description: "Also bind ivshmem (1af4:1110) pages; only if the backend is private to this VM",
        },
    },
}

/// The module: validates the parameters, then registers the PCI driver.
#[pin_data]
struct Migtime {
    #[pin]
    _driver: kernel::driver::Registration<pci::Adapter<driver::MigtimeDriver>>,
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
        // First of all: is this the kernel build the module was compiled for?
        let id = kernel_id::check();
        let cfg = params::Config::from_params();
        try_pin_init!(Self {
            _: {
                id?;
                let cfg = cfg?;
                pr_info!(
                    "loaded (ABI v{}, poll_ms={} max_step_ms={} on_violation={} read_attempts={} step_method={:?} ivshmem={})\n",
                    abi::VERSION,
                    cfg.poll_ms,
                    cfg.policy.limit_ns / 1_000_000,
                    module_parameters::on_violation.value(),
                    cfg.read_attempts,
                    cfg.effective_step_method(),
                    module_parameters::ivshmem.value()
                );
            },
            _driver <- kernel::driver::Registration::new(c"migtime", module),
            _log: UnloadLog,
        })
    }
}
