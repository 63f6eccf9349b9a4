// SPDX-License-Identifier: GPL-2.0

//! The clock watcher of `demo` and `bench`: a thread tails every
//! `results-*.ktap` of a run folder every [`WATCH_PERIOD`] and pairs each
//! `# MIGTIME-CLOCK` sample with the host CLOCK_REALTIME at which it read
//! the line; it also keeps each guest's `# MIGTIME-RESULT` lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::base::clock::realtime_ns;
use crate::base::results::{parse_clock, ClockResult, Tail};

/// How often the watcher reads the results files.
pub const WATCH_PERIOD: Duration = Duration::from_millis(2);

/// How often the watcher looks for new results files.
const SCAN_PERIOD: Duration = Duration::from_millis(50);

/// One clock sample: the guest's clocks and the host realtime at read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// The guest (QEMU) whose results file the line was in ("a", "b", ...).
    pub guest: String,
    pub guest_rt_ns: i64,
    pub guest_mono_ns: Option<i64>,
    pub host_rt_ns: i64,
}

impl Sample {
    /// Guest minus host CLOCK_REALTIME, ns (biased low by the read latency).
    pub fn offset_ns(&self) -> i64 {
        self.guest_rt_ns - self.host_rt_ns
    }
}

/// What the watcher saw.
#[derive(Clone, Debug, Default)]
pub struct Watched {
    pub samples: Vec<Sample>,
    /// Each guest's `# MIGTIME-RESULT` lines, in order.
    pub results: BTreeMap<String, Vec<ClockResult>>,
}

/// The watcher thread.
pub struct ClockWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Watched>>,
    thread: Option<JoinHandle<()>>,
}

/// Adds a tail for every results file in `dir` not followed yet.
fn scan(dir: &Path, tails: &mut BTreeMap<String, Tail>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if let Some(g) = n
            .strip_prefix("results-")
            .and_then(|s| s.strip_suffix(".ktap"))
        {
            tails
                .entry(g.to_string())
                .or_insert_with(|| Tail::new(&e.path()));
        }
    }
}

/// Reads what every tail has new; samples get the host time of the read.
fn read_all(tails: &mut BTreeMap<String, Tail>, seen: &Mutex<Watched>) {
    for (g, t) in tails.iter_mut() {
        let lines = t.poll();
        if lines.is_empty() {
            continue;
        }
        let host = realtime_ns();
        let mut w = seen.lock().unwrap();
        for l in lines {
            if let Some((rt, mono)) = parse_clock(&l) {
                w.samples.push(Sample {
                    guest: g.clone(),
                    guest_rt_ns: rt,
                    guest_mono_ns: mono,
                    host_rt_ns: host,
                });
            } else if let Some(r) = ClockResult::parse(&l) {
                w.results.entry(g.clone()).or_default().push(r);
            }
        }
    }
}

fn watch(dir: PathBuf, stop: Arc<AtomicBool>, seen: Arc<Mutex<Watched>>) {
    let mut tails: BTreeMap<String, Tail> = BTreeMap::new();
    let mut last_scan: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if last_scan.is_none_or(|t| t.elapsed() >= SCAN_PERIOD) || stopping {
            last_scan = Some(Instant::now());
            scan(&dir, &mut tails);
        }
        read_all(&mut tails, &seen);
        if stopping {
            break;
        }
        std::thread::sleep(WATCH_PERIOD);
    }
}

impl ClockWatch {
    /// Starts watching `run_dir`.
    pub fn start(run_dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Watched::default()));
        let (st, se, dir) = (stop.clone(), seen.clone(), run_dir.to_path_buf());
        let thread = std::thread::spawn(move || watch(dir, st, se));
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops the thread (after one last read) and returns what it saw.
    pub fn finish(mut self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for ClockWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_results_of_every_guest() {
        let dir = std::env::temp_dir().join(format!("mth-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let w = ClockWatch::start(&dir);
        std::fs::write(dir.join("results-a.ktap"), "# MIGTIME-CLOCK 5 7\nok 1 x\n").unwrap();
        std::fs::write(
            dir.join("results-b.ktap"),
            "    # MIGTIME-RESULT timerfd_cancelled=1 sta_unsync=0\n# MIGTIME-CLOCK 9\n",
        )
        .unwrap();
        let seen = w.finish();
        let guests: Vec<_> = seen.samples.iter().map(|s| s.guest.as_str()).collect();
        assert_eq!(guests, ["a", "b"]);
        assert_eq!(seen.samples[0].guest_mono_ns, Some(7));
        assert!(seen.results["b"][0].timerfd_cancelled);
        assert!(!seen.results.contains_key("a"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
