// SPDX-License-Identifier: GPL-2.0

//! The seqlock read: header check, torn reads never accepted, bounded attempts.

use migtime_abi::abi::{host_off, HeaderError, HostArea};
use migtime_abi::page::{v1_host_area, End, Interleaved, MemPage, PageWriter, Store, Update};
use migtime_abi::seqlock::{read_snapshot, PageReader, ReadError, Snapshot};
use std::cell::Cell;

/// A valid page holding these values, seq_count 0.
fn page(seq: u64, flags: u32, delta: i64, total: i64) -> MemPage {
    MemPage::with_host_area(&HostArea {
        flags,
        tai_delta_ns: delta,
        tai_delta_total_ns: total,
        ..v1_host_area(seq)
    })
}

#[test]
fn consistent_page_reads_in_one_attempt() {
    let p = page(7, 1, 0, 42);
    let ok = read_snapshot(&p, 4).unwrap();
    assert_eq!(ok.attempts, 1);
    assert_eq!(
        ok.snapshot,
        Snapshot {
            seq_count: 0,
            flags: 1,
            migration_seq: 7,
            tai_delta_ns: 0,
            tai_delta_total_ns: 42
        }
    );
}

#[test]
fn header_checked() {
    let mut p = page(1, 0, 0, 0);
    p.write_u32(host_off::MAGIC, 0xdead_beef);
    assert_eq!(
        read_snapshot(&p, 4),
        Err(ReadError::Header(HeaderError::BadMagic(0xdead_beef)))
    );
    let mut p = page(1, 0, 0, 0);
    p.write_u16(host_off::VERSION, 2);
    assert_eq!(
        read_snapshot(&p, 4),
        Err(ReadError::Header(HeaderError::BadVersion(2)))
    );
    for bad in [0u16, 63, 257, u16::MAX] {
        let mut p = page(1, 0, 0, 0);
        p.write_u16(host_off::SIZE, bad);
        assert_eq!(
            read_snapshot(&p, 4),
            Err(ReadError::Header(HeaderError::BadSize(bad)))
        );
    }
    for good in [64u16, 128, 256] {
        let mut p = page(1, 0, 0, 0);
        p.write_u16(host_off::SIZE, good);
        assert!(read_snapshot(&p, 4).is_ok());
    }
}

#[test]
fn stuck_odd_is_busy_after_exactly_max_attempts() {
    let mut p = page(1, 0, 0, 0);
    p.write_u32(host_off::SEQ_COUNT, 3);
    for max in [1u32, 2, 64, 1000] {
        let r = Counting {
            page: p.clone(),
            seq_reads: Cell::new(0),
        };
        assert_eq!(
            read_snapshot(&r, max),
            Err(ReadError::Busy { attempts: max })
        );
        assert_eq!(r.seq_reads.get(), max, "one count read per attempt");
    }
    // Zero means one attempt.
    assert_eq!(read_snapshot(&p, 0), Err(ReadError::Busy { attempts: 1 }));
}

struct Counting {
    page: MemPage,
    seq_reads: Cell<u32>,
}

impl PageReader for Counting {
    fn read_u16(&self, o: usize) -> u16 {
        self.page.read_u16(o)
    }
    fn read_u32(&self, o: usize) -> u32 {
        if o == host_off::SEQ_COUNT {
            self.seq_reads.set(self.seq_reads.get() + 1);
        }
        self.page.read_u32(o)
    }
    fn read_u64(&self, o: usize) -> u64 {
        self.page.read_u64(o)
    }
    fn read_barrier(&self) {}
}

/// A host that rewrites the page with the seqlock writer (count odd, fields, count even):
/// `chunk` stores after every `period` reads (the first after `period - offset`), so reads
/// interleave with writes at every possible point, the writer sometimes overtaking the reader. Generation `n` has migration_seq = n,
/// tai_delta = n, total = n * (n + 1) / 2, flags = n & 1: any mix of two generations is
/// detectable.
fn racing_host(offset: u64, period: u64, chunk: usize) -> impl FnMut(u64, &mut MemPage) {
    let mut gen = 0u64;
    let mut pending: Vec<Store> = Vec::new();
    move |n, p| {
        if (n + 1 + offset) % period != 0 {
            return;
        }
        if pending.is_empty() {
            gen += 1;
            let u = Update {
                migration_seq: gen,
                flags: (gen & 1) as u32,
                tai_delta_ns: gen as i64,
                tai_delta_total_ns: (gen * (gen + 1) / 2) as i64,
            };
            pending = u
                .seqlocked(p.read_u32(host_off::SEQ_COUNT), End::Even)
                .as_slice()
                .to_vec();
        }
        for s in pending.drain(..chunk.min(pending.len())) {
            s.apply(p);
        }
    }
}

#[test]
fn never_accepts_a_torn_snapshot() {
    let mut accepted = 0;
    for (period, chunk) in (1..=12u64).flat_map(|p| (1..=3).map(move |c| (p, c))) {
        for offset in 0..period {
            let r = Interleaved::new(page(0, 0, 0, 0), racing_host(offset, period, chunk));
            for _ in 0..50 {
                match read_snapshot(&r, 8) {
                    Ok(ok) => {
                        let s = ok.snapshot;
                        let n = s.migration_seq;
                        assert_eq!(s.seq_count % 2, 0);
                        assert_eq!(s.tai_delta_ns as u64, n, "torn: {s:?}");
                        assert_eq!(s.tai_delta_total_ns as u64, n * (n + 1) / 2, "torn: {s:?}");
                        assert_eq!(u64::from(s.flags), n & 1, "torn: {s:?}");
                        accepted += 1;
                    }
                    Err(ReadError::Busy { attempts }) => assert_eq!(attempts, 8),
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        }
    }
    assert!(
        accepted > 0,
        "the racing host must not make every read fail"
    );
}
