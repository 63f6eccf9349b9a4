// SPDX-License-Identifier: GPL-2.0

//! A Debian 13 guest image (`scripts/build-debian-image`): systemd, udev, one time daemon,
//! the migtime packages installed with apt, and the harness's test-only guest side
//! (`/usr/local/lib/migtime-test`: the probe responder and the report script on the
//! second serial port, tests/image/). It boots its own vmlinuz and initrd from a
//! virtio-blk disk; every QEMU of a run opens one qcow2 overlay on the cached image, as
//! shared storage does in a live migration (the destination's `-incoming` QEMU opens the
//! image inactive and takes it over when the migration completes), so the cached image
//! is never written.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The time daemon an image runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Daemon {
    /// `chrony.service` (chronyd 4.6); the companion talks to it with chronyc.
    Chrony,
    /// `systemd-timesyncd.service`; it re-syncs by itself on a clock step it did not make.
    Timesyncd,
}

impl Daemon {
    /// Its name in `scripts/build-debian-image --daemon`.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Chrony => "chrony",
            Daemon::Timesyncd => "timesyncd",
        }
    }

    /// The user the companion's unit runs as (the package's generator picks `_chrony` where
    /// chrony is installed, so that chronyc may use chronyd's socket).
    pub fn companion_user(self) -> &'static str {
        match self {
            Daemon::Chrony => "_chrony",
            Daemon::Timesyncd => "_migtime",
        }
    }
}

/// An image folder: `disk.raw`, `vmlinuz`, `initrd.img`, `cmdline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub dir: PathBuf,
}

impl Image {
    /// The image in `dir`, if it has its four files.
    pub fn open(dir: &Path) -> Result<Self> {
        for f in ["disk.raw", "vmlinuz", "initrd.img", "cmdline"] {
            if !dir.join(f).is_file() {
                bail!(
                    "{} is not a Debian image folder (no {f}; scripts/build-debian-image makes one)",
                    dir.display()
                );
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }

    /// The kernel command line the image was built for.
    pub fn cmdline(&self) -> Result<String> {
        let p = self.dir.join("cmdline");
        let s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(s.trim().to_string())
    }

    /// Creates `run/disk.qcow2`, a qcow2 overlay backed by the image's raw disk, for every
    /// QEMU of the run to open.
    pub fn overlay(&self, run: &Path) -> Result<PathBuf> {
        let o = run.join("disk.qcow2");
        let _ = std::fs::remove_file(&o);
        let disk = self.dir.join("disk.raw");
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&disk)
            .arg(&o)
            .status()
            .context("running qemu-img (package qemu-utils)")?;
        if !st.success() {
            bail!(
                "qemu-img create of an overlay on {} failed: {st}",
                disk.display()
            );
        }
        Ok(o)
    }
}

/// The `-drive` of a guest disk (a qcow2 overlay) on virtio-blk.
pub fn drive_args(disk: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},if=virtio,format=qcow2", disk.display()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_folder_needs_its_files_and_gives_an_overlay() {
        let d = std::env::temp_dir().join(format!("migtime-image-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert!(Image::open(&d).is_err());
        for f in ["disk.raw", "vmlinuz", "initrd.img"] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        std::fs::write(d.join("cmdline"), "root=/dev/vda rw\n").unwrap();
        let i = Image::open(&d).unwrap();
        assert_eq!(i.cmdline().unwrap(), "root=/dev/vda rw");
        assert_eq!(i.kernel(), d.join("vmlinuz"));
        let a = drive_args(Path::new("/r/disk.qcow2")).join(" ");
        assert_eq!(a, "-drive file=/r/disk.qcow2,if=virtio,format=qcow2");
        assert_eq!(Daemon::Chrony.companion_user(), "_chrony");
        let _ = std::fs::remove_dir_all(&d);
    }
}
