// SPDX-License-Identifier: GPL-2.0

//! A small KTAP (and TAP 13) parser for the guest's results channel.
//!
//! Nesting is by indentation: lines indented deeper than the current level
//! form a subtest whose result line is the next line at the current level.
//! Diagnostics (`# ...`) are ignored, `# SKIP` / `# TODO` directives are
//! honoured. A document without a plan, with fewer or more results than its
//! plan, with a subtest that never got its result line (truncated output), or
//! with `Bail out!`, is a failure.

use serde::Serialize;

/// `ok`-line directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    None,
    Skip,
    Todo,
}

/// One result line, with its subtest if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    pub ok: bool,
    pub number: Option<u32>,
    pub name: String,
    pub directive: Directive,
    pub subtest: Option<Doc>,
}

/// A (sub)document: plan and results at one indentation level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Doc {
    pub version: bool,
    pub plan: Option<u32>,
    pub results: Vec<TestResult>,
    pub bailed: bool,
    /// Subtest lines after the last result line (their result never came).
    pub orphan: Option<Box<Doc>>,
}

/// Leaf-test counts and everything that makes the run fail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
    /// Failed tests and structural errors, as `path: reason`.
    pub problems: Vec<String>,
}

impl Summary {
    /// Everything passed (skips allowed), at least one test ran, no structural errors.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn success(&self) -> bool {
        self.failed == 0 && self.problems.is_empty() && self.passed + self.skipped > 0
    }
}

struct Line<'a> {
    indent: usize,
    text: &'a str,
}

fn lines(input: &str) -> Vec<Line<'_>> {
    input
        .lines()
        .map(|l| l.trim_end_matches(['\r', '\n', ' ', '\t']))
        .filter(|l| !l.is_empty())
        .map(|l| {
            let text = l.trim_start_matches([' ', '\t']);
            let indent = l[..l.len() - text.len()]
                .chars()
                .map(|c| if c == '\t' { 8 } else { 1 })
                .sum();
            Line { indent, text }
        })
        .collect()
}

fn parse_plan(t: &str) -> Option<u32> {
    let rest = t.strip_prefix("1..")?;
    let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if num.is_empty() {
        return None;
    }
    num.parse().ok()
}

fn parse_result(t: &str) -> Option<TestResult> {
    let (ok, rest) = if let Some(r) = t.strip_prefix("ok") {
        (true, r)
    } else if let Some(r) = t.strip_prefix("not ok") {
        (false, r)
    } else {
        return None;
    };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None; // e.g. "okay"
    }
    let rest = rest.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let number = digits.parse().ok();
    let rest = rest[digits.len()..].trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (name, directive) = match rest.find('#') {
        Some(i) => {
            let d = rest[i + 1..].trim_start().to_ascii_uppercase();
            let directive = if d.starts_with("SKIP") {
                Directive::Skip
            } else if d.starts_with("TODO") {
                Directive::Todo
            } else {
                Directive::None
            };
            (rest[..i].trim_end(), directive)
        }
        None => (rest, Directive::None),
    };
    Some(TestResult {
        ok,
        number,
        name: name.to_string(),
        directive,
        subtest: None,
    })
}

fn parse_level(ls: &[Line<'_>], pos: &mut usize, indent: usize) -> Doc {
    let mut doc = Doc::default();
    let mut pending: Option<Doc> = None;
    while *pos < ls.len() {
        let l = &ls[*pos];
        if l.indent < indent {
            break;
        }
        if l.indent > indent {
            let sub = parse_level(ls, pos, l.indent);
            pending = Some(match pending.take() {
                // Two deeper blocks in a row (e.g. odd indentation): merge them.
                Some(mut p) => {
                    p.version |= sub.version;
                    p.plan = p.plan.or(sub.plan);
                    p.results.extend(sub.results);
                    p.bailed |= sub.bailed;
                    p.orphan = sub.orphan;
                    p
                }
                None => sub,
            });
            continue;
        }
        let t = l.text;
        if t.starts_with("KTAP version") || t.starts_with("TAP version") {
            doc.version = true;
        } else if let Some(n) = parse_plan(t) {
            if doc.plan.is_none() {
                doc.plan = Some(n);
            }
        } else if let Some(mut r) = parse_result(t) {
            r.subtest = pending.take();
            doc.results.push(r);
        } else if t.starts_with("Bail out!") {
            doc.bailed = true;
        }
        // Diagnostics and anything else: ignored.
        *pos += 1;
    }
    doc.orphan = pending.map(Box::new);
    doc
}

/// Parses a whole results channel.
pub fn parse(input: &str) -> Doc {
    let ls = lines(input);
    let mut pos = 0;
    let base = ls.iter().map(|l| l.indent).min().unwrap_or(0);
    let mut doc = parse_level(&ls, &mut pos, base);
    // Lines less indented than the first level cannot happen with `base` = min.
    debug_assert!(pos == ls.len());
    if pos < ls.len() {
        doc.bailed = true;
    }
    doc
}

fn eval(doc: &Doc, path: &str, top: bool, s: &mut Summary) -> u32 {
    let failed_before = s.failed + s.problems.len() as u32;
    let here = if path.is_empty() { "(top)" } else { path };
    if top && !doc.version {
        s.problems.push(format!("{here}: no KTAP/TAP version line"));
    }
    match doc.plan {
        None => s.problems.push(format!("{here}: no plan (1..N) line")),
        Some(n) if n as usize != doc.results.len() => s.problems.push(format!(
            "{here}: planned {n} tests, got {} (truncated output?)",
            doc.results.len()
        )),
        _ => {}
    }
    if doc.bailed {
        s.problems.push(format!("{here}: Bail out!"));
    }
    if let Some(o) = &doc.orphan {
        s.problems.push(format!(
            "{here}: subtest after the last result has no result line (truncated output?)"
        ));
        eval(o, &format!("{path}/(unfinished)"), false, s);
    }
    for r in &doc.results {
        let p = if path.is_empty() {
            r.name.clone()
        } else {
            format!("{path}/{}", r.name)
        };
        match &r.subtest {
            Some(sub) => {
                let sub_fail = eval(sub, &p, false, s);
                if !r.ok && r.directive == Directive::None && sub_fail == 0 {
                    s.failed += 1;
                    s.problems.push(format!("{p}: not ok"));
                } else if r.ok && r.directive == Directive::None && sub_fail > 0 {
                    s.problems.push(format!("{p}: ok but its subtests failed"));
                }
            }
            None => match (r.ok, r.directive) {
                (_, Directive::Skip) => s.skipped += 1,
                (false, Directive::Todo) => s.skipped += 1,
                (true, _) => s.passed += 1,
                (false, Directive::None) => {
                    s.failed += 1;
                    s.problems.push(format!("{p}: not ok"));
                }
            },
        }
    }
    s.failed + s.problems.len() as u32 - failed_before
}

/// Counts leaf tests and collects failures and structural problems.
pub fn summarize(doc: &Doc) -> Summary {
    let mut s = Summary::default();
    eval(doc, "", true, &mut s);
    s
}

/// Parses and summarizes in one go.
pub fn check(input: &str) -> Summary {
    summarize(&parse(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r"KTAP version 1
# migtime guest: load=1
1..4
ok 1 insmod_migtime
    KTAP version 1
    # Subtest: migtime_policy
    1..2
    ok 1 first
    ok 2 second # SKIP not here
ok 2 kunit_migtime_policy
    # Subtest: mt_migrate
    TAP version 13
    1..3
    # MIGTIME-READY mt_migrate hop 1 seq 0 total 0
        1..1
        ok 1 deep
    ok 1 nested parent
    ok 2 hop1 event
    not ok 3 hop1 known bug # TODO later
    # Totals: pass:2 fail:0
ok 3 mt_migrate
ok 4 kernel_log_clean
# MIGTIME-DONE 0
";

    #[test]
    fn good_document_passes_with_leaf_counts() {
        let s = check(GOOD);
        assert!(s.success(), "{s:?}");
        // insmod, first, deep, hop1 event, kernel_log_clean = 5 passed;
        // second (SKIP) and the TODO = 2 skipped.
        assert_eq!((s.passed, s.failed, s.skipped), (5, 0, 2));
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let s = check(&GOOD.replace('\n', "\r\n"));
        assert!(s.success(), "{s:?}");
        assert_eq!((s.passed, s.skipped), (5, 2));
    }

    #[test]
    fn nested_structure_is_kept() {
        let d = parse(GOOD);
        assert_eq!(d.plan, Some(4));
        assert_eq!(d.results.len(), 4);
        let mt = d.results[2].subtest.as_ref().unwrap();
        assert_eq!(mt.plan, Some(3));
        assert_eq!(mt.results[0].name, "nested parent");
        assert_eq!(
            mt.results[0].subtest.as_ref().unwrap().results[0].name,
            "deep"
        );
        assert_eq!(
            d.results[1].subtest.as_ref().unwrap().results[1].directive,
            Directive::Skip
        );
        assert!(d.results[0].subtest.is_none());
    }

    #[test]
    fn not_ok_leaf_fails() {
        let s = check("KTAP version 1\n1..2\nok 1 a\nnot ok 2 b - with dash\n");
        assert!(!s.success());
        assert_eq!((s.passed, s.failed), (1, 1));
        assert_eq!(s.problems, vec!["b - with dash: not ok".to_string()]);
    }

    #[test]
    fn failing_subtest_fails_the_run_even_if_parent_says_ok() {
        let s = check("KTAP version 1\n1..1\n    1..2\n    ok 1 x\n    not ok 2 y\nok 1 parent\n");
        assert_eq!(s.failed, 1);
        assert!(s.problems.iter().any(|p| p.contains("parent/y")));
        assert!(s
            .problems
            .iter()
            .any(|p| p.contains("ok but its subtests failed")));
        assert!(!s.success());
    }

    #[test]
    fn not_ok_parent_with_passing_children_fails() {
        let s =
            check("KTAP version 1\n1..1\n    1..1\n    ok 1 x\nnot ok 1 prog # exit status 1\n");
        assert_eq!((s.passed, s.failed), (1, 1));
        assert!(!s.success());
    }

    #[test]
    fn missing_plan_fails() {
        let s = check("KTAP version 1\nok 1 a\n");
        assert!(!s.success());
        assert!(s.problems[0].contains("no plan"), "{:?}", s.problems);
        let s = check("KTAP version 1\n1..1\n    ok 1 a\nok 1 sub\n");
        assert!(!s.success(), "subtest without plan");
    }

    #[test]
    fn truncated_output_fails() {
        // Plan says 3, output stops after 1 and in the middle of a subtest.
        let s = check("KTAP version 1\n1..3\nok 1 a\n    1..2\n    ok 1 x\n");
        assert!(!s.success());
        assert!(s
            .problems
            .iter()
            .any(|p| p.contains("planned 3 tests, got 1")));
        assert!(s.problems.iter().any(|p| p.contains("no result line")));
        assert!(s
            .problems
            .iter()
            .any(|p| p.contains("planned 2 tests, got 1")));
    }

    #[test]
    fn empty_or_versionless_output_fails() {
        assert!(!check("").success());
        assert!(!check("1..1\nok 1 a\n").success());
        assert!(check("TAP version 13\n1..1\nok 1 a\n").success());
    }

    #[test]
    fn skip_only_counts_as_success_but_bail_out_fails() {
        assert!(check("KTAP version 1\n1..1\nok 1 a # SKIP no device\n").success());
        assert!(!check("KTAP version 1\n1..1\nok 1 a\nBail out! oops\n").success());
    }

    #[test]
    fn result_line_parsing() {
        let r = parse_result("not ok 12 some name # SKIP why").unwrap();
        assert_eq!(
            (r.ok, r.number, r.name.as_str(), r.directive),
            (false, Some(12), "some name", Directive::Skip)
        );
        assert!(parse_result("okay 1").is_none());
        assert!(parse_result("# ok 1 x").is_none());
        assert_eq!(parse_result("ok").unwrap().number, None);
        assert_eq!(parse_plan("1..0"), Some(0));
        assert_eq!(parse_plan("1..x"), None);
    }
}
