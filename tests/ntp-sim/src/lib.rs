// SPDX-License-Identifier: GPL-2.0

//! An NTP server for the harness that serves a *simulated* host's clock.
//!
//! Each QEMU's user-mode network maps the guest's 10.0.2.2 to the host's loopback, and only
//! one guest runs at a time, so one server is enough: the harness switches its [`Timeline`]
//! at `cont` from the source host's clock to the destination's (an offset, and a rate
//! difference of tens of ppm as between two hosts' oscillators). Every timestamp the server
//! puts in a reply, receive and transmit alike, comes from that timeline.
//!
//! The packet handling is the ntpd-rs project's `ntp-proto` (parsing, the server reply with
//! its header fields, serialisation); this crate only supplies the clock
//! ([`SimClock`], an `ntp_proto::NtpClock`) and the UDP loop. ntp-proto exposes that API
//! behind its `__internal-api` feature, so the version is pinned.

use anyhow::{Context, Result};
use ntp_proto::{
    NoCipher, NtpClock, NtpDuration, NtpLeapIndicator, NtpPacket, NtpTimestamp, ReferenceId,
    SystemSnapshot,
};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Seconds from the NTP era (1900) to the Unix epoch.
const NTP_UNIX_OFFSET_S: i64 = 2_208_988_800;

/// The simulated host clock against the real one: `sim(t) = t + offset_ns + (t - since_ns) * ppm`,
/// with `t` the real host CLOCK_REALTIME in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Offset at `since_ns`, ns.
    pub offset_ns: i64,
    /// Rate difference, parts per million (positive: the simulated clock runs fast).
    pub ppm: f64,
    /// Real host time at which this timeline starts, ns.
    pub since_ns: i64,
}

impl Timeline {
    /// The simulated time at real host time `real_ns`.
    pub fn at(&self, real_ns: i64) -> i64 {
        let drift = ((real_ns - self.since_ns) as f64 * self.ppm * 1e-6).round() as i64;
        real_ns + self.offset_ns + drift
    }

    /// The simulated clock minus the real one at `real_ns`, ns.
    pub fn offset_at(&self, real_ns: i64) -> i64 {
        self.at(real_ns) - real_ns
    }
}

/// The real host CLOCK_REALTIME, ns.
pub fn real_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Unix ns to an NTP timestamp (era 0, as NTPv4 on the wire).
pub fn ntp_timestamp(unix_ns: i64) -> NtpTimestamp {
    let ntp_ns = unix_ns + NTP_UNIX_OFFSET_S * 1_000_000_000;
    let secs = ntp_ns.div_euclid(1_000_000_000);
    let nanos = ntp_ns.rem_euclid(1_000_000_000);
    // Era 0 ends in 2036; wrapping to u32 is what the wire format does.
    NtpTimestamp::from_seconds_nanos_since_ntp_era(secs as u32, nanos as u32)
}

/// The clock ntp-proto stamps replies with: the shared [`Timeline`] over the real clock.
/// Read-only: every steering call is refused.
#[derive(Clone, Debug)]
pub struct SimClock {
    timeline: Arc<Mutex<Timeline>>,
}

/// What [`SimClock`] answers to a steering request.
#[derive(Debug)]
pub struct ReadOnlyClock;

impl std::fmt::Display for ReadOnlyClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the simulated host clock is not steered by NTP")
    }
}

impl std::error::Error for ReadOnlyClock {}

impl NtpClock for SimClock {
    type Error = ReadOnlyClock;

    fn now(&self) -> Result<NtpTimestamp, Self::Error> {
        let tl = *self.timeline.lock().expect("timeline lock");
        Ok(ntp_timestamp(tl.at(real_ns())))
    }
    fn set_frequency(&self, _: f64) -> Result<NtpTimestamp, Self::Error> {
        Err(ReadOnlyClock)
    }
    fn get_frequency(&self) -> Result<f64, Self::Error> {
        Ok(0.0)
    }
    fn step_clock(&self, _: NtpDuration) -> Result<NtpTimestamp, Self::Error> {
        Err(ReadOnlyClock)
    }
    fn disable_ntp_algorithm(&self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn error_estimate_update(&self, _: NtpDuration, _: NtpDuration) -> Result<(), Self::Error> {
        Ok(())
    }
    fn status_update(&self, _: NtpLeapIndicator) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A running server; stops when dropped.
pub struct NtpSim {
    timeline: Arc<Mutex<Timeline>>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl NtpSim {
    /// Binds `addr` (port 0: any free port) and serves the real clock until [`NtpSim::set`].
    pub fn start(addr: SocketAddr) -> Result<Self> {
        let sock = UdpSocket::bind(addr).with_context(|| format!("bind NTP server to {addr}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = sock.local_addr()?;
        let timeline = Arc::new(Mutex::new(Timeline {
            since_ns: real_ns(),
            ..Default::default()
        }));
        let clock = SimClock {
            timeline: timeline.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (stop2, served2) = (stop.clone(), served.clone());
        let thread = std::thread::Builder::new()
            .name("ntp-sim".into())
            .spawn(move || serve(sock, clock, stop2, served2))?;
        Ok(Self {
            timeline,
            addr,
            stop,
            served,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches to another simulated host from now on: its clock is `offset_ns` off the real
    /// one now and runs `ppm` fast.
    pub fn set(&self, offset_ns: i64, ppm: f64) -> Timeline {
        let tl = Timeline {
            offset_ns,
            ppm,
            since_ns: real_ns(),
        };
        *self.timeline.lock().expect("timeline lock") = tl;
        tl
    }

    /// The current timeline.
    pub fn timeline(&self) -> Timeline {
        *self.timeline.lock().expect("timeline lock")
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for NtpSim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The system state the replies advertise: a synchronised stratum-1 server.
fn system() -> SystemSnapshot {
    let mut s = SystemSnapshot {
        stratum: 1,
        reference_id: ReferenceId::from_ip("127.0.0.1".parse().expect("ip")),
        ..Default::default()
    };
    s.time_snapshot.leap_indicator = NtpLeapIndicator::NoWarning;
    s.time_snapshot.precision = NtpDuration::from_exponent(-20);
    s
}

fn serve(sock: UdpSocket, clock: SimClock, stop: Arc<AtomicBool>, served: Arc<AtomicU64>) {
    let mut buf = [0u8; 1024];
    let system = system();
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let Ok(recv) = clock.now() else {
            continue;
        };
        let Ok((packet, _)) = NtpPacket::deserialize(&buf[..n], &NoCipher) else {
            continue;
        };
        let reply = NtpPacket::timestamp_response(&system, packet, recv, &clock);
        let mut out = [0u8; 1024];
        let mut cursor = std::io::Cursor::new(&mut out[..]);
        if reply.serialize(&mut cursor, &NoCipher, None).is_ok() {
            let len = cursor.position() as usize;
            if sock.send_to(&out[..len], peer).is_ok() {
                served.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_offset_and_rate() {
        let tl = Timeline {
            offset_ns: 500_000_000,
            ppm: 50.0,
            since_ns: 1_000_000_000_000,
        };
        assert_eq!(tl.offset_at(1_000_000_000_000), 500_000_000);
        // 100 s later: 50 ppm is 5 ms more.
        assert_eq!(tl.offset_at(1_100_000_000_000), 505_000_000);
        let tl = Timeline { ppm: -20.0, ..tl };
        assert_eq!(tl.offset_at(1_010_000_000_000), 500_000_000 - 200_000);
    }

    #[test]
    fn ntp_timestamps_count_from_1900() {
        let t = ntp_timestamp(0);
        assert_eq!(
            t,
            NtpTimestamp::from_seconds_nanos_since_ntp_era(2_208_988_800, 0)
        );
        let t = ntp_timestamp(1_500_000_000);
        assert_eq!(
            t,
            NtpTimestamp::from_seconds_nanos_since_ntp_era(2_208_988_801, 500_000_000)
        );
    }
}
