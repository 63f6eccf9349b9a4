// SPDX-License-Identifier: GPL-2.0

//! A migration run (`sim`): the chain of hops, its faults, the ack, the
//! clock samples around it.

pub mod ack;
pub mod chain;
pub mod device;
pub mod faults;
pub mod follow;
pub mod observe;
pub mod opts;
pub mod publish;
pub mod saved;
pub mod sim;
pub mod storm;
pub mod watch;
