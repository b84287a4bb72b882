//! False failovers under load: a holdfast pair and a keepalived pair (each a MASTER at
//! priority 150 and a BACKUP at 100, on its own VRID, in network namespaces this benchmark
//! creates) run side by side while `stress-ng` loads every core (CPU workers) and memory (VM
//! workers on a quarter of it). Nothing fails, so every election during the load is a false
//! failover: counted as the BACKUP entering MASTER and the MASTER leaving it, during the
//! load's first 5 s (stress-ng starting its workers and taking its memory) and after. Each case
//! runs its own load: VRRPv3 at 100 ms and at 10 ms adverts, without and with
//! `vrrp_rt_priority` — the same configuration for both daemons. 10 minutes a case (10 s with
//! `--short`; `HOLDFAST_STRESS_SECS` overrides; `HOLDFAST_STRESS_CASES=advert_10ms,…` runs
//! some cases alone, without recording figures). Each case also times the MASTERs' adverts on
//! the bridge (tcpdump's kernel timestamps) and prints the gaps longer than the BACKUP's
//! master-down interval: a false failover with such a gap was the MASTER's late advert, one
//! without it the BACKUP's late reading. `HOLDFAST_STRESS_SCHED=1` prints, for every thread of
//! the four daemons, how long it waited on a run queue each time it was woken during the load,
//! and how long it then ran.
//!
//! Needs root, keepalived, stress-ng and tcpdump (`scripts/deps` installs them).

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

/// Each thread's scheduling so far, by "process/thread" name: (slices run, ns waited on a
/// run queue before them, ns run), from `/proc/PID/task/TID/schedstat`.
type Sched = std::collections::BTreeMap<String, (u64, u64, u64)>;

fn sched(pids: &[u32]) -> Sched {
    let mut out = Sched::new();
    for pid in pids {
        let comm = |path: String| {
            std::fs::read_to_string(path).map_or_else(|_| "?".into(), |s| s.trim().to_owned())
        };
        let process = comm(format!("/proc/{pid}/comm"));
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.filter_map(Result::ok) {
            let Ok(stat) = std::fs::read_to_string(t.path().join("schedstat")) else {
                continue;
            };
            let v: Vec<u64> = stat
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let (Some(run), Some(wait), Some(slices)) = (v.first(), v.get(1), v.get(2)) else {
                continue;
            };
            let thread = comm(t.path().join("comm").display().to_string());
            let e = out
                .entry(format!("{process}[{pid}]/{thread}"))
                .or_insert((0, 0, 0));
            e.0 += slices;
            e.1 += wait;
            e.2 += run;
        }
    }
    out
}

/// What the load did to the daemons' threads: for each thread that ran during it, the slices
/// it ran and its mean wait on a run queue before each (the delay between being woken, by
/// an advert or a timer, and running).
fn print_sched(who: &str, before: &Sched, after: &Sched) {
    for (name, (slices, wait, run)) in after {
        let (s0, w0, r0) = before.get(name).copied().unwrap_or((0, 0, 0));
        let n = slices.saturating_sub(s0);
        if n == 0 {
            continue;
        }
        let each = |v: u64, v0: u64| v.saturating_sub(v0) as f64 / n as f64 / 1e3;
        println!(
            "    {who:<18} {name:<40} {n:>9} slices, {:>8.1} µs waited, {:>6.1} µs run each",
            each(*wait, w0),
            each(*run, r0)
        );
    }
}

/// The MASTER's adverts as the wire saw them (tcpdump's kernel timestamps on the switch's
/// bridge), by VRID: how many gaps between two of them during the load were longer than
/// the BACKUP's master-down interval (3 adverts and its skew), and the longest. A false
/// failover with such a gap was the MASTER's late advert; one without, the BACKUP's late
/// reading of a timely one.
fn late_adverts(dump: &mut Proc, from: f64, to: f64, vrid: u8, advert: Duration) -> (usize, f64) {
    let _ = dump.log();
    // The BACKUP is at priority 100, as the lab's lb2, whose master-down interval it shares.
    let down = holdfast_lab::lab::allowed(advert, Duration::ZERO).as_secs_f64();
    let tag = format!("vrid {vrid}, prio 150");
    let times: Vec<f64> = dump
        .lines
        .iter()
        .filter(|(_, l)| l.contains(&tag))
        .filter_map(|(_, l)| l.split_whitespace().next()?.parse::<f64>().ok())
        .filter(|t| (from..=to).contains(t))
        .collect();
    let gaps = times.windows(2).map(|w| w[1] - w[0]);
    gaps.fold((0, 0.0), |(n, max), g| {
        (n + usize::from(g > down), f64::max(max, g))
    })
}

fn wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn add(a: Counts, b: Counts) -> Counts {
    (a.0 + b.0, a.1 + b.1)
}

/// What a case measured of one daemon.
struct Outcome {
    elections: Counts,
    /// Gaps between its MASTER's adverts on the wire longer than the master-down interval,
    /// and the longest gap (s).
    late: (usize, f64),
    /// Its MASTER's busiest thread (the one sending adverts): mean run-queue wait per wake-up
    /// during the load, µs.
    master_wait_us: f64,
}

/// The mean run-queue wait per wake-up, in µs, of the thread that ran most often during the
/// load among `after` (against `before`).
fn busiest_wait_us(before: &Sched, after: &Sched) -> f64 {
    after
        .iter()
        .map(|(name, (slices, wait, _))| {
            let (s0, w0, _) = before.get(name).copied().unwrap_or((0, 0, 0));
            (slices.saturating_sub(s0), wait.saturating_sub(w0))
        })
        .max_by_key(|(n, _)| *n)
        .map_or(f64::NAN, |(n, w)| w as f64 / n.max(1) as f64 / 1e3)
}

/// Runs one case; returns what it measured of holdfast and of keepalived.
fn case(advert: &str, rt: bool, load: Duration) -> (Outcome, Outcome) {
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
    let nodes = [
        ("holdfast master", 1),
        ("holdfast backup", 2),
        ("keepalived master", 3),
        ("keepalived backup", 4),
    ];
    let before: Vec<Sched> = nodes.iter().map(|(_, n)| sched(&lab.pids(*n))).collect();
    let mut dump = lab.vrrp_times();
    let since = Instant::now();
    let from = wall();
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
    let to = wall();
    let advert = Duration::from_secs_f64(advert.parse().unwrap());
    let late = [51, 52].map(|vrid| late_adverts(&mut dump, from, to, vrid, advert));
    println!(
        "    the MASTERs' adverts on the wire: gaps longer than the BACKUP's master-down interval: holdfast {} (longest {:.1} ms), keepalived {} (longest {:.1} ms)",
        late[0].0,
        late[0].1 * 1e3,
        late[1].0,
        late[1].1 * 1e3
    );
    let after: Vec<Sched> = nodes.iter().map(|(_, n)| sched(&lab.pids(*n))).collect();
    if std::env::var_os("HOLDFAST_STRESS_SCHED").is_some() {
        for (((who, _), before), after) in nodes.iter().zip(&before).zip(&after) {
            print_sched(who, before, after);
        }
    }
    let waits = [0, 2].map(|i| busiest_wait_us(&before[i], &after[i]));
    println!(
        "    the MASTERs' sending threads waited on a run queue per wake-up: holdfast {:.0} µs, keepalived {:.0} µs",
        waits[0], waits[1]
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
    (
        Outcome {
            elections: h,
            late: late[0],
            master_wait_us: waits[0],
        },
        Outcome {
            elections: k,
            late: late[1],
            master_wait_us: waits[1],
        },
    )
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
    // HOLDFAST_STRESS_CASES=advert_10ms,… runs those cases alone (their figures are not kept).
    let only = std::env::var("HOLDFAST_STRESS_CASES").ok();
    for (advert, rt, name) in [
        ("0.1", false, "advert_100ms"),
        ("0.01", false, "advert_10ms"),
        ("0.01", true, "advert_10ms_rt"),
    ] {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|c| c == name))
        {
            continue;
        }
        let (h, k) = case(advert, rt, load);
        let label = format!(
            "advert_int {advert}{}",
            if rt { ", vrrp_rt_priority 50" } else { "" }
        );
        let pair = |c: Counts| format!("{} / {}", c.0, c.1);
        println!(
            "{label:<38} {:>17} {:>17}",
            pair(h.elections),
            pair(k.elections)
        );
        for (who, o) in [("holdfast", h), ("keepalived", k)] {
            figures.push((format!("{name}_{who}_start"), o.elections.0 as f64));
            figures.push((format!("{name}_{who}_steady"), o.elections.1 as f64));
            figures.push((format!("{name}_{who}_late_adverts"), o.late.0 as f64));
            figures.push((format!("{name}_{who}_longest_gap_ms"), o.late.1 * 1e3));
            figures.push((format!("{name}_{who}_master_wait_us"), o.master_wait_us));
        }
    }
    figures.push(("seconds".into(), load.as_secs() as f64));
    if only.is_none() {
        record("stress", &figures);
    }
}
