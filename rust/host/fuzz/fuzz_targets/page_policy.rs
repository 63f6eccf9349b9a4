// SPDX-License-Identifier: GPL-2.0

//! Fuzz target: an untrusted host drives the page; the guest reads it with the
//! seqlock and decides with the policy, exactly as the module does.
//!
//! The input is a 64-byte initial host area followed by 18-byte operations:
//! honest host updates (seqlock-protected, also interleaved with a guest read
//! step by step), raw writes anywhere in the host area (a dishonest host),
//! a stuck odd count, and guest reads with fuzzed attempts and policy.
//!
//! Invariants (a violation aborts, which libFuzzer reports as a crash):
//! - nothing panics or overflows, whatever the page holds;
//! - with an honest host, every accepted snapshot is a version the host
//!   committed (never a torn mix);
//! - a decision's next baseline is the snapshot's values (or unchanged for
//!   `Nothing`); an `Apply` steps by exactly `total - baseline.total`, within
//!   the limit unless the policy is `Warn`; a sequence going backwards is
//!   never applied;
//! - with an honest host and a limit no step reaches, the steps applied add
//!   up to exactly the host's final total minus its initial total;
//! - each step runs the module's read-then-set loop on a model clock whose
//!   sets the input rejects (the first: nothing applied, retried; a later
//!   one: a partial step, never re-applied) and on which another agent may
//!   step between a set and its read-back: a step that fails moved nothing,
//!   the clock moves for each `migration_seq` at most once, and the total
//!   clock movement equals the sum of what the steps reported as applied
//!   (the intended deltas, once per sequence, plus their residuals).

#![no_main]

use libfuzzer_sys::fuzz_target;
use migtime_abi::abi::{host_off, HOST_AREA_V1_SIZE, MAGIC, VERSION};
use migtime_abi::fallback::{read_then_set, WindowEstimate};
use migtime_abi::model_clock::ModelClock;
use migtime_abi::page::{host_area, snapshot_of, End, Interleaved, MemPage, Store, Update};
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy};
use migtime_abi::rate::Rate;
use migtime_abi::seqlock::{read_snapshot, Snapshot};
use migtime_abi::tracker::Tracker;

const OP_BYTES: usize = 18;

/// The page plus the host's writer state; `versions` are the committed
/// (seq_count even) contents, for the no-torn-read check.
struct Host {
    page: MemPage,
    honest: bool,
    versions: Vec<Snapshot>,
}

impl Host {
    /// The page with `area` as its host area. Bit 0 of its last byte asks for
    /// a valid header and an even count, so most inputs reach the policy
    /// rather than stopping at the header check.
    fn new(area: &[u8]) -> Self {
        let mut page = MemPage::from_bytes(area);
        if area[HOST_AREA_V1_SIZE - 1] & 1 == 1 {
            let b = page.bytes_mut();
            b[..4].copy_from_slice(&MAGIC.to_le_bytes());
            b[4..6].copy_from_slice(&VERSION.to_le_bytes());
            b[6..8].copy_from_slice(&(HOST_AREA_V1_SIZE as u16).to_le_bytes());
            b[host_off::SEQ_COUNT] &= !1;
        }
        let mut h = Self {
            page,
            honest: true,
            versions: Vec::new(),
        };
        h.versions.push(h.current());
        h
    }

    fn current(&self) -> Snapshot {
        snapshot_of(&host_area(&self.page))
    }

    /// The stores of one honest update (the harness's seqlock writer).
    fn update_stores(&self, delta: i64, compensated: bool) -> Option<Vec<Store>> {
        let cur = host_area(&self.page);
        let u = Update::next(&cur, delta, compensated)?;
        Some(u.seqlocked(cur.seq_count, End::Even).as_slice().to_vec())
    }

    fn apply(&mut self, s: Store) {
        apply_recording(&mut self.page, &mut self.versions, s);
    }
}

/// Performs `s` on `page`; a store making the count even commits a version.
fn apply_recording(page: &mut MemPage, versions: &mut Vec<Snapshot>, s: Store) {
    s.apply(page);
    if matches!(s, Store::U32(off, v) if off == host_off::SEQ_COUNT && v & 1 == 0) {
        versions.push(snapshot_of(&host_area(page)));
    }
}

/// One operation: `op[0] % 5` the kind, `op[1]` an argument, `op[2..10]` an
/// `i64` value, `op[10..18]` a `u64` extra.
struct Op<'a> {
    bytes: &'a [u8],
    kind: u8,
    arg: u8,
    val: i64,
    extra: u64,
}

impl<'a> Op<'a> {
    fn parse(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            kind: bytes[0] % 5,
            arg: bytes[1],
            val: i64::from_le_bytes(bytes[2..10].try_into().unwrap()),
            extra: u64::from_le_bytes(bytes[10..18].try_into().unwrap()),
        }
    }

    /// The policy a guest read decides with.
    fn policy(&self) -> Policy {
        let on_violation = match self.arg >> 6 {
            0 => OnViolation::Warn,
            _ => OnViolation::Refuse,
        };
        let limit_ns = if self.bytes[17] & 0x80 == 0 {
            u64::MAX
        } else {
            self.extra >> (self.bytes[16] % 64)
        };
        // Half the reads have a rate bound (a window of 0.25-64 s, 1-4 steps).
        let rate = if self.bytes[15] & 1 == 0 {
            Rate::UNLIMITED
        } else {
            Rate {
                window_ns: u64::from(self.bytes[15] >> 2) * 1_000_000_000 + 250_000_000,
                max_steps: u32::from(self.bytes[15] >> 1 & 3) + 1,
            }
        };
        Policy {
            limit_ns,
            restore_limit_ns: limit_ns.rotate_left(u32::from(self.bytes[14] % 64)),
            rate,
            on_violation,
        }
    }

    /// How the kernel treats the sets of a step this read asks for: `bytes[10]` the rejected
    /// sets (bit n: the n-th), `bytes[11]` the time per call, `bytes[12]` the sets another
    /// agent steps after, `val` (scaled) its step.
    fn fault(&self, clock: &mut ModelClock) {
        clock.reject = u64::from(self.bytes[10]) * u64::from(self.bytes[10] & 0x81 == 0x81);
        clock.tick_ns = i64::from(self.bytes[11]) * 500;
        clock.agent_after = u64::from(self.bytes[12] & 0x0f) * u64::from(self.bytes[12] >= 0xf0);
        clock.agent_ns = self.val >> 24;
        clock.set_calls = 0;
    }
}

/// The guest's state across operations.
struct Guest {
    tracker: Tracker,
    /// The invariant: with on_violation=refuse, each migration_seq is stepped
    /// at most once and the stepped sequences strictly increase.
    last_stepped: Option<u64>,
    /// Intended steps whose loop moved the clock (each counted once).
    applied_sum: i128,
    /// What the steps reported as applied.
    reported_sum: i128,
    refused_or_warned: bool,
    clock: ModelClock,
    window: WindowEstimate,
    /// Guest CLOCK_MONOTONIC for the policy, advanced by each read.
    now_ns: i64,
}

/// Guest read (interleaved with an honest update for kind 4: the host
/// performs one store after each read whose bit in `op.extra` is set): the
/// snapshot must be a committed version when the host is honest.
fn guest_read(host: &mut Host, op: &Op<'_>) -> Option<Snapshot> {
    let mut pending = if op.kind == 4 {
        let stores = host.update_stores(op.val, op.arg & 2 == 2);
        stores.unwrap_or_default()
    } else {
        Vec::new()
    };
    let before = host.versions.len();
    let versions = &mut host.versions;
    let reader = Interleaved::new(std::mem::take(&mut host.page), |n, page| {
        if n < 64 && op.extra >> n & 1 == 1 && !pending.is_empty() {
            apply_recording(page, versions, pending.remove(0));
        }
    });
    let attempts = u32::from(op.arg >> 2) % 40 + 1;
    let res = read_snapshot(&reader, attempts);
    host.page = reader.into_page();
    // Finish the host's update the read overlapped.
    for s in pending {
        host.apply(s);
    }
    let ok = res.ok()?;
    assert!(ok.attempts >= 1 && ok.attempts <= attempts);
    if host.honest {
        assert!(
            host.versions[before.saturating_sub(1)..].contains(&ok.snapshot),
            "torn snapshot accepted: {:?}",
            ok.snapshot
        );
    }
    Some(ok.snapshot)
}

/// Decides on `snap`, steps the model clock as the engine would, and checks the invariants.
fn decide(g: &mut Guest, snap: &Snapshot, op: &Op<'_>) {
    let policy = op.policy();
    g.now_ns = g.now_ns.saturating_add(i64::from(op.arg) * 10_000_000);
    let baseline = g.tracker.baseline();
    let d = g.tracker.decide(snap, &policy, g.now_ns);
    let mut applied = false;
    match d.action {
        Action::Nothing => assert_eq!(d.next, baseline),
        Action::Apply { step_ns, .. } => {
            assert!(
                snap.migration_seq >= baseline.seq,
                "applied a backwards sequence"
            );
            assert_eq!(
                Some(step_ns),
                snap.tai_delta_total_ns.checked_sub(baseline.total_ns)
            );
            assert!(
                step_ns.unsigned_abs() <= policy.limit_ns.max(policy.restore_limit_ns)
                    || d.warned.is_some()
            );
            assert_eq!(d.next, Baseline::from_snapshot(snap));
            applied = step(g, snap, step_ns, d.warned.is_none(), op);
            g.refused_or_warned |= d.warned.is_some();
        }
        Action::Refuse(o) | Action::Panic(o) => {
            assert!(o.is_refusal());
            // Only a newer page moves the baseline.
            if snap.migration_seq > baseline.seq {
                assert_eq!(d.next, Baseline::from_snapshot(snap));
            } else {
                assert_eq!(d.next, baseline);
            }
            g.refused_or_warned = true;
        }
    }
    g.tracker.settle(snap, &d, applied, g.now_ns);
    assert!(g.tracker.baseline().seq >= baseline.seq || policy.on_violation == OnViolation::Warn);
    if !applied && matches!(d.action, Action::Apply { .. }) {
        assert_eq!(
            g.tracker.baseline(),
            baseline,
            "a failed step moved the baseline"
        );
    }
}

/// Runs the read-then-set loop for one step; whether it moved the clock.
fn step(g: &mut Guest, snap: &Snapshot, step_ns: i64, checked: bool, op: &Op<'_>) -> bool {
    op.fault(&mut g.clock);
    let (ours, foreign) = (g.clock.ours_ns, g.clock.foreign_ns);
    let Ok(a) = read_then_set(&mut g.clock, &mut g.window, step_ns) else {
        assert_eq!(g.clock.ours_ns, ours, "a failed step moved the clock");
        return false;
    };
    let moved = g.clock.ours_ns - ours + g.clock.foreign_ns - foreign;
    assert_eq!(
        i128::from(a.applied_ns),
        moved,
        "the report is not what moved"
    );
    assert_eq!(a.residual_ns, a.applied_ns.wrapping_sub(step_ns));
    if checked {
        if let Some(prev) = g.last_stepped {
            assert!(snap.migration_seq > prev, "seq {} stepped twice", prev);
        }
        g.last_stepped = Some(snap.migration_seq);
    }
    g.applied_sum += i128::from(step_ns);
    g.reported_sum += i128::from(a.applied_ns);
    true
}

/// Performs one operation.
fn run_op(host: &mut Host, g: &mut Guest, op: &Op<'_>) {
    match op.kind {
        // Honest update, all at once.
        0 => {
            let stores = host.update_stores(op.val, op.arg & 1 == 1);
            for s in stores.unwrap_or_default() {
                host.apply(s);
            }
        }
        // Dishonest raw write anywhere in the host area.
        1 => {
            let off = usize::from(op.arg) % (HOST_AREA_V1_SIZE - 8);
            let h = &mut *host;
            h.page.bytes_mut()[off..off + 8].copy_from_slice(&op.bytes[2..10]);
            h.honest = false;
        }
        // A host that leaves the count odd.
        2 => {
            let h = &mut *host;
            h.page.bytes_mut()[host_off::SEQ_COUNT] |= 1;
            h.honest = false;
        }
        // Guest read (possibly interleaved with an honest update) + decide.
        _ => {
            if let Some(snap) = guest_read(host, op) {
                decide(g, &snap, op);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HOST_AREA_V1_SIZE {
        return;
    }
    let mut host = Host::new(&data[..HOST_AREA_V1_SIZE]);
    let initial = host.current();
    let mut g = Guest {
        tracker: Tracker::new(Baseline::from_snapshot(&initial)),
        last_stepped: None,
        applied_sum: 0,
        reported_sum: 0,
        refused_or_warned: false,
        clock: ModelClock::new(1_000_000_000, 1_700_000_000_000_000_000, 0),
        window: WindowEstimate::new(),
        now_ns: 0,
    };
    for bytes in data[HOST_AREA_V1_SIZE..].chunks_exact(OP_BYTES) {
        run_op(&mut host, &mut g, &Op::parse(bytes));
    }
    // The clock moved by what the steps reported, no more: the sets' movement
    // plus the other agent's.
    assert_eq!(
        g.clock.ours_ns + g.clock.foreign_ns,
        g.reported_sum,
        "clock movement differs from the steps' reports"
    );
    // Honest host, nothing refused: every delta applied exactly once, up to
    // what the guest has seen (its baseline).
    if host.honest && !g.refused_or_warned {
        assert_eq!(
            g.applied_sum,
            i128::from(g.tracker.baseline().total_ns) - i128::from(initial.tai_delta_total_ns),
            "steps applied do not add up to the host's total"
        );
    }
});
