// SPDX-License-Identifier: GPL-2.0

//! A minimal QMP client: JSON lines over a unix socket, with read timeouts,
//! command ids, and buffering of asynchronous events that arrive while a
//! command's return is awaited. Every message in both directions is appended
//! to a transcript file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// A connected QMP monitor (capabilities negotiated).
pub struct Qmp {
    name: String,
    stream: UnixStream,
    buf: Vec<u8>,
    events: VecDeque<Value>,
    transcript: Option<File>,
    next_id: u64,
    start: Instant,
}

/// Host CLOCK_REALTIME of an event, from QMP's `timestamp` (µs resolution).
pub fn event_time_ns(ev: &Value) -> Option<i64> {
    let ts = ev.get("timestamp")?;
    Some(ts.get("seconds")?.as_i64()? * 1_000_000_000 + ts.get("microseconds")?.as_i64()? * 1000)
}

impl Qmp {
    /// Connects to `path` (retrying until `timeout`, QEMU may still be
    /// starting), reads the greeting and sends `qmp_capabilities`.
    pub fn connect(
        path: &Path,
        name: &str,
        transcript: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP socket {}", path.display()))
                }
            }
        };
        let transcript = match transcript {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening QMP transcript {}", p.display()))?,
            ),
            None => None,
        };
        let mut q = Self {
            name: name.to_string(),
            stream,
            buf: Vec::new(),
            events: VecDeque::new(),
            transcript,
            next_id: 1,
            start: Instant::now(),
        };
        let greeting = q.read_msg(deadline).context("reading the QMP greeting")?;
        if greeting.get("QMP").is_none() {
            bail!("QMP {}: unexpected greeting {greeting}", q.name);
        }
        q.execute("qmp_capabilities", None, timeout)?;
        Ok(q)
    }

    fn log(&mut self, dir: &str, line: &str) {
        let t = self.start.elapsed().as_secs_f64();
        if let Some(f) = &mut self.transcript {
            let _ = writeln!(f, "{t:9.3} {} {dir} {line}", self.name);
        }
    }

    /// Reads one JSON message, waiting at most until `deadline`.
    fn read_msg(&mut self, deadline: Instant) -> Result<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                self.log("<-", &text);
                return serde_json::from_str(&text)
                    .with_context(|| format!("QMP {}: bad JSON from QEMU: {text}", self.name));
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("QMP {}: timed out waiting for a message", self.name);
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .context("setting the QMP read timeout")?;
            let mut tmp = [0u8; 8192];
            match self.stream.read(&mut tmp) {
                Ok(0) => bail!("QMP {}: connection closed by QEMU", self.name),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).with_context(|| format!("QMP {}: reading", self.name)),
            }
        }
    }

    /// Runs a command and returns its `return` value. Events that arrive
    /// meanwhile are buffered for [`Qmp::wait_event`].
    pub fn execute(&mut self, cmd: &str, args: Option<Value>, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": cmd, "id": id });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let line = msg.to_string();
        self.log("->", &line);
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("QMP {}: sending {cmd}", self.name))?;
        loop {
            let m = self
                .read_msg(deadline)
                .with_context(|| format!("QMP {}: waiting for the reply to {cmd}", self.name))?;
            if m.get("event").is_some() {
                self.events.push_back(m);
                continue;
            }
            if m.get("id").and_then(Value::as_u64) != Some(id) {
                continue; // a stale reply
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(anyhow!(
                    "QMP {}: {cmd} failed: {}: {}",
                    self.name,
                    e.get("class").and_then(Value::as_str).unwrap_or("?"),
                    e.get("desc").and_then(Value::as_str).unwrap_or("?")
                ));
            }
        }
    }

    /// Waits for the first event (buffered or new) for which `pred` holds,
    /// removes it from the buffer and returns it. Other events stay buffered.
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(i) = self.events.iter().position(&pred) {
            return Ok(self.events.remove(i).unwrap());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let m = self
                .read_msg(deadline)
                .with_context(|| format!("QMP {}: waiting for {what}", self.name))?;
            if m.get("event").is_none() {
                continue;
            }
            if pred(&m) {
                return Ok(m);
            }
            self.events.push_back(m);
        }
    }

    /// Waits for a named event.
    pub fn wait_named(&mut self, event: &str, timeout: Duration) -> Result<Value> {
        self.wait_event(event, timeout, |m| m["event"] == event)
    }

    /// Waits for `MIGRATION` with one of `statuses`.
    pub fn wait_migration(&mut self, statuses: &[&str], timeout: Duration) -> Result<Value> {
        let what = format!("MIGRATION {}", statuses.join("|"));
        self.wait_event(&what, timeout, |m| {
            m["event"] == "MIGRATION" && statuses.iter().any(|s| m["data"]["status"] == *s)
        })
    }

    /// Events buffered so far (not consumed).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn buffered(&self) -> impl Iterator<Item = &Value> {
        self.events.iter()
    }

    /// Enables the `events` migration capability (MIGRATION events).
    pub fn enable_migration_events(&mut self, timeout: Duration) -> Result<()> {
        self.execute(
            "migrate-set-capabilities",
            Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
            timeout,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn sock(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("mth-qmp-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// A fake QEMU: greets, answers capabilities, then runs `script` with the
    /// accepted stream and a line reader.
    fn fake(
        path: &Path,
        script: impl FnOnce(&mut UnixStream, &mut BufReader<UnixStream>) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            s.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["execute"], "qmp_capabilities");
            s.write_all(format!("{{\"return\": {{}}, \"id\": {}}}\r\n", v["id"]).as_bytes())
                .unwrap();
            script(&mut s, &mut r);
        })
    }

    fn read_cmd(r: &mut BufReader<UnixStream>) -> Value {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn events_before_the_return_are_buffered() {
        let p = sock("buffer");
        let t = fake(&p, |s, r| {
            let c = read_cmd(r);
            assert_eq!(c["execute"], "migrate");
            assert_eq!(c["arguments"]["uri"], "unix:/x");
            // Event, then the return split across two writes, then another event.
            s.write_all(b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 2, \"microseconds\": 5}}\r\n{\"ret").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(format!("urn\": {{\"x\": 1}}, \"id\": {}}}\r\n", c["id"]).as_bytes())
                .unwrap();
            s.write_all(b"{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let mut q = Qmp::connect(&p, "t", None, Duration::from_secs(5)).unwrap();
        let r = q
            .execute(
                "migrate",
                Some(json!({"uri": "unix:/x"})),
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(r["x"], 1);
        assert_eq!(q.buffered().count(), 1, "STOP must be buffered");
        let m = q
            .wait_migration(&["completed", "failed"], Duration::from_secs(5))
            .unwrap();
        assert_eq!(m["data"]["status"], "completed");
        let stop = q.wait_named("STOP", Duration::from_millis(1)).unwrap();
        assert_eq!(event_time_ns(&stop), Some(2_000_005_000));
        assert_eq!(q.buffered().count(), 0);
        t.join().unwrap();
    }

    #[test]
    fn errors_and_timeouts_are_reported() {
        let p = sock("err");
        let t = fake(&p, |s, r| {
            let c = read_cmd(r);
            s.write_all(format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"nope\"}}, \"id\": {}}}\n", c["id"]).as_bytes()).unwrap();
            let _ = read_cmd(r); // never answered
            std::thread::sleep(Duration::from_millis(400));
        });
        let mut q = Qmp::connect(&p, "t", None, Duration::from_secs(5)).unwrap();
        let e = q.execute("cont", None, Duration::from_secs(5)).unwrap_err();
        assert!(format!("{e:#}").contains("GenericError: nope"), "{e:#}");
        let t0 = Instant::now();
        let e = q
            .execute("query-status", None, Duration::from_millis(150))
            .unwrap_err();
        assert!(format!("{e:#}").contains("timed out"), "{e:#}");
        assert!(t0.elapsed() < Duration::from_millis(350));
        let e = q
            .wait_named("RESUME", Duration::from_millis(50))
            .unwrap_err();
        assert!(format!("{e:#}").contains("waiting for RESUME"), "{e:#}");
        t.join().unwrap();
    }

    #[test]
    fn closed_connection_is_an_error() {
        let p = sock("closed");
        let t = fake(&p, |s, _r| {
            s.shutdown(std::net::Shutdown::Both).unwrap();
        });
        let mut q = Qmp::connect(&p, "t", None, Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        let e = q.wait_named("RESUME", Duration::from_secs(2)).unwrap_err();
        assert!(format!("{e:#}").contains("closed"), "{e:#}");
    }
}
