//! The nftables plane against the kernel, as root, in a network namespace each test unshares
//! for its own thread (nothing reaches the host's namespace): connections through the VIP
//! reach the destinations the scheduler says, membership changes leave established
//! connections alone, and the table goes at release and when a crashed run left it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure should stop them

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use holdfast_dataplane::nft::NftPlane;
use holdfast_dataplane::{DataPlane, DestSpec, ServiceKey, ServiceSpec};
use holdfast_lb::sched::Kind;

// Only its namespace helpers are used here.
#[allow(dead_code)]
#[path = "support/director.rs"]
mod director;

/// A private namespace for this thread (and the `nft` it runs), with lo up and the VIP.
fn netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (needs root)");
    for args in [
        &["link", "set", "lo", "up"][..],
        &["addr", "add", "10.0.0.1/32", "dev", "lo"],
    ] {
        assert!(Command::new("ip").args(args).status().unwrap().success());
    }
}

/// A server at `addr` that greets each connection with `tag` and then echoes.
fn server(addr: &str, tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind(addr).unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let _ = c.write_all(tag.as_bytes());
                let mut b = [0u8; 64];
                while let Ok(n) = c.read(&mut b) {
                    if n == 0 || c.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

fn hello(vip: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect_timeout(&vip.parse().unwrap(), Duration::from_secs(2))
        .expect("connect through the VIP");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    (String::from_utf8_lossy(&b).into_owned(), s)
}

fn spec(sched: Kind, dests: &[(SocketAddr, u32)]) -> ServiceSpec {
    let dests = dests.iter().map(|(a, w)| DestSpec::new(*a, *w)).collect();
    ServiceSpec::new(
        ServiceKey::tcp("10.0.0.1:3306".parse().unwrap()),
        sched,
        dests,
    )
}

/// What `nft ARGS` prints.
fn nft_out(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What holdfast's direct-return table holds.
fn netdev_table() -> String {
    nft_out(&["list", "table", "netdev", "holdfast_test"])
}

/// What holdfast's NAT table holds.
fn inet_table() -> String {
    nft_out(&["list", "table", "inet", "holdfast_test"])
}

fn tables() -> String {
    nft_out(&["list", "tables"])
}

/// In a namespace of this thread's own: servers "a" (127.0.0.2) and "b" (127.0.0.3) at port
/// 3306, and the plane with rr over both behind 10.0.0.1:3306.
fn rr_over_two() -> (SocketAddr, SocketAddr, NftPlane) {
    netns();
    let a = server("127.0.0.2:3306", "a");
    let b = server("127.0.0.3:3306", "b");
    let mut plane = NftPlane::open("holdfast_test").unwrap();
    plane
        .apply(&vec![spec(Kind::Rr, &[(a, 1), (b, 1)])])
        .unwrap();
    (a, b, plane)
}

#[test]
fn rr_alternates_and_weight_zero_keeps_established_connections() {
    let (a, b, mut plane) = rr_over_two();
    let mut seen: Vec<String> = (0..4).map(|_| hello("10.0.0.1:3306").0).collect();
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    // An established connection to a, then a at weight 0: new ones go to b, a's stays.
    let (mut first, mut kept) = hello("10.0.0.1:3306");
    if first != "a" {
        (first, kept) = hello("10.0.0.1:3306");
    }
    assert_eq!(first, "a");
    plane
        .apply(&vec![spec(Kind::Rr, &[(a, 0), (b, 1)])])
        .unwrap();
    for _ in 0..3 {
        assert_eq!(hello("10.0.0.1:3306").0, "b");
    }
    kept.write_all(b"still").unwrap();
    let mut back = [0u8; 5];
    kept.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still");
    plane.release().unwrap();
    assert!(!tables().contains("holdfast_test"), "{}", tables());
}

#[test]
fn sh_keeps_a_client_on_one_server_and_wrr_follows_weights() {
    netns();
    let a = server("127.0.0.2:3306", "a");
    let b = server("127.0.0.3:3306", "b");
    let mut plane = NftPlane::open("holdfast_test").unwrap();
    plane
        .apply(&vec![spec(Kind::Sh, &[(a, 1), (b, 1)])])
        .unwrap();
    let first = hello("10.0.0.1:3306").0;
    for _ in 0..5 {
        assert_eq!(hello("10.0.0.1:3306").0, first);
    }
    // Another service added rewrites the table: the hash (and its seed) stays, so the client
    // stays where it was.
    let mut other = spec(Kind::Rr, &[(a, 1)]);
    other.key = ServiceKey::tcp("10.0.0.1:3307".parse().unwrap());
    for _ in 0..3 {
        plane
            .apply(&vec![spec(Kind::Sh, &[(a, 1), (b, 1)]), other.clone()])
            .unwrap();
        assert_eq!(hello("10.0.0.1:3306").0, first);
        plane
            .apply(&vec![spec(Kind::Sh, &[(a, 1), (b, 1)])])
            .unwrap();
        assert_eq!(hello("10.0.0.1:3306").0, first);
    }
    plane
        .apply(&vec![spec(Kind::Wrr, &[(a, 3), (b, 1)])])
        .unwrap();
    let seen: Vec<String> = (0..8).map(|_| hello("10.0.0.1:3306").0).collect();
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 6, "{seen:?}");
    plane.release().unwrap();
}

#[test]
fn a_table_left_by_a_crash_is_removed_at_open_and_others_are_not_touched() {
    netns();
    let st = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"table inet holdfast_test {\n chain x {\n  type nat hook prerouting priority dstnat;\n }\n}\ntable inet someone_else {\n}\n")?;
            c.wait()
        })
        .unwrap();
    assert!(st.success());
    assert!(tables().contains("holdfast_test"));
    let plane = NftPlane::open("holdfast_test").unwrap();
    let t = tables();
    assert!(!t.contains("holdfast_test"), "{t}");
    assert!(t.contains("someone_else"), "{t}");
    drop(plane);
}

#[test]
fn a_refused_scheduler_is_an_error_and_the_rest_of_the_table_applies() {
    netns();
    let a = server("127.0.0.2:3306", "a");
    let mut plane = NftPlane::open("holdfast_test").unwrap();
    let mut other = spec(Kind::Wlc, &[(a, 1)]);
    other.key = ServiceKey::tcp("10.0.0.1:3307".parse().unwrap());
    let errs = plane
        .apply(&vec![spec(Kind::Rr, &[(a, 1)]), other])
        .unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].to_string().contains("wlc"), "{}", errs[0]);
    assert_eq!(hello("10.0.0.1:3306").0, "a");
    plane.release().unwrap();
}

/// Like `hello`, from the local address `src`.
fn hello_from(src: &str, vip: &str) -> String {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&src.parse::<SocketAddr>().unwrap().into()).unwrap();
    s.connect_timeout(
        &vip.parse::<SocketAddr>().unwrap().into(),
        Duration::from_secs(2),
    )
    .expect("connect through the VIP");
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn persistence_keeps_each_client_on_its_server_until_that_server_leaves() {
    netns();
    assert!(
        Command::new("ip")
            .args(["addr", "add", "10.0.0.9/32", "dev", "lo"])
            .status()
            .unwrap()
            .success()
    );
    let a = server("127.0.0.2:3306", "a");
    let b = server("127.0.0.3:3306", "b");
    let persistent = |dests: &[(SocketAddr, u32)], prefix: Option<u8>| {
        let mut s = spec(Kind::Rr, dests);
        s.persistence = Some(Duration::from_secs(60));
        s.persistence_prefix = prefix;
        vec![s]
    };
    let mut plane = NftPlane::open("holdfast_test").unwrap();
    plane.apply(&persistent(&[(a, 1), (b, 1)], None)).unwrap();
    // rr would alternate; each client keeps the server it got first.
    let one = hello_from("10.0.0.1:0", "10.0.0.1:3306");
    let two = hello_from("10.0.0.9:0", "10.0.0.1:3306");
    assert_ne!(one, two, "rr gives the second client the other server");
    for _ in 0..4 {
        assert_eq!(hello_from("10.0.0.1:0", "10.0.0.1:3306"), one);
        assert_eq!(hello_from("10.0.0.9:0", "10.0.0.1:3306"), two);
    }
    // Client one's server drained: it moves, and stays on its new server when the old one
    // is back (its old entry went with the server).
    let (drained, other) = if one == "a" {
        ((a, 0), (b, 1))
    } else {
        ((a, 1), (b, 0))
    };
    plane.apply(&persistent(&[drained, other], None)).unwrap();
    let moved = hello_from("10.0.0.1:0", "10.0.0.1:3306");
    assert_ne!(moved, one);
    plane.apply(&persistent(&[(a, 1), (b, 1)], None)).unwrap();
    for _ in 0..4 {
        assert_eq!(hello_from("10.0.0.1:0", "10.0.0.1:3306"), moved);
    }
    // persistence_granularity /24: both clients are one, on whichever server the first got.
    plane
        .apply(&persistent(&[(a, 1), (b, 1)], Some(24)))
        .unwrap();
    let first = hello_from("10.0.0.9:0", "10.0.0.1:3306");
    for _ in 0..4 {
        assert_eq!(hello_from("10.0.0.1:0", "10.0.0.1:3306"), first);
        assert_eq!(hello_from("10.0.0.9:0", "10.0.0.1:3306"), first);
    }
    // Without persistence the sets and chains go, and rr alternates again.
    plane
        .apply(&vec![spec(Kind::Rr, &[(a, 1), (b, 1)])])
        .unwrap();
    let listed = Command::new("nft")
        .args(["list", "table", "inet", "holdfast_test"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.contains("set p_") && !listed.contains("chain c_"),
        "{listed}"
    );
    let mut seen: Vec<String> = (0..4)
        .map(|_| hello_from("10.0.0.1:0", "10.0.0.1:3306"))
        .collect();
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    plane.release().unwrap();
    assert!(!tables().contains("holdfast_test"), "{}", tables());
}

#[test]
fn fo_sends_every_connection_to_the_heaviest_server() {
    netns();
    let a = server("127.0.0.2:3306", "a");
    let b = server("127.0.0.3:3306", "b");
    let mut plane = NftPlane::open("holdfast_test").unwrap();
    plane
        .apply(&vec![spec(Kind::Fo, &[(a, 1), (b, 5)])])
        .unwrap();
    for _ in 0..4 {
        assert_eq!(hello("10.0.0.1:3306").0, "b");
    }
    plane
        .apply(&vec![spec(Kind::Fo, &[(a, 1), (b, 0)])])
        .unwrap();
    assert_eq!(hello("10.0.0.1:3306").0, "a");
    plane.release().unwrap();
}

/// Named namespaces for a direct-return topology, deleted when dropped: a bridge, the
/// director, two real servers holding the VIP on lo (not answering ARP for it), a client.
struct DrLab(String);

impl DrLab {
    fn new() -> DrLab {
        // Unique per lab: tests may run as threads of one process (cargo test).
        static LABS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = format!("hfdr{}x{n}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        for n in ["br", "d", "r1", "r2", "c"] {
            ip(&["netns", "add", &format!("{p}-{n}")]);
            ip(&["-n", &format!("{p}-{n}"), "link", "set", "lo", "up"]);
        }
        let br = format!("{p}-br");
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for (i, (n, addr)) in [
            ("d", "192.168.1.1/24"),
            ("r1", "192.168.1.201/24"),
            ("r2", "192.168.1.202/24"),
            ("c", "192.168.1.9/24"),
        ]
        .into_iter()
        .enumerate()
        {
            let ns = format!("{p}-{n}");
            let v = format!("v{i}");
            ip(&[
                "-n", &br, "link", "add", &v, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["-n", &br, "link", "set", &v, "master", "br0", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        }
        // The director holds the VIP as VRRP would; the real servers hold it on lo.
        ip(&[
            "-n",
            &format!("{p}-d"),
            "addr",
            "add",
            "192.168.1.10/24",
            "dev",
            "eth0",
        ]);
        for r in ["r1", "r2"] {
            let ns = format!("{p}-{r}");
            ip(&["-n", &ns, "addr", "add", "192.168.1.10/32", "dev", "lo"]);
            let st = Command::new("ip")
                .args(["netns", "exec", &ns, "sysctl", "-qw"])
                .args([
                    "net.ipv4.conf.all.arp_ignore=1",
                    "net.ipv4.conf.all.arp_announce=2",
                ])
                .status()
                .unwrap();
            assert!(st.success());
        }
        DrLab(p)
    }

    /// Runs `f` on a thread inside node `n`'s namespace (its child processes too).
    fn within<T: Send>(&self, n: &str, f: impl FnOnce() -> T + Send) -> T {
        director::in_ns(&format!("{}-{n}", self.0), f)
    }
}

impl Drop for DrLab {
    fn drop(&mut self) {
        for n in ["br", "d", "r1", "r2", "c"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}-{n}", self.0)])
                .status();
        }
    }
}

/// The DR lab's real servers: "a" on r1 (192.168.1.201) and "b" on r2 (.202), each
/// listening on every address (the VIP included) at port 3306.
fn dr_servers(lab: &DrLab) -> (SocketAddr, SocketAddr) {
    lab.within("r1", || server("0.0.0.0:3306", "a"));
    lab.within("r2", || server("0.0.0.0:3306", "b"));
    (
        "192.168.1.201:3306".parse().unwrap(),
        "192.168.1.202:3306".parse().unwrap(),
    )
}

/// A direct-return service on the DR lab's VIP, port 3306.
fn dr_spec(sched: Kind, dests: &[(SocketAddr, u32)]) -> ServiceSpec {
    let mut s = spec(sched, dests);
    s.key = ServiceKey::tcp("192.168.1.10:3306".parse().unwrap());
    for d in &mut s.dests {
        d.method = holdfast_dataplane::Forward::Route;
    }
    s
}

#[test]
fn direct_return_forwards_to_the_real_servers_and_keeps_connections() {
    let lab = DrLab::new();
    let (a, b) = dr_servers(&lab);
    let dr = move |wa: u32, wb: u32| vec![dr_spec(Kind::Rr, &[(a, wa), (b, wb)])];
    let plane = lab.within("d", move || {
        let mut p = NftPlane::open("holdfast_test").unwrap();
        p.apply(&dr(1, 1)).unwrap();
        p
    });
    // rr over both; each reply comes straight from the real server (the VIP is its own).
    let mut seen: Vec<String> = lab.within("c", || {
        (0..4).map(|_| hello("192.168.1.10:3306").0).collect()
    });
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    // A connection to a stays while a goes to weight 0; new ones go to b.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
    let path = format!("/run/netns/{}-c", lab.0);
    let client = std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let (mut first, mut kept) = hello("192.168.1.10:3306");
        while first != "a" {
            (first, kept) = hello("192.168.1.10:3306");
        }
        done_tx.send(first).unwrap();
        rx.recv().unwrap();
        kept.write_all(b"still").unwrap();
        let mut back = [0u8; 5];
        kept.read_exact(&mut back).unwrap();
        done_tx
            .send(String::from_utf8_lossy(&back).into_owned())
            .unwrap();
    });
    assert_eq!(done_rx.recv().unwrap(), "a");
    let plane = lab.within("d", move || {
        let mut p = plane;
        p.apply(&dr(0, 1)).unwrap();
        p
    });
    let seen: Vec<String> = lab.within("c", || {
        (0..3).map(|_| hello("192.168.1.10:3306").0).collect()
    });
    assert_eq!(seen, ["b", "b", "b"]);
    tx.send(()).unwrap();
    assert_eq!(done_rx.recv().unwrap(), "still");
    client.join().unwrap();
    // UDP by direct return too: each datagram's flow to one server, the answers from the VIP.
    // Bound to the VIP: a wildcard UDP socket would answer from the server's own address.
    lab.within("r1", || udp_server("192.168.1.10:5353", "a"));
    lab.within("r2", || udp_server("192.168.1.10:5353", "b"));
    let plane = lab.within("d", move || {
        let mut p = plane;
        let mut u = udp(
            "192.168.1.10:5353",
            Kind::Rr,
            &[
                ("192.168.1.201:5353".parse().unwrap(), 1),
                ("192.168.1.202:5353".parse().unwrap(), 1),
            ],
        );
        for d in &mut u.dests {
            d.method = holdfast_dataplane::Forward::Route;
        }
        p.apply(&vec![u]).unwrap();
        p
    });
    let mut seen: Vec<String> =
        lab.within("c", || (0..4).map(|_| ask("192.168.1.10:5353")).collect());
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    // Both tables go at release.
    let left = lab.within("d", move || {
        let mut p = plane;
        p.release().unwrap();
        tables()
    });
    assert!(!left.contains("holdfast_test"), "{left}");
}

#[test]
fn a_direct_return_service_whose_last_server_leaves_is_applied_and_comes_back() {
    let lab = DrLab::new();
    let (a, _) = dr_servers(&lab);
    // Its last server gone (no live server: the service's rules, chains and sets go), then
    // back: each table applies, and connections reach the server again.
    let (plane, applied) = lab.within("d", move || {
        let mut p = NftPlane::open("holdfast_test").unwrap();
        p.apply(&vec![dr_spec(Kind::Mh, &[(a, 1)])]).unwrap();
        let gone = p.apply(&vec![dr_spec(Kind::Mh, &[])]);
        let back = p.apply(&vec![dr_spec(Kind::Mh, &[(a, 1)])]);
        let applied = (
            gone.map_err(|e| format!("{e:?}")),
            back.map_err(|e| format!("{e:?}")),
        );
        (p, applied)
    });
    assert_eq!(applied, (Ok(()), Ok(())));
    assert_eq!(lab.within("c", || hello("192.168.1.10:3306").0), "a");
    lab.within("d", move || {
        let mut p = plane;
        p.release().unwrap();
    });
}

#[test]
fn direct_return_leaves_alone_a_frame_addressed_to_another_host() {
    // A switch floods a frame whose destination MAC it has not learnt (or no longer knows:
    // another director's, whose port went down) to every port. Only the host it is
    // addressed to may forward it; on a segment of several directors, each would otherwise
    // send its own copy on to a real server.
    let lab = DrLab::new();
    let (a, b) = dr_servers(&lab);
    let plane = lab.within("d", move || {
        let mut p = NftPlane::open("holdfast_test").unwrap();
        p.apply(&vec![dr_spec(Kind::Rr, &[(a, 1), (b, 1)])])
            .unwrap();
        p
    });
    let neigh = |mac: &str| {
        let st = Command::new("ip")
            .args(["-n", &format!("{}-c", lab.0), "neigh", "replace"])
            .args([
                "192.168.1.10",
                "lladdr",
                mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
            .status()
            .unwrap();
        assert!(st.success());
    };
    // Addressed to a MAC no port has: flooded, and the director must not take it.
    neigh("02:00:00:00:00:99");
    let flooded = lab.within("c", || {
        TcpStream::connect_timeout(
            &"192.168.1.10:3306".parse().unwrap(),
            Duration::from_secs(1),
        )
    });
    assert!(flooded.is_err(), "a flooded frame was forwarded");
    // Addressed to the director: forwarded.
    let out = Command::new("ip")
        .args(["-n", &format!("{}-d", lab.0), "-o", "link", "show", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "link/ether").unwrap();
    neigh(words[at + 1]);
    let (tag, _) = lab.within("c", || hello("192.168.1.10:3306"));
    assert!(["a", "b"].contains(&tag.as_str()), "{tag}");
    lab.within("d", move || {
        let mut p = plane;
        p.release().unwrap();
    });
}

#[test]
fn direct_return_with_persistence_keeps_a_client_on_its_server_until_it_leaves() {
    let lab = DrLab::new();
    let (a, b) = dr_servers(&lab);
    let dr = move |wa: u32, wb: u32, persistence: Option<u64>| {
        let mut s = dr_spec(Kind::Rr, &[(a, wa), (b, wb)]);
        s.persistence = persistence.map(Duration::from_secs);
        vec![s]
    };
    let plane = lab.within("d", move || {
        let mut p = NftPlane::open("holdfast_test").unwrap();
        p.apply(&dr(1, 1, Some(60))).unwrap();
        p
    });
    // rr would alternate; the client's new connections all go where its first went.
    let seen: Vec<String> = lab.within("c", || {
        (0..5).map(|_| hello("192.168.1.10:3306").0).collect()
    });
    let first = seen[0].clone();
    assert!(seen.iter().all(|s| *s == first), "{seen:?}");
    // Its server leaves (weight 0): the client is scheduled afresh, and stays there.
    let (wa, wb) = if first == "a" { (0, 1) } else { (1, 0) };
    let plane = lab.within("d", move || {
        let mut p = plane;
        p.apply(&dr(wa, wb, Some(60))).unwrap();
        p
    });
    let seen: Vec<String> = lab.within("c", || {
        (0..3).map(|_| hello("192.168.1.10:3306").0).collect()
    });
    assert!(seen.iter().all(|s| *s != first), "{seen:?}");
    // Back at weight 1, the client stays on its new server; without persistence rr
    // alternates again and the persistence sets and chains are gone.
    let plane = lab.within("d", move || {
        let mut p = plane;
        p.apply(&dr(1, 1, Some(60))).unwrap();
        p
    });
    let again: Vec<String> = lab.within("c", || {
        (0..3).map(|_| hello("192.168.1.10:3306").0).collect()
    });
    assert_eq!(again, seen);
    let (plane, left) = lab.within("d", move || {
        let mut p = plane;
        p.apply(&dr(1, 1, Some(60))).unwrap();
        let with = netdev_table();
        p.apply(&dr(1, 1, None)).unwrap();
        (p, (with, netdev_table()))
    });
    assert!(
        left.0.contains("set q_") && left.0.contains("chain r_"),
        "{}",
        left.0
    );
    assert!(
        !left.1.contains("set q_") && !left.1.contains("chain r_"),
        "{}",
        left.1
    );
    let mut seen: Vec<String> = lab.within("c", || {
        (0..4).map(|_| hello("192.168.1.10:3306").0).collect()
    });
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    lab.within("d", move || {
        let mut p = plane;
        p.release().unwrap();
    });
}

/// (ActiveConn, InActConn) of each destination of the one service of `plane`, counted from
/// the kernel.
fn counts(plane: &NftPlane) -> Vec<(SocketAddr, u32, u32)> {
    let mut stats = plane.stats();
    holdfast_dataplane::nft::count_connections(plane.table(), &mut stats).unwrap();
    stats[0]
        .dests
        .iter()
        .map(|d| (d.addr.unwrap(), d.active, d.inactive))
        .collect()
}

#[test]
fn nat_connections_are_counted_per_server_from_conntrack() {
    let (a, b, mut plane) = rr_over_two();
    assert_eq!(counts(&plane), [(a, 0, 0), (b, 0, 0)]);
    // rr: a, b, a, all kept open.
    let mut open: Vec<(String, TcpStream)> = (0..3).map(|_| hello("10.0.0.1:3306")).collect();
    let mut to: Vec<&str> = open.iter().map(|(t, _)| t.as_str()).collect();
    to.sort();
    assert_eq!(to, ["a", "a", "b"]);
    assert_eq!(counts(&plane), [(a, 2, 0), (b, 1, 0)]);
    // One of a's closes: it leaves ESTABLISHED (TIME_WAIT, still tracked) and is inactive.
    let at = open.iter().position(|(t, _)| t == "a").unwrap();
    let (_, mut gone) = open.remove(at);
    gone.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = gone.read_to_end(&mut rest);
    drop(gone);
    assert!(
        soon(|| counts(&plane) == [(a, 1, 1), (b, 1, 0)]),
        "{:?}",
        counts(&plane)
    );
    plane.release().unwrap();
}

#[test]
fn direct_return_connections_are_counted_per_server_from_its_sets() {
    let lab = DrLab::new();
    let (a, b) = dr_servers(&lab);
    let s = dr_spec(Kind::Fo, &[(a, 2), (b, 1)]);
    let (plane, before) = lab.within("d", move || {
        let mut p = NftPlane::open("holdfast_test").unwrap();
        p.apply(&vec![s]).unwrap();
        let c = counts(&p);
        (p, c)
    });
    assert_eq!(before, [(a, 0, 0), (b, 0, 0)]);
    // fo: two connections to a, kept open, then one closed by its client (a FIN).
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let path = format!("/run/netns/{}-c", lab.0);
    let client = std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let (t1, kept) = hello("192.168.1.10:3306");
        let (t2, mut closed) = hello("192.168.1.10:3306");
        assert_eq!((t1.as_str(), t2.as_str()), ("a", "a"));
        done_tx.send(()).unwrap();
        rx.recv().unwrap();
        closed.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = closed.read_to_end(&mut rest);
        done_tx.send(()).unwrap();
        rx.recv().unwrap();
        drop(kept);
    });
    done_rx.recv().unwrap();
    let (plane, open) = lab.within("d", move || {
        let c = counts(&plane);
        (plane, c)
    });
    assert_eq!(open, [(a, 2, 0), (b, 0, 0)]);
    tx.send(()).unwrap();
    done_rx.recv().unwrap();
    let (plane, after) = lab.within("d", move || {
        let c = counts(&plane);
        (plane, c)
    });
    assert_eq!(after, [(a, 1, 1), (b, 0, 0)]);
    tx.send(()).unwrap();
    client.join().unwrap();
    lab.within("d", move || {
        let mut p = plane;
        p.release().unwrap();
    });
}

/// A UDP server at `addr` answering each datagram with `tag`.
/// Seconds left to the entry of client port `port` in the director's direct-return set
/// `set` (`None`: no such entry).
fn dr_entry(lab: &DrLab, set: &str, port: u16) -> Option<u64> {
    let set = set.to_owned();
    let out = lab.within("d", move || {
        Command::new("nft")
            .args(["-j", "list", "set", "netdev", "holdfast_test", &set])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v["nftables"].as_array().unwrap();
    let elems = list.iter().find_map(|o| o["set"]["elem"].as_array());
    elems?.iter().find_map(|e| {
        let e = &e["elem"];
        (e["val"]["concat"][1].as_u64()? == u64::from(port)).then(|| e["expires"].as_u64())?
    })
}

/// Waits (at most 2 s) until `f` holds.
fn soon(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::yield_now();
    }
    f()
}

#[test]
fn direct_return_keeps_ipvs_timeouts_by_tcp_state_and_its_table_does_not_fill_at_65535() {
    let lab = DrLab::new();
    lab.within("r1", || server("0.0.0.0:3306", "a"));
    let a: SocketAddr = "192.168.1.201:3306".parse().unwrap();
    let mut spec = spec(Kind::Rr, &[(a, 1)]);
    spec.key = ServiceKey::tcp("192.168.1.10:3306".parse().unwrap());
    spec.dests[0].method = holdfast_dataplane::Forward::Route;
    let plane = lab.within("d", move || {
        let mut p = NftPlane::open("holdfast_test").unwrap();
        p.apply(&vec![spec]).unwrap();
        p
    });
    let set = "k_TCP_192_168_1_10_3306_192_168_1_201_3306";
    let closing = "f_TCP_192_168_1_10_3306_192_168_1_201_3306";
    // 65 535 connections the director has seen (nft's size for a set without one): new
    // connections still get through.
    let elems: Vec<String> = (0..65_535u32)
        .map(|i| format!("10.9.{}.{} . {}", (i >> 8) & 255, i & 255, 1000 + (i >> 16)))
        .collect();
    let fill = format!(
        "add element netdev holdfast_test {set} {{ {} }}\n",
        elems.join(", ")
    );
    let filled = lab.within("d", move || {
        let mut c = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(fill.as_bytes()).unwrap();
        c.wait().unwrap()
    });
    assert!(filled.success());
    // An open connection: the established timeout (15 minutes).
    let (tag, open) = lab.within("c", || hello("192.168.1.10:3306"));
    assert_eq!(tag, "a");
    let port = open.local_addr().unwrap().port();
    let left = dr_entry(&lab, set, port).expect("the connection is known");
    assert!(left > 800, "{left} s left for an open connection");
    // Reset by the client: 10 s (IPVS's CLOSE).
    socket2::SockRef::from(&open)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(open);
    assert!(
        soon(|| dr_entry(&lab, set, port).is_some_and(|s| s <= 10)),
        "{:?} s left after a reset",
        dr_entry(&lab, set, port)
    );
    // Closed by the client with a FIN: 2 minutes (tcpfin), and its last ACK, after the
    // server's FIN, does not make it established again.
    let port = lab.within("c", || {
        let (_, mut s) = hello("192.168.1.10:3306");
        let port = s.local_addr().unwrap().port();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        // The client now holds the connection in TIME_WAIT: its last ACK has gone.
        let state = format!("sport = :{port}");
        assert!(soon(|| {
            let ss = Command::new("ss")
                .args(["-tnH", "state", "time-wait", &state])
                .output()
                .unwrap();
            !ss.stdout.is_empty()
        }));
        port
    });
    let left = dr_entry(&lab, set, port).expect("the closing connection is known");
    assert!((60..=120).contains(&left), "{left} s left after a FIN");
    assert!(dr_entry(&lab, closing, port).is_some());
    lab.within("d", move || {
        let mut p = plane;
        p.release().unwrap();
    });
}

fn udp_server(addr: &str, tag: &'static str) -> SocketAddr {
    let s = std::net::UdpSocket::bind(addr).unwrap();
    let a = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok((_, from)) = s.recv_from(&mut b) {
            let _ = s.send_to(tag.as_bytes(), from);
        }
    });
    a
}

/// One datagram to `vip` from a fresh port; the answer must come from `vip` itself (the
/// socket is connected to it), as a client expects of a service.
fn ask(vip: &str) -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect(vip).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send(b"?").unwrap();
    let mut b = [0u8; 8];
    let n = s.recv(&mut b).expect("an answer from the VIP");
    String::from_utf8_lossy(&b[..n]).into_owned()
}

fn udp(vip: &str, sched: Kind, dests: &[(SocketAddr, u32)]) -> ServiceSpec {
    let mut s = spec(sched, dests);
    s.key = ServiceKey::Addr {
        proto: holdfast_dataplane::Proto::Udp,
        addr: vip.parse().unwrap(),
    };
    s
}

#[test]
fn udp_services_are_balanced_by_nat() {
    netns();
    let a = udp_server("127.0.0.2:5353", "a");
    let b = udp_server("127.0.0.3:5353", "b");
    let mut plane = NftPlane::open("holdfast_test").unwrap();
    plane
        .apply(&vec![udp("10.0.0.1:5353", Kind::Rr, &[(a, 1), (b, 1)])])
        .unwrap();
    let mut seen: Vec<String> = (0..4).map(|_| ask("10.0.0.1:5353")).collect();
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    plane
        .apply(&vec![udp("10.0.0.1:5353", Kind::Rr, &[(a, 0), (b, 1)])])
        .unwrap();
    for _ in 0..3 {
        assert_eq!(ask("10.0.0.1:5353"), "b");
    }
    plane.release().unwrap();
}

/// The seconds left and the state of the namespace's conntrack entries for destination port
/// `port` (`conntrack -L`: `tcp 6 SECONDS STATE src=…`, UDP has no state).
fn tracked(proto: &str, port: u16) -> Vec<(u64, String)> {
    let out = Command::new("conntrack")
        .args(["-L", "-p", proto, "--dport", &port.to_string()])
        .output()
        .expect("conntrack (scripts/test installs the conntrack package)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(2);
            let secs = w.next()?.parse().ok()?;
            let state = w.next().filter(|s| !s.contains('=')).unwrap_or("");
            Some((secs, state.to_owned()))
        })
        .collect()
}

/// The entry of `port` in `state`, waiting (a bounded number of looks) for it to get there.
fn entry_in(proto: &str, port: u16, states: &[&str]) -> u64 {
    for _ in 0..100 {
        if let Some((secs, _)) = tracked(proto, port)
            .into_iter()
            .find(|(_, s)| states.contains(&s.as_str()))
        {
            return secs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "no {proto} entry for port {port} in {states:?}: {:?}",
        tracked(proto, port)
    );
}

#[test]
fn lvs_timeouts_become_the_conntrack_timeouts_of_nat_connections() {
    netns();
    // A server that greets and holds each connection, so a half-closed one stays so.
    let l = TcpListener::bind("127.0.0.2:3306").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(b"a");
            held.push(c);
        }
    });
    let u = udp_server("127.0.0.2:5353", "u");
    let timeouts = holdfast_dataplane::Timeouts::from_secs(37, 23, 41);
    let mut plane = NftPlane::open_with_timeouts("holdfast_test", timeouts).unwrap();
    plane
        .apply(&vec![
            spec(Kind::Rr, &[(a, 1)]),
            udp("10.0.0.1:5353", Kind::Rr, &[(u, 1)]),
        ])
        .unwrap();
    let (tag, c) = hello("10.0.0.1:3306");
    assert_eq!(tag, "a");
    // conntrack's own timeouts would be 5 days (established), 2 minutes (after a FIN) and
    // 30 s or 2 minutes (UDP).
    let est = entry_in("tcp", 3306, &["ESTABLISHED"]);
    let ruleset = || {
        let out = Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        (30..=37).contains(&est),
        "established: {est} s left\n{}",
        ruleset()
    );
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let fin = entry_in("tcp", 3306, &["FIN_WAIT", "CLOSE_WAIT"]);
    assert!((16..=23).contains(&fin), "after the FIN: {fin} s left");
    assert_eq!(ask("10.0.0.1:5353"), "u");
    let flow = entry_in("udp", 5353, &[""]);
    assert!((34..=41).contains(&flow), "UDP: {flow} s left");
    // Without lvs_timeouts, conntrack keeps its own.
    drop(c);
    let mut plain = NftPlane::open("holdfast_test2").unwrap();
    plain
        .apply(&vec![udp("10.0.0.1:5354", Kind::Rr, &[(u, 1)])])
        .unwrap();
    plane.release().unwrap();
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.send_to(b"?", "10.0.0.1:5354").unwrap();
    let left = entry_in("udp", 5354, &[""]);
    assert!(!(34..=41).contains(&left), "{left}");
    plain.release().unwrap();
}

/// Whether this kernel takes a flowtable (`nf_flow_table`), asked of `nft` directly in a
/// scratch table of the calling thread's namespace, on interface `dev`.
fn kernel_has_flowtable(dev: &str) -> bool {
    let ok = Command::new("nft")
        .arg(format!(
            "add table inet hf_probe; add flowtable inet hf_probe f {{ hook ingress priority 0; devices = {{ {dev} }}; }}"
        ))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", "hf_probe"])
        .stderr(std::process::Stdio::null())
        .status();
    ok
}

#[test]
fn nat_takes_the_flowtable_fast_path_where_the_kernel_has_one_and_runs_without_it_elsewhere() {
    use holdfast_dataplane::nft::FastPath;
    netns();
    let st = Command::new("ip")
        .args(["link", "add", "t0", "type", "veth", "peer", "name", "t1"])
        .status()
        .unwrap();
    assert!(st.success());
    let has = kernel_has_flowtable("t0");
    let a = server("127.0.0.2:3306", "a");
    let mut plane = NftPlane::open("holdfast_test").unwrap();
    assert_eq!(plane.fast_path(), &FastPath::Wanted);
    plane.apply(&vec![spec(Kind::Rr, &[(a, 1)])]).unwrap();
    let table = inet_table();
    match plane.fast_path() {
        FastPath::On(devs) => {
            assert!(has, "the plane says On where nft cannot add a flowtable");
            let mut devs = devs.clone();
            devs.sort();
            assert_eq!(devs, ["t0", "t1"]);
            assert!(table.contains("flowtable ft"), "{table}");
            assert!(
                table.contains(
                    "ct original ip daddr 10.0.0.1 ct original proto-dst 3306 flow add @ft"
                ),
                "{table}"
            );
        }
        FastPath::Unavailable(why) => {
            assert!(
                !has,
                "the plane gave up a flowtable the kernel takes: {why}"
            );
            assert!(!why.is_empty());
            assert!(
                !table.contains("flowtable") && !table.contains("forward"),
                "{table}"
            );
        }
        other => panic!("the fast path was not settled: {other:?}"),
    }
    // NAT works either way, and a second apply keeps what was settled.
    let settled = plane.fast_path().clone();
    assert_eq!(hello("10.0.0.1:3306").0, "a");
    plane.apply(&vec![spec(Kind::Rr, &[(a, 1)])]).unwrap();
    assert_eq!(plane.fast_path(), &settled);
    assert_eq!(hello("10.0.0.1:3306").0, "a");
    plane.release().unwrap();
    // Turned off (`nft_flowtable off`): neither the flowtable nor its chain.
    let mut off = NftPlane::open("holdfast_test").unwrap();
    off.set_flowtable(false);
    off.apply(&vec![spec(Kind::Rr, &[(a, 1)])]).unwrap();
    assert_eq!(off.fast_path(), &FastPath::Off);
    let table = inet_table();
    assert!(
        !table.contains("flowtable") && !table.contains("forward"),
        "{table}"
    );
    assert_eq!(hello("10.0.0.1:3306").0, "a");
    off.release().unwrap();
}
