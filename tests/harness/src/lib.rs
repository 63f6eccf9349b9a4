// SPDX-License-Identifier: GPL-2.0

//! The migtime host harness and hypervisor simulator, as a library (the
//! `migtime-harness` binary is a thin `main.rs` over [`cli`]).
//!
//! Module map, after danobi/vmtest's shape:
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | command line → options → runs |
//! | [`options`] | every run's options, validated in one place |
//! | [`output`] | progress through a [`output::Reporter`] (console or log file) |
//! | [`qemu`] | one QEMU guest: command line, process, QMP connection |
//! | [`vmtest`] | one guest to its verdict (`boot`); the verdicts and reports |
//! | [`sim`] | the simulator's run and its typed results ([`sim::SimResult`]) |
//! | [`chain`], [`follow`] | a migration chain: one function per step of a hop; following its guest |
//! | [`ack`] | the guest's ack: waiting for it, checking it |
//! | [`faults`], [`storm`] | cancel, kill, doorbell storm, page hammer; publish storm |
//! | [`scenarios`], [`check`] | the suite's table and its runner |
//! | [`watch`], [`observe`] | clock samples around a `sim` run, per-hop analysis |
//! | [`demo`], [`demo_chrony`], [`bench`], [`bench_report`], [`bench_md`] | `make demo`, `make bench` |
//! | [`companion`], [`pairing`], [`daemons`] | networked guests: NTP server, the clock probe, chronyd (a)/(b)/(c) |
//! | [`page`] | the page file (the page layout and protocols: `migtime_abi::page`) |
//! | [`results`], [`ktap`], [`qmp`], [`ivshmem`], [`plot`], [`font`], [`clock`] | building blocks |

pub mod ack;
pub mod bench;
pub mod bench_md;
pub mod bench_report;
pub mod chain;
pub mod check;
pub mod cli;
pub mod clock;
pub mod companion;
pub mod daemons;
pub mod demo;
pub mod demo_chrony;
pub mod faults;
pub mod follow;
pub mod font;
pub mod ivshmem;
pub mod ktap;
pub mod observe;
pub mod options;
pub mod output;
pub mod page;
pub mod pairing;
pub mod plot;
pub mod qemu;
pub mod qmp;
pub mod results;
pub mod scenarios;
pub mod sim;
pub mod storm;
pub mod vmtest;
pub mod watch;
