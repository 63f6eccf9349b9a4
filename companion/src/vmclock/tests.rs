// SPDX-License-Identifier: GPL-2.0

//! The VMClock page: offsets against the 7.3 header (written byte by byte here, not with the
//! code under test), rejected pages, and the seqcount read against a writer that tears copies.

use super::*;
use proptest::prelude::*;

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
        u32_at(&self.buf, off::SEQ_COUNT)
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

#[test]
fn to_bytes_round_trips() {
    let p = VmclockPage {
        seq_count: 6,
        size: 4096,
        counter_id: 0xff,
        disruption_marker: 0x0102_0304_0506_0708,
        flags: VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT | VMCLOCK_FLAG_NOTIFICATION_PRESENT,
        clock_status: 0,
        vm_generation_counter: Some(3),
    };
    assert_eq!(parse_vmclock(&p.to_bytes()), Ok(p));
    assert_eq!(p.to_bytes(), page(6, p.disruption_marker, p.flags, 3));
}
