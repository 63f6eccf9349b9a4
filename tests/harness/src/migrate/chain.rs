// SPDX-License-Identifier: GPL-2.0

//! A migration chain A -> B -> C ...: the current guest (the source of the
//! next hop) and what the host knows about it, with one function per step of
//! a hop: await the guest's READY, start the destination, migrate, write the
//! page, resume and ring, await the ack, retire the source; then follow the
//! last guest to its verdict. The faults (cancel, kill, storm, hammer) are in
//! `faults.rs`; `sim.rs` runs the chain and reports.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use migtime_abi::page::{End, Update};
use serde_json::{json, Value};

use crate::base::clock::{realtime_ns, tai_ns};
use crate::base::output::Reporter;
use crate::base::results::{Rewound, Tail};
use crate::migrate::ack::wait_ack;
use crate::migrate::opts::{SimOpts, Vmm};
use crate::migrate::{device, faults};
use crate::record::ack::{Ack, ExpectOutcome};
use crate::record::hop::{Hop, SimSummary};
use crate::vm::page::{shm_path, BadPage, PageFile};
use crate::vm::qemu::{remaining, Guest};
use crate::vm::qmp::{event_time_ns, Qmp};

/// The chain's state between hops.
pub struct Chain<'a> {
    pub o: &'a SimOpts,
    pub out: &'a dyn Reporter,
    pub deadline: Instant,
    pub sum: &'a mut SimSummary,
    /// Guests whose results belong to the verdict, in chain order.
    pub names: &'a mut Vec<String>,
    /// The current guest (the next hop's source) and its QMP.
    pub cur: Guest,
    pub cur_q: Qmp,
    pub(crate) tail: Tail,
    /// Host minus guest realtime from the guest's last `# MIGTIME-CLOCK`.
    pub(crate) clock: Option<i64>,
    pub(crate) boot: Option<f64>,
    /// Host TAI at which the guest's clock froze (source STOP), for Tout.
    pub(crate) frozen_at: i64,
    /// Whether the current guest runs (a destination kept paused does not).
    pub(crate) src_running: bool,
    pub(crate) last_ack: Option<Ack>,
    /// The page total the guest is in step with (the policy's baseline).
    pub(crate) baseline_total: i64,
    /// The runs in the current guest's results that snapshot loads rewound (cut at the end).
    pub(crate) rewound: Option<Rewound>,
}

/// The destination of the hop in progress.
pub struct Dest {
    pub g: Guest,
    pub q: Qmp,
    pub uri: String,
}

/// What a hop wrote to the destination page.
pub struct Written {
    pub u: Update,
    pub end: End,
}

/// Where a hop is in the chain.
pub struct At {
    /// The hop, from 0.
    pub hop: u32,
    /// Whether it is the chain's last (where faults and `--bad-page` apply).
    pub last: bool,
    /// The guest's `events` before the hop.
    pub events_before: u64,
}

pub(crate) enum Wait {
    Ready(String),
    Done(i64),
}

impl<'a> Chain<'a> {
    /// Creates the source page (corrupted as asked) and starts the source.
    pub fn start(
        o: &'a SimOpts,
        out: &'a dyn Reporter,
        sum: &'a mut SimSummary,
        names: &'a mut Vec<String>,
    ) -> Result<Self> {
        let deadline = Instant::now() + o.timeout;
        let mut src_page = PageFile::create(&shm_path("a"))?;
        let seq_backwards = o.settings.bad_page == Some(BadPage::SeqBackwards);
        src_page.init_valid(if seq_backwards { 5 } else { 0 });
        if let Some(k) = o.settings.bad_page.filter(|k| k.is_header()) {
            src_page.write_bad_header(k)?;
            out.stage(&format!("source page header corrupted before boot: {k:?}"));
        }
        out.stage(&format!(
            "starting source a ({}, {:?} mode)",
            crate::vm::qemu::accel(),
            o.guest.mode
        ));
        let (cur, cur_q) = Guest::start_with_qmp(&o.guest, "a", src_page, false, deadline)?;
        out.stage("source up");
        Ok(Self {
            o,
            out,
            deadline,
            sum,
            names,
            tail: Tail::new(&cur.results),
            cur,
            cur_q,
            clock: None,
            boot: None,
            frozen_at: 0,
            src_running: true,
            last_ack: None,
            baseline_total: 0,
            rewound: None,
        })
    }

    /// The host-side fault of the last hop, if `last`.
    pub fn fault(&self, last: bool) -> Option<BadPage> {
        self.o.settings.fault().filter(|_| last)
    }

    /// Runs every hop, then follows the last guest to its verdict.
    pub fn run(mut self) -> Result<()> {
        if let Some(how) = self.o.settings.restore {
            return self.run_saved(how);
        }
        let hops = self.o.settings.hops();
        for hop in 0..hops {
            let last = hop + 1 == hops;
            if self.src_running && !self.await_ready(hop)? {
                return Ok(());
            }
            self.sum.boot_s = self.boot;
            if self.o.settings.stop_cont {
                self.stop_cont()?;
                break;
            }
            let mut h = self.new_hop(None);
            if last && self.o.settings.then_restore {
                return self.restore_last(hop, h).and_then(|()| self.finish());
            }
            let mut d = self.start_destination(hop, None)?;
            h.to = d.g.name.clone();
            if self.o.settings.cancel {
                faults::cancel(&mut self, d, h)?;
                break;
            }
            self.migrate(&mut d, &mut h)?;
            let events_before = match self.o.settings.vmm {
                Vmm::Simulator => self.check_migrated_page(&d),
                Vmm::QemuDevice => self.device_page_before(&mut d)?,
            };
            if self.fault(last) == Some(BadPage::DestKilled) {
                faults::kill_destination(&mut self, d, h)?;
                break;
            }
            let at = At {
                hop,
                last,
                events_before,
            };
            self.run_hop(d, h, &at)?;
        }
        self.finish()
    }

    /// The rest of a hop once the migration completed. A destination that runs is resumed
    /// first and its page written right after, with Tout up to the resume (as a host that
    /// publishes once the vCPUs run: the guest acts on the sequence change whenever it sees
    /// it, and no part of the freeze is left out of Tout); one kept paused gets its page now.
    pub(crate) fn run_hop(&mut self, mut d: Dest, mut h: Hop, at: &At) -> Result<()> {
        let (hop, last) = (at.hop, at.last);
        self.blackout(&mut h, hop);
        let resume = !(self.o.settings.no_guest_run_between && hop == 0);
        let t_cont = if resume {
            let st = &self.o.settings;
            if let Some(n) = &self.o.network {
                n.on_cont(hop + 1, st.hop_skew_ns(hop), st.same_rate, self.out);
            }
            Some(self.resume(&mut d, &mut h)?)
        } else {
            None
        };
        let w = match self.o.settings.vmm {
            Vmm::Simulator => self.write_page(&mut d, &mut h, last)?,
            Vmm::QemuDevice => self.check_device_page(&mut d, &mut h, hop)?,
        };
        let hammer = (self.fault(last) == Some(BadPage::PageHammer))
            .then(|| faults::Hammer::start(self.out, d.g.page.path(), w.u));
        if self.o.settings.vmm == Vmm::Simulator {
            self.report_written(&h, &w);
        }
        if let Some(t_cont) = t_cont {
            let storm = self.fault(last) == Some(BadPage::DoorbellStorm);
            self.ring(&d, storm)?;
            self.await_ack(&mut d, &mut h, &w, t_cont, at);
        } else {
            let name = &d.g.name;
            self.out.stage(&format!(
                "dest {name} kept paused: migrating again before the guest runs"
            ));
        }
        if let Some(t) = hammer {
            t.finish(self.sum, self.out, &d, &h);
        }
        if self.fault(last) == Some(BadPage::PublishStorm) {
            crate::migrate::storm::publish_storm(self.sum, self.out, &mut d.g)?;
        }
        if let Some(f @ (BadPage::DoorbellStorm | BadPage::PageHammer)) = self.fault(last) {
            faults::check_one_event(self.sum, self.out, &d, f, at.events_before);
        }
        self.retire_source(d, h, resume);
        Ok(())
    }

    /// Starts the paused incoming destination of hop `hop` on a fresh page, incoming from
    /// `uri` (default: a unix socket of its own). A device destination gets the skew as its
    /// `x-clock-offset-ns`.
    pub(crate) fn start_destination(&mut self, hop: u32, uri: Option<String>) -> Result<Dest> {
        let dname = ((b'a' + hop as u8 + 1) as char).to_string();
        let dpage = PageFile::create(&shm_path(&dname))?;
        let mut cfg = self.o.guest.clone();
        if self.o.settings.vmm == Vmm::QemuDevice {
            cfg.devices.migtime_offset_ns = self.o.settings.device_offsets_ns(hop).1;
        }
        let (g, mut q) = Guest::start_with_qmp(&cfg, &dname, dpage, true, self.deadline)?;
        self.names.push(dname.clone());
        let sock = self.o.guest.run_dir.join(format!("mig-{dname}.sock"));
        let uri = uri.unwrap_or_else(|| format!("unix:{}", sock.display()));
        q.execute(
            "migrate-incoming",
            Some(json!({ "uri": uri })),
            Duration::from_secs(10),
        )?;
        Ok(Dest { g, q, uri })
    }

    /// Migrates the current guest to `d`, noting the source's STOP (the
    /// guest's clock freezes) and QEMU's figures.
    fn migrate(&mut self, d: &mut Dest, h: &mut Hop) -> Result<()> {
        let (cur, dname) = (self.cur.name.clone(), d.g.name.clone());
        self.out.stage(&format!("migrating {cur} -> {dname}"));
        let t_mig = Instant::now();
        let args = Some(json!({ "uri": d.uri }));
        self.cur_q
            .execute("migrate", args, Duration::from_secs(10))?;
        if self.src_running {
            let ev = self.cur_q.wait_named("STOP", remaining(self.deadline)?)?;
            h.stop_ns = event_time_ns(&ev);
            let rt = h.stop_ns.unwrap_or_else(realtime_ns);
            self.frozen_at = rt + (tai_ns() - realtime_ns());
        }
        let ends = ["completed", "failed", "cancelled"];
        let ev = self
            .cur_q
            .wait_migration(&ends, remaining(self.deadline)?)?;
        if ev["data"]["status"] != "completed" {
            let info = query_migrate(&mut self.cur_q);
            let (status, why) = (&ev["data"]["status"], &info["error-desc"]);
            bail!("migration {cur} -> {dname} {status}: {why}");
        }
        h.migration_ms = t_mig.elapsed().as_secs_f64() * 1e3;
        d.q.wait_migration(&["completed", "failed"], remaining(self.deadline)?)?;
        h.downtime_ms = query_migrate(&mut self.cur_q)["downtime"].as_f64();
        self.out.stage(&format!(
            "migration completed in {:.0} ms (QEMU downtime {} ms)",
            h.migration_ms,
            h.downtime_ms.map_or("?".into(), |d| d.to_string())
        ));
        Ok(())
    }

    /// The destination page must hold the source's content; returns the
    /// guest's `events` count before the hop.
    fn check_migrated_page(&mut self, d: &Dest) -> u64 {
        let (src, dst) = (self.cur.page.host_area(), d.g.page.host_area());
        if dst != src {
            self.sum.problems.push(format!(
                "destination page differs from the source after migration: {src:?} vs {dst:?}"
            ));
        }
        d.g.page.guest_area().map_or(0, |g| g.events)
    }

    /// Holds the destination paused for the blackout (not for a compensated migration, nor
    /// for the hop after one kept paused).
    fn blackout(&mut self, h: &mut Hop, hop: u32) {
        let s = &self.o.settings;
        // A restore already waited, with no VM at all.
        let waited = h.restored || s.restore.is_some();
        let skip = waited || s.compensated || (s.no_guest_run_between && hop == 1);
        if !skip && s.blackout_ms > 0 {
            self.out.stage(&format!("blackout {} ms", s.blackout_ms));
            std::thread::sleep(Duration::from_millis(s.blackout_ms));
            h.blackout_ms = s.blackout_ms;
        }
    }

    /// `cont` on the destination, its RESUME, then the doorbell (and the
    /// storm fault). Returns when `cont` returned.
    fn resume(&mut self, d: &mut Dest, h: &mut Hop) -> Result<Instant> {
        d.q.execute("cont", None, Duration::from_secs(10))?;
        let t_cont = Instant::now();
        let ev = d.q.wait_named("RESUME", remaining(self.deadline)?)?;
        h.resume_ns = event_time_ns(&ev);
        h.resumed = true;
        self.out.stage(&format!("dest {} resumed", d.g.name));
        Ok(t_cont)
    }

    /// Rings the destination's doorbell (doorbell mode), and storms it if asked.
    fn ring(&mut self, d: &Dest, storm: bool) -> Result<()> {
        if let Some(s) = &d.g.server {
            s.ring(0)?;
            self.out.stage("doorbell rung (vector 0)");
            if storm {
                faults::storm(s, self.sum, self.out)?;
            }
        }
        Ok(())
    }

    /// Polls the destination's guest area for the ack and checks it against
    /// the page written.
    fn await_ack(&mut self, d: &mut Dest, h: &mut Hop, w: &Written, t_cont: Instant, at: &At) {
        let ack_timeout = if w.end == End::LeaveOdd {
            self.o.ack_timeout.min(Duration::from_secs(3))
        } else {
            self.o.ack_timeout
        };
        let (q, page, ev) = (&mut d.q, &mut d.g.page, at.events_before);
        let a = match self.o.settings.vmm {
            Vmm::Simulator => wait_ack(page, ev, t_cont, ack_timeout),
            Vmm::QemuDevice => device::wait_ack(q, page, ev, t_cont, ack_timeout),
        };
        self.take_ack(a, ack_timeout, h, w, at);
        if self.o.settings.vmm == Vmm::QemuDevice {
            self.check_landing(h, at.hop);
        }
    }

    /// Checks the guest's ack `a` (none within `ack_timeout`) of hop `at` against the page
    /// written, and keeps it as the hop's and the chain's last.
    pub(crate) fn take_ack(
        &mut self,
        a: Option<Ack>,
        ack_timeout: Duration,
        h: &mut Hop,
        w: &Written,
        at: &At,
    ) {
        let expect = self.o.settings.expect;
        let expect = expect.filter(|e| *e != ExpectOutcome::None && !at.last);
        let Some(a) = a else {
            let secs = ack_timeout.as_secs_f64();
            self.out.stage(&format!("no guest ack within {secs:.1} s"));
            if expect.is_some() {
                let n = at.hop + 1;
                self.sum.problems.push(format!("hop {n}: no guest ack"));
            }
            self.last_ack = None;
            return;
        };
        h.ack_seen_ns = Some(realtime_ns());
        self.out.stage(&a.stage_line());
        let pending = h.page.tai_delta_total_ns - self.baseline_total;
        let problems = a.problems(at.hop + 1, w.u.migration_seq, pending, expect);
        self.sum.problems.extend(problems);
        self.baseline_total = h.page.tai_delta_total_ns;
        h.ack = Some(a.clone());
        self.last_ack = Some(a);
    }

    /// Quits the source (after the ack polling, not to delay it); the destination is current.
    fn retire_source(&mut self, d: Dest, h: Hop, resumed: bool) {
        let _ = self.cur_q.execute("quit", None, Duration::from_secs(5));
        if let Err(e) = self.cur.wait_exit(Duration::from_secs(10)) {
            self.sum.problems.push(format!("{e:#}"));
        }
        self.save_page();
        self.sum.hops.push(h);
        self.cur = d.g;
        self.cur_q = d.q;
        self.tail = Tail::new(&self.cur.results);
        self.src_running = resumed;
        self.clock = None;
    }
}

fn query_migrate(q: &mut Qmp) -> Value {
    q.execute("query-migrate", None, Duration::from_secs(5))
        .unwrap_or(Value::Null)
}
