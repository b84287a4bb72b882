//! nftables benchmark, as a director is deployed: a client namespace, a director namespace
//! that forwards, and a backend namespace, joined by veth pairs (created inside the
//! namespaces; nothing touches the host's). The same load as the proxy benchmark goes to the
//! backend directly (routed through the director), through holdfast's proxy on the director,
//! through holdfast's nftables DNAT on the director, and by nftables direct return (the
//! director forwards requests unchanged to the backend, which holds the virtual address on lo;
//! replies are routed back by the director without NAT, where a real deployment would send
//! them through its own router). The nft tables exist only during
//! their own rounds: a NAT table turns conntrack on for the namespace, which would slow the
//! others.
//!
//! Established NAT connections take the flowtable fast path where the kernel has one; this
//! machine's kernel has none. So the benchmark then boots the test VM (`scripts/ipvs-vm`:
//! Debian's kernel, which has it, under QEMU software emulation, one CPU) and runs there
//! again: direct, NAT on conntrack's path alone (`nft_flowtable off`) and NAT with the
//! flowtable, in the same topology and rounds. Everything in the VM is emulated alike, so only
//! its ratios mean something.
//!
//! Needs root and `nft` (`scripts/test` installs nftables).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it

mod common;
#[path = "../../config/benches/record.rs"]
mod record;

use std::path::Path;
use std::process::Command;

use common::{ROUNDS, Row, SECS, backend, measure, median, paired, wait_listening};
use holdfast_dataplane::nft::{FastPath, NftPlane};
use holdfast_dataplane::proxy::ProxyPlane;
use holdfast_dataplane::{DataPlane, DestSpec, ServiceKey, ServiceSpec};
use holdfast_lb::sched::Kind;

const BACKEND: &str = "10.201.2.2:7001";
const NFT_VIP: &str = "10.201.3.1:7001";
const PROXY_VIP: &str = "10.201.3.1:7002";
/// Direct return's virtual address is not the director's: replies come back through it (the
/// backend's route), and a packet from one of its own addresses would be a martian.
const DR_VIP: &str = "10.201.4.1:7003";
/// The backend for direct return: the same port as the virtual service, as DR requires.
const DR_BACKEND: &str = "10.201.2.2:7003";

#[path = "../tests/support/director.rs"]
mod director;

use director::{Director, enter, in_ns, ip};

fn runtime(ns: String) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || enter(&ns))
        .build()
        .expect("runtime")
}

fn service(vip: &str) -> ServiceSpec {
    let dests = vec![DestSpec::new(BACKEND.parse().unwrap(), 1)];
    ServiceSpec::new(ServiceKey::tcp(vip.parse().unwrap()), Kind::Rr, dests)
}

fn direct_return() -> ServiceSpec {
    let mut d = DestSpec::new(DR_BACKEND.parse().unwrap(), 1);
    d.method = holdfast_dataplane::Forward::Route;
    ServiceSpec::new(ServiceKey::tcp(DR_VIP.parse().unwrap()), Kind::Rr, vec![d])
}

/// Present only inside the test VM (`scripts/ipvs-vm/build.sh` writes it).
const MARKER: &str = "/etc/holdfast-ipvs-vm";
/// Rounds inside the slow VM.
const VM_ROUNDS: usize = 5;

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the nft benchmark needs root: it runs in network namespaces of its own");
    }
    if Path::new(MARKER).exists() {
        return in_vm();
    }
    on_host();
    let me = std::env::current_exe().unwrap();
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ipvs-vm/run.sh");
    let mut vm = Command::new(run);
    vm.args(["--timeout", "900", "--put"])
        .arg(format!("{}:nft_bench", me.display()))
        .args(["-c", &record::vm_command("./nft_bench --bench")]);
    record::run_in_vm(vm, "the nft benchmark");
}

/// Inside the VM: direct, NAT on conntrack's path alone, NAT with the flowtable.
fn in_vm() {
    let topo = Director::new(&format!("hfnft-{}", std::process::id()));
    let backend_rt = runtime(topo.backend.clone());
    backend_rt.spawn(backend(BACKEND));
    let mut nft = in_ns(&topo.director, || {
        NftPlane::open("holdfast_bench").expect("nftables in the VM")
    });
    enter(&topo.client);
    let client_rt = runtime(topo.client.clone());
    let mut fast = FastPath::Wanted;
    let rounds = client_rt.block_on(async {
        wait_listening(BACKEND).await;
        let mut rounds: [Vec<Row>; 3] = Default::default();
        for _ in 0..record::rounds(VM_ROUNDS) {
            for (i, flowtable) in [None, Some(false), Some(true)].into_iter().enumerate() {
                if let Some(on) = flowtable {
                    in_ns(&topo.director, || {
                        nft.set_flowtable(on);
                        nft.apply(&vec![service(NFT_VIP)])
                    })
                    .expect("nft table applies");
                    if on {
                        fast = nft.fast_path().clone();
                    }
                    wait_listening(NFT_VIP).await;
                }
                let addr = if flowtable.is_some() {
                    NFT_VIP
                } else {
                    BACKEND
                };
                rounds[i].push(measure(addr, None).await);
                if flowtable.is_some() {
                    in_ns(&topo.director, || nft.release()).expect("nft table removed");
                }
            }
        }
        rounds
    });
    drop(client_rt);
    drop(backend_rt);
    drop(topo);
    assert!(
        matches!(fast, FastPath::On(_)),
        "the VM's kernel has nf_flow_table, yet the fast path is {fast:?}"
    );
    let pairs = |i: usize, f: fn(&Row) -> f64| paired(&rounds[i], &rounds[0], f);
    let [d, ct, ft] = rounds.each_ref().map(|r| median(r));
    println!(
        "nftables in the VM (Debian's kernel, with nf_flow_table, under software emulation, 1 CPU; medians of {} interleaved rounds of {} s; only the ratios mean something)",
        record::rounds(VM_ROUNDS),
        SECS.as_secs()
    );
    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "", "direct", "NAT ct only", "NAT + flow", "ct only/dir", "+ flow/dir"
    );
    for (name, f) in [
        (
            "short connections /s",
            (|r: &Row| r.short) as fn(&Row) -> f64,
        ),
        ("bulk MB/s", |r: &Row| r.bulk),
        ("64 B round trips /s", |r: &Row| r.rr),
    ] {
        println!(
            "{name:<28} {:>10.0} {:>12.0} {:>12.0} {:>12.2} {:>12.2}",
            f(&d),
            f(&ct),
            f(&ft),
            f(&ct) / f(&d),
            f(&ft) / f(&d)
        );
    }
    println!(
        "{:<28} each round over its direct round, median (middle half): ct only short {}, bulk {}; + flow short {}, bulk {}",
        "per-round ratios",
        pairs(1, |r| r.short),
        pairs(1, |r| r.bulk),
        pairs(2, |r| r.short),
        pairs(2, |r| r.bulk)
    );
    record::record(
        "nft_vm",
        &[
            ("short_per_s_direct", d.short),
            ("short_per_s_ct_only", ct.short),
            ("short_per_s_flowtable", ft.short),
            ("ratio_ct_only_rr", ct.rr / d.rr),
            ("ratio_flowtable_rr", ft.rr / d.rr),
            ("ratio_ct_only_short_median", pairs(1, |r| r.short).median),
            ("ratio_ct_only_bulk_median", pairs(1, |r| r.bulk).median),
            ("ratio_flowtable_short_median", pairs(2, |r| r.short).median),
            ("ratio_flowtable_bulk_median", pairs(2, |r| r.bulk).median),
        ],
    );
}

/// On this machine's kernel: direct, the proxy, nft NAT (with the fast path if the kernel
/// has it) and direct return.
fn on_host() {
    let topo = Director::new(&format!("hfnft-{}", std::process::id()));
    // Direct return: the backend accepts the virtual address as its own.
    ip(&[
        "-n",
        &topo.backend,
        "addr",
        "add",
        "10.201.4.1/32",
        "dev",
        "lo",
    ]);
    let backend_rt = runtime(topo.backend.clone());
    backend_rt.spawn(backend(BACKEND));
    backend_rt.spawn(backend(DR_VIP));
    // The director's proxy: its worker threads start in the director's namespace.
    let proxy = in_ns(&topo.director, || {
        let mut p = ProxyPlane::new();
        p.apply(&vec![service(PROXY_VIP)]).expect("proxy listens");
        p
    });
    let mut nft = in_ns(&topo.director, || {
        NftPlane::open("holdfast_bench").expect("nftables (scripts/test installs nftables)")
    });
    // The load generator: this thread and its runtime's workers in the client namespace.
    enter(&topo.client);
    let client_rt = runtime(topo.client.clone());
    let rows = client_rt.block_on(async {
        wait_listening(BACKEND).await;
        wait_listening(PROXY_VIP).await;
        // Direct twice, first and last in each round: how far two measures of the same path
        // differ here is the noise any other ratio carries.
        let mut rounds: [Vec<Row>; 5] = Default::default();
        for _ in 0..record::rounds(ROUNDS) {
            for (i, a) in [BACKEND, PROXY_VIP, NFT_VIP, DR_VIP, BACKEND]
                .into_iter()
                .enumerate()
            {
                let table = match a {
                    NFT_VIP => Some(service(NFT_VIP)),
                    DR_VIP => Some(direct_return()),
                    _ => None,
                };
                if let Some(t) = &table {
                    in_ns(&topo.director, || nft.apply(&vec![t.clone()]))
                        .expect("nft table applies");
                    wait_listening(a).await;
                }
                rounds[i].push(measure(a, None).await);
                if table.is_some() {
                    in_ns(&topo.director, || nft.release()).expect("nft table removed");
                }
            }
        }
        // NAT and direct return over the direct round beside them.
        let pairs = [
            paired(&rounds[2], &rounds[0], |r| r.short),
            paired(&rounds[2], &rounds[0], |r| r.bulk),
            paired(&rounds[3], &rounds[0], |r| r.short),
            paired(&rounds[3], &rounds[0], |r| r.bulk),
        ];
        (rounds.map(|r| median(&r)), pairs)
    });
    let (rows, pairs) = rows;
    let fast = in_ns(&topo.director, || {
        let _ = nft.apply(&vec![service(NFT_VIP)]);
        let f = nft.fast_path().clone();
        let _ = nft.release();
        f
    });
    drop(proxy);
    drop(client_rt);
    drop(backend_rt);
    drop(topo);
    let [d, p, n, r, again] = rows;
    println!(
        "nftables benchmark (client → director → backend over veth, the director forwarding; medians of {} interleaved rounds of {} s)",
        record::rounds(ROUNDS),
        SECS.as_secs()
    );
    println!(
        "NAT's flowtable fast path here: {}",
        match fast {
            FastPath::On(_) => "on".to_owned(),
            FastPath::Unavailable(why) => format!("unavailable ({why})"),
            other => format!("{other:?}"),
        }
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "",
        "direct",
        "proxy",
        "nft NAT",
        "nft DR",
        "proxy/dir",
        "NAT/dir",
        "DR/dir",
        "direct again"
    );
    for (name, dv, pv, nv, rv, av) in [
        (
            "short connections /s",
            d.short,
            p.short,
            n.short,
            r.short,
            again.short,
        ),
        ("bulk MB/s", d.bulk, p.bulk, n.bulk, r.bulk, again.bulk),
        ("64 B round trips /s", d.rr, p.rr, n.rr, r.rr, again.rr),
    ] {
        println!(
            "{name:<28} {dv:>10.0} {pv:>10.0} {nv:>10.0} {rv:>10.0} {:>10.2} {:>10.2} {:>10.2} {:>12.2}",
            pv / dv,
            nv / dv,
            rv / dv,
            av / dv
        );
    }
    println!(
        "{:<28} each round over its direct round, median (middle half): NAT short {}, bulk {}; DR short {}, bulk {}",
        "per-round ratios", pairs[0], pairs[1], pairs[2], pairs[3]
    );
    println!(
        "{:<28} {:>10.0} {:>10.0} {:>10.0} {:>10.0}   added p99: proxy {:.0} µs, NAT {:.0} µs, DR {:.0} µs",
        "p99 round trip µs",
        d.p99,
        p.p99,
        n.p99,
        r.p99,
        p.p99 - d.p99,
        n.p99 - d.p99,
        r.p99 - d.p99
    );
    record::record(
        "nft",
        &[
            ("short_per_s_direct", d.short),
            ("short_per_s_proxy", p.short),
            ("short_per_s_nat", n.short),
            ("short_per_s_dr", r.short),
            ("bulk_mb_s_direct", d.bulk),
            ("bulk_mb_s_proxy", p.bulk),
            ("bulk_mb_s_nat", n.bulk),
            ("bulk_mb_s_dr", r.bulk),
            ("rr_per_s_direct", d.rr),
            ("rr_per_s_proxy", p.rr),
            ("rr_per_s_nat", n.rr),
            ("rr_per_s_dr", r.rr),
            ("p99_us_direct", d.p99),
            ("p99_us_proxy", p.p99),
            ("p99_us_nat", n.p99),
            ("p99_us_dr", r.p99),
            ("ratio_again_short", again.short / d.short),
            ("ratio_nat_rr", n.rr / d.rr),
            ("ratio_dr_rr", r.rr / d.rr),
            ("ratio_nat_short_median", pairs[0].median),
            ("ratio_nat_short_q1", pairs[0].low),
            ("ratio_nat_short_q3", pairs[0].high),
            ("ratio_nat_bulk_median", pairs[1].median),
            ("ratio_dr_short_median", pairs[2].median),
            ("ratio_dr_bulk_median", pairs[3].median),
        ],
    );
}
