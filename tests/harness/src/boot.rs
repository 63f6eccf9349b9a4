// SPDX-License-Identifier: GPL-2.0

//! `boot`: one guest, its tests, its verdict; and what `sim` shares with it
//! (reports, failure output, unique names).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::ktap::{self, Summary};
use crate::page::{BadPage, PageFile};
use crate::qemu::{marker, tail_lines, Guest, GuestConfig, Marker, Tail};

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

/// A unique `/dev/shm` page path for guest `name` of this process.
pub fn shm_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::var("MIGTIME_SHM_DIR").unwrap_or_else(|_| "/dev/shm".into());
    PathBuf::from(dir).join(format!("migtime-{}-{n}-{name}", std::process::id()))
}

/// Prints a stage line.
pub fn stage(msg: impl AsRef<str>) {
    println!("==> {}", msg.as_ref());
}

/// Host clock readings (nanoseconds).
pub fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}
pub fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}
pub fn tai_ns() -> i64 {
    clock_ns(libc::CLOCK_TAI)
}

/// Prints what a failed run leaves behind: console and results tails, where.
pub fn print_failure(run_dir: &Path, guests: &[&str], problems: &[String]) {
    eprintln!("---- FAILED: {}", problems.join("; "));
    for g in guests {
        for (what, file) in [
            ("console", format!("console-{g}.log")),
            ("results", format!("results-{g}.ktap")),
        ] {
            let p = run_dir.join(&file);
            if p.exists() {
                eprintln!("---- tail of {what} ({}):", p.display());
                eprintln!("{}", tail_lines(&p, 40));
            }
        }
        let se = run_dir.join(format!("qemu-{g}.stderr"));
        if std::fs::metadata(&se).map(|m| m.len() > 0).unwrap_or(false) {
            eprintln!(
                "---- QEMU stderr ({}):\n{}",
                se.display(),
                tail_lines(&se, 20)
            );
        }
    }
    eprintln!("---- run folder kept: {}", run_dir.display());
}

/// Options of `boot`.
#[derive(Clone, Debug)]
pub struct BootOpts {
    pub guest: GuestConfig,
    pub timeout: Duration,
    pub page_file: Option<PathBuf>,
    pub bad_page: Option<BadPage>,
    /// The guest must panic on purpose: pass only if QEMU exits by itself,
    /// without `# MIGTIME-DONE`, and the console log contains this text.
    pub expect_panic: Option<String>,
}

/// Boots one guest, follows its results channel to `# MIGTIME-DONE`, and
/// checks exit status, DONE status and KTAP.
pub fn boot(o: &BootOpts) -> Result<Report> {
    let run = &o.guest.run_dir;
    std::fs::create_dir_all(run)
        .with_context(|| format!("creating run folder {}", run.display()))?;
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
        stage(format!("page header corrupted before boot: {k:?}"));
    }
    stage(format!(
        "booting guest ({}, {:?} mode, page {})",
        crate::qemu::accel(),
        o.guest.mode,
        page.path().display()
    ));
    let t0 = Instant::now();
    let mut g = Guest::start(&o.guest, "guest", page, false)?;
    let deadline = t0 + o.timeout;
    let mut tail = Tail::new(&g.results);
    let mut done = None;
    let mut first_line = None;
    let mut problems = Vec::new();
    loop {
        for l in tail.poll() {
            if first_line.is_none() {
                first_line = Some(t0.elapsed());
                stage(format!(
                    "guest up: first results line after {:.2} s",
                    t0.elapsed().as_secs_f64()
                ));
            }
            if let Some(Marker::Done(st)) = marker(&l) {
                done = Some(st);
            }
        }
        if done.is_some() {
            break;
        }
        if g.try_exit()?.is_some() {
            tail.poll();
            break;
        }
        if Instant::now() >= deadline {
            problems.push(format!(
                "timeout: no MIGTIME-DONE within {} s",
                o.timeout.as_secs()
            ));
            g.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = match g.wait_exit(Duration::from_secs(30)) {
        Ok(st) => st.code(),
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    tail.poll();
    stage(format!(
        "guest finished after {:.2} s: MIGTIME-DONE {}, QEMU exit status {}",
        t0.elapsed().as_secs_f64(),
        done.map_or("missing".into(), |d| d.to_string()),
        status.map_or("none (killed)".into(), |c| c.to_string())
    ));
    let _ = std::fs::write(run.join("page-guest.bin"), g.page.page_bytes());
    let report = match &o.expect_panic {
        Some(needle) => panic_verdict(run, &g.console, needle, status, done, problems),
        None => verdict(run, &[&g.results], status, done, problems),
    };
    let summary = serde_json::json!({
        "scenario": "boot",
        "mode": format!("{:?}", o.guest.mode).to_lowercase(),
        "ok": report.ok,
        "problems": report.problems,
        "boot_s": first_line.map(|d| d.as_secs_f64()),
        "total_s": t0.elapsed().as_secs_f64(),
        "done_status": done,
        "exit_status": status,
        "ktap": report.ktap,
    });
    let _ = std::fs::write(
        run.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    );
    drop(g);
    if !report.ok {
        print_failure(run, &["guest"], &report.problems);
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
    println!(
        "KTAP: {} passed, {} failed, {} skipped",
        k.passed, k.failed, k.skipped
    );
    Report {
        ok: problems.is_empty(),
        problems,
        ktap: k,
        run_dir: run.to_path_buf(),
    }
}
