// SPDX-License-Identifier: GPL-2.0

//! The guest's devices besides the page: VMClock and user-mode networking,
//! typed, as both QEMUs of a migration get them.
//!
//! - `vmclock`: QEMU `-device vmclock` (Linux `ptp_vmclock`, `/dev/vmclock0`);
//!   QEMU bumps its `disruption_marker` on the destination in `post_load`.
//! - `disk`: a virtio-blk disk (a Debian image's qcow2 overlay, `vm/image.rs`).
//! - `net`: user-mode networking (virtio-net, no IPv6). The guest gets no
//!   default route, so it reaches only the 10.0.2.0/24 of QEMU's user network,
//!   where 10.0.2.2 is the host's loopback (the harness's NTP server, see
//!   `net/`). Each QEMU also forwards a host UDP port of its own to the
//!   guest's probe port [`PROBE_GUEST_PORT`]; the ports go into the
//!   [`ProbePorts`] the network handed down, where its probe finds them.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

/// The guest's UDP port of `mt_probe`.
pub const PROBE_GUEST_PORT: u16 = 5123;

/// The host ports forwarded to the guest's probe by the QEMUs of one run,
/// shared between the QEMUs that add them and the probe that sends to them.
#[derive(Clone, Debug, Default)]
pub struct ProbePorts(Arc<Mutex<Vec<u16>>>);

impl ProbePorts {
    /// A free host UDP port for one more QEMU's `hostfwd`, remembered. (Bound
    /// and released here, then bound by QEMU: a port taken in between makes
    /// QEMU fail to start, loudly.)
    pub fn allocate(&self) -> u16 {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_or(0, |a| a.port());
        self.0.lock().expect("probe ports").push(port);
        port
    }

    /// The ports allocated so far.
    pub fn list(&self) -> Vec<u16> {
        self.0.lock().expect("probe ports").clone()
    }
}

/// The devices a guest gets besides its page device.
#[derive(Clone, Debug, Default)]
pub struct Devices {
    /// `-device vmclock`.
    pub vmclock: bool,
    /// User-mode networking, with the forwarded probe ports recorded here.
    pub net: Option<ProbePorts>,
    /// `x-clock-offset-ns` of `-device migtime` ([`crate::vm::qemu::Mode::Device`]): the
    /// device's clock reading offset, as a host whose clock differs from the source's.
    pub migtime_offset_ns: i64,
    /// A qcow2 disk on virtio-blk, the same file for every QEMU of a run.
    pub disk: Option<PathBuf>,
}

impl Devices {
    /// The QEMU arguments of these devices (for one QEMU: the network part
    /// allocates a forwarded port each time).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(d) = &self.disk {
            a.extend(crate::vm::image::drive_args(d));
        }
        if self.vmclock {
            a.extend(["-device".to_string(), "vmclock".to_string()]);
        }
        if let Some(ports) = &self.net {
            let port = ports.allocate();
            a.extend([
                "-netdev".to_string(),
                format!("user,id=n0,ipv6=off,hostfwd=udp:127.0.0.1:{port}-:{PROBE_GUEST_PORT}"),
                "-device".to_string(),
                "virtio-net-pci,netdev=n0,romfile=".to_string(),
            ]);
        }
        a
    }
}

/// The patched QEMU with `-device migtime`: `MIGTIME_QEMU_DEVICE` (scripts/check and
/// scripts/bench set it from scripts/build-qemu, keeping the stock QEMU for the rest), else
/// `MIGTIME_QEMU` (scripts/demo runs everything on the patched QEMU). Without either a device
/// guest fails to start, loudly.
pub fn device_qemu() -> Result<String> {
    pick_device_qemu(
        std::env::var("MIGTIME_QEMU_DEVICE").ok(),
        std::env::var("MIGTIME_QEMU").ok(),
    )
}

/// [`device_qemu`] from the two variables' values.
fn pick_device_qemu(device: Option<String>, qemu: Option<String>) -> Result<String> {
    match device
        .filter(|q| !q.is_empty())
        .or(qemu.filter(|q| !q.is_empty()))
    {
        Some(q) => Ok(q),
        None => bail!(
            "the device runs need the patched QEMU: set MIGTIME_QEMU_DEVICE (or MIGTIME_QEMU) \
             to the binary scripts/build-qemu prints (scripts/check, bench and demo do)"
        ),
    }
}

impl Devices {
    /// The `-device migtime` argument (with this guest's clock offset).
    pub fn migtime_arg(&self) -> String {
        match self.migtime_offset_ns {
            0 => "migtime,id=mt".into(),
            off => format!("migtime,id=mt,x-clock-offset-ns={off}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_qemu_comes_from_either_variable() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(pick_device_qemu(s("/d"), s("/q")).unwrap(), "/d");
        assert_eq!(pick_device_qemu(s(""), s("/q")).unwrap(), "/q");
        assert_eq!(pick_device_qemu(None, s("/q")).unwrap(), "/q");
        assert!(pick_device_qemu(None, s("")).is_err());
        assert!(pick_device_qemu(None, None).is_err());
    }

    #[test]
    fn migtime_device_gets_its_clock_offset() {
        let mut d = Devices::default();
        assert_eq!(d.migtime_arg(), "migtime,id=mt");
        d.migtime_offset_ns = -7;
        assert_eq!(d.migtime_arg(), "migtime,id=mt,x-clock-offset-ns=-7");
    }

    #[test]
    fn devices_give_their_qemu_arguments() {
        assert!(Devices::default().qemu_args().is_empty());
        let vmclock = Devices {
            vmclock: true,
            ..Default::default()
        };
        assert_eq!(vmclock.qemu_args(), ["-device", "vmclock"]);
        let ports = ProbePorts::default();
        let net = Devices {
            net: Some(ports.clone()),
            ..Default::default()
        };
        let a = net.qemu_args();
        assert_eq!(a[0], "-netdev");
        assert!(a[1].starts_with("user,") && a[1].contains("ipv6=off"));
        assert!(a[1].contains(&format!("-:{PROBE_GUEST_PORT}")), "{}", a[1]);
        // Each QEMU forwards a port of its own; the probe sees them all.
        let _ = net.qemu_args();
        let l = ports.list();
        assert_eq!(l.len(), 2);
        assert!(a[1].contains(&format!("127.0.0.1:{}-", l[0])), "{}", a[1]);
    }
}
