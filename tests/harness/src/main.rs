// SPDX-License-Identifier: GPL-2.0

//! migtime-harness: boots migtime guests under QEMU (TCG), plays the
//! hypervisor for real live migrations between two QEMU processes, and runs
//! the test suite. See `migtime-harness --help` and tests/README.md; the
//! library (`migtime_harness`) holds everything, `cli.rs` the command line.

use std::process::ExitCode;

use clap::Parser;
use migtime_harness::cli::{run, Cli};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("migtime-harness: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
