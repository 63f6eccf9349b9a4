// SPDX-License-Identifier: GPL-2.0

//! The scripts' control flow from an empty `MIGTIME_CACHE`, as a dry run with
//! stubbed package managers and compilers (`tests/cold-path.sh`): a fresh
//! machine must not fail silently. Takes about a second.

use std::path::Path;
use std::process::Command;

#[test]
fn scripts_run_from_an_empty_cache() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cold-path.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("running tests/cold-path.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("not ok"),
        "tests/cold-path.sh failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1..9") && stdout.matches("\nok ").count() == 9,
        "{stdout}"
    );
}
