//! Footprint benchmark: resident memory and CPU of holdfast against keepalived 2.2.7 running
//! the same 1, 100 and 1 000 VRRPv3 instances at advert_int 0.1 s (10 adverts a second each),
//! alone on their links so every instance is MASTER and sending. Each daemon runs by itself in
//! a network namespace this benchmark creates (veth pairs with both ends inside, 250 VRIDs per
//! link); memory is the sum of VmRSS over the namespace's processes (keepalived's parent and
//! VRRP child; holdfast and its guardian) after settling, CPU their user+system time over a
//! measuring window. Three rounds alternate between the daemons at each size; prints the
//! medians and holdfast/keepalived ratios.
//!
//! Needs root and keepalived (`scripts/test` installs it).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

mod common;
use common::ns::Ns;
#[path = "../../config/benches/record.rs"]
mod record;
use record::record;

use std::fmt::Write as _;
use std::process::Child;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_secs(5);
const PER_LINK: usize = 250;
/// Rounds of each daemon at each size.
const ROUNDS: usize = 3;

/// One round: (RSS MB, CPU %) of holdfast, then of keepalived.
type Round = ((f64, f64), (f64, f64));

/// `n` VRRPv3 instances at 0.1 s, 250 to a link, one VIP each.
fn config(n: usize, dir: &std::path::Path) -> String {
    let mut c = format!(
        "global_defs {{\n    vrrp_version 3\n    control_socket {}/control.sock\n}}\n",
        dir.display()
    );
    for i in 0..n {
        let (link, vrid) = (i / PER_LINK, i % PER_LINK + 1);
        let _ = write!(
            c,
            "vrrp_instance VI_{i} {{\n    state BACKUP\n    interface eth{link}\n    virtual_router_id {vrid}\n    priority 100\n    advert_int 0.1\n    virtual_ipaddress {{\n        10.{}.{}.{}/32\n    }}\n}}\n",
            100 + link,
            1 + vrid / 200,
            vrid % 200 + 10
        );
    }
    c
}

/// (VmRSS kB, user+system seconds) summed over `pids`.
fn usage(pids: &[u32]) -> (u64, f64) {
    pids.iter().fold((0, 0.0), |(rss, cpu), &pid| {
        (rss + common::rss_kb(pid), cpu + common::cpu_seconds(pid))
    })
}

/// Runs one daemon on `n` instances: (RSS MB, CPU % of one core).
fn measure(daemon: &str, n: usize) -> (f64, f64) {
    let links = n.div_ceil(PER_LINK).max(1);
    let ns = Ns::new(daemon, links);
    let dir = std::env::temp_dir().join(&ns.0);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("scale.conf");
    std::fs::write(&conf, config(n, &dir)).unwrap();
    let mut child = ns.start(daemon, &dir, &conf);
    // Nothing is measured of a daemon that is gone (its /proc reads as 0 MB and 0 % CPU) or
    // that has not made every instance MASTER (one that sends nothing costs nothing): wait
    // for every VIP (bounded), then SETTLE more for a steady state.
    let alive = |child: &mut Child, when: &str| {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{daemon} with {n} instances exited {when}: {status}");
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        alive(&mut child, "before its instances were MASTER");
        let masters = ns.vips();
        if masters == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{daemon}: {masters} of {n} instances hold their VIP (MASTER) after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(SETTLE);
    alive(&mut child, "while settling");
    let pids = ns.pids();
    let (_, before) = usage(&pids);
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    alive(&mut child, "during the measurement");
    let (rss, after) = usage(&pids);
    let secs = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
    (rss as f64 / 1024.0, 100.0 * (after - before) / secs)
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the scale benchmark needs root: it runs daemons in network namespaces");
    }
    println!(
        "footprint (VRRPv3, advert_int 0.1 s, every instance MASTER; RSS after {} s, CPU over {} s)",
        SETTLE.as_secs(),
        WINDOW.as_secs()
    );
    println!(
        "{:>9} {:>14} {:>14} {:>8} {:>14} {:>14} {:>8}",
        "instances",
        "holdfast MB",
        "keepalived MB",
        "ratio",
        "holdfast CPU%",
        "keepalived CPU%",
        "ratio"
    );
    let mut figures: Vec<(String, f64)> = Vec::new();
    for n in [1, 100, 1000] {
        // Rounds alternate between the daemons; the line gives the medians, and the lowest and
        // highest memory ratio of the rounds.
        let rounds: Vec<_> = (0..record::rounds(ROUNDS))
            .map(|_| (measure("holdfast", n), measure("keepalived", n)))
            .collect();
        let col = |f: &dyn Fn(&Round) -> f64| common::median(rounds.iter().map(f).collect());
        let (hm, km) = (col(&|r| r.0.0), col(&|r| r.1.0));
        let (hc, kc) = (col(&|r| r.0.1), col(&|r| r.1.1));
        let ratios: Vec<f64> = rounds.iter().map(|r| r.0.0 / r.1.0).collect();
        let (lo, hi) = common::range(&ratios);
        let cpu_ratio = if kc > 0.0 { hc / kc } else { f64::NAN };
        println!(
            "{n:>9} {hm:>14.1} {km:>14.1} {:>8.2} {hc:>14.1} {kc:>14.1} {cpu_ratio:>8.2}   memory ratio of the rounds {lo:.2}–{hi:.2}",
            hm / km,
        );
        for (k, v) in [
            ("holdfast_mb", hm),
            ("keepalived_mb", km),
            ("memory_ratio", hm / km),
            ("holdfast_cpu_pct", hc),
            ("keepalived_cpu_pct", kc),
            ("cpu_ratio", cpu_ratio),
        ] {
            figures.push((format!("{n}_{k}"), v));
        }
    }
    println!(
        "medians of {} rounds alternating between the daemons",
        record::rounds(ROUNDS)
    );
    record("footprint", &figures);
}
