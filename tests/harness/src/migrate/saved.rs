// SPDX-License-Identifier: GPL-2.0

//! Saved state on the migtime device ([`Restore`]): a `migrate file:` save restored on one
//! destination after another, or one snapshot loaded again and again in the same QEMU.
//! Every load resumes the guest from the same freeze, so each page must say the saved
//! `migration_seq` + 1, RESTORE, and Tout = that load's RESUME - the save's STOP (+ the
//! offset); the guest, back at the save each time, must step by it each time (its ack).
//!
//! Each load but the last starts a branch of the guest's history that the next load
//! abandons. A destination restored from the file runs its branch to the end: its results
//! with the source's are checked as a KTAP document of their own, then leave the verdict.
//! In a snapshot's QEMU the guest idles after its programs (`mt.idle`), the harness loads
//! again, and the rewound runs are cut out of the results file at the end (each kept as
//! `results-NAME.rewound-K.ktap`; they must hold results and no failure).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::base::ktap;
use crate::base::results::{idle_marker, marker, Marker, Rewound};
use crate::migrate::chain::{At, Chain, Dest, Wait};
use crate::migrate::device::{self, check_page, read_page, Want};
use crate::migrate::opts::Restore;
use crate::record::hop::Hop;
use crate::vm::qemu::remaining;
use crate::vm::qmp::event_time_ns;

/// The scratch qcow2 node that holds the snapshot's vmstate (no disk uses it).
const VMSTATE_NODE: &str = "vmstate";
/// Its size as a disk; the vmstate is kept past it and needs none.
const VMSTATE_DISK_BYTES: u64 = 1 << 20;
/// The snapshot's tag.
const TAG: &str = "migtime";

fn len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

impl Chain<'_> {
    /// Runs a restore scenario: the guest's READY, the save, the loads, the last guest's end.
    pub(crate) fn run_saved(mut self, how: Restore) -> Result<()> {
        if !self.await_ready(0)? {
            return Ok(());
        }
        self.sum.boot_s = self.boot;
        match how {
            Restore::File => self.file_loads()?,
            Restore::Snapshot => self.snapshot_loads()?,
        }
        self.finish()
    }

    /// Waits the blackout before `what` (the saved guest is frozen, or runs on in a branch
    /// the load rewinds).
    fn pause(&self, h: &mut Hop, what: &str) {
        let ms = self.o.settings.blackout_ms;
        self.out.stage(&format!("waiting {ms} ms before {what}"));
        std::thread::sleep(Duration::from_millis(ms));
        h.blackout_ms = ms;
    }

    /// `stop`, `migrate file:` and `quit` of the current guest (as a user saving a VM);
    /// notes the STOP (the freeze) in `h`; returns the file's URI.
    fn save_file(&mut self, h: &mut Hop) -> Result<String> {
        let name = &self.cur.name;
        let file = self.o.guest.run_dir.join(format!("saved-{name}.img"));
        let uri = format!("file:{}", file.display());
        self.out.stage(&format!("saving {name} to {uri}"));
        self.cur_q.execute("stop", None, Duration::from_secs(10))?;
        let ev = self.cur_q.wait_named("STOP", remaining(self.deadline)?)?;
        h.stop_ns = event_time_ns(&ev);
        let args = Some(json!({ "uri": uri }));
        self.cur_q
            .execute("migrate", args, Duration::from_secs(10))?;
        let ends = ["completed", "failed", "cancelled"];
        let ev = self
            .cur_q
            .wait_migration(&ends, remaining(self.deadline)?)?;
        if ev["data"]["status"] != "completed" {
            bail!("saving to {uri}: {}", ev["data"]["status"]);
        }
        let _ = self.cur_q.execute("quit", None, Duration::from_secs(5));
        self.out.stage("saved; source quit");
        Ok(uri)
    }

    /// The chain's last hop `hop` as a restore ([`SimSettings::then_restore`]): the guest
    /// saved to a file, a fresh destination loads it the blackout later, and the hop goes on
    /// as any other once the state is in.
    ///
    /// [`SimSettings::then_restore`]: crate::migrate::opts::SimSettings::then_restore
    pub(crate) fn restore_last(&mut self, hop: u32, mut h: Hop) -> Result<()> {
        let uri = self.save_file(&mut h)?;
        self.pause(&mut h, "the load");
        h.restored = true;
        let mut d = self.load_file(hop, uri, &mut h)?;
        let events_before = self.device_page_before(&mut d)?;
        let at = At {
            hop,
            last: true,
            events_before,
        };
        self.run_hop(d, h, &at)
    }

    /// Starts hop `hop`'s destination on the saved file `uri` and waits for the load; the
    /// destination is `h`'s.
    fn load_file(&mut self, hop: u32, uri: String, h: &mut Hop) -> Result<Dest> {
        let mut d = self.start_destination(hop, Some(uri))?;
        let done = ["completed", "failed"];
        let ev = d.q.wait_migration(&done, remaining(self.deadline)?)?;
        if ev["data"]["status"] != "completed" {
            bail!(
                "restoring {} on {}: {}",
                d.uri,
                d.g.name,
                ev["data"]["status"]
            );
        }
        h.to = d.g.name.clone();
        Ok(d)
    }

    /// The file saved once, restored on a fresh destination per load, the blackout after
    /// the save and after each branch ended.
    fn file_loads(&mut self) -> Result<()> {
        let mut first = self.new_hop(None);
        let uri = self.save_file(&mut first)?;
        let (stop_ns, clock) = (first.stop_ns, first.host_minus_guest_before_ns);
        let (from, baseline) = (first.from.clone(), self.baseline_total);
        let loads = self.o.settings.loads();
        let mut first = Some(first);
        for k in 0..loads {
            if k > 0 {
                self.end_branch()?;
            }
            let mut h = first.take().unwrap_or_else(|| Hop {
                from: from.clone(),
                host_minus_guest_before_ns: clock,
                stop_ns,
                ..Default::default()
            });
            self.pause(&mut h, "the load");
            let mut d = self.load_file(k, uri.clone(), &mut h)?;
            // The guest comes back at the save, in step with what it was then.
            self.baseline_total = baseline;
            let events_before = self.device_page_before(&mut d)?;
            let last = k + 1 == loads;
            self.run_hop(
                d,
                h,
                &At {
                    hop: k,
                    last,
                    events_before,
                },
            )?;
        }
        Ok(())
    }

    /// Follows the current guest (restored from the file, the next load abandons it) to its
    /// end; its results after the source's must be a passing KTAP document. It then leaves
    /// the verdict, which is the last load's.
    fn end_branch(&mut self) -> Result<()> {
        let name = self.cur.name.clone();
        let done = loop {
            match self.wait_marker()? {
                Wait::Done(st) => break st,
                Wait::Ready(r) => {
                    let p = format!("guest {name} asked for another migration ({r})");
                    self.sum.problems.push(p);
                }
            }
        };
        let exit = self.cur.wait_exit(remaining(self.deadline)?)?;
        let run = &self.o.guest.run_dir;
        let mut text = String::new();
        for n in [self.names[0].as_str(), &name] {
            text.push_str(&std::fs::read_to_string(
                run.join(format!("results-{n}.ktap")),
            )?);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        let k = ktap::check(&text);
        self.out.stage(&format!(
            "branch on {name} ended: MIGTIME-DONE {done}, KTAP {} passed, {} failed",
            k.passed, k.failed
        ));
        let mut bad = k.problems;
        if done != 0 {
            bad.push(format!("MIGTIME-DONE {done}"));
        }
        if exit.code() != Some(1) {
            bad.push(format!("QEMU exit status {:?}, expected 1", exit.code()));
        }
        let p = bad
            .into_iter()
            .map(|b| format!("guest {name} (an earlier load): {b}"));
        self.sum.problems.extend(p);
        self.names.retain(|n| *n != name);
        Ok(())
    }

    /// Waits for the job `id` to conclude and dismisses it; its error, if it had one.
    fn finish_job(&mut self, id: &str) -> Result<()> {
        let what = format!("job {id} concluded");
        self.cur_q
            .wait_event(&what, remaining(self.deadline)?, |m| {
                m["event"] == "JOB_STATUS_CHANGE"
                    && m["data"]["id"] == id
                    && m["data"]["status"] == "concluded"
            })?;
        let jobs = self
            .cur_q
            .execute("query-jobs", None, Duration::from_secs(5))?;
        let err = jobs
            .as_array()
            .and_then(|v| v.iter().find(|j| j["id"] == id))
            .and_then(|j| j.get("error").and_then(Value::as_str).map(String::from));
        let args = Some(json!({ "id": id }));
        self.cur_q
            .execute("job-dismiss", args, Duration::from_secs(5))?;
        match err {
            Some(e) => bail!("job {id}: {e}"),
            None => Ok(()),
        }
    }

    /// Adds the scratch qcow2 node for the snapshot's vmstate (`blockdev-create`: no
    /// qemu-img needed).
    fn add_vmstate_node(&mut self) -> Result<()> {
        let path = self.o.guest.run_dir.join("vmstate.qcow2");
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let t = Duration::from_secs(10);
        let file = json!({ "driver": "file", "node-name": "vmstate-file", "filename": path });
        self.cur_q.execute("blockdev-add", Some(file), t)?;
        let qcow2 =
            json!({ "driver": "qcow2", "file": "vmstate-file", "size": VMSTATE_DISK_BYTES });
        let args = json!({ "job-id": "vmstate-create", "options": qcow2 });
        self.cur_q.execute("blockdev-create", Some(args), t)?;
        self.finish_job("vmstate-create")?;
        let node = json!({ "driver": "qcow2", "node-name": VMSTATE_NODE, "file": "vmstate-file" });
        self.cur_q.execute("blockdev-add", Some(node), t)?;
        Ok(())
    }

    /// Runs `snapshot-save` or `snapshot-load` (QMP jobs) of the snapshot to its end; both
    /// stop a running VM and run it on (STOP, RESUME), and leave a paused one paused.
    fn snapshot_job(&mut self, cmd: &str, n: u32) -> Result<()> {
        let id = format!("{cmd}-{n}");
        self.out.stage(&format!("{cmd} (job {id})"));
        let nodes = [VMSTATE_NODE];
        let args = json!({ "job-id": id, "tag": TAG, "vmstate": VMSTATE_NODE, "devices": nodes });
        self.cur_q
            .execute(cmd, Some(args), Duration::from_secs(10))?;
        self.finish_job(&id)
    }

    /// Waits for the QMP event `name` of the current guest.
    fn event(&mut self, name: &str) -> Result<Value> {
        self.cur_q.wait_named(name, remaining(self.deadline)?)
    }

    /// Load `k` (from 0) of the snapshot: the first into the running VM (the job stops it
    /// and runs it on), each next into the VM paused by the user once the guest idles:
    /// `stop`, `snapshot-load`, the blackout, `cont`. Notes the results file's length when
    /// the VM stopped; returns the RESUME event.
    fn snapshot_load(&mut self, k: u32, h: &mut Hop, rewound: &mut Rewound) -> Result<Value> {
        if k == 0 {
            self.pause(h, "the load");
            rewound.loads.push(len(&self.cur.results));
            self.snapshot_job("snapshot-load", k + 1)?;
            self.event("STOP")?;
            return self.event("RESUME");
        }
        self.await_idle()?;
        self.cur_q.execute("stop", None, Duration::from_secs(10))?;
        self.event("STOP")?;
        rewound.loads.push(len(&self.cur.results));
        self.snapshot_job("snapshot-load", k + 1)?;
        self.pause(h, "cont");
        self.cur_q.execute("cont", None, Duration::from_secs(10))?;
        self.event("RESUME")
    }

    /// `snapshot-save` of the running guest, then `snapshot-load` of it per load
    /// ([`Self::snapshot_load`]); each checked as a hop of its own.
    fn snapshot_loads(&mut self) -> Result<()> {
        self.add_vmstate_node()?;
        read_page(&mut self.cur_q, &mut self.cur.page)?;
        let old = self.cur.page.host_area();
        let events_before = self.cur.page.guest_area().map_or(0, |g| g.events);
        let baseline = self.baseline_total;
        self.snapshot_job("snapshot-save", 0)?;
        let stop_ns = event_time_ns(&self.event("STOP")?);
        self.event("RESUME")?;
        // The guest runs on, waiting in its poll: nothing more on the results channel.
        let mut rewound = Rewound {
            save: len(&self.cur.results),
            loads: Vec::new(),
        };
        let loads = self.o.settings.loads();
        for k in 0..loads {
            let mut h = self.new_hop(stop_ns);
            h.to = self.cur.name.clone();
            let resume = self.snapshot_load(k, &mut h, &mut rewound)?;
            let t_resume = Instant::now();
            h.resume_ns = event_time_ns(&resume);
            h.resumed = true;
            let want = Want {
                old,
                offsets_ns: (0, 0),
                restore: true,
            };
            let (w, bad) =
                check_page(&mut self.cur_q, &mut self.cur.page, &mut h, &want, self.out)?;
            let name = self.cur.name.clone();
            self.note_device_page(&name, &w, bad);
            self.baseline_total = baseline;
            let limit = self.o.ack_timeout;
            let (q, page) = (&mut self.cur_q, &mut self.cur.page);
            let a = device::wait_ack(q, page, events_before, t_resume, limit);
            let at = At {
                hop: k,
                last: k + 1 == loads,
                events_before,
            };
            self.take_ack(a, limit, &mut h, &w, &at);
            self.check_landing(&h, k);
            self.sum.hops.push(h);
        }
        self.rewound = Some(rewound);
        Ok(())
    }

    /// Follows the current guest until `/init`'s `# MIGTIME-IDLE`: its programs ran and it
    /// idles, writing nothing, for `mt.idle` seconds.
    fn await_idle(&mut self) -> Result<()> {
        loop {
            while let Some(l) = self.tail.next_line() {
                if idle_marker(&l) {
                    self.out.stage(&format!("guest idles: {}", l.trim()));
                    return Ok(());
                }
                if let Some(Marker::Done(st)) = marker(&l) {
                    bail!("guest finished (MIGTIME-DONE {st}) before the next load: no mt.idle?");
                }
            }
            if let Some(st) = self.cur.try_exit()? {
                bail!("QEMU {} exited ({st}) before the next load", self.cur.name);
            }
            remaining(self.deadline)?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cuts the runs the snapshot loads rewound out of the current guest's results (after its
    /// exit), keeps each in a file of its own, and checks the ones after a load: the guest's
    /// programs ran there too, and none of their results may fail.
    pub(crate) fn cut_rewound(&mut self) {
        let Some(rw) = self.rewound.take() else {
            return;
        };
        let name = self.cur.name.clone();
        let runs = match rw.cut(&self.cur.results) {
            Ok(r) => r,
            Err(e) => {
                let p = format!("cutting the rewound runs out of {name}'s results: {e}");
                self.sum.problems.push(p);
                return;
            }
        };
        let run = &self.o.guest.run_dir;
        for (k, text) in runs.iter().enumerate() {
            let _ = std::fs::write(run.join(format!("results-{name}.rewound-{k}.ktap")), text);
            let is = |p: &str| text.lines().any(|l| l.trim_start().starts_with(p));
            if k > 0 && (is("not ok") || !is("ok ")) {
                let p = format!(
                    "the guest's run after snapshot load {k} (rewound by the next) has a failure or no results"
                );
                self.sum.problems.push(p);
            }
        }
    }
}
