// SPDX-License-Identifier: GPL-2.0

//! The results channel (ttyS1, `results-NAME.ktap`): following the file as
//! QEMU writes it, and the host markers the guest prints there
//! (tests/README.md, "Host synchronisation markers").

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Follows a growing results file line by line.
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
    /// Every complete line read so far.
    pub lines: Vec<String>,
    queue: std::collections::VecDeque<String>,
}

impl Tail {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
            lines: Vec::new(),
            queue: Default::default(),
        }
    }

    /// The next unconsumed line, if one is available now.
    pub fn next_line(&mut self) -> Option<String> {
        if self.queue.is_empty() {
            let new = self.poll();
            self.queue.extend(new);
        }
        self.queue.pop_front()
    }

    /// Reads what was appended; returns the new complete lines.
    pub fn poll(&mut self) -> Vec<String> {
        let Ok(mut f) = File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut new = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            new.push(line.clone());
            self.lines.push(line);
        }
        new
    }
}

/// A host synchronisation marker found on the results channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker {
    /// `# MIGTIME-READY <rest>`
    Ready(String),
    /// `# MIGTIME-DONE <status>`
    Done(i64),
    /// `# MIGTIME-CLOCK <realtime_ns>` (optional: guest wall clock)
    Clock(i64),
}

/// Recognises a marker line (at any indentation).
pub fn marker(line: &str) -> Option<Marker> {
    let t = line.trim();
    let t = t.strip_prefix('#')?.trim_start();
    if let Some(r) = t.strip_prefix("MIGTIME-READY") {
        return Some(Marker::Ready(r.trim().to_string()));
    }
    if let Some(r) = t.strip_prefix("MIGTIME-DONE") {
        return Some(Marker::Done(r.trim().parse().unwrap_or(-1)));
    }
    parse_clock(line).map(|(realtime_ns, _)| Marker::Clock(realtime_ns))
}

/// `/init`'s `# MIGTIME-IDLE <seconds>` (`mt.idle=`): the programs are done and the guest
/// idles before its last checks (not mt_idle's `# MIGTIME-IDLE seconds=...` result).
pub fn idle_marker(line: &str) -> bool {
    let t = line.trim().strip_prefix('#').map(str::trim_start);
    let n = t
        .and_then(|t| t.strip_prefix("MIGTIME-IDLE "))
        .map(str::trim);
    n.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A results file whose guest was rewound by snapshot loads: its length when the snapshot
/// was taken (`save`) and when each load began (`loads`, the VM stopped). The guest's own
/// history is the file up to `save` and from the last load on; every run in between (the
/// guest running on after the save, then after each load but the last) was rewound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewound {
    pub save: u64,
    pub loads: Vec<u64>,
}

impl Rewound {
    /// Rewrites `path` to the guest's history; returns the rewound runs' text, in order.
    pub fn cut(&self, path: &Path) -> std::io::Result<Vec<String>> {
        let all = std::fs::read(path)?;
        let at = |n: u64| usize::try_from(n).map_or(all.len(), |n| n.min(all.len()));
        let mut marks = vec![at(self.save)];
        marks.extend(self.loads.iter().map(|&n| at(n)));
        let last = *marks.last().unwrap_or(&all.len());
        let runs = marks
            .windows(2)
            .map(|w| String::from_utf8_lossy(&all[w[0]..w[1].max(w[0])]).into_owned())
            .collect();
        let mut kept = all[..at(self.save)].to_vec();
        kept.extend_from_slice(&all[last..]);
        std::fs::write(path, kept)?;
        Ok(runs)
    }
}

/// Last `n` lines of a file (for failure reports).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `# MIGTIME-CLOCK <realtime_ns> [<monotonic_ns>]` (at any indentation).
pub fn parse_clock(line: &str) -> Option<(i64, Option<i64>)> {
    let r = line
        .trim()
        .strip_prefix('#')?
        .trim_start()
        .strip_prefix("MIGTIME-CLOCK")?;
    if !r.starts_with(char::is_whitespace) {
        return None;
    }
    let mut it = r.split_whitespace();
    let rt = it.next()?.parse().ok()?;
    let mono = match it.next() {
        Some(m) => Some(m.parse().ok()?),
        None => None,
    };
    if it.next().is_some() {
        return None;
    }
    Some((rt, mono))
}

/// `# <TAG> k=v k=v...` (at any indentation) as a map; `None` if the line is
/// not that marker or a word is not `k=v`.
pub fn parse_kv(line: &str, tag: &str) -> Option<BTreeMap<String, String>> {
    let r = line
        .trim()
        .strip_prefix('#')?
        .trim_start()
        .strip_prefix(tag)?;
    if !r.is_empty() && !r.starts_with(char::is_whitespace) {
        return None;
    }
    let mut m = BTreeMap::new();
    for w in r.split_whitespace() {
        let (k, v) = w.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        m.insert(k.to_string(), v.to_string());
    }
    Some(m)
}

/// The `# MIGTIME-RESULT` line of mt_clock.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClockResult {
    pub timerfd_cancelled: bool,
    pub sta_unsync: bool,
    pub maxerror_us: i64,
    pub event: bool,
    pub outcome: u32,
    pub intended_ns: i64,
    pub applied_ns: i64,
    pub residual_ns: i64,
}

impl ClockResult {
    pub fn parse(line: &str) -> Option<Self> {
        let m = parse_kv(line, "MIGTIME-RESULT")?;
        let i = |k: &str| -> Option<i64> { m.get(k)?.parse().ok() };
        Some(Self {
            timerfd_cancelled: i("timerfd_cancelled")? != 0,
            sta_unsync: i("sta_unsync")? != 0,
            maxerror_us: i("maxerror_us").unwrap_or(0),
            event: i("event").unwrap_or(0) != 0,
            outcome: i("outcome").unwrap_or(0) as u32,
            intended_ns: i("intended_ns").unwrap_or(0),
            applied_ns: i("applied_ns").unwrap_or(0),
            residual_ns: i("residual_ns").unwrap_or(0),
        })
    }
}

/// All `# MIGTIME-RESULT` lines of a results file, in order.
pub fn results_in(path: &Path) -> Vec<ClockResult> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(ClockResult::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn markers() {
        assert_eq!(
            marker("    # MIGTIME-READY mt_migrate hop 1"),
            Some(Marker::Ready("mt_migrate hop 1".into()))
        );
        assert_eq!(marker("# MIGTIME-DONE 0\r"), Some(Marker::Done(0)));
        assert_eq!(marker("# MIGTIME-DONE 3"), Some(Marker::Done(3)));
        assert_eq!(
            marker("# MIGTIME-CLOCK 1700000000123456789"),
            Some(Marker::Clock(1_700_000_000_123_456_789))
        );
        // mt_clock and mt_migrate print realtime and monotonic.
        assert_eq!(
            marker("    # MIGTIME-CLOCK 1700000000123456789 42"),
            Some(Marker::Clock(1_700_000_000_123_456_789))
        );
        assert_eq!(marker("ok 1 MIGTIME-DONE"), None);
    }

    #[test]
    fn idle_marker_is_inits_not_mt_idles() {
        assert!(idle_marker("# MIGTIME-IDLE 3"));
        assert!(idle_marker("# MIGTIME-IDLE 3\r"));
        assert!(!idle_marker(
            "  # MIGTIME-IDLE seconds=60.0 wakeups_per_s=1"
        ));
        assert!(!idle_marker("# MIGTIME-IDLE "));
        assert!(!idle_marker("ok 1 MIGTIME-IDLE 3"));
    }

    #[test]
    fn rewound_runs_are_cut_out_and_returned() {
        let p = std::env::temp_dir().join(format!("mth-rewound-{}", std::process::id()));
        std::fs::write(&p, "boot\nREADY\nafter-save\nload1 run\nload2 run\nDONE\n").unwrap();
        let r = Rewound {
            save: 11,
            loads: vec![22, 32],
        };
        let runs = r.cut(&p).unwrap();
        assert_eq!(runs, ["after-save\n", "load1 run\n"]);
        let kept = std::fs::read_to_string(&p).unwrap();
        assert_eq!(kept, "boot\nREADY\nload2 run\nDONE\n");
        // A mark past the end (nothing written since) cuts nothing more.
        std::fs::write(&p, "ab").unwrap();
        let r = Rewound {
            save: 1,
            loads: vec![9],
        };
        assert_eq!(r.cut(&p).unwrap(), ["b"]);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn tail_returns_only_complete_new_lines() {
        let p = std::env::temp_dir().join(format!("mth-tail-{}", std::process::id()));
        std::fs::write(&p, "a\r\nb").unwrap();
        let mut t = Tail::new(&p);
        assert_eq!(t.poll(), vec!["a".to_string()]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"c\nd\n")
            .unwrap();
        assert_eq!(t.poll(), vec!["bc".to_string(), "d".to_string()]);
        assert!(t.poll().is_empty());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn next_line_keeps_lines_after_a_marker_for_later() {
        let p = std::env::temp_dir().join(format!("mth-tail2-{}", std::process::id()));
        std::fs::write(&p, "# MIGTIME-READY x\n# MIGTIME-DONE 0\n").unwrap();
        let mut t = Tail::new(&p);
        assert_eq!(
            marker(&t.next_line().unwrap()),
            Some(Marker::Ready("x".into()))
        );
        assert_eq!(marker(&t.next_line().unwrap()), Some(Marker::Done(0)));
        assert_eq!(t.next_line(), None);
        assert_eq!(t.lines.len(), 2);
        std::fs::remove_file(&p).unwrap();
    }
    #[test]
    fn clock_marker_parsing() {
        assert_eq!(
            parse_clock("    # MIGTIME-CLOCK 1700000000123456789 5000"),
            Some((1_700_000_000_123_456_789, Some(5000)))
        );
        assert_eq!(parse_clock("# MIGTIME-CLOCK 12"), Some((12, None)));
        assert_eq!(parse_clock("# MIGTIME-CLOCK x 1"), None);
        assert_eq!(parse_clock("# MIGTIME-CLOCK 1 2 3"), None);
        assert_eq!(parse_clock("# MIGTIME-CLOCKS 1 2"), None);
        assert_eq!(parse_clock("ok 1 MIGTIME-CLOCK 1 2"), None);
    }

    #[test]
    fn result_marker_parsing() {
        let l = "    # MIGTIME-RESULT timerfd_cancelled=1 sta_unsync=1 maxerror_us=16000000 event=1 outcome=1 intended_ns=2613000000 applied_ns=2613000001 residual_ns=1";
        let r = ClockResult::parse(l).unwrap();
        assert!(r.timerfd_cancelled && r.sta_unsync && r.event);
        assert_eq!(
            (r.outcome, r.intended_ns, r.applied_ns, r.residual_ns),
            (1, 2_613_000_000, 2_613_000_001, 1)
        );
        let r = ClockResult::parse("# MIGTIME-RESULT timerfd_cancelled=0 sta_unsync=0 maxerror_us=1000 event=0 outcome=0 intended_ns=0 applied_ns=0 residual_ns=0").unwrap();
        assert!(!r.timerfd_cancelled && !r.sta_unsync);
        assert_eq!(
            ClockResult::parse("# MIGTIME-RESULT sta_unsync=0"),
            None,
            "timerfd_cancelled is required"
        );
        assert_eq!(
            ClockResult::parse("# MIGTIME-RESULTS timerfd_cancelled=1 sta_unsync=1"),
            None
        );
        assert!(parse_kv("# MIGTIME-IDLE seconds=60.001 garbage", "MIGTIME-IDLE").is_none());
        let m = parse_kv(
            "  # MIGTIME-IDLE seconds=60.001 wakeups_per_s=12.5 busy_pct=0.4",
            "MIGTIME-IDLE",
        )
        .unwrap();
        assert_eq!(m["wakeups_per_s"], "12.5");
    }
}
