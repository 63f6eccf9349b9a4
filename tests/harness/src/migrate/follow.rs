// SPDX-License-Identifier: GPL-2.0

//! Following a [`Chain`]'s current guest on its results channel: its READY
//! before each hop, its DONE and exit after the last one, and the outcome it
//! acked.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use migtime_abi::abi::Outcome;

use crate::base::clock::realtime_ns;
use crate::base::results::{marker, Marker};
use crate::migrate::chain::{Chain, Wait};
use crate::record::hop::{Hop, SimSummary};
use crate::vm::qemu::remaining;

impl Chain<'_> {
    /// Follows the source to its READY marker; `false` when the guest
    /// finished instead and that is expected (bad header: nothing to migrate).
    pub(crate) fn await_ready(&mut self, hop: u32) -> Result<bool> {
        match self.wait_marker()? {
            Wait::Ready(s) => self.out.stage(&format!("guest ready: {s}")),
            Wait::Done(st) => {
                self.sum.boot_s = self.boot;
                self.sum.done_status = Some(st);
                if hop == 0 && self.o.settings.bad_page.is_some_and(|k| k.is_header()) {
                    self.out.stage(
                        "guest finished without asking to migrate (bad header: nothing to migrate)",
                    );
                    let st = self.cur.wait_exit(remaining(self.deadline)?)?;
                    self.sum.exit_status = st.code();
                    check_expect(self.o, self.sum, None);
                    return Ok(false);
                }
                bail!(
                    "guest finished (MIGTIME-DONE {st}) before asking for migration {}",
                    hop + 1
                );
            }
        }
        Ok(true)
    }

    /// Follows the current guest's results until a READY or DONE marker (or
    /// QEMU exits), noting its boot time and `# MIGTIME-CLOCK` offsets.
    pub(crate) fn wait_marker(&mut self) -> Result<Wait> {
        let g = &mut self.cur;
        loop {
            while let Some(l) = self.tail.next_line() {
                if self.boot.is_none() {
                    let b = g.started.elapsed().as_secs_f64();
                    self.boot = Some(b);
                    self.out.stage(&format!(
                        "guest {} up: first results line after {b:.2} s",
                        g.name
                    ));
                }
                match marker(&l) {
                    Some(Marker::Ready(s)) => return Ok(Wait::Ready(s)),
                    Some(Marker::Done(st)) => return Ok(Wait::Done(st)),
                    Some(Marker::Clock(guest_ns)) => self.clock = Some(realtime_ns() - guest_ns),
                    None => {}
                }
            }
            if let Some(st) = g.try_exit()? {
                self.tail.poll();
                bail!(
                    "QEMU {} exited ({st}) before the guest reported READY/DONE",
                    g.name
                );
            }
            if Instant::now() >= self.deadline {
                bail!("timeout waiting for a marker from guest {}", g.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new hop from the current guest, with its last clock offset (and the STOP that froze
    /// it, if known already).
    pub(crate) fn new_hop(&self, stop_ns: Option<i64>) -> Hop {
        Hop {
            from: self.cur.name.clone(),
            host_minus_guest_before_ns: self.clock,
            stop_ns,
            ..Default::default()
        }
    }

    /// Keeps the current guest's page in the run folder.
    pub(crate) fn save_page(&self) {
        let name = format!("page-{}.bin", self.cur.name);
        let _ = std::fs::write(self.o.guest.run_dir.join(name), self.cur.page.page_bytes());
    }

    /// Follows the last guest to `# MIGTIME-DONE` and its exit, and checks
    /// the outcome it acked.
    pub(crate) fn finish(mut self) -> Result<()> {
        loop {
            match self.wait_marker() {
                Ok(Wait::Done(st)) => {
                    self.sum.done_status = Some(st);
                    break;
                }
                Ok(Wait::Ready(s)) => self.sum.problems.push(format!(
                    "guest asked for another migration ({s}) after the last one"
                )),
                Err(e) => {
                    self.cur.kill();
                    return Err(e);
                }
            }
        }
        let done = self.sum.done_status.unwrap_or(-1);
        self.out.stage(&format!(
            "guest {} done: MIGTIME-DONE {done}",
            self.cur.name
        ));
        let limit = remaining(self.deadline).unwrap_or(Duration::from_secs(1));
        let st = self.cur.wait_exit(limit.min(Duration::from_secs(30)))?;
        self.sum.exit_status = st.code();
        self.cut_rewound();
        self.save_page();
        if !self.sum.cancelled {
            if let Some(g) = self.cur.page.guest_area() {
                self.sum.outcome = Outcome::from_u32(g.outcome).map(|o| o.name().to_string());
            }
        }
        let outcome = if self.sum.cancelled || self.sum.dest_killed {
            None
        } else {
            self.last_ack.as_ref().map(|a| a.area.outcome)
        };
        check_expect(self.o, self.sum, outcome);
        Ok(())
    }
}

/// Host check of the outcome the guest acked last against `--expect-outcome`.
fn check_expect(o: &crate::migrate::opts::SimOpts, sum: &mut SimSummary, outcome: Option<u32>) {
    if let Some(e) = o.settings.expect {
        if !e.matches(outcome) {
            let got = outcome.map_or("no ack".to_string(), |v| {
                migtime_abi::abi::Outcome::from_u32(v).map_or(v.to_string(), |o| o.name().into())
            });
            sum.problems.push(format!(
                "host check: expected guest outcome {e:?}, got {got}"
            ));
        }
    }
}
