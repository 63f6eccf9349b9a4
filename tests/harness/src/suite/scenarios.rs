// SPDX-License-Identifier: GPL-2.0

//! The suite's scenarios: the data table `check` runs (`--list` prints it).
//! One row per scenario, built from [`row`] (see `scenario.rs` for the fields).

use crate::migrate::opts::{Restore, SimSettings, Vmm};
use crate::record::ack::ExpectOutcome as E;
use crate::suite::scenario::{hop, row, HostCheck, Kernel, Scenario};
use crate::vm::image::Daemon;
use crate::vm::page::BadPage as B;

use HostCheck::{ProbeFromStep, ProbeOneStep, ProbeSettles};
use Kernel::{Debian, Debug, Project};

/// The project's, Debian's and the debug kernel: the module's own paths.
const ALL: &[Kernel] = &[Project, Debian, Debug];
/// The project's and Debian's kernel.
const DISTRO: &[Kernel] = &[Project, Debian];
/// The project's and the debug kernel.
const DEBUG: &[Kernel] = &[Project, Debug];

/// Three days, in nanoseconds: the destination's clock offset of `device-restore-3days`.
const DAYS3_NS: i64 = 3 * 86_400 * 1_000_000_000;

/// The destinations' `x-clock-offset-ns` of `device-chain`, in hop order.
const CHAIN_OFFSETS_NS: [i64; 3] = [1_500_000_000, -750_000_000, 250_000_000];

/// A hop on the migtime device: a restore from a file if `restore`, else live.
fn device(blackout_ms: u64, restore: bool, offset_ns: i64) -> SimSettings {
    SimSettings {
        vmm: Vmm::QemuDevice,
        restore: restore.then_some(Restore::File),
        skew_ns: offset_ns,
        ..hop(blackout_ms, E::Stepped)
    }
}

/// The Debian image's migrations on the migtime device, to a host 0.5 s ahead, 2 s paused:
/// one live migration, then (`restore`) a restore from a file of the same boot.
fn image(restore: bool) -> SimSettings {
    SimSettings {
        vmm: Vmm::QemuDevice,
        skew_ns: 500_000_000,
        migrations: if restore { 2 } else { 1 },
        then_restore: restore,
        ..hop(2000, E::Stepped)
    }
}

fn bad(blackout_ms: u64, expect: E, b: B) -> SimSettings {
    SimSettings {
        bad_page: Some(b),
        ..hop(blackout_ms, expect)
    }
}

/// The built-in scenario table, in the order `check` runs it.
pub fn table() -> Vec<Scenario> {
    let step = "mt_migrate:expect=step";
    vec![
        row("boot", "plain boot: module loads, KUnit suites pass, /dev/migtime and debugfs basics, module unloads", "mt_basic").on(ALL),
        row("kernel-id", "Debian package: its kernel check accepts the running build, refuses another build of the release (skipped without the package)", "mt_kcheck").on(DISTRO),
        row("step", "uncompensated migration, 2 s blackout: realtime stepped by Tout (polling)", step).sim(hop(2000, E::Stepped)).on(ALL),
        row("step-doorbell", "as step, ivshmem-doorbell: the interrupt wakes the module", step).doorbell().sim(hop(1000, E::Stepped)).on(ALL),
        row("skew", "1 s blackout plus a simulated +250 ms host clock skew", step).sim(SimSettings { skew_ns: 250_000_000, ..hop(1000, E::Stepped) }).on(DISTRO),
        row("skew-back", "1 s blackout, destination clock 1.5 s behind the source: Tout -0.5 s, realtime stepped backwards", step).sim(SimSettings { skew_ns: -1_500_000_000, ..hop(1000, E::Stepped) }).on(DISTRO),
        row("compensated", "migration with no extra pause and the compensated flag: notify, no step", "mt_migrate:expect=notify").sim(SimSettings { compensated: true, ..hop(0, E::Notified) }).on(ALL),
        row("chain", "A->B->C, the guest runs between the hops: each hop stepped", "mt_migrate:expect=step:hops=2").sim(SimSettings { migrations: 2, ..hop(1000, E::Stepped) }).on(ALL),
        row("catch-up", "A->B->C with no guest run on B (seq +2): total applied exactly once", step).sim(SimSettings { no_guest_run_between: true, ..hop(1000, E::Stepped) }).on(ALL),
        row("cancel", "migration started and cancelled: source resumes, page unchanged, no event", "mt_migrate:expect=none:wait=5").sim(SimSettings { cancel: true, ..hop(0, E::None) }),
        row("bad-magic", "wrong magic before boot: the module does not bind, says why", "mt_nobind:reason=magic").sim(bad(0, E::None, B::BadMagic)),
        row("bad-version", "wrong version before boot: the module does not bind, says why", "mt_nobind:reason=version").sim(bad(0, E::None, B::BadVersion)),
        row("bad-size", "wrong size before boot: the module does not bind, says why", "mt_nobind:reason=size").sim(bad(0, E::None, B::BadSize)),
        row("stuck-odd", "destination page left with an odd seq_count: no step, no event", "mt_migrate:expect=none:wait=5").sim(bad(1000, E::None, B::StuckOdd)),
        row("seq-backwards", "destination migration_seq lower than the source's: refused", "mt_migrate:expect=refuse:outcome=refused-seq-backwards").sim(bad(1000, E::RefusedSeqBackwards, B::SeqBackwards)).on(ALL),
        row("huge-delta", "consistent page asking for +10 days: over the limit, refused", "mt_migrate:expect=refuse:outcome=refused-over-limit").sim(bad(0, E::RefusedOverLimit, B::HugeDelta)),
        row("huge-delta-warn", "on_violation=0: the +10-day delta is logged as a violation and stepped anyway", step).params("on_violation=0").sim(bad(0, E::Stepped, B::HugeDelta)),
        row("header-after-bind", "the host breaks the magic after bind: page ignored (logged once) until restored, then applied once", "mt_header").on(DEBUG),
        row("violation-panic", "on_violation=2: a +20 min step (over max_step_ms) panics the guest on purpose (cooperate or die hard)", "mt_migrate:expect=step:self=1200000000000").params("on_violation=2").panics("Kernel panic - not syncing: migtime: "),
        row("bad-params", "out-of-range module parameters fail insmod with EINVAL and a log line naming them", "mt_params").on(DEBUG),
        row("dest-killed", "migration completes, destination SIGKILLed before cont, source resumed: no event, no step", "mt_migrate:expect=none:wait=5").sim(bad(1000, E::None, B::DestKilled)),
        row("doorbell-storm", "doorbell mode, 10 000 rings in a burst after the update: exactly one event, right step", "mt_migrate:expect=step:once=3").doorbell().sim(bad(1000, E::Stepped, B::DoorbellStorm)).on(DEBUG),
        row("page-hammer", "host rewrites the page for 2 s (garbage under odd seq_count): one event, exact Tout, retries seen", "mt_migrate:expect=step:once=3:retries=1").params("poll_ms=20,read_attempts=4").sim(bad(1000, E::Stepped, B::PageHammer)).on(DEBUG),
        row("reload", "insmod/rmmod loop while the guest rewrites the page (unload racing the work item): no step lost or doubled", "mt_reload:loops=40").on(ALL),
        row("readers", "/dev/migtime abuse: 64 blocked readers/pollers, buffer sizes, EAGAIN, write/ioctl/mmap, close/unbind while blocked", "mt_readers").on(ALL),
        // The read-then-set fallback on the patched kernel (step_method=2): the path stock
        // kernels take. (check-debug runs the module's scenarios on a stock kernel as well.)
        row("step-fallback", "as step, step_method=2: read-then-set with do_settimeofday64 (the stock-kernel path)", step).params("step_method=2").sim(hop(2000, E::Stepped)),
        row("doorbell-fallback", "as step-doorbell, step_method=2", step).doorbell().params("step_method=2").sim(hop(1000, E::Stepped)),
        row("compensated-fallback", "as compensated, step_method=2: the zero step still moves the offset so waiters fire", "mt_migrate:expect=notify").params("step_method=2").sim(SimSettings { compensated: true, ..hop(0, E::Notified) }),
        row("chain-fallback", "as chain, step_method=2: the window estimate carries over from hop to hop", "mt_migrate:expect=step:hops=2").params("step_method=2").sim(SimSettings { migrations: 2, ..hop(1000, E::Stepped) }),
        row("partial-step", "step_method=2, debugfs fault_partial_step: the first set lands 1 ms short, its correction is rejected; the event says partial with what moved, never applied again", "mt_migrate:expect=step:self=5000000000:outcome=partial:fault=partial:once=5").params("step_method=2").on(DEBUG),
        // wrap=refuse: docs/abi.md, the sequence does not wrap.
        row("replay", "hostile host (the guest plays it): seq replayed, rewound, jumped, reset to 0 (then counting up past the old baseline: applied from there), wrapped at 2^64: each migration_seq acted on at most once, refusals visible", "mt_replay:wrap=refuse").params("poll_ms=5").on(ALL),
        // The kernel's timer selftests sleep for minutes by design (nsleep-lat alone 6 clocks x
        // 21 s); they run once, on Debian's kernel, the distribution kernel with real preemption.
        row("timers-peer", "the kernel's own selftests/timers right after a migtime step, inconsistency-check on CLOCK_MONOTONIC running across the migration", "mt_timers:start:30,mt_migrate:expect=step,mt_timers:run").sim(hop(1000, E::Stepped)).timeout_s(900).on(&[Debian]),
        row("doorbell-smp", "4 vCPUs, doorbell: after the migration the host publishes 2000 updates back to back, ringing each; readers on every CPU: each page acted on once, in order, realtime moved by the applied steps", "mt_stress:updates=2000").doorbell().vcpus(4).params("step_window_ms=1").sim(bad(1000, E::Stepped, B::PublishStorm)).on(ALL),
        // The userspace companion and a real chronyd.
        row("companion-vmclock", "VMClock guest without the module, two hops: migtime-companion acts once per migration on the disruption marker (NTP reset, cancel-on-set nudge, chronyc)", "mt_companion:expect=vmclock:hops=2").no_module().vmclock().sim(SimSettings { migrations: 2, ..hop(1000, E::None) }),
        row("companion-migtime", "module and VMClock, two hops: migtime-companion acts once per migration on the migtime event, the marker of the same migration is paired and dropped", "mt_companion:expect=migtime:hops=2").vmclock().sim(SimSettings { migrations: 2, ..hop(1000, E::Stepped) }),
        row("chrony-vmclock", "(b) real chronyd 4.3 synced over the network to the simulated host, VMClock, no module; 2 s blackout, +0.5 s skew, rate change: the companion acts once and chronyd re-syncs to the new host", "mt_chrony:expect=vmclock:hops=1:sync=60").no_module().vmclock().net(&[ProbeSettles]).sim(SimSettings { skew_ns: 500_000_000, ..hop(2000, E::None) }),
        row("chrony-migtime", "(c) real chronyd 4.3 as in chrony-vmclock, with the migtime module stepping: the companion acts once on the event and chronyd re-syncs to the new host", "mt_chrony:expect=migtime:hops=1:sync=60").net(&[ProbeSettles, ProbeOneStep, ProbeFromStep]).sim(SimSettings { skew_ns: 500_000_000, ..hop(2000, E::Stepped) }),
        row("chrony-migtime-race", "(c) with the module polling every 5 s (ivshmem-plain, poll_ms=5000) and VMClock: the VMClock signal usually wins and the companion acts alone first; the kernel's later step still reaches chronyd, which makes no correction of its own", "mt_chrony:expect=migtime:race=1:hops=1:sync=60").params("poll_ms=5000").vmclock().net(&[ProbeSettles, ProbeOneStep, ProbeFromStep]).sim(SimSettings { skew_ns: 500_000_000, ..hop(2000, E::Stepped) }),
        // The patched QEMU's -device migtime writes the page; the harness only reads it back
        // from guest memory and checks it against QMP's STOP -> RESUME. The project kernel only.
        row("device-live", "-device migtime, live migration: QEMU publishes Tout = STOP->RESUME (the downtime) and rings the doorbell, the guest steps (2 vCPUs)", step).device().sim(device(0, false, 0)),
        row("device-paused-dest", "-device migtime, live migration, destination held paused 3 s before cont: Tout counts to the resume, not to the load", step).device().sim(device(3000, false, 0)),
        row("device-restore-file", "-device migtime: stop, migrate file:, quit; 3 s later -incoming defer + migrate-incoming file:: RESTORE flag, Tout the whole saved span, the guest steps", step).device().sim(device(3000, true, 0)),
        row("device-restore-3days", "as device-restore-file, the restoring host's clock 3 days ahead (x-clock-offset-ns): RESTORE, the guest steps by 3 days + the pause", step).device().sim(device(3000, true, DAYS3_NS)),
        // The Debian 13 image as a user installs migtime in it (apt, udev, systemd units), on
        // the migtime device: one boot per daemon (suite/image.rs checks the guest's facts).
        row("image-chrony", "Debian 13 image (systemd, chrony.service, the packages from apt) on -device migtime: a live migration to a host 0.5 s ahead (2 s paused), then on the same boot a restore from a file 2 s later: udev autoloaded the module, the companion acts once per migration under its unit's sandbox, chronyd re-syncs; the probe sees the guest within 5 ms of the new host after the step, and staying there", "").device().image(Daemon::Chrony).net(&[ProbeSettles, ProbeOneStep, ProbeFromStep]).sim(image(true)).timeout_s(900),
        row("image-timesyncd", "as image-chrony with systemd-timesyncd, one live migration: timesyncd sees the module's step (cancel-on-set) and re-syncs at once", "").device().image(Daemon::Timesyncd).net(&[ProbeSettles, ProbeOneStep, ProbeFromStep]).sim(image(false)).timeout_s(600),
        row("device-stop-cont", "-device migtime, a plain stop, 2 s, cont: no migration, the device publishes nothing, no event", "mt_migrate:expect=none:wait=5").device().sim(SimSettings { stop_cont: true, expect: Some(E::None), ..device(2000, false, 0) }),
        row("device-restore-twice", "-device migtime: one migrate file: save restored on two destinations, 2 s after the save and 2 s after the first ran to its end: each load RESTORE, seq 1, Tout = its RESUME - the save's STOP; the guest, back at the save both times, steps both times", step).device().sim(SimSettings { loads: 2, ..device(2000, true, 0) }),
        row("device-snapshot", "-device migtime: snapshot-save (QMP job, vmstate on a scratch qcow2 node), snapshot-load 2 s later into the running VM, again into the VM paused once the guest idles after its programs (cont 2 s later): each load RESTORE, seq 1, Tout = its RESUME - the save's STOP; the guest steps after both", step).device().idle(3).sim(SimSettings { restore: Some(Restore::Snapshot), loads: 2, ..device(2000, false, 0) }),
        row("device-cancel", "-device migtime, a migration paused before the switchover (source stopped) for 1 s, then cancelled: the source resumes, the device publishes nothing, no event", "mt_migrate:expect=none:wait=5").device().sim(SimSettings { cancel: true, expect: Some(E::None), ..device(1000, false, 0) }),
        row("device-chain", "-device migtime, A->B->C->D live, the destinations' clocks +1.5 s, -0.75 s, +0.25 s off the source's (x-clock-offset-ns): each hop stepped by its Tout plus the offset difference (+1.5 s, -2.25 s, +1 s)", "mt_migrate:expect=step:hops=3").device().sim(SimSettings { migrations: 3, offsets_ns: CHAIN_OFFSETS_NS.to_vec(), ..device(0, false, 0) }),
        row("device-chrony", "(c) as chrony-migtime on the device: QEMU publishes Tout, the destination's clock 0.5 s ahead (x-clock-offset-ns; the NTP server moves to it at cont)", "mt_chrony:expect=migtime:hops=1:sync=60").device().net(&[ProbeSettles, ProbeOneStep, ProbeFromStep]).sim(device(2000, false, 500_000_000)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::scenario::Kind;
    use std::time::Duration;

    #[test]
    fn table_names_are_unique_and_sim_rows_expect_something() {
        let t = table();
        let mut names: Vec<_> = t.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), t.len());
        for s in &t {
            if let Kind::Sim(x) = &s.kind {
                assert!(x.expect.is_some(), "{}", s.name);
                assert!(!s.run.is_empty() || s.image.is_some(), "{}", s.name);
            }
            assert!(s.vcpus_with(2) >= 2, "{}", s.name);
            assert!(!s.kernels.is_empty(), "{}", s.name);
            // The harness's own words never ride in the programs.
            assert!(!s.run.contains(' ') && !s.run.contains("mt."), "{}", s.name);
            assert!(s.host_checks.is_empty() || s.net, "{}", s.name);
            if let Kind::Sim(x) = &s.kind {
                let x = SimSettings {
                    migrations: x.migrations.max(1),
                    ..x.clone()
                };
                x.validate(s.mode)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", s.name));
                // A snapshot loaded again must find the guest idling after its programs.
                let again = x.restore == Some(Restore::Snapshot) && x.loads() > 1;
                assert!(!again || s.idle_s > 0, "{}", s.name);
            }
        }
    }

    #[test]
    fn device_rows_cover_the_saved_state_cancel_chain_and_chrony() {
        let t = table();
        let get = |n: &str| t.iter().find(|s| s.name == n).unwrap().clone();
        let sim = |n: &str| match get(n).kind {
            Kind::Sim(x) => x,
            k => panic!("{n}: {k:?}"),
        };
        for n in [
            "device-restore-twice",
            "device-snapshot",
            "device-cancel",
            "device-chain",
            "device-chrony",
        ] {
            assert_eq!(get(n).mode, crate::vm::qemu::Mode::Device, "{n}");
            assert_eq!(sim(n).vmm, Vmm::QemuDevice, "{n}");
        }
        let twice = sim("device-restore-twice");
        assert_eq!((twice.restore, twice.loads()), (Some(Restore::File), 2));
        let snap = sim("device-snapshot");
        assert_eq!((snap.restore, snap.loads()), (Some(Restore::Snapshot), 2));
        assert!(get("device-snapshot").idle_s > 0);
        let cancel = sim("device-cancel");
        assert!(cancel.cancel && cancel.blackout_ms > 0 && cancel.expect == Some(E::None));
        let chain = sim("device-chain");
        assert_eq!(chain.hops(), 3);
        assert_eq!(chain.offsets_ns.len(), 3);
        // Each hop's offset difference differs, one of them backwards.
        let d: Vec<i64> = (0..3)
            .map(|h| {
                let (src, dst) = chain.device_offsets_ns(h);
                dst - src
            })
            .collect();
        assert_eq!(d, [1_500_000_000, -2_250_000_000, 1_000_000_000]);
        assert!(get("device-chain").run.contains("hops=3"));
        let c = get("device-chrony");
        assert!(c.net && c.module && c.host_checks.contains(&ProbeOneStep));
        assert_eq!(sim("device-chrony").skew_ns, sim("chrony-migtime").skew_ns);
    }

    #[test]
    fn fields_replace_the_side_tables() {
        let t = table();
        let get = |n: &str| t.iter().find(|s| s.name == n).unwrap().clone();
        assert_eq!(get("doorbell-smp").vcpus_with(2), 4);
        assert_eq!(get("step").vcpus_with(2), 2);
        let suite = Duration::from_secs(180);
        assert_eq!(
            get("timers-peer").timeout_with(suite),
            Duration::from_secs(900)
        );
        assert_eq!(get("step").timeout_with(suite), suite);
        let on = |k| t.iter().filter(|s| s.runs_on(k)).count();
        assert_eq!((on(Project), on(Debian), on(Debug)), (t.len() - 3, 15, 16));
        assert_eq!(on(Kernel::Image), 2);
        let img = get("image-chrony");
        assert!(img.image.is_some() && img.net && !img.runs_on(Project));
        assert!(!get("timers-peer").runs_on(Project));
        let c = get("chrony-vmclock");
        assert!(c.net && c.vmclock && !c.module);
        assert!(!get("chrony-migtime").host_checks.is_empty());
    }
}
