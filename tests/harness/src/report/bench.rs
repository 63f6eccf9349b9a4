// SPDX-License-Identifier: GPL-2.0

//! `bench`: numbers, not tests. N live migrations per configuration, side by
//! side (baseline without the module, migtime polling, migtime doorbell, the
//! userspace comparator `mt_daemon`), plus one quiet boot per configuration
//! for the idle cost. Nothing here asserts on timing; it only reports.
//!
//! Migrations are chained (`sim --migrations K` with K mt_clock runs in one
//! boot) to spend the time on migrations rather than boots; configurations
//! are interleaved boot by boot so that load from elsewhere on the machine
//! spreads over all of them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::base::output::LogFile;
use crate::migrate::observe::{mt_clock_run, observe};
use crate::migrate::opts::{Restore, SimOpts, SimSettings, Vmm};
use crate::report::bench_md::render_markdown;
use crate::report::bench_report::{records, ConfigResult, HopRecord, Idle};
use crate::report::configs::{configs, Config};
use crate::report::daemons::{cases, conditions, run_case, Case, DaemonOpts, DaemonRun};
use crate::report::daemons_md::{progress_line, render_markdown as daemons_markdown};
use crate::report::machine::machine;
use crate::report::opts::BenchOpts;
use crate::vm::cmdline::append_for;
use crate::vm::devices::Devices;
use crate::vm::opts::BootOpts;
use crate::vm::qemu::GuestConfig;
use crate::vm::vmtest::boot;

/// A bench run: its options, output folder, log and the results so far.
struct Bench<'a> {
    o: &'a BenchOpts,
    t0: Instant,
    runs_dir: PathBuf,
    /// The simulator's progress (bench.log).
    log: LogFile,
    rs: Vec<ConfigResult>,
    /// The time-daemon runs ([`crate::report::daemons`]).
    daemons: Vec<DaemonRun>,
}

/// The first 160 characters of an error, for a progress line.
fn short(e: &Option<String>) -> String {
    e.as_ref().map_or(String::new(), |e| {
        format!("  [{}]", e.chars().take(160).collect::<String>())
    })
}

impl Bench<'_> {
    fn guest(&self, c: &Config, run: &str, run_dir: PathBuf) -> GuestConfig {
        let o = self.o;
        let (kernel, initrd) = match (&o.debian, c.debian) {
            (Some((k, i)), true) => (k.clone(), i.clone()),
            _ => (o.kernel.clone(), o.initrd.clone()),
        };
        GuestConfig {
            kernel,
            initrd,
            append_extra: append_for(run, "", &c.append()),
            mode: c.mode,
            devices: Devices::default(),
            run_dir,
            memory_mb: o.memory_mb,
            vcpus: crate::vm::qemu::DEFAULT_VCPUS,
        }
    }

    /// Boot `b` (from 0) of configuration `i`: a chain of `hops` migrations.
    fn migrations(&mut self, i: usize, b: u32, boots: u32, hops: u32) {
        let o = self.o;
        let c = self.rs[i].config.clone();
        let t = Instant::now();
        let run = mt_clock_run(hops, o.period_ms, o.before_ms, o.after_ms);
        let run_dir = self.runs_dir.join(format!("{}-{}", c.key, b + 1));
        let sim_opts = SimOpts {
            scenario: format!("bench-{}", c.key),
            guest: self.guest(&c, &run, run_dir),
            timeout: o.timeout + Duration::from_secs(20 * u64::from(hops)),
            settings: SimSettings {
                blackout_ms: o.blackout_ms,
                migrations: hops,
                vmm: if c.device {
                    Vmm::QemuDevice
                } else {
                    Vmm::Simulator
                },
                restore: c.restore.then_some(Restore::File),
                ..Default::default()
            },
            ack_timeout: if c.module || c.daemon_ms.is_some() {
                Duration::from_secs(10)
            } else {
                Duration::from_millis(300)
            },
            network: None,
        };
        let ob = observe(&sim_opts, &self.log);
        let recs = records(&ob, b + 1);
        let got = recs.iter().filter(|h| h.clock_change_ms.is_some()).count();
        let line = |h: &HopRecord| h.clock_change_ms.map_or("?".into(), |v| format!("{v:+.1}"));
        println!(
            "  [{:>5.0} s] {:<22} boot {}/{}: {got}/{hops} migrations measured in {:.0} s; offset change ms: {}{}",
            self.t0.elapsed().as_secs_f64(),
            c.title,
            b + 1,
            boots,
            t.elapsed().as_secs_f64(),
            recs.iter().map(line).collect::<Vec<_>>().join(" "),
            short(&ob.error)
        );
        let r = &mut self.rs[i];
        r.attempted += hops;
        if let Some(e) = &ob.error {
            r.errors.push(format!("boot {}: {e}", b + 1));
        }
        r.hops.extend(recs);
    }

    /// The idle cost of configuration `i`: one quiet boot running mt_idle.
    fn idle(&mut self, i: usize) {
        let o = self.o;
        let c = self.rs[i].config.clone();
        let t = Instant::now();
        let run_dir = self.runs_dir.join(format!("{}-idle", c.key));
        let _ = std::fs::remove_dir_all(&run_dir);
        let run = format!("mt_idle:seconds={}", o.idle_seconds);
        let bo = BootOpts {
            guest: self.guest(&c, &run, run_dir.clone()),
            timeout: o.timeout + Duration::from_secs(o.idle_seconds),
            page_file: None,
            bad_page: None,
            expect_panic: None,
        };
        let rep = boot(&bo, &self.log);
        let text = std::fs::read_to_string(run_dir.join("results-guest.ktap")).unwrap_or_default();
        let mut idle = text.lines().find_map(Idle::parse).unwrap_or_default();
        match rep {
            Ok(rep) if !rep.ok => idle.error = Some(rep.problems.join("; ")),
            Err(e) => idle.error = Some(format!("{e:#}")),
            _ => {}
        }
        println!(
            "  [{:>5.0} s] {:<22} idle {} s: {} wakeups/s, {} % busy ({:.0} s){}",
            self.t0.elapsed().as_secs_f64(),
            c.title,
            o.idle_seconds,
            idle.wakeups_per_s.map_or("?".into(), |v| format!("{v:.1}")),
            idle.busy_pct.map_or("?".into(), |v| format!("{v:.2}")),
            t.elapsed().as_secs_f64(),
            short(&idle.error)
        );
        self.rs[i].idle = Some(idle);
    }

    /// The time-daemon cases selected by `--only` (all without it), `chrony_runs` times each
    /// per destination clock.
    fn daemons(&mut self) {
        let o = self.o;
        let sel: Vec<Case> = cases()
            .into_iter()
            .filter(|c| o.only.is_empty() || o.only.iter().any(|k| k == c.key))
            .collect();
        if sel.is_empty() || o.chrony_runs == 0 {
            return;
        }
        let d = self.daemon_opts();
        println!(
            "bench: time daemons: {} cases x {} destination clocks x {} runs, 2 s blackout (a few minutes each)",
            sel.len(),
            conditions().len(),
            o.chrony_runs
        );
        for n in 0..o.chrony_runs {
            for cond in conditions() {
                for case in &sel {
                    let t = Instant::now();
                    let dir = self
                        .runs_dir
                        .join(format!("{}-{}-{}", case.key, cond.key, n + 1));
                    let r = run_case(&d, case, &cond, &dir, &self.log);
                    println!(
                        "  [{:>5.0} s] {} ({:.0} s)",
                        self.t0.elapsed().as_secs_f64(),
                        progress_line(&r),
                        t.elapsed().as_secs_f64()
                    );
                    self.daemons.push(r);
                }
            }
        }
    }

    fn daemon_opts(&self) -> DaemonOpts {
        DaemonOpts {
            kernel: self.o.kernel.clone(),
            initrd: self.o.initrd.clone(),
            blackout_ms: 2000,
            window_s: self.o.chrony_window_s,
            hold_s: self.o.chrony_hold_s,
            memory_mb: self.o.memory_mb,
            device: false,
        }
    }

    /// Writes OUT/bench.json and OUT/bench.md and prints the table.
    fn write(&mut self, hpb: u32) -> Result<()> {
        let o = self.o;
        for r in self.rs.iter_mut() {
            r.summarise();
        }
        let m = machine();
        let mut md = if self.rs.is_empty() {
            String::new()
        } else {
            render_markdown(&m, o, &self.rs)
        };
        if !self.daemons.is_empty() {
            md.push_str(&daemons_markdown(&self.daemon_opts(), &self.daemons));
        }
        let json = serde_json::json!({
            "machine": m,
            "wall_time_s": self.t0.elapsed().as_secs_f64(),
            "options": {
                "runs": o.runs, "hops_per_boot": hpb, "blackout_ms": o.blackout_ms, "idle_seconds": o.idle_seconds,
                "period_ms": o.period_ms, "before_ms": o.before_ms, "after_ms": o.after_ms, "daemon_ms": o.daemon_ms,
                "memory_mb": o.memory_mb,
            },
            "configs": self.rs,
            "daemons": self.daemons,
        });
        std::fs::write(
            o.out_dir.join("bench.json"),
            serde_json::to_string_pretty(&json)?,
        )?;
        std::fs::write(o.out_dir.join("bench.md"), &md)?;
        println!();
        print!("{md}");
        println!();
        println!(
            "bench: {:.0} s wall time; wrote {} and {}",
            self.t0.elapsed().as_secs_f64(),
            o.out_dir.join("bench.md").display(),
            o.out_dir.join("bench.json").display()
        );
        Ok(())
    }
}

/// Runs the bench; writes OUT/bench.json and OUT/bench.md, prints the table.
/// The simulator's progress goes to OUT/bench.log.
pub fn bench(o: &BenchOpts) -> Result<bool> {
    o.validate()?;
    let t0 = Instant::now();
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("creating {}", o.out_dir.display()))?;
    let runs_dir = o.out_dir.join("runs");
    let _ = std::fs::remove_dir_all(&runs_dir);
    std::fs::create_dir_all(&runs_dir)?;
    let log_path = o.out_dir.join("bench.log");
    let _ = std::fs::remove_file(&log_path);
    let rs: Vec<ConfigResult> = configs(o.daemon_ms)
        .into_iter()
        .filter(|c| !c.debian || o.debian.is_some())
        .filter(|c| !c.device || o.device)
        .filter(|c| o.only.is_empty() || o.only.iter().any(|k| k == c.key))
        .map(ConfigResult::new)
        .collect();
    if !o.device {
        println!("bench: the -device migtime configurations are left out (--no-device, or no MIGTIME_QEMU_DEVICE)");
    }
    let hpb = o.hops_per_boot.clamp(1, 20);
    let boots = o.runs.div_ceil(hpb);
    if !rs.is_empty() {
        println!(
            "bench: {} configurations x {} migrations ({} boots each, up to {hpb} migrations per boot), then {} s idle each; simulator log: {}",
            rs.len(),
            o.runs,
            boots,
            o.idle_seconds,
            log_path.display()
        );
    }
    let mut b = Bench {
        o,
        t0,
        runs_dir,
        log: LogFile::append(&log_path)?,
        rs,
        daemons: Vec::new(),
    };
    for boot_no in 0..boots {
        let hops = hpb.min(o.runs - boot_no * hpb);
        for i in 0..b.rs.len() {
            b.migrations(i, boot_no, boots, hops);
        }
    }
    if o.idle_seconds > 0 {
        // A file restore idles as the same guest on the same device as the live one.
        for i in 0..b.rs.len() {
            if !b.rs[i].config.restore {
                b.idle(i);
            }
        }
    }
    b.daemons();
    b.write(hpb)?;
    // Numbers, not tests: success means every configuration produced numbers.
    Ok(b.rs.iter().all(|r| r.clock_error_ms.is_some())
        && b.daemons.iter().all(|r| r.probe.convergence.is_some()))
}
