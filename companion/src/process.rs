// SPDX-License-Identifier: GPL-2.0

//! Running a time daemon's client or the user's command with a timeout.

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, killing it after `timeout`; returns its combined output.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: timed out after {} ms", timeout.as_millis());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .replace('\n', " | ");
    if !status.success() {
        bail!("{what}: {status}: {text}");
    }
    Ok(text)
}
