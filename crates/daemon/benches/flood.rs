//! Flood benchmark: CPU that holdfast and keepalived 2.2.7 spend on a flood of VRRP adverts
//! they must refuse, while MASTER of one VRRPv2 instance (`advert_int 1`, PASS
//! authentication). Two floods of 10 000 adverts a second for 3 s each, sent from the other end
//! of the daemon's veth link: adverts for its own VRID with a wrong password (each read,
//! checked and refused), and adverts for another VRID (nobody's on this node). Each daemon runs
//! alone in a network namespace this benchmark creates, logging to the console (discarded);
//! CPU is the user+system time of all its processes over the flood. Three rounds alternate
//! between the daemons; prints the medians, CPU per 10 000 adverts and holdfast/keepalived
//! ratios. Each daemon must still be MASTER (its VIP set, process alive) after every flood, or
//! the benchmark fails.
//!
//! Needs root and keepalived (`scripts/test` installs it).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

mod common;
use common::ns::Ns;
#[path = "../../config/benches/record.rs"]
mod record;
use record::record;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Child;
use std::time::{Duration, Instant};

#[path = "../tests/support/advert.rs"]
mod advert;

/// Adverts a second, and for how long.
const RATE: u64 = 10_000;
const FLOOD: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

const CONF: &str = "vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass good
    }
    virtual_ipaddress {
        10.100.0.100/32
    }
}
";

/// A VRRPv2 advert from a priority-200 router (which would take over if it were believed).
fn advert(vrid: u8, pass: &[u8]) -> Vec<u8> {
    let m = advert::v2(vrid, 200, pass, 1, [10, 100, 0, 100]);
    // The IPv4 header (TTL 255, protocol 112, from 10.100.0.2 to 224.0.0.18); the kernel fills
    // the length, id and header checksum.
    let mut p = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, 255, 112, 0, 0];
    p.extend_from_slice(&[10, 100, 0, 2, 224, 0, 0, 18]);
    p.extend_from_slice(&m);
    p
}

/// A raw socket in `ns` that writes whole packets out of `peer0` (to the daemon's eth0).
fn raw_socket(ns: &Ns) -> socket2::Socket {
    let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(112)),
            )
            .unwrap();
            sock.set_header_included_v4(true).unwrap();
            sock.bind_device(Some(b"peer0")).unwrap();
            sock
        })
        .join()
        .unwrap()
    })
}

/// Sends `packet` at RATE for FLOOD; returns how many were sent.
fn flood(sock: &socket2::Socket, packet: &[u8]) -> u64 {
    let to = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 18), 0).into();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < FLOOD {
        for _ in 0..100 {
            // A full queue drops the packet; what counts is what was offered.
            let _ = sock.send_to(packet, &to);
        }
        sent += 100;
        let due = start + Duration::from_micros(sent * 1_000_000 / RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    sent
}

/// Fails unless `daemon` is alive and holds its VIP.
fn still_master(daemon: &str, child: &mut Child, ns: &Ns, when: &str) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!("{daemon} exited {when}: {status}");
    }
    assert_eq!(ns.vips(), 1, "{daemon} is no longer MASTER {when}");
}

/// One round of one daemon: CPU seconds per 10 000 adverts with a wrong password, then for
/// another VRID.
fn measure(daemon: &str) -> (f64, f64) {
    let ns = Ns::new(&format!("flood-{daemon}"), 1);
    let dir = std::env::temp_dir().join(&ns.0);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("flood.conf");
    std::fs::write(&conf, CONF).unwrap();
    let mut child = ns.start(daemon, &dir, &conf);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ns.vips() != 1 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{daemon} exited before it was MASTER: {status}");
        }
        assert!(Instant::now() < deadline, "{daemon} not MASTER after 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sock = raw_socket(&ns);
    let cpu = |pids: &[u32]| pids.iter().map(|&p| common::cpu_seconds(p)).sum::<f64>();
    let pids = ns.pids();
    let mut per = |packet: Vec<u8>, what: &str| {
        let before = cpu(&pids);
        let sent = flood(&sock, &packet);
        let used = cpu(&pids) - before;
        still_master(daemon, &mut child, &ns, &format!("after a flood of {what}"));
        used * 10_000.0 / sent as f64
    };
    let wrong = per(advert(51, b"wrong"), "wrong passwords");
    let other = per(advert(52, b"good"), "another VRID");
    let _ = child.kill();
    let _ = child.wait();
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
    (wrong, other)
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the flood benchmark needs root: it runs daemons in network namespaces");
    }
    println!(
        "flood: {RATE} refused adverts a second for {} s at a MASTER; CPU seconds per 10 000 adverts",
        FLOOD.as_secs()
    );
    let rounds: Vec<((f64, f64), (f64, f64))> = (0..record::rounds(ROUNDS))
        .map(|_| (measure("holdfast"), measure("keepalived")))
        .collect();
    let mut figures: Vec<(String, f64)> = Vec::new();
    println!(
        "{:>16} {:>10} {:>11} {:>8}   ratio of the rounds",
        "flood", "holdfast", "keepalived", "ratio"
    );
    type Pick = fn(&(f64, f64)) -> f64;
    let kinds: [(&str, Pick); 2] = [("wrong_password", |r| r.0), ("other_vrid", |r| r.1)];
    for (name, pick) in kinds {
        let h = common::median(rounds.iter().map(|r| pick(&r.0)).collect());
        let k = common::median(rounds.iter().map(|r| pick(&r.1)).collect());
        let ratios: Vec<f64> = rounds.iter().map(|r| pick(&r.0) / pick(&r.1)).collect();
        let (lo, hi) = common::range(&ratios);
        let ratio = if k > 0.0 { h / k } else { f64::NAN };
        println!("{name:>16} {h:>10.3} {k:>11.3} {ratio:>8.2}   {lo:.2}–{hi:.2}");
        figures.push((format!("{name}_holdfast_cpu_s"), h));
        figures.push((format!("{name}_keepalived_cpu_s"), k));
        figures.push((format!("{name}_ratio"), ratio));
    }
    println!(
        "medians of {} rounds alternating between the daemons",
        record::rounds(ROUNDS)
    );
    record("flood", &figures);
}
