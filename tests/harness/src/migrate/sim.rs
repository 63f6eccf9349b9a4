// SPDX-License-Identifier: GPL-2.0

//! `sim`: the hypervisor simulator. Boots a source guest, live-migrates it
//! for real to a second QEMU (`-incoming defer -S`), holds the destination
//! paused for the blackout, writes the destination's page (seqlock), resumes
//! it, rings the doorbell, measures the guest's ack, and follows the guest to
//! its verdict. See `migtime-harness sim --help`.
//!
//! The steps are [`Chain`]'s, the faults `faults.rs`'s; this file holds what
//! a run yields ([`SimResult`]: the verdict and the typed [`SimSummary`]
//! record, also written as `RUN/summary.json`) and runs the chain.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::base::output::Reporter;
use crate::migrate::chain::Chain;
use crate::migrate::opts::SimOpts;
use crate::record::hop::SimSummary;
use crate::vm::vmtest::{report_failure, verdict, Report};

/// What `sim` yields: the verdict and everything measured, in memory.
#[derive(Clone, Debug)]
pub struct SimResult {
    pub report: Report,
    pub summary: SimSummary,
}

/// Runs the simulator; see the module doc.
pub fn sim(o: &SimOpts, out: &dyn Reporter) -> Result<SimResult> {
    let run = o.guest.run_dir.clone();
    std::fs::create_dir_all(&run)
        .with_context(|| format!("creating run folder {}", run.display()))?;
    let mut sum = SimSummary {
        scenario: o.scenario.clone(),
        mode: format!("{:?}", o.guest.mode).to_lowercase(),
        expect_outcome: o.settings.expect,
        run_dir: run.clone(),
        ..Default::default()
    };
    let mut names: Vec<String> = vec!["a".into()];
    let result = o
        .validate()
        .and_then(|()| Chain::start(o, out, &mut sum, &mut names)?.run());
    let mut problems = sum.problems.clone();
    if let Err(e) = &result {
        problems.push(format!("{e:#}"));
    }
    let results: Vec<PathBuf> = names
        .iter()
        .map(|n| run.join(format!("results-{n}.ktap")))
        .collect();
    let refs: Vec<&Path> = results.iter().map(|p| p.as_path()).collect();
    let mut report = verdict(out, &run, &refs, sum.exit_status, sum.done_status, problems);
    sum.ok = report.ok;
    sum.problems = report.problems.clone();
    sum.ktap = report.ktap.clone();
    std::fs::write(
        run.join("summary.json"),
        serde_json::to_string_pretty(&sum)?,
    )?;
    report.run_dir = run.clone();
    if !report.ok {
        let ns: Vec<&str> = names.iter().map(String::as_str).collect();
        report_failure(out, &run, &ns, &report.problems);
    } else {
        out.stage(&format!("summary: {}", run.join("summary.json").display()));
    }
    Ok(SimResult {
        report,
        summary: sum,
    })
}
