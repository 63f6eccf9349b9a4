// SPDX-License-Identifier: GPL-2.0

//! The seqlock read: header check, torn reads never accepted, bounded attempts.

use migtime_abi::abi::{self, host_off, HeaderError};
use migtime_abi::seqlock::{read_snapshot, PageReader, ReadError, Snapshot};
use std::cell::{Cell, RefCell};

/// A page in memory.
#[derive(Clone)]
struct Page(Vec<u8>);

impl Page {
    fn new(seq: u64, flags: u32, delta: i64, total: i64) -> Self {
        let mut p = Page(vec![0; abi::PAGE_BYTES]);
        p.put32(host_off::MAGIC, abi::MAGIC);
        p.put16(host_off::VERSION, abi::VERSION);
        p.put16(host_off::SIZE, abi::HOST_AREA_V1_SIZE as u16);
        p.put32(host_off::FLAGS, flags);
        p.put64(host_off::MIGRATION_SEQ, seq);
        p.put64(host_off::TAI_DELTA, delta as u64);
        p.put64(host_off::TAI_DELTA_TOTAL, total as u64);
        p
    }
    fn put16(&mut self, o: usize, v: u16) {
        self.0[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, o: usize, v: u32) {
        self.0[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(&mut self, o: usize, v: u64) {
        self.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
}

impl PageReader for Page {
    fn read_u16(&self, o: usize) -> u16 {
        u16::from_le_bytes(self.0[o..o + 2].try_into().unwrap())
    }
    fn read_u32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.0[o..o + 4].try_into().unwrap())
    }
    fn read_u64(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.0[o..o + 8].try_into().unwrap())
    }
    fn read_barrier(&self) {}
}

#[test]
fn consistent_page_reads_in_one_attempt() {
    let p = Page::new(7, 1, 0, 42);
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
    let mut p = Page::new(1, 0, 0, 0);
    p.put32(host_off::MAGIC, 0xdead_beef);
    assert_eq!(
        read_snapshot(&p, 4),
        Err(ReadError::Header(HeaderError::BadMagic(0xdead_beef)))
    );
    let mut p = Page::new(1, 0, 0, 0);
    p.put16(host_off::VERSION, 2);
    assert_eq!(
        read_snapshot(&p, 4),
        Err(ReadError::Header(HeaderError::BadVersion(2)))
    );
    for bad in [0u16, 63, 257, u16::MAX] {
        let mut p = Page::new(1, 0, 0, 0);
        p.put16(host_off::SIZE, bad);
        assert_eq!(
            read_snapshot(&p, 4),
            Err(ReadError::Header(HeaderError::BadSize(bad)))
        );
    }
    for good in [64u16, 128, 256] {
        let mut p = Page::new(1, 0, 0, 0);
        p.put16(host_off::SIZE, good);
        assert!(read_snapshot(&p, 4).is_ok());
    }
}

#[test]
fn stuck_odd_is_busy_after_exactly_max_attempts() {
    let mut p = Page::new(1, 0, 0, 0);
    p.put32(host_off::SEQ_COUNT, 3);
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
    page: Page,
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

/// A host that rewrites the page (full seqlock write: odd, fields, even) after every `period`
/// field reads, so reads interleave with writes at every possible point. Generation `n` has
/// migration_seq = n, tai_delta = n, total = n * (n + 1) / 2: any mix of two generations is
/// detectable.
struct Racing {
    page: RefCell<Page>,
    reads: Cell<u64>,
    period: u64,
    gen: Cell<u64>,
    /// Position inside the current write: 0 idle, 1 odd written, fields half written.
    phase: Cell<u8>,
}

impl Racing {
    fn step(&self) {
        let r = self.reads.get() + 1;
        self.reads.set(r);
        if r % self.period != 0 {
            return;
        }
        let mut p = self.page.borrow_mut();
        let seq = p.read_u32(host_off::SEQ_COUNT);
        match self.phase.get() {
            0 => {
                p.put32(host_off::SEQ_COUNT, seq.wrapping_add(1));
                self.phase.set(1);
            }
            1 => {
                let n = self.gen.get() + 1;
                p.put64(host_off::MIGRATION_SEQ, n);
                p.put64(host_off::TAI_DELTA, n);
                self.phase.set(2);
            }
            _ => {
                let n = self.gen.get() + 1;
                p.put64(host_off::TAI_DELTA_TOTAL, n * (n + 1) / 2);
                p.put32(host_off::FLAGS, (n & 1) as u32);
                p.put32(host_off::SEQ_COUNT, seq.wrapping_add(1));
                self.gen.set(n);
                self.phase.set(0);
            }
        }
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
            let r = Racing {
                page: RefCell::new(Page::new(0, 0, 0, 0)),
                reads: Cell::new(offset),
                period,
                gen: Cell::new(0),
                phase: Cell::new(0),
            };
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
