//! The director benchmark: every way holdfast can balance, and its baselines, in one topology
//! and one run. A client namespace, a director namespace that forwards (the backend's
//! gateway) and a backend namespace, joined by veth pairs created inside them (nothing
//! touches the host's namespace), with a return link from the backend straight to the client
//! that direct return's replies take, as they would through a site's router.
//!
//! On this machine's kernel, in interleaved rounds: plain routing through the director (no
//! balancer: the limit), HAProxy (tcp mode, splice, a thread per CPU) on the director,
//! holdfast's proxy on the director (a process of its own, as the daemon runs it), holdfast's
//! nftables NAT and its nftables direct return. This kernel has no IPVS, so the benchmark then
//! boots the test VM (`scripts/ipvs-vm`: Debian's kernel, one CPU, software emulation) and
//! runs the same topology there for IPVS NAT and direct routing — keepalived's data plane,
//! set up by holdfast's IPVS plane as keepalived sets it up — against holdfast's nftables NAT
//! and direct return on the same kernel. Everything in the VM is emulated alike: only its
//! ratios mean something.
//!
//! Each path meets the same loads: short connections at saturation, a bulk upload, requests on
//! kept-alive connections (as an HTTP load generator), then short connections at a fixed rate
//! well below every path's saturation, where latency (p50, p99) and CPU per connection are
//! measured without the load generator taking the CPUs from the balancer: the balancer
//! process's own CPU time, and the whole machine's busy time over that of routing alone, which
//! is where a kernel plane's softirq work shows. Ratios are paired per round (each path over
//! its baseline measured in the same round) and shown with their spread; the targets the
//! project set are printed met or missed.
//!
//! Needs root, `haproxy` and `nft` (`scripts/deps` installs them).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

mod common;
#[path = "../tests/support/director.rs"]
mod director;
#[path = "../../config/benches/record.rs"]
mod record;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{Ratios, Row, measure, median, paired, wait_listening};
use director::{Director, enter, in_ns, ip};
use holdfast_dataplane::ipvs::IpvsPlane;
use holdfast_dataplane::nft::{FastPath, NftPlane};
use holdfast_dataplane::proxy::ProxyPlane;
use holdfast_dataplane::{DataPlane, DestSpec, Forward, ServiceKey, ServiceSpec};
use holdfast_lb::sched::Kind;

/// The backend, for routing, NAT and the proxies.
const BACKEND: &str = "10.201.2.2:7001";
const HAPROXY: &str = "10.201.3.1:7002";
const PROXY: &str = "10.201.3.1:7003";
const NFT_NAT: &str = "10.201.3.1:7001";
/// IPVS NAT on a port of its own: the IPVS connection entries an earlier round leaves must
/// not meet the next round's nftables connections.
const IPVS_NAT: &str = "10.201.3.1:7005";
/// Direct return's virtual address, held by the backend on lo (and by the director where IPVS
/// needs it): the backend listens on it, on each service's port, as direct return requires.
const DR_IP: &str = "10.201.4.1";
const NFT_DR: &str = "10.201.4.1:7004";
const IPVS_DR: &str = "10.201.4.1:7006";

/// Rounds on this machine, and inside the slow VM.
const ROUNDS: usize = 9;
const VM_ROUNDS: usize = 9;
/// The fixed rate of short connections, a second: a seventh of the slowest path's saturation
/// here, a fifth in the VM, so that the load generator leaves the CPUs to the balancer.
const RATE: u32 = 1500;
const VM_RATE: u32 = 100;

/// Present only inside the test VM (`scripts/ipvs-vm/build.sh` writes it).
const MARKER: &str = "/etc/holdfast-ipvs-vm";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Route,
    Haproxy,
    Proxy,
    NftNat,
    NftDr,
    IpvsNat,
    IpvsDr,
}
use Via as P;

impl Via {
    fn name(self) -> &'static str {
        match self {
            P::Route => "routing",
            P::Haproxy => "HAProxy",
            P::Proxy => "proxy",
            P::NftNat => "nft NAT",
            P::NftDr => "nft DR",
            P::IpvsNat => "IPVS NAT",
            P::IpvsDr => "IPVS DR",
        }
    }

    fn key(self) -> &'static str {
        match self {
            P::Route => "route",
            P::Haproxy => "haproxy",
            P::Proxy => "proxy",
            P::NftNat => "nft_nat",
            P::NftDr => "nft_dr",
            P::IpvsNat => "ipvs_nat",
            P::IpvsDr => "ipvs_dr",
        }
    }

    fn addr(self) -> &'static str {
        match self {
            P::Route => BACKEND,
            P::Haproxy => HAPROXY,
            P::Proxy => PROXY,
            P::NftNat => NFT_NAT,
            P::NftDr => NFT_DR,
            P::IpvsNat => IPVS_NAT,
            P::IpvsDr => IPVS_DR,
        }
    }

    /// The kernel service the path needs on the director during its rounds.
    fn service(self) -> Option<ServiceSpec> {
        let vip: SocketAddr = self.addr().parse().unwrap();
        let backend: SocketAddr = BACKEND.parse().unwrap();
        let (dest, method) = match self {
            P::NftNat | P::IpvsNat => (backend, Forward::Masq),
            // Direct return keeps the port: the backend, on the service's port.
            P::NftDr | P::IpvsDr => (SocketAddr::new(backend.ip(), vip.port()), Forward::Route),
            _ => return None,
        };
        let mut d = DestSpec::new(dest, 1);
        d.method = method;
        Some(ServiceSpec::new(ServiceKey::tcp(vip), Kind::Rr, vec![d]))
    }
}

/// A process the benchmark started, killed when dropped (a failing benchmark included).
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runtime(ns: String) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || enter(&ns))
        .build()
        .expect("runtime")
}

/// The argument that makes this executable holdfast's proxy process.
const PROXY_CHILD: &str = "--holdfast-proxy";

/// holdfast's proxy process: the proxy plane (its own worker threads, as in the daemon) with
/// one service, until standard input closes.
fn proxy_child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backend: SocketAddr = BACKEND.parse().unwrap();
    let plane = rt.block_on(async {
        let mut plane = ProxyPlane::new();
        plane
            .apply(&vec![ServiceSpec::new(
                ServiceKey::tcp(PROXY.parse().unwrap()),
                Kind::Wlc,
                vec![DestSpec::new(backend, 1)],
            )])
            .expect("proxy listens");
        plane
    });
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    rt.block_on(async move { drop(plane) });
}

/// HAProxy on the director, set up as its documentation advises for TCP at speed: a thread
/// per CPU, kernel splicing, no logging.
fn haproxy(ns: &str, dir: &Path) -> Started {
    let cfg = dir.join("haproxy.cfg");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::fs::write(
        &cfg,
        format!(
            "global\n    maxconn 4000\n    nbthread {threads}\n\
             defaults\n    mode tcp\n    option splice-auto\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n\
             listen bench\n    bind {HAPROXY}\n    server b {BACKEND}\n"
        ),
    )
    .expect("write haproxy config");
    Started(
        Command::new("ip")
            .args(["netns", "exec", ns, "haproxy", "-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/deps installs it)"),
    )
}

fn main() {
    if std::env::args().any(|a| a == PROXY_CHILD) {
        return proxy_child();
    }
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the director benchmark needs root: it runs in network namespaces of its own");
    }
    if Path::new(MARKER).exists() {
        return in_vm();
    }
    on_host();
    if std::env::var_os("HOLDFAST_DIRECTOR_PROFILE").is_some() {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ipvs-vm/run.sh");
    let mut vm = Command::new(run);
    vm.args(["--timeout", "900", "--put"])
        .arg(format!("{}:director_bench", me.display()))
        .args(["-c", &record::vm_command("./director_bench --bench")]);
    record::run_in_vm(vm, "the director benchmark");
}

/// The topology, with direct return's return path.
fn topology() -> Director {
    let topo = Director::new(&format!("hfdir-{}", std::process::id()));
    topo.return_path(DR_IP);
    topo
}

/// The kernel planes, by path: each installs its one service for its own rounds and removes
/// it after (a NAT table turns conntrack on in the namespace, which would slow the others).
struct Kernel {
    nft: NftPlane,
    ipvs: Option<IpvsPlane>,
}

impl Kernel {
    fn install(&mut self, ns: &str, p: Via) {
        let Some(spec) = p.service() else { return };
        in_ns(ns, || match p {
            P::IpvsNat | P::IpvsDr => self.ipvs.as_mut().expect("IPVS").apply(&vec![spec]),
            _ => self.nft.apply(&vec![spec]),
        })
        .unwrap_or_else(|e| panic!("{} applies: {e:?}", p.name()));
    }

    fn remove(&mut self, ns: &str, p: Via) {
        if p.service().is_none() {
            return;
        }
        let errors: Vec<String> = in_ns(ns, || match p {
            P::IpvsNat | P::IpvsDr => {
                let e = self.ipvs.as_mut().expect("IPVS").release();
                e.iter().map(|e| format!("{e:?}")).collect()
            }
            _ => self
                .nft
                .release()
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .collect(),
        });
        assert!(errors.is_empty(), "{} removed: {errors:?}", p.name());
    }
}

/// Runs `rounds` rounds of every path in `paths`, interleaved; `process` names a path's
/// balancer process. Returns each path's rows.
fn rounds(
    topo: &Director,
    kernel: &mut Kernel,
    paths: &[Via],
    process: impl Fn(Via) -> Option<u32>,
    rounds: usize,
    rate: u32,
) -> Vec<Vec<Row>> {
    enter(&topo.client);
    let client_rt = runtime(topo.client.clone());
    let rows = client_rt.block_on(async {
        for p in paths.iter().filter(|p| p.service().is_none()) {
            wait_listening(p.addr()).await;
        }
        let mut rows: Vec<Vec<Row>> = paths.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (i, p) in paths.iter().enumerate() {
                kernel.install(&topo.director, *p);
                wait_listening(p.addr()).await;
                rows[i].push(measure(p.addr(), rate, process(*p)).await);
                kernel.remove(&topo.director, *p);
            }
        }
        rows
    });
    drop(client_rt);
    rows
}

/// One measure of a row: its label, its figures' key and how to read it.
type Line = (&'static str, &'static str, fn(&Row) -> f64);
const THROUGHPUT: [Line; 3] = [
    ("short connections /s", "short", |r| r.short),
    ("bulk MB/s", "bulk", |r| r.bulk),
    ("requests /s (32 kept alive)", "requests", |r| r.requests),
];

/// A target for a ratio's median.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, r: Ratios) -> bool {
        match self {
            Goal::AtMost(x) => r.median <= x,
            Goal::AtLeast(x) => r.median >= x,
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Goal::AtMost(x) => write!(f, "≤ {x:.2}"),
            Goal::AtLeast(x) => write!(f, "≥ {x:.2}"),
        }
    }
}

struct Report<'a> {
    paths: &'a [Via],
    rows: &'a [Vec<Row>],
    figures: Vec<(String, f64)>,
    targets: Vec<(String, Ratios, Goal)>,
}

impl<'a> Report<'a> {
    fn new(paths: &'a [Via], rows: &'a [Vec<Row>]) -> Report<'a> {
        Report {
            paths,
            rows,
            figures: Vec::new(),
            targets: Vec::new(),
        }
    }

    fn rows(&self, p: Via) -> &'a [Row] {
        let i = self
            .paths
            .iter()
            .position(|q| *q == p)
            .expect("path measured");
        &self.rows[i]
    }

    fn table(&mut self, rate: u32) {
        print!("{:<34}", "");
        for p in self.paths {
            print!(" {:>10}", p.name());
        }
        println!();
        let rows: [Line; 8] = [
            ("short connections /s", "short_per_s", |r| r.short),
            ("bulk MB/s", "bulk_mb_s", |r| r.bulk),
            ("requests /s (32 kept alive)", "requests_per_s", |r| {
                r.requests
            }),
            ("at the fixed rate: p50 µs", "p50_us", |r| r.fixed.p50),
            ("  p99 µs", "p99_us", |r| r.fixed.p99),
            ("  machine CPU µs per connection", "machine_us", |r| {
                r.fixed.machine_us
            }),
            ("  balancer process CPU µs per conn", "process_us", |r| {
                r.fixed.process_us
            }),
            ("  failed connections", "failed", |r| r.fixed.failed as f64),
        ];
        for (label, key, f) in &rows {
            print!("{label:<34}");
            for p in self.paths {
                let v = median(self.rows(*p), *f);
                print!(" {v:>10.1}");
                self.figures.push((format!("{key}_{}", p.key()), v));
            }
            println!();
        }
        // Over routing alone, per round: the machine's CPU each path adds per connection.
        print!("{:<34}", "  added machine CPU µs per conn");
        let route = self.rows(P::Route);
        for p in self.paths {
            let added = Ratios::of(
                self.rows(*p)
                    .iter()
                    .zip(route)
                    .map(|(a, b)| a.fixed.machine_us - b.fixed.machine_us)
                    .collect(),
            );
            print!(" {:>10.1}", added.median);
            self.figures
                .push((format!("added_us_{}", p.key()), added.median));
        }
        println!();
        println!(
            "(fixed rate: {rate} short connections a second for {} s, opened whatever the earlier ones are doing)",
            common::FIXED.as_secs()
        );
    }

    /// Per-round ratios of `of` over `to` for every throughput measure.
    fn ratios(&mut self, of: Via, to: Via) {
        let (a, b) = (self.rows(of), self.rows(to));
        let parts: Vec<String> = THROUGHPUT
            .iter()
            .map(|(_, short, f)| {
                let r = paired(a, b, f);
                self.spread(&format!("ratio_{}_{}_{short}", of.key(), to.key()), r);
                format!("{short} {r}")
            })
            .collect();
        println!(
            "{:<12} over {:<10} {}",
            of.name(),
            to.name(),
            parts.join(", ")
        );
    }

    /// Records `r` as figures `key` (its median), `key_q1` and `key_q3`.
    fn spread(&mut self, key: &str, r: Ratios) {
        self.figures.push((key.to_owned(), r.median));
        self.figures.push((format!("{key}_q1"), r.low));
        self.figures.push((format!("{key}_q3"), r.high));
    }

    fn target(&mut self, what: &str, r: Ratios, goal: Goal, key: &str) {
        self.spread(key, r);
        self.targets.push((what.to_owned(), r, goal));
    }

    fn print_targets(&self) {
        println!("targets (median of per-round ratios, middle half in brackets):");
        for (what, r, goal) in &self.targets {
            println!(
                "  {:<6} {what:<52} {r} (target {goal})",
                if goal.met(*r) { "met" } else { "MISSED" }
            );
        }
    }
}

/// On this machine's kernel: routing, HAProxy, holdfast's proxy, nftables NAT and DR.
fn on_host() {
    let topo = topology();
    let dir = std::env::temp_dir().join(format!("holdfast-director-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let backend_rt = runtime(topo.backend.clone());
    for a in [BACKEND, NFT_DR] {
        backend_rt.spawn(common::backend(a));
    }
    let ha = haproxy(&topo.director, &dir);
    let mut proxy = Started(
        Command::new("ip")
            .args(["netns", "exec", &topo.director])
            .arg(std::env::current_exe().expect("current_exe"))
            .arg(PROXY_CHILD)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the proxy's process"),
    );
    let mut kernel = Kernel {
        nft: in_ns(&topo.director, || {
            NftPlane::open("holdfast_bench").expect("nftables (scripts/deps installs nftables)")
        }),
        ipvs: None,
    };
    let (ha_pid, proxy_pid) = (ha.0.id(), proxy.0.id());
    let paths = [P::Route, P::Haproxy, P::Proxy, P::NftNat, P::NftDr];
    // One path alone, under a profiler (`perf record -a`): HOLDFAST_DIRECTOR_PROFILE=nft_nat.
    let profile = std::env::var("HOLDFAST_DIRECTOR_PROFILE").ok().map(|key| {
        *paths
            .iter()
            .find(|p| p.key() == key)
            .unwrap_or_else(|| panic!("HOLDFAST_DIRECTOR_PROFILE: no path {key}"))
    });
    let n = record::rounds(ROUNDS);
    let run: Vec<Via> = profile.map_or(paths.to_vec(), |p| vec![p]);
    let rows = rounds(
        &topo,
        &mut kernel,
        &run,
        |p| match p {
            P::Haproxy => Some(ha_pid),
            P::Proxy => Some(proxy_pid),
            _ => None,
        },
        n,
        RATE,
    );
    let fast = in_ns(&topo.director, || {
        let _ = kernel.nft.apply(&vec![P::NftNat.service().unwrap()]);
        let f = kernel.nft.fast_path().clone();
        let _ = kernel.nft.release();
        f
    });
    // Its standard input closed, the proxy's process ends by itself.
    drop(proxy.0.stdin.take());
    let _ = proxy.0.wait();
    drop(ha);
    drop(backend_rt);
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(p) = profile {
        let short = median(&rows[0], |r| r.short);
        println!("{}: {short:.0} short connections /s", p.name());
        return;
    }

    println!(
        "director benchmark (client → director → backend over veth, this machine's kernel; medians of {n} interleaved rounds)"
    );
    println!(
        "nftables NAT's flowtable fast path here: {}",
        match fast {
            FastPath::On(_) => "on".to_owned(),
            FastPath::Unavailable(why) => format!("unavailable ({why})"),
            other => format!("{other:?}"),
        }
    );
    let mut r = Report::new(&paths, &rows);
    r.table(RATE);
    for p in [P::Haproxy, P::Proxy, P::NftNat, P::NftDr] {
        r.ratios(p, P::Route);
    }
    for p in [P::Proxy, P::NftNat, P::NftDr] {
        r.ratios(p, P::Haproxy);
    }
    let (hf, ha) = (r.rows(P::Proxy), r.rows(P::Haproxy));
    let cpu = paired(hf, ha, |x| x.fixed.process_us);
    let what = "proxy CPU per connection over HAProxy's";
    r.target(what, cpu, Goal::AtMost(0.95), "target_proxy_cpu");
    let p99 = paired(hf, ha, |x| x.fixed.p99);
    let what = "proxy p99 at the fixed rate over HAProxy's";
    r.target(what, p99, Goal::AtMost(1.0), "target_proxy_p99");
    for (name, short, f) in THROUGHPUT {
        let what = format!("proxy {name} over HAProxy's");
        let key = format!("target_proxy_{short}");
        r.target(&what, paired(hf, ha, f), Goal::AtLeast(0.97), &key);
    }
    for p in [P::NftNat, P::NftDr] {
        let what = format!("{} short connections over HAProxy's", p.name());
        let key = format!("target_{}_short", p.key());
        r.target(
            &what,
            paired(r.rows(p), ha, |x| x.short),
            Goal::AtLeast(1.25),
            &key,
        );
    }
    r.print_targets();
    record::record("director", &r.figures);
}

/// Inside the VM: routing, IPVS NAT and DR, nftables NAT and DR, on Debian's kernel.
fn in_vm() {
    let topo = topology();
    // IPVS takes only packets for an address of the director's own.
    ip(&[
        "-n",
        &topo.director,
        "addr",
        "add",
        &format!("{DR_IP}/32"),
        "dev",
        "lo",
    ]);
    let backend_rt = runtime(topo.backend.clone());
    for a in [BACKEND, NFT_DR, IPVS_DR] {
        backend_rt.spawn(common::backend(a));
    }
    let mut kernel = in_ns(&topo.director, || Kernel {
        nft: NftPlane::open("holdfast_bench").expect("nftables in the VM"),
        ipvs: Some(IpvsPlane::open().expect("IPVS in the VM")),
    });
    let paths = [P::Route, P::IpvsNat, P::NftNat, P::IpvsDr, P::NftDr];
    let n = record::rounds(VM_ROUNDS);
    let rows = rounds(&topo, &mut kernel, &paths, |_| None, n, VM_RATE);
    drop(backend_rt);
    drop(topo);
    println!(
        "director benchmark in the VM (Debian's kernel, one CPU under software emulation: only the ratios mean something; medians of {n} interleaved rounds)"
    );
    let mut r = Report::new(&paths, &rows);
    r.table(VM_RATE);
    for p in [P::IpvsNat, P::NftNat, P::IpvsDr, P::NftDr] {
        r.ratios(p, P::Route);
    }
    r.ratios(P::NftNat, P::IpvsNat);
    r.ratios(P::NftDr, P::IpvsDr);
    for (nft, ipvs) in [(P::NftNat, P::IpvsNat), (P::NftDr, P::IpvsDr)] {
        let (a, b) = (r.rows(nft), r.rows(ipvs));
        for (name, short, f) in THROUGHPUT {
            let what = format!("{} {name} over {}'s", nft.name(), ipvs.name());
            let key = format!("target_{}_{short}", nft.key());
            r.target(&what, paired(a, b, f), Goal::AtLeast(1.0), &key);
        }
        let what = format!(
            "{} machine CPU per connection over {}'s",
            nft.name(),
            ipvs.name()
        );
        let cpu = paired(a, b, |x| x.fixed.machine_us);
        r.target(
            &what,
            cpu,
            Goal::AtMost(1.0),
            &format!("target_{}_cpu", nft.key()),
        );
    }
    r.print_targets();
    record::record("director_vm", &r.figures);
}
