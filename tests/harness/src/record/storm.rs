// SPDX-License-Identifier: GPL-2.0

//! What a publish storm did (`migrate/storm.rs`), for the summary.

/// What the storm did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StormReport {
    pub updates: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub total_before_ns: i64,
    pub total_after_ns: i64,
    pub ms: f64,
}
