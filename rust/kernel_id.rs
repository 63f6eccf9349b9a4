// SPDX-License-Identifier: GPL-2.0

//! Refuses to load into a kernel build other than the one the module was compiled for.
//!
//! vermagic names only the release, and a kernel without `MODVERSIONS` (Debian's) cannot tell
//! two builds of one release apart. A build that knows the target kernel's `UTS_VERSION`
//! (`scripts/build-debian-module` takes it from the headers package) passes it in the
//! environment as `MIGTIME_KERNEL_UTS_VERSION`; the module compares it with the running kernel's
//! before doing anything else and fails the load with `ENOEXEC` and a log line on a mismatch.
//! Without the variable (the project's own kernel tree) there is nothing to compare.

use kernel::{
    prelude::*,
    str::BStr, //
};

/// `struct new_utsname` (uapi `linux/utsname.h`): six NUL-terminated 65-byte fields.
#[repr(C)]
struct NewUtsname {
    sysname: [u8; 65],
    nodename: [u8; 65],
    release: [u8; 65],
    version: [u8; 65],
    machine: [u8; 65],
    domainname: [u8; 65],
}

extern "C" {
    /// The initial UTS namespace (`EXPORT_SYMBOL_GPL`). `struct uts_namespace` begins with
    /// `struct new_utsname name` (`linux/uts_namespace.h`; Debian's kernel has no RANDSTRUCT),
    /// so only that prefix is declared.
    static init_uts_ns: NewUtsname;
}

/// The `UTS_VERSION` of the kernel build this module was compiled for, if the build said.
const BUILT_FOR: Option<&str> = option_env!("MIGTIME_KERNEL_UTS_VERSION");

/// The bytes of a NUL-terminated field.
fn field(f: &[u8; 65]) -> &[u8] {
    &f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())]
}

/// `Ok` when the running kernel is the build this module was compiled for (or the build did
/// not say which); otherwise logs both and returns `ENOEXEC`.
pub(crate) fn check() -> Result {
    let Some(want) = BUILT_FOR else {
        return Ok(());
    };
    // SAFETY: `init_uts_ns` is a static of the core kernel, initialised at build time, and
    // `NewUtsname` is the layout of its first member. `version` is never written after boot
    // (uname changes only `nodename` and `domainname`), so a shared reference is sound.
    let uts = unsafe { &*core::ptr::addr_of!(init_uts_ns) };
    let have = field(&uts.version);
    if have == want.as_bytes() {
        return Ok(());
    }
    pr_err!(
        "built for the kernel build \"{}\" of {}, but the running kernel is \"{}\": refusing to load; install the migtime package built for this kernel\n",
        want,
        BStr::from_bytes(field(&uts.release)),
        BStr::from_bytes(have)
    );
    Err(ENOEXEC)
}
