//! `holdfast run` on the kernel's IPVS with the seeds' `virtual_server` sections unchanged:
//! seed 000 (NAT, dh, MISC_CHECK) and seed 003 (DR, rr, inhibit_on_failure, TCP_CHECK). This
//! machine's kernel has no IPVS, so these tests are ignored in ordinary runs and run inside a
//! QEMU VM with Debian's kernel by `scripts/ipvs-vm/test` (called from `scripts/test`). The VM
//! has no network device: the seeds' addresses live only on its bridge and namespaces.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop them

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn holdfast() -> PathBuf {
    std::env::var_os("HOLDFAST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_holdfast")))
}

fn seed(name: &str) -> PathBuf {
    // In the VM the fixtures are next to the test binary (scripts/ipvs-vm/test puts them).
    let here = Path::new("/host").join(name);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seeds")
        .join(name)
}

/// `ipvsadm -Ln` with trailing blanks trimmed.
fn ipvsadm() -> String {
    sh("ipvsadm -Ln")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The forwarding method and weight `ipvsadm -Ln` shows for destination `addr`.
fn dest(table: &str, addr: &str) -> Option<(String, u32)> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 4 && f[0] == "->" && f[1] == addr)
            .then(|| (f[2].to_owned(), f[3].parse().unwrap_or(u32::MAX)))
    })
}

/// Waits up to `secs` for `f` to hold, returning the last observation for the message.
fn until(secs: u64, what: &str, mut f: impl FnMut() -> (bool, String)) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (ok, seen) = f();
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s; last seen:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A real server inside namespace `ns`: busybox's nc on port 3306 running `program` for each
/// connection.
fn server(ns: &str, program: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "nc", "-ll", "-p", "3306", "-e"])
        .args(program)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A real server: a greeting on port 3306 inside namespace `ns`.
fn listener(ns: &str) -> Child {
    server(ns, &["echo", &format!("hello from {ns}")])
}

/// One connection from `client` to `host:3306`: the greeting, or "" when none came.
fn hello(client: &str, host: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", client, "nc", "-w", "2", host, "3306"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// `holdfast run` with its virtual servers only (`-C`), as the seeds' tests need.
    fn start(conf: &Path, tag: &str) -> Daemon {
        Daemon::start_with(conf, tag, "-C")
    }

    fn start_with(conf: &Path, tag: &str, only: &str) -> Daemon {
        Daemon::start_in(None, conf, tag, &[only])
    }

    /// `holdfast run -n -l -D -G` with `extra` arguments, in network namespace `ns` if given.
    fn start_in(ns: Option<&str>, conf: &Path, tag: &str, extra: &[&str]) -> Daemon {
        in_the_vm();
        let log = PathBuf::from(format!("/tmp/holdfast-{tag}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(holdfast());
                c
            }
            None => Command::new(holdfast()),
        };
        let child = cmd
            .args(["run", "-n", "-l", "-D", "-G"])
            .args(extra)
            .arg("-f")
            .arg(conf)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn wait_log(&self, secs: u64, line: &str) {
        self.wait_count(secs, line, 1);
    }

    /// Waits until `line` has been logged `n` times in all (so a line logged once before an
    /// action is not taken for its repetition after it).
    fn wait_count(&self, secs: u64, line: &str, n: usize) {
        until(secs, &format!("log line {line:?} {n} times"), || {
            let l = self.log();
            (l.matches(line).count() >= n, l)
        });
    }

    /// One connection from `client` to `vip` greeted by `want`; on failure, the tables and
    /// the daemon's log.
    fn expect_hello(&self, client: &str, vip: &str, want: &str) {
        let got = hello(client, vip);
        assert_eq!(
            got,
            want,
            "{}\n{}\n{}",
            ipvsadm(),
            sh("ipvsadm -Lnc"),
            self.log()
        );
    }

    /// SIGTERM and wait: the daemon releases its services.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "holdfast did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Real servers `reals` (namespace, address) on a bridge whose director side is `director`
/// (address/prefix), the VIP on the director's loopback, and a client namespace.
fn topology(director: &str, vip: &str, reals: &[(&str, &str)], client: (&str, &str, bool)) {
    sh(
        "ipvsadm -C; for n in $(ip netns list | cut -d' ' -f1); do ip netns del $n; done; ip link del br0 2>/dev/null; true",
    );
    let (gw, _) = director.split_once('/').unwrap();
    let prefix = director.split_once('/').unwrap().1;
    sh(&format!(
        "echo 1 > /proc/sys/net/ipv4/ip_forward
         ip link add br0 type bridge && ip addr add {director} dev br0 && ip link set br0 up
         ip addr add {vip}/32 dev lo"
    ));
    for (ns, addr) in reals {
        sh(&format!(
            "ip netns add {ns}
             ip link add v{ns} type veth peer name eth0 netns {ns}
             ip link set v{ns} master br0 up
             ip -n {ns} addr add {addr}/{prefix} dev eth0 && ip -n {ns} link set eth0 up
             ip -n {ns} link set lo up
             ip -n {ns} route add default via {gw}
             ip -n {ns} addr add {vip}/32 dev lo
             ip netns exec {ns} sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce'"
        ));
    }
    let (cns, caddr, on_bridge) = client;
    if on_bridge {
        sh(&format!(
            "ip netns add {cns}
             ip link add v{cns} type veth peer name eth0 netns {cns}
             ip link set v{cns} master br0 up
             ip -n {cns} addr add {caddr}/{prefix} dev eth0 && ip -n {cns} link set eth0 up
             ip -n {cns} route add {vip}/32 via {gw}"
        ));
    } else {
        sh(&format!(
            "ip netns add {cns}
             ip link add v{cns} type veth peer name eth0 netns {cns}
             ip addr add 10.0.2.1/24 dev v{cns} && ip link set v{cns} up
             ip -n {cns} addr add {caddr}/24 dev eth0 && ip -n {cns} link set eth0 up
             ip -n {cns} route add default via 10.0.2.1"
        ));
    }
}

fn teardown(vip: &str) {
    in_the_vm();
    let _ = Command::new("sh")
        .args(["-c", &format!("{PRELUDE}ipvsadm -C; for n in $(ip netns list | cut -d' ' -f1); do ip netns del $n; done; ip link del br0; ip link del vcnat 2>/dev/null; ip addr del {vip}/32 dev lo; true")])
        .status();
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn seed_000_nat_dh_with_misc_check_removes_and_readmits_a_failed_replica() {
    let vip = "172.21.115.217";
    topology(
        "172.21.115.1/24",
        vip,
        &[("db218", "172.21.115.218"), ("db215", "172.21.115.215")],
        ("cnat", "10.0.2.2", false),
    );
    // The seed's check script, stood in for by a connect to the server's port.
    std::fs::create_dir_all("/svc").unwrap();
    std::fs::write(
        "/svc/mysql_check.sh",
        "#!/bin/sh\nexec nc -w 1 \"$1\" 3306 </dev/null >/dev/null 2>&1\n",
    )
    .unwrap();
    sh("chmod 755 /svc/mysql_check.sh");
    let mut servers = vec![
        ("db218", "172.21.115.218", listener("db218")),
        ("db215", "172.21.115.215", listener("db215")),
    ];
    let d = Daemon::start(&seed("seed000-dbms.conf"), "seed000");
    d.wait_log(20, "Using the IPVS data plane for 1 virtual server(s)");
    until(20, "both replicas in the kernel's table", || {
        let t = ipvsadm();
        (
            t.contains("TCP  172.21.115.217:3306 dh")
                && dest(&t, "172.21.115.218:3306") == Some(("Masq".into(), 100))
                && dest(&t, "172.21.115.215:3306") == Some(("Masq".into(), 100)),
            t,
        )
    });
    // dh hashes the destination address: every connection to the VIP lands on one replica.
    let first = hello("cnat", vip);
    assert!(first.starts_with("hello from db"), "{first:?}");
    for _ in 0..3 {
        d.expect_hello("cnat", vip, &first);
    }
    // Its server dies: MISC_CHECK fails and keepalived's line says it is removed.
    let i = servers.iter().position(|s| first.ends_with(s.0)).unwrap();
    let (name, addr, mut child) = servers.remove(i);
    child.kill().unwrap();
    child.wait().unwrap();
    let removing = format!("Removing service [{addr}]:tcp:3306 from VS [{vip}]:tcp:3306");
    d.wait_log(30, &removing);
    until(10, "the failed replica out of the table", || {
        let t = ipvsadm();
        (dest(&t, &format!("{addr}:3306")).is_none(), t)
    });
    let other = servers[0].0;
    for _ in 0..3 {
        d.expect_hello("cnat", vip, &format!("hello from {other}"));
    }
    // It comes back and is readmitted.
    let back = listener(name);
    d.wait_log(
        30,
        &format!("Adding service [{addr}]:tcp:3306 to VS [{vip}]:tcp:3306"),
    );
    until(10, "the replica back in the table", || {
        let t = ipvsadm();
        (dest(&t, &format!("{addr}:3306")).is_some(), t)
    });
    // Stopping releases holdfast's service.
    let log = d.stop();
    assert!(
        !ipvsadm().contains("172.21.115.217"),
        "service left behind:\n{}\n{log}",
        ipvsadm()
    );
    drop(back);
    drop(servers);
    teardown(vip);
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn seed_003_dr_rr_with_inhibit_on_failure_sets_weight_zero() {
    let vip = "192.168.1.10";
    topology(
        "192.168.1.1/24",
        vip,
        &[("s201", "192.168.1.201"), ("s202", "192.168.1.202")],
        ("cdr", "192.168.1.9", true),
    );
    let mut s201 = listener("s201");
    let mut s202 = listener("s202");
    let d = Daemon::start(&seed("seed003-lvs1.conf"), "seed003");
    d.wait_log(20, "Using the IPVS data plane for 1 virtual server(s)");
    until(20, "the seed's service in the kernel", || {
        let t = ipvsadm();
        (
            t.contains("TCP  192.168.1.10:3306 rr")
                && dest(&t, "192.168.1.201:3306") == Some(("Route".into(), 1))
                && dest(&t, "192.168.1.202:3306") == Some(("Route".into(), 1)),
            t,
        )
    });
    // holdfast status --lvs prints the table as ipvsadm -Ln does.
    let status = Command::new(holdfast())
        .args(["status", "--lvs"])
        .output()
        .unwrap();
    let status: String = String::from_utf8_lossy(&status.stdout)
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(status.trim(), ipvsadm().trim());
    // Direct return: round robin over both, the replies straight from the real servers.
    let mut got: Vec<String> = (0..4).map(|_| hello("cdr", vip)).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "hello from s201",
            "hello from s201",
            "hello from s202",
            "hello from s202"
        ]
    );
    // s201 fails its TCP_CHECK (delay_loop 30, 3 retries 3 s apart): weight 0, not removed.
    s201.kill().unwrap();
    s201.wait().unwrap();
    d.wait_log(
        60,
        "Disabling service [192.168.1.201]:tcp:3306 of VS [192.168.1.10]:tcp:3306",
    );
    until(10, "weight 0 for the failed server", || {
        let t = ipvsadm();
        (
            dest(&t, "192.168.1.201:3306") == Some(("Route".into(), 0)),
            t,
        )
    });
    for _ in 0..3 {
        d.expect_hello("cdr", vip, "hello from s202");
    }
    let log = d.stop();
    assert!(!ipvsadm().contains("192.168.1.10"), "{log}");
    let _ = s202.kill();
    let _ = s202.wait();
    teardown(vip);
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn lvs_sync_daemon_follows_the_vrrp_instance_from_backup_to_master_and_back() {
    sh(
        "ipvsadm --stop-daemon master 2>/dev/null; ipvsadm --stop-daemon backup 2>/dev/null; ip link del vh0 2>/dev/null; ip netns del syncpeer 2>/dev/null; true",
    );
    sh("ip link add vh0 type veth peer name vh1
        ip addr add 10.9.0.1/24 dev vh0
        ip link set vh1 up && ip link set vh0 up");
    let conf = Path::new("/tmp/sync.conf");
    std::fs::write(
        conf,
        "global_defs {\n    lvs_sync_daemon vh0 VI_1 id 9\n}\nvrrp_instance VI_1 {\n    state BACKUP\n    interface vh0\n    virtual_router_id 51\n    priority 100\n    advert_int 1\n    virtual_ipaddress {\n        10.9.0.100/24\n    }\n}\n",
    )
    .unwrap();
    let d = Daemon::start_with(conf, "sync", "-P");
    // BACKUP first: the backup daemon; then, alone on the link, MASTER: the master daemon.
    d.wait_log(20, "Starting IPVS backup sync daemon on vh0 (syncid 9)");
    d.wait_log(20, "(VI_1) Entering MASTER STATE");
    d.wait_log(10, "Starting IPVS master sync daemon on vh0 (syncid 9)");
    d.wait_log(10, "Stopping IPVS backup sync daemon");
    let daemons = sh("ipvsadm -L --daemon");
    assert!(
        daemons.contains("master sync daemon (mcast=vh0, syncid=9")
            && !daemons.contains("backup sync daemon"),
        "{daemons}"
    );
    // A router of higher priority on the other end of the link (a second daemon in a
    // namespace of its own, without a sync daemon): the first steps down, and its sync daemon
    // with it.
    sh("ip netns add syncpeer
        ip link set vh1 netns syncpeer
        ip -n syncpeer addr add 10.9.0.2/24 dev vh1
        ip -n syncpeer link set vh1 up
        ip -n syncpeer link set lo up");
    let peer = Path::new("/tmp/sync-peer.conf");
    std::fs::write(
        peer,
        "vrrp_instance VI_1 {\n    state BACKUP\n    interface vh1\n    virtual_router_id 51\n    priority 200\n    advert_int 1\n    virtual_ipaddress {\n        10.9.0.100/24\n    }\n}\n",
    )
    .unwrap();
    let p = Daemon::start_in(
        Some("syncpeer"),
        peer,
        "sync-peer",
        &["-P", "-p", "/tmp/sync-peer.pid"],
    );
    p.wait_log(20, "(VI_1) Entering MASTER STATE");
    d.wait_count(20, "(VI_1) Entering BACKUP STATE", 2);
    d.wait_log(10, "Stopping IPVS master sync daemon");
    d.wait_count(10, "Starting IPVS backup sync daemon on vh0 (syncid 9)", 2);
    let daemons = sh("ipvsadm -L --daemon");
    assert!(
        daemons.contains("backup sync daemon (mcast=vh0, syncid=9")
            && !daemons.contains("master sync daemon"),
        "{daemons}"
    );
    p.stop();
    let log = d.stop();
    assert_eq!(sh("ipvsadm -L --daemon").trim(), "", "{log}");
    sh("ip link del vh0; ip netns del syncpeer");
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn dataplane_auto_puts_a_virtual_server_asking_for_proxy_protocol_on_the_proxy() {
    let conf = Path::new("/tmp/auto.conf");
    std::fs::write(
        conf,
        "global_defs {\n    control_socket /tmp/auto.sock\n}\nvirtual_server 10.9.1.1 80 {\n    lb_algo sh\n    sh-port\n    sh-fallback\n    persistence_timeout 50\n    persistence_granularity 255.255.255.0\n    real_server 10.9.1.2 80 {\n        TCP_CHECK {\n        }\n    }\n    real_server 10.9.1.3 80 {\n        lvs_method TUN type gue port 6080 csum\n    }\n}\nvirtual_server 10.9.1.1 53 {\n    protocol UDP\n    ops\n    real_server 10.9.1.2 53 {\n        weight 1\n    }\n}\nvirtual_server 10.9.1.1 5060 {\n    protocol UDP\n    lb_algo rr\n    persistence_timeout 60\n    persistence_engine sip\n    real_server 10.9.1.2 5060 {\n        weight 1\n    }\n}\nvirtual_server 10.9.1.1 3306 {\n    proxy_protocol\n    real_server 10.9.1.2 3306 {\n        TCP_CHECK {\n        }\n    }\n}\n",
    )
    .unwrap();
    let d = Daemon::start(conf, "auto");
    d.wait_log(20, "Using the IPVS data plane for 3 virtual server(s)");
    d.wait_log(5, "Using the proxy data plane for 1 virtual server(s)");
    // Only the first is in the kernel: the PROXY header needs the proxy.
    // The scheduler flags and the persistence mask are in the kernel, and `holdfast status
    // --lvs` prints the service's line as ipvsadm does.
    let line = "TCP  10.9.1.1:80 sh (sh-fallback,sh-port) persistent 50 mask 255.255.255.0";
    // Each virtual server is applied by a task of its own: wait for all three.
    until(10, "the IPVS services in the kernel's table", || {
        let t = ipvsadm();
        let all = t.contains(line) && t.contains("10.9.1.1:53") && t.contains("10.9.1.1:5060");
        (all, t)
    });
    let t = ipvsadm();
    assert!(!t.contains("10.9.1.1:3306"), "{t}\n{}", d.log());
    let out = Command::new(holdfast())
        .args(["status", "--lvs", "-s", "/tmp/auto.sock"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains(line), "{status}\n{t}");
    // The GUE tunnel's type, port and checksum option are in the kernel.
    let tun = sh("ipvsadm -Ln --tun-info");
    assert!(
        tun.lines().any(|l| l.contains("10.9.1.3:80")
            && l.contains("Tunnel")
            && l.contains("gue")
            && l.contains("6080")),
        "{tun}"
    );
    let udp = "UDP  10.9.1.1:53 wlc ops";
    assert!(t.contains(udp), "{t}");
    assert!(status.contains(udp), "{status}\n{t}");
    // The SIP persistence engine is in the kernel, shown as ipvsadm shows it.
    let sip = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("UDP  10.9.1.1:5060 "))
            .map(str::trim_end)
            .map(str::to_owned)
    };
    assert!(
        sip(&t).is_some_and(|l| l.contains("persistent 60") && l.contains("pe sip")),
        "{t}"
    );
    assert_eq!(sip(&status), sip(&t), "{status}\n{t}");
    let log = d.stop();
    assert!(!ipvsadm().contains("10.9.1.1"), "{log}");
}

/// A real server answering each line with its name after a greeting, in namespace `ns`.
fn namer(ns: &str) -> Child {
    let script = format!("echo hello from {ns}; while read l; do echo {ns}; done");
    server(ns, &["sh", "-c", &script])
}

#[test]
#[ignore = "needs the kernel's IPVS: run by scripts/ipvs-vm/test"]
fn a_connection_moved_to_another_ipvs_director_keeps_its_real_server() {
    // Two directors, each its own IPVS table (director A here, B in a namespace of its own),
    // both running holdfast with the same announced virtual server (DR, mh). The client's
    // route to the VIP moves from A to B in the middle of a connection, as equal-cost routing
    // moves a flow when a director joins or leaves: B has no state for it, and must send it
    // to the same real server (IPVS schedules from a packet other than the first only with
    // sloppy_tcp, which holdfast sets for an announced IPVS service).
    use std::io::{BufRead, BufReader, Write};
    let vip = "192.168.1.10";
    topology(
        "192.168.1.1/24",
        vip,
        &[("s201", "192.168.1.201"), ("s202", "192.168.1.202")],
        ("cdr", "192.168.1.9", true),
    );
    sh(&format!(
        "ip netns add dirb
         ip link add vdirb type veth peer name eth0 netns dirb
         ip link set vdirb master br0 up
         ip -n dirb addr add 192.168.1.2/24 dev eth0 && ip -n dirb link set eth0 up
         ip -n dirb link set lo up && ip -n dirb addr add {vip}/32 dev lo"
    ));
    let mut servers = [namer("s201"), namer("s202")];
    let conf = Path::new("/tmp/anycast.conf");
    std::fs::write(
        conf,
        format!(
            "virtual_server {vip} 3306 {{\n    delay_loop 2\n    lb_algo mh\n    mh-port\n    lb_kind DR\n    protocol TCP\n    real_server 192.168.1.201 3306 {{\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n    real_server 192.168.1.202 3306 {{\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n}}\nbgp_announce db {{\n    prefix {vip}\n    table 100\n    track_virtual_server {vip} 3306\n}}\n"
        ),
    )
    .unwrap();
    let a = Daemon::start_in(None, conf, "anycast-a", &["-C"]);
    let b = Daemon::start_in(
        Some("dirb"),
        conf,
        "anycast-b",
        &["-C", "-p", "/tmp/anycast-b.pid"],
    );
    for (d, ns) in [(&a, ""), (&b, "ip netns exec dirb ")] {
        d.wait_log(
            20,
            "bgp_announce db: announcing 192.168.1.10/32 in table 100",
        );
        let sloppy = sh(&format!("{ns}cat /proc/sys/net/ipv4/vs/sloppy_tcp"));
        assert_eq!(sloppy.trim(), "1", "{}", d.log());
        let table = sh(&format!("{ns}ip route show table 100"));
        assert!(
            table.contains("192.168.1.10 dev lo proto keepalived"),
            "{table}"
        );
    }
    // A connection through A.
    let path = "/run/netns/cdr";
    let client = std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = std::net::TcpStream::connect_timeout(
            &"192.168.1.10:3306".parse().unwrap(),
            Duration::from_secs(3),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    });
    let stream = client.join().unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let first = line.trim().trim_start_matches("hello from ").to_string();
    assert!(first == "s201" || first == "s202", "{line}");
    let mut ask = |r: &mut BufReader<std::net::TcpStream>| -> std::io::Result<String> {
        w.write_all(b"who\n")?;
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::other("closed"));
        }
        Ok(l.trim().to_string())
    };
    assert_eq!(ask(&mut r).unwrap(), first);
    assert!(sh("ipvsadm -Lnc").contains("192.168.1.9"), "A carries it");
    // The flow moves to B, which has never seen it.
    sh("ip -n cdr route replace 192.168.1.10/32 via 192.168.1.2");
    let moved = ask(&mut r);
    let on_b = sh("ip netns exec dirb ipvsadm -Lnc");
    assert_eq!(
        moved.as_deref().ok(),
        Some(first.as_str()),
        "after the move: {moved:?}\nB's connections:\n{on_b}\nB:\n{}",
        b.log()
    );
    assert!(on_b.contains("192.168.1.9"), "B carries it now:\n{on_b}");
    drop(r);
    drop(w);
    b.stop();
    a.stop();
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    // The servers' per-connection shells too: a namespace lives while a process is in it.
    sh(
        "for n in s201 s202 cdr dirb; do for p in $(ip netns pids $n); do kill -9 $p; done; done; ip netns del dirb; true",
    );
    teardown(vip);
}
