// SPDX-License-Identifier: GPL-2.0

//! The suite (`check`): the typed scenario, the table of them, the host's own
//! checks, and the runner.

pub mod check;
pub mod host;
pub mod image;
pub mod list;
pub mod scenario;
pub mod scenarios;
