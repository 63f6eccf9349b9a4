// SPDX-License-Identifier: GPL-2.0

//! Records: what runs measured, typed, at the bottom so that every layer
//! can pass them on.

pub mod ack;
pub mod hop;
pub mod storm;
