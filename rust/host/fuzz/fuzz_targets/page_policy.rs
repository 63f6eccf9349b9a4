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
//!   up to exactly the host's final total minus its initial total.

#![no_main]

use std::cell::{Cell, RefCell};

use libfuzzer_sys::fuzz_target;
use migtime_abi::abi::{host_off, FLAG_COMPENSATED, HOST_AREA_V1_SIZE, MAGIC, VERSION};
use migtime_abi::policy::{Action, Baseline, OnViolation, Policy, Tracker};
use migtime_abi::seqlock::{read_snapshot, PageReader, Snapshot};

const OP_BYTES: usize = 18;

/// The host area plus the host's writer state; `versions` are the committed
/// (seq_count even) contents, for the no-torn-read check.
struct Host {
    bytes: [u8; HOST_AREA_V1_SIZE],
    honest: bool,
    versions: Vec<Snapshot>,
}

impl Host {
    fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().unwrap())
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap())
    }
    fn put32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(&mut self, off: usize, v: u64) {
        self.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn current(&self) -> Snapshot {
        Snapshot {
            seq_count: self.u32(host_off::SEQ_COUNT),
            flags: self.u32(host_off::FLAGS),
            migration_seq: self.u64(host_off::MIGRATION_SEQ),
            tai_delta_ns: self.u64(host_off::TAI_DELTA) as i64,
            tai_delta_total_ns: self.u64(host_off::TAI_DELTA_TOTAL) as i64,
        }
    }
    /// The steps of one honest update, each applied by `step(i)`.
    fn update_steps(&self, delta: i64, compensated: bool) -> Option<Vec<(usize, u64, bool)>> {
        let c = self.u32(host_off::SEQ_COUNT);
        let seq = self.u64(host_off::MIGRATION_SEQ).checked_add(1)?;
        let d = if compensated { 0 } else { delta };
        let total = (self.u64(host_off::TAI_DELTA_TOTAL) as i64).checked_add(d)?;
        let flags = if compensated { FLAG_COMPENSATED } else { 0 };
        Some(vec![
            (host_off::SEQ_COUNT, u64::from(c | 1), false),
            (host_off::MIGRATION_SEQ, seq, true),
            (host_off::TAI_DELTA, d as u64, true),
            (host_off::TAI_DELTA_TOTAL, total as u64, true),
            (host_off::FLAGS, u64::from(flags), false),
            (host_off::SEQ_COUNT, u64::from((c | 1).wrapping_add(1)), false),
        ])
    }
    fn apply_step(&mut self, (off, v, wide): (usize, u64, bool)) {
        if wide {
            self.put64(off, v);
        } else {
            self.put32(off, v as u32);
        }
        if off == host_off::SEQ_COUNT && v & 1 == 0 {
            let cur = self.current();
            self.versions.push(cur);
        }
    }
}

/// A guest view of the host area that lets the host run `pending` writer
/// steps between the guest's reads, one per read whose bit in `schedule` is set.
struct Interleaved<'a> {
    host: &'a RefCell<Host>,
    pending: RefCell<Vec<(usize, u64, bool)>>,
    schedule: u64,
    reads: Cell<u32>,
}

impl Interleaved<'_> {
    fn tick(&self) {
        let n = self.reads.get();
        self.reads.set(n + 1);
        if n < 64 && self.schedule >> n & 1 == 1 {
            let mut p = self.pending.borrow_mut();
            if !p.is_empty() {
                let step = p.remove(0);
                self.host.borrow_mut().apply_step(step);
            }
        }
    }
}

impl PageReader for Interleaved<'_> {
    fn read_u16(&self, off: usize) -> u16 {
        self.tick();
        let h = self.host.borrow();
        u16::from_le_bytes(h.bytes[off..off + 2].try_into().unwrap())
    }
    fn read_u32(&self, off: usize) -> u32 {
        self.tick();
        self.host.borrow().u32(off)
    }
    fn read_u64(&self, off: usize) -> u64 {
        self.tick();
        self.host.borrow().u64(off)
    }
    fn read_barrier(&self) {}
}

fn le_i64(b: &[u8]) -> i64 {
    i64::from_le_bytes(b[..8].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HOST_AREA_V1_SIZE {
        return;
    }
    let mut bytes = [0u8; HOST_AREA_V1_SIZE];
    bytes.copy_from_slice(&data[..HOST_AREA_V1_SIZE]);
    // Bit 0 of byte 63 asks for a valid header and even count, so most
    // inputs reach the policy rather than stopping at the header check.
    if bytes[63] & 1 == 1 {
        bytes[..4].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[4..6].copy_from_slice(&VERSION.to_le_bytes());
        bytes[6..8].copy_from_slice(&(HOST_AREA_V1_SIZE as u16).to_le_bytes());
        bytes[8] &= !1;
    }
    let host = RefCell::new(Host {
        bytes,
        honest: true,
        versions: Vec::new(),
    });
    {
        let cur = host.borrow().current();
        host.borrow_mut().versions.push(cur);
    }
    let initial_total = host.borrow().current().tai_delta_total_ns;
    let mut tracker = Tracker::new(Baseline::from_snapshot(&host.borrow().current()));
    // The invariant: with on_violation=refuse, each migration_seq is stepped at most once and
    // the stepped sequences strictly increase.
    let mut last_stepped: Option<u64> = None;
    let mut applied_sum: i128 = 0;
    let mut anything_refused_or_warned = false;

    for op in data[HOST_AREA_V1_SIZE..].chunks_exact(OP_BYTES) {
        let (kind, arg, val) = (op[0] % 5, op[1], le_i64(&op[2..10]));
        let extra = u64::from_le_bytes(op[10..18].try_into().unwrap());
        match kind {
            // Honest update, all at once.
            0 => {
                let steps = host.borrow().update_steps(val, arg & 1 == 1);
                if let Some(steps) = steps {
                    for s in steps {
                        host.borrow_mut().apply_step(s);
                    }
                }
            }
            // Dishonest raw write anywhere in the host area.
            1 => {
                let off = usize::from(arg) % (HOST_AREA_V1_SIZE - 8);
                host.borrow_mut().bytes[off..off + 8].copy_from_slice(&op[2..10]);
                host.borrow_mut().honest = false;
            }
            // A host that leaves the count odd.
            2 => {
                let c = host.borrow().u32(host_off::SEQ_COUNT);
                host.borrow_mut().put32(host_off::SEQ_COUNT, c | 1);
                host.borrow_mut().honest = false;
            }
            // Guest read (possibly interleaved with an honest update) + decide.
            _ => {
                let interleave = kind == 4;
                let pending = if interleave {
                    host.borrow().update_steps(val, arg & 2 == 2).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let before = host.borrow().versions.len();
                let reader = Interleaved {
                    host: &host,
                    pending: RefCell::new(pending),
                    schedule: extra,
                    reads: Cell::new(0),
                };
                let attempts = u32::from(arg >> 2) % 40 + 1;
                let res = read_snapshot(&reader, attempts);
                // Finish the host's update the read overlapped.
                for s in reader.pending.take() {
                    host.borrow_mut().apply_step(s);
                }
                let Ok(ok) = res else { continue };
                assert!(ok.attempts >= 1 && ok.attempts <= attempts);
                let snap = ok.snapshot;
                let h = host.borrow();
                if h.honest {
                    assert!(
                        h.versions[before.saturating_sub(1)..].contains(&snap),
                        "torn snapshot accepted: {snap:?}"
                    );
                }
                drop(h);
                let on_violation = match op[1] >> 6 {
                    0 => OnViolation::Warn,
                    _ => OnViolation::Refuse,
                };
                let limit_ns = if op[17] & 0x80 == 0 { u64::MAX } else { extra >> (op[16] % 64) };
                let policy = Policy { limit_ns, on_violation };
                let baseline = tracker.baseline();
                let d = tracker.decide(&snap, &policy);
                match d.action {
                    Action::Nothing => assert_eq!(d.next, baseline),
                    Action::Apply { step_ns, .. } => {
                        assert!(snap.migration_seq >= baseline.seq, "applied a backwards sequence");
                        assert_eq!(
                            Some(step_ns),
                            snap.tai_delta_total_ns.checked_sub(baseline.total_ns)
                        );
                        assert!(step_ns.unsigned_abs() <= limit_ns || d.warned.is_some());
                        assert_eq!(d.next, Baseline::from_snapshot(&snap));
                        if d.warned.is_none() {
                            assert!(snap.migration_seq > baseline.seq);
                            if let Some(prev) = last_stepped {
                                assert!(snap.migration_seq > prev, "seq {} stepped twice", prev);
                            }
                            last_stepped = Some(snap.migration_seq);
                        }
                        applied_sum += i128::from(step_ns);
                        anything_refused_or_warned |= d.warned.is_some();
                    }
                    Action::Refuse(o) | Action::Panic(o) => {
                        assert!(o.is_refusal());
                        // Only a newer page moves the baseline.
                        if snap.migration_seq > baseline.seq {
                            assert_eq!(d.next, Baseline::from_snapshot(&snap));
                        } else {
                            assert_eq!(d.next, baseline);
                        }
                        anything_refused_or_warned = true;
                    }
                }
                tracker.settle(&snap, &d, true);
                assert!(tracker.baseline().seq >= baseline.seq || on_violation == OnViolation::Warn);
            }
        }
    }

    // Honest host, nothing refused: every delta applied exactly once, up to
    // what the guest has seen (its baseline).
    if host.borrow().honest && !anything_refused_or_warned {
        assert_eq!(
            applied_sum,
            i128::from(tracker.baseline().total_ns) - i128::from(initial_total),
            "steps applied do not add up to the host's total"
        );
    }
});
