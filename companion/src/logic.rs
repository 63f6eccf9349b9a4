// SPDX-License-Identifier: GPL-2.0

//! The companion's pure decision logic, free of I/O so that it is unit- and property-tested on
//! the host:
//!
//! - [`parse_event`]: one `/dev/migtime` record (`struct migtime_event`, 64 bytes LE);
//! - [`VmclockPage`] and [`read_seqcount`]: the VMClock page (`struct vmclock_abi`,
//!   `include/uapi/linux/vmclock-abi.h` in Linux 7.3) read consistently under its `seq_count`;
//! - [`Dedup`]: which migration signal to act on, so that one migration seen through both a
//!   migtime event and a VMClock `disruption_marker` change is acted on once;
//! - [`Backoff`]: reopen delays after a device went away.
//!
//! Time is a caller-supplied monotonic millisecond counter (`now_ms`), never read here.

use migtime_abi::abi::Outcome;

/// Bytes of one `/dev/migtime` record as the companion reads it: the ABI v1 prefix
/// (`MIGTIME_EVENT_V1_BYTES`), which the module returns for a buffer of this size.
pub const EVENT_BYTES: usize = migtime_abi::event::EVENT_V1_BYTES;

/// One `/dev/migtime` record (`struct migtime_event`, include/migtime_abi.h): the module's own
/// type, from the event file it compiles (`rust/event.rs`).
pub type MigtimeEvent = migtime_abi::event::Event;

/// The outcome's name as the module logs it (`stepped`, `notified`, ...).
pub fn outcome_name(ev: &MigtimeEvent) -> &'static str {
    Outcome::from_u32(ev.outcome).map_or("unknown", Outcome::name)
}

/// Whether the module stepped the clock for this event.
pub fn stepped(ev: &MigtimeEvent) -> bool {
    Outcome::from_u32(ev.outcome) == Some(Outcome::Stepped)
}

/// Parses one record; `None` unless `b` is exactly [`EVENT_BYTES`] long (what `read(2)` returns).
pub fn parse_event(b: &[u8]) -> Option<MigtimeEvent> {
    if b.len() != EVENT_BYTES {
        return None;
    }
    MigtimeEvent::from_le_bytes(b)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// `VMCLOCK_MAGIC`, "VCLK" little-endian.
pub const VMCLOCK_MAGIC: u32 = 0x4b4c_4356;
/// Bytes of `struct vmclock_abi` in Linux 7.3 (up to and including `vm_generation_counter`).
pub const VMCLOCK_ABI_BYTES: usize = 112;
/// `VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT`.
pub const VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT: u64 = 1 << 8;
/// `VMCLOCK_FLAG_NOTIFICATION_PRESENT`.
pub const VMCLOCK_FLAG_NOTIFICATION_PRESENT: u64 = 1 << 9;

/// Byte offsets in `struct vmclock_abi`.
pub mod vmclock_off {
    /// `__le32 magic`.
    pub const MAGIC: usize = 0;
    /// `__le32 size`.
    pub const SIZE: usize = 4;
    /// `__le16 version`.
    pub const VERSION: usize = 8;
    /// `__u8 counter_id`.
    pub const COUNTER_ID: usize = 10;
    /// `__le32 seq_count`.
    pub const SEQ_COUNT: usize = 12;
    /// `__le64 disruption_marker`.
    pub const DISRUPTION_MARKER: usize = 16;
    /// `__le64 flags`.
    pub const FLAGS: usize = 24;
    /// `__u8 clock_status`.
    pub const CLOCK_STATUS: usize = 34;
    /// `__le64 vm_generation_counter`.
    pub const VM_GENERATION_COUNTER: usize = 104;
}

/// The fields of a consistent VMClock snapshot the companion uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmclockPage {
    /// `seq_count` of the snapshot (even).
    pub seq_count: u32,
    /// `size`: bytes of the region holding the structure.
    pub size: u32,
    /// `counter_id` (`0xff`: none, as QEMU's `-device vmclock`).
    pub counter_id: u8,
    /// `disruption_marker`: changes on every disruption (live migration).
    pub disruption_marker: u64,
    /// `flags` (`VMCLOCK_FLAG_*`).
    pub flags: u64,
    /// `clock_status` (`VMCLOCK_STATUS_*`).
    pub clock_status: u8,
    /// `vm_generation_counter`, when `VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT` says it is valid.
    pub vm_generation_counter: Option<u64>,
}

impl VmclockPage {
    /// Whether the hypervisor notifies (the device's `poll()` works).
    pub fn notifications(&self) -> bool {
        self.flags & VMCLOCK_FLAG_NOTIFICATION_PRESENT != 0
    }

    /// The identity of the clock's "epoch": a change of either counter is a disruption.
    /// The generation counter changes on snapshot restore, which also bumps the marker, but a
    /// hypervisor that only bumps the generation counter is covered as well.
    pub fn disruption_key(&self) -> (u64, u64) {
        (
            self.disruption_marker,
            self.vm_generation_counter.unwrap_or(0),
        )
    }
}

/// Why a VMClock page was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmclockError {
    /// Fewer than [`VMCLOCK_ABI_BYTES`] bytes.
    Short(usize),
    /// Wrong magic.
    Magic(u32),
    /// Version other than 1.
    Version(u16),
    /// `seq_count` odd (an update in progress) in a snapshot that should be stable.
    Unstable(u32),
}

impl core::fmt::Display for VmclockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Short(n) => write!(f, "short page ({n} bytes)"),
            Self::Magic(m) => write!(f, "bad magic {m:#010x}"),
            Self::Version(v) => write!(f, "unsupported version {v}"),
            Self::Unstable(s) => write!(f, "seq_count {s} odd (update in progress)"),
        }
    }
}

/// Parses a snapshot of the page (as `read(2)` of `/dev/vmclock0` or a copy of its mapping).
pub fn parse_vmclock(b: &[u8]) -> Result<VmclockPage, VmclockError> {
    if b.len() < VMCLOCK_ABI_BYTES {
        return Err(VmclockError::Short(b.len()));
    }
    let magic = u32_at(b, vmclock_off::MAGIC);
    if magic != VMCLOCK_MAGIC {
        return Err(VmclockError::Magic(magic));
    }
    let version = u16::from_le_bytes([b[vmclock_off::VERSION], b[vmclock_off::VERSION + 1]]);
    if version != 1 {
        return Err(VmclockError::Version(version));
    }
    let seq_count = u32_at(b, vmclock_off::SEQ_COUNT);
    if seq_count & 1 != 0 {
        return Err(VmclockError::Unstable(seq_count));
    }
    let flags = u64_at(b, vmclock_off::FLAGS);
    Ok(VmclockPage {
        seq_count,
        size: u32_at(b, vmclock_off::SIZE),
        counter_id: b[vmclock_off::COUNTER_ID],
        disruption_marker: u64_at(b, vmclock_off::DISRUPTION_MARKER),
        flags,
        clock_status: b[vmclock_off::CLOCK_STATUS],
        vm_generation_counter: (flags & VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT != 0)
            .then(|| u64_at(b, vmclock_off::VM_GENERATION_COUNTER)),
    })
}

/// A page that changes under the reader (the hypervisor writes it with the seqcount protocol):
/// the mapping of `/dev/vmclock0`, or a simulated writer in tests.
pub trait SeqPage {
    /// Reads `seq_count` (with acquire ordering in a real mapping).
    fn seq(&mut self) -> u32;
    /// Copies the structure into `out` (between two `seq()` reads, fenced in a real mapping).
    fn copy(&mut self, out: &mut [u8; VMCLOCK_ABI_BYTES]);
}

/// The seqcount read: `seq` even before the copy and unchanged after it, else retry, up to
/// `attempts` times. `None`: the writer never left the page alone long enough.
pub fn read_seqcount<P: SeqPage>(page: &mut P, attempts: u32) -> Option<[u8; VMCLOCK_ABI_BYTES]> {
    let mut buf = [0u8; VMCLOCK_ABI_BYTES];
    for _ in 0..attempts {
        let before = page.seq();
        if before & 1 != 0 {
            continue;
        }
        page.copy(&mut buf);
        if page.seq() == before {
            // The copy's own seq_count field is the one the writer had at the time of the copy;
            // with an unchanged seq it equals `before`.
            buf[vmclock_off::SEQ_COUNT..vmclock_off::SEQ_COUNT + 4]
                .copy_from_slice(&before.to_le_bytes());
            return Some(buf);
        }
    }
    None
}

/// Where an action came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A `/dev/migtime` event (the module already stepped, or notified).
    Migtime {
        /// The event's `migration_seq`.
        migration_seq: u64,
        /// The VMClock disruption this event also covers, if one was waiting for it.
        covers_marker: Option<u64>,
    },
    /// A VMClock disruption with no migtime event for it.
    Vmclock {
        /// The new `disruption_marker`.
        marker: u64,
        /// The companion waited the window for a migtime event (else: no `/dev/migtime`).
        waited: bool,
    },
}

/// What the state machine decided for one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Act now (once per migration).
    Act(Trigger),
    /// First observation: remembered, nothing to do.
    Baseline,
    /// Nothing new (same marker, same migration_seq re-read after reopening the device).
    Unchanged,
    /// A VMClock disruption is pending until `deadline_ms`, waiting for the migtime event.
    Wait {
        /// When to act alone if no migtime event comes.
        deadline_ms: u64,
    },
    /// Another marker change while one is pending: merged into the pending one.
    Merged,
    /// The migration was already acted on through the other signal within the window.
    Duplicate {
        /// The trigger that already acted.
        acted: Trigger,
    },
    /// A migtime event recorded before the companion started, older than the catch-up limit.
    Stale,
}

#[derive(Clone, Copy, Debug)]
struct LastAction {
    trigger: Trigger,
    at_ms: u64,
    /// The other signal for this action's migration has been seen (and dropped) already.
    paired: bool,
}

/// De-duplication of the two migration signals.
///
/// QEMU bumps the VMClock `disruption_marker` in `post_load`, before `cont`; the migtime module's
/// event follows 50-300 ms after `cont` (poll period, or doorbell; worst case its safety poll,
/// max(poll_ms, 1000 ms)). There is no common identifier, so the two are paired in time:
///
/// - a marker change while `/dev/migtime` is open starts a wait of `window_ms`; a migtime event
///   within it acts once (it also covers the marker); at the deadline the companion acts alone;
/// - a migtime event acts at once; a marker change seen within `window_ms` after it is the same
///   migration and is dropped;
/// - a migtime event within `window_ms` after acting alone on a marker is the same migration and
///   is dropped (logged: it arrived later than the window was meant to allow);
/// - without `/dev/migtime` open, a marker change acts at once.
///
/// Each action pairs with at most one signal of the other kind, so two real migrations close
/// together are still acted on twice.
#[derive(Clone, Debug)]
pub struct Dedup {
    window_ms: u64,
    catch_up_ms: u64,
    started_ms: u64,
    marker: Option<(u64, u64)>,
    pending: Option<(u64, u64)>,
    last_seq: Option<u64>,
    last_action: Option<LastAction>,
}

impl Dedup {
    /// `window_ms`: the pairing window; `catch_up_ms`: a migtime event recorded before
    /// `started_ms` is acted on only if it is at most this old; `started_ms`: the companion's
    /// start on the same clock as every later `now_ms`.
    pub fn new(window_ms: u64, catch_up_ms: u64, started_ms: u64) -> Self {
        Self {
            window_ms,
            catch_up_ms,
            started_ms,
            marker: None,
            pending: None,
            last_seq: None,
            last_action: None,
        }
    }

    /// The pairing window, ms.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    fn act(&mut self, trigger: Trigger, now_ms: u64, paired: bool) -> Verdict {
        self.last_action = Some(LastAction {
            trigger,
            at_ms: now_ms,
            paired,
        });
        Verdict::Act(trigger)
    }

    /// The action within the window that has not been paired yet, if it came from `vmclock`
    /// (`true`) or migtime (`false`).
    fn unpaired_recent(&mut self, now_ms: u64, vmclock: bool) -> Option<&mut LastAction> {
        let window = self.window_ms;
        self.last_action.as_mut().filter(|a| {
            !a.paired
                && now_ms.saturating_sub(a.at_ms) <= window
                && matches!(a.trigger, Trigger::Vmclock { .. }) == vmclock
        })
    }

    /// A `/dev/migtime` event with `migration_seq`, recorded at guest monotonic `event_ms`.
    pub fn on_migtime(&mut self, migration_seq: u64, event_ms: u64, now_ms: u64) -> Verdict {
        if self.last_seq == Some(migration_seq) {
            return Verdict::Unchanged;
        }
        self.last_seq = Some(migration_seq);
        if self.last_action.is_none()
            && self.pending.is_none()
            && event_ms < self.started_ms
            && now_ms.saturating_sub(event_ms) > self.catch_up_ms
        {
            return Verdict::Stale;
        }
        if let Some((marker, _)) = self.pending.take() {
            let t = Trigger::Migtime {
                migration_seq,
                covers_marker: Some(marker),
            };
            return self.act(t, now_ms, true);
        }
        if let Some(a) = self.unpaired_recent(now_ms, true) {
            a.paired = true;
            return Verdict::Duplicate { acted: a.trigger };
        }
        let t = Trigger::Migtime {
            migration_seq,
            covers_marker: None,
        };
        self.act(t, now_ms, false)
    }

    /// A consistent VMClock read: `key` is [`VmclockPage::disruption_key`], `marker` the
    /// `disruption_marker`; `migtime_open`: `/dev/migtime` is open (a migtime event may follow).
    pub fn on_vmclock(
        &mut self,
        key: (u64, u64),
        marker: u64,
        migtime_open: bool,
        now_ms: u64,
    ) -> Verdict {
        match self.marker.replace(key) {
            None => return Verdict::Baseline,
            Some(old) if old == key => return Verdict::Unchanged,
            Some(_) => {}
        }
        if let Some(p) = self.pending.as_mut() {
            p.0 = marker;
            return Verdict::Merged;
        }
        if let Some(a) = self.unpaired_recent(now_ms, false) {
            a.paired = true;
            return Verdict::Duplicate { acted: a.trigger };
        }
        if !migtime_open || self.window_ms == 0 {
            return self.act(
                Trigger::Vmclock {
                    marker,
                    waited: false,
                },
                now_ms,
                false,
            );
        }
        let deadline_ms = now_ms.saturating_add(self.window_ms);
        self.pending = Some((marker, deadline_ms));
        Verdict::Wait { deadline_ms }
    }

    /// Time passes: acts alone on a pending marker whose wait is over.
    pub fn on_tick(&mut self, now_ms: u64) -> Option<Verdict> {
        match self.pending {
            Some((marker, deadline)) if now_ms >= deadline => {
                self.pending = None;
                Some(self.act(
                    Trigger::Vmclock {
                        marker,
                        waited: true,
                    },
                    now_ms,
                    false,
                ))
            }
            _ => None,
        }
    }

    /// When [`Dedup::on_tick`] must be called next, if anything is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending.map(|(_, d)| d)
    }
}

/// Reopen delays after a device is missing or went away: `initial`, doubling, capped at `max`
/// (a new `Backoff` after each successful open). Never zero, so a vanished device never makes a
/// busy loop.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    max_ms: u64,
    next_ms: u64,
}

impl Backoff {
    /// `initial_ms` and `max_ms` are raised to at least 1 ms, `max_ms` to at least `initial_ms`.
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        let initial_ms = initial_ms.max(1);
        Self {
            max_ms: max_ms.max(initial_ms),
            next_ms: initial_ms,
        }
    }

    /// The delay before the next attempt, and the one after it doubles.
    pub fn next_delay(&mut self) -> u64 {
        let d = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use migtime_abi::event::Event;
    use proptest::prelude::*;

    const W: u64 = 1500;

    fn page(seq: u32, marker: u64, flags: u64, gen: u64) -> [u8; VMCLOCK_ABI_BYTES] {
        let mut b = [0u8; VMCLOCK_ABI_BYTES];
        b[0..4].copy_from_slice(&VMCLOCK_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&4096u32.to_le_bytes());
        b[8..10].copy_from_slice(&1u16.to_le_bytes());
        b[10] = 0xff;
        b[12..16].copy_from_slice(&seq.to_le_bytes());
        b[16..24].copy_from_slice(&marker.to_le_bytes());
        b[24..32].copy_from_slice(&flags.to_le_bytes());
        b[104..112].copy_from_slice(&gen.to_le_bytes());
        b
    }

    #[test]
    fn event_parses_what_the_module_writes() {
        let ev = Event {
            event: 3,
            migration_seq: 7,
            page_flags: 1,
            outcome: 1,
            intended_ns: 2_000_000_000,
            applied_ns: 2_000_000_123,
            residual_ns: 123,
            realtime_ns: -5,
            monotonic_ns: 9_000_000_000,
            ..Default::default()
        };
        // The companion reads with a 64-byte buffer: the module returns the ABI v1 prefix.
        let p = parse_event(&ev.to_le_bytes()[..EVENT_BYTES]).unwrap();
        assert_eq!(
            (p.event, p.migration_seq, p.page_flags, p.outcome),
            (3, 7, 1, 1)
        );
        assert_eq!(
            (
                p.intended_ns,
                p.applied_ns,
                p.residual_ns,
                p.realtime_ns,
                p.monotonic_ns
            ),
            (2_000_000_000, 2_000_000_123, 123, -5, 9_000_000_000)
        );
        assert!(stepped(&p));
        assert_eq!(outcome_name(&p), "stepped");
        assert_eq!(parse_event(&[0u8; 63]), None);
        assert_eq!(parse_event(&[0u8; 65]), None);
    }

    #[test]
    fn vmclock_offsets_match_the_7_3_header() {
        // struct vmclock_abi in include/uapi/linux/vmclock-abi.h (Linux 7.3.4): 112 bytes.
        let b = page(
            4,
            0x1122_3344_5566_7788,
            VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT,
            9,
        );
        let p = parse_vmclock(&b).unwrap();
        assert_eq!(p.seq_count, 4);
        assert_eq!(p.size, 4096);
        assert_eq!(p.counter_id, 0xff);
        assert_eq!(p.disruption_marker, 0x1122_3344_5566_7788);
        assert_eq!(p.vm_generation_counter, Some(9));
        assert!(!p.notifications());
        let p = parse_vmclock(&page(4, 1, VMCLOCK_FLAG_NOTIFICATION_PRESENT, 9)).unwrap();
        assert_eq!(p.vm_generation_counter, None);
        assert!(p.notifications());
    }

    #[test]
    fn vmclock_rejects_bad_pages() {
        let mut b = page(2, 1, 0, 0);
        assert_eq!(parse_vmclock(&b[..100]), Err(VmclockError::Short(100)));
        b[0] = 0;
        assert!(matches!(parse_vmclock(&b), Err(VmclockError::Magic(_))));
        let mut b = page(2, 1, 0, 0);
        b[8] = 2;
        assert_eq!(parse_vmclock(&b), Err(VmclockError::Version(2)));
        assert_eq!(
            parse_vmclock(&page(3, 1, 0, 0)),
            Err(VmclockError::Unstable(3))
        );
    }

    /// A page whose writer runs a scripted number of steps between the reader's accesses.
    /// Each write is: seq += 1 (odd), marker/gen updated in two halves, seq += 1 (even).
    struct RacyPage {
        buf: [u8; VMCLOCK_ABI_BYTES],
        version: u64,
        /// Writer steps done per reader access, consumed in order (then 0).
        script: Vec<u8>,
        phase: u8,
    }

    impl RacyPage {
        fn new(script: Vec<u8>) -> Self {
            Self {
                buf: page(0, 0, VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT, 0),
                version: 0,
                script,
                phase: 0,
            }
        }

        fn seq_field(&self) -> u32 {
            u32_at(&self.buf, vmclock_off::SEQ_COUNT)
        }

        fn set_seq(&mut self, s: u32) {
            self.buf[12..16].copy_from_slice(&s.to_le_bytes());
        }

        /// One writer step: begin, write marker, write generation, end.
        fn writer_step(&mut self) {
            match self.phase {
                0 => {
                    let s = self.seq_field() + 1;
                    self.set_seq(s);
                    self.version += 1;
                }
                1 => {
                    let v = self.version.to_le_bytes();
                    self.buf[16..24].copy_from_slice(&v);
                }
                2 => {
                    let v = self.version.to_le_bytes();
                    self.buf[104..112].copy_from_slice(&v);
                }
                _ => {
                    let s = self.seq_field() + 1;
                    self.set_seq(s);
                }
            }
            self.phase = (self.phase + 1) % 4;
        }

        fn run_writer(&mut self) {
            let n = if self.script.is_empty() {
                0
            } else {
                self.script.remove(0)
            };
            for _ in 0..n {
                self.writer_step();
            }
        }
    }

    impl SeqPage for RacyPage {
        fn seq(&mut self) -> u32 {
            self.run_writer();
            self.seq_field()
        }
        fn copy(&mut self, out: &mut [u8; VMCLOCK_ABI_BYTES]) {
            // The copy itself is torn: first half, writer runs, second half.
            out[..64].copy_from_slice(&self.buf[..64]);
            self.run_writer();
            out[64..].copy_from_slice(&self.buf[64..]);
        }
    }

    #[test]
    fn seqcount_retries_a_torn_copy() {
        // The writer begins and writes the marker during the copy (torn: marker new, generation
        // old): the reader sees seq move and retries once the writer has finished.
        let mut p = RacyPage::new(vec![0, 2, 0, 2]);
        let b = read_seqcount(&mut p, 8).unwrap();
        let pg = parse_vmclock(&b).unwrap();
        assert_eq!(pg.disruption_marker, pg.vm_generation_counter.unwrap());
    }

    #[test]
    fn seqcount_gives_up_on_a_busy_writer() {
        let mut p = RacyPage::new(vec![1; 64]);
        assert_eq!(read_seqcount(&mut p, 4), None);
    }

    proptest! {
        /// Whatever the interleaving, an accepted snapshot is a complete version: its marker and
        /// generation (written separately by the writer) agree, and its seq_count is even.
        #[test]
        fn seqcount_snapshot_is_never_torn(script in proptest::collection::vec(0u8..6, 0..40)) {
            let mut p = RacyPage::new(script);
            if let Some(b) = read_seqcount(&mut p, 16) {
                let pg = parse_vmclock(&b).unwrap();
                prop_assert_eq!(Some(pg.disruption_marker), pg.vm_generation_counter);
                prop_assert_eq!(pg.seq_count % 2, 0);
                prop_assert_eq!(u64::from(pg.seq_count / 2), pg.disruption_marker);
            }
        }
    }

    fn key(m: u64) -> (u64, u64) {
        (m, 0)
    }

    #[test]
    fn marker_then_migtime_acts_once() {
        let mut d = Dedup::new(W, 60_000, 0);
        assert_eq!(d.on_vmclock(key(1), 1, true, 100), Verdict::Baseline);
        assert_eq!(d.on_vmclock(key(1), 1, true, 200), Verdict::Unchanged);
        assert_eq!(
            d.on_vmclock(key(2), 2, true, 1000),
            Verdict::Wait { deadline_ms: 2500 }
        );
        assert_eq!(d.next_deadline(), Some(2500));
        assert_eq!(d.on_tick(1200), None);
        assert_eq!(
            d.on_migtime(5, 1250, 1300),
            Verdict::Act(Trigger::Migtime {
                migration_seq: 5,
                covers_marker: Some(2)
            })
        );
        assert_eq!(d.next_deadline(), None);
        assert_eq!(d.on_tick(3000), None);
        // The same event re-read after reopening the device.
        assert_eq!(d.on_migtime(5, 1250, 4000), Verdict::Unchanged);
    }

    #[test]
    fn migtime_then_marker_acts_once() {
        let mut d = Dedup::new(W, 60_000, 0);
        assert_eq!(d.on_vmclock(key(1), 1, true, 100), Verdict::Baseline);
        let acted = Trigger::Migtime {
            migration_seq: 1,
            covers_marker: None,
        };
        assert_eq!(d.on_migtime(1, 900, 1000), Verdict::Act(acted));
        assert_eq!(
            d.on_vmclock(key(2), 2, true, 1400),
            Verdict::Duplicate { acted }
        );
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn marker_alone_acts_at_the_deadline_and_drops_a_late_event() {
        let mut d = Dedup::new(W, 60_000, 0);
        d.on_vmclock(key(1), 1, true, 0);
        assert_eq!(
            d.on_vmclock(key(2), 2, true, 1000),
            Verdict::Wait { deadline_ms: 2500 }
        );
        assert_eq!(d.on_tick(2499), None);
        let acted = Trigger::Vmclock {
            marker: 2,
            waited: true,
        };
        assert_eq!(d.on_tick(2500), Some(Verdict::Act(acted)));
        assert_eq!(d.on_migtime(4, 2600, 2700), Verdict::Duplicate { acted });
        // A later, real migration is acted on again.
        assert!(matches!(d.on_migtime(5, 9000, 9000), Verdict::Act(_)));
    }

    #[test]
    fn without_migtime_the_marker_acts_at_once() {
        let mut d = Dedup::new(W, 60_000, 0);
        d.on_vmclock(key(1), 1, false, 0);
        assert_eq!(
            d.on_vmclock(key(2), 2, false, 10),
            Verdict::Act(Trigger::Vmclock {
                marker: 2,
                waited: false
            })
        );
        assert_eq!(
            d.on_vmclock(key(3), 3, false, 20),
            Verdict::Act(Trigger::Vmclock {
                marker: 3,
                waited: false
            })
        );
    }

    #[test]
    fn generation_counter_alone_is_a_disruption() {
        let mut d = Dedup::new(W, 60_000, 0);
        d.on_vmclock((1, 1), 1, false, 0);
        assert_eq!(
            d.on_vmclock((1, 2), 1, false, 10),
            Verdict::Act(Trigger::Vmclock {
                marker: 1,
                waited: false
            })
        );
    }

    #[test]
    fn old_event_at_start_is_stale_recent_one_is_caught_up() {
        let mut d = Dedup::new(W, 60_000, 100_000);
        assert_eq!(d.on_migtime(3, 10_000, 100_050), Verdict::Stale);
        let mut d = Dedup::new(W, 60_000, 100_000);
        assert!(matches!(d.on_migtime(3, 90_000, 100_050), Verdict::Act(_)));
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut b = Backoff::new(100, 1000);
        let v: Vec<u64> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(v, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(Backoff::new(0, 0).next_delay(), 1);
        assert_eq!(Backoff::new(300, 10).next_delay(), 300);
    }

    /// Inputs of the property test: two migration signals per migration, in any order and delay.
    #[derive(Clone, Debug)]
    struct Migration {
        /// ms from the previous migration (well apart: > 4 windows, so that its action is over
        /// a window before this migration's first signal).
        gap: u64,
        /// marker change seen at this offset (ms) from the migration (None: no VMClock).
        marker_at: Option<u64>,
        /// migtime event at this offset (ms) (None: no migtime event).
        event_at: Option<u64>,
    }

    fn migration() -> impl Strategy<Value = Migration> {
        (
            (4 * W)..20_000u64,
            proptest::option::of(0..W),
            // Up to 2 windows: later than the wait, so the late-event drop is exercised too.
            proptest::option::weighted(0.8, 0..2 * W),
        )
            .prop_map(|(gap, marker_at, event_at)| Migration {
                gap,
                marker_at,
                event_at,
            })
    }

    proptest! {
        /// Each migration that produced any signal is acted on exactly once, whichever order and
        /// timing (within the window) its two signals arrive in, with ticks at arbitrary times.
        #[test]
        fn one_action_per_migration(
            migs in proptest::collection::vec(migration(), 1..12),
            tick_every in 1u64..400,
        ) {
            let mut d = Dedup::new(W, 60_000, 0);
            d.on_vmclock(key(0), 0, true, 0);
            let mut t0 = 1000u64;
            let mut seq = 0u64;
            let mut marker = 0u64;
            for m in &migs {
                t0 += m.gap;
                let mut inputs: Vec<(u64, bool)> = Vec::new();
                if let Some(a) = m.marker_at { inputs.push((t0 + a, true)); }
                if let Some(a) = m.event_at { inputs.push((t0 + a, false)); }
                inputs.sort();
                let mut actions = 0;
                let mut now = t0;
                for (at, is_marker) in inputs {
                    while now + tick_every < at {
                        now += tick_every;
                        if let Some(Verdict::Act(_)) = d.on_tick(now) { actions += 1; }
                    }
                    now = at;
                    if let Some(Verdict::Act(_)) = d.on_tick(now) { actions += 1; }
                    let v = if is_marker {
                        marker += 1;
                        d.on_vmclock(key(marker), marker, true, now)
                    } else {
                        seq += 1;
                        d.on_migtime(seq, now, now)
                    };
                    if let Verdict::Act(_) = v { actions += 1; }
                }
                let end = t0 + 3 * W;
                while now < end {
                    now += tick_every;
                    if let Some(Verdict::Act(_)) = d.on_tick(now) { actions += 1; }
                }
                let expected = usize::from(m.marker_at.is_some() || m.event_at.is_some());
                prop_assert_eq!(actions, expected, "migration {:?}", m);
                prop_assert_eq!(d.next_deadline(), None);
            }
        }
    }
}
