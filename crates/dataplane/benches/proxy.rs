//! Proxy benchmark: the same load against a backend directly, through HAProxy (tcp mode) and
//! through holdfast's proxy, in one run, on the loopback of a network namespace of its own
//! (the benchmark unshares one, so nothing leaves it). Prints each measure and its ratio to
//! direct, and holdfast against HAProxy.
//!
//! Needs root (for the namespace) and `haproxy` on the PATH (`scripts/test` installs it).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use holdfast_dataplane::proxy::ProxyPlane;
use holdfast_dataplane::{DataPlane, DestSpec, ServiceKey, ServiceSpec};
use holdfast_lb::sched::{HashFlags, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BACKEND: &str = "127.0.0.1:7001";
const HAPROXY: &str = "127.0.0.1:7002";
const HOLDFAST: &str = "127.0.0.1:7003";
/// The same backend through holdfast's nftables plane (DNAT in the output hook).
const NFT: &str = "127.0.0.1:7004";
const SECS: Duration = Duration::from_secs(1);
const ROUNDS: usize = 5;
const CONCURRENCY: usize = 32;

/// Echoes whatever it receives (ping-pong, short connections) and swallows bulk uploads.
async fn backend() {
    let l = TcpListener::bind(BACKEND).await.expect("bind backend");
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    // Bulk uploads are marked by a first byte 'B': swallow, never echo.
                    Ok(n) if buf[0] == b'B' || n > 64 => {}
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

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

async fn wait_listening(addr: &str) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never listened");
}

/// Short connections per second: connect, one byte each way, close.
async fn short_conns(addr: &'static str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut b = [0u8; 1];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                if s.write_all(b"x").await.is_ok() && s.read_exact(&mut b).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // RST on close: 32 clients for seconds would otherwise run out of ports.
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
        }));
    }
    tokio::time::sleep(SECS).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / SECS.as_secs_f64()
}

/// Bulk upload MB/s over one connection.
async fn bulk(addr: &'static str) -> f64 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let chunk = vec![b'B'; 256 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < SECS {
        s.write_all(&chunk).await.expect("write");
        sent += chunk.len() as u64;
    }
    sent as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// Round trips of 64 bytes on a kept-alive connection: (per second, p99 in µs).
async fn ping_pong(addr: &'static str) -> (f64, f64) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let msg = [b'p'; 64];
    let mut back = [0u8; 64];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < SECS {
        let t = Instant::now();
        s.write_all(&msg).await.expect("write");
        s.read_exact(&mut back).await.expect("read");
        lat.push(t.elapsed().as_micros() as f64);
    }
    lat.sort_by(f64::total_cmp);
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
    (lat.len() as f64 / start.elapsed().as_secs_f64(), p99)
}

struct Row {
    short: f64,
    bulk: f64,
    rr: f64,
    p99: f64,
}

async fn measure(addr: &'static str) -> Row {
    let short = short_conns(addr).await;
    let bulk = bulk(addr).await;
    let (rr, p99) = ping_pong(addr).await;
    Row {
        short,
        bulk,
        rr,
        p99,
    }
}

fn median(rows: &[Row]) -> Row {
    let pick = |f: fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Row {
        short: pick(|r| r.short),
        bulk: pick(|r| r.bulk),
        rr: pick(|r| r.rr),
        p99: pick(|r| r.p99),
    }
}

fn main() {
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
    // holdfast's proxy runs on its own two threads, as HAProxy runs in its own process with
    // two; the load generator and the backend share the benchmark's runtime.
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("proxy runtime");
    let backend_addr: SocketAddr = BACKEND.parse().unwrap();
    let plane = proxy_rt.block_on(async {
        let mut plane = ProxyPlane::new();
        plane
            .apply(&vec![ServiceSpec {
                key: ServiceKey::tcp(HOLDFAST.parse().unwrap()),
                sched: Kind::Wlc,
                flags: HashFlags::default(),
                persistence: None,
                persistence_prefix: None,
                dests: vec![DestSpec {
                    addr: backend_addr,
                    weight: 1,
                    upper: None,
                    lower: None,
                    method: holdfast_dataplane::Forward::Masq,
                }],
                connect_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(60),
                proxy_protocol: false,
            }])
            .expect("proxy listens");
        plane
    });
    let mut nft = holdfast_dataplane::nft::NftPlane::open("holdfast_bench")
        .expect("nftables (scripts/test installs the nftables package)");
    let nft_table = vec![ServiceSpec {
        key: ServiceKey::tcp(NFT.parse().unwrap()),
        sched: Kind::Rr,
        flags: HashFlags::default(),
        persistence: None,
        persistence_prefix: None,
        dests: vec![DestSpec {
            addr: backend_addr,
            weight: 1,
            upper: None,
            lower: None,
            method: holdfast_dataplane::Forward::Masq,
        }],
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        proxy_protocol: false,
    }];
    let rows = rt.block_on(async {
        tokio::spawn(backend());
        for a in [BACKEND, HAPROXY, HOLDFAST] {
            wait_listening(a).await;
        }
        // Interleaved rounds, medians: the machine's noise hits all of them alike. The nft
        // table exists only during its own rounds: a NAT table turns conntrack on for the
        // whole namespace, which would slow the others (direct included) too.
        let mut rounds: [Vec<Row>; 4] = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (i, a) in [BACKEND, HAPROXY, HOLDFAST, NFT].into_iter().enumerate() {
                if a == NFT {
                    nft.apply(&nft_table).expect("nft table applies");
                    wait_listening(NFT).await;
                }
                rounds[i].push(measure(a).await);
                if a == NFT {
                    nft.release().expect("nft table removed");
                }
            }
        }
        rounds.map(|r| median(&r))
    });
    proxy_rt.block_on(async move { drop(plane) });
    let _ = nft.release();
    let _ = ha.kill();
    let _ = ha.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let [d, h, p, n] = rows;
    println!(
        "proxy benchmark (loopback in a private namespace; medians of {ROUNDS} interleaved rounds of {} s; {CONCURRENCY} clients for short connections)",
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
        "{:<28} {:>12.0} {:>12.0} {:>12.0}   added p99: haproxy {:.0} µs, holdfast {:.0} µs",
        "p99 round trip µs",
        d.p99,
        h.p99,
        p.p99,
        h.p99 - d.p99,
        p.p99 - d.p99
    );
    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>10}",
        "nftables NAT (holdfast)", "direct", "nft", "nft/direct"
    );
    for (name, dv, nv) in [
        ("short connections /s", d.short, n.short),
        ("bulk MB/s", d.bulk, n.bulk),
        ("64 B round trips /s", d.rr, n.rr),
    ] {
        println!("{name:<28} {dv:>12.0} {nv:>12.0} {:>10.2}", nv / dv);
    }
    println!(
        "{:<28} {:>12.0} {:>12.0}   added p99: {:.0} µs",
        "p99 round trip µs",
        d.p99,
        n.p99,
        n.p99 - d.p99
    );
}
