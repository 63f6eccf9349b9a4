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

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::boot::{boot, BootOpts};
use crate::check::append_for;
use crate::demo::{mt_clock_run, observe, parse_kv, Observed};
use crate::qemu::{GuestConfig, Mode};
use crate::sim::{SimOpts, SimSettings};

/// One configuration of the guest.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub key: &'static str,
    pub title: &'static str,
    pub mode: Mode,
    /// migtime.ko loaded.
    pub module: bool,
    /// mt_daemon poll period (the userspace comparator), ms.
    pub daemon_ms: Option<u32>,
}

pub fn configs(daemon_ms: u32) -> Vec<Config> {
    vec![
        Config {
            key: "baseline",
            title: "baseline (no module)",
            mode: Mode::Plain,
            module: false,
            daemon_ms: None,
        },
        Config {
            key: "polling",
            title: "migtime polling",
            mode: Mode::Plain,
            module: true,
            daemon_ms: None,
        },
        Config {
            key: "doorbell",
            title: "migtime doorbell",
            mode: Mode::Doorbell,
            module: true,
            daemon_ms: None,
        },
        Config {
            key: "daemon",
            title: "userspace daemon",
            mode: Mode::Plain,
            module: false,
            daemon_ms: Some(daemon_ms),
        },
    ]
}

impl Config {
    /// The kernel command line besides `mt.run`.
    pub fn append(&self) -> String {
        let mut v = vec![
            format!("mt.load={}", u8::from(self.module)),
            "mt.kunit=0".to_string(),
        ];
        if let Some(p) = self.daemon_ms {
            v.push(format!("mt.daemon={p}"));
        }
        v.join(" ")
    }
}

/// Options of `bench`.
#[derive(Clone, Debug)]
pub struct BenchOpts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub out_dir: PathBuf,
    pub runs: u32,
    pub hops_per_boot: u32,
    pub blackout_ms: u64,
    pub idle_seconds: u64,
    pub period_ms: u64,
    pub before_ms: u64,
    pub after_ms: u64,
    pub daemon_ms: u32,
    pub only: Vec<String>,
    pub timeout: Duration,
    pub memory_mb: u32,
}

/// Median, p99 (nearest rank) and max of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

/// [`Stats`] of `v` (NaNs ignored); `None` when empty. The median of an even
/// count is the mean of the two middle values; p99 is the nearest-rank
/// percentile (the max below 100 values).
pub fn stats(v: &[f64]) -> Option<Stats> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
    Some(Stats {
        n,
        median,
        p99: s[rank - 1],
        max: s[n - 1],
    })
}

/// One migration, as measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HopRecord {
    pub boot: u32,
    pub hop: u32,
    pub tout_ns: Option<i64>,
    pub outcome: Option<String>,
    /// Guest area: applied - intended, ns.
    pub residual_ns: Option<i64>,
    /// Host: `cont` returned -> guest ack seen, ms.
    pub ack_latency_ms: Option<f64>,
    /// Offset change (guest - host realtime, after minus before), ms.
    pub clock_change_ms: Option<f64>,
    pub clock_first_change_ms: Option<f64>,
    pub timerfd_cancelled: Option<bool>,
    pub sta_unsync: Option<bool>,
}

/// The idle cost of a configuration (mt_idle over a quiet window).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Idle {
    pub seconds: Option<f64>,
    pub wakeups_per_s: Option<f64>,
    pub busy_pct: Option<f64>,
    pub error: Option<String>,
}

impl Idle {
    /// From a `# MIGTIME-IDLE seconds=.. wakeups_per_s=.. busy_pct=..` line.
    pub fn parse(line: &str) -> Option<Self> {
        let m = parse_kv(line, "MIGTIME-IDLE")?;
        let f = |k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
        let i = Self {
            seconds: f("seconds"),
            wakeups_per_s: f("wakeups_per_s"),
            busy_pct: f("busy_pct"),
            error: None,
        };
        i.wakeups_per_s.map(|_| i)
    }
}

/// Everything about one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    pub config: Config,
    pub attempted: u32,
    pub hops: Vec<HopRecord>,
    pub errors: Vec<String>,
    /// |applied - intended|, µs.
    pub residual_us: Option<Stats>,
    pub ack_latency_ms: Option<Stats>,
    /// |offset change|, ms.
    pub clock_error_ms: Option<Stats>,
    /// (timerfds cancelled, runs with a RESULT).
    pub cancel_woken: (u32, u32),
    pub idle: Option<Idle>,
}

impl ConfigResult {
    fn new(config: Config) -> Self {
        Self {
            config,
            attempted: 0,
            hops: vec![],
            errors: vec![],
            residual_us: None,
            ack_latency_ms: None,
            clock_error_ms: None,
            cancel_woken: (0, 0),
            idle: None,
        }
    }

    fn summarise(&mut self) {
        let col = |f: &dyn Fn(&HopRecord) -> Option<f64>| -> Vec<f64> {
            self.hops.iter().filter_map(f).collect()
        };
        self.residual_us = stats(&col(&|h| {
            h.residual_ns.map(|r| r.unsigned_abs() as f64 / 1e3)
        }));
        self.ack_latency_ms = stats(&col(&|h| h.ack_latency_ms));
        self.clock_error_ms = stats(&col(&|h| h.clock_change_ms.map(f64::abs)));
        let res: Vec<bool> = self
            .hops
            .iter()
            .filter_map(|h| h.timerfd_cancelled)
            .collect();
        self.cancel_woken = (res.iter().filter(|&&b| b).count() as u32, res.len() as u32);
    }
}

/// The machine, for the report header.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub nproc: usize,
    pub cpu: String,
    pub mem_gib: f64,
    pub qemu: String,
    pub accel: String,
}

fn cmd_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// `model name` from /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// MemTotal from /proc/meminfo text, GiB.
pub fn mem_gib(meminfo: &str) -> f64 {
    meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

pub fn machine() -> Machine {
    let qemu = std::env::var("MIGTIME_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    Machine {
        date_utc: cmd_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
        mem_gib: mem_gib(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()),
        qemu: cmd_line(&qemu, &["--version"]),
        accel: crate::qemu::accel(),
    }
}

fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        // Three significant digits.
        let d = (-a.log10()).ceil() as usize + 2;
        format!("{v:.d$}")
    }
}

/// A cell: the value and, when the baseline has one, the ratio to it.
fn cell(v: Option<f64>, base: Option<f64>, is_base: bool) -> String {
    match (v, base) {
        (None, _) => "n/a".into(),
        (Some(v), Some(b)) if !is_base && b != 0.0 => format!("{} ({}×)", num(v), num(v / b)),
        (Some(v), _) => num(v),
    }
}

/// The markdown report.
pub fn render_markdown(m: &Machine, o: &BenchOpts, rs: &[ConfigResult]) -> String {
    let mut s = String::new();
    s.push_str("## migtime bench\n\n");
    s.push_str(&format!(
        "{}: {} CPUs ({}), {:.1} GiB RAM; {}; guests under **{}** (QEMU's emulator, no hardware virtualisation), {} MiB, \
         live migrations between two QEMU processes on this host. {} migrations per configuration \
         (chains of up to {} per boot), blackout {} ms; idle cost over a quiet {} s per configuration. \
         Median / p99 (nearest rank: the max below 100 runs) / max; in parentheses the ratio to the baseline.\n\n",
        m.date_utc,
        m.nproc,
        m.cpu,
        m.mem_gib,
        if m.qemu.is_empty() { "QEMU ?".into() } else { m.qemu.clone() },
        m.accel.to_uppercase(),
        o.memory_mb,
        o.runs,
        o.hops_per_boot,
        o.blackout_ms,
        o.idle_seconds
    ));
    s.push_str("| metric |");
    for r in rs {
        s.push_str(&format!(" {} |", r.config.title));
    }
    s.push_str("\n|---|");
    for _ in rs {
        s.push_str("---|");
    }
    s.push('\n');
    let base = rs.iter().find(|r| r.config.key == "baseline");
    type Get = fn(&ConfigResult) -> Option<f64>;
    let rows: Vec<(&str, Get)> = vec![
        (
            "step residual \\|applied − intended\\|, µs: median",
            |r| r.residual_us.map(|s| s.median),
        ),
        ("… p99", |r| r.residual_us.map(|s| s.p99)),
        ("… max", |r| r.residual_us.map(|s| s.max)),
        ("latency `cont` → guest ack, ms: median", |r| {
            r.ack_latency_ms.map(|s| s.median)
        }),
        ("… p99", |r| r.ack_latency_ms.map(|s| s.p99)),
        ("… max", |r| r.ack_latency_ms.map(|s| s.max)),
        (
            "wall-clock error after migration \\|Δ(guest − host)\\|, ms: median",
            |r| r.clock_error_ms.map(|s| s.median),
        ),
        ("… p99", |r| r.clock_error_ms.map(|s| s.p99)),
        ("… max", |r| r.clock_error_ms.map(|s| s.max)),
        ("cancel-on-set waiters woken (fraction)", |r| {
            (r.cancel_woken.1 > 0)
                .then(|| f64::from(r.cancel_woken.0) / f64::from(r.cancel_woken.1))
        }),
        ("idle: wakeups/s", |r| {
            r.idle.as_ref().and_then(|i| i.wakeups_per_s)
        }),
        ("idle: CPU busy %", |r| {
            r.idle.as_ref().and_then(|i| i.busy_pct)
        }),
    ];
    for (name, get) in rows {
        s.push_str(&format!("| {name} |"));
        let b = base.and_then(get);
        for r in rs {
            let mut c = cell(get(r), b, r.config.key == "baseline");
            if name.starts_with("cancel-on-set") {
                c = format!(
                    "{} ({}/{})",
                    get(r).map_or("n/a".into(), num),
                    r.cancel_woken.0,
                    r.cancel_woken.1
                );
            }
            s.push_str(&format!(" {c} |"));
        }
        s.push('\n');
    }
    s.push_str("| migrations measured / attempted |");
    for r in rs {
        s.push_str(&format!(
            " {}/{} |",
            r.hops
                .iter()
                .filter(|h| h.clock_change_ms.is_some())
                .count(),
            r.attempted
        ));
    }
    s.push_str("\n\n");
    s.push_str(
        "Residual and latency come from the guest ack area (written by the module, or by mt_daemon the same way); \
         the baseline has neither. Wall-clock error: median guest − host CLOCK_REALTIME offset 1–2 s after resume \
         minus the median over the last second before the source stopped (mt_clock samples paired with the host \
         clock when read; error bar ≈ a few ms). Idle: mt_idle's local timer interrupts per second and non-idle \
         CPU share over the window.\n",
    );
    s
}

/// Runs `f` with stdout and stderr sent to `log` (the simulator's progress
/// is verbose); restores them afterwards.
fn quietly<T>(log: &Path, f: impl FnOnce() -> T) -> T {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    let Ok(file) = file else { return f() };
    // SAFETY: plain fd duplication of our own stdout/stderr and a file we opened.
    let (o, e) = unsafe { (libc::dup(1), libc::dup(2)) };
    // SAFETY: `file` is open for the whole call; dup2 onto fds 1 and 2 only
    // replaces this process's stdout/stderr, saved above and restored below.
    unsafe {
        libc::dup2(file.as_raw_fd(), 1);
        libc::dup2(file.as_raw_fd(), 2);
    }
    let r = f();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: restoring the saved descriptors.
    unsafe {
        if o >= 0 {
            libc::dup2(o, 1);
            libc::close(o);
        }
        if e >= 0 {
            libc::dup2(e, 2);
            libc::close(e);
        }
    }
    r
}

fn records(ob: &Observed, boot_no: u32) -> Vec<HopRecord> {
    ob.hops
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let ack = h.ack.as_ref();
            let intended = ack.and_then(|a| a["intended_ns"].as_i64());
            let applied = ack.and_then(|a| a["applied_ns"].as_i64());
            HopRecord {
                boot: boot_no,
                hop: i as u32 + 1,
                tout_ns: h.tout_ns,
                outcome: ack.and_then(|a| a["outcome"].as_str().map(str::to_string)),
                residual_ns: intended.zip(applied).map(|(i, a)| a - i),
                ack_latency_ms: ack.and_then(|a| a["latency_ms"].as_f64()),
                clock_change_ms: h.clock.as_ref().and_then(|c| c.change_ms),
                clock_first_change_ms: h.clock.as_ref().and_then(|c| c.first_after_change_ms),
                timerfd_cancelled: h.result.as_ref().map(|r| r.timerfd_cancelled),
                sta_unsync: h.result.as_ref().map(|r| r.sta_unsync),
            }
        })
        .collect()
}

/// Runs the bench; writes OUT/bench.json and OUT/bench.md, prints the table.
pub fn bench(o: &BenchOpts) -> Result<bool> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("creating {}", o.out_dir.display()))?;
    let runs_dir = o.out_dir.join("runs");
    let _ = std::fs::remove_dir_all(&runs_dir);
    std::fs::create_dir_all(&runs_dir)?;
    let log = o.out_dir.join("bench.log");
    let _ = std::fs::remove_file(&log);
    let cfgs: Vec<Config> = configs(o.daemon_ms)
        .into_iter()
        .filter(|c| o.only.is_empty() || o.only.iter().any(|k| k == c.key))
        .collect();
    let mut rs: Vec<ConfigResult> = cfgs.iter().cloned().map(ConfigResult::new).collect();
    let hpb = o.hops_per_boot.clamp(1, 20);
    let boots = o.runs.div_ceil(hpb);
    println!(
        "bench: {} configurations x {} migrations ({} boots each, up to {hpb} migrations per boot), then {} s idle each; simulator log: {}",
        cfgs.len(),
        o.runs,
        boots,
        o.idle_seconds,
        log.display()
    );
    for b in 0..boots {
        let hops = hpb.min(o.runs - b * hpb);
        for r in rs.iter_mut() {
            let c = r.config.clone();
            let t = Instant::now();
            let guest = GuestConfig {
                kernel: o.kernel.clone(),
                initrd: o.initrd.clone(),
                append_extra: append_for(
                    &mt_clock_run(hops, o.period_ms, o.before_ms, o.after_ms),
                    "",
                    &c.append(),
                ),
                mode: c.mode,
                run_dir: runs_dir.join(format!("{}-{}", c.key, b + 1)),
                memory_mb: o.memory_mb,
                vcpus: crate::qemu::DEFAULT_VCPUS,
            };
            let sim_opts = SimOpts {
                scenario: format!("bench-{}", c.key),
                guest,
                timeout: o.timeout + Duration::from_secs(20 * u64::from(hops)),
                settings: SimSettings {
                    blackout_ms: o.blackout_ms,
                    migrations: hops,
                    ..Default::default()
                },
                ack_timeout: if c.module || c.daemon_ms.is_some() {
                    Duration::from_secs(10)
                } else {
                    Duration::from_millis(300)
                },
            };
            let ob = quietly(&log, || observe(&sim_opts));
            let recs = records(&ob, b + 1);
            r.attempted += hops;
            let got = recs.iter().filter(|h| h.clock_change_ms.is_some()).count();
            let line = |h: &HopRecord| h.clock_change_ms.map_or("?".into(), |v| format!("{v:+.1}"));
            println!(
                "  [{:>5.0} s] {:<22} boot {}/{}: {got}/{hops} migrations measured in {:.0} s; offset change ms: {}{}",
                t0.elapsed().as_secs_f64(),
                c.title,
                b + 1,
                boots,
                t.elapsed().as_secs_f64(),
                recs.iter().map(line).collect::<Vec<_>>().join(" "),
                ob.error.as_ref().map_or(String::new(), |e| format!("  [{}]", e.chars().take(160).collect::<String>()))
            );
            if let Some(e) = &ob.error {
                r.errors.push(format!("boot {}: {e}", b + 1));
            }
            r.hops.extend(recs);
        }
    }
    if o.idle_seconds > 0 {
        for r in rs.iter_mut() {
            let c = r.config.clone();
            let t = Instant::now();
            let run_dir = runs_dir.join(format!("{}-idle", c.key));
            let _ = std::fs::remove_dir_all(&run_dir);
            let guest = GuestConfig {
                kernel: o.kernel.clone(),
                initrd: o.initrd.clone(),
                append_extra: append_for(
                    &format!("mt_idle:seconds={}", o.idle_seconds),
                    "",
                    &c.append(),
                ),
                mode: c.mode,
                run_dir: run_dir.clone(),
                memory_mb: o.memory_mb,
                vcpus: crate::qemu::DEFAULT_VCPUS,
            };
            let bo = BootOpts {
                guest,
                timeout: o.timeout + Duration::from_secs(o.idle_seconds),
                page_file: None,
                bad_page: None,
                expect_panic: None,
            };
            let rep = quietly(&log, || boot(&bo));
            let text =
                std::fs::read_to_string(run_dir.join("results-guest.ktap")).unwrap_or_default();
            let mut idle = text.lines().find_map(Idle::parse).unwrap_or_default();
            match rep {
                Ok(rep) if !rep.ok => idle.error = Some(rep.problems.join("; ")),
                Err(e) => idle.error = Some(format!("{e:#}")),
                _ => {}
            }
            println!(
                "  [{:>5.0} s] {:<22} idle {} s: {} wakeups/s, {} % busy ({:.0} s){}",
                t0.elapsed().as_secs_f64(),
                c.title,
                o.idle_seconds,
                idle.wakeups_per_s.map_or("?".into(), |v| format!("{v:.1}")),
                idle.busy_pct.map_or("?".into(), |v| format!("{v:.2}")),
                t.elapsed().as_secs_f64(),
                idle.error.as_ref().map_or(String::new(), |e| format!(
                    "  [{}]",
                    e.chars().take(160).collect::<String>()
                ))
            );
            r.idle = Some(idle);
        }
    }
    for r in rs.iter_mut() {
        r.summarise();
    }
    let m = machine();
    let md = render_markdown(&m, o, &rs);
    let json = serde_json::json!({
        "machine": m,
        "wall_time_s": t0.elapsed().as_secs_f64(),
        "options": {
            "runs": o.runs, "hops_per_boot": hpb, "blackout_ms": o.blackout_ms, "idle_seconds": o.idle_seconds,
            "period_ms": o.period_ms, "before_ms": o.before_ms, "after_ms": o.after_ms, "daemon_ms": o.daemon_ms,
            "memory_mb": o.memory_mb,
        },
        "configs": rs,
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
        t0.elapsed().as_secs_f64(),
        o.out_dir.join("bench.md").display(),
        o.out_dir.join("bench.json").display()
    );
    // Numbers, not tests: success means every configuration produced numbers.
    Ok(rs.iter().all(|r| r.clock_error_ms.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_p99_max() {
        assert_eq!(stats(&[]), None);
        assert_eq!(
            stats(&[5.0]),
            Some(Stats {
                n: 1,
                median: 5.0,
                p99: 5.0,
                max: 5.0
            })
        );
        let s = stats(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.p99, s.max), (2.5, 10.0, 10.0));
        // 1..=200: p99 by nearest rank is the 198th value.
        let v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let s = stats(&v).unwrap();
        assert_eq!((s.n, s.median, s.p99, s.max), (200, 100.5, 198.0, 200.0));
        let s = stats(&[f64::NAN, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median), (3, 2.0));
    }

    #[test]
    fn idle_marker_parsing() {
        let i =
            Idle::parse("    # MIGTIME-IDLE seconds=60.002 wakeups_per_s=101.25 busy_pct=0.812")
                .unwrap();
        assert_eq!(
            (i.seconds, i.wakeups_per_s, i.busy_pct),
            (Some(60.002), Some(101.25), Some(0.812))
        );
        assert!(
            Idle::parse("# MIGTIME-IDLE 60").is_none(),
            "/init's own idle marker is not a result"
        );
        assert!(Idle::parse("# MIGTIME-IDLE seconds=1").is_none());
    }

    #[test]
    fn machine_text_parsing() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags : x\n"),
            "AMD EPYC 7B13"
        );
        assert_eq!(cpu_model(""), "unknown CPU");
        assert!((mem_gib("MemTotal:       24683988 kB\n") - 23.54).abs() < 0.01);
    }

    #[test]
    fn config_command_lines() {
        let c = configs(100);
        assert_eq!(
            c.iter().map(|c| c.key).collect::<Vec<_>>(),
            ["baseline", "polling", "doorbell", "daemon"]
        );
        assert_eq!(c[0].append(), "mt.load=0 mt.kunit=0");
        assert_eq!(c[2].append(), "mt.load=1 mt.kunit=0");
        assert_eq!(c[2].mode, Mode::Doorbell);
        assert_eq!(c[3].append(), "mt.load=0 mt.kunit=0 mt.daemon=100");
    }

    fn result(c: Config, hops: Vec<HopRecord>, idle: f64) -> ConfigResult {
        let mut r = ConfigResult::new(c);
        r.attempted = hops.len() as u32;
        r.hops = hops;
        r.idle = Some(Idle {
            seconds: Some(60.0),
            wakeups_per_s: Some(idle),
            busy_pct: Some(0.5),
            error: None,
        });
        r.summarise();
        r
    }

    #[test]
    fn markdown_has_absolute_values_and_ratios() {
        let c = configs(100);
        let base = result(
            c[0].clone(),
            vec![
                HopRecord {
                    clock_change_ms: Some(-1000.0),
                    timerfd_cancelled: Some(false),
                    ..Default::default()
                },
                HopRecord {
                    clock_change_ms: Some(-1200.0),
                    timerfd_cancelled: Some(false),
                    ..Default::default()
                },
            ],
            100.0,
        );
        let pol = result(
            c[1].clone(),
            vec![
                HopRecord {
                    clock_change_ms: Some(-1.0),
                    residual_ns: Some(-2000),
                    ack_latency_ms: Some(50.0),
                    timerfd_cancelled: Some(true),
                    ..Default::default()
                },
                HopRecord {
                    clock_change_ms: Some(3.0),
                    residual_ns: Some(4000),
                    ack_latency_ms: Some(70.0),
                    timerfd_cancelled: Some(true),
                    ..Default::default()
                },
            ],
            110.0,
        );
        assert_eq!(
            pol.residual_us,
            Some(Stats {
                n: 2,
                median: 3.0,
                p99: 4.0,
                max: 4.0
            })
        );
        assert_eq!(pol.cancel_woken, (2, 2));
        let o = BenchOpts {
            kernel: "k".into(),
            initrd: "i".into(),
            out_dir: "o".into(),
            runs: 2,
            hops_per_boot: 2,
            blackout_ms: 1000,
            idle_seconds: 60,
            period_ms: 20,
            before_ms: 1000,
            after_ms: 2500,
            daemon_ms: 100,
            only: vec![],
            timeout: Duration::from_secs(1),
            memory_mb: 256,
        };
        let m = Machine {
            date_utc: "2030-01-01 00:00 UTC".into(),
            nproc: 2,
            cpu: "CPU X".into(),
            mem_gib: 8.0,
            qemu: "QEMU emulator version 10.0.2".into(),
            accel: "tcg".into(),
        };
        let md = render_markdown(&m, &o, &[base, pol]);
        assert!(md.contains("2030-01-01 00:00 UTC: 2 CPUs (CPU X), 8.0 GiB RAM; QEMU emulator version 10.0.2; guests under **TCG**"));
        let line = |start: &str| {
            md.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no row {start}"))
                .to_string()
        };
        assert_eq!(
            line("| metric |"),
            "| metric | baseline (no module) | migtime polling |"
        );
        // |change| median: baseline 1100, polling 2 -> ratio 0.0018.
        assert_eq!(line("| wall-clock error"), "| wall-clock error after migration \\|Δ(guest − host)\\|, ms: median | 1100 | 2.00 (0.00182×) |");
        assert_eq!(
            line("| step residual"),
            "| step residual \\|applied − intended\\|, µs: median | n/a | 3.00 |"
        );
        assert_eq!(
            line("| cancel-on-set"),
            "| cancel-on-set waiters woken (fraction) | 0 (0/2) | 1.00 (2/2) |"
        );
        assert_eq!(
            (
                num(0.0015),
                num(0.000812),
                num(-0.05),
                num(12.34),
                num(1234.0)
            ),
            (
                "0.00150".into(),
                "0.000812".into(),
                "-0.05".into(),
                "12.3".into(),
                "1234".into()
            )
        );
        assert_eq!(
            line("| idle: wakeups/s"),
            "| idle: wakeups/s | 100 | 110 (1.10×) |"
        );
        assert_eq!(
            line("| migrations measured"),
            "| migrations measured / attempted | 2/2 | 2/2 |"
        );
        for l in md.lines().filter(|l| l.starts_with('|')) {
            assert_eq!(
                l.replace("\\|", "").matches('|').count(),
                4,
                "3 columns in {l}"
            );
        }
    }
}
