// SPDX-License-Identifier: GPL-2.0

//! The admin's `makestep` from chronyd's configuration, so that the companion can give it back
//! after a re-sync has used its own `makestep 0.1 1`.
//!
//! chronyd's `makestep THRESHOLD LIMIT` steps while the number of clock updates since start is
//! below LIMIT (-1: always). The companion's `makestep 0.1 1` allows one step and, after the
//! next update, leaves the limit at 0: the state of a positive LIMIT used up after boot (or of
//! no `makestep` at all), so nothing needs restoring then. A negative LIMIT ("step whenever
//! the error is over THRESHOLD") would be lost for good: [`restore_command`] gives it back.

use std::path::{Path, PathBuf};

/// A `makestep` directive: threshold (s, as written) and limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Makestep {
    /// The threshold as written in the file (chronyd parses it as a double).
    pub threshold: String,
    /// The update limit (-1: no limit).
    pub limit: i64,
}

/// How deep `include`/`confdir` nesting is followed.
const MAX_DEPTH: u32 = 4;

/// The effective `makestep` of the configuration at `path` (the last one wins, as in
/// chronyd), following `include FILE|DIR/*SUFFIX` and `confdir DIR...` (`*.conf` in name
/// order). `None`: no readable file or no `makestep` in it.
pub fn admin_makestep(path: &Path) -> Option<Makestep> {
    let mut found = None;
    read_into(path, 0, &mut found);
    found
}

fn read_into(path: &Path, depth: u32, found: &mut Option<Makestep>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["makestep", t, l, ..] if t.parse::<f64>().is_ok() => {
                if let Ok(limit) = l.parse() {
                    *found = Some(Makestep {
                        threshold: (*t).to_string(),
                        limit,
                    });
                }
            }
            ["include", pattern, ..] if depth < MAX_DEPTH => {
                for f in expand(pattern) {
                    read_into(&f, depth + 1, found);
                }
            }
            ["confdir", dirs @ ..] if depth < MAX_DEPTH => {
                for d in dirs {
                    for f in expand(&format!("{d}/*.conf")) {
                        read_into(&f, depth + 1, found);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A file, or `DIR/PREFIX*SUFFIX`: the matching files of DIR in name order.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some((pre, suf)) = name.split_once('*') else {
        return vec![p.to_path_buf()];
    };
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(pre) && n.ends_with(suf))
        })
        .collect();
    v.sort();
    v
}

/// The `makestep` command that gives the admin's setting back after the companion's own has
/// been used, or `None` when nothing is lost (see the module documentation).
pub fn restore_command(admin: Option<&Makestep>) -> Option<String> {
    admin
        .filter(|m| m.limit < 0)
        .map(|m| format!("makestep {} {}", m.threshold, m.limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn last_makestep_wins_across_includes() {
        let dir = std::env::temp_dir().join(format!("migtime-chrony-conf-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("conf.d")).unwrap();
        fs::write(
            dir.join("chrony.conf"),
            format!(
                "# makestep 9 9\nmakestep 1 3\nconfdir {}/conf.d\nserver x iburst\n",
                dir.display()
            ),
        )
        .unwrap();
        fs::write(dir.join("conf.d/10-a.conf"), "makestep 0.5 -1\n").unwrap();
        fs::write(dir.join("conf.d/20-b.txt"), "makestep 7 7\n").unwrap();
        let got = admin_makestep(&dir.join("chrony.conf"));
        assert_eq!(
            got,
            Some(Makestep {
                threshold: "0.5".into(),
                limit: -1
            })
        );
        assert_eq!(
            restore_command(got.as_ref()).as_deref(),
            Some("makestep 0.5 -1")
        );
        fs::write(
            dir.join("chrony.conf"),
            format!("include {}/conf.d/*.conf\nmakestep 1 3\n", dir.display()),
        )
        .unwrap();
        let got = admin_makestep(&dir.join("chrony.conf"));
        assert_eq!(got.as_ref().map(|m| m.limit), Some(3));
        assert_eq!(
            restore_command(got.as_ref()),
            None,
            "a boot allowance is used up"
        );
        assert_eq!(admin_makestep(&dir.join("missing.conf")), None);
        assert_eq!(restore_command(None), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
