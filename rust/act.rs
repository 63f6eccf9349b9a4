// SPDX-License-Identifier: GPL-2.0

//! The "act" step of the engine: carry out what the policy decided — step the clock, refuse
//! (with a log line, within the tracker's log budget), or panic the guest (`on_violation=2`).

use crate::abi::Outcome;
use crate::clock::Stepper;
use crate::counters::Counters;
use crate::fallback::Stop;
use crate::policy::{
    Action,
    Baseline,
    Decision, //
};
use crate::seqlock::Snapshot;
use kernel::{
    bindings,
    prelude::*,
    sync::atomic::Relaxed, //
};

/// What [`act`] did.
pub(crate) struct Acted {
    /// The outcome recorded in the event and the guest area.
    pub(crate) outcome: Outcome,
    /// The step intended (the pending delta), nanoseconds.
    pub(crate) intended_ns: i64,
    /// The step measured as applied, nanoseconds.
    pub(crate) applied_ns: i64,
    /// `applied_ns - intended_ns`.
    pub(crate) residual_ns: i64,
    /// Clock updates made (0: none attempted).
    pub(crate) sets: u32,
}

/// Carries out the decision with `stepper`; `baseline` is what the clock is in step with (for
/// the log). `None` when there is nothing to record.
pub(crate) fn act(
    stepper: &mut Stepper,
    baseline: Baseline,
    c: &Counters,
    snap: &Snapshot,
    d: &Decision,
) -> Option<Acted> {
    let pending = d.pending_ns.unwrap_or(0);
    match d.action {
        Action::Nothing => None,
        Action::Panic(o) => die(reason(o)),
        Action::Refuse(o) => {
            if d.log {
                pr_warn!(
                    "refused seq={} baseline_seq={} pending_ns={}: {} ({})\n",
                    snap.migration_seq,
                    baseline.seq,
                    pending,
                    o.name(),
                    reason(o).to_str().unwrap_or("?")
                );
            }
            Counters::inc(&c.refusals);
            Some(Acted {
                outcome: o,
                intended_ns: pending,
                applied_ns: 0,
                residual_ns: 0,
                sets: 0,
            })
        }
        Action::Apply { step_ns, outcome } => {
            if let (Some(w), true) = (d.warned, d.log) {
                pr_warn!(
                    "violation {} at seq={} (on_violation=warn): stepping by {} ns anyway\n",
                    w.name(),
                    snap.migration_seq,
                    step_ns
                );
            }
            Some(step(stepper, c, snap, step_ns, outcome))
        }
    }
}

/// Steps the clock for `snap`. A step rejected before the clock moved is [`Outcome::Failed`]
/// with nothing applied; one rejected after it moved is [`Outcome::Partial`] with what moved.
fn step(
    stepper: &mut Stepper,
    c: &Counters,
    snap: &Snapshot,
    step_ns: i64,
    outcome: Outcome,
) -> Acted {
    // The fault knob is consumed by the step it applies to, whatever the method.
    let fault = c.fault_partial_step.xchg(0, Relaxed) != 0;
    match stepper.step(step_ns, fault) {
        Ok(r) => {
            let outcome = match r.stop {
                Stop::SetFailed(e) => {
                    pr_err!(
                        "step by {} ns at seq={}: a correcting set failed ({:?}); applied {} ns, residual {} ns kept\n",
                        step_ns,
                        snap.migration_seq,
                        e,
                        r.applied_ns,
                        r.residual_ns
                    );
                    Outcome::Partial
                }
                Stop::Overflow => Outcome::Partial,
                Stop::Interfered => {
                    pr_warn!(
                        "step at seq={}: the clock moved by {} ns, far from the set's {} ns: another agent stepped it; not corrected\n",
                        snap.migration_seq,
                        r.applied_ns,
                        step_ns
                    );
                    outcome
                }
                Stop::Done => outcome,
            };
            Counters::inc(match outcome {
                Outcome::Stepped | Outcome::Partial => &c.steps,
                _ => &c.notifies,
            });
            c.last_residual_ns.store(r.residual_ns, Relaxed);
            Acted {
                outcome,
                intended_ns: step_ns,
                applied_ns: r.applied_ns,
                residual_ns: r.residual_ns,
                sets: r.sets,
            }
        }
        Err(e) => {
            pr_err!(
                "step by {} ns at seq={} failed: {:?}\n",
                step_ns,
                snap.migration_seq,
                e
            );
            Counters::inc(&c.step_failures);
            Acted {
                outcome: Outcome::Failed,
                intended_ns: step_ns,
                applied_ns: 0,
                residual_ns: 0,
                sets: 1,
            }
        }
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
        Outcome::RefusedSeqBackwards => c"migration_seq went backwards (below the baseline)",
        Outcome::RefusedOverLimit => {
            c"pending delta beyond max_step_ms (max_restore_ms for a restore)"
        }
        Outcome::RefusedInconsistent => {
            c"page inconsistent (total changed without seq, overflow, or seq+1 delta mismatch)"
        }
        Outcome::RefusedRate => {
            c"rate bound: too many steps, or live steps beyond max_step_ms, within step_window_ms"
        }
        _ => c"page violation",
    }
}
