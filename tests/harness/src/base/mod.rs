// SPDX-License-Identifier: GPL-2.0

//! Building blocks with no harness dependency: host clocks, the reporter,
//! the KTAP parser, the results channel and its markers.

pub mod clock;
pub mod ktap;
pub mod output;
pub mod results;
