// SPDX-License-Identifier: GPL-2.0

//! The patched QEMU's `-device migtime` as the VMM that publishes the page
//! ([`Vmm::QemuDevice`]). QEMU writes the page itself and rings the doorbell; the
//! harness never writes it. It reads the page back from guest memory (HMP `xp` of the
//! device's BAR2) into the guest's [`PageFile`] copy, so the guest's ack and the page it
//! saw come from the guest, and checks the host area against QMP's times: the next
//! `migration_seq`, RESTORE on a restore from saved state, and Tout equal to the
//! destination's RESUME minus the source's STOP (host realtime) plus the destination's
//! `x-clock-offset-ns`.
//!
//! [`Vmm::QemuDevice`]: crate::migrate::opts::Vmm::QemuDevice

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use migtime_abi::abi::{self, FLAG_RESTORE};
use migtime_abi::page::{End, Update};
use serde_json::json;

use crate::base::clock::realtime_ns;
use crate::migrate::chain::{Chain, Dest, Written};
use crate::record::ack::Ack;
use crate::record::hop::Hop;
use crate::vm::page::PageFile;
use crate::vm::qemu::remaining;
use crate::vm::qmp::{event_time_ns, Qmp};

/// How far the device's Tout may be from QMP's STOP -> RESUME interval. QMP stamps its
/// events in microseconds after the VM-state-change handlers ran; the device reads its
/// clock in those handlers, so each end differs from its event by the time QEMU takes
/// from the handler to the event (a few ms under TCG with both vCPUs busy). A wrong
/// sequence of events (Tout from `post_load`, a missing pause, a lost offset) is off by
/// the whole blackout, seconds or days: 100 ms separates the two with room to spare.
pub const TOUT_BOUND_NS: i64 = 100_000_000;

/// The PCI ID of `-device migtime` as `info pci` prints it.
const DEVICE_ID: &str = "1b36:0016";

/// The 64-bit words read back: the host area and the guest area.
const WORDS: usize = (abi::GUEST_AREA_OFFSET + abi::GUEST_AREA_SIZE).div_ceil(8);

/// BAR2's guest-physical address of the migtime device in HMP `info pci` output.
pub fn bar2(info_pci: &str) -> Option<u64> {
    let dev = &info_pci[info_pci.find(DEVICE_ID)?..];
    // The device's block ends where the next device's begins.
    let dev = dev.split("Bus ").next()?;
    let at = dev.find("BAR2: 64 bit prefetchable memory at 0x")?;
    let hex = dev[at..].split("0x").nth(1)?;
    let hex: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// The words of an HMP `xp /Ngx` dump (the address column has no `0x`).
pub fn words(xp: &str) -> Vec<u64> {
    xp.split_whitespace()
        .filter_map(|t| t.strip_prefix("0x"))
        .filter(|t| t.len() == 16)
        .filter_map(|t| u64::from_str_radix(t, 16).ok())
        .collect()
}

fn hmp(q: &mut Qmp, cmd: &str) -> Result<String> {
    let r = q.execute(
        "human-monitor-command",
        Some(json!({ "command-line": cmd })),
        Duration::from_secs(5),
    )?;
    Ok(r.as_str().unwrap_or_default().to_string())
}

/// Reads the device page from guest memory into `page`.
pub fn read_page(q: &mut Qmp, page: &mut PageFile) -> Result<()> {
    let bar = bar2(&hmp(q, "info pci")?)
        .with_context(|| format!("no BAR2 of device {DEVICE_ID} in `info pci`"))?;
    let w = words(&hmp(q, &format!("xp /{WORDS}gx {bar:#x}"))?);
    if w.len() != WORDS {
        bail!("xp of the device page gave {} words, not {WORDS}", w.len());
    }
    page.load(&w);
    Ok(())
}

/// Polls the destination's device page until the guest's `events` moves past
/// `events_before` (the guest's ack), as `crate::migrate::ack::wait_ack` does for a file.
pub fn wait_ack(d: &mut Dest, events_before: u64, t_cont: Instant, limit: Duration) -> Option<Ack> {
    loop {
        if read_page(&mut d.q, &mut d.g.page).is_ok() {
            if let Some(g) = d.g.page.guest_area().filter(|g| g.events > events_before) {
                return Some(Ack {
                    area: g,
                    latency_ms: t_cont.elapsed().as_secs_f64() * 1e3,
                    host_minus_guest_ns: realtime_ns() - g.ack_realtime_ns,
                });
            }
        }
        if t_cont.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Chain<'_> {
    /// The destination's page once the migration arrived, before `cont`: the source's,
    /// carried as RAM. Returns the guest's `events` before the hop.
    pub(crate) fn device_page_before(&mut self, d: &mut Dest) -> Result<u64> {
        read_page(&mut d.q, &mut d.g.page)?;
        Ok(d.g.page.guest_area().map_or(0, |g| g.events))
    }

    /// Saves the running source with `migrate file:` (after a `stop`, as a user saving a VM
    /// does), quits it, waits the blackout, then loads the file on a fresh destination.
    pub(crate) fn restore_file(&mut self, hop: u32, h: &mut Hop) -> Result<Dest> {
        let file = self
            .o
            .guest
            .run_dir
            .join(format!("saved-{}.img", self.cur.name));
        let uri = format!("file:{}", file.display());
        self.out
            .stage(&format!("saving {} to {uri}", self.cur.name));
        self.cur_q.execute("stop", None, Duration::from_secs(10))?;
        let ev = self.cur_q.wait_named("STOP", remaining(self.deadline)?)?;
        h.stop_ns = event_time_ns(&ev);
        let args = Some(json!({ "uri": uri }));
        self.cur_q
            .execute("migrate", args, Duration::from_secs(10))?;
        let ends = ["completed", "failed", "cancelled"];
        let ev = self
            .cur_q
            .wait_migration(&ends, remaining(self.deadline)?)?;
        if ev["data"]["status"] != "completed" {
            bail!("saving to {uri}: {}", ev["data"]["status"]);
        }
        let _ = self.cur_q.execute("quit", None, Duration::from_secs(5));
        let ms = self.o.settings.blackout_ms;
        self.out
            .stage(&format!("saved; source quit; restoring after {ms} ms"));
        std::thread::sleep(Duration::from_millis(ms));
        h.blackout_ms = ms;
        h.restored = true;
        let d = self.start_destination(hop, Some(uri))?;
        let mut d = d;
        let ev =
            d.q.wait_migration(&["completed", "failed"], remaining(self.deadline)?)?;
        if ev["data"]["status"] != "completed" {
            bail!("restoring {}: {}", d.uri, ev["data"]["status"]);
        }
        Ok(d)
    }

    /// A plain `stop`, the blackout and `cont` of the running guest: no migration, so the
    /// device must publish nothing (the page read back before and after is the same).
    pub(crate) fn stop_cont(&mut self) -> Result<()> {
        read_page(&mut self.cur_q, &mut self.cur.page)?;
        let before = self.cur.page.host_area();
        self.cur_q.execute("stop", None, Duration::from_secs(10))?;
        self.cur_q.wait_named("STOP", remaining(self.deadline)?)?;
        let ms = self.o.settings.blackout_ms;
        self.out
            .stage(&format!("{} stopped; cont after {ms} ms", self.cur.name));
        std::thread::sleep(Duration::from_millis(ms));
        self.cur_q.execute("cont", None, Duration::from_secs(10))?;
        self.cur_q.wait_named("RESUME", remaining(self.deadline)?)?;
        read_page(&mut self.cur_q, &mut self.cur.page)?;
        let after = self.cur.page.host_area();
        self.out
            .stage(&format!("resumed; device page seq {}", after.migration_seq));
        if after != before {
            let p = format!("device page changed by stop/cont: {before:?} -> {after:?}");
            self.sum.problems.push(p);
        }
        self.sum.cancelled = true; // no migration happened: no outcome to check
        Ok(())
    }

    /// Checks the page QEMU published at the resume against QMP's times (module doc), and
    /// returns it as the hop's update.
    pub(crate) fn check_device_page(&mut self, d: &mut Dest, h: &mut Hop) -> Result<Written> {
        let old = d.g.page.host_area();
        read_page(&mut d.q, &mut d.g.page)?;
        let new = d.g.page.host_area();
        let s = &self.o.settings;
        let (Some(stop), Some(resume)) = (h.stop_ns, h.resume_ns) else {
            bail!("no QMP STOP or RESUME time for the hop");
        };
        h.frozen_ns = resume - stop;
        let skew = s.hop_skew_ns(self.sum.hops.len() as u32);
        let want = h.frozen_ns + skew;
        let flags = if h.restored { FLAG_RESTORE } else { 0 };
        let err = new.tai_delta_ns - want;
        self.out.stage(&format!(
            "device page: seq {}, flags {:#x}, Tout {} ns; QMP STOP->RESUME {} ns + offset {} ns: off by {:.3} ms",
            new.migration_seq, new.flags, new.tai_delta_ns, h.frozen_ns, skew, err as f64 / 1e6
        ));
        let mut bad = Vec::new();
        if new.migration_seq != old.migration_seq + 1 {
            bad.push(format!(
                "migration_seq {} after {}",
                new.migration_seq, old.migration_seq
            ));
        }
        if new.flags != flags {
            bad.push(format!("flags {:#x}, want {flags:#x}", new.flags));
        }
        if err.abs() > TOUT_BOUND_NS {
            bad.push(format!(
                "Tout {} ns, want {want} ns (STOP->RESUME + offset)",
                new.tai_delta_ns
            ));
        }
        if new.tai_delta_total_ns != old.tai_delta_total_ns + new.tai_delta_ns {
            bad.push(format!(
                "total {} after {}",
                new.tai_delta_total_ns, old.tai_delta_total_ns
            ));
        }
        for b in bad {
            self.sum
                .problems
                .push(format!("device page of {}: {b}", d.g.name));
        }
        h.tout_ns = new.tai_delta_ns;
        h.page = new;
        self.sum.tai_delta_total_ns = new.tai_delta_total_ns;
        let u = Update {
            migration_seq: new.migration_seq,
            flags: new.flags,
            tai_delta_ns: new.tai_delta_ns,
            tai_delta_total_ns: new.tai_delta_total_ns,
        };
        Ok(Written { u, end: End::Even })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO_PCI: &str = "  Bus  0, device   2, function 0:
    Ethernet controller: PCI device 8086:10d3
      BAR2: 64 bit prefetchable memory at 0xfd000000 [0xfd000fff].
  Bus  0, device   3, function 0:
    Class 2176: PCI device 1b36:0016
      BAR1: 32 bit memory at 0xfebd1000 [0xfebd1fff].
      BAR2: 64 bit prefetchable memory at 0xfe000000 [0xfe000fff].
      id \"mt\"
  Bus  0, device   4, function 0:
      BAR2: 64 bit prefetchable memory at 0xfc000000 [0xfc000fff].
";

    #[test]
    fn finds_the_device_bar2_only() {
        assert_eq!(bar2(INFO_PCI), Some(0xfe00_0000));
        assert_eq!(bar2(&INFO_PCI.replace("1b36:0016", "1af4:1110")), None);
        let no_bar = INFO_PCI.replace("BAR2: 64 bit prefetchable memory at 0xfe000000", "");
        assert_eq!(bar2(&no_bar), None);
    }

    #[test]
    fn reads_the_words_of_an_xp_dump() {
        let xp = "00000000fe000000: 0x000000010040544e 0x0000000000000002\r\n\
                  00000000fe000010: 0x0000000000000003 0xffffffffffffffff\r\n";
        assert_eq!(words(xp), [0x1_0040_544e, 2, 3, u64::MAX]);
    }
}
