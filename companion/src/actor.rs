// SPDX-License-Identifier: GPL-2.0

//! What an action does: log it, reset the kernel's clock state when the module did not step
//! (NTP state, cancel-on-set nudge), then tell each time daemon to re-sync.

use crate::clock;
use crate::daemon::{Action, TimeDaemon};
use crate::dedup::{EventKey, Trigger};
use crate::logger::warn_failed;
use crate::migtime::{outcome_name, MigtimeEvent};
use log::info;

/// The configured actions.
pub struct Actor {
    /// The daemons to tell, in order.
    pub daemons: Vec<Box<dyn TimeDaemon>>,
    /// Reset NTP state and nudge cancel-on-set timers when the module did not step.
    pub clock_actions: bool,
    /// Actions taken (for the log).
    pub actions: u64,
}

/// The log text of an action and whether the kernel's clock state needs a reset (the module
/// neither stepped nor was told the host compensated).
fn describe(trigger: Trigger, ev: Option<&MigtimeEvent>, window_ms: u64) -> (String, bool) {
    match (trigger, ev) {
        (
            Trigger::Migtime {
                covers_marker,
                after_marker,
                ..
            },
            Some(ev),
        ) => {
            let key = EventKey::of(ev);
            let mut what = format!(
                "migtime event {} outcome={} applied_ns={} residual_ns={}",
                ev.event,
                outcome_name(ev),
                ev.applied_ns,
                ev.residual_ns,
            );
            if let Some(m) = covers_marker {
                what += &format!(" (also covers VMClock marker {m:#x})");
            }
            if let Some(m) = after_marker {
                what += &format!(
                    " (re-sync after the kernel's step: VMClock marker {m:#x} was acted on alone before it)"
                );
            }
            (what, key.left_alone())
        }
        (Trigger::Migtime { migration_seq, .. }, None) => {
            (format!("migtime event for {migration_seq}"), true)
        }
        (Trigger::Vmclock { marker, waited }, _) => {
            let what = if waited {
                format!(
                    "VMClock disruption marker={marker:#x}, no migtime event within {window_ms} ms"
                )
            } else {
                format!("VMClock disruption marker={marker:#x} (no /dev/migtime: acting at once)")
            };
            (what, true)
        }
    }
}

impl Actor {
    /// The actor for these daemons.
    pub fn new(daemons: Vec<Box<dyn TimeDaemon>>, clock_actions: bool) -> Self {
        Self {
            daemons,
            clock_actions,
            actions: 0,
        }
    }

    /// Acts once on `trigger` (with its migtime event, if any).
    pub fn act(&mut self, trigger: Trigger, ev: Option<&MigtimeEvent>, window_ms: u64) {
        self.actions += 1;
        let action = Action {
            number: self.actions,
            trigger,
            event: ev,
        };
        let (what, local_reset) = describe(trigger, ev, window_ms);
        let label = action.label();
        info!("action {}: {label}: {what}", self.actions);
        if local_reset {
            self.reset_clock_state(&label);
        }
        for d in &mut self.daemons {
            match d.resync(&action) {
                Ok(Some(text)) => info!("{label}: {text}"),
                Ok(None) => {}
                Err(e) => warn_failed(d.name(), &e),
            }
        }
    }

    /// The kernel NTP state reset and the cancel-on-set nudge (unless `--no-clock-actions`).
    fn reset_clock_state(&self, label: &str) {
        if !self.clock_actions {
            info!("{label}: kernel NTP reset and nudge skipped (--no-clock-actions)");
            return;
        }
        match clock::ntp_reset() {
            Ok(st) => info!("{label}: kernel NTP state reset (maxerror/esterror at limit, STA_UNSYNC by the kernel within 1 s; status {st:#x} kept)"),
            Err(e) => warn_failed("NTP state reset", &e),
        }
        match clock::cancel_on_set_nudge() {
            Ok(()) => info!("{label}: cancel-on-set timers woken (+1 ns ADJ_SETOFFSET)"),
            Err(e) => warn_failed("cancel-on-set nudge", &e),
        }
    }

    /// The earliest follow-up deadline of any daemon.
    pub fn next_deadline(&self) -> Option<u64> {
        self.daemons.iter().filter_map(|d| d.next_deadline()).min()
    }

    /// Time passes for the daemons.
    pub fn on_tick(&mut self, now_ms: u64) {
        for d in &mut self.daemons {
            d.on_tick(now_ms);
        }
    }
}
