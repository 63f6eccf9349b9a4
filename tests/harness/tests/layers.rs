// SPDX-License-Identifier: GPL-2.0

//! The harness's shape, checked on its sources: layers import only from
//! layers below them, files import each other without cycles (except the one
//! documented pair), and no file grows past the project's limit.
//!
//! A file's imports are the `crate::LAYER[::FILE]` paths in its code lines
//! (comments are skipped), tests included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first (tests/harness/README.md).
const LAYERS: &[&str] = &[
    "base", "record", "vm", "net", "migrate", "suite", "report", "cli",
];

/// The one import cycle allowed: a migration chain's hop and what can go
/// wrong in it (the faults act on the chain's state; the chain calls them).
const ALLOWED_CYCLE: &[&str] = &["migrate::chain", "migrate::faults"];

/// The project's limit on source files.
const MAX_LINES: usize = 400;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("reading the harness sources") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `layer::file` of a source (`layer` for its `mod.rs`), or None for the
/// crate root (`lib.rs`, `main.rs`).
fn node_of(src: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(src).ok()?;
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [l, f] if f == "mod" => Some(l.clone()),
        [l, f] => Some(format!("{l}::{f}")),
        [f] if f == "lib" || f == "main" => None,
        [f] => Some(f.clone()),
        _ => None,
    }
}

fn layer(node: &str) -> &str {
    node.split("::").next().unwrap_or(node)
}

fn rank(node: &str) -> usize {
    let l = layer(node);
    LAYERS
        .iter()
        .position(|x| *x == l)
        .unwrap_or_else(|| panic!("{node} is in no layer of LAYERS"))
}

/// The nodes `code` refers to through `crate::` paths.
fn imports(code: &str, files: &BTreeSet<String>) -> BTreeSet<String> {
    let mut v = BTreeSet::new();
    for line in code.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        for (i, _) in t.match_indices("crate::") {
            let segs: Vec<&str> = t[i + 7..]
                .split("::")
                .take(2)
                .map(|s| {
                    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")
                })
                .collect();
            let Some(l) = segs.first().filter(|l| LAYERS.contains(l)) else {
                continue;
            };
            let file = segs.get(1).map(|f| format!("{l}::{f}"));
            v.insert(
                file.filter(|f| files.contains(f))
                    .unwrap_or_else(|| l.to_string()),
            );
        }
    }
    v
}

/// The import graph of the harness's sources: node -> nodes it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    let nodes: BTreeMap<String, PathBuf> = paths
        .iter()
        .filter_map(|p| node_of(&src, p).map(|n| (n, p.clone())))
        .collect();
    let files: BTreeSet<String> = nodes.keys().cloned().collect();
    nodes
        .iter()
        .map(|(n, p)| {
            let code = std::fs::read_to_string(p).expect("reading a source");
            let mut i = imports(&code, &files);
            i.remove(n);
            (n.clone(), i)
        })
        .collect()
}

fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            stack.extend(g.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_layer_imports_from_a_higher_one() {
    let g = graph();
    assert!(g.len() > 30, "found the sources: {:?}", g.keys());
    let mut up = Vec::new();
    for (n, imps) in &g {
        for i in imps {
            if rank(i) > rank(n) {
                up.push(format!("{n} imports {i}"));
            }
        }
    }
    assert!(up.is_empty(), "upward imports:\n{}", up.join("\n"));
}

#[test]
fn no_import_cycle_but_the_documented_pair() {
    let g = graph();
    let mut cycles = BTreeSet::new();
    for (n, imps) in &g {
        for i in imps {
            // The layer's mod.rs only declares its files.
            if i != layer(i) && reaches(&g, i, n) {
                let mut pair = [n.clone(), i.clone()];
                pair.sort();
                cycles.insert(pair.join(" <-> "));
            }
        }
    }
    let allowed = ALLOWED_CYCLE.join(" <-> ");
    let other: Vec<&String> = cycles.iter().filter(|c| **c != allowed).collect();
    assert!(other.is_empty(), "import cycles: {other:?}");
}

#[test]
fn files_stay_short_and_speak_for_themselves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    sources(&root.join("src"), &mut paths);
    sources(&root.join("tests"), &mut paths);
    for p in paths {
        let text = std::fs::read_to_string(&p).expect("reading a source");
        let n = text.lines().count();
        assert!(
            n <= MAX_LINES,
            "{} has {n} lines (limit {MAX_LINES})",
            p.display()
        );
        // History belongs in commit messages, not in references to a tracker.
        let lower = text.to_lowercase();
        let refs = lower
            .match_indices("issue ")
            .filter(|(i, _)| lower[i + 6..].starts_with(|c: char| c.is_ascii_digit()))
            .count();
        assert_eq!(refs, 0, "{} refers to issue numbers", p.display());
    }
}

#[test]
fn the_import_parser_sees_paths_and_skips_comments() {
    let files: BTreeSet<String> = ["vm::qemu".to_string()].into();
    let i = imports(
        "use crate::vm::qemu::{Guest, Mode};\n// crate::report::bench\nlet x = crate::net::network::host_ppm(1);\n",
        &files,
    );
    assert_eq!(i, ["net".to_string(), "vm::qemu".to_string()].into());
}
