//! The load generator the data-plane benchmarks share: short connections, bulk upload and
//! kept-alive round trips against an address, and a backend that answers them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SECS: Duration = Duration::from_secs(1);
pub const ROUNDS: usize = 11;
pub const CONCURRENCY: usize = 32;

/// Echoes whatever it receives (ping-pong, short connections) and swallows bulk uploads.
pub async fn backend(addr: &str) {
    let l = TcpListener::bind(addr).await.expect("bind backend");
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

pub async fn wait_listening(addr: &str) {
    for _ in 0..200 {
        let attempt = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr));
        if matches!(attempt.await, Ok(Ok(_))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never listened");
}

/// The sum over process `pid`'s threads of a number read from each thread's `file` in
/// /proc (0 when the process is gone).
fn threads_sum(pid: u32, file: &str, number: fn(&str) -> Option<u64>) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join(file)).ok())
        .filter_map(|s| number(&s))
        .sum()
}

/// CPU time, in ns, that process `pid`'s threads have run so far (the first field of each
/// thread's `schedstat`, nanoseconds on a CPU).
pub fn cpu_ns(pid: u32) -> u64 {
    threads_sum(pid, "schedstat", |s| {
        s.split_whitespace().next()?.parse().ok()
    })
}

/// How often process `pid`'s threads have gone to sleep so far (the sum of their voluntary
/// context switches): a thread that sleeps must be woken, by a peer paying for it.
pub fn sleeps(pid: u32) -> u64 {
    threads_sum(pid, "status", |s| {
        s.lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
            .trim()
            .parse()
            .ok()
    })
}

/// Short connections per second: connect, one byte each way, close. Also the number made.
pub async fn short_conns(addr: &'static str) -> (f64, u64) {
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
    let n = done.load(Ordering::Relaxed);
    (n as f64 / SECS.as_secs_f64(), n)
}

/// Bulk upload MB/s over one connection.
pub async fn bulk(addr: &'static str) -> f64 {
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
pub async fn ping_pong(addr: &'static str) -> (f64, f64) {
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

pub struct Row {
    pub short: f64,
    /// CPU µs the proxy's process spent per short connection (NaN when not measured).
    pub short_cpu: f64,
    /// Times the proxy's threads went to sleep per short connection (NaN when not measured).
    pub short_sleeps: f64,
    /// CPU µs this process (the clients and the backend) spent per short connection.
    pub short_own_cpu: f64,
    pub bulk: f64,
    pub rr: f64,
    pub p99: f64,
}

/// The three loads against `addr`; `proxy`, the process serving it, to count its CPU time.
pub async fn measure(addr: &'static str, proxy: Option<u32>) -> Row {
    let before = proxy.map(|p| (cpu_ns(p), sleeps(p)));
    let own = cpu_ns(std::process::id());
    let (short, made) = short_conns(addr).await;
    let short_own_cpu = if made > 0 {
        cpu_ns(std::process::id()).saturating_sub(own) as f64 / 1e3 / made as f64
    } else {
        f64::NAN
    };
    let (short_cpu, short_sleeps) = match (proxy, before) {
        (Some(pid), Some((cpu, slept))) if made > 0 => (
            cpu_ns(pid).saturating_sub(cpu) as f64 / 1e3 / made as f64,
            sleeps(pid).saturating_sub(slept) as f64 / made as f64,
        ),
        _ => (f64::NAN, f64::NAN),
    };
    let bulk = bulk(addr).await;
    let (rr, p99) = ping_pong(addr).await;
    Row {
        short,
        short_cpu,
        short_sleeps,
        short_own_cpu,
        bulk,
        rr,
        p99,
    }
}

/// The per-round ratios `of[i] / to[i]` of one measure: each round's value over the baseline
/// measured beside it in the same round, which the machine's drift between rounds does not
/// move as it moves the ratio of two medians. Shown as the median and, in brackets, the
/// middle half of the rounds (first to third quartile).
pub fn paired(of: &[Row], to: &[Row], f: fn(&Row) -> f64) -> Ratios {
    let mut v: Vec<f64> = of.iter().zip(to).map(|(a, b)| f(a) / f(b)).collect();
    v.sort_by(f64::total_cmp);
    let at = |q: usize| {
        v.get((v.len().saturating_sub(1)) * q / 4)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ratios {
        low: at(1),
        median: at(2),
        high: at(3),
    }
}

/// See [`paired`].
pub struct Ratios {
    pub low: f64,
    pub median: f64,
    pub high: f64,
}

impl std::fmt::Display for Ratios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ({:.2}–{:.2})", self.median, self.low, self.high)
    }
}

pub fn median(rows: &[Row]) -> Row {
    let pick = |f: fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Row {
        short: pick(|r| r.short),
        short_cpu: pick(|r| r.short_cpu),
        short_sleeps: pick(|r| r.short_sleeps),
        short_own_cpu: pick(|r| r.short_own_cpu),
        bulk: pick(|r| r.bulk),
        rr: pick(|r| r.rr),
        p99: pick(|r| r.p99),
    }
}
