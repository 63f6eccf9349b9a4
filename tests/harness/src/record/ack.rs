// SPDX-License-Identifier: GPL-2.0

//! The guest's ack after a hop as a record: what the guest wrote, what the
//! host checks in it, and what the run expects of it (waiting for it:
//! `migrate/ack.rs`).

use migtime_abi::abi::{GuestArea, Outcome};
use serde::Serialize;

/// What the guest is expected to have written in its ack area (last hop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectOutcome {
    Stepped,
    Notified,
    RefusedSeqBackwards,
    RefusedOverLimit,
    RefusedInconsistent,
    /// No ack at all (module not bound, page unreadable, no migration).
    None,
}

impl ExpectOutcome {
    pub fn matches(self, o: Option<u32>) -> bool {
        let want = match self {
            Self::Stepped => Outcome::Stepped,
            Self::Notified => Outcome::Notified,
            Self::RefusedSeqBackwards => Outcome::RefusedSeqBackwards,
            Self::RefusedOverLimit => Outcome::RefusedOverLimit,
            Self::RefusedInconsistent => Outcome::RefusedInconsistent,
            Self::None => return o.is_none(),
        };
        o == Some(want as u32)
    }
}

/// The guest's ack area as the host saw it after a migration.
#[derive(Clone, Debug, Default)]
pub struct Ack {
    /// The guest area, read under its seqlock.
    pub area: GuestArea,
    /// Host time from `cont` returning to the ack being seen (1 ms polling).
    pub latency_ms: f64,
    /// Host CLOCK_REALTIME minus the guest's ack_realtime_ns, at detection
    /// (error bar: +0..1 ms polling, plus the guest's write-to-visible time).
    pub host_minus_guest_ns: i64,
}

/// The name of a guest-area outcome value (`unknown(N)` if ABI v1 has none).
pub fn outcome_name(raw: u32) -> String {
    Outcome::from_u32(raw).map_or_else(|| format!("unknown({raw})"), |o| o.name().to_string())
}

impl Ack {
    /// [`outcome_name`] of the ack's outcome.
    pub fn outcome(&self) -> String {
        outcome_name(self.area.outcome)
    }
}

impl Serialize for Ack {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let g = &self.area;
        let mut st = s.serialize_struct("Ack", 10)?;
        st.serialize_field("outcome", &self.outcome())?;
        st.serialize_field("outcome_raw", &g.outcome)?;
        st.serialize_field("ack_seq", &g.ack_seq)?;
        st.serialize_field("intended_ns", &g.intended_ns)?;
        st.serialize_field("applied_ns", &g.applied_ns)?;
        st.serialize_field("applied_total_ns", &g.applied_total_ns)?;
        st.serialize_field("ack_realtime_ns", &g.ack_realtime_ns)?;
        st.serialize_field("events", &g.events)?;
        st.serialize_field("latency_ms", &self.latency_ms)?;
        st.serialize_field("host_minus_guest_ns", &self.host_minus_guest_ns)?;
        st.end()
    }
}

impl Ack {
    /// The stage line of a seen ack.
    pub fn stage_line(&self) -> String {
        let g = &self.area;
        format!(
            "guest acked after {:.1} ms: {} (seq {}, intended {} ns, applied {} ns, host-guest {:.3} ms)",
            self.latency_ms,
            self.outcome(),
            g.ack_seq,
            g.intended_ns,
            g.applied_ns,
            self.host_minus_guest_ns as f64 / 1e6
        )
    }

    /// Host-side checks of the ack of hop `n` (from 1) against the page
    /// written: the sequence acked, the step intended (`pending`: the page's
    /// total minus what the guest was in step with) and `expect`.
    pub fn problems(
        &self,
        n: u32,
        page_seq: u64,
        pending: i64,
        expect: Option<ExpectOutcome>,
    ) -> Vec<String> {
        let g = &self.area;
        let mut p = Vec::new();
        if g.ack_seq != page_seq {
            p.push(format!(
                "hop {n}: guest acked seq {}, page seq is {page_seq}",
                g.ack_seq
            ));
        }
        let acted = g.outcome == Outcome::Stepped as u32 || g.outcome == Outcome::Notified as u32;
        if acted && g.intended_ns != pending {
            let i = g.intended_ns;
            p.push(format!(
                "hop {n}: guest intended {i} ns, pending total is {pending} ns"
            ));
        }
        if let Some(e) = expect.filter(|e| !e.matches(Some(g.outcome))) {
            let got = self.outcome();
            p.push(format!("hop {n}: expected guest outcome {e:?}, got {got}"));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(outcome: Outcome, seq: u64, intended: i64) -> Ack {
        Ack {
            area: GuestArea {
                outcome: outcome as u32,
                ack_seq: seq,
                intended_ns: intended,
                ..GuestArea::default()
            },
            ..Ack::default()
        }
    }

    #[test]
    fn ack_checks_against_the_page() {
        let a = ack(Outcome::Stepped, 2, 500);
        assert!(a
            .problems(1, 2, 500, Some(ExpectOutcome::Stepped))
            .is_empty());
        let p = a.problems(3, 3, 400, Some(ExpectOutcome::Notified));
        assert_eq!(
            p,
            [
                "hop 3: guest acked seq 2, page seq is 3",
                "hop 3: guest intended 500 ns, pending total is 400 ns",
                "hop 3: expected guest outcome Notified, got stepped",
            ]
        );
        // A refusal intends nothing in particular.
        let r = ack(Outcome::RefusedOverLimit, 2, 7);
        assert!(r.problems(1, 2, 500, None).is_empty());
        assert_eq!(outcome_name(99), "unknown(99)");
        assert!(ExpectOutcome::None.matches(None));
        assert!(!ExpectOutcome::Stepped.matches(None));
    }

    #[test]
    fn ack_json_keeps_the_summary_keys() {
        let v = serde_json::to_value(ack(Outcome::Notified, 4, 0)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 10);
        assert_eq!(
            (v["outcome"].as_str(), v["ack_seq"].as_u64()),
            (Some("notified"), Some(4))
        );
    }
}
