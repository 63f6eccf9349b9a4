// SPDX-License-Identifier: GPL-2.0

//! `make demo` and `make bench`: their runs, statistics, tables and plots.

pub mod bench;
pub mod bench_md;
pub mod bench_report;
pub mod configs;
pub mod daemons;
pub mod daemons_md;
pub mod demo;
pub mod demo_chrony;
pub mod demo_plot;
pub mod demo_table;
pub mod font;
pub mod machine;
pub mod opts;
pub mod plot;
pub mod text;
