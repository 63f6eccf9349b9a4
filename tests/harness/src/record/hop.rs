// SPDX-License-Identifier: GPL-2.0

//! What a migration run measured: one [`Hop`] per migration and the run's
//! [`SimSummary`] (`RUN/summary.json`), records every layer may read.

use std::path::PathBuf;

use migtime_abi::abi::HostArea;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

use crate::base::ktap::Summary;
use crate::record::ack::{Ack, ExpectOutcome};
use crate::record::storm::StormReport;

/// `serialize_with` for a [`HostArea`] in `summary.json`: its fields but
/// `reserved`.
pub fn ser_host_area<S: Serializer>(h: &HostArea, s: S) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct("HostArea", 8)?;
    st.serialize_field("magic", &h.magic)?;
    st.serialize_field("version", &h.version)?;
    st.serialize_field("size", &h.size)?;
    st.serialize_field("seq_count", &h.seq_count)?;
    st.serialize_field("flags", &h.flags)?;
    st.serialize_field("migration_seq", &h.migration_seq)?;
    st.serialize_field("tai_delta_ns", &h.tai_delta_ns)?;
    st.serialize_field("tai_delta_total_ns", &h.tai_delta_total_ns)?;
    st.end()
}

/// One migration hop, for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Hop {
    pub from: String,
    pub to: String,
    /// `migrate` issued → MIGRATION completed on the source (host ms).
    pub migration_ms: f64,
    /// QEMU's own downtime figure (query-migrate), ms.
    pub downtime_ms: Option<f64>,
    pub blackout_ms: u64,
    /// Tout written (includes skew), ns; 0 if compensated.
    pub tout_ns: i64,
    /// Guest clock frozen: source STOP → destination RESUME (or page written, for a
    /// destination kept paused), ns, before skew.
    pub frozen_ns: i64,
    /// Host time the page was written minus the RESUME event time, ns (µs resolution): how
    /// long the resumed guest ran with the old page.
    pub write_after_resume_ns: Option<i64>,
    #[serde(serialize_with = "ser_host_area")]
    pub page: HostArea,
    pub resumed: bool,
    /// Restored from a saved file (the device's RESTORE flag), not live-migrated.
    pub restored: bool,
    pub ack: Option<Ack>,
    /// Host realtime when the host saw the guest's ack (the module's step done), ns.
    pub ack_seen_ns: Option<i64>,
    /// Host minus guest CLOCK_REALTIME before this hop, from the guest's last
    /// `# MIGTIME-CLOCK` marker (error bar: serial + 20 ms polling).
    pub host_minus_guest_before_ns: Option<i64>,
    /// Host realtime of the source's STOP event (the guest's clock froze), ns
    /// (µs resolution); none when the source was not running.
    pub stop_ns: Option<i64>,
    /// Host realtime of the destination's RESUME event, ns (µs resolution).
    pub resume_ns: Option<i64>,
}

/// `RUN/summary.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimSummary {
    pub scenario: String,
    pub mode: String,
    pub ok: bool,
    pub problems: Vec<String>,
    pub boot_s: Option<f64>,
    pub hops: Vec<Hop>,
    pub cancelled: bool,
    /// dest-killed: the destination was killed and the source resumed.
    pub dest_killed: bool,
    /// doorbell-storm: rings sent in the burst and how long it took, ms.
    pub storm_rings: u32,
    pub storm_ms: f64,
    /// doorbell-storm: rings sent one at a time (each after QEMU consumed the previous), ms.
    pub storm_paced_rings: u32,
    pub storm_paced_ms: f64,
    /// page-hammer: odd/even write cycles and how long, ms.
    pub hammer_cycles: u64,
    pub hammer_ms: f64,
    /// storm/hammer: guest `events` before the hop and once things settled.
    pub events_before: u64,
    pub events_after: Option<u64>,
    /// publish-storm: what the host published after the migration.
    pub publish_storm: Option<StormReport>,
    pub tai_delta_total_ns: i64,
    pub outcome: Option<String>,
    pub expect_outcome: Option<ExpectOutcome>,
    pub done_status: Option<i64>,
    pub exit_status: Option<i32>,
    pub ktap: Summary,
    pub run_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_area_json_keeps_the_summary_keys() {
        #[derive(serde::Serialize)]
        struct W(#[serde(serialize_with = "ser_host_area")] HostArea);
        let v = serde_json::to_value(W(migtime_abi::page::v1_host_area(4))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"magic": migtime_abi::abi::MAGIC, "version": 1, "size": 64, "seq_count": 0,
                "flags": 0, "migration_seq": 4, "tai_delta_ns": 0, "tai_delta_total_ns": 0})
        );
    }
}
