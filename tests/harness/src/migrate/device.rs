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
use migtime_abi::abi::{self, HostArea, Outcome, FLAG_RESTORE};
use migtime_abi::page::{End, Update};
use serde_json::json;

use crate::base::clock::realtime_ns;
use crate::base::output::Reporter;
use crate::migrate::chain::{Chain, Dest, Written};
use crate::record::ack::Ack;
use crate::record::hop::Hop;
use crate::vm::page::PageFile;
use crate::vm::qemu::remaining;
use crate::vm::qmp::Qmp;

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

pub(crate) fn hmp(q: &mut Qmp, cmd: &str) -> Result<String> {
    let r = q.execute(
        "human-monitor-command",
        Some(json!({ "command-line": cmd })),
        Duration::from_secs(5),
    )?;
    Ok(r.as_str().unwrap_or_default().to_string())
}

/// BAR2's address of the device, from HMP `info pci`.
fn find_bar2(q: &mut Qmp) -> Result<u64> {
    bar2(&hmp(q, "info pci")?)
        .with_context(|| format!("no BAR2 of device {DEVICE_ID} in `info pci`"))
}

/// Reads the device page at guest-physical `bar` into `page` (one HMP `xp`).
fn read_page_at(q: &mut Qmp, bar: u64, page: &mut PageFile) -> Result<()> {
    let w = words(&hmp(q, &format!("xp /{WORDS}gx {bar:#x}"))?);
    if w.len() != WORDS {
        bail!("xp of the device page gave {} words, not {WORDS}", w.len());
    }
    page.load(&w);
    Ok(())
}

/// Reads the device page from guest memory into `page`.
pub fn read_page(q: &mut Qmp, page: &mut PageFile) -> Result<()> {
    let bar = find_bar2(q)?;
    read_page_at(q, bar, page)
}

/// Polls a device page (`q`'s guest, read into `page`) until the guest's `events` moves
/// past `events_before` (the guest's ack), as `crate::migrate::ack::wait_ack` does for a file:
/// one HMP `xp` every 1 ms (BAR2 looked up once), so the ack is seen within a millisecond
/// plus an HMP round trip of it becoming visible.
pub fn wait_ack(
    q: &mut Qmp,
    page: &mut PageFile,
    events_before: u64,
    t_cont: Instant,
    limit: Duration,
) -> Option<Ack> {
    let mut bar = None;
    loop {
        if bar.is_none() {
            bar = find_bar2(q).ok();
        }
        let read = bar.is_some_and(|b| read_page_at(q, b, page).is_ok());
        if let Some(g) = read.then(|| page.guest_area()).flatten() {
            if g.events > events_before {
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
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the page QEMU publishes at a resume must say, besides QMP's times.
pub struct Want {
    /// The host area of the state that was loaded (the source's, carried as RAM).
    pub old: HostArea,
    /// `x-clock-offset-ns` of the QEMU whose VM froze and of the one resuming it.
    pub offsets_ns: (i64, i64),
    /// RESTORE: the state came from a file or a snapshot.
    pub restore: bool,
}

/// Reads the page QEMU published at the resume of `h` and checks it (module doc): the next
/// `migration_seq`, the flags, Tout = RESUME - STOP + the offset difference, the total.
/// Fills in `h`'s Tout and page; returns the hop's update and what is wrong with the page.
pub fn check_page(
    q: &mut Qmp,
    page: &mut PageFile,
    h: &mut Hop,
    w: &Want,
    out: &dyn Reporter,
) -> Result<(Written, Vec<String>)> {
    read_page(q, page)?;
    let (old, new) = (w.old, page.host_area());
    let (Some(stop), Some(resume)) = (h.stop_ns, h.resume_ns) else {
        bail!("no QMP STOP or RESUME time for the hop");
    };
    h.frozen_ns = resume - stop;
    let offset = w.offsets_ns.1 - w.offsets_ns.0;
    let want = h.frozen_ns + offset;
    let flags = if w.restore { FLAG_RESTORE } else { 0 };
    let err = new.tai_delta_ns - want;
    out.stage(&format!(
        "device page: seq {}, flags {:#x}, Tout {} ns; QMP STOP->RESUME {} ns + offset {offset} ns: off by {:.3} ms",
        new.migration_seq, new.flags, new.tai_delta_ns, h.frozen_ns, err as f64 / 1e6
    ));
    let mut bad = Vec::new();
    if new.migration_seq != old.migration_seq + 1 {
        let (n, o) = (new.migration_seq, old.migration_seq);
        bad.push(format!("migration_seq {n} after {o}"));
    }
    if new.flags != flags {
        bad.push(format!("flags {:#x}, want {flags:#x}", new.flags));
    }
    if err.abs() > TOUT_BOUND_NS {
        let t = new.tai_delta_ns;
        bad.push(format!(
            "Tout {t} ns, want {want} ns (STOP->RESUME + offset)"
        ));
    }
    if new.tai_delta_total_ns != old.tai_delta_total_ns + new.tai_delta_ns {
        let (n, o) = (new.tai_delta_total_ns, old.tai_delta_total_ns);
        bad.push(format!("total {n} after {o}"));
    }
    h.tout_ns = new.tai_delta_ns;
    h.page = new;
    let u = Update {
        migration_seq: new.migration_seq,
        flags: new.flags,
        tai_delta_ns: new.tai_delta_ns,
        tai_delta_total_ns: new.tai_delta_total_ns,
    };
    Ok((Written { u, end: End::Even }, bad))
}

/// Where the guest's wall clock landed after its step, against where it must: where it was
/// before the hop relative to the host clock it follows, moved by the offset difference of
/// the two QEMUs (`offsets_ns`). The host sees `host - guest` before at the guest's
/// `# MIGTIME-CLOCK` (late by the results polling) and after at its ack (late by up to the
/// ack latency): beyond [`TOUT_BOUND_NS`] plus that latency the step did not bring the guest
/// to the destination's time (a guest clock that ran, or was rewound, on its own). Returns
/// the error (ns) and, if it is out of bounds, the problem; `None` without a step or marker.
pub fn landing(h: &Hop, offsets_ns: (i64, i64)) -> Option<(i64, Option<String>)> {
    let a = h
        .ack
        .as_ref()
        .filter(|a| a.area.outcome == Outcome::Stepped as u32)?;
    let before = h.host_minus_guest_before_ns?;
    let want = before - (offsets_ns.1 - offsets_ns.0);
    let err = a.host_minus_guest_ns - want;
    let bound = TOUT_BOUND_NS + (a.latency_ms * 1e6) as i64;
    let p = (err.abs() > bound).then(|| {
        format!(
            "guest clock landed {:.3} ms off the destination host's (host - guest {} ns, want {want} ns; bound {:.0} ms)",
            err as f64 / 1e6,
            a.host_minus_guest_ns,
            bound as f64 / 1e6
        )
    });
    Some((err, p))
}

impl Chain<'_> {
    /// Checks where the guest's clock landed after hop `hop` ([`landing`]).
    pub(crate) fn check_landing(&mut self, h: &Hop, hop: u32) {
        let Some((err, p)) = landing(h, self.o.settings.device_offsets_ns(hop)) else {
            return;
        };
        let ms = err as f64 / 1e6;
        self.out.stage(&format!(
            "guest clock landed {ms:.3} ms off the destination host's"
        ));
        if let Some(p) = p {
            self.sum.problems.push(format!("hop {}: {p}", hop + 1));
        }
    }

    /// The destination's page once the migration arrived, before `cont`: the source's,
    /// carried as RAM. Returns the guest's `events` before the hop.
    pub(crate) fn device_page_before(&mut self, d: &mut Dest) -> Result<u64> {
        read_page(&mut d.q, &mut d.g.page)?;
        Ok(d.g.page.guest_area().map_or(0, |g| g.events))
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

    /// Checks the page QEMU published at the resume of hop `hop` on `d` ([`check_page`]),
    /// and returns it as the hop's update.
    pub(crate) fn check_device_page(
        &mut self,
        d: &mut Dest,
        h: &mut Hop,
        hop: u32,
    ) -> Result<Written> {
        let s = &self.o.settings;
        let want = Want {
            old: d.g.page.host_area(),
            offsets_ns: s.device_offsets_ns(hop),
            restore: s.restore.is_some() || h.restored,
        };
        let (w, bad) = check_page(&mut d.q, &mut d.g.page, h, &want, self.out)?;
        self.note_device_page(&d.g.name, &w, bad);
        Ok(w)
    }

    /// Records a checked device page of guest `name`: its problems and the total.
    pub(crate) fn note_device_page(&mut self, name: &str, w: &Written, bad: Vec<String>) {
        let p = bad
            .into_iter()
            .map(|b| format!("device page of {name}: {b}"));
        self.sum.problems.extend(p);
        self.sum.tai_delta_total_ns = w.u.tai_delta_total_ns;
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
