// SPDX-License-Identifier: GPL-2.0

//! `include/migtime_abi.h` must describe exactly the layout of `rust/abi.rs` (the page) and
//! `rust/event.rs` (the `/dev/migtime` record): compile a tiny C program with the header, print
//! every offset, size and constant, and compare.

use migtime_abi::abi::{
    self, guest_off, host_off, GuestArea, HostArea, Outcome, StepMethod, Timing, WakeSource,
};
use migtime_abi::event::{self, Event};
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

const PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include "migtime_abi.h"
#define P(name, v) printf("%s %llu\n", name, (unsigned long long)(v))
#define O(s, f) P(#s "." #f, offsetof(struct s, f))
int main(void)
{
	P("MAGIC", MIGTIME_MAGIC); P("VERSION", MIGTIME_VERSION);
	P("PAGE_BYTES", MIGTIME_PAGE_BYTES); P("GUEST_AREA_OFFSET", MIGTIME_GUEST_AREA_OFFSET);
	P("HOST_AREA_V1_SIZE", MIGTIME_HOST_AREA_V1_SIZE); P("FLAG_COMPENSATED", MIGTIME_FLAG_COMPENSATED);
	P("FLAGS_KNOWN", MIGTIME_FLAGS_KNOWN); P("EVENT_BYTES", MIGTIME_EVENT_BYTES);
	P("OUTCOME_STEPPED", MIGTIME_OUTCOME_STEPPED); P("OUTCOME_NOTIFIED", MIGTIME_OUTCOME_NOTIFIED);
	P("OUTCOME_REFUSED_SEQ_BACKWARDS", MIGTIME_OUTCOME_REFUSED_SEQ_BACKWARDS);
	P("OUTCOME_REFUSED_OVER_LIMIT", MIGTIME_OUTCOME_REFUSED_OVER_LIMIT);
	P("OUTCOME_REFUSED_INCONSISTENT", MIGTIME_OUTCOME_REFUSED_INCONSISTENT);
	P("OUTCOME_FAILED", MIGTIME_OUTCOME_FAILED);
	P("FLAG_RESTORE", MIGTIME_FLAG_RESTORE);
	P("OUTCOME_REFUSED_RATE", MIGTIME_OUTCOME_REFUSED_RATE);
	P("OUTCOME_PARTIAL", MIGTIME_OUTCOME_PARTIAL);
	P("sizeof.host", sizeof(struct migtime_host_area));
	P("sizeof.guest", sizeof(struct migtime_guest_area));
	P("sizeof.event", sizeof(struct migtime_event));
	O(migtime_host_area, magic); O(migtime_host_area, version); O(migtime_host_area, size);
	O(migtime_host_area, seq_count); O(migtime_host_area, flags);
	O(migtime_host_area, migration_seq); O(migtime_host_area, tai_delta_ns);
	O(migtime_host_area, tai_delta_total_ns); O(migtime_host_area, reserved);
	O(migtime_guest_area, seq_count); O(migtime_guest_area, outcome);
	O(migtime_guest_area, ack_seq); O(migtime_guest_area, intended_ns);
	O(migtime_guest_area, applied_ns); O(migtime_guest_area, applied_total_ns);
	O(migtime_guest_area, ack_realtime_ns); O(migtime_guest_area, events);
	O(migtime_guest_area, size); O(migtime_guest_area, timing);
	P("GUEST_AREA_V1_SIZE", MIGTIME_GUEST_AREA_V1_SIZE); P("GUEST_AREA_SIZE", MIGTIME_GUEST_AREA_SIZE);
	P("EVENT_V1_BYTES", MIGTIME_EVENT_V1_BYTES); P("sizeof.timing", sizeof(struct migtime_timing));
	P("STEP_INJECT", MIGTIME_STEP_INJECT); P("STEP_SETTIMEOFDAY", MIGTIME_STEP_SETTIMEOFDAY);
	P("WAKE_DOORBELL", MIGTIME_WAKE_DOORBELL); P("WAKE_POLL", MIGTIME_WAKE_POLL);
	O(migtime_timing, wake_mono_ns); O(migtime_timing, work_mono_ns); O(migtime_timing, done_mono_ns);
	O(migtime_timing, wake_source); O(migtime_timing, step_method); O(migtime_timing, sets);
	O(migtime_event, timing);
	O(migtime_event, event); O(migtime_event, migration_seq); O(migtime_event, page_flags);
	O(migtime_event, outcome); O(migtime_event, intended_ns); O(migtime_event, applied_ns);
	O(migtime_event, residual_ns); O(migtime_event, realtime_ns); O(migtime_event, monotonic_ns);
	return 0;
}
"#;

fn expected() -> BTreeMap<String, u64> {
    let g = |o: usize| (o - abi::GUEST_AREA_OFFSET) as u64;
    let mut m = BTreeMap::new();
    let mut p = |k: &str, v: u64| {
        m.insert(k.to_string(), v);
    };
    p("MAGIC", abi::MAGIC.into());
    p("VERSION", abi::VERSION.into());
    p("PAGE_BYTES", abi::PAGE_BYTES as u64);
    p("GUEST_AREA_OFFSET", abi::GUEST_AREA_OFFSET as u64);
    p("HOST_AREA_V1_SIZE", abi::HOST_AREA_V1_SIZE as u64);
    p("FLAG_COMPENSATED", abi::FLAG_COMPENSATED.into());
    p("FLAGS_KNOWN", abi::FLAGS_KNOWN.into());
    p("EVENT_BYTES", event::EVENT_BYTES as u64);
    p("OUTCOME_STEPPED", Outcome::Stepped as u64);
    p("OUTCOME_NOTIFIED", Outcome::Notified as u64);
    p(
        "OUTCOME_REFUSED_SEQ_BACKWARDS",
        Outcome::RefusedSeqBackwards as u64,
    );
    p(
        "OUTCOME_REFUSED_OVER_LIMIT",
        Outcome::RefusedOverLimit as u64,
    );
    p(
        "OUTCOME_REFUSED_INCONSISTENT",
        Outcome::RefusedInconsistent as u64,
    );
    p("OUTCOME_FAILED", Outcome::Failed as u64);
    p("FLAG_RESTORE", abi::FLAG_RESTORE.into());
    p("OUTCOME_REFUSED_RATE", Outcome::RefusedRate as u64);
    p("OUTCOME_PARTIAL", Outcome::Partial as u64);
    p("sizeof.host", size_of::<HostArea>() as u64);
    p("sizeof.guest", size_of::<GuestArea>() as u64);
    p("sizeof.event", size_of::<Event>() as u64);
    p("migtime_host_area.magic", host_off::MAGIC as u64);
    p("migtime_host_area.version", host_off::VERSION as u64);
    p("migtime_host_area.size", host_off::SIZE as u64);
    p("migtime_host_area.seq_count", host_off::SEQ_COUNT as u64);
    p("migtime_host_area.flags", host_off::FLAGS as u64);
    p(
        "migtime_host_area.migration_seq",
        host_off::MIGRATION_SEQ as u64,
    );
    p("migtime_host_area.tai_delta_ns", host_off::TAI_DELTA as u64);
    p(
        "migtime_host_area.tai_delta_total_ns",
        host_off::TAI_DELTA_TOTAL as u64,
    );
    p(
        "migtime_host_area.reserved",
        offset_of!(HostArea, reserved) as u64,
    );
    p("migtime_guest_area.seq_count", g(guest_off::SEQ_COUNT));
    p("migtime_guest_area.outcome", g(guest_off::OUTCOME));
    p("migtime_guest_area.ack_seq", g(guest_off::ACK_SEQ));
    p("migtime_guest_area.intended_ns", g(guest_off::INTENDED));
    p("migtime_guest_area.applied_ns", g(guest_off::APPLIED));
    p(
        "migtime_guest_area.applied_total_ns",
        g(guest_off::APPLIED_TOTAL),
    );
    p(
        "migtime_guest_area.ack_realtime_ns",
        g(guest_off::ACK_REALTIME),
    );
    p("migtime_guest_area.events", g(guest_off::EVENTS));
    p("migtime_guest_area.size", g(guest_off::SIZE));
    p("migtime_guest_area.timing", g(guest_off::TIMING));
    p("GUEST_AREA_V1_SIZE", abi::GUEST_AREA_V1_SIZE as u64);
    p("GUEST_AREA_SIZE", abi::GUEST_AREA_SIZE as u64);
    p("EVENT_V1_BYTES", event::EVENT_V1_BYTES as u64);
    p("sizeof.timing", size_of::<Timing>() as u64);
    p("STEP_INJECT", StepMethod::Inject as u64);
    p("STEP_SETTIMEOFDAY", StepMethod::SetTimeOfDay as u64);
    p("WAKE_DOORBELL", WakeSource::Doorbell as u64);
    p("WAKE_POLL", WakeSource::Poll as u64);
    p(
        "migtime_timing.wake_mono_ns",
        offset_of!(Timing, wake_mono_ns) as u64,
    );
    p(
        "migtime_timing.work_mono_ns",
        offset_of!(Timing, work_mono_ns) as u64,
    );
    p(
        "migtime_timing.done_mono_ns",
        offset_of!(Timing, done_mono_ns) as u64,
    );
    p(
        "migtime_timing.wake_source",
        offset_of!(Timing, wake_source) as u64,
    );
    p(
        "migtime_timing.step_method",
        offset_of!(Timing, step_method) as u64,
    );
    p("migtime_timing.sets", offset_of!(Timing, sets) as u64);
    p("migtime_event.timing", offset_of!(Event, timing) as u64);
    p("migtime_event.event", offset_of!(Event, event) as u64);
    p(
        "migtime_event.migration_seq",
        offset_of!(Event, migration_seq) as u64,
    );
    p(
        "migtime_event.page_flags",
        offset_of!(Event, page_flags) as u64,
    );
    p("migtime_event.outcome", offset_of!(Event, outcome) as u64);
    p(
        "migtime_event.intended_ns",
        offset_of!(Event, intended_ns) as u64,
    );
    p(
        "migtime_event.applied_ns",
        offset_of!(Event, applied_ns) as u64,
    );
    p(
        "migtime_event.residual_ns",
        offset_of!(Event, residual_ns) as u64,
    );
    p(
        "migtime_event.realtime_ns",
        offset_of!(Event, realtime_ns) as u64,
    );
    p(
        "migtime_event.monotonic_ns",
        offset_of!(Event, monotonic_ns) as u64,
    );
    m
}

#[test]
fn c_header_matches_rust_layout() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let include = root.join("include");
    assert!(
        include.join("migtime_abi.h").exists(),
        "include/migtime_abi.h missing"
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("migtime_abi_layout.c");
    let bin = dir.join("migtime_abi_layout");
    std::fs::write(&src, PROGRAM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "compiling the header failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&bin).output().unwrap();
    assert!(run.status.success());
    let got: BTreeMap<String, u64> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    let want = expected();
    for (k, v) in &want {
        assert_eq!(
            got.get(k),
            Some(v),
            "C header disagrees with rust/abi.rs / rust/event.rs on {k}"
        );
    }
    assert_eq!(got.len(), want.len(), "unexpected extra keys");
}
