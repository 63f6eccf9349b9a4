// SPDX-License-Identifier: GPL-2.0

//! Host build of the migtime module's pure logic.
//!
//! These `#[path]` modules are the very files the kernel module compiles
//! (`rust/abi.rs`, `rust/seqlock.rs`, `rust/policy.rs`, `rust/fallback.rs`): one source of truth,
//! tested here with `cargo test` and property tests, and used by the host-side
//! simulator to write pages.

#![no_std]

#[cfg(test)]
extern crate std;

#[path = "../abi.rs"]
pub mod abi;
#[path = "../fallback.rs"]
pub mod fallback;
#[path = "../policy.rs"]
pub mod policy;
#[path = "../seqlock.rs"]
pub mod seqlock;

static_assertions::const_assert!(abi::layout_is_v1());
static_assertions::const_assert!(abi::event_layout_is_v1());
