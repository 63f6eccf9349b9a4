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
    bindings,
    prelude::*,
    str::BStr, //
};

/// Length of a `struct new_utsname` field, its NUL included (`__NEW_UTS_LEN + 1`).
const UTS_FIELD: usize = 65;

/// `struct new_utsname` (uapi `linux/utsname.h`): six NUL-terminated fields. The kernel's
/// bindings know `struct uts_namespace` only as an opaque type, so the one member read here is
/// declared by hand.
#[repr(C)]
struct NewUtsname {
    sysname: [u8; UTS_FIELD],
    nodename: [u8; UTS_FIELD],
    release: [u8; UTS_FIELD],
    version: [u8; UTS_FIELD],
    machine: [u8; UTS_FIELD],
    domainname: [u8; UTS_FIELD],
}

/// The `UTS_VERSION` of the kernel build this module was compiled for, if the build said.
const BUILT_FOR: Option<&str> = option_env!("MIGTIME_KERNEL_UTS_VERSION");

/// The bytes of a NUL-terminated field.
fn field(f: &[u8; UTS_FIELD]) -> &[u8] {
    &f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())]
}

/// The running kernel's `version` and `release` (`uname -v`, `uname -r`), copied.
fn running() -> ([u8; UTS_FIELD], [u8; UTS_FIELD]) {
    // SAFETY: `init_uts_ns` is a static of the core kernel (exported), alive as long as the
    // kernel; taking its address forms no reference. `struct uts_namespace` begins with
    // `struct new_utsname name` (`linux/uts_namespace.h`), and its `__randomize_layout` does
    // nothing in a kernel with Rust (`CONFIG_RUST` depends on `!RANDSTRUCT`), so `uts` points
    // at a `NewUtsname`. Only raw pointers to its `version` and `release` are formed, never a
    // reference to the struct, whose `nodename` and `domainname` `sethostname(2)` and
    // `setdomainname(2)` write concurrently. `version` and `release` are set at build time and
    // never written, so copying them races with nothing.
    unsafe {
        let uts = core::ptr::addr_of!(bindings::init_uts_ns).cast::<NewUtsname>();
        (
            core::ptr::addr_of!((*uts).version).read(),
            core::ptr::addr_of!((*uts).release).read(),
        )
    }
}

/// `Ok` when the running kernel is the build this module was compiled for (or the build did
/// not say which); otherwise logs both and returns `ENOEXEC`.
pub(crate) fn check() -> Result {
    let Some(want) = BUILT_FOR else {
        return Ok(());
    };
    let (version, release) = running();
    let have = field(&version);
    if have == want.as_bytes() {
        return Ok(());
    }
    pr_err!(
        "built for the kernel build \"{}\" of {}, but the running kernel is \"{}\": refusing to load; install the migtime package built for this kernel\n",
        want,
        BStr::from_bytes(field(&release)),
        BStr::from_bytes(have)
    );
    Err(ENOEXEC)
}
