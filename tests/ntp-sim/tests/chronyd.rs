// SPDX-License-Identifier: GPL-2.0

//! The server against a real client: Debian bookworm's chronyd 4.3 in `-Q` mode (measure the
//! offset, print it, never set the clock), when `MIGTIME_CHRONY_ROOT` points at an unpacked
//! `chrony` package (`apt-get download chrony && dpkg -x chrony_*.deb DIR`). Without the
//! variable the test says so and passes.

use migtime_ntp_sim::NtpSim;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// chronyd's measured offset of the local clock against the server, s ("wrong by X seconds":
/// X > 0 means the local clock is behind the server).
fn chronyd_q(chronyd: &Path, dir: &Path, port: u16) -> f64 {
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server 127.0.0.1 port {port} iburst minpoll 4 maxpoll 4\npidfile {}/chronyd.pid\ncmdport 0\nport 0\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(chronyd)
        .args(["-Q", "-u", "root", "-t", "30", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let w = text
        .split("System clock wrong by ")
        .nth(1)
        .unwrap_or_else(|| panic!("no offset from chronyd -Q:\n{text}"));
    w.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn chronyd_sees_the_simulated_offset_and_its_switch() {
    let Some(root) = std::env::var_os("MIGTIME_CHRONY_ROOT").map(PathBuf::from) else {
        eprintln!("MIGTIME_CHRONY_ROOT not set: real chronyd not tried");
        return;
    };
    let chronyd = root.join("usr/sbin/chronyd");
    let dir = std::env::temp_dir().join(format!("migtime-ntp-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sim = NtpSim::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = sim.addr().port();
    // Correctness bound, not performance: the loopback round trip is microseconds, so 5 ms
    // tells the right offset from a wrong sign, a missing switch or a unit error.
    let tol = 0.005;
    sim.set(500_000_000, 0.0);
    let a = chronyd_q(&chronyd, &dir, port);
    assert!(
        (a - 0.5).abs() < tol,
        "source host +0.5 s: chronyd measured {a}"
    );
    sim.set(-250_000_000, 40.0);
    let b = chronyd_q(&chronyd, &dir, port);
    assert!(
        (b + 0.25).abs() < tol,
        "destination host -0.25 s: chronyd measured {b}"
    );
    assert!(sim.served() >= 2, "served {}", sim.served());
    let _ = std::fs::remove_dir_all(&dir);
}
