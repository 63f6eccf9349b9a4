// SPDX-License-Identifier: GPL-2.0

//! The kernel log line of every clock step, where an administrator looks for it.
//!
//! The kernel's audit record of a clock change (`audit_tk_injoffset`, and the `settimeofday`
//! records) is written at the end of a system call, from that call's audit context. The module
//! steps the clock from its interrupt thread or a work item, which have none: the kernel
//! records nothing for either step method. So every event that moved CLOCK_REALTIME gets one
//! `pr_notice` line with the migration sequence, the delta and the method, next to the event
//! on `/dev/migtime`.

use crate::abi::{
    Outcome,
    StepMethod, //
};
use crate::event::Event;
use kernel::prelude::*;

/// The name of a [`StepMethod`] value as the event records it.
fn method_name(raw: u32) -> &'static str {
    match raw {
        m if m == StepMethod::Inject as u32 => "inject",
        m if m == StepMethod::SetTimeOfDay as u32 => "settimeofday",
        _ => "none",
    }
}

/// Logs an event that moved CLOCK_REALTIME: a step, a compensated migration's nudge, or a
/// failure after part of the step was applied. Refusals and failures that changed nothing are
/// not steps and are left to the engine's own log. Steps are bounded by the policy, so every
/// one is logged, none rate-limited away.
pub(crate) fn log_step(ev: &Event) {
    let moved = match Outcome::from_u32(ev.outcome) {
        Some(Outcome::Stepped | Outcome::Notified) => true,
        _ => ev.applied_ns != 0,
    };
    if moved {
        pr_notice!(
            "clock step: CLOCK_REALTIME moved by {} ns (intended {} ns) for migration_seq {}, method {}, event {}\n",
            ev.applied_ns,
            ev.intended_ns,
            ev.migration_seq,
            method_name(ev.timing.step_method),
            ev.event
        );
    }
}
