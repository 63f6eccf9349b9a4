// SPDX-License-Identifier: GPL-2.0

//! Guest clock against the simulated host clock, measured from the host: the
//! probe.
//!
//! The guest runs `mt_probe` (tests/guest/mt_probe.c), a UDP responder on port
//! [`crate::vm::devices::PROBE_GUEST_PORT`]; each QEMU forwards a host port of
//! its own to it ([`ProbePorts`]). [`Probe`] sends a request to every forwarded
//! port every [`PROBE_PERIOD`] (only the running guest answers) and pairs each
//! reply NTP-style: with the host's send and receive times `t1`, `t4` read on
//! the simulated host clock and the guest's receive and transmit times `g2`,
//! `g3`,
//!
//! ```text
//! err   = ((g2 - t1) + (g3 - t4)) / 2      guest - host
//! bound = ((t4 - t1) - (g3 - g2)) / 2      |err - true error| <= bound
//! ```
//!
//! `bound`, half the round trip's network delay (QEMU's slirp, virtio-net, the
//! guest's interrupt path), is the pairing error of the sample, stated with
//! every number. What the samples say about a migration: `pairing.rs`.

use migtime_ntp_sim::{real_ns, Timeline};
use serde::Serialize;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::vm::devices::ProbePorts;

/// One request per forwarded port this often.
pub const PROBE_PERIOD: Duration = Duration::from_millis(50);

/// "In sync": |guest - host| below this (5 ms).
pub const WITHIN_NS: i64 = 5_000_000;

/// Request magic; a request is the magic, a sequence number and the host send time.
const MAGIC: &[u8; 4] = b"MTPR";
const REQ_LEN: usize = 16;
const REPLY_LEN: usize = REQ_LEN + 16;

/// One guest-host comparison.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct PairSample {
    /// Host real time at the middle of the exchange, ns.
    pub host_ns: i64,
    /// Guest CLOCK_REALTIME minus the simulated host clock, ns.
    pub err_ns: i64,
    /// Half the round trip's network delay: the most `err_ns` can be off, ns.
    pub bound_ns: i64,
}

impl PairSample {
    /// Within [`WITHIN_NS`] of the host, whatever the pairing error.
    pub fn surely_in(&self) -> bool {
        self.err_ns.abs() + self.bound_ns < WITHIN_NS
    }

    /// Beyond [`WITHIN_NS`], whatever the pairing error.
    pub fn surely_out(&self) -> bool {
        self.err_ns.abs() - self.bound_ns >= WITHIN_NS
    }
}

/// Pairs one reply: the request's host send time `t1` and receive time `t4` (real host
/// clock, ns) read on `tl`, and the guest's receive and transmit times. None when the guest
/// held the request longer than the whole round trip took: its clock was stepped forward
/// in between, and the two guest times belong to different clocks.
pub fn pair(tl: &Timeline, t1: i64, t4: i64, g2: i64, g3: i64) -> Option<PairSample> {
    let (h1, h4) = (tl.at(t1), tl.at(t4));
    let delay = (h4 - h1) - (g3 - g2);
    (delay >= 0).then(|| PairSample {
        host_ns: t1 + (t4 - t1) / 2,
        err_ns: ((g2 - h1) + (g3 - h4)) / 2,
        bound_ns: delay / 2,
    })
}

/// The prober: a thread sending requests and pairing the replies until [`Probe::finish`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<PairSample>>>,
}

impl Probe {
    /// Starts probing the forwarded `ports`; `timeline` is the simulated host clock now.
    pub fn start(
        timeline: Arc<dyn Fn() -> Timeline + Send + Sync>,
        ports: ProbePorts,
    ) -> std::io::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(5)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut seq: u32 = 0;
            let mut next = real_ns();
            while !stop2.load(Ordering::Relaxed) {
                if real_ns() >= next {
                    next += PROBE_PERIOD.as_nanos() as i64;
                    for p in ports.list() {
                        seq = seq.wrapping_add(1);
                        let mut req = [0u8; REQ_LEN];
                        req[..4].copy_from_slice(MAGIC);
                        req[4..8].copy_from_slice(&seq.to_le_bytes());
                        req[8..].copy_from_slice(&real_ns().to_le_bytes());
                        let _ = sock.send_to(&req, ("127.0.0.1", p));
                    }
                }
                let mut buf = [0u8; 64];
                if let Ok(n) = sock.recv(&mut buf) {
                    let t4 = real_ns();
                    if let Some(s) = Self::reply(&buf[..n], t4, &timeline()) {
                        out.push(s);
                    }
                }
            }
            out
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// One reply to a sample, unless malformed or the host clock switched during its exchange
    /// (then its two ends belong to different hosts).
    fn reply(b: &[u8], t4: i64, tl: &Timeline) -> Option<PairSample> {
        if b.len() != REPLY_LEN || &b[..4] != MAGIC {
            return None;
        }
        let le = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let (t1, g2, g3) = (le(8), le(16), le(24));
        pair(tl, t1, t4, g2, g3).filter(|_| t1 >= tl.since_ns)
    }

    /// Stops the thread; the samples in host time order.
    pub fn finish(mut self) -> Vec<PairSample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut v = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        v.sort_by_key(|s| s.host_ns);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_is_ntp_style_and_reads_the_simulated_clock() {
        let tl = Timeline {
            offset_ns: 500_000_000,
            ppm: 0.0,
            since_ns: 0,
        };
        // Guest exactly on the simulated clock, 1 ms each way, 0.2 ms in the guest.
        let s = pair(&tl, 10_000_000, 12_200_000, 511_000_000, 511_200_000).unwrap();
        assert_eq!(s.err_ns, 0);
        assert_eq!(s.bound_ns, 1_000_000);
        assert_eq!(s.host_ns, 11_100_000);
        // Guest 3 ms behind.
        let s = pair(&tl, 10_000_000, 12_200_000, 508_000_000, 508_200_000).unwrap();
        assert_eq!(s.err_ns, -3_000_000);
        // Stepped forward by 2.5 s between receive and transmit: not a sample.
        assert_eq!(
            pair(&tl, 10_000_000, 12_200_000, 508_000_000, 3_008_200_000),
            None
        );
    }

    #[test]
    fn replies_across_a_host_switch_are_dropped() {
        let tl = Timeline {
            offset_ns: 0,
            ppm: 0.0,
            since_ns: 100,
        };
        let mut b = vec![0u8; REPLY_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&99i64.to_le_bytes());
        assert_eq!(Probe::reply(&b, 200, &tl), None);
        b[8..16].copy_from_slice(&100i64.to_le_bytes());
        assert!(Probe::reply(&b, 200, &tl).is_some());
        assert_eq!(Probe::reply(&b[..20], 200, &tl), None);
    }
}
