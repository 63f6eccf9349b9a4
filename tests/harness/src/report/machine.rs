// SPDX-License-Identifier: GPL-2.0

//! The machine a bench ran on, for the report header.

use serde::Serialize;

/// The machine, for the report header.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub nproc: usize,
    pub cpu: String,
    pub mem_gib: f64,
    pub qemu: String,
    /// `--version` of the patched QEMU with `-device migtime`, if one is set up.
    pub qemu_device: Option<String>,
    pub accel: String,
}

fn cmd_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// `model name` from /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// MemTotal from /proc/meminfo text, GiB.
pub fn mem_gib(meminfo: &str) -> f64 {
    meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

pub fn machine() -> Machine {
    let qemu = std::env::var("MIGTIME_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    Machine {
        date_utc: cmd_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
        mem_gib: mem_gib(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()),
        qemu: cmd_line(&qemu, &["--version"]),
        qemu_device: crate::vm::devices::device_qemu()
            .ok()
            .map(|q| cmd_line(&q, &["--version"])),
        accel: crate::vm::qemu::accel(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_text_parsing() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags : x\n"),
            "AMD EPYC 7B13"
        );
        assert_eq!(cpu_model(""), "unknown CPU");
        assert!((mem_gib("MemTotal:       24683988 kB\n") - 23.54).abs() < 0.01);
    }
}
