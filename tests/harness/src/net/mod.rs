// SPDX-License-Identifier: GPL-2.0

//! The networked guest's host side: the NTP server serving the simulated
//! hosts' clocks and the probe comparing the guest's clock with them.

pub mod ntp;
pub mod pairing;
