// SPDX-License-Identifier: GPL-2.0

//! migtime-companion as a library: tells the guest's time daemon to re-sync after a live
//! migration. The binary (`main.rs`) only parses the command line and runs [`watch::run`].
//!
//! One module per concern:
//!
//! - [`cli`]: the options and the manual (`--help`);
//! - [`watch`]: the wait loop over the two devices;
//! - [`migtime`]: `/dev/migtime` events (record, device);
//! - [`vmclock`]: the VMClock page (layout, seqcount read, device);
//! - [`dedup`]: which signal to act on, once per migration;
//! - [`actor`]: what an action does (kernel clock state, then each time daemon);
//! - [`daemon`]: the [`daemon::TimeDaemon`] trait and its implementations (chronyd, the
//!   `--on-event` command); a new daemon is one new file there;
//! - [`clock`], [`process`], [`slot`], [`logger`]: the clock syscalls, running commands with a
//!   timeout, reopen backoff, the stderr logger.

pub mod actor;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod dedup;
pub mod logger;
pub mod migtime;
pub mod process;
pub mod slot;
pub mod vmclock;
pub mod watch;
