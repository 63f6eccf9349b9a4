// SPDX-License-Identifier: GPL-2.0

//! The simulator as the VMM that publishes the page ([`crate::migrate::opts::Vmm::Simulator`]):
//! the destination's page written with the seqlock protocol after a hop, honest or
//! as the `--bad-page` kind asks.

use anyhow::{Context, Result};
use migtime_abi::page::{End, Update};

use crate::base::clock::{realtime_ns, tai_ns};
use crate::migrate::chain::{Chain, Dest, Written};
use crate::record::hop::Hop;
use crate::vm::page::BadPage;

/// Ten days, in nanoseconds: the `huge-delta` step.
pub const HUGE_DELTA_NS: i64 = 10 * 86_400 * 1_000_000_000;

impl Chain<'_> {
    /// Writes the destination's page: the honest update, or the `--bad-page` kind on the last
    /// hop. Tout is the time the guest's clock stood still, from the source's STOP to the
    /// destination's RESUME (QEMU's event times) or, for a destination kept paused, to now;
    /// plus the skew.
    pub(crate) fn write_page(&mut self, d: &mut Dest, h: &mut Hop, last: bool) -> Result<Written> {
        let s = &self.o.settings;
        let now = tai_ns();
        let now_rt = realtime_ns();
        let resumed_rt = h.resume_ns.filter(|_| h.resumed);
        let thawed = resumed_rt.map_or(now, |r| r + (now - now_rt));
        h.frozen_ns = thawed - self.frozen_at;
        h.write_after_resume_ns = resumed_rt.map(|r| now_rt - r);
        let old = d.g.page.host_area();
        let mut u = Update::next(&old, h.frozen_ns + s.skew_ns, s.compensated)
            .context("the page's sequence or total would overflow")?;
        let mut end = End::Even;
        match s.bad_page.filter(|_| last) {
            Some(BadPage::StuckOdd) => end = End::LeaveOdd,
            Some(BadPage::SeqBackwards) => u.migration_seq = old.migration_seq.saturating_sub(1),
            Some(BadPage::HugeDelta) => {
                u.flags &= !migtime_abi::abi::FLAG_COMPENSATED;
                u.tai_delta_ns = HUGE_DELTA_NS;
                u.tai_delta_total_ns = old.tai_delta_total_ns + HUGE_DELTA_NS;
            }
            _ => {}
        }
        d.g.page.write_update(&u, end);
        h.tout_ns = u.tai_delta_ns;
        h.page = d.g.page.host_area();
        self.sum.tai_delta_total_ns = h.page.tai_delta_total_ns;
        self.frozen_at = thawed; // a destination that does not run stays frozen from here
        Ok(Written { u, end })
    }

    /// The stage line of a page write.
    pub(crate) fn report_written(&self, h: &Hop, w: &Written) {
        let u = &w.u;
        self.out.stage(&format!(
            "page written: seq {}, delta {} ns ({:.3} s), total {} ns, flags {:#x}, seq_count {}{}",
            u.migration_seq,
            u.tai_delta_ns,
            u.tai_delta_ns as f64 / 1e9,
            u.tai_delta_total_ns,
            u.flags,
            h.page.seq_count,
            if w.end == End::LeaveOdd {
                " (left odd)"
            } else {
                ""
            }
        ));
    }
}
