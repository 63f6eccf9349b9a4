// SPDX-License-Identifier: GPL-2.0

//! The Debian image scenarios' host checks (`suite/image.rs`) on a report as the image's
//! `migtime-test-report` writes it: every check passes on a good run, and each kind of
//! broken guest (module not autoloaded, companion silent, acting twice or outside its
//! sandbox, the daemon not re-synchronised) fails the check that names it.

use migtime_harness::suite::image::{check_facts, facts, timespan_s};
use migtime_harness::vm::image::Daemon;

const BOOT: &str = "\
KTAP version 1
1..1
# fact boot| $ systemctl is-system-running --wait
# fact boot| running
# fact boot| $ sh -c lsmod | grep -w \"^migtime\"
# fact boot| migtime               98304  0
# fact boot| $ pci_migtime
# fact boot| 0x1b36:0x0016 driver=migtime
# fact boot| $ modules_load
# fact boot| no modules-load entry for migtime
# fact boot| migtime: running kernel 7.3.4+deb13-cloud-amd64 build ID 1fe9 matches the module's (0~git)
# fact boot| _migtime:x:995:995::/nonexistent:/usr/sbin/nologin
# fact boot| _chrony:x:101:103:Chrony daemon,,,:/var/lib/chrony:/usr/sbin/nologin
# fact boot| ActiveState=active
# fact boot| User=_chrony
# fact boot| Group=_migtime
# fact boot| NRestarts=0
# fact boot| CapEff:	0000000002000000
# fact boot| /dev/migtime
# fact boot| Reference ID    : 0A000202 (10.0.2.2)
# fact boot| System time     : 0.000012000 seconds slow of NTP time
# fact boot| Leap status     : Normal
# MIGTIME-READY image hop 1
";

fn hop(k: u32, actions: u32, uid: u32) -> String {
    let mut s = String::new();
    let f = |l: &str| format!("# fact hop{k}| {l}\n");
    for i in 1..=k {
        s += &f(&format!(
            "[ 9.1] migtime: event {i} seq={i} stepped intended_ns=2500 applied_ns=2500"
        ));
    }
    s += &f(
        r#"{"_UID":"0","_SYSTEMD_UNIT":"init.scope","MESSAGE":"Started migtime-companion.service"}"#,
    );
    for i in 1..=actions {
        s += &f(&format!(
            r#"{{"_UID":"{uid}","_CAP_EFFECTIVE":"2000000","_SYSTEMD_UNIT":"migtime-companion.service","MESSAGE":"migtime-companion[31.861]: info: action {i}: migration_seq={i}: migtime event {i} outcome=stepped"}}"#
        ));
        s += &f(&format!(
            r#"{{"_UID":"{uid}","_CAP_EFFECTIVE":"2000000","_SYSTEMD_UNIT":"migtime-companion.service","MESSAGE":"migtime-companion[32.281]: info: migration_seq={i}: chronyd: reset sources; burst 4/4 -> 200 OK"}}"#
        ));
    }
    for l in [
        "ActiveState=active",
        "User=_chrony",
        "NRestarts=0",
        "CapEff:\t0000000002000000",
        "/dev/migtime",
    ] {
        s += &f(l);
    }
    s += &f("Reference ID    : 0A000202 (10.0.2.2)");
    s += &f("System time     : 0.000400000 seconds fast of NTP time");
    s += &f("Leap status     : Normal");
    s
}

fn run(text: &str) -> Vec<(bool, String)> {
    check_facts(Daemon::Chrony, 2, text)
}

fn failing(v: &[(bool, String)]) -> Vec<String> {
    v.iter().filter(|c| !c.0).map(|c| c.1.clone()).collect()
}

#[test]
fn a_good_run_passes_every_check() {
    let t = format!(
        "{BOOT}{}# MIGTIME-READY image hop 2\n{}ok 1 image report\n",
        hop(1, 1, 101),
        hop(2, 2, 101)
    );
    let v = run(&t);
    assert_eq!(v.len(), 5 + 2 * 3, "{v:?}");
    assert!(failing(&v).is_empty(), "{:?}", failing(&v));
    assert_eq!(facts(&t, "hop1").len(), 12);
}

#[test]
fn each_broken_guest_fails_its_check() {
    let good2 = hop(2, 2, 101);
    let case = |boot: &str, h1: &str, h2: &str| failing(&run(&format!("{boot}{h1}{h2}")));
    // The module loaded by hand, not by udev: no device bound.
    let f = case(
        &BOOT.replace("driver=migtime", "driver="),
        &hop(1, 1, 101),
        &good2,
    );
    assert!(f.len() == 1 && f[0].contains("autoloaded"), "{f:?}");
    // The companion did nothing on the first migration.
    let f = case(BOOT, &hop(1, 0, 101), &good2);
    assert!(
        f.len() == 1 && f[0].contains("hop 1: the companion acted once"),
        "{f:?}"
    );
    // Twice for one migration (3 actions after 2).
    let f = case(BOOT, &hop(1, 1, 101), &hop(2, 3, 101));
    assert!(
        f.len() == 1 && f[0].contains("hop 2: the companion"),
        "{f:?}"
    );
    // Outside its sandbox (as root).
    let f = case(BOOT, &hop(1, 1, 0), &good2);
    assert!(f.len() == 1 && f[0].contains("uid 101"), "{f:?}");
    // chronyd not back on the new host's time.
    let off = hop(1, 1, 101).replace("0.000400000 seconds fast", "0.250000000 seconds fast");
    let f = case(BOOT, &off, &good2);
    assert!(
        f.len() == 1 && f[0].contains("hop 1: image: chronyc tracking"),
        "{f:?}"
    );
    // No step on the restore.
    let f = case(
        BOOT,
        &hop(1, 1, 101),
        &good2.replace("event 2 seq=2 stepped", "event 2 seq=2 refused"),
    );
    assert!(
        f.len() == 1 && f[0].contains("hop 2: the module stepped"),
        "{f:?}"
    );
}

#[test]
fn timesyncd_offsets_and_its_resync() {
    assert_eq!(timespan_s("+1.5ms"), Some(0.0015));
    assert_eq!(timespan_s("-29us"), Some(-29e-6));
    assert_eq!(timespan_s("+2s"), Some(2.0));
    assert_eq!(timespan_s("fast"), None);
    let boot = BOOT
        .replace("User=_chrony", "User=_migtime")
        .replace("# fact boot| Reference ID    : 0A000202 (10.0.2.2)\n", "# fact boot|        Server: 10.0.2.2 (10.0.2.2)\n# fact boot|          Leap: normal\n# fact boot|        Offset: -120us\n# fact boot|         Delay: 1.2ms\n");
    let h = "# fact hop1| [ 9.1] migtime: event 1 seq=1 stepped intended_ns=2500\n\
             # fact hop1| {\"_UID\":\"995\",\"_CAP_EFFECTIVE\":\"2000000\",\"_SYSTEMD_UNIT\":\"migtime-companion.service\",\"MESSAGE\":\"migtime-companion[9.2]: info: action 1: migration_seq=1: migtime event 1 outcome=stepped\"}\n\
             # fact hop1| ActiveState=active\n# fact hop1| User=_migtime\n# fact hop1| NRestarts=0\n\
             # fact hop1| CapEff:\t0000000002000000\n# fact hop1| /dev/migtime\n\
             # fact hop1| System time changed. Resyncing.\n\
             # fact hop1|        Server: 10.0.2.2 (10.0.2.2)\n# fact hop1|          Leap: normal\n# fact hop1|        Offset: +310us\n";
    let v = check_facts(Daemon::Timesyncd, 1, &format!("{boot}{h}"));
    assert_eq!(v.len(), 5 + 4, "{v:?}");
    assert!(failing(&v).is_empty(), "{:?}", failing(&v));
    let v = check_facts(
        Daemon::Timesyncd,
        1,
        &format!(
            "{boot}{}",
            h.replace("System time changed. Resyncing.", "Timed out")
        ),
    );
    let f = failing(&v);
    assert!(f.len() == 1 && f[0].contains("re-synced at once"), "{f:?}");
    // Its one exchange is as good as half its round trip: 9 ms off is out with a 2 ms
    // round trip, in with a 20 ms one.
    let far = h.replace("Offset: +310us", "Offset: +9.1ms");
    let f = failing(&check_facts(Daemon::Timesyncd, 1, &format!("{boot}{far}")));
    assert!(
        f.len() == 1 && f[0].contains("hop 1: image: timedatectl"),
        "{f:?}"
    );
    let noisy = format!("{far}# fact hop1|         Delay: 20ms\n");
    let v = check_facts(Daemon::Timesyncd, 1, &format!("{boot}{noisy}"));
    assert!(failing(&v).is_empty(), "{:?}", failing(&v));
}
