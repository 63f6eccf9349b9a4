// SPDX-License-Identifier: GPL-2.0

//! The options of one guest's run (`boot`) and the checks every run makes of
//! its inputs; validated here, called by the CLI and again by the runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::vm::page::BadPage;
use crate::vm::qemu::GuestConfig;

/// Options of `boot`.
#[derive(Clone, Debug)]
pub struct BootOpts {
    pub guest: GuestConfig,
    pub timeout: Duration,
    pub page_file: Option<PathBuf>,
    pub bad_page: Option<BadPage>,
    /// The guest must panic on purpose: pass only if QEMU exits by itself,
    /// without `# MIGTIME-DONE`, and the console log contains this text.
    pub expect_panic: Option<String>,
}

/// `runs/<command>-<time>-<pid>`: a run folder nobody asked for.
pub fn default_run_dir(cmd: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{cmd}-{t}-{}", std::process::id()))
}

/// The guest kernel and initramfs must exist.
pub fn check_inputs(kernel: &Path, initrd: &Path) -> Result<()> {
    if !kernel.is_file() {
        bail!(
            "guest kernel {} not found (build it with scripts/build-kernel)",
            kernel.display()
        );
    }
    if !initrd.is_file() {
        bail!(
            "initramfs {} not found (build it with scripts/mkinitramfs)",
            initrd.display()
        );
    }
    Ok(())
}

impl BootOpts {
    /// `bad_page` must be a header kind (written before boot).
    pub fn validate(&self) -> Result<()> {
        if let Some(k) = self.bad_page.filter(|k| !k.is_header()) {
            bail!(
                "--bad-page for boot takes a header kind (bad-magic, bad-version, bad-size): \
                 {k:?} is not a header corruption"
            );
        }
        Ok(())
    }
}
