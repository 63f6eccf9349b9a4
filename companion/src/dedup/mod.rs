// SPDX-License-Identifier: GPL-2.0

//! De-duplication of the two migration signals (a `/dev/migtime` event and a VMClock
//! disruption): which one to act on, so that one migration is acted on once. Pure: time is a
//! caller-supplied monotonic millisecond counter (`now_ms`), never read here.

#[cfg(test)]
mod tests;

use migtime_abi::abi::Outcome;

/// What de-duplication needs of a `/dev/migtime` event. Two records with the same key are the
/// same record read twice (after reopening the device); the same `migration_seq` with another
/// outcome or applied step is news (a `failed` check followed by a `stepped` one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKey {
    /// `migration_seq`.
    pub migration_seq: u64,
    /// `outcome` (`MIGTIME_OUTCOME_*`).
    pub outcome: u32,
    /// `applied_ns`: what the module moved the clock by.
    pub applied_ns: i64,
}

impl EventKey {
    /// The key of `ev`.
    pub fn of(ev: &migtime_abi::event::Event) -> Self {
        Self {
            migration_seq: ev.migration_seq,
            outcome: ev.outcome,
            applied_ns: ev.applied_ns,
        }
    }

    /// The module moved the clock (stepped, or a failed step that moved it part of the way):
    /// the time daemon must hear of it whatever was done before.
    pub fn applied(&self) -> bool {
        Outcome::from_u32(self.outcome) == Some(Outcome::Stepped) || self.applied_ns != 0
    }

    /// The clock was left alone although the host reported a migration (refused, failed, or
    /// unknown): the companion's reaction to these is bounded by the refusal hold-off.
    pub fn left_alone(&self) -> bool {
        !self.applied() && Outcome::from_u32(self.outcome) != Some(Outcome::Notified)
    }
}

/// Where an action came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A `/dev/migtime` event (the module already stepped, or notified).
    Migtime {
        /// The event's `migration_seq`.
        migration_seq: u64,
        /// The VMClock disruption this event also covers, if one was waiting for it.
        covers_marker: Option<u64>,
        /// The VMClock disruption the companion already acted on alone (its wait ran out
        /// before this event came): this action re-syncs after the kernel's step.
        after_marker: Option<u64>,
    },
    /// A VMClock disruption with no migtime event for it.
    Vmclock {
        /// The new `disruption_marker`.
        marker: u64,
        /// The companion waited the window for a migtime event (else: no `/dev/migtime`).
        waited: bool,
    },
}

/// What the state machine decided for one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Act now (once per migration).
    Act(Trigger),
    /// First observation: remembered, nothing to do.
    Baseline,
    /// Nothing new (same marker, same migration_seq re-read after reopening the device).
    Unchanged,
    /// A VMClock disruption is pending until `deadline_ms`, waiting for the migtime event.
    Wait {
        /// When to act alone if no migtime event comes.
        deadline_ms: u64,
    },
    /// Another marker change while one is pending: merged into the pending one.
    Merged,
    /// The migration was already acted on through the other signal within the window.
    Duplicate {
        /// The trigger that already acted.
        acted: Trigger,
    },
    /// A migtime event recorded before the companion started, older than the catch-up limit.
    Stale,
    /// An event that left the clock alone (refused, failed) within the refusal hold-off of
    /// the last reaction to one: not acted on, so that a host cannot keep the time daemon
    /// unsynchronised by a storm of refused pages.
    Suppressed {
        /// When the hold-off ends.
        until_ms: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct LastAction {
    trigger: Trigger,
    at_ms: u64,
    /// The other signal for this action's migration has been seen (and dropped) already.
    paired: bool,
}

/// De-duplication of the two migration signals.
///
/// QEMU bumps the VMClock `disruption_marker` in `post_load`, before `cont`; the migtime module's
/// event follows 50-300 ms after `cont` (poll period, or doorbell; worst case its safety poll,
/// max(poll_ms, 1000 ms)). There is no common identifier, so the two are paired in time:
///
/// - a marker change while `/dev/migtime` is open starts a wait of `window_ms`; a migtime event
///   within it acts once (it also covers the marker); at the deadline the companion acts alone;
/// - a migtime event acts at once; a marker change seen within `window_ms` after it is the same
///   migration and is dropped;
/// - a migtime event within `window_ms` after acting alone on a marker is the same migration:
///   if the module left the clock alone it is dropped (logged: it arrived later than the window
///   was meant to allow); if it applied a step it is acted on again, as a re-sync, because the
///   time daemon's samples since the first action span the kernel's step;
/// - an event that left the clock alone (refused, failed) is acted on at most once per
///   refusal hold-off, unless it covers a pending marker;
/// - without `/dev/migtime` open, a marker change acts at once.
///
/// Each action pairs with at most one signal of the other kind, so two real migrations close
/// together are still acted on twice.
#[derive(Clone, Debug)]
pub struct Dedup {
    window_ms: u64,
    catch_up_ms: u64,
    started_ms: u64,
    marker: Option<(u64, u64)>,
    pending: Option<(u64, u64)>,
    last_event: Option<EventKey>,
    last_action: Option<LastAction>,
    refusal_holdoff_ms: u64,
    last_refusal_reaction_ms: Option<u64>,
}

impl Dedup {
    /// `window_ms`: the pairing window; `catch_up_ms`: a migtime event recorded before
    /// `started_ms` is acted on only if it is at most this old; `started_ms`: the companion's
    /// start on the same clock as every later `now_ms`.
    pub fn new(window_ms: u64, catch_up_ms: u64, started_ms: u64) -> Self {
        Self {
            window_ms,
            catch_up_ms,
            started_ms,
            marker: None,
            pending: None,
            last_event: None,
            last_action: None,
            refusal_holdoff_ms: 0,
            last_refusal_reaction_ms: None,
        }
    }

    /// Reacts to events that left the clock alone at most once per `ms` (0: every time).
    pub fn with_refusal_holdoff(mut self, ms: u64) -> Self {
        self.refusal_holdoff_ms = ms;
        self
    }

    /// The pairing window, ms.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    fn act(&mut self, trigger: Trigger, now_ms: u64, paired: bool) -> Verdict {
        self.last_action = Some(LastAction {
            trigger,
            at_ms: now_ms,
            paired,
        });
        Verdict::Act(trigger)
    }

    /// The action within the window that has not been paired yet, if it came from `vmclock`
    /// (`true`) or migtime (`false`).
    fn unpaired_recent(&mut self, now_ms: u64, vmclock: bool) -> Option<&mut LastAction> {
        let window = self.window_ms;
        self.last_action.as_mut().filter(|a| {
            !a.paired
                && now_ms.saturating_sub(a.at_ms) <= window
                && matches!(a.trigger, Trigger::Vmclock { .. }) == vmclock
        })
    }

    /// A `/dev/migtime` event, recorded at guest monotonic `event_ms`.
    ///
    /// An event that applied a step is always acted on: after a marker the companion acted on
    /// alone it is a re-sync ([`Trigger::Migtime::after_marker`]), since the time daemon's
    /// samples now span the kernel's step. Only events that left the clock alone can be
    /// duplicates or suppressed.
    pub fn on_migtime(&mut self, key: EventKey, event_ms: u64, now_ms: u64) -> Verdict {
        if self.last_event.replace(key) == Some(key) {
            return Verdict::Unchanged;
        }
        if self.last_action.is_none()
            && self.pending.is_none()
            && event_ms < self.started_ms
            && now_ms.saturating_sub(event_ms) > self.catch_up_ms
        {
            return Verdict::Stale;
        }
        let migration_seq = key.migration_seq;
        let mut t = Trigger::Migtime {
            migration_seq,
            covers_marker: None,
            after_marker: None,
        };
        if let Some((marker, _)) = self.pending.take() {
            if let Trigger::Migtime { covers_marker, .. } = &mut t {
                *covers_marker = Some(marker);
            }
            return self.react(t, key, now_ms, true);
        }
        if let Some(a) = self.unpaired_recent(now_ms, true) {
            a.paired = true;
            let acted = a.trigger;
            if !key.applied() {
                return Verdict::Duplicate { acted };
            }
            if let (Trigger::Migtime { after_marker, .. }, Trigger::Vmclock { marker, .. }) =
                (&mut t, acted)
            {
                *after_marker = Some(marker);
            }
            return self.act(t, now_ms, true);
        }
        if key.left_alone() {
            if let Some(until_ms) = self.refusal_holdoff(now_ms) {
                return Verdict::Suppressed { until_ms };
            }
        }
        self.react(t, key, now_ms, false)
    }

    /// Acts on an event, remembering when the companion last reacted to one that left the
    /// clock alone.
    fn react(&mut self, t: Trigger, key: EventKey, now_ms: u64, paired: bool) -> Verdict {
        if key.left_alone() {
            self.last_refusal_reaction_ms = Some(now_ms);
        }
        self.act(t, now_ms, paired)
    }

    /// The end of the refusal hold-off, if `now_ms` is within it.
    fn refusal_holdoff(&self, now_ms: u64) -> Option<u64> {
        let until = self
            .last_refusal_reaction_ms?
            .saturating_add(self.refusal_holdoff_ms);
        (now_ms < until).then_some(until)
    }

    /// A consistent VMClock read: `key` is [`VmclockPage::disruption_key`], `marker` the
    /// `disruption_marker`; `migtime_open`: `/dev/migtime` is open (a migtime event may follow).
    pub fn on_vmclock(
        &mut self,
        key: (u64, u64),
        marker: u64,
        migtime_open: bool,
        now_ms: u64,
    ) -> Verdict {
        match self.marker.replace(key) {
            None => return Verdict::Baseline,
            Some(old) if old == key => return Verdict::Unchanged,
            Some(_) => {}
        }
        if let Some(p) = self.pending.as_mut() {
            p.0 = marker;
            return Verdict::Merged;
        }
        if let Some(a) = self.unpaired_recent(now_ms, false) {
            a.paired = true;
            return Verdict::Duplicate { acted: a.trigger };
        }
        if !migtime_open || self.window_ms == 0 {
            return self.act(
                Trigger::Vmclock {
                    marker,
                    waited: false,
                },
                now_ms,
                false,
            );
        }
        let deadline_ms = now_ms.saturating_add(self.window_ms);
        self.pending = Some((marker, deadline_ms));
        Verdict::Wait { deadline_ms }
    }

    /// Time passes: acts alone on a pending marker whose wait is over.
    pub fn on_tick(&mut self, now_ms: u64) -> Option<Verdict> {
        match self.pending {
            Some((marker, deadline)) if now_ms >= deadline => {
                self.pending = None;
                Some(self.act(
                    Trigger::Vmclock {
                        marker,
                        waited: true,
                    },
                    now_ms,
                    false,
                ))
            }
            _ => None,
        }
    }

    /// When [`Dedup::on_tick`] must be called next, if anything is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending.map(|(_, d)| d)
    }
}

impl Verdict {
    /// The verdict for the log.
    pub fn describe(self) -> String {
        match self {
            Verdict::Act(t) => format!("act ({t:?})"),
            Verdict::Baseline => "baseline (first read)".into(),
            Verdict::Unchanged => "unchanged".into(),
            Verdict::Wait { deadline_ms } => format!(
                "disruption: waiting for the migtime event until t={}.{:03}",
                deadline_ms / 1000,
                deadline_ms % 1000
            ),
            Verdict::Merged => "another disruption while one is pending: merged".into(),
            Verdict::Duplicate { acted } => format!(
                "duplicate: this migration was already acted on ({acted:?}); not acting again"
            ),
            Verdict::Stale => {
                "recorded before this companion started and older than --catch-up-s: not acted on"
                    .into()
            }
            Verdict::Suppressed { until_ms } => format!(
                "the clock was left alone and the companion reacted to such an event less than --refusal-holdoff-s ago: not acting again before t={}.{:03}",
                until_ms / 1000,
                until_ms % 1000
            ),
        }
    }
}
