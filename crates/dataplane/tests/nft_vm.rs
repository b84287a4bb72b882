//! The nftables plane's flowtable fast path against a kernel that has one (`nf_flow_table`).
//! This machine's kernel has none, so these tests are ignored in ordinary runs and run inside
//! the QEMU VM with Debian's kernel by `scripts/ipvs-vm/test` (called from `scripts/test`),
//! which fails when they cannot run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure should stop them

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use holdfast_dataplane::nft::{FastPath, NftPlane};
use holdfast_dataplane::{DataPlane, DestSpec, ServiceKey, ServiceSpec};
use holdfast_lb::sched::Kind;

/// Refuses to go on outside the test VM: the namespaces are named, and a host is no place to
/// try a kernel feature it does not have.
fn in_the_vm() {
    assert!(
        std::path::Path::new("/etc/holdfast-ipvs-vm").exists(),
        "run these tests in the test VM (scripts/ipvs-vm/test), never with --ignored on a host"
    );
}

#[path = "support/director.rs"]
mod director;

use director::{Director, in_ns};

/// The benchmark's topology in the VM: the client reaches the VIP 10.201.3.1 through the
/// director.
fn lab() -> Director {
    in_the_vm();
    Director::new("hfvm")
}

/// The director's conntrack entries of connections from client port `port`.
fn tracked(lab: &Director, port: u16) -> String {
    in_ns(&lab.director, || {
        let out = Command::new("conntrack")
            .args(["-L", "-p", "tcp", "--sport", &port.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// An echo server on the backend, port 7001.
fn echo(lab: &Director) {
    let l = in_ns(&lab.backend, || {
        TcpListener::bind("10.201.2.2:7001").unwrap()
    });
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut b = [0u8; 256];
                while let Ok(n) = c.read(&mut b) {
                    if n == 0 || c.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn nat() -> ServiceSpec {
    ServiceSpec::new(
        ServiceKey::tcp("10.201.3.1:7001".parse().unwrap()),
        Kind::Rr,
        vec![DestSpec::new("10.201.2.2:7001".parse().unwrap(), 1)],
    )
}

/// A connection from the client to the VIP.
fn connect(lab: &Director) -> TcpStream {
    let s = in_ns(&lab.client, || {
        TcpStream::connect_timeout(&"10.201.3.1:7001".parse().unwrap(), Duration::from_secs(5))
            .expect("connect through the VIP")
    });
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// `n` round trips on `s`, each echoed intact.
fn round_trips(s: &mut TcpStream, n: usize) {
    for i in 0..n {
        let msg = format!("round trip {i}");
        s.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

/// Waits (a bounded time) for `f` to hold.
fn soon(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
#[ignore = "needs a kernel with nf_flow_table: run by scripts/ipvs-vm/test"]
fn established_nat_connections_are_offloaded_and_still_carry_their_data() {
    let lab = lab();
    echo(&lab);
    let mut plane = in_ns(&lab.director, || {
        let mut p = NftPlane::open("holdfast_vm").expect("nftables");
        p.apply(&vec![nat()]).expect("the NAT service applies");
        p
    });
    match plane.fast_path() {
        // Every interface but loopback (the ipip module gives each namespace a tunl0 too).
        FastPath::On(devs) => {
            assert!(
                ["b0", "c0"].iter().all(|d| devs.iter().any(|x| x == d)),
                "{devs:?}"
            );
        }
        other => panic!("this kernel has nf_flow_table, yet the fast path is {other:?}"),
    }
    let mut s = connect(&lab);
    let port = s.local_addr().unwrap().port();
    round_trips(&mut s, 3);
    // Offloaded once conntrack saw it established, NATed to the backend.
    assert!(
        soon(|| tracked(&lab, port).contains("[OFFLOAD]")),
        "{}",
        tracked(&lab, port)
    );
    assert!(
        tracked(&lab, port).contains("src=10.201.2.2"),
        "{}",
        tracked(&lab, port)
    );
    // The flowtable now carries the packets, both ways, rewritten as conntrack would.
    round_trips(&mut s, 20);
    // The close goes back to conntrack's path and ends cleanly.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    drop(s);
    assert!(
        soon(|| !tracked(&lab, port).contains("[OFFLOAD]")),
        "{}",
        tracked(&lab, port)
    );

    // `nft_flowtable off`: the same service, no offload.
    let mut plane = in_ns(&lab.director, move || {
        plane.release().unwrap();
        let mut p = NftPlane::open("holdfast_vm").expect("nftables");
        p.set_flowtable(false);
        p.apply(&vec![nat()]).expect("the NAT service applies");
        p
    });
    assert_eq!(plane.fast_path(), &FastPath::Off);
    let mut s = connect(&lab);
    let port = s.local_addr().unwrap().port();
    round_trips(&mut s, 5);
    let entry = tracked(&lab, port);
    assert!(
        entry.contains("ESTABLISHED") && !entry.contains("[OFFLOAD]"),
        "{entry}"
    );
    drop(s);
    let tables = in_ns(&lab.director, move || {
        plane.release().unwrap();
        let out = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    assert!(!tables.contains("holdfast_vm"), "{tables}");
}
