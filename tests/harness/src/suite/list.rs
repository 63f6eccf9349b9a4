// SPDX-License-Identifier: GPL-2.0

//! `check --list`: the selected rows of the table, with how the guest and the host run
//! each.

use clap::ValueEnum;

use crate::suite::check::select;
use crate::suite::scenario::{Kernel, Kind, Scenario};
use crate::vm::qemu::DEFAULT_VCPUS;

/// How the host drives a scenario, as the `boot`/`sim` options that do the same.
fn host_line(sc: &Scenario) -> String {
    match &sc.kind {
        Kind::Boot { .. } => "boot".to_string(),
        Kind::Panic { needle } => format!("boot --expect-panic \"{needle}\""),
        Kind::Sim(s) => {
            let mut o = vec![format!("sim --mode {:?}", sc.mode).to_lowercase()];
            let flags = [
                (s.blackout_ms > 0, format!("--blackout {}", s.blackout_ms)),
                (s.skew_ns != 0, format!("--skew-ns {}", s.skew_ns)),
                (s.compensated, "--compensated".into()),
                (s.migrations > 1, format!("--migrations {}", s.migrations)),
                (s.no_guest_run_between, "--no-guest-run-between".into()),
                (s.cancel, "--cancel".into()),
            ];
            o.extend(flags.into_iter().filter(|f| f.0).map(|f| f.1));
            let name =
                |v: Option<clap::builder::PossibleValue>| v.map(|v| v.get_name().to_string());
            if let Some(b) = s.bad_page.and_then(|b| name(b.to_possible_value())) {
                o.push(format!("--bad-page {b}"));
            }
            if let Some(e) = s.expect.and_then(|e| name(e.to_possible_value())) {
                o.push(format!("--expect-outcome {e}"));
            }
            o.join(" ")
        }
    }
}

/// What the guest gets besides its programs, for `--list`.
fn guest_extras(sc: &Scenario, vcpus: u32) -> String {
    let mut v = vec![format!("{} vCPUs", sc.vcpus_with(vcpus))];
    if let Some(d) = sc.image {
        v.push(format!("the Debian image with {}", d.name()));
    }
    let words = [
        (!sc.module && sc.image.is_none(), "no module"),
        (sc.vmclock, "vmclock"),
        (sc.net, "network"),
    ];
    v.extend(words.iter().filter(|w| w.0).map(|w| w.1.to_string()));
    v.join(", ")
}

/// Prints the selected rows of the table (`--list`).
pub fn list(only: &[String], suite: Option<Kernel>) {
    for sc in select(only, suite) {
        println!(
            "{:<14} {}\n{:<14}   guest: {} ({})\n{:<14}   host:  {}",
            sc.name,
            sc.about,
            "",
            if sc.image.is_some() {
                "systemd, the packages, the test-only report and probe"
            } else if sc.run.is_empty() {
                "(no program)"
            } else {
                sc.run
            },
            guest_extras(&sc, DEFAULT_VCPUS),
            "",
            host_line(&sc)
        );
    }
}
