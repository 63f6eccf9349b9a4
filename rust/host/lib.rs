// SPDX-License-Identifier: GPL-2.0

//! Host build of the migtime module's pure logic.
//!
//! These `#[path]` modules are the very files the kernel module compiles
//! (`rust/abi.rs`, `rust/event.rs`, `rust/seqlock.rs`, `rust/policy.rs`,
//! `rust/rate.rs`, `rust/tracker.rs`, `rust/fallback.rs`): one source of truth, tested here with `cargo test` and
//! property tests, and used by the host-side simulator to write pages and by
//! the companion to parse `/dev/migtime` records.
//!
//! [`model_clock`] is host-only too: a model of the kernel's realtime clock
//! for the read-then-set loop, shared by the host tests and the fuzz target.
//!
//! [`page`] is host-only: the in-memory page, the host area's seqlock writer
//! and the guest-area reader that the simulator, the host tests and the fuzz
//! target share.

#![no_std]

#[cfg(test)]
extern crate std;

#[path = "../abi.rs"]
pub mod abi;
#[path = "../event.rs"]
pub mod event;
#[path = "../fallback.rs"]
pub mod fallback;
mod mempage;
pub mod model_clock;
pub mod page;
#[path = "../policy.rs"]
pub mod policy;
#[path = "../rate.rs"]
pub mod rate;
#[path = "../seqlock.rs"]
pub mod seqlock;
#[path = "../tracker.rs"]
pub mod tracker;

static_assertions::const_assert!(abi::layout_is_v1());
static_assertions::const_assert!(event::event_layout_is_v1());
