// SPDX-License-Identifier: GPL-2.0

//! Progress and failure reports: every run reports through a [`Reporter`]
//! instead of printing, so a caller decides where the text goes. `boot`,
//! `sim` and `check` use [`Console`] (stdout/stderr, as the user sees them);
//! `bench` gives the simulator a [`LogFile`], so its own table stays readable
//! while the simulator's progress lands in `bench.log`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};

/// Where a run's progress goes.
pub trait Reporter: Sync {
    /// A stage line (`==> TEXT`).
    fn stage(&self, text: &str);
    /// A plain result line (e.g. the KTAP counts).
    fn line(&self, text: &str);
    /// A failure report: problems, log tails, where the run folder is.
    fn failure(&self, text: &str);
}

/// stdout for stages and lines, stderr for failures.
pub struct Console;

impl Reporter for Console {
    fn stage(&self, text: &str) {
        println!("==> {text}");
    }
    fn line(&self, text: &str) {
        println!("{text}");
    }
    fn failure(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// Everything appended, in order, to one file.
pub struct LogFile(Mutex<File>);

impl LogFile {
    /// Appends to `path` (created if missing).
    pub fn append(path: &Path) -> Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening log {}", path.display()))?;
        Ok(Self(Mutex::new(f)))
    }

    fn write(&self, text: &str) {
        if let Ok(mut f) = self.0.lock() {
            let _ = writeln!(f, "{text}");
        }
    }
}

impl Reporter for LogFile {
    fn stage(&self, text: &str) {
        self.write(&format!("==> {text}"));
    }
    fn line(&self, text: &str) {
        self.write(text);
    }
    fn failure(&self, text: &str) {
        self.write(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_keeps_every_report_in_order() {
        let p = std::env::temp_dir().join(format!("mth-output-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let log = LogFile::append(&p).unwrap();
        let r: &dyn Reporter = &log;
        r.stage("one");
        r.line("two");
        r.failure("three\nfour");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "==> one\ntwo\nthree\nfour\n"
        );
        std::fs::remove_file(&p).unwrap();
    }
}
