// SPDX-License-Identifier: GPL-2.0

//! The companion against a real chronyd 4.3 (Debian bookworm's, run with `-x`: it never
//! touches the host's clock) when `MIGTIME_CHRONY_ROOT` points at an unpacked `chrony` package
//! (`scripts/fetch-chrony` prints it). Without the variable each test says so and passes.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Against a real chronyd 4.3 (Debian bookworm's, run with `-x`: it never touches the host's
/// clock) when `MIGTIME_CHRONY_ROOT` points at an unpacked `chrony` package
/// (`apt-get download chrony && dpkg -x chrony_*.deb DIR`): the companion's chronyc line is
/// accepted (`200 OK` three times). Without the variable the test says so and passes.
#[test]
fn real_chronyd_accepts_the_commands() {
    let Some(root) = std::env::var_os("MIGTIME_CHRONY_ROOT").map(PathBuf::from) else {
        eprintln!("MIGTIME_CHRONY_ROOT not set: real chronyd not tried");
        return;
    };
    let run =
        std::env::temp_dir().join(format!("migtime-companion-chronyd-{}", std::process::id()));
    let _ = fs::remove_dir_all(&run);
    fs::create_dir_all(&run).unwrap();
    // chronyd refuses a command socket in a directory others can enter.
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
    let sock = run.join("chronyd.sock");
    fs::write(
        run.join("chrony.conf"),
        format!(
            "server 127.0.0.1 port 9 iburst minpoll 4 maxpoll 4\nmakestep 1 3\nbindcmdaddress {}\ncmdport 0\nport 0\npidfile {}/chronyd.pid\nuser root\n",
            sock.display(),
            run.display()
        ),
    )
    .unwrap();
    let mut chronyd = Command::new(root.join("usr/sbin/chronyd"))
        .arg("-x")
        .arg("-d")
        .arg("-u")
        .arg("root")
        .arg("-f")
        .arg(run.join("chrony.conf"))
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + LIVENESS;
    while !sock.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut f = Fixture::new(
        "realchrony",
        false,
        &[
            "--no-migtime",
            "--chronyc",
            root.join("usr/bin/chronyc").to_str().unwrap(),
            "--chrony-socket",
            sock.to_str().unwrap(),
            "--chrony",
            "always",
        ],
    );
    f.expect("VMClock: opened");
    f.set_marker(4, 101);
    let l = f.expect("chronyd: reset sources; makestep 0.1 1; burst 4/4");
    let _ = chronyd.kill();
    let _ = chronyd.wait();
    let _ = fs::remove_dir_all(&run);
    assert!(l.ends_with("-> 200 OK | 200 OK | 200 OK"), "{l}");
}
