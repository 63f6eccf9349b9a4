// SPDX-License-Identifier: GPL-2.0

//! The time daemons the companion tells to re-sync: the [`TimeDaemon`] trait, and the list
//! built from the options. Each implementation is one file: [`chrony`] (chronyd through
//! chronyc) and [`hook`] (the user's `--on-event` command, for any other daemon). A new daemon
//! is a new file here and one line in [`from_opts`].

pub mod chrony;
pub mod chrony_conf;
pub mod hook;

use crate::cli::Opts;
use crate::dedup::Trigger;
use crate::migtime::MigtimeEvent;
use anyhow::Result;

/// One action, as a daemon sees it.
#[derive(Clone, Copy, Debug)]
pub struct Action<'a> {
    /// 1, 2, ... in the companion's lifetime (for the log).
    pub number: u64,
    /// What triggered it.
    pub trigger: Trigger,
    /// The migtime event, for a migtime trigger.
    pub event: Option<&'a MigtimeEvent>,
}

impl Action<'_> {
    /// The event's `migration_seq`, for a migtime trigger.
    pub fn seq(&self) -> Option<u64> {
        match self.trigger {
            Trigger::Migtime { migration_seq, .. } => Some(migration_seq),
            Trigger::Vmclock { .. } => None,
        }
    }

    /// The VMClock `disruption_marker` this action covers, if any.
    pub fn marker(&self) -> Option<u64> {
        match self.trigger {
            Trigger::Migtime {
                covers_marker,
                after_marker,
                ..
            } => covers_marker.or(after_marker),
            Trigger::Vmclock { marker, .. } => Some(marker),
        }
    }

    /// `migration_seq=N` (or `=none`), the prefix of every log line of the action.
    pub fn label(&self) -> String {
        format!(
            "migration_seq={}",
            self.seq().map_or("none".to_string(), |s| s.to_string())
        )
    }
}

/// A time daemon that can be told to drop its samples and re-sync.
pub trait TimeDaemon {
    /// What a failure is logged as (`chronyd re-sync`, `--on-event`).
    fn name(&self) -> &'static str;

    /// Tells the daemon to re-sync after `action`. `Ok(Some(text))`: done, `text` is logged;
    /// `Ok(None)`: skipped (the daemon is not running; the implementation logs why at debug).
    fn resync(&mut self, action: &Action<'_>) -> Result<Option<String>>;

    /// When [`TimeDaemon::on_tick`] must be called next (monotonic ms), if anything is due.
    fn next_deadline(&self) -> Option<u64> {
        None
    }

    /// Time passes: follow-up work of an earlier re-sync.
    fn on_tick(&mut self, _now_ms: u64) {}
}

/// The daemons the options ask for, in the order they are told.
pub fn from_opts(o: &Opts) -> Vec<Box<dyn TimeDaemon>> {
    let mut v: Vec<Box<dyn TimeDaemon>> = Vec::new();
    if let Some(c) = chrony::Chrony::from_opts(o) {
        v.push(Box::new(c));
    }
    if let Some(h) = hook::Hook::from_opts(o) {
        v.push(Box::new(h));
    }
    v
}
