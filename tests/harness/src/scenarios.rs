// SPDX-License-Identifier: GPL-2.0

//! The suite's scenarios: the data table `check` runs (`--list` prints it).

use std::time::Duration;

use crate::options::SimSettings;
use crate::page::BadPage;
use crate::qemu::Mode;
use crate::sim::ExpectOutcome;

/// How a scenario runs.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `boot` (no migration).
    Boot { bad_page: Option<BadPage> },
    /// `sim` with these settings.
    Sim(SimSettings),
    /// `boot` of a guest that must panic with this console text.
    Panic { needle: &'static str },
}

/// One row of the suite.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub mode: Mode,
    /// `mt.run=` (programs and `:`-separated arguments).
    pub run: &'static str,
    /// `mt.params=` (module parameters, commas for spaces).
    pub params: &'static str,
    pub kind: Kind,
}

fn s(blackout_ms: u64, expect: ExpectOutcome) -> SimSettings {
    SimSettings {
        blackout_ms,
        migrations: 1,
        expect: Some(expect),
        ..Default::default()
    }
}

/// The built-in scenario table.
pub fn table() -> Vec<Scenario> {
    use ExpectOutcome as E;
    vec![
        Scenario {
            name: "boot",
            about: "plain boot: module loads, KUnit suites pass, /dev/migtime and debugfs basics, module unloads",
            mode: Mode::Plain,
            run: "mt_basic",
            params: "",
            kind: Kind::Boot { bad_page: None },
        },
        Scenario {
            name: "kernel-id",
            about: "Debian package: its kernel check accepts the running build, refuses another build of the release (skipped without the package)",
            mode: Mode::Plain,
            run: "mt_kcheck",
            params: "",
            kind: Kind::Boot { bad_page: None },
        },
        Scenario {
            name: "step",
            about: "uncompensated migration, 2 s blackout: realtime stepped by Tout (polling)",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step",
            params: "",
            kind: Kind::Sim(s(2000, E::Stepped)),
        },
        Scenario {
            name: "step-doorbell",
            about: "as step, ivshmem-doorbell: the interrupt wakes the module",
            mode: Mode::Doorbell,
            run: "mt_migrate:expect=step",
            params: "",
            kind: Kind::Sim(s(1000, E::Stepped)),
        },
        Scenario {
            name: "skew",
            about: "1 s blackout plus a simulated +250 ms host clock skew",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step",
            params: "",
            kind: Kind::Sim(SimSettings { skew_ns: 250_000_000, ..s(1000, E::Stepped) }),
        },
        Scenario {
            name: "skew-back",
            about: "1 s blackout, destination clock 1.5 s behind the source: Tout -0.5 s, realtime stepped backwards",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step",
            params: "",
            kind: Kind::Sim(SimSettings { skew_ns: -1_500_000_000, ..s(1000, E::Stepped) }),
        },
        Scenario {
            name: "compensated",
            about: "migration with no extra pause and the compensated flag: notify, no step",
            mode: Mode::Plain,
            run: "mt_migrate:expect=notify",
            params: "",
            kind: Kind::Sim(SimSettings { compensated: true, ..s(0, E::Notified) }),
        },
        Scenario {
            name: "chain",
            about: "A->B->C, the guest runs between the hops: each hop stepped",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step:hops=2",
            params: "",
            kind: Kind::Sim(SimSettings { migrations: 2, ..s(1000, E::Stepped) }),
        },
        Scenario {
            name: "catch-up",
            about: "A->B->C with no guest run on B (seq +2): total applied exactly once",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step",
            params: "",
            kind: Kind::Sim(SimSettings { no_guest_run_between: true, ..s(1000, E::Stepped) }),
        },
        Scenario {
            name: "cancel",
            about: "migration started and cancelled: source resumes, page unchanged, no event",
            mode: Mode::Plain,
            run: "mt_migrate:expect=none:wait=5",
            params: "",
            kind: Kind::Sim(SimSettings { cancel: true, ..s(0, E::None) }),
        },
        Scenario {
            name: "bad-magic",
            about: "wrong magic before boot: the module does not bind, says why",
            mode: Mode::Plain,
            run: "mt_nobind:reason=magic",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::BadMagic), ..s(0, E::None) }),
        },
        Scenario {
            name: "bad-version",
            about: "wrong version before boot: the module does not bind, says why",
            mode: Mode::Plain,
            run: "mt_nobind:reason=version",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::BadVersion), ..s(0, E::None) }),
        },
        Scenario {
            name: "bad-size",
            about: "wrong size before boot: the module does not bind, says why",
            mode: Mode::Plain,
            run: "mt_nobind:reason=size",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::BadSize), ..s(0, E::None) }),
        },
        Scenario {
            name: "stuck-odd",
            about: "destination page left with an odd seq_count: no step, no event",
            mode: Mode::Plain,
            run: "mt_migrate:expect=none:wait=5",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::StuckOdd), ..s(1000, E::None) }),
        },
        Scenario {
            name: "seq-backwards",
            about: "destination migration_seq lower than the source's: refused",
            mode: Mode::Plain,
            run: "mt_migrate:expect=refuse:outcome=refused-seq-backwards",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::SeqBackwards), ..s(1000, E::RefusedSeqBackwards) }),
        },
        Scenario {
            name: "huge-delta",
            about: "consistent page asking for +10 days: over the limit, refused",
            mode: Mode::Plain,
            run: "mt_migrate:expect=refuse:outcome=refused-over-limit",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::HugeDelta), ..s(0, E::RefusedOverLimit) }),
        },
        Scenario {
            name: "huge-delta-warn",
            about: "on_violation=0: the +10-day delta is logged as a violation and stepped anyway",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step",
            params: "on_violation=0",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::HugeDelta), ..s(0, E::Stepped) }),
        },
        Scenario {
            name: "header-after-bind",
            about: "the host breaks the magic after bind: page ignored (logged once) until restored, then applied once",
            mode: Mode::Plain,
            run: "mt_header",
            params: "",
            kind: Kind::Boot { bad_page: None },
        },
        Scenario {
            name: "violation-panic",
            about: "on_violation=2: a +20 min step (over max_step_ms) panics the guest on purpose (cooperate or die hard)",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step:self=1200000000000",
            params: "on_violation=2",
            kind: Kind::Panic { needle: "Kernel panic - not syncing: migtime: " },
        },
        Scenario {
            name: "bad-params",
            about: "out-of-range module parameters fail insmod with EINVAL and a log line naming them",
            mode: Mode::Plain,
            run: "mt_params",
            params: "",
            kind: Kind::Boot { bad_page: None },
        },
        Scenario {
            name: "dest-killed",
            about: "migration completes, destination SIGKILLed before cont, source resumed: no event, no step",
            mode: Mode::Plain,
            run: "mt_migrate:expect=none:wait=5",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::DestKilled), ..s(1000, E::None) }),
        },
        Scenario {
            name: "doorbell-storm",
            about: "doorbell mode, 10 000 rings in a burst after the update: exactly one event, right step",
            mode: Mode::Doorbell,
            run: "mt_migrate:expect=step:once=3",
            params: "",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::DoorbellStorm), ..s(1000, E::Stepped) }),
        },
        Scenario {
            name: "page-hammer",
            about: "host rewrites the page for 2 s (garbage under odd seq_count): one event, exact Tout, retries seen",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step:once=3:retries=1",
            params: "poll_ms=20,read_attempts=4",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::PageHammer), ..s(1000, E::Stepped) }),
        },
        Scenario {
            name: "reload",
            about: "insmod/rmmod loop while the guest rewrites the page (unload racing the work item): no step lost or doubled",
            mode: Mode::Plain,
            run: "mt_reload:loops=40",
            params: "",
            kind: Kind::Boot { bad_page: None },
        },
        Scenario {
            name: "readers",
            about: "/dev/migtime abuse: 64 blocked readers/pollers, buffer sizes, EAGAIN, write/ioctl/mmap, close/unbind while blocked",
            mode: Mode::Plain,
            run: "mt_readers",
            params: "",
            kind: Kind::Boot { bad_page: None },
        },
        // The read-then-set fallback on the patched kernel (step_method=2): the path stock
        // kernels take. (check-debug runs every scenario on a stock kernel as well.)
        Scenario {
            name: "step-fallback",
            about: "as step, step_method=2: read-then-set with do_settimeofday64 (the stock-kernel path)",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step",
            params: "step_method=2",
            kind: Kind::Sim(s(2000, E::Stepped)),
        },
        Scenario {
            name: "doorbell-fallback",
            about: "as step-doorbell, step_method=2",
            mode: Mode::Doorbell,
            run: "mt_migrate:expect=step",
            params: "step_method=2",
            kind: Kind::Sim(s(1000, E::Stepped)),
        },
        Scenario {
            name: "compensated-fallback",
            about: "as compensated, step_method=2: the zero step still moves the offset so waiters fire",
            mode: Mode::Plain,
            run: "mt_migrate:expect=notify",
            params: "step_method=2",
            kind: Kind::Sim(SimSettings { compensated: true, ..s(0, E::Notified) }),
        },
        Scenario {
            name: "chain-fallback",
            about: "as chain, step_method=2: the window estimate carries over from hop to hop",
            mode: Mode::Plain,
            run: "mt_migrate:expect=step:hops=2",
            params: "step_method=2",
            kind: Kind::Sim(SimSettings { migrations: 2, ..s(1000, E::Stepped) }),
        },
        Scenario {
            name: "replay",
            about: "hostile host (the guest plays it): seq replayed, rewound, jumped, reset to 0 (then counting up past the old baseline: applied from there), wrapped at 2^64: each migration_seq acted on at most once, refusals visible",
            mode: Mode::Plain,
            // wrap=refuse: docs/abi.md, the sequence does not wrap.
            run: "mt_replay:wrap=refuse",
            params: "poll_ms=5",
            kind: Kind::Boot { bad_page: None },
        },
        Scenario {
            name: "timers-peer",
            about: "the kernel's own selftests/timers right after a migtime step, inconsistency-check on CLOCK_MONOTONIC running across the migration",
            mode: Mode::Plain,
            run: "mt_timers:start:30,mt_migrate:expect=step,mt_timers:run",
            params: "",
            kind: Kind::Sim(s(1000, E::Stepped)),
        },
        Scenario {
            name: "doorbell-smp",
            about: "4 vCPUs, doorbell: after the migration the host publishes 2000 updates back to back, ringing each; readers on every CPU: each page acted on once, in order, realtime moved by the applied steps",
            mode: Mode::Doorbell,
            run: "mt_stress:updates=2000",
            // A storm no honest host makes: the rate bound (32 steps per 10 min) is lifted.
            params: "step_window_ms=1",
            kind: Kind::Sim(SimSettings { bad_page: Some(BadPage::PublishStorm), ..s(1000, E::Stepped) }),
        },
    ]
    .into_iter()
    .chain(crate::companion::scenarios())
    .collect()
}

/// Scenarios that need more vCPUs than the suite's default.
const MORE_VCPUS: &[(&str, u32)] = &[("doorbell-smp", 4)];

/// Scenarios that need longer than the suite's time limit, seconds: the
/// kernel's timer selftests sleep for minutes by design (nsleep-lat alone
/// 6 clocks x 21 s).
const MORE_TIME: &[(&str, u64)] = &[("timers-peer", 900)];

/// The time limit of scenario `name`.
pub fn timeout_for(name: &str, default: Duration) -> Duration {
    MORE_TIME
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(default, |(_, s)| Duration::from_secs(*s).max(default))
}

/// The vCPUs scenario `name` runs with: the suite's setting, or more if the
/// scenario asks for more.
pub fn vcpus_for(name: &str, default: u32) -> u32 {
    MORE_VCPUS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(default, |(_, v)| (*v).max(default))
}

/// How long the simulator waits for the guest's ack after `cont`: without the module
/// (`mt.load=0` in `run`) nothing acks, so do not wait 20 s per hop.
pub fn ack_timeout_for(run: &str) -> Duration {
    if run.split_whitespace().any(|w| w == "mt.load=0") {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(20)
    }
}

/// The `mt.run=` / `mt.params=` part of the kernel command line.
pub fn append_for(run: &str, params: &str, extra: &str) -> String {
    let mut v = Vec::new();
    if !run.is_empty() {
        v.push(format!("mt.run={run}"));
    }
    if !params.is_empty() {
        v.push(format!("mt.params={params}"));
    }
    if !extra.is_empty() {
        v.push(extra.to_string());
    }
    v.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
                assert!(!s.run.is_empty(), "{}", s.name);
            }
        }
    }

    #[test]
    fn every_scenario_is_smp_and_overrides_name_real_rows() {
        let t = table();
        for s in &t {
            assert!(
                vcpus_for(s.name, crate::qemu::DEFAULT_VCPUS) >= 2,
                "{}",
                s.name
            );
        }
        for (n, v) in MORE_VCPUS {
            assert!(t.iter().any(|s| s.name == *n), "{n}");
            assert_eq!(vcpus_for(n, 2), *v);
        }
        for (n, _) in MORE_TIME {
            assert!(t.iter().any(|s| s.name == *n), "{n}");
        }
        assert_eq!(
            timeout_for("timers-peer", Duration::from_secs(180)),
            Duration::from_secs(900)
        );
        assert_eq!(
            timeout_for("step", Duration::from_secs(180)),
            Duration::from_secs(180)
        );
    }

    #[test]
    fn append_line() {
        assert_eq!(
            append_for("a:x=1,b", "p=1,q=2", ""),
            "mt.run=a:x=1,b mt.params=p=1,q=2"
        );
        assert_eq!(append_for("", "", "quiet"), "quiet");
    }
}
