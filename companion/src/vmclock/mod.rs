// SPDX-License-Identifier: GPL-2.0

//! VMClock (`/dev/vmclock0`, Linux `ptp_vmclock`): the page layout (`struct vmclock_abi`,
//! `include/uapi/linux/vmclock-abi.h` in Linux 7.3), its consistent read under `seq_count`
//! ([`read_seqcount`]), and the device ([`dev`]). Pure except for [`dev`], so that it is
//! unit- and property-tested on the host.

pub mod dev;
#[cfg(test)]
mod tests;

pub use dev::VmclockDev;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// `VMCLOCK_MAGIC`, "VCLK" little-endian.
pub const VMCLOCK_MAGIC: u32 = 0x4b4c_4356;
/// Bytes of `struct vmclock_abi` in Linux 7.3 (up to and including `vm_generation_counter`).
pub const VMCLOCK_ABI_BYTES: usize = 112;
/// `VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT`.
pub const VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT: u64 = 1 << 8;
/// `VMCLOCK_FLAG_NOTIFICATION_PRESENT`.
pub const VMCLOCK_FLAG_NOTIFICATION_PRESENT: u64 = 1 << 9;

/// Byte offsets in `struct vmclock_abi`.
pub mod off {
    /// `__le32 magic`.
    pub const MAGIC: usize = 0;
    /// `__le32 size`.
    pub const SIZE: usize = 4;
    /// `__le16 version`.
    pub const VERSION: usize = 8;
    /// `__u8 counter_id`.
    pub const COUNTER_ID: usize = 10;
    /// `__le32 seq_count`.
    pub const SEQ_COUNT: usize = 12;
    /// `__le64 disruption_marker`.
    pub const DISRUPTION_MARKER: usize = 16;
    /// `__le64 flags`.
    pub const FLAGS: usize = 24;
    /// `__u8 clock_status`.
    pub const CLOCK_STATUS: usize = 34;
    /// `__le64 vm_generation_counter`.
    pub const VM_GENERATION_COUNTER: usize = 104;
}

/// The fields of a consistent VMClock snapshot the companion uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmclockPage {
    /// `seq_count` of the snapshot (even).
    pub seq_count: u32,
    /// `size`: bytes of the region holding the structure.
    pub size: u32,
    /// `counter_id` (`0xff`: none, as QEMU's `-device vmclock`).
    pub counter_id: u8,
    /// `disruption_marker`: changes on every disruption (live migration).
    pub disruption_marker: u64,
    /// `flags` (`VMCLOCK_FLAG_*`).
    pub flags: u64,
    /// `clock_status` (`VMCLOCK_STATUS_*`).
    pub clock_status: u8,
    /// `vm_generation_counter`, when `VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT` says it is valid.
    pub vm_generation_counter: Option<u64>,
}

impl VmclockPage {
    /// Whether the hypervisor notifies (the device's `poll()` works).
    pub fn notifications(&self) -> bool {
        self.flags & VMCLOCK_FLAG_NOTIFICATION_PRESENT != 0
    }

    /// The identity of the clock's "epoch": a change of either counter is a disruption.
    /// The generation counter changes on snapshot restore, which also bumps the marker, but a
    /// hypervisor that only bumps the generation counter is covered as well.
    pub fn disruption_key(&self) -> (u64, u64) {
        (
            self.disruption_marker,
            self.vm_generation_counter.unwrap_or(0),
        )
    }
    /// The page as a hypervisor writes it (version 1, `VMCLOCK_MAGIC`; the fields this type does
    /// not hold are zero): for tests and stand-in devices.
    pub fn to_bytes(&self) -> [u8; VMCLOCK_ABI_BYTES] {
        let mut b = [0u8; VMCLOCK_ABI_BYTES];
        b[off::MAGIC..off::MAGIC + 4].copy_from_slice(&VMCLOCK_MAGIC.to_le_bytes());
        b[off::SIZE..off::SIZE + 4].copy_from_slice(&self.size.to_le_bytes());
        b[off::VERSION..off::VERSION + 2].copy_from_slice(&1u16.to_le_bytes());
        b[off::COUNTER_ID] = self.counter_id;
        b[off::SEQ_COUNT..off::SEQ_COUNT + 4].copy_from_slice(&self.seq_count.to_le_bytes());
        b[off::DISRUPTION_MARKER..off::DISRUPTION_MARKER + 8]
            .copy_from_slice(&self.disruption_marker.to_le_bytes());
        b[off::FLAGS..off::FLAGS + 8].copy_from_slice(&self.flags.to_le_bytes());
        b[off::CLOCK_STATUS] = self.clock_status;
        let gen = self.vm_generation_counter.unwrap_or(0);
        b[off::VM_GENERATION_COUNTER..off::VM_GENERATION_COUNTER + 8]
            .copy_from_slice(&gen.to_le_bytes());
        b
    }
}

/// Why a VMClock page was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmclockError {
    /// Fewer than [`VMCLOCK_ABI_BYTES`] bytes.
    Short(usize),
    /// Wrong magic.
    Magic(u32),
    /// Version other than 1.
    Version(u16),
    /// `seq_count` odd (an update in progress) in a snapshot that should be stable.
    Unstable(u32),
}

impl core::fmt::Display for VmclockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Short(n) => write!(f, "short page ({n} bytes)"),
            Self::Magic(m) => write!(f, "bad magic {m:#010x}"),
            Self::Version(v) => write!(f, "unsupported version {v}"),
            Self::Unstable(s) => write!(f, "seq_count {s} odd (update in progress)"),
        }
    }
}

/// Parses a snapshot of the page (as `read(2)` of `/dev/vmclock0` or a copy of its mapping).
pub fn parse_vmclock(b: &[u8]) -> Result<VmclockPage, VmclockError> {
    if b.len() < VMCLOCK_ABI_BYTES {
        return Err(VmclockError::Short(b.len()));
    }
    let magic = u32_at(b, off::MAGIC);
    if magic != VMCLOCK_MAGIC {
        return Err(VmclockError::Magic(magic));
    }
    let version = u16::from_le_bytes([b[off::VERSION], b[off::VERSION + 1]]);
    if version != 1 {
        return Err(VmclockError::Version(version));
    }
    let seq_count = u32_at(b, off::SEQ_COUNT);
    if seq_count & 1 != 0 {
        return Err(VmclockError::Unstable(seq_count));
    }
    let flags = u64_at(b, off::FLAGS);
    Ok(VmclockPage {
        seq_count,
        size: u32_at(b, off::SIZE),
        counter_id: b[off::COUNTER_ID],
        disruption_marker: u64_at(b, off::DISRUPTION_MARKER),
        flags,
        clock_status: b[off::CLOCK_STATUS],
        vm_generation_counter: (flags & VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT != 0)
            .then(|| u64_at(b, off::VM_GENERATION_COUNTER)),
    })
}

/// A page that changes under the reader (the hypervisor writes it with the seqcount protocol):
/// the mapping of `/dev/vmclock0`, or a simulated writer in tests.
pub trait SeqPage {
    /// Reads `seq_count` (with acquire ordering in a real mapping).
    fn seq(&mut self) -> u32;
    /// Copies the structure into `out` (between two `seq()` reads, fenced in a real mapping).
    fn copy(&mut self, out: &mut [u8; VMCLOCK_ABI_BYTES]);
}

/// The seqcount read: `seq` even before the copy and unchanged after it, else retry, up to
/// `attempts` times. `None`: the writer never left the page alone long enough.
pub fn read_seqcount<P: SeqPage>(page: &mut P, attempts: u32) -> Option<[u8; VMCLOCK_ABI_BYTES]> {
    let mut buf = [0u8; VMCLOCK_ABI_BYTES];
    for _ in 0..attempts {
        let before = page.seq();
        if before & 1 != 0 {
            continue;
        }
        page.copy(&mut buf);
        if page.seq() == before {
            // The copy's own seq_count field is the one the writer had at the time of the copy;
            // with an unchanged seq it equals `before`.
            buf[off::SEQ_COUNT..off::SEQ_COUNT + 4].copy_from_slice(&before.to_le_bytes());
            return Some(buf);
        }
    }
    None
}
