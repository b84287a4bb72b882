//! Proxy benchmark: the same load against a backend directly, through HAProxy (tcp mode) and
//! through holdfast's proxy, in one run, on the loopback of a network namespace of its own
//! (the benchmark unshares one, so nothing leaves it). Prints each measure and its ratio to
//! direct, and holdfast against HAProxy.
//!
//! HAProxy and holdfast's proxy each run in a process of their own (holdfast's is this
//! executable again, running the proxy plane with its worker threads as the daemon does).
//!
//! Needs root (for the namespace) and `haproxy` on the PATH (`scripts/test` installs it).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

mod common;
#[path = "../../config/benches/record.rs"]
mod record;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::{CONCURRENCY, ROUNDS, Row, SECS, backend, measure, median, paired, wait_listening};

use holdfast_dataplane::proxy::ProxyPlane;
use holdfast_dataplane::{DataPlane, DestSpec, ServiceKey, ServiceSpec};
use holdfast_lb::sched::Kind;

const BACKEND: &str = "127.0.0.1:7001";
const HAPROXY: &str = "127.0.0.1:7002";
const HOLDFAST: &str = "127.0.0.1:7003";

fn haproxy(dir: &std::path::Path) -> Child {
    let cfg = dir.join("bench-haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    maxconn 4000\n    nbthread 2\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\nlisten bench\n    bind {HAPROXY}\n    server b {BACKEND}\n"
        ),
    )
    .expect("write haproxy config");
    Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy must be installed (scripts/test installs it)")
}

/// The argument that makes this executable the proxy's process.
const PROXY_CHILD: &str = "--holdfast-proxy";

/// The proxy's process: holdfast's proxy plane (its own worker threads, as in the daemon) with
/// one service, until standard input closes.
fn proxy_child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backend_addr: SocketAddr = BACKEND.parse().unwrap();
    let plane = rt.block_on(async {
        let mut plane = ProxyPlane::new();
        plane
            .apply(&vec![ServiceSpec::new(
                ServiceKey::tcp(HOLDFAST.parse().unwrap()),
                Kind::Wlc,
                vec![DestSpec::new(backend_addr, 1)],
            )])
            .expect("proxy listens");
        plane
    });
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    rt.block_on(async move { drop(plane) });
}

fn main() {
    if std::env::args().any(|a| a == PROXY_CHILD) {
        return proxy_child();
    }
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the proxy benchmark needs root: it runs in a network namespace of its own");
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare a network namespace");
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(
        up.success(),
        "cannot bring up lo in the benchmark's namespace"
    );
    let dir = std::env::temp_dir().join(format!("holdfast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut ha = haproxy(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // holdfast's proxy runs in a process of its own, as HAProxy does and as the daemon runs
    // it: this executable again, in this namespace, until its standard input closes. The load
    // generator and the backend share the benchmark's runtime.
    let mut proxy = Command::new(std::env::current_exe().expect("current_exe"))
        .arg(PROXY_CHILD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the proxy's process");
    let (ha_pid, proxy_pid) = (Some(ha.id()), Some(proxy.id()));
    let rows = rt.block_on(async {
        tokio::spawn(backend(BACKEND));
        for a in [BACKEND, HAPROXY, HOLDFAST] {
            wait_listening(a).await;
        }
        // Interleaved rounds, medians: the machine's noise hits all three alike.
        let mut rounds: [Vec<Row>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..record::rounds(ROUNDS) {
            for (i, (a, pid)) in [(BACKEND, None), (HAPROXY, ha_pid), (HOLDFAST, proxy_pid)]
                .into_iter()
                .enumerate()
            {
                rounds[i].push(measure(a, pid).await);
            }
        }
        // holdfast over HAProxy round by round: short connections, bulk, round trips.
        let pairs = [
            paired(&rounds[2], &rounds[1], |r| r.short),
            paired(&rounds[2], &rounds[1], |r| r.bulk),
            paired(&rounds[2], &rounds[1], |r| r.rr),
        ];
        (rounds.map(|r| median(&r)), pairs)
    });
    let (rows, pairs) = rows;
    // Its standard input closes: the proxy's process ends.
    drop(proxy.stdin.take());
    let _ = proxy.wait();
    let _ = ha.kill();
    let _ = ha.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let [d, h, p] = rows;
    println!(
        "proxy benchmark (loopback in a private namespace; medians of {} interleaved rounds of {} s; {CONCURRENCY} clients for short connections)",
        record::rounds(ROUNDS),
        SECS.as_secs()
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>10} {:>10} {:>14}",
        "", "direct", "haproxy", "holdfast", "ha/direct", "hf/direct", "holdfast/haproxy"
    );
    let line = |name: &str, d: f64, h: f64, p: f64| {
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>12.0} {:>10.2} {:>10.2} {:>14.2}",
            name,
            d,
            h,
            p,
            h / d,
            p / d,
            p / h
        );
    };
    line("short connections /s", d.short, h.short, p.short);
    line("bulk MB/s", d.bulk, h.bulk, p.bulk);
    line("64 B round trips /s", d.rr, h.rr, p.rr);
    println!(
        "{:<28} holdfast/haproxy of each round, median (middle half): short connections {}, bulk {}, round trips {}",
        "per-round ratios", pairs[0], pairs[1], pairs[2]
    );
    println!(
        "{:<28} {:>12} {:>12.1} {:>12.1} {:>10} {:>10} {:>14.2}",
        "proxy CPU µs per short conn",
        "",
        h.short_cpu,
        p.short_cpu,
        "",
        "",
        h.short_cpu / p.short_cpu
    );
    println!(
        "{:<28} {:>12} {:>12.2} {:>12.2} {:>10} {:>10} {:>14.2}",
        "proxy sleeps per short conn",
        "",
        h.short_sleeps,
        p.short_sleeps,
        "",
        "",
        h.short_sleeps / p.short_sleeps
    );
    println!(
        "{:<28} {:>12.1} {:>12.1} {:>12.1} {:>10} {:>10} {:>14.2}",
        "clients+backend CPU µs/conn",
        d.short_own_cpu,
        h.short_own_cpu,
        p.short_own_cpu,
        "",
        "",
        h.short_own_cpu / p.short_own_cpu
    );
    println!(
        "{:<28} {:>12.0} {:>12.0} {:>12.0}   added p99: haproxy {:.0} µs, holdfast {:.0} µs",
        "p99 round trip µs",
        d.p99,
        h.p99,
        p.p99,
        h.p99 - d.p99,
        p.p99 - d.p99
    );
    record::record(
        "proxy",
        &[
            ("short_per_s_direct", d.short),
            ("short_per_s_haproxy", h.short),
            ("short_per_s_holdfast", p.short),
            ("bulk_mb_s_direct", d.bulk),
            ("bulk_mb_s_haproxy", h.bulk),
            ("bulk_mb_s_holdfast", p.bulk),
            ("rr_per_s_direct", d.rr),
            ("rr_per_s_haproxy", h.rr),
            ("rr_per_s_holdfast", p.rr),
            ("ratio_short_median", pairs[0].median),
            ("ratio_short_q1", pairs[0].low),
            ("ratio_short_q3", pairs[0].high),
            ("ratio_bulk_median", pairs[1].median),
            ("ratio_bulk_q1", pairs[1].low),
            ("ratio_bulk_q3", pairs[1].high),
            ("ratio_rr_median", pairs[2].median),
            ("ratio_rr_q1", pairs[2].low),
            ("ratio_rr_q3", pairs[2].high),
            ("cpu_us_per_short_haproxy", h.short_cpu),
            ("cpu_us_per_short_holdfast", p.short_cpu),
            ("cpu_per_short_ratio", p.short_cpu / h.short_cpu),
            ("p99_us_direct", d.p99),
            ("p99_us_haproxy", h.p99),
            ("p99_us_holdfast", p.p99),
        ],
    );
}
