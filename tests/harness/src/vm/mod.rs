// SPDX-License-Identifier: GPL-2.0

//! One guest under QEMU: its command line and process, QMP, the page file,
//! the doorbell server, and one guest run to its verdict (`boot`).

pub mod cmdline;
pub mod devices;
pub mod image;
pub mod ivshmem;
pub mod opts;
pub mod page;
pub mod qemu;
pub mod qmp;
pub mod vmtest;
