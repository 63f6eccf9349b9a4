// SPDX-License-Identifier: GPL-2.0

//! `check`: the whole suite ([`crate::suite::scenarios::table`]), one scenario at a
//! time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::base::output::Reporter;
use crate::migrate::opts::{SimOpts, SimSettings};
use crate::migrate::sim::sim;
use crate::suite::scenarios::{
    ack_timeout_for, append_for, table, timeout_for, vcpus_for, Kind, Scenario,
};
use crate::vm::opts::{check_inputs, BootOpts};
use crate::vm::qemu::GuestConfig;
use crate::vm::vmtest::{boot, Report};

/// Prints the table (`--list`).
pub fn list() {
    for sc in table() {
        let how = match &sc.kind {
            Kind::Boot { .. } => "boot".to_string(),
            Kind::Panic { needle } => format!("boot --expect-panic \"{needle}\""),
            Kind::Sim(s) => {
                let mut o = vec![format!("sim --mode {:?}", sc.mode).to_lowercase()];
                if s.blackout_ms > 0 {
                    o.push(format!("--blackout {}", s.blackout_ms));
                }
                if s.skew_ns != 0 {
                    o.push(format!("--skew-ns {}", s.skew_ns));
                }
                if s.compensated {
                    o.push("--compensated".into());
                }
                if s.migrations > 1 {
                    o.push(format!("--migrations {}", s.migrations));
                }
                if s.no_guest_run_between {
                    o.push("--no-guest-run-between".into());
                }
                if s.cancel {
                    o.push("--cancel".into());
                }
                if let Some(b) = s.bad_page {
                    o.push(format!(
                        "--bad-page {}",
                        clap::ValueEnum::to_possible_value(&b).unwrap().get_name()
                    ));
                }
                if let Some(e) = s.expect {
                    o.push(format!(
                        "--expect-outcome {}",
                        clap::ValueEnum::to_possible_value(&e).unwrap().get_name()
                    ));
                }
                o.join(" ")
            }
        };
        println!(
            "{:<14} {}\n{:<14}   guest: {} ({} vCPUs)\n{:<14}   host:  {how}",
            sc.name,
            sc.about,
            "",
            if sc.run.is_empty() {
                "(no program)"
            } else {
                sc.run
            },
            vcpus_for(sc.name, crate::vm::qemu::DEFAULT_VCPUS),
            ""
        );
    }
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
    let sel: Vec<Scenario> = table()
        .into_iter()
        .filter(|s| o.only.is_empty() || o.only.iter().any(|n| n == s.name))
        .collect();
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
    let ntp = crate::net::ntp::start_ntp(sc.run, dir, out)?;
    let r = run_one_inner(o, sc, dir, out, &ntp);
    let probed = crate::net::ntp::stop_ntp(dir, out);
    let mut r = r?;
    // The host's own checks (on what the probe saw) count like KTAP leaf results.
    for (ok, what) in crate::net::ntp::host_checks(sc.run, probed.as_ref()) {
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

fn run_one_inner(
    o: &CheckOpts,
    sc: &Scenario,
    dir: &Path,
    out: &dyn Reporter,
    ntp: &str,
) -> Result<Report> {
    let guest = GuestConfig {
        kernel: o.kernel.clone(),
        initrd: o.initrd.clone(),
        append_extra: append_for(sc.run, sc.params, ntp),
        mode: sc.mode,
        run_dir: dir.to_path_buf(),
        memory_mb: o.memory_mb,
        vcpus: vcpus_for(sc.name, o.vcpus),
    };
    let timeout = timeout_for(sc.name, o.timeout);
    let boot_opts = |bad_page, expect_panic| BootOpts {
        guest: guest.clone(),
        timeout,
        page_file: None,
        bad_page,
        expect_panic,
    };
    match &sc.kind {
        Kind::Boot { bad_page } => boot(&boot_opts(*bad_page, None), out),
        Kind::Panic { needle } => boot(&boot_opts(None, Some((*needle).to_string())), out),
        Kind::Sim(s) => sim(
            &SimOpts {
                scenario: sc.name.to_string(),
                guest: guest.clone(),
                timeout,
                settings: SimSettings {
                    migrations: s.migrations.max(1),
                    ..s.clone()
                },
                ack_timeout: ack_timeout_for(sc.run),
            },
            out,
        )
        .map(|r| r.report),
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
    /// vCPUs of every guest (at least 2); see [`crate::suite::scenarios::vcpus_for`].
    pub vcpus: u32,
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
        check_inputs(&self.kernel, &self.initrd)
    }
}
