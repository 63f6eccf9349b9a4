// SPDX-License-Identifier: GPL-2.0

//! One guest to its verdict (`boot`), and the verdicts `sim` shares: the
//! report of a run, the failure output, the KTAP and panic verdicts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::base::ktap::{self, Summary};
use crate::base::output::Reporter;
use crate::base::results::{marker, tail_lines, Marker, Tail};
use crate::vm::opts::BootOpts;
use crate::vm::page::{shm_path, PageFile};
use crate::vm::qemu::Guest;

/// The verdict of one run (boot or sim).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    /// Why it failed (empty when `ok`).
    pub problems: Vec<String>,
    /// KTAP leaf counts over the whole results channel.
    pub ktap: Summary,
    pub run_dir: PathBuf,
}

impl Report {
    /// The closing line of `boot` and `sim`: KTAP leaf counts, where a
    /// failure outside KTAP counts as one.
    pub fn counts_line(&self) -> String {
        format!(
            "{} passed, {} failed",
            self.ktap.passed,
            self.ktap.failed + u32::from(!self.ok && self.ktap.failed == 0)
        )
    }
}

/// Reports what a failed run leaves behind: console and results tails, where.
pub fn report_failure(out: &dyn Reporter, run_dir: &Path, guests: &[&str], problems: &[String]) {
    out.failure(&format!("---- FAILED: {}", problems.join("; ")));
    for g in guests {
        for (what, file) in [
            ("console", format!("console-{g}.log")),
            ("results", format!("results-{g}.ktap")),
        ] {
            let p = run_dir.join(&file);
            if p.exists() {
                out.failure(&format!("---- tail of {what} ({}):", p.display()));
                out.failure(&tail_lines(&p, 40));
            }
        }
        let se = run_dir.join(format!("qemu-{g}.stderr"));
        if std::fs::metadata(&se).map(|m| m.len() > 0).unwrap_or(false) {
            out.failure(&format!(
                "---- QEMU stderr ({}):\n{}",
                se.display(),
                tail_lines(&se, 20)
            ));
        }
    }
    out.failure(&format!("---- run folder kept: {}", run_dir.display()));
}

/// The page of a `boot`: the given file (created with a valid v1 page if
/// missing, kept) or a fresh one; its header corrupted as asked.
fn boot_page(o: &BootOpts, out: &dyn Reporter) -> Result<PageFile> {
    let mut page = match &o.page_file {
        Some(p) if p.exists() => PageFile::open(p)?,
        Some(p) => {
            let mut pf = PageFile::create(p)?;
            pf.set_remove_on_drop(false);
            pf.init_valid(0);
            pf
        }
        None => {
            let mut pf = PageFile::create(&shm_path("guest"))?;
            pf.init_valid(0);
            pf
        }
    };
    if let Some(k) = o.bad_page {
        page.write_bad_header(k).context(
            "--bad-page for boot takes a header kind (bad-magic, bad-version, bad-size)",
        )?;
        out.stage(&format!("page header corrupted before boot: {k:?}"));
    }
    Ok(page)
}

/// What following a booted guest found.
struct Followed {
    done: Option<i64>,
    first_line: Option<Duration>,
    problems: Vec<String>,
}

/// Follows the guest's results channel until `# MIGTIME-DONE`, QEMU's exit
/// or the timeout (which kills it).
fn follow(g: &mut Guest, o: &BootOpts, out: &dyn Reporter) -> Result<Followed> {
    let t0 = g.started;
    let deadline = t0 + o.timeout;
    let mut tail = Tail::new(&g.results);
    let mut f = Followed {
        done: None,
        first_line: None,
        problems: Vec::new(),
    };
    loop {
        for l in tail.poll() {
            if f.first_line.is_none() {
                f.first_line = Some(t0.elapsed());
                out.stage(&format!(
                    "guest up: first results line after {:.2} s",
                    t0.elapsed().as_secs_f64()
                ));
            }
            if let Some(Marker::Done(st)) = marker(&l) {
                f.done = Some(st);
            }
        }
        if f.done.is_some() {
            return Ok(f);
        }
        if g.try_exit()?.is_some() {
            tail.poll();
            return Ok(f);
        }
        if Instant::now() >= deadline {
            f.problems.push(format!(
                "timeout: no MIGTIME-DONE within {} s",
                o.timeout.as_secs()
            ));
            g.kill();
            return Ok(f);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Boots one guest, follows its results channel to `# MIGTIME-DONE`, and
/// checks exit status, DONE status and KTAP.
pub fn boot(o: &BootOpts, out: &dyn Reporter) -> Result<Report> {
    o.validate()?;
    let run = &o.guest.run_dir;
    std::fs::create_dir_all(run)
        .with_context(|| format!("creating run folder {}", run.display()))?;
    let page = boot_page(o, out)?;
    out.stage(&format!(
        "booting guest ({}, {:?} mode, page {})",
        crate::vm::qemu::accel(),
        o.guest.mode,
        page.path().display()
    ));
    let t0 = Instant::now();
    let mut g = Guest::start(&o.guest, "guest", page, false)?;
    let mut f = follow(&mut g, o, out)?;
    let status = match g.wait_exit(Duration::from_secs(30)) {
        Ok(st) => st.code(),
        Err(e) => {
            f.problems.push(format!("{e:#}"));
            None
        }
    };
    out.stage(&format!(
        "guest finished after {:.2} s: MIGTIME-DONE {}, QEMU exit status {}",
        t0.elapsed().as_secs_f64(),
        f.done.map_or("missing".into(), |d| d.to_string()),
        status.map_or("none (killed)".into(), |c| c.to_string())
    ));
    let _ = std::fs::write(run.join("page-guest.bin"), g.page.page_bytes());
    let report = match &o.expect_panic {
        Some(needle) => panic_verdict(run, &g.console, needle, status, f.done, f.problems),
        None => verdict(out, run, &[&g.results], status, f.done, f.problems),
    };
    let summary = serde_json::json!({
        "scenario": "boot",
        "mode": format!("{:?}", o.guest.mode).to_lowercase(),
        "ok": report.ok,
        "problems": report.problems,
        "boot_s": f.first_line.map(|d| d.as_secs_f64()),
        "total_s": t0.elapsed().as_secs_f64(),
        "done_status": f.done,
        "exit_status": status,
        "ktap": report.ktap,
    });
    let _ = std::fs::write(
        run.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    );
    drop(g);
    if !report.ok {
        report_failure(out, run, &["guest"], &report.problems);
    }
    Ok(report)
}

/// Verdict for a guest that must panic: QEMU exited by itself (`panic=-1`
/// with `-no-reboot`), the guest never reached `# MIGTIME-DONE`, and the
/// console shows `needle`. Counted as one KTAP-style result.
pub fn panic_verdict(
    run: &Path,
    console: &Path,
    needle: &str,
    status: Option<i32>,
    done: Option<i64>,
    mut problems: Vec<String>,
) -> Report {
    let log = std::fs::read_to_string(console).unwrap_or_default();
    if status.is_none() {
        problems.push("QEMU did not exit by itself (expected a guest panic)".into());
    }
    if let Some(n) = done {
        problems.push(format!(
            "guest finished its tests (MIGTIME-DONE {n}) instead of panicking"
        ));
    }
    if !log.contains(needle) {
        problems.push(format!("console log lacks \"{needle}\""));
    }
    let ok = problems.is_empty();
    Report {
        ok,
        ktap: ktap::Summary {
            passed: u32::from(ok),
            failed: u32::from(!ok),
            skipped: 0,
            problems: Vec::new(),
        },
        problems,
        run_dir: run.to_path_buf(),
    }
}

/// Common verdict: QEMU exit status 1 (mt-exit 0), `# MIGTIME-DONE 0`, and
/// a fully passing KTAP document over the concatenated results files.
pub fn verdict(
    out: &dyn Reporter,
    run: &Path,
    results: &[&Path],
    status: Option<i32>,
    done: Option<i64>,
    mut problems: Vec<String>,
) -> Report {
    let mut text = String::new();
    for r in results {
        text.push_str(&std::fs::read_to_string(r).unwrap_or_default());
        if !text.ends_with('\n') && !text.is_empty() {
            text.push('\n');
        }
    }
    let _ = std::fs::write(run.join("results.ktap"), &text);
    let k = ktap::check(&text);
    match status {
        Some(1) => {}
        Some(c) => problems.push(format!("QEMU exit status {c}, expected 1 (mt-exit 0)")),
        None => problems.push("QEMU did not exit by itself".into()),
    }
    match done {
        Some(0) => {}
        Some(n) => problems.push(format!("MIGTIME-DONE {n} (guest reports failures)")),
        None => problems.push("no # MIGTIME-DONE marker".into()),
    }
    for p in &k.problems {
        problems.push(format!("KTAP: {p}"));
    }
    if k.passed + k.skipped == 0 {
        problems.push("KTAP: no test results".into());
    }
    out.line(&format!(
        "KTAP: {} passed, {} failed, {} skipped",
        k.passed, k.failed, k.skipped
    ));
    Report {
        ok: problems.is_empty(),
        problems,
        ktap: k,
        run_dir: run.to_path_buf(),
    }
}
