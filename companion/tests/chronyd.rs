// SPDX-License-Identifier: GPL-2.0

//! The companion against a real chronyd 4.3 (Debian bookworm's, run with `-x`: it never
//! touches the host's clock) when `MIGTIME_CHRONY_ROOT` points at an unpacked `chrony` package
//! (`scripts/fetch-chrony` prints it). Without the variable each test says so and passes.
//! Timeouts below are liveness limits only.

mod common;

use common::*;
use migtime_ntp_sim::NtpSim;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chronyd's log line when it decides to step (with `-x` the step itself fails).
const STEP: &str = "Could not step system clock";

/// A chronyd in its own 0700 directory, with its command socket there.
struct RealChronyd {
    root: PathBuf,
    run: PathBuf,
    child: Child,
}

impl Drop for RealChronyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.run);
    }
}

impl RealChronyd {
    /// Starts chronyd with `conf` (the command socket, pid file and user lines are added).
    fn start(root: &Path, name: &str, conf: &str) -> Self {
        let run = std::env::temp_dir().join(format!(
            "migtime-companion-chronyd-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).unwrap();
        // chronyd refuses a command socket in a directory others can enter.
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        let sock = run.join("chronyd.sock");
        fs::write(
            run.join("chrony.conf"),
            format!(
                "{conf}bindcmdaddress {}\ncmdport 0\nport 0\npidfile {}/chronyd.pid\nuser root\n",
                sock.display(),
                run.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(run.join("chronyd.log")).unwrap();
        let child = Command::new(root.join("usr/sbin/chronyd"))
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(run.join("chrony.conf"))
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + LIVENESS;
        while !sock.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            root: root.to_path_buf(),
            run,
            child,
        }
    }

    /// The companion's options for this chronyd.
    fn args(&self) -> Vec<String> {
        [
            "--chronyc",
            self.root.join("usr/bin/chronyc").to_str().unwrap(),
            "--chrony-socket",
            self.run.join("chronyd.sock").to_str().unwrap(),
            "--chrony-conf",
            self.run.join("chrony.conf").to_str().unwrap(),
            "--chrony",
            "always",
        ]
        .map(str::to_string)
        .to_vec()
    }

    /// Lines of chronyd's log containing `pat`.
    fn count(&self, pat: &str) -> usize {
        fs::read_to_string(self.run.join("chronyd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(pat))
            .count()
    }

    /// Waits until chronyd's log has more than `n` lines containing `pat`.
    fn wait_for_more(&self, pat: &str, n: usize) -> bool {
        let end = Instant::now() + LIVENESS;
        while Instant::now() < end {
            if self.count(pat) > n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

fn chrony_root() -> Option<PathBuf> {
    let r = std::env::var_os("MIGTIME_CHRONY_ROOT").map(PathBuf::from);
    if r.is_none() {
        eprintln!("MIGTIME_CHRONY_ROOT not set: real chronyd not tried");
    }
    r
}

/// The companion's chronyc line is accepted (`200 OK` three times).
#[test]
fn real_chronyd_accepts_the_commands() {
    let Some(root) = chrony_root() else { return };
    let c = RealChronyd::start(
        &root,
        "accepts",
        "server 127.0.0.1 port 9 iburst minpoll 4 maxpoll 4\nmakestep 1 3\n",
    );
    let args = c.args();
    let mut extra: Vec<&str> = args.iter().map(String::as_str).collect();
    extra.push("--no-migtime");
    let mut f = Fixture::new("realchrony", false, &extra);
    f.expect("VMClock: opened");
    f.set_marker(4, 101);
    let l = f.expect("chronyd: reset sources; makestep 0.1 1; burst 4/4");
    assert!(l.ends_with("-> 200 OK | 200 OK | 200 OK"), "{l}");
}

/// An admin's `makestep 1 -1` (step whenever the error is over 1 s) survives the companion's
/// `makestep 0.1 1`: after chronyd's next clock update it is given back, so a later 3 s error
/// is stepped, not slewed. chronyd polls a simulated server every 0.25 s.
#[test]
fn admins_makestep_is_given_back_after_the_resync() {
    let Some(root) = chrony_root() else { return };
    let sim = NtpSim::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let c = RealChronyd::start(
        &root,
        "restore",
        &format!(
            "server 127.0.0.1 port {} iburst minpoll -2 maxpoll -2\nmakestep 1 -1\n",
            sim.addr().port()
        ),
    );
    let args = c.args();
    let mut extra: Vec<&str> = args.iter().map(String::as_str).collect();
    extra.push("--no-migtime");
    let mut f = Fixture::new("restore", false, &extra);
    f.expect("VMClock: opened");
    assert!(
        c.wait_for_more("Selected source", 0),
        "chronyd never synchronised"
    );
    f.set_marker(4, 101);
    f.expect("chronyd: `makestep 1 -1' (from ");
    f.expect("chronyd: reset sources; makestep 0.1 1; burst 4/4 -> 200 OK | 200 OK | 200 OK");
    let l = f.expect("the admin's makestep given back");
    assert!(l.contains("makestep 1 -1 -> 200 OK"), "{l}");
    assert!(l.contains("chronyd made a clock update"), "{l}");
    // The server's clock jumps by 3 s: with the admin's setting back, chronyd steps.
    let steps = c.count(STEP);
    sim.set(3_000_000_000, 0.0);
    assert!(
        c.wait_for_more(STEP, steps),
        "chronyd did not step a 3 s error: its makestep 1 -1 was not given back"
    );
}
