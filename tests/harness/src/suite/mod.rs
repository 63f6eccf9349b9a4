// SPDX-License-Identifier: GPL-2.0

//! The suite (`check`): the scenario table and its runner.

pub mod check;
pub mod scenarios;
