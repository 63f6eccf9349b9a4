// SPDX-License-Identifier: GPL-2.0

//! migtime-companion: tells the guest's time daemon to re-sync after a live migration.
//! See `migtime-companion --help` (the man page) and companion/README.md.

use clap::Parser;
use migtime_companion::{cli::Opts, logger, watch};

fn main() {
    let o = Opts::parse();
    logger::init(o.log_level);
    if let Err(e) = watch::run(o) {
        log::error!("{e:#}");
        std::process::exit(1);
    }
}
