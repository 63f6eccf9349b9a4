// SPDX-License-Identifier: GPL-2.0

//! The host-side page layer: the seqlock writer, raw views, the guest-area
//! reader, and the next-update rule.

use migtime_abi::abi::{self, host_off, GuestArea, HostArea, Timing, FLAG_COMPENSATED};
use migtime_abi::page::{
    guest_area_write, host_area, init_page, odd_after, read_guest_area, snapshot_of,
    write_host_area, write_update, End, Interleaved, MemPage, PageWriter, Store, Update,
};
use migtime_abi::seqlock::{read_snapshot, ReadError, Snapshot};

fn valid_page() -> MemPage {
    let mut p = MemPage::new();
    init_page(&mut p, 0);
    p
}

#[test]
fn fresh_page_reads_back_as_valid_v1() {
    let mut p = MemPage::from_bytes(&[0xff; 300]);
    init_page(&mut p, 3);
    assert_eq!(&p.bytes()[0..4], b"MIGT");
    assert!(
        p.bytes()[64..abi::GUEST_AREA_OFFSET]
            .iter()
            .all(|&b| b == 0),
        "the host's part is zeroed"
    );
    let ok = read_snapshot(&p, 1).unwrap();
    assert_eq!(
        ok.snapshot,
        Snapshot {
            migration_seq: 3,
            ..Snapshot::default()
        }
    );
    assert_eq!(host_area(&p).size, 64);
}

#[test]
fn update_is_read_back_consistently() {
    let mut p = valid_page();
    let u = Update {
        migration_seq: 1,
        flags: 0,
        tai_delta_ns: 2_000_123_456,
        tai_delta_total_ns: 2_000_123_456,
    };
    assert_eq!(write_update(&mut p, &u, End::Even), 2);
    let s = read_snapshot(&p, 1).unwrap().snapshot;
    assert_eq!(
        s,
        Snapshot {
            seq_count: 2,
            flags: 0,
            migration_seq: 1,
            tai_delta_ns: 2_000_123_456,
            tai_delta_total_ns: 2_000_123_456
        }
    );
    assert_eq!(snapshot_of(&host_area(&p)), s);
    // A second, compensated update: negative values survive the round trip.
    let u = Update {
        migration_seq: 2,
        flags: FLAG_COMPENSATED,
        tai_delta_ns: 0,
        tai_delta_total_ns: -5,
    };
    write_update(&mut p, &u, End::Even);
    let s = read_snapshot(&p, 1).unwrap().snapshot;
    assert_eq!(
        (s.seq_count, s.flags, s.migration_seq, s.tai_delta_total_ns),
        (4, 1, 2, -5)
    );
}

#[test]
fn stuck_odd_page_is_unreadable_and_next_write_recovers() {
    let mut p = valid_page();
    let u = Update {
        migration_seq: 1,
        ..Update::default()
    };
    assert_eq!(write_update(&mut p, &u, End::LeaveOdd), 1);
    assert_eq!(read_snapshot(&p, 3), Err(ReadError::Busy { attempts: 3 }));
    let u = Update {
        migration_seq: 2,
        ..Update::default()
    };
    assert_eq!(write_update(&mut p, &u, End::Even), 4);
    assert!(read_snapshot(&p, 1).is_ok());
    assert_eq!((odd_after(4), odd_after(5), odd_after(u32::MAX)), (5, 7, 1));
}

#[test]
fn the_writer_publishes_nothing_until_its_count_is_even() {
    // Apply the stores one at a time: before the last count store every read
    // is busy or sees the old values, after it the new ones.
    let mut p = valid_page();
    let old = read_snapshot(&p, 1).unwrap().snapshot;
    let u = Update {
        migration_seq: 1,
        flags: 0,
        tai_delta_ns: 7,
        tai_delta_total_ns: 7,
    };
    let stores = u.seqlocked(0, End::Even);
    let last_count = stores
        .as_slice()
        .iter()
        .rposition(|s| matches!(s, Store::U32(off, _) if *off == host_off::SEQ_COUNT))
        .unwrap();
    for (i, s) in stores.as_slice().iter().enumerate() {
        s.apply(&mut p);
        match read_snapshot(&p, 1) {
            Ok(ok) if i < last_count => assert_eq!(ok.snapshot, old, "store {i}"),
            Ok(ok) => assert_eq!(ok.snapshot.migration_seq, 1, "store {i}"),
            Err(e) => assert!(i < last_count, "store {i}: {e:?}"),
        }
    }
}

#[test]
fn next_update_follows_the_abi() {
    let cur = HostArea {
        migration_seq: 4,
        flags: FLAG_COMPENSATED | 0x80,
        tai_delta_total_ns: 100,
        ..HostArea::default()
    };
    assert_eq!(
        Update::next(&cur, 25, false),
        Some(Update {
            migration_seq: 5,
            flags: 0x80,
            tai_delta_ns: 25,
            tai_delta_total_ns: 125
        })
    );
    assert_eq!(
        Update::next(&cur, 25, true),
        Some(Update {
            migration_seq: 5,
            flags: FLAG_COMPENSATED | 0x80,
            tai_delta_ns: 0,
            tai_delta_total_ns: 100
        })
    );
    let full = HostArea {
        tai_delta_total_ns: i64::MAX,
        ..cur
    };
    assert_eq!(Update::next(&full, 1, false), None, "total overflows");
    let last = HostArea {
        migration_seq: u64::MAX,
        ..cur
    };
    assert_eq!(Update::next(&last, 1, true), None, "sequence overflows");
}

#[test]
fn raw_host_area_round_trips_every_field() {
    let h = HostArea {
        magic: 1,
        version: 2,
        size: 3,
        seq_count: 5,
        flags: 6,
        migration_seq: 7,
        tai_delta_ns: -8,
        tai_delta_total_ns: -9,
        reserved: [10, 11, 12],
    };
    let p = MemPage::with_host_area(&h);
    assert_eq!(host_area(&p), h);
    let mut q = valid_page();
    write_host_area(&mut q, &h);
    assert_eq!(q, p);
}

#[test]
fn guest_area_reads_what_a_guest_wrote() {
    let mut p = valid_page();
    assert_eq!(read_guest_area(&p, 1), Some(GuestArea::default()));
    p.write_u32(abi::guest_off::SEQ_COUNT, 1);
    assert_eq!(
        read_guest_area(&p, 5),
        None,
        "odd guest count must not read"
    );
    let g = GuestArea {
        outcome: 1,
        ack_seq: 7,
        intended_ns: 9,
        applied_ns: -3,
        applied_total_ns: 11,
        ack_realtime_ns: 12,
        events: 2,
        size: abi::GUEST_AREA_SIZE as u32,
        timing: Timing {
            wake_mono_ns: 13,
            work_mono_ns: 14,
            done_mono_ns: 15,
            wake_source: 1,
            step_method: 2,
            sets: 3,
            ..Timing::default()
        },
        ..GuestArea::default()
    };
    guest_area_write(1, &g, End::Even).apply(&mut p);
    assert_eq!(
        read_guest_area(&p, 1),
        Some(GuestArea { seq_count: 4, ..g })
    );
}

#[test]
fn guest_area_reader_never_returns_a_torn_write() {
    let old = GuestArea {
        ack_seq: 1,
        events: 1,
        ..GuestArea::default()
    };
    let new = GuestArea {
        ack_seq: 2,
        events: 2,
        applied_ns: 5,
        ..GuestArea::default()
    };
    let (mut seen_old, mut seen_new) = (false, false);
    for at in 1..=30u64 {
        for burst in 1..=24 {
            let mut page = valid_page();
            guest_area_write(0, &old, End::Even).apply(&mut page);
            // After read number `at` (from 1), the guest performs `burst`
            // stores of its next write at once.
            let pending = guest_area_write(2, &new, End::Even);
            let r = Interleaved::new(page, |n, p: &mut MemPage| {
                if n + 1 == at {
                    for s in pending.as_slice().iter().take(burst) {
                        s.apply(p);
                    }
                }
            });
            if let Some(g) = read_guest_area(&r, 3) {
                let fields = (g.ack_seq, g.events, g.applied_ns);
                assert!(fields == (1, 1, 0) || fields == (2, 2, 5), "torn: {g:?}");
                seen_old |= fields.0 == 1;
                seen_new |= fields.0 == 2;
            }
        }
    }
    assert!(seen_old && seen_new, "reads before and after the write");
}
