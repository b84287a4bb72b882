//! False failovers under load: a holdfast pair and a keepalived pair (each a MASTER at
//! priority 150 and a BACKUP at 100, on its own VRID, in network namespaces this benchmark
//! creates) run side by side while `stress-ng` loads every core (CPU workers) and memory (VM
//! workers on a quarter of it). Nothing fails, so every election during the load is a false
//! failover: counted as the BACKUP entering MASTER and the MASTER leaving it, during the
//! load's first 5 s (stress-ng starting its workers and taking its memory) and after. Each case
//! runs its own load: VRRPv3 at 100 ms and at 10 ms adverts, without and with
//! `vrrp_rt_priority` — the same configuration for both daemons. 10 minutes a case (10 s with
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

/// The load's start: stress-ng forking its workers and taking its memory, a burst of page
/// reclaim that stalls every process; counted apart from the steady load after it.
const START: Duration = Duration::from_secs(5);

/// False elections: (during the load's first [`START`], under the steady load after it).
type Counts = (usize, usize);

/// Elections in `p`'s log from `since` on: entering MASTER (a BACKUP) or leaving it (a
/// MASTER).
fn elections(p: &mut Proc, since: Instant) -> Counts {
    let _ = p.log();
    let mut counts = (0, 0);
    for (t, l) in p.lines.iter().filter(|(t, _)| *t >= since) {
        if l.contains("(VI_1) Entering MASTER STATE") || l.contains("(VI_1) Entering BACKUP STATE")
        {
            if t.duration_since(since) < START {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
    }
    counts
}

fn add(a: Counts, b: Counts) -> Counts {
    (a.0 + b.0, a.1 + b.1)
}

/// Runs one case; returns holdfast's and keepalived's false elections.
fn case(advert: &str, rt: bool, load: Duration) -> (Counts, Counts) {
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
    let h = add(elections(&mut h1, since), elections(&mut h2, since));
    if std::env::var_os("HOLDFAST_STRESS_LOGS").is_some() {
        for (who, p) in [
            ("holdfast master", &mut h1),
            ("holdfast backup", &mut h2),
            ("keepalived master", &mut k1),
            ("keepalived backup", &mut k2),
        ] {
            let lines: Vec<String> = p
                .lines
                .iter()
                .filter(|(t, _)| *t >= since)
                .map(|(t, l)| format!("{:>8.3} {l}", t.duration_since(since).as_secs_f64()))
                .take(12)
                .collect();
            println!("-- {who}:\n{}", lines.join("\n"));
        }
    }
    let k = add(elections(&mut k1, since), elections(&mut k2, since));
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
            Duration::from_secs(10)
        } else {
            Duration::from_secs(600)
        });
    println!(
        "false failovers under stress-ng (every core, a quarter of memory) for {} s a case; holdfast and keepalived pairs side by side",
        load.as_secs()
    );
    println!(
        "{:<38} {:>17} {:>17}",
        "case (elections: start / steady)", "holdfast", "keepalived"
    );
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
        let pair = |c: Counts| format!("{} / {}", c.0, c.1);
        println!("{label:<38} {:>17} {:>17}", pair(h), pair(k));
        for (who, c) in [("holdfast", h), ("keepalived", k)] {
            figures.push((format!("{name}_{who}_start"), c.0 as f64));
            figures.push((format!("{name}_{who}_steady"), c.1 as f64));
        }
    }
    figures.push(("seconds".into(), load.as_secs() as f64));
    record("stress", &figures);
}
