// SPDX-License-Identifier: GPL-2.0

//! The guest's kernel command line words of the guest contract
//! (tests/README.md), built from typed values: programs, module parameters,
//! whether `/init` loads the module.

/// `mt.load=0` when the module must not be loaded (`/init` loads it by
/// default), else nothing.
pub fn module_word(load: bool) -> &'static str {
    if load {
        ""
    } else {
        "mt.load=0"
    }
}

/// `mt.idle=SECS` when `/init` idles after the programs, else nothing.
pub fn idle_word(secs: u32) -> String {
    if secs == 0 {
        String::new()
    } else {
        format!("mt.idle={secs}")
    }
}

/// The `mt.run=` / `mt.params=` part of the kernel command line, then `extra`.
pub fn append_for(run: &str, params: &str, extra: &str) -> String {
    let mut v = Vec::new();
    if !run.is_empty() {
        v.push(format!("mt.run={run}"));
    }
    if !params.is_empty() {
        v.push(format!("mt.params={params}"));
    }
    if !extra.is_empty() {
        v.push(extra.to_string());
    }
    v.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_line() {
        assert_eq!(
            append_for("a:x=1,b", "p=1,q=2", ""),
            "mt.run=a:x=1,b mt.params=p=1,q=2"
        );
        assert_eq!(append_for("", "", "quiet"), "quiet");
        assert_eq!(module_word(false), "mt.load=0");
        assert_eq!(module_word(true), "");
        assert_eq!(
            (idle_word(0), idle_word(3).as_str()),
            (String::new(), "mt.idle=3")
        );
    }
}
