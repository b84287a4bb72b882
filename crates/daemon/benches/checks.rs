//! Checker benchmark: CPU of holdfast against keepalived 2.2.7's checker process running the
//! same TCP_CHECKs (`virtual_server`s on IPVS, NAT, real servers on loopback addresses that one
//! local listener answers) at a target rate of checks per second.
//!
//! keepalived's checker exits when the kernel has no IPVS, and this machine's kernel has none,
//! so the benchmark runs inside the IPVS VM (`scripts/ipvs-vm`: Debian's kernel under QEMU
//! software emulation). On a host it boots the VM, hands it this executable, holdfast, and
//! keepalived with its shared libraries (run through the dynamic loader from the 9p share),
//! and prints what the VM printed. Emulation slows both daemons alike; the figures that count
//! are the ratios, and the checks per second the listener really answered is printed beside
//! them. Each daemon runs alone: settle, then user+system time over a window, summed over
//! its processes (keepalived's parent and checker child; holdfast).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

mod common;

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

fn main() {
    if std::env::args().any(|a| a == "listen") {
        // For looking at one daemon by hand in the VM: only the listener, for two minutes.
        listener();
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    if Path::new(MARKER).exists() {
        in_vm();
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
    cmd.args(["-c", "./checks"]);
    let st = cmd.status().expect("scripts/ipvs-vm/run.sh");
    assert!(st.success(), "the checks benchmark failed in the VM: {st}");
    native();
}

/// holdfast alone on this machine's kernel (no IPVS: the proxy plane, whose listeners cost
/// nothing per check) at 10 000 checks a second, in a namespace of its own.
fn native() {
    let servers = 10_000;
    let ns = format!("hfchecks-{}", std::process::id());
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
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("checks.conf");
    std::fs::write(&conf, config(servers, 1.0)).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_holdfast")])
        .args(["run", "-n", "-G", "-C", "--data-dir"])
        .arg(&dir)
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let cpu = || common::cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(5));
    let (c0, a0, t0) = (cpu(), accepted.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(WINDOW);
    let (c1, a1) = (cpu(), accepted.load(Ordering::Relaxed));
    let secs = t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "on this machine (no IPVS, so holdfast alone on its proxy plane; keepalived's checker exits without IPVS): {servers} servers at delay_loop 1 s: {:.0} checks/s answered, holdfast {:.1} % of one core",
        (a1 - a0) as f64 / secs,
        100.0 * (c1 - c0) / secs
    );
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

/// `servers` TCP_CHECKs every `delay_loop` seconds, PER_VS real servers to a virtual server.
fn config(servers: usize, delay_loop: f64) -> String {
    let mut c = String::new();
    for v in 0..servers.div_ceil(PER_VS) {
        let _ = write!(
            c,
            "virtual_server 10.10.{}.{} 80 {{\n    delay_loop {delay_loop}\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n",
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

/// User+system seconds of every process whose command line names `what`.
fn cpu_of(what: &str) -> (f64, usize) {
    let mut cpu = 0.0;
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(what) {
            cpu += common::cpu_seconds(pid);
            n += 1;
        }
    }
    (cpu, n)
}

/// Runs one daemon: (checks answered per second, CPU % of one core, time to reach the rate).
fn measure(
    daemon: &str,
    servers: usize,
    delay_loop: f64,
    accepted: &AtomicU64,
) -> (f64, f64, Duration) {
    let conf = format!("/tmp/checks-{daemon}.conf");
    std::fs::write(&conf, config(servers, delay_loop)).unwrap();
    let mut child = match daemon {
        "holdfast" => Command::new("/host/holdfast")
            .args([
                "run",
                "-n",
                "-l",
                "-G",
                "-C",
                "--data-dir",
                "/tmp",
                "-f",
                &conf,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("holdfast"),
        _ => Command::new("/host/ld-linux-x86-64.so.2")
            .args(["--library-path", "/host", "/host/keepalived"])
            .args(["-n", "-C", "-f", &conf, "--pid=/tmp/ka.pid"])
            .arg("--checkers_pid=/tmp/ka-check.pid")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keepalived"),
    };
    let marker = if daemon == "holdfast" {
        "/host/holdfast"
    } else {
        "/host/keepalived"
    };
    // Settled: two seconds in a row at 90 % of the target rate, or out of time.
    let target = servers as f64 / delay_loop;
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
    let (before, procs) = cpu_of(marker);
    let a0 = accepted.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    let (after, _) = cpu_of(marker);
    let a1 = accepted.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    // keepalived's checker child outlives a killed parent for a moment.
    if let Ok(pid) = std::fs::read_to_string("/tmp/ka-check.pid") {
        let _ = Command::new("kill")
            .args(["-9", pid.trim()])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file("/tmp/ka-check.pid");
    }
    assert!(procs >= 1, "no {daemon} process found");
    std::thread::sleep(Duration::from_secs(1));
    (
        (a1 - a0) as f64 / secs,
        100.0 * (after - before).max(0.0) / secs,
        settled,
    )
}

fn in_vm() {
    let accepted = listener();
    println!(
        "checks (TCP_CHECK on IPVS NAT virtual servers, {PER_VS} real servers each; inside the IPVS VM under software emulation; CPU over {} s once at 90 % of the rate, or after {} s)",
        WINDOW.as_secs(),
        SETTLE.as_secs()
    );
    println!(
        "{:>8} {:>11} {:>11} {:>11} {:>14} {:>11} {:>11} {:>16} {:>8}",
        "servers",
        "delay_loop",
        "holdfast/s",
        "(settled)",
        "holdfast CPU%",
        "keepalived/s",
        "(settled)",
        "keepalived CPU%",
        "ratio"
    );
    for (servers, delay_loop) in [(1000, 1.0), (2000, 1.0), (10_000, 1.0)] {
        let (hr, hc, hs) = measure("holdfast", servers, delay_loop, &accepted);
        let (kr, kc, ks) = measure("keepalived", servers, delay_loop, &accepted);
        // CPU per check, so a daemon that fell behind the rate is not flattered.
        let ratio = (hc / hr.max(1.0)) / (kc / kr.max(1.0));
        println!(
            "{servers:>8} {delay_loop:>10.1}s {hr:>11.0} {:>10.0}s {hc:>14.1} {kr:>11.0} {:>10.0}s {kc:>16.1} {ratio:>8.2}",
            hs.as_secs_f64(),
            ks.as_secs_f64()
        );
    }
    println!(
        "ratio: holdfast's CPU per answered check over keepalived's (goal ≤ 1); the emulated VM answers about 2 500 checks/s at most, so the 10 000 line is an overload"
    );
}
