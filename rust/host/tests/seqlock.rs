// SPDX-License-Identifier: GPL-2.0

//! The seqlock read: header check, torn reads never accepted, bounded attempts.

use migtime_abi::abi::{host_off, HeaderError, HostArea};
use migtime_abi::page::{v1_host_area, End, MemPage, PageWriter, Store, Update};
use migtime_abi::seqlock::{read_snapshot, PageReader, ReadError, Snapshot};
use std::cell::{Cell, RefCell};

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

/// A host that rewrites the page with the seqlock writer (count odd, fields, count even), one
/// store after every `period` field reads, so reads interleave with writes at every possible
/// point. Generation `n` has migration_seq = n, tai_delta = n, total = n * (n + 1) / 2, flags =
/// n & 1: any mix of two generations is detectable.
struct Racing {
    page: RefCell<MemPage>,
    reads: Cell<u64>,
    period: u64,
    gen: Cell<u64>,
    /// The stores of the write in progress still to do.
    pending: RefCell<Vec<Store>>,
}

impl Racing {
    fn new(offset: u64, period: u64) -> Self {
        Self {
            page: RefCell::new(page(0, 0, 0, 0)),
            reads: Cell::new(offset),
            period,
            gen: Cell::new(0),
            pending: RefCell::new(Vec::new()),
        }
    }

    fn step(&self) {
        let r = self.reads.get() + 1;
        self.reads.set(r);
        if r % self.period != 0 {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            let n = self.gen.get() + 1;
            self.gen.set(n);
            let u = Update {
                migration_seq: n,
                flags: (n & 1) as u32,
                tai_delta_ns: n as i64,
                tai_delta_total_ns: (n * (n + 1) / 2) as i64,
            };
            let count = self.page.borrow().read_u32(host_off::SEQ_COUNT);
            *pending = u.seqlocked(count, End::Even).as_slice().to_vec();
        }
        pending.remove(0).apply(&mut *self.page.borrow_mut());
    }
}

impl PageReader for Racing {
    fn read_u16(&self, o: usize) -> u16 {
        let v = self.page.borrow().read_u16(o);
        self.step();
        v
    }
    fn read_u32(&self, o: usize) -> u32 {
        let v = self.page.borrow().read_u32(o);
        self.step();
        v
    }
    fn read_u64(&self, o: usize) -> u64 {
        let v = self.page.borrow().read_u64(o);
        self.step();
        v
    }
    fn read_barrier(&self) {}
}

#[test]
fn never_accepts_a_torn_snapshot() {
    let mut accepted = 0;
    for period in 1..=12u64 {
        for offset in 0..period {
            let r = Racing::new(offset, period);
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
