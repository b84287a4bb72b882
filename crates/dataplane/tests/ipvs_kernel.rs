//! The IPVS plane against a real kernel's IPVS. This machine's kernel has none, so these tests
//! are ignored in ordinary runs and run inside a QEMU VM with Debian's kernel by
//! `scripts/ipvs-vm/test` (called from `scripts/test`), which fails when they cannot run.
//! Each test starts from an empty table and leaves one behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure should stop them

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_dataplane::ipvs::{IpvsPlane, SyncDaemon};
use holdfast_dataplane::{
    DataPlane, DestSpec, Forward, Proto, ServiceKey, ServiceSpec, ServiceTable,
};
use holdfast_lb::sched::{HashFlags, Kind};

/// Busybox's shell runs its own `ip` applet before searching PATH: iproute2's is /sbin/ip.
const PRELUDE: &str = "ip() { /sbin/ip \"$@\"; }\n";

/// Refuses to go on outside the IPVS test VM: these tests add a bridge, addresses and routes
/// to the namespace they run in, which must never be a host's.
fn in_the_vm() {
    assert!(
        std::path::Path::new("/etc/holdfast-ipvs-vm").exists(),
        "these tests change the network of the machine they run on: run them in the IPVS VM (scripts/ipvs-vm/test), never with --ignored on a host"
    );
}

fn sh(cmd: &str) -> String {
    in_the_vm();
    let out = Command::new("sh")
        .args(["-c", &format!("{PRELUDE}{cmd}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fresh() -> IpvsPlane {
    sh("ipvsadm -C");
    IpvsPlane::open().expect("IPVS answers")
}

fn dest(addr: &str, weight: u32, method: Forward) -> DestSpec {
    DestSpec {
        addr: addr.parse().unwrap(),
        weight,
        upper: None,
        lower: None,
        method,
        tunnel: Default::default(),
    }
}

fn service(key: ServiceKey, sched: Kind, dests: Vec<DestSpec>) -> ServiceSpec {
    ServiceSpec::new(key, sched, dests)
}

fn tcp(addr: &str) -> ServiceKey {
    ServiceKey::tcp(addr.parse().unwrap())
}

/// `ipvsadm -Ln` without trailing blanks on its lines.
fn ipvsadm() -> String {
    sh("ipvsadm -Ln")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

const ALL: [Kind; 13] = [
    Kind::Rr,
    Kind::Wrr,
    Kind::Lc,
    Kind::Wlc,
    Kind::Lblc,
    Kind::Lblcr,
    Kind::Dh,
    Kind::Sh,
    Kind::Sed,
    Kind::Nq,
    Kind::Mh,
    Kind::Fo,
    Kind::Ovf,
];

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn every_scheduler_and_method_is_in_the_kernel_as_ipvsadm_shows_it() {
    let mut plane = fresh();
    let mut table: ServiceTable = ALL
        .iter()
        .enumerate()
        .map(|(i, k)| {
            service(
                tcp(&format!("10.1.0.{}:80", i + 1)),
                *k,
                vec![
                    dest("10.2.0.1:80", 1, Forward::Masq),
                    dest("10.2.0.2:80", 2, Forward::Route),
                    dest("10.2.0.3:80", 3, Forward::Tunnel),
                ],
            )
        })
        .collect();
    let mut persistent = service(
        ServiceKey::Addr {
            proto: Proto::Udp,
            addr: "10.1.1.1:53".parse().unwrap(),
        },
        Kind::Sh,
        vec![dest("10.2.0.1:53", 1, Forward::Masq)],
    );
    persistent.persistence = Some(Duration::from_secs(50));
    persistent.persistence_prefix = Some(24);
    persistent.flags = HashFlags {
        port: true,
        fallback: true,
    };
    table.push(persistent);
    table.push(service(
        ServiceKey::Fwmark { mark: 7, v6: false },
        Kind::Wlc,
        vec![dest("10.2.0.9:3306", 5, Forward::Route)],
    ));
    let mut v6 = service(
        tcp("[2001:db8::1]:3306"),
        Kind::Rr,
        vec![dest("[2001:db8::2]:3306", 1, Forward::Masq)],
    );
    v6.dests[0].upper = Some(100);
    v6.dests[0].lower = Some(10);
    table.push(v6);
    plane.apply(&table).unwrap();

    let listed = ipvsadm();
    assert!(
        listed.starts_with(
            "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
        ),
        "{listed}"
    );
    // Each service with its destinations (in the kernel's order, which is not the table's).
    for (i, k) in ALL.iter().enumerate() {
        let block = format!(
            "TCP  10.1.0.{}:80 {}\n{}",
            i + 1,
            k.name(),
            [
                "  -> 10.2.0.1:80                  Masq    1      0          0",
                "  -> 10.2.0.2:80                  Route   2      0          0",
                "  -> 10.2.0.3:80                  Tunnel  3      0          0",
            ]
            .join("\n")
        );
        assert!(listed.contains(&block), "missing:\n{block}\nin:\n{listed}");
    }
    for block in [
        "UDP  10.1.1.1:53 sh (sh-fallback,sh-port) persistent 50 mask 255.255.255.0\n  -> 10.2.0.1:53                  Masq    1      0          0",
        "FWM  7 wlc\n  -> 10.2.0.9:3306                Route   5      0          0",
        "TCP  [2001:db8::1]:3306 rr\n  -> [2001:db8::2]:3306           Masq    1      0          0",
    ] {
        assert!(listed.contains(block), "missing:\n{block}\nin:\n{listed}");
    }
    // The thresholds, which -Ln does not show.
    let thresholds = sh("ipvsadm -Ln --thresholds -t '[2001:db8::1]:3306'");
    assert!(
        thresholds
            .lines()
            .any(|l| l.contains("[2001:db8::2]:3306") && l.contains(" 100 ") && l.contains(" 10 ")),
        "{thresholds}"
    );
    // Read back through the plane: what was asked for.
    let stats = plane.stats();
    assert_eq!(stats.len(), table.len());
    for spec in &table {
        let s = stats.iter().find(|s| s.key == spec.key).unwrap();
        assert_eq!(s.sched, spec.sched, "{}", spec.key);
        assert_eq!(s.persistence, spec.persistence, "{}", spec.key);
        let mut got: Vec<(SocketAddr, u32, Forward)> = s
            .dests
            .iter()
            .map(|d| (d.addr.unwrap(), d.weight, d.method))
            .collect();
        let mut wanted: Vec<(SocketAddr, u32, Forward)> = spec
            .dests
            .iter()
            .map(|d| (d.addr, d.weight, d.method))
            .collect();
        got.sort_by_key(|d| d.0);
        wanted.sort_by_key(|d| d.0);
        assert_eq!(got, wanted, "{}", spec.key);
    }
    // Applying the same table again changes nothing.
    plane.apply(&table).unwrap();
    assert_eq!(ipvsadm(), listed);
    sh("ipvsadm -C");
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn apply_changes_only_the_difference_and_never_touches_foreign_services() {
    let mut plane = fresh();
    // Someone else's service, made by hand.
    sh("ipvsadm -A -t 10.9.9.9:80 -s rr && ipvsadm -a -t 10.9.9.9:80 -r 10.2.0.1:80 -m");
    let a = service(
        tcp("10.1.0.1:3306"),
        Kind::Wlc,
        vec![
            dest("10.2.0.1:3306", 1, Forward::Masq),
            dest("10.2.0.2:3306", 1, Forward::Masq),
        ],
    );
    let b = service(
        tcp("10.1.0.2:3306"),
        Kind::Rr,
        vec![dest("10.2.0.1:3306", 1, Forward::Route)],
    );
    plane.apply(&vec![a.clone(), b.clone()]).unwrap();
    // A weight to 0 (inhibit), one server out, one in, the scheduler changed; b removed.
    let mut a2 = a.clone();
    a2.sched = Kind::Sh;
    a2.dests = vec![
        dest("10.2.0.1:3306", 0, Forward::Masq),
        dest("10.2.0.3:3306", 4, Forward::Masq),
    ];
    plane.apply(&vec![a2]).unwrap();
    let listed = ipvsadm();
    assert!(
        listed.contains(
            "TCP  10.1.0.1:3306 sh\n  -> 10.2.0.1:3306                Masq    0      0          0\n  -> 10.2.0.3:3306                Masq    4      0          0"
        ),
        "{listed}"
    );
    assert!(!listed.contains("10.1.0.2:3306"), "{listed}");
    assert!(!listed.contains("10.2.0.2:3306"), "{listed}");
    assert!(
        listed.contains("TCP  10.9.9.9:80 rr\n  -> 10.2.0.1:80"),
        "the foreign service must stay:\n{listed}"
    );
    // An empty table removes holdfast's services and still not the foreign one.
    plane.apply(&Vec::new()).unwrap();
    let listed = ipvsadm();
    assert!(!listed.contains("10.1.0.1:3306"), "{listed}");
    assert!(listed.contains("TCP  10.9.9.9:80 rr"), "{listed}");
    // release() at stop: the same rule.
    plane.apply(&vec![a]).unwrap();
    assert!(plane.release().is_empty());
    let listed = ipvsadm();
    assert!(!listed.contains("10.1.0.1:3306"), "{listed}");
    assert!(listed.contains("TCP  10.9.9.9:80 rr"), "{listed}");
    // flush (lvs_flush) removes everything.
    plane.flush().unwrap();
    assert!(!ipvsadm().contains("10.9.9.9"));
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn a_service_changed_by_hand_is_put_back_and_a_deleted_one_recreated() {
    let mut plane = fresh();
    let a = service(
        tcp("10.1.0.1:80"),
        Kind::Rr,
        vec![dest("10.2.0.1:80", 3, Forward::Masq)],
    );
    plane.apply(&vec![a.clone()]).unwrap();
    sh("ipvsadm -e -t 10.1.0.1:80 -r 10.2.0.1:80 -m -w 9 && ipvsadm -E -t 10.1.0.1:80 -s lc");
    plane.apply(&vec![a.clone()]).unwrap();
    let listed = ipvsadm();
    assert!(
        listed.contains("TCP  10.1.0.1:80 rr\n  -> 10.2.0.1:80                  Masq    3"),
        "{listed}"
    );
    sh("ipvsadm -D -t 10.1.0.1:80");
    plane.apply(&vec![a]).unwrap();
    assert!(ipvsadm().contains("TCP  10.1.0.1:80 rr"));
    sh("ipvsadm -C");
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn timeouts_info_and_the_sync_daemon() {
    let mut plane = fresh();
    let (version, size) = plane.info().unwrap();
    assert_eq!(version, "1.2.1");
    assert_eq!(size, 4096);
    plane.set_timeouts(7200, 60, 300).unwrap();
    assert_eq!(plane.timeouts().unwrap(), (7200, 60, 300));
    assert!(sh("ipvsadm -L --timeout").contains("7200 60 300"));
    // 0 keeps what the kernel has.
    plane.set_timeouts(900, 0, 0).unwrap();
    assert_eq!(plane.timeouts().unwrap(), (900, 60, 300));
    let d = SyncDaemon {
        iface: "lo".into(),
        id: 5,
        maxlen: Some(1400),
        port: Some(8848),
        ttl: Some(2),
        group: Some("224.0.0.99".parse().unwrap()),
    };
    plane.start_sync_daemon(false, &d).unwrap();
    let daemons = plane.sync_daemons().unwrap();
    assert_eq!(daemons, vec![(false, "lo".to_owned(), 5)]);
    let listed = sh("ipvsadm -L --daemon");
    assert!(
        listed.contains("master sync daemon (mcast=lo, syncid=5, maxlen=1400, group=224.0.0.99, port=8848, ttl=2)"),
        "{listed}"
    );
    plane.stop_sync_daemon(false).unwrap();
    assert!(plane.sync_daemons().unwrap().is_empty());
    // Stopping one that does not run is not an error.
    plane.stop_sync_daemon(true).unwrap();
}

/// Namespaces for real traffic: real servers on a bridge in the VM's own namespace (the
/// director), a NAT client on a routed veth, a DR client on the bridge.
struct Lab {
    servers: Vec<Child>,
}

impl Lab {
    fn up() -> Lab {
        sh(
            "ip netns del real2 2>/dev/null; ip netns del real3 2>/dev/null; ip netns del cnat 2>/dev/null; ip netns del cdr 2>/dev/null; ip link del br0 2>/dev/null; true",
        );
        sh("echo 1 > /proc/sys/net/ipv4/ip_forward
            ip link add br0 type bridge && ip addr add 10.0.5.1/24 dev br0 && ip link set br0 up
            ip addr add 10.0.0.1/32 dev lo 2>/dev/null || true
            for i in 2 3; do
              n=real$i
              ip netns add $n
              ip link add v$n type veth peer name eth0 netns $n
              ip link set v$n master br0 up
              ip -n $n addr add 10.0.5.$i/24 dev eth0
              ip -n $n link set eth0 up
              ip -n $n link set lo up
              ip -n $n route add default via 10.0.5.1
              ip -n $n addr add 10.0.0.1/32 dev lo
              ip netns exec $n sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce'
            done
            ip netns add cnat
            ip link add vcnat type veth peer name eth0 netns cnat
            ip addr add 10.0.2.1/24 dev vcnat && ip link set vcnat up
            ip -n cnat addr add 10.0.2.2/24 dev eth0 && ip -n cnat link set eth0 up
            ip -n cnat route add default via 10.0.2.1
            ip netns add cdr
            ip link add vcdr type veth peer name eth0 netns cdr
            ip link set vcdr master br0 up
            ip -n cdr addr add 10.0.5.9/24 dev eth0 && ip -n cdr link set eth0 up
            ip -n cdr route add 10.0.0.1/32 via 10.0.5.1");
        let mut servers = Vec::new();
        for n in ["real2", "real3"] {
            for port in ["3306", "3307"] {
                servers.push(
                    Command::new("ip")
                        .args(["netns", "exec", n, "nc", "-ll", "-p", port, "-e", "echo"])
                        .arg(format!("hello from {n}"))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                );
            }
        }
        Lab { servers }
    }

    /// One connection from `client` to `vip`: the greeting it got.
    fn hello(client: &str, vip: &str) -> String {
        let (host, port) = vip.split_once(':').unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", client, "nc", "-w", "2", host, port])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            // The listeners may still be starting.
            if !got.is_empty() || Instant::now() > deadline {
                return got;
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("sh")
            .args(["-c", "/sbin/ip netns del real2; /sbin/ip netns del real3; /sbin/ip netns del cnat; /sbin/ip netns del cdr; /sbin/ip link del br0; /sbin/ip addr del 10.0.0.1/32 dev lo"])
            .status();
    }
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn tcp_through_the_vip_reaches_the_right_servers_in_nat_and_dr_mode() {
    let mut plane = fresh();
    let _lab = Lab::up();
    let nat = service(
        tcp("10.0.0.1:3306"),
        Kind::Rr,
        vec![
            dest("10.0.5.2:3306", 1, Forward::Masq),
            dest("10.0.5.3:3306", 1, Forward::Masq),
        ],
    );
    let dr = service(
        tcp("10.0.0.1:3307"),
        Kind::Rr,
        vec![
            dest("10.0.5.2:3307", 1, Forward::Route),
            dest("10.0.5.3:3307", 1, Forward::Route),
        ],
    );
    plane.apply(&vec![nat.clone(), dr.clone()]).unwrap();
    let mut seen = BTreeMap::new();
    for (client, vip) in [("cnat", "10.0.0.1:3306"), ("cdr", "10.0.0.1:3307")] {
        for _ in 0..4 {
            *seen.entry((client, Lab::hello(client, vip))).or_insert(0) += 1;
        }
    }
    // Round robin: two each, through NAT (replies un-NATed by the director) and DR (replies
    // straight from the real server, which holds the VIP on its loopback).
    for client in ["cnat", "cdr"] {
        for real in ["real2", "real3"] {
            assert_eq!(
                seen.get(&(client, format!("hello from {real}"))),
                Some(&2),
                "{seen:?}"
            );
        }
    }
    // Weight 0 (inhibit_on_failure): no new connections to real2.
    let mut nat0 = nat.clone();
    nat0.dests[0].weight = 0;
    plane.apply(&vec![nat0, dr.clone()]).unwrap();
    for _ in 0..3 {
        assert_eq!(Lab::hello("cnat", "10.0.0.1:3306"), "hello from real3");
    }
    // Removed: likewise, and the kernel counted the connections it scheduled.
    let mut dr1 = dr.clone();
    dr1.dests.remove(1);
    plane.apply(&vec![nat.clone(), dr1]).unwrap();
    for _ in 0..3 {
        assert_eq!(Lab::hello("cdr", "10.0.0.1:3307"), "hello from real2");
    }
    // IPVS's estimator folds per-CPU counters in every two seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conns: u64 = plane
            .stats()
            .iter()
            .find(|s| s.key == nat.key)
            .map(|s| s.dests.iter().map(|d| d.conns).sum())
            .unwrap_or(0);
        if conns >= 7 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "NAT service counted {conns} connections"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sh("ipvsadm -C");
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn apply_changed_looks_at_the_changed_service_alone() {
    let mut plane = fresh();
    let a = service(
        tcp("10.1.0.1:80"),
        Kind::Rr,
        vec![dest("10.2.0.1:80", 1, Forward::Masq)],
    );
    let b = service(
        tcp("10.1.0.2:80"),
        Kind::Rr,
        vec![dest("10.2.0.2:80", 1, Forward::Masq)],
    );
    // Added one by one, as the daemon's virtual servers start.
    plane.apply_changed(&vec![a.clone()], a.key).unwrap();
    plane
        .apply_changed(&vec![a.clone(), b.clone()], b.key)
        .unwrap();
    // b edited by hand; a's server goes to weight 0 and a new one comes.
    sh("ipvsadm -e -t 10.1.0.2:80 -r 10.2.0.2:80 -m -w 7");
    let mut a2 = a.clone();
    a2.dests = vec![
        dest("10.2.0.1:80", 0, Forward::Masq),
        dest("10.2.0.3:80", 2, Forward::Masq),
    ];
    plane
        .apply_changed(&vec![a2.clone(), b.clone()], a.key)
        .unwrap();
    let listed = ipvsadm();
    assert!(
        listed.contains(
            "TCP  10.1.0.1:80 rr\n  -> 10.2.0.1:80                  Masq    0      0          0\n  -> 10.2.0.3:80                  Masq    2"
        ),
        "{listed}"
    );
    // b was not looked at: the hand edit stays until b changes or a full apply.
    assert!(
        listed.contains("-> 10.2.0.2:80                  Masq    7"),
        "{listed}"
    );
    plane.apply(&vec![a2.clone(), b.clone()]).unwrap();
    assert!(ipvsadm().contains("-> 10.2.0.2:80                  Masq    1"));
    // Removing b.
    plane.apply_changed(&vec![a2], b.key).unwrap();
    let listed = ipvsadm();
    assert!(!listed.contains("10.1.0.2:80"), "{listed}");
    assert!(listed.contains("TCP  10.1.0.1:80 rr"), "{listed}");
    sh("ipvsadm -C");
}
