// SPDX-License-Identifier: GPL-2.0

//! The migtime host harness and hypervisor simulator, as a library (the
//! `migtime-harness` binary is a thin `main.rs` over [`cli`]).
//!
//! Layers, lowest first; a layer imports only from layers below it, and files
//! import each other without cycles except `migrate::chain` <-> `migrate::faults`
//! (checked by `tests/layers.rs`):
//!
//! | layer | what |
//! |---|---|
//! | [`base`] | host clocks, the [`base::output::Reporter`], KTAP, the results channel |
//! | [`record`] | what runs measured: [`record::hop::Hop`], [`record::hop::SimSummary`], the ack, storm reports |
//! | [`vm`] | one QEMU guest: command line, QMP, the page file, the doorbell server, `boot` |
//! | [`net`] | the networked guest's host side: NTP server, probe, pairing |
//! | [`migrate`] | a migration run (`sim`): chain, faults, ack, clock samples |
//! | [`suite`] | the scenario table and `check` |
//! | [`report`] | `make demo`, `make bench`: runs, statistics, tables, plots |
//! | [`cli`] | the command line → options → runs |

pub mod base;
pub mod cli;
pub mod migrate;
pub mod net;
pub mod record;
pub mod report;
pub mod suite;
pub mod vm;
