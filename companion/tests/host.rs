// SPDX-License-Identifier: GPL-2.0

//! The real `migtime-companion` binary on the host, against stand-ins for its devices:
//! a regular file holding a VMClock page (mmap and pread work on it as on `/dev/vmclock0`),
//! a FIFO for `/dev/migtime` (64-byte records; EOF when the writer goes, like ENODEV), and a
//! fake `chronyc` that appends its arguments to a file. The kernel clock actions are disabled
//! (`--no-clock-actions`): this is a shared host. Timeouts below are liveness limits only.

mod common;

use common::*;
use migtime_companion::vmclock::VMCLOCK_FLAG_NOTIFICATION_PRESENT;
use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn vmclock_alone_acts_once_per_marker_change() {
    let mut f = Fixture::new("vmc", false, &["--no-migtime"]);
    f.expect("VMClock: opened");
    f.set_marker(4, 101);
    f.expect("action 1: migration_seq=none: VMClock disruption marker=0x65 (no /dev/migtime: acting at once)");
    f.expect("chronyd: reset sources; makestep 0.1 1; burst 4/4");
    f.expect("--on-event ran");
    f.set_marker(6, 102);
    f.expect("action 2: migration_seq=none: VMClock disruption marker=0x66");
    f.expect("--on-event ran");
    assert_eq!(
        f.hook_log(),
        ["vmclock seq= marker=101", "vmclock seq= marker=102"]
    );
    assert_eq!(
        f.chronyc_log(),
        [
            format!(
                "-n -m -h {}/chronyd.sock reset sources makestep 0.1 1 burst 4/4",
                f.dir.display()
            ),
            format!(
                "-n -m -h {}/chronyd.sock reset sources makestep 0.1 1 burst 4/4",
                f.dir.display()
            ),
        ]
    );
}

/// The notification path: the page sets `VMCLOCK_FLAG_NOTIFICATION_PRESENT`, so the companion
/// poll()s the descriptor and re-reads with pread() on POLLIN; the periodic read period is a
/// minute, so no timed read can be what reacts within the liveness limit. A regular file is
/// always readable: this checks the wiring (POLLIN -> pread -> one action per change) and that
/// an always-readable descriptor neither re-acts nor spins, not that a real hypervisor
/// notification wakes the companion (QEMU 10.0.2 sends none).
#[test]
fn vmclock_notifications_act_once_per_marker_change() {
    let mut f = Fixture::with_page(
        "notify",
        false,
        &[
            "--no-migtime",
            "--vmclock-poll-ms=60000",
            "--log-level=trace",
        ],
        &vmclock_page_flags(2, 100, VMCLOCK_FLAG_NOTIFICATION_PRESENT),
    );
    let l = f.expect("VMClock: opened");
    assert!(l.contains("notifications: poll"), "{l}");
    // CPU time over ~1 s with an unchanged page behind an always-readable descriptor: a report
    // (the host may be loaded), not an assertion; the wakeup rate is checked below.
    let pid = f.child.id();
    let (cpu0, t0) = (cpu_ms(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let (cpu, wall) = (cpu_ms(pid) - cpu0, t0.elapsed().as_millis());
    eprintln!(
        "companion CPU time over {wall} ms of an unchanged page (poll always readable): {cpu} ms"
    );

    f.set_marker(4, 101);
    f.expect("action 1: migration_seq=none: VMClock disruption marker=0x65 (no /dev/migtime: acting at once)");
    f.expect("chronyd: reset sources; makestep 0.1 1; burst 4/4");
    f.expect("--on-event ran");
    // The descriptor stays readable: the unchanged page is read again, and not acted on.
    f.expect(QUIET_WAKEUP);
    f.expect(QUIET_WAKEUP);
    f.set_marker(6, 102);
    f.expect("action 2: migration_seq=none: VMClock disruption marker=0x66");
    f.expect("--on-event ran");
    f.expect(QUIET_WAKEUP);
    f.expect(QUIET_WAKEUP);
    assert!(
        !f.seen.iter().any(|l| l.contains("action 3")),
        "acted more than twice:\n{}",
        f.seen.join("\n")
    );
    assert_eq!(
        f.hook_log(),
        ["vmclock seq= marker=101", "vmclock seq= marker=102"]
    );
    assert_eq!(f.chronyc_log().len(), 2);
    // Quiet wakeups are rate-limited (at most one per 250 ms): count them per second of the
    // companion's own log clock, which a loaded host can only make sparser.
    let mut times: Vec<u64> = f
        .seen
        .iter()
        .filter(|l| l.contains(QUIET_WAKEUP))
        .filter_map(|l| log_ms(l))
        .collect();
    times.sort_unstable();
    let densest = (0..times.len())
        .map(|i| times[i..].partition_point(|&u| u < times[i] + 1000))
        .max()
        .unwrap_or(0);
    eprintln!(
        "quiet poll wakeups: {} in all, at most {densest} in any 1 s",
        times.len()
    );
    assert!(densest <= 10, "{densest} quiet poll wakeups within 1 s");
}

#[test]
fn migtime_and_vmclock_for_one_migration_act_once() {
    // A long window, so that the event always arrives within it however slow the host is.
    let mut f = Fixture::new("both", true, &["--window-ms=10000"]);
    let mut w = f.writer();
    f.expect("migtime: opened");
    f.expect("VMClock: opened");
    // Marker first (QEMU's post_load), then the module's event.
    f.set_marker(4, 101);
    f.expect("waiting for the migtime event");
    w.write_all(&event(1, 1)).unwrap();
    f.expect("action 1: migration_seq=1: migtime event 1 outcome=stepped");
    f.expect("--on-event ran");
    // Event first, then the marker.
    w.write_all(&event(2, 2)).unwrap();
    f.expect("action 2: migration_seq=2: migtime event 2");
    f.expect("--on-event ran");
    f.set_marker(6, 102);
    f.expect("duplicate: this migration was already acted on");
    assert_eq!(
        f.hook_log(),
        ["migtime seq=1 marker=101", "migtime seq=2 marker="]
    );
    assert_eq!(f.chronyc_log().len(), 2);
}

#[test]
fn marker_without_event_acts_alone_after_the_window() {
    let mut f = Fixture::new("window", true, &["--window-ms=300"]);
    let _w = f.writer();
    f.expect("migtime: opened");
    f.expect("VMClock: opened");
    f.set_marker(4, 101);
    f.expect("waiting for the migtime event");
    f.expect("action 1: migration_seq=none: VMClock disruption marker=0x65, no migtime event within 300 ms");
    f.expect("--on-event ran");
    assert_eq!(f.hook_log(), ["vmclock seq= marker=101"]);
}

/// The VMClock signal wins the race: the companion acts alone when its wait runs out, then the
/// module steps (a module polling every 5 s). The step must reach chronyd: a second chronyc
/// run, a re-sync, not a dropped duplicate.
#[test]
fn kernel_step_after_acting_alone_reaches_chronyd() {
    let mut f = Fixture::new("race", true, &["--window-ms=1000"]);
    let mut w = f.writer();
    f.expect("migtime: opened");
    f.expect("VMClock: opened");
    f.set_marker(4, 101);
    f.expect("action 1: migration_seq=none: VMClock disruption marker=0x65, no migtime event");
    f.expect("--on-event ran");
    w.write_all(&event(1, 1)).unwrap();
    let l = f.expect("action 2: migration_seq=1: migtime event 1 outcome=stepped");
    assert!(l.contains("re-sync after the kernel's step"), "{l}");
    f.expect("--on-event ran");
    assert_eq!(
        f.hook_log(),
        ["vmclock seq= marker=101", "migtime seq=1 marker=101"]
    );
    assert_eq!(f.chronyc_log().len(), 2);
}

/// A storm of refused pages: one reaction (NTP reset, nudge, chronyc) per hold-off, every
/// step still acted on.
#[test]
fn refusal_storm_gets_one_reaction() {
    let mut f = Fixture::new("storm", true, &["--no-vmclock"]);
    let mut w = f.writer();
    f.expect("migtime: opened");
    for i in 1..=20 {
        w.write_all(&event_with(i, i, 3, 0)).unwrap();
    }
    f.expect("action 1: migration_seq=1: migtime event 1 outcome=refused-seq-backwards");
    f.expect(
        "migration_seq=2: migtime event 2 outcome=refused-seq-backwards: the clock was left alone",
    );
    w.write_all(&event(21, 21)).unwrap();
    f.expect("action 2: migration_seq=21: migtime event 21 outcome=stepped");
    f.expect("--on-event ran");
    assert_eq!(
        f.hook_log(),
        ["migtime seq=1 marker=", "migtime seq=21 marker="]
    );
    assert!(
        !f.seen
            .iter()
            .any(|l| l.contains("migration_seq=3: migtime event 3")),
        "a suppressed refusal after the first is logged at debug only:\n{}",
        f.seen.join("\n")
    );
}

#[test]
fn survives_the_device_going_away_and_coming_back() {
    let mut f = Fixture::new("reopen", true, &["--no-vmclock"]);
    let mut w = f.writer();
    f.expect("migtime: opened");
    w.write_all(&event(1, 7)).unwrap();
    f.expect("action 1: migration_seq=7");
    drop(w);
    f.expect("device gone");
    fs::remove_file(f.dir.join("migtime")).unwrap();
    f.expect("not available");
    mkfifo(&f.dir.join("migtime"));
    let mut w = f.writer();
    f.expect("migtime: opened");
    // The module was reloaded: event numbers restart, migration_seq goes on.
    w.write_all(&event(1, 8)).unwrap();
    f.expect("action 2: migration_seq=8");
    f.expect("--on-event ran");
    assert_eq!(
        f.hook_log(),
        ["migtime seq=7 marker=", "migtime seq=8 marker="]
    );
}

#[test]
fn help_is_a_man_page() {
    let out = Command::new(env!("CARGO_BIN_EXE_migtime-companion"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "ACTIONS",
        "DE-DUPLICATION",
        "EXIT STATUS",
        "FILES",
        "SEE ALSO",
    ] {
        assert!(
            text.contains(&format!("\n{section}\n")) || text.starts_with(section),
            "--help lacks {section}"
        );
    }
}
