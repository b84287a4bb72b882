//! Checker benchmark: CPU of holdfast against keepalived 2.2.7's checker process running the
//! same TCP_CHECKs (`virtual_server`s on IPVS, NAT, real servers on loopback addresses that one
//! local listener answers) at a target rate of checks per second.
//!
//! keepalived's checker exits when the kernel has no IPVS, and this machine's kernel has none.
//! So the benchmark runs twice. First inside the IPVS VM (`scripts/ipvs-vm`: Debian's kernel
//! under QEMU software emulation) with real IPVS: it boots the VM, hands it this executable,
//! holdfast, and keepalived with its shared libraries (run through the dynamic loader from the
//! 9p share), and prints what the VM printed; the emulated VM answers 1 000 to 2 500 checks a
//! second depending on the machine, so it compares 500 and 1 000. Then on this machine's
//! kernel at up to 10 000 checks a second, keepalived with `fake_ipvs.c` preloaded (it answers
//! IPVS's socket options as an empty table would; a checker only programs IPVS when a server
//! changes state). The figures
//! that count are the ratios, with the checks per second the listener really answered printed
//! beside them. Each daemon runs alone: settle, then user+system time over a window, summed
//! over the daemon's process and its descendants (keepalived's parent and checker child).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

mod common;
#[path = "../../config/benches/record.rs"]
mod record;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MARKER: &str = "/etc/holdfast-ipvs-vm";
const PORT: u16 = 9000;
/// Longest wait for a daemon to reach the target rate before measuring.
const SETTLE: Duration = Duration::from_secs(40);
const WINDOW: Duration = Duration::from_secs(10);
/// Real servers per virtual server.
const PER_VS: usize = 250;
/// Rounds of each daemon on this machine's kernel (one in the slow VM).
const HOST_ROUNDS: usize = 3;

fn main() {
    if std::env::args().any(|a| a == "listen") {
        // For looking at one daemon by hand in the VM: only the listener, for two minutes.
        listener();
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    if Path::new(MARKER).exists() {
        in_vm();
    } else if std::env::args().any(|a| a == "host") {
        // `cargo bench --bench checks -- host`: only the comparison on this machine's kernel.
        host();
    } else {
        on_host();
    }
}

/// The shared libraries a binary loads, and the loader, as `ldd` names them.
fn libraries(bin: &str) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

fn on_host() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the checks benchmark needs root: it boots the IPVS VM");
    }
    let keepalived = "/usr/sbin/keepalived";
    assert!(
        Path::new(keepalived).exists(),
        "keepalived is not installed (scripts/test installs it)"
    );
    let me = std::env::current_exe().unwrap();
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ipvs-vm/run.sh");
    let mut cmd = Command::new(run);
    cmd.args(["--timeout", "900"])
        .arg("--put")
        .arg(format!("{}:checks", me.display()))
        .arg("--put")
        .arg(format!("{}:holdfast", env!("CARGO_BIN_EXE_holdfast")))
        .arg("--put")
        .arg(format!("{keepalived}:keepalived"));
    for lib in libraries(keepalived) {
        cmd.arg("--put").arg(&lib);
    }
    cmd.args(["-c", &record::vm_command("./checks")]);
    record::run_in_vm(cmd, "the checks benchmark");
    host();
}

/// Both daemons on this machine's own kernel, each alone in a network namespace of the
/// benchmark's, at up to 10 000 checks a second. The kernel has no IPVS, so keepalived runs with
/// `fake_ipvs.c` preloaded: it answers libipvs's IPVS socket options as an empty IPVS table
/// would, which keeps keepalived's checker running; holdfast runs its proxy plane, whose
/// listeners cost nothing per check. Neither data plane is touched while every server stays up.
fn host() {
    let ns = format!("hfchecks-{}", std::process::id());
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    let shim = dir.join("fake_ipvs.so");
    let src = dir.join("fake_ipvs.c");
    std::fs::write(&src, include_str!("fake_ipvs.c")).unwrap();
    let st = Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("cc (the fake IPVS shim for keepalived)");
    assert!(st.success(), "building fake_ipvs.so failed: {st}");
    let ip = |args: &[&str]| {
        assert!(Command::new("ip").args(args).status().unwrap().success());
    };
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let path = format!("/run/netns/{ns}");
    let accepted = std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        // The accepting thread is created here, so it lives in the namespace too.
        listener()
    })
    .join()
    .unwrap();
    let mut figures = Vec::new();
    header(
        "on this machine's kernel; keepalived with fake_ipvs.so preloaded, holdfast on its proxy plane",
    );
    for servers in [1000, 2000, 10_000] {
        let conf = dir.join(format!("checks-{servers}.conf"));
        std::fs::write(&conf, config(servers)).unwrap();
        let mut hf = Command::new("ip");
        hf.args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_holdfast")])
            .args(["run", "-n", "-G", "-C", "--data-dir"])
            .arg(&dir)
            .arg("-p")
            .arg(dir.join("holdfast.pid"))
            .arg("-f")
            .arg(&conf);
        let mut ka = Command::new("ip");
        ka.args(["netns", "exec", &ns, "/usr/sbin/keepalived"])
            .args(["-n", "-C", "-f"])
            .arg(&conf)
            .arg(format!("--pid={}", dir.join("ka.pid").display()))
            .arg(format!(
                "--checkers_pid={}",
                dir.join("ka-check.pid").display()
            ))
            .env("LD_PRELOAD", &shim);
        // Rounds alternate between the daemons, so that a slow spell of the machine weighs on
        // both; the row gives the medians.
        let rounds: Vec<_> = (0..record::rounds(HOST_ROUNDS))
            .map(|_| {
                (
                    measure("holdfast", &mut hf, servers, &accepted),
                    measure("keepalived", &mut ka, servers, &accepted),
                )
            })
            .collect();
        figures.extend(row(servers, &rounds));
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "medians of {} alternating rounds; ratio: holdfast's CPU per answered check over keepalived's (goal ≤ 1), with the lowest and highest of the rounds' ratios",
        record::rounds(HOST_ROUNDS)
    );
    record::record("checks", &figures);
}

/// A listener on every loopback address at PORT, closing what it accepts, counting.
fn listener() -> Arc<AtomicU64> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_reuse_address(true).unwrap();
    sock.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], PORT)).into())
        .unwrap();
    sock.listen(4096).unwrap();
    let l: TcpListener = sock.into();
    let n = Arc::new(AtomicU64::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    n
}

/// `servers` TCP_CHECKs every second, PER_VS real servers to a virtual server.
fn config(servers: usize) -> String {
    let mut c = String::new();
    for v in 0..servers.div_ceil(PER_VS) {
        let _ = write!(
            c,
            "virtual_server 10.10.{}.{} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n",
            v / 200,
            v % 200 + 1
        );
        for r in v * PER_VS..((v + 1) * PER_VS).min(servers) {
            let _ = write!(
                c,
                "    real_server 127.1.{}.{} {PORT} {{\n        TCP_CHECK {{\n            connect_timeout 2\n        }}\n    }}\n",
                r / 250,
                r % 250 + 1
            );
        }
        c.push_str("}\n");
    }
    c
}

/// `pid` and every process descended from it.
fn tree(pid: u32) -> Vec<u32> {
    let parent: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(|p| Some((p, common::parent(p)?)))
        .collect();
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        all.extend(parent.iter().filter(|&&(_, pp)| pp == p).map(|&(c, _)| c));
        i += 1;
    }
    all
}

/// Runs one daemon alone: (checks answered per second, CPU % of one core over all its
/// processes, time to reach the rate).
fn measure(
    daemon: &str,
    cmd: &mut Command,
    servers: usize,
    accepted: &AtomicU64,
) -> (f64, f64, Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{daemon}: {e}"));
    // Settled: two seconds in a row at 90 % of the target rate, or out of time.
    let target = servers as f64;
    let started = Instant::now();
    let mut last = accepted.load(Ordering::Relaxed);
    let mut good = 0;
    while good < 2 && started.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{daemon} exited during the settling time: {st}");
        }
        let now = accepted.load(Ordering::Relaxed);
        good = if (now - last) as f64 >= 0.9 * target {
            good + 1
        } else {
            0
        };
        last = now;
    }
    let settled = started.elapsed();
    let procs = tree(child.id());
    let cpu = || procs.iter().map(|&p| common::cpu_seconds(p)).sum::<f64>();
    let before = cpu();
    let a0 = accepted.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    let after = cpu();
    let a1 = accepted.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    // keepalived's checker child outlives a killed parent for a moment: kill each by PID.
    for &p in tree(child.id()).iter().rev() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
    std::thread::sleep(Duration::from_secs(1));
    (
        (a1 - a0) as f64 / secs,
        100.0 * (after - before).max(0.0) / secs,
        settled,
    )
}

fn header(place: &str) {
    println!(
        "checks (TCP_CHECK, delay_loop 1 s, NAT virtual servers of {PER_VS} real servers; {place}; CPU over {} s once at 90 % of the rate, or after {} s)",
        WINDOW.as_secs(),
        SETTLE.as_secs()
    );
    println!(
        "{:>8} {:>11} {:>11} {:>14} {:>12} {:>11} {:>16} {:>8}",
        "servers",
        "holdfast/s",
        "(settled)",
        "holdfast CPU%",
        "keepalived/s",
        "(settled)",
        "keepalived CPU%",
        "ratio"
    );
}

type Sample = (f64, f64, Duration);

/// One line of the table from rounds of (holdfast, keepalived) samples: the medians, which
/// it returns as figures too.
fn row(servers: usize, rounds: &[(Sample, Sample)]) -> Vec<(String, f64)> {
    let col = |f: &dyn Fn(&(Sample, Sample)) -> f64| common::median(rounds.iter().map(f).collect());
    // CPU per check, so a daemon that fell behind the rate is not flattered.
    let per_check = |(rate, cpu, _): &Sample| cpu / rate.max(1.0);
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|(h, k)| per_check(h) / per_check(k))
        .collect();
    let ratio = col(&|(h, _)| per_check(h)) / col(&|(_, k)| per_check(k));
    let spread = if ratios.len() > 1 {
        let (lo, hi) = common::range(&ratios);
        format!(" ({lo:.2}–{hi:.2})")
    } else {
        String::new()
    };
    println!(
        "{servers:>8} {:>11.0} {:>10.0}s {:>14.1} {:>12.0} {:>10.0}s {:>16.1} {ratio:>8.2}{spread}",
        col(&|(h, _)| h.0),
        col(&|(h, _)| h.2.as_secs_f64()),
        col(&|(h, _)| h.1),
        col(&|(_, k)| k.0),
        col(&|(_, k)| k.2.as_secs_f64()),
        col(&|(_, k)| k.1),
    );
    let mut figures = Vec::new();
    for (k, v) in [
        ("holdfast_per_s", col(&|(h, _)| h.0)),
        ("holdfast_cpu_pct", col(&|(h, _)| h.1)),
        ("keepalived_per_s", col(&|(_, k)| k.0)),
        ("keepalived_cpu_pct", col(&|(_, k)| k.1)),
        ("cpu_per_check_ratio", ratio),
        ("ratio_low", common::range(&ratios).0),
        ("ratio_high", common::range(&ratios).1),
    ] {
        figures.push((format!("{servers}_{k}"), v));
    }
    figures
}

fn in_vm() {
    let accepted = listener();
    header("inside the IPVS VM under software emulation, real IPVS");
    let mut figures = Vec::new();
    for servers in [500, 1000] {
        let conf = format!("/tmp/checks-{servers}.conf");
        std::fs::write(&conf, config(servers)).unwrap();
        let mut hf = Command::new("/host/holdfast");
        hf.args([
            "run",
            "-n",
            "-l",
            "-G",
            "-C",
            "--data-dir",
            "/tmp",
            "-p",
            "/tmp/holdfast.pid",
            "-f",
            &conf,
        ]);
        let mut ka = Command::new("/host/ld-linux-x86-64.so.2");
        ka.args(["--library-path", "/host", "/host/keepalived"])
            .args(["-n", "-C", "-f", &conf, "--pid=/tmp/ka.pid"])
            .arg("--checkers_pid=/tmp/ka-check.pid");
        let h = measure("holdfast", &mut hf, servers, &accepted);
        let k = measure("keepalived", &mut ka, servers, &accepted);
        figures.extend(row(servers, &[(h, k)]));
    }
    println!(
        "ratio: holdfast's CPU per answered check over keepalived's (goal ≤ 1); the emulated VM answers 1 000 to 2 500 checks/s at most, depending on the machine"
    );
    record::record("checks_vm", &figures);
}
