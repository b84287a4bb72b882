//! False failovers under load: a holdfast pair and a keepalived pair (each a MASTER at
//! priority 150 and a BACKUP at 100, on its own VRID, in network namespaces this benchmark
//! creates) run side by side while `stress-ng` loads every core (CPU workers) and memory (VM
//! workers on a quarter of it). Nothing fails, so every election during the load is a false
//! failover: counted as the BACKUP entering MASTER and the MASTER leaving it. Each case runs
//! its own load: VRRPv3 at 100 ms and at 10 ms adverts, without and with
//! `vrrp_rt_priority` — the same configuration for both daemons. 10 minutes a case (20 s with
//! `--short`; `HOLDFAST_STRESS_SECS` overrides).
//!
//! Needs root, keepalived and stress-ng (`scripts/deps` installs them).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

#[path = "../../config/benches/record.rs"]
mod record;
use record::record;

use std::time::{Duration, Instant};

use holdfast_lab::netns::{self, Lab, Proc};

/// One instance: a VRID and a VIP of its own per daemon.
fn conf(vrid: u8, vip: u8, priority: u8, advert: &str, rt: bool) -> String {
    let global = if rt { "    vrrp_rt_priority 50\n" } else { "" };
    format!(
        "global_defs {{\n{global}}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {vrid}\n    priority {priority}\n    advert_int {advert}\n    version 3\n    virtual_ipaddress {{\n        10.77.0.{vip}/24\n    }}\n}}\n"
    )
}

/// Elections in `p`'s log since `since`: entering MASTER (a BACKUP) or leaving it (a MASTER).
fn elections(p: &mut Proc, since: Instant) -> usize {
    p.count_since("(VI_1) Entering MASTER STATE", since)
        + p.count_since("(VI_1) Entering BACKUP STATE", since)
}

/// Runs one case; returns (holdfast's, keepalived's) false elections.
fn case(advert: &str, rt: bool, load: Duration) -> (usize, usize) {
    let mut lab = Lab::new(4).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let mut h1 = lab.holdfast(1, &conf(51, 100, 150, advert, rt));
    h1.wait_for("(VI_1) Entering MASTER STATE", Duration::from_secs(20));
    let mut h2 = lab.holdfast(2, &conf(51, 100, 100, advert, rt));
    h2.wait_for("(VI_1) Entering BACKUP STATE", Duration::from_secs(20));
    let mut k1 = lab.keepalived(3, &conf(52, 101, 150, advert, rt));
    k1.wait_for("(VI_1) Entering MASTER STATE", Duration::from_secs(20));
    let mut k2 = lab.keepalived(4, &conf(52, 101, 100, advert, rt));
    k2.wait_for("(VI_1) Entering BACKUP STATE", Duration::from_secs(20));
    // Settled: the backups have heard their masters for a second.
    std::thread::sleep(Duration::from_secs(1));
    let since = Instant::now();
    let secs = load.as_secs().max(1).to_string();
    let out = lab.output(
        0,
        &[
            "stress-ng",
            "--cpu",
            "0",
            "--vm",
            "2",
            "--vm-bytes",
            "25%",
            "--timeout",
            &secs,
            "--quiet",
        ],
    );
    assert!(
        since.elapsed() >= load,
        "stress-ng ended early (is it installed? scripts/deps installs it): {out}"
    );
    let h = elections(&mut h1, since) + elections(&mut h2, since);
    let k = elections(&mut k1, since) + elections(&mut k2, since);
    // Both masters are masters again at the end (a false failover that stuck is counted too).
    assert!(netns::settles(|| lab.has(1, "10.77.0.100/24")));
    assert!(netns::settles(|| lab.has(3, "10.77.0.101/24")));
    (h, k)
}

fn main() {
    let load = std::env::var("HOLDFAST_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(if record::short() {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(600)
        });
    println!(
        "false failovers under stress-ng (every core, a quarter of memory) for {} s a case; holdfast and keepalived pairs side by side",
        load.as_secs()
    );
    println!("{:<28} {:>10} {:>11}", "case", "holdfast", "keepalived");
    let mut figures = Vec::new();
    for (advert, rt, name) in [
        ("0.1", false, "advert_100ms"),
        ("0.01", false, "advert_10ms"),
        ("0.01", true, "advert_10ms_rt"),
    ] {
        let (h, k) = case(advert, rt, load);
        let label = format!(
            "advert_int {advert}{}",
            if rt { ", vrrp_rt_priority 50" } else { "" }
        );
        println!("{label:<28} {h:>10} {k:>11}");
        figures.push((format!("{name}_holdfast"), h as f64));
        figures.push((format!("{name}_keepalived"), k as f64));
    }
    figures.push(("seconds".into(), load.as_secs() as f64));
    record("stress", &figures);
}
