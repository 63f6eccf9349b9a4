// SPDX-License-Identifier: GPL-2.0

//! Running a time daemon's client or the user's command with a timeout.
//!
//! The command runs in a process group of its own, so that a timeout kills what it started
//! too (a shell's children), and its output is read while it runs, so that a command writing
//! more than a pipe holds is not mistaken for a hung one.

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the command is checked on.
const CHECK: Duration = Duration::from_millis(5);

/// Reads `r` to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(r: Option<R>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for the command to exit, or `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(CHECK);
    }
}

/// Waits for both readers, or `deadline` (a child of the command may hold the pipes open).
fn readers_done(readers: &[JoinHandle<Vec<u8>>; 2], deadline: Instant) -> bool {
    while readers.iter().any(|r| !r.is_finished()) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(CHECK);
    }
    true
}

/// Runs `cmd`, killing its process group after `timeout`; returns its combined output
/// (stdout then stderr, trimmed, lines joined with ` | `). An error if it fails, or if it or a
/// process it started is still running, or holding its output open, at the timeout.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<String> {
    let what = format!("{cmd:?}");
    let deadline = Instant::now() + timeout;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let group = Pid::from_raw(i32::try_from(child.id()).context("pid")?);
    let readers = [drain(child.stdout.take()), drain(child.stderr.take())];
    let status = wait_until(&mut child, deadline)?;
    let done = status.is_some() && readers_done(&readers, deadline);
    if !done {
        // The command, or something it started, outlived the timeout: end the whole group.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
        bail!("{what}: timed out after {} ms", timeout.as_millis());
    }
    let [out, err] = readers.map(|r| r.join().unwrap_or_default());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    )
    .trim()
    .replace('\n', " | ");
    match status {
        Some(s) if s.success() => Ok(text),
        Some(s) => bail!("{what}: {s}: {text}"),
        None => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn more_output_than_a_pipe_holds_is_read() {
        // 200 KiB: a pipe holds 64 KiB, so a command nobody reads blocks until the timeout.
        let out = run_with_timeout(
            sh("head -c 204800 /dev/zero | tr '\\0' x; echo done >&2"),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(out.len(), 204_800 + "done".len());
        assert!(out.ends_with("xdone"));
    }

    #[test]
    fn failure_carries_the_status_and_output() {
        let e = run_with_timeout(sh("echo nope; exit 3"), Duration::from_secs(20)).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
    }

    /// The state letter of `pid` in /proc (`None`: gone).
    fn state(pid: i32) -> Option<char> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        s.rsplit_once(')')?.1.trim_start().chars().next()
    }

    #[test]
    fn timeout_kills_what_the_command_started() {
        let dir = std::env::temp_dir().join(format!("migtime-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let e = run_with_timeout(sh(&script), Duration::from_millis(500)).unwrap_err();
        assert!(format!("{e}").contains("timed out"), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed: gone, or a zombie until its new parent reaps it (liveness limit only).
        let end = Instant::now() + Duration::from_secs(20);
        while !matches!(state(pid), None | Some('Z')) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = state(pid);
        if left.is_some_and(|s| s != 'Z') {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(left, None | Some('Z')),
            "the shell's child survived the timeout (state {left:?})"
        );
    }
}
