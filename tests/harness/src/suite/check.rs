// SPDX-License-Identifier: GPL-2.0

//! `check`: the whole suite ([`crate::suite::scenarios::table`]), one scenario at a
//! time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use std::sync::Arc;

use crate::base::output::Reporter;
use crate::migrate::opts::{ack_timeout, SimOpts, SimSettings};
use crate::migrate::sim::sim;
use crate::net::network::Network;
use crate::suite::host::evaluate;
use crate::suite::image::{self, ImageDirs};
use crate::suite::scenario::{Kernel, Kind, Scenario};
use crate::suite::scenarios::table;
use crate::vm::cmdline::{append_for, idle_word, module_word};
use crate::vm::devices::Devices;
use crate::vm::opts::{check_inputs, BootOpts};
use crate::vm::qemu::GuestConfig;
use crate::vm::vmtest::{boot, Report};

/// The scenarios `only` names (in table order), else those of `suite`, else all.
pub fn select(only: &[String], suite: Option<Kernel>) -> Vec<Scenario> {
    table()
        .into_iter()
        .filter(|s| {
            if only.is_empty() {
                suite.is_none_or(|k| s.runs_on(k))
            } else {
                only.iter().any(|n| n == s.name)
            }
        })
        .collect()
}

/// The counts over the scenarios run so far.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
    sc_passed: u32,
    sc_failed: u32,
    failed_dirs: Vec<std::path::PathBuf>,
}

impl Tally {
    /// Counts scenario `i` (`secs` long) and prints its `ok`/`not ok` line.
    fn add(
        &mut self,
        out: &dyn Reporter,
        o: &CheckOpts,
        i: usize,
        sc: &Scenario,
        rep: &Report,
        secs: f64,
    ) {
        let k = &rep.ktap;
        self.passed += k.passed;
        self.skipped += k.skipped;
        self.failed += k.failed;
        if !rep.ok && k.failed == 0 {
            self.failed += 1;
        }
        let dir = &rep.run_dir;
        if rep.ok {
            self.sc_passed += 1;
            out.line(&format!(
                "ok {} {} ({:.1} s; KTAP {} passed, {} skipped)",
                i + 1,
                sc.name,
                secs,
                k.passed,
                k.skipped
            ));
            if !o.keep_all {
                let _ = std::fs::remove_dir_all(dir);
            }
        } else {
            self.sc_failed += 1;
            out.line(&format!(
                "not ok {} {} ({:.1} s): {}",
                i + 1,
                sc.name,
                secs,
                rep.problems.join("; ")
            ));
            out.line(&format!("# run folder: {}", dir.display()));
            self.failed_dirs.push(dir.clone());
        }
    }
}

/// Runs the selected scenarios; returns (passed, failed) KTAP leaf tests
/// over all scenarios, where a scenario that fails for a reason outside its
/// KTAP (QEMU exit status, missing DONE, timeout, a host-side check) adds one
/// failure, so a failed scenario always counts at least one.
pub fn check(o: &CheckOpts, out: &dyn Reporter) -> Result<(u32, u32)> {
    o.validate()?;
    let sel = select(&o.only, o.suite);
    std::fs::create_dir_all(&o.run_dir)?;
    let mut t = Tally::default();
    let t_all = Instant::now();
    for (i, sc) in sel.iter().enumerate() {
        out.line(&format!(
            "\n# scenario {}/{}: {} — {}",
            i + 1,
            sel.len(),
            sc.name,
            sc.about
        ));
        let dir = o.run_dir.join(sc.name);
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = Instant::now();
        let rep = run_one(o, sc, &dir, out).unwrap_or_else(|e| Report {
            ok: false,
            problems: vec![format!("{e:#}")],
            run_dir: dir.clone(),
            ..Default::default()
        });
        t.add(
            out,
            o,
            i,
            sc,
            &Report {
                run_dir: dir,
                ..rep
            },
            t0.elapsed().as_secs_f64(),
        );
    }
    let (passed, failed, skipped) = (t.passed, t.failed, t.skipped);
    out.line(&format!(
        "\n# scenarios: {} passed, {} failed, in {:.0} s; KTAP leaf tests: {passed} passed, {failed} failed (incl. non-KTAP scenario failures), {skipped} skipped",
        t.sc_passed,
        t.sc_failed,
        t_all.elapsed().as_secs_f64()
    ));
    for d in &t.failed_dirs {
        out.line(&format!("# failed run kept: {}", d.display()));
    }
    out.line(&format!("{passed} passed, {failed} failed"));
    Ok((passed, failed))
}

fn run_one(o: &CheckOpts, sc: &Scenario, dir: &Path, out: &dyn Reporter) -> Result<Report> {
    std::fs::create_dir_all(dir)?;
    let network = match (sc.net, sc.image) {
        (false, _) => None,
        (true, None) => Some(Network::start(out)?),
        (true, Some(_)) => Some(Network::start_on(image::NTP_ADDR.parse()?, out)?),
    };
    let r = run_one_inner(o, sc, dir, out, network.clone());
    let probed = network.and_then(|n| n.finish(dir, out));
    let (mut r, acks) = r?;
    let mut checks = evaluate(sc.host_checks, probed.as_ref(), &acks);
    if let (Some(d), Kind::Sim(s)) = (sc.image, &sc.kind) {
        checks.extend(image::check_run(d, s.hops(), dir));
    }
    for (ok, what) in checks {
        out.stage(&format!("{} {what}", if ok { "ok" } else { "not ok" }));
        if ok {
            r.ktap.passed += 1;
        } else {
            r.ktap.failed += 1;
            r.ok = false;
            r.problems.push(what);
        }
    }
    Ok(r)
}

/// The guest of scenario `sc`: its devices, and its kernel command line from its fields.
fn guest_of(o: &CheckOpts, sc: &Scenario, dir: &Path, net: Option<&Network>) -> GuestConfig {
    let ntp = net.map(|n| n.cmdline()).unwrap_or_default();
    let idle = idle_word(sc.idle_s);
    let extra: Vec<&str> = [module_word(sc.module), &idle, &ntp]
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect();
    GuestConfig {
        kernel: o.kernel.clone(),
        initrd: o.initrd.clone(),
        append_extra: append_for(sc.run, sc.params, &extra.join(" ")),
        mode: sc.mode,
        devices: Devices {
            vmclock: sc.vmclock,
            net: net.map(Network::ports),
            migtime_offset_ns: 0,
            disk: None,
        },
        run_dir: dir.to_path_buf(),
        memory_mb: o.memory_mb,
        vcpus: sc.vcpus_with(o.vcpus),
    }
}

fn run_one_inner(
    o: &CheckOpts,
    sc: &Scenario,
    dir: &Path,
    out: &dyn Reporter,
    network: Option<Arc<Network>>,
) -> Result<(Report, Vec<Option<i64>>)> {
    let mut guest = guest_of(o, sc, dir, network.as_deref());
    if let (Some(d), Kind::Sim(s)) = (sc.image, &sc.kind) {
        guest = image::guest(&o.images.get(d)?, sc, guest, s.hops())?;
    }
    let timeout = sc.timeout_with(o.timeout);
    let boot_opts = |bad_page, expect_panic| BootOpts {
        guest: guest.clone(),
        timeout,
        page_file: None,
        bad_page,
        expect_panic,
    };
    match &sc.kind {
        Kind::Boot { bad_page } => boot(&boot_opts(*bad_page, None), out).map(|r| (r, vec![])),
        Kind::Panic { needle } => {
            boot(&boot_opts(None, Some((*needle).to_string())), out).map(|r| (r, vec![]))
        }
        Kind::Sim(s) => sim(
            &SimOpts {
                scenario: sc.name.to_string(),
                guest: guest.clone(),
                timeout,
                settings: SimSettings {
                    migrations: s.migrations.max(1),
                    ..s.clone()
                },
                ack_timeout: ack_timeout(sc.module),
                network,
            },
            out,
        )
        .map(|r| {
            let acks = r.summary.hops.iter().map(|h| h.ack_seen_ns).collect();
            (r.report, acks)
        }),
    }
}

/// Options of `check`.
pub struct CheckOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub run_dir: PathBuf,
    pub only: Vec<String>,
    pub timeout: Duration,
    pub keep_all: bool,
    pub memory_mb: u32,
    /// vCPUs of every guest (at least 2); a scenario may ask for more.
    pub vcpus: u32,
    /// Without `only`: the scenarios of this kernel's suite (else all).
    pub suite: Option<Kernel>,
    /// The Debian images of the image rows.
    pub images: ImageDirs,
}

impl CheckOpts {
    /// Every `only` names a scenario.
    pub fn validate(&self) -> Result<()> {
        let all = table();
        for n in &self.only {
            if !all.iter().any(|s| s.name == n) {
                bail!("no scenario named {n:?} (see --list)");
            }
        }
        for d in select(&self.only, self.suite)
            .iter()
            .filter_map(|s| s.image)
        {
            self.images.get(d)?;
        }
        check_inputs(&self.kernel, &self.initrd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::output::Console;

    fn opts() -> CheckOpts {
        CheckOpts {
            kernel: "/k".into(),
            initrd: "/i".into(),
            run_dir: "/r".into(),
            only: Vec::new(),
            timeout: Duration::from_secs(180),
            keep_all: false,
            memory_mb: 256,
            vcpus: 2,
            suite: None,
            images: ImageDirs::default(),
        }
    }

    fn scenario(name: &str) -> Scenario {
        table().into_iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn the_guest_follows_the_scenario_fields() {
        let o = opts();
        let d = Path::new("/r/x");
        let g = guest_of(&o, &scenario("step-fallback"), d, None);
        assert_eq!(
            g.append_extra,
            "mt.run=mt_migrate:expect=step mt.params=step_method=2"
        );
        assert!(!g.devices.vmclock && g.devices.net.is_none());
        let g = guest_of(&o, &scenario("companion-vmclock"), d, None);
        assert_eq!(
            g.append_extra,
            "mt.run=mt_companion:expect=vmclock:hops=2 mt.load=0"
        );
        assert!(g.devices.vmclock);
        let n = Network::start(&Console).unwrap();
        let g = guest_of(&o, &scenario("chrony-vmclock"), d, Some(&n));
        let want = format!(
            "mt.run=mt_chrony:expect=vmclock:hops=1:sync=60 mt.load=0 {}",
            n.cmdline()
        );
        assert_eq!(g.append_extra, want);
        assert!(g.devices.vmclock && g.devices.net.is_some());
        assert_eq!(guest_of(&o, &scenario("doorbell-smp"), d, None).vcpus, 4);
        let _ = n.finish(&std::env::temp_dir().join("migtime-check-test"), &Console);
    }

    #[test]
    fn selection_by_name_or_kernel_keeps_the_table_order() {
        let names = |v: Vec<Scenario>| v.iter().map(|s| s.name).collect::<Vec<_>>();
        let only = ["reload".to_string(), "boot".to_string()];
        assert_eq!(
            names(select(&only, Some(Kernel::Debian))),
            ["boot", "reload"]
        );
        let project = names(select(&[], Some(Kernel::Project)));
        assert_eq!(project.len(), table().len() - 3);
        assert!(!project.contains(&"timers-peer"));
        assert_eq!(names(select(&[], None)).len(), table().len());
    }
}
