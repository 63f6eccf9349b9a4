// SPDX-License-Identifier: GPL-2.0

//! Waiting for the guest's ack (a [`Ack`] record) in its guest area.

use std::time::{Duration, Instant};

use crate::base::clock::realtime_ns;
use crate::record::ack::Ack;
use crate::vm::page::PageFile;

/// Polls the guest area until `events` moves past `events_before`.
pub fn wait_ack(
    page: &PageFile,
    events_before: u64,
    t_cont: Instant,
    timeout: Duration,
) -> Option<Ack> {
    let deadline = t_cont + timeout;
    loop {
        if let Some(g) = page.guest_area() {
            if g.events > events_before {
                return Some(Ack {
                    area: g,
                    latency_ms: t_cont.elapsed().as_secs_f64() * 1e3,
                    host_minus_guest_ns: realtime_ns() - g.ack_realtime_ns,
                });
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
