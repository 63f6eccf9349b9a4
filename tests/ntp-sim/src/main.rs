// SPDX-License-Identifier: GPL-2.0

//! `migtime-ntp-sim [ADDR] [OFFSET_NS] [PPM]`: serves a simulated host clock over NTP
//! (default 127.0.0.1:0, offset 0, rate 0). Prints `listening ADDR`; then each stdin line
//! `set OFFSET_NS PPM` switches to another simulated host (what the harness does at `cont`).

use anyhow::{bail, Context, Result};
use migtime_ntp_sim::NtpSim;
use std::io::BufRead;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: migtime-ntp-sim [ADDR] [OFFSET_NS] [PPM]; stdin: set OFFSET_NS PPM");
        return Ok(());
    }
    let addr = args
        .first()
        .map_or("127.0.0.1:0", String::as_str)
        .parse()
        .context("ADDR")?;
    let offset: i64 = args
        .get(1)
        .map_or(Ok(0), |s| s.parse())
        .context("OFFSET_NS")?;
    let ppm: f64 = args.get(2).map_or(Ok(0.0), |s| s.parse()).context("PPM")?;
    let sim = NtpSim::start(addr)?;
    sim.set(offset, ppm);
    println!("listening {}", sim.addr());
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["set", o, p] => {
                let tl = sim.set(o.parse()?, p.parse()?);
                println!("set {tl:?} (served {})", sim.served());
            }
            [] => {}
            _ => bail!("unknown command {line:?}"),
        }
    }
    Ok(())
}
