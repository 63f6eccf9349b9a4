// SPDX-License-Identifier: GPL-2.0

//! The Debian image scenarios (`image-*`, `check --suite image`): the image of
//! `scripts/build-debian-image` booted with systemd on the patched QEMU's `-device
//! migtime`, live-migrated (and restored from a file) by the chain like any device row.
//! The guest side is the image's test-only `migtime-test-report` (tests/image/): it prints
//! what the guest's own tools say as `# fact SECTION| LINE` on the results channel and
//! asserts nothing; [`check_facts`] turns those facts into host checks, each counted like
//! a KTAP leaf result: systemd running, the module autoloaded by udev through the
//! package's kernel check, the companion under its unit's sandbox, the daemon
//! synchronised; after each migration the module's step, exactly one companion action
//! (its journal entries: the unit's uid and capabilities), and what the daemon reports.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::suite::scenario::Scenario;
use crate::vm::image::{Daemon, Image};
use crate::vm::qemu::GuestConfig;

/// Guest memory of an image, MiB: systemd and a time daemon.
pub const MEMORY_MB: u32 = 512;

/// Where the NTP server listens: the images' daemons ask 10.0.2.2:123, which QEMU's user
/// network forwards to the host's loopback.
pub const NTP_ADDR: &str = "127.0.0.1:123";

/// `|offset|` a daemon may report once re-synchronised, seconds: the probe's 5 ms.
const SYNCED_S: f64 = 0.005;

/// The image folders of `check` (`--image-chrony`, `--image-timesyncd`).
#[derive(Clone, Debug, Default)]
pub struct ImageDirs {
    pub chrony: Option<PathBuf>,
    pub timesyncd: Option<PathBuf>,
}

impl ImageDirs {
    /// The image of `d`.
    pub fn get(&self, d: Daemon) -> Result<Image> {
        let dir = match d {
            Daemon::Chrony => &self.chrony,
            Daemon::Timesyncd => &self.timesyncd,
        };
        let Some(dir) = dir else {
            bail!(
                "the {} image scenario needs --image-{} DIR (scripts/build-debian-image --daemon {})",
                d.name(),
                d.name(),
                d.name()
            );
        };
        Image::open(dir)
    }
}

/// The guest of image row `sc` from the suite's `base`: the image's own kernel, initrd
/// and command line (`mt.hops=N`: the migrations its report waits for), a fresh qcow2
/// overlay in the run folder as its disk, the image's memory.
pub fn guest(img: &Image, sc: &Scenario, base: GuestConfig, hops: u32) -> Result<GuestConfig> {
    let mut g = base;
    g.kernel = img.kernel();
    g.initrd = img.initrd();
    g.append_extra = format!("{} mt.hops={hops}", img.cmdline()?);
    g.devices.disk = Some(img.overlay(&g.run_dir)?);
    g.memory_mb = g.memory_mb.max(MEMORY_MB);
    g.vcpus = sc.vcpus_with(g.vcpus);
    Ok(g)
}

/// The facts of `section` (`boot`, `hop1`, ...), in order, without the commands.
pub fn facts<'a>(text: &'a str, section: &str) -> Vec<&'a str> {
    let tag = format!("# fact {section}| ");
    text.lines()
        .filter_map(|l| l.trim_end().strip_prefix(tag.as_str()))
        .filter(|l| !l.starts_with("$ "))
        .collect()
}

fn has(f: &[&str], pred: impl Fn(&str) -> bool) -> bool {
    f.iter().any(|l| pred(l.trim()))
}

/// Reads the run's concatenated results (`results.ktap`) and checks its facts.
pub fn check_run(d: Daemon, hops: u32, dir: &Path) -> Vec<(bool, String)> {
    let p = dir.join("results.ktap");
    match std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display())) {
        Ok(t) => check_facts(d, hops, &t),
        Err(e) => vec![(false, format!("image facts: {e:#}"))],
    }
}

/// The host checks on the facts of an image run with `hops` migrations.
pub fn check_facts(d: Daemon, hops: u32, text: &str) -> Vec<(bool, String)> {
    let boot = facts(text, "boot");
    let user = d.companion_user();
    let mut v = vec![
        (
            has(&boot, |l| l == "running"),
            "image: systemd reached `running` (every unit started, none failed)".to_string(),
        ),
        (
            has(&boot, |l| l == "0x1b36:0x0016 driver=migtime")
                && has(&boot, |l| l.starts_with("migtime "))
                && has(&boot, |l| l == "no modules-load entry for migtime"),
            "image: udev autoloaded migtime for -device migtime (1b36:0016 bound, no modules-load entry)".into(),
        ),
        (
            has(&boot, |l| l.starts_with("migtime: running kernel ") && l.contains(" matches the module's")),
            "image: the load went through the package's kernel check, which accepted this build".into(),
        ),
        (
            sandboxed(&boot, user),
            format!("image: migtime-companion.service active as {user}, CAP_SYS_TIME only, /dev/migtime open"),
        ),
        daemon_synced(d, &boot, "before the migration"),
    ];
    let uid = uid_of(&boot, user);
    for k in 1..=hops {
        let f = facts(text, &format!("hop{k}"));
        v.push((
            has(&f, |l| {
                l.contains(&format!("migtime: event {k} seq={k} stepped "))
            }),
            format!("image: hop {k}: the module stepped the clock (event {k}, migration_seq {k})"),
        ));
        let (ok, what) = acted_once(d, &f, k, uid);
        v.push((ok && sandboxed(&f, user), format!("image: hop {k}: {what}")));
        let (ok, what) = daemon_synced(d, &f, "after the step");
        v.push((ok, format!("hop {k}: {what}")));
        if d == Daemon::Timesyncd {
            let n = f
                .iter()
                .filter(|l| l.contains("System time changed. Resyncing."))
                .count();
            v.push((
                n == k as usize,
                format!("image: hop {k}: systemd-timesyncd saw the step and re-synced at once ({n} \"System time changed\" in all)"),
            ));
        }
    }
    v
}

/// The companion's process: the unit active, as `user`, with CAP_SYS_TIME alone, holding
/// /dev/migtime, never restarted.
fn sandboxed(f: &[&str], user: &str) -> bool {
    has(f, |l| l == "ActiveState=active")
        && has(f, |l| l == format!("User={user}"))
        && has(f, |l| l == "NRestarts=0")
        && has(f, |l| {
            l.split_whitespace().eq(["CapEff:", "0000000002000000"])
        })
        && has(f, |l| l == "/dev/migtime")
}

/// The uid of `user` from the `getent passwd` facts.
fn uid_of(f: &[&str], user: &str) -> Option<u64> {
    f.iter().find_map(|l| {
        let p: Vec<&str> = l.trim().split(':').collect();
        (p.len() >= 3 && p[0] == user).then(|| p[2].parse().ok())?
    })
}

/// The unit whose journal entries are the companion's.
const UNIT: &str = "migtime-companion.service";

/// The companion's own journal entries (JSON lines with who wrote them; `journalctl -u`
/// also gives systemd's messages about the unit, which are not the companion's).
fn journal(f: &[&str]) -> Vec<Value> {
    f.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|e| e.get("MESSAGE").is_some() && e["_SYSTEMD_UNIT"].as_str() == Some(UNIT))
        .collect()
}

/// Exactly `k` actions after `k` migrations, the `k`-th on migration_seq `k`, every
/// entry of the companion written by its unit under `uid` with CAP_SYS_TIME only; for
/// chrony also `k` answered re-sync requests.
fn acted_once(d: Daemon, f: &[&str], k: u32, uid: Option<u64>) -> (bool, String) {
    let j = journal(f);
    let msg = |e: &Value| message(e["MESSAGE"].as_str().unwrap_or_default()).to_string();
    let actions: Vec<String> = j
        .iter()
        .map(msg)
        .filter(|m| m.starts_with("action "))
        .collect();
    let want = format!("action {k}: migration_seq={k}: migtime event {k} ");
    let last_ok = actions.last().is_some_and(|m| m.starts_with(&want));
    let uid_s = uid.map(|u| u.to_string());
    let who_ok = !j.is_empty()
        && j.iter().all(|e| {
            e["_UID"].as_str() == uid_s.as_deref()
                && e["_CAP_EFFECTIVE"].as_str() == Some("2000000")
        });
    let resyncs = j
        .iter()
        .map(msg)
        .filter(|m| m.contains(": chronyd: reset sources") && m.contains("200 OK"))
        .count();
    let chrony_ok = d != Daemon::Chrony || resyncs == k as usize;
    let ok = actions.len() == k as usize && last_ok && who_ok && chrony_ok;
    let what = format!(
        "the companion acted once ({} actions after {k} migrations, the last on migration_seq {k}: {last_ok}), \
         every journal entry from its unit as uid {} with CAP_SYS_TIME only: {who_ok}{}",
        actions.len(),
        uid_s.as_deref().unwrap_or("?"),
        if d == Daemon::Chrony { format!(", chronyd answered {resyncs} re-sync requests") } else { String::new() }
    );
    (ok, what)
}

/// A companion log line without its `migtime-companion[UPTIME]: LEVEL: ` prefix.
fn message(m: &str) -> &str {
    let t = m.find("]: ").map_or(m, |i| &m[i + 3..]);
    ["info: ", "warn: ", "error: ", "debug: ", "trace: "]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t)
}

/// A signed duration as timedatectl prints it (`+1.234ms`, `-29us`, `+1.5s`), seconds.
pub fn timespan_s(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "min" => 60.0,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// The daemon's own report: synchronised to 10.0.2.2 within [`SYNCED_S`].
fn daemon_synced(d: Daemon, f: &[&str], when: &str) -> (bool, String) {
    let field = |name: &str| {
        f.iter().rev().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    match d {
        Daemon::Chrony => {
            let off =
                field("System time").and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
            let ok = field("Leap status").as_deref() == Some("Normal")
                && field("Reference ID").is_some_and(|r| r.ends_with("(10.0.2.2)"))
                && off.is_some_and(|o| o < SYNCED_S);
            (ok, format!("image: chronyc tracking {when}: Leap status Normal, reference 10.0.2.2, system time off by {off:?} s (< {SYNCED_S})"))
        }
        Daemon::Timesyncd => {
            // One SNTP exchange, no filter: its offset is only as good as half its round
            // trip (tens of ms under TCG right after a resume).
            let off = field("Offset").and_then(|v| timespan_s(&v));
            let delay = field("Delay").and_then(|v| timespan_s(&v)).unwrap_or(0.0);
            let bound = SYNCED_S + delay / 2.0;
            let ok = field("Server").is_some_and(|s| s.starts_with("10.0.2.2"))
                && field("Leap").as_deref() == Some("normal")
                && off.is_some_and(|o| o.abs() < bound);
            (ok, format!("image: timedatectl timesync-status {when}: server 10.0.2.2, leap normal, offset {off:?} s (< {SYNCED_S} s + half its {delay} s round trip)"))
        }
    }
}
