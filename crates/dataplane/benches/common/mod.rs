//! The load the director benchmark offers every path: short connections, a bulk upload and
//! request/response on kept-alive connections at saturation, then short connections at a
//! fixed rate below it (latency and CPU per connection), and a backend that answers them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long each saturating load runs.
pub const SECS: Duration = Duration::from_secs(1);
/// How long the fixed-rate load runs.
pub const FIXED: Duration = Duration::from_secs(2);
/// Clients at once for the saturating loads (short connections, request/response), as an
/// HTTP load generator keeps them.
pub const CONCURRENCY: usize = 32;

/// Echoes whatever it receives (requests, short connections) and swallows bulk uploads.
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

/// CPU time, in ns, that process `pid`'s threads have run so far (the first field of each
/// thread's `schedstat`; 0 when the process is gone).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time, in µs, the whole machine has been busy so far, every CPU summed: user, system,
/// interrupts and softirqs (`/proc/stat`'s first line without idle, iowait and steal). What a
/// kernel data plane costs is only seen here: its work runs in softirq, on whichever task
/// or CPU the packet reaches.
pub fn machine_busy_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("/proc/stat's cpu line");
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq: not steal (another guest of the hypervisor
    // running) nor guest time (already in user).
    let busy: u64 = ticks
        .iter()
        .take(7)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    busy as f64 * 1e6 / hz as f64
}

/// Short connections per second: connect, one byte each way, close.
pub async fn short_conns(addr: &'static str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if one_short(addr).await.is_some() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
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

/// One short connection (connect, a byte each way, close with a reset so that thousands a
/// second do not run the client out of ports): its time, or None if it failed.
async fn one_short(addr: &'static str) -> Option<Duration> {
    let start = Instant::now();
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let _ = s.set_nodelay(true);
        let mut b = [0u8; 1];
        s.write_all(b"x").await.ok()?;
        s.read_exact(&mut b).await.ok()?;
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .map(|()| start.elapsed())
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

/// Requests per second: [`CONCURRENCY`] kept-alive connections, each sending a 64-byte
/// request and waiting for its answer before the next, as an HTTP load generator does.
pub async fn requests(addr: &'static str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let msg = [b'p'; 64];
            let mut back = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(&msg).await.is_err() || s.read_exact(&mut back).await.is_err() {
                    break;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    let before = done.load(Ordering::Relaxed);
    tokio::time::sleep(SECS).await;
    let n = done.load(Ordering::Relaxed) - before;
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / took.as_secs_f64()
}

/// Short connections opened at `rate` a second for [`FIXED`], whatever the earlier ones are
/// doing (an open loop: a slow path meets more connections at once, as a real one would).
pub struct Fixed {
    pub failed: u64,
    /// Connection times, µs: connect, a byte each way.
    pub p50: f64,
    pub p99: f64,
    /// The whole machine's busy CPU µs per connection (client, director and backend).
    pub machine_us: f64,
    /// The balancer process's CPU µs per connection (NaN without one).
    pub process_us: f64,
}

pub async fn fixed_rate(addr: &'static str, rate: u32, process: Option<u32>) -> Fixed {
    // Tokio's timer counts milliseconds: a batch each millisecond, or one each 1000/rate ms.
    let batch = (rate / 1000).max(1);
    let period = Duration::from_micros(1_000_000 * u64::from(batch) / u64::from(rate.max(1)));
    let ticks = (FIXED.as_micros() / period.as_micros().max(1)) as usize;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let busy = machine_busy_us();
    let cpu = process.map(cpu_ns);
    let mut conns = Vec::with_capacity(ticks * batch as usize);
    for _ in 0..ticks {
        tick.tick().await;
        for _ in 0..batch {
            conns.push(tokio::spawn(one_short(addr)));
        }
    }
    let mut times = Vec::with_capacity(conns.len());
    let mut failed = 0;
    for c in conns {
        match c.await.ok().flatten() {
            Some(t) => times.push(t.as_secs_f64() * 1e6),
            None => failed += 1,
        }
    }
    let busy = machine_busy_us() - busy;
    let made = times.len() as u64;
    let per = |total: f64| {
        if made > 0 {
            total / made as f64
        } else {
            f64::NAN
        }
    };
    let process_us = match (process, cpu) {
        (Some(pid), Some(before)) => per(cpu_ns(pid).saturating_sub(before) as f64 / 1e3),
        _ => f64::NAN,
    };
    times.sort_by(f64::total_cmp);
    let at = |q: usize| {
        times
            .get((times.len().saturating_sub(1)) * q / 100)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Fixed {
        failed,
        p50: at(50),
        p99: at(99),
        machine_us: per(busy),
        process_us,
    }
}

/// One round's measures of one path.
pub struct Row {
    pub short: f64,
    pub bulk: f64,
    pub requests: f64,
    pub fixed: Fixed,
}

/// Every load against `addr`; `process`, the balancer's process if it has one.
pub async fn measure(addr: &'static str, rate: u32, process: Option<u32>) -> Row {
    Row {
        short: short_conns(addr).await,
        bulk: bulk(addr).await,
        requests: requests(addr).await,
        fixed: fixed_rate(addr, rate, process).await,
    }
}

/// The per-round ratios `f(of[i]) / f(to[i])` of one measure: each round's value over the
/// baseline measured beside it in the same round, which the machine's drift between rounds
/// does not move as it moves the ratio of two medians. Shown as the median and, in
/// brackets, the middle half of the rounds (first to third quartile).
pub fn paired(of: &[Row], to: &[Row], f: impl Fn(&Row) -> f64) -> Ratios {
    let v: Vec<f64> = of.iter().zip(to).map(|(a, b)| f(a) / f(b)).collect();
    Ratios::of(v)
}

/// A spread of per-round values: median and quartiles.
#[derive(Clone, Copy)]
pub struct Ratios {
    pub low: f64,
    pub median: f64,
    pub high: f64,
}

impl Ratios {
    pub fn of(mut v: Vec<f64>) -> Ratios {
        v.retain(|x| !x.is_nan());
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
}

impl std::fmt::Display for Ratios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ({:.2}–{:.2})", self.median, self.low, self.high)
    }
}

/// The median over rounds of one measure.
pub fn median(rows: &[Row], f: impl Fn(&Row) -> f64) -> f64 {
    Ratios::of(rows.iter().map(f).collect()).median
}
