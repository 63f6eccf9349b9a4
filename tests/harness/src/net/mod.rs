// SPDX-License-Identifier: GPL-2.0

//! The networked guest's host side: the network of the simulated hosts
//! (NTP server, forwarded ports), the probe, and what its samples say.

pub mod network;
pub mod pairing;
pub mod probe;
