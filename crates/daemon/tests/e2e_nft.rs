//! `dataplane nft` end to end (as root, in namespaces the test creates): seed 000's
//! addressing and virtual server (NAT, `dh`, MISC_CHECK, weight 100) with holdfast programming
//! nftables DNAT in the director's namespace, in front of two real MariaDB servers. A client
//! elsewhere queries through the VIP; a failed server leaves the rule, its return brings it
//! back, and the table is gone when holdfast stops.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::time::Duration;

use holdfast_lab::{netns, services};

const SEC: Duration = Duration::from_secs(1);

/// `SELECT @@server_id` through the VIP `vip` from the client node (4): which server answered.
fn server_id_at(lab: &netns::Lab, vip: &str) -> String {
    lab.output(
        4,
        &[
            "mariadb",
            "--no-defaults",
            "-h",
            vip,
            "-P",
            "3306",
            "-ulab",
            "-plab",
            "--connect-timeout=3",
            "-N",
            "-e",
            "SELECT @@server_id",
        ],
    )
    .trim()
    .to_owned()
}

/// Through seed 000's virtual server.
fn server_id(lab: &netns::Lab) -> String {
    server_id_at(lab, "172.21.115.217")
}

/// holdfast's table in the director's namespace (`nft_table lb_nat`).
fn table(lab: &netns::Lab) -> String {
    lab.output(1, &["nft", "list", "table", "inet", "lb_nat"])
}

/// Waits until `addr` is (or is not) a destination in the table: the log line is written as
/// the change is made, the table follows at once.
fn settle(lab: &netns::Lab, addr: &str, present: bool) {
    let deadline = std::time::Instant::now() + 5 * SEC;
    while table(lab).contains(&format!("{addr} . 3306")) != present {
        assert!(std::time::Instant::now() < deadline, "{}", table(lab));
        std::thread::sleep(SEC / 20);
    }
}

#[test]
fn seed_000_on_nftables_follows_a_failed_replica_and_leaves_no_table() {
    let mut lab = netns::Lab::new(4).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    // Seed 000's addresses on the lab's bridge: the director (node 1) holds the virtual
    // server's address; the replicas are .218 (node 2) and .215 (node 3). NAT: the replicas
    // answer the client (node 4, 10.77.0.4) through the director, which forwards.
    for (n, addr) in [
        (1, "172.21.115.217/24"),
        (2, "172.21.115.218/24"),
        (3, "172.21.115.215/24"),
    ] {
        lab.exec(n, &["ip", "addr", "add", addr, "dev", "eth0"]);
    }
    lab.exec(1, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.exec(1, &["sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"]);
    lab.exec(1, &["sysctl", "-qw", "net.ipv4.conf.eth0.send_redirects=0"]);
    for n in [2, 3] {
        lab.exec(
            n,
            &[
                "ip",
                "route",
                "add",
                "10.77.0.4/32",
                "via",
                "172.21.115.217",
            ],
        );
    }
    lab.exec(
        4,
        &["ip", "route", "add", "172.21.115.0/24", "via", "10.77.0.1"],
    );
    let _db2 = services::mariadb_with(&mut lab, 2, &["--server-id=218"]).unwrap();
    let db3 = services::mariadb_with(&mut lab, 3, &["--server-id=215"]).unwrap();
    // The seed's check, a script taking the server's address (here: can we connect).
    let check = lab.file("mysql_check.sh", "#!/bin/bash\nexec 3<>/dev/tcp/$1/3306\n");
    let _ = std::process::Command::new("chmod")
        .arg("0755")
        .arg(&check)
        .status();
    let c = check.display();
    let conf = format!(
        "global_defs {{\n router_id MARIA_HA\n script_user root\n dataplane nft\n nft_table lb_nat\n}}\nvirtual_server 172.21.115.217 3306 {{\ndelay_loop 3\nlb_algo dh\nprotocol TCP\nreal_server 172.21.115.218 3306 {{\nweight 100\nMISC_CHECK {{\nmisc_path \"{c} 172.21.115.218\"\nmisc_timeout 3\n}}\n}}\nreal_server 172.21.115.215 3306 {{\nweight 100\nMISC_CHECK {{\nmisc_path \"{c} 172.21.115.215\"\nmisc_timeout 3\n}}\n}}\n}}\n"
    );
    let mut lb = lab.holdfast_with(1, &conf, &["-C"]);
    lb.wait_for(
        "Using the nftables data plane for 1 virtual server(s) (table inet lb_nat)",
        10 * SEC,
    );
    // The rule is in place once both servers are (they start alive, as in keepalived).
    let deadline = std::time::Instant::now() + 10 * SEC;
    while !(table(&lab).contains("172.21.115.218 . 3306")
        && table(&lab).contains("172.21.115.215 . 3306"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no rule:\n{}\n{}",
            table(&lab),
            lb.log()
        );
        std::thread::sleep(SEC / 10);
    }
    // dh: the destination address picks the server; every query lands on the same one.
    let first = server_id(&lab);
    assert!(
        first == "218" || first == "215",
        "{first:?}\n{}\n{}",
        table(&lab),
        lb.log()
    );
    for _ in 0..3 {
        assert_eq!(server_id(&lab), first);
    }
    assert!(
        table(&lab).contains("dnat ip to jhash ip daddr mod 256 seed 0x686f6c64 map"),
        "{}",
        table(&lab)
    );
    // The flowtable fast path: logged either way, and in the table only where it is on.
    let deadline = std::time::Instant::now() + 10 * SEC;
    let offloaded = loop {
        let log = lb.log();
        if log.contains(
            "nftables: established NAT connections are offloaded to a flowtable (on eth0)",
        ) {
            break true;
        }
        if log.contains("nftables: the kernel has no flowtable (") {
            break false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fast path line:\n{log}"
        );
        std::thread::sleep(SEC / 10);
    };
    assert_eq!(
        table(&lab).contains("flow add @ft"),
        offloaded,
        "{}",
        table(&lab)
    );
    // The server that answered fails its check: it is removed and the other answers.
    let (down, down_addr, other) = if first == "215" {
        (db3, "172.21.115.215", "218")
    } else {
        (_db2, "172.21.115.218", "215")
    };
    down.signal("KILL");
    lb.wait_for(
        &format!("Removing service [{down_addr}]:tcp:3306 from VS [172.21.115.217]:tcp:3306"),
        15 * SEC,
    );
    // The line is logged as the change is made; the table follows at once.
    settle(&lab, down_addr, false);
    for _ in 0..3 {
        assert_eq!(server_id(&lab), other);
    }
    // It comes back: readmitted, and dh's table is what it was, so it answers again.
    let n = if down_addr == "172.21.115.215" { 3 } else { 2 };
    let _back = services::mariadb_start(&mut lab, n).unwrap();
    lb.wait_for(
        &format!("Adding service [{down_addr}]:tcp:3306 to VS [172.21.115.217]:tcp:3306"),
        15 * SEC,
    );
    settle(&lab, down_addr, true);
    assert_eq!(server_id(&lab), first);
    // Stopping removes holdfast's table.
    lb.signal("TERM");
    assert!(lb.wait_exit(10 * SEC), "holdfast did not stop");
    let tables = lab.output(1, &["nft", "list", "tables"]);
    assert!(!tables.contains("lb_nat"), "{tables}");
}

/// Through seed 003's virtual server (the client is on the same link).
fn server_id_003(lab: &netns::Lab) -> String {
    server_id_at(lab, "192.168.1.10")
}

/// Seed 003 unchanged but for `dataplane nft`: its VRRP instance puts the VIP on the director,
/// its virtual server (DR, rr, inhibit_on_failure, TCP_CHECK) forwards to two MariaDB real
/// servers holding the VIP on lo, which answer the client directly.
#[test]
fn seed_003_direct_return_on_nftables_sets_a_failed_server_to_weight_zero() {
    let mut lab = netns::Lab::new(4).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    for (n, addr) in [
        (1, "192.168.1.1/24"),
        (2, "192.168.1.201/24"),
        (3, "192.168.1.202/24"),
        (4, "192.168.1.9/24"),
    ] {
        lab.exec(n, &["ip", "addr", "add", addr, "dev", "eth0"]);
    }
    for n in [2, 3] {
        lab.exec(n, &["ip", "addr", "add", "192.168.1.10/32", "dev", "lo"]);
        lab.exec(
            n,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
            ],
        );
    }
    let db201 = services::mariadb_with(&mut lab, 2, &["--server-id=201"]).unwrap();
    let _db202 = services::mariadb_with(&mut lab, 3, &["--server-id=202"]).unwrap();
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seeds/seed003-lvs1.conf"
    ))
    .unwrap();
    let control = lab.dir().join("control.sock");
    let conf = seed.replacen(
        "   router_id LVS_1\n",
        &format!(
            "   router_id LVS_1\n   dataplane nft\n   control_socket {}\n",
            control.display()
        ),
        1,
    );
    assert_ne!(conf, seed);
    let mut lb = lab.holdfast(1, &conf);
    lb.wait_for(
        "Using the nftables data plane for 1 virtual server(s) (table inet holdfast)",
        10 * SEC,
    );
    lb.wait_for("(VI_1) Entering MASTER STATE", 15 * SEC);
    // rr over both real servers, replies straight from them.
    let mut seen: Vec<String> = (0..4).map(|_| server_id_003(&lab)).collect();
    seen.sort();
    assert_eq!(seen, ["201", "201", "202", "202"], "{}", lb.log());
    let status = || {
        netns::cli(
            env!("CARGO_BIN_EXE_holdfast"),
            &control,
            &["status", "--lvs"],
        )
    };
    // (Forward, Weight) of a real server in `status --lvs`.
    let dest = |text: &str, addr: &str| -> Option<(String, String)> {
        text.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4 && w[0] == "->" && w[1] == addr).then(|| (w[2].into(), w[3].into()))
        })
    };
    let route = |w: &str| Some(("Route".to_string(), w.to_string()));
    // The table is applied by the plane's own thread just after the log line: status shows
    // it once it is in.
    let settled = |w: &str| {
        let deadline = std::time::Instant::now() + 5 * SEC;
        while dest(&status(), "192.168.1.201:3306") != route(w) {
            assert!(std::time::Instant::now() < deadline, "{}", status());
            std::thread::sleep(SEC / 20);
        }
    };
    settled("1");
    // The four queries' connections, closed by their clients, are each server's InActConn
    // (read from direct return's connection sets), as `ipvsadm -Ln` counts them.
    let conns = |text: &str, addr: &str| -> Option<(String, String)> {
        text.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 6 && w[0] == "->" && w[1] == addr).then(|| (w[4].into(), w[5].into()))
        })
    };
    for rs in ["192.168.1.201:3306", "192.168.1.202:3306"] {
        assert_eq!(
            conns(&status(), rs),
            Some(("0".to_string(), "2".to_string())),
            "{}",
            status()
        );
    }
    // 201 fails its TCP_CHECK (delay_loop 30, 3 retries 3 s apart): weight 0, not removed.
    db201.signal("KILL");
    lb.wait_for(
        "Disabling service [192.168.1.201]:tcp:3306 of VS [192.168.1.10]:tcp:3306",
        60 * SEC,
    );
    settled("0");
    for _ in 0..3 {
        assert_eq!(server_id_003(&lab), "202");
    }
    // Back: weight 1 again, and rr reaches it.
    let _back = services::mariadb_start(&mut lab, 2).unwrap();
    lb.wait_for(
        "Enabling service [192.168.1.201]:tcp:3306 of VS [192.168.1.10]:tcp:3306",
        60 * SEC,
    );
    settled("1");
    let seen: Vec<String> = (0..4).map(|_| server_id_003(&lab)).collect();
    assert!(seen.iter().any(|s| s == "201"), "{seen:?}");
    // Stopping removes both of holdfast's tables.
    lb.signal("TERM");
    assert!(lb.wait_exit(10 * SEC), "holdfast did not stop");
    let tables = lab.output(1, &["nft", "list", "tables"]);
    assert!(!tables.contains("holdfast"), "{tables}");
}

#[test]
fn lvs_timeouts_become_conntrack_policies_of_the_nat_rules() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let _web = lab.spawn(
        2,
        "web",
        &["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo up"],
    );
    let conf = "global_defs {\n    lvs_timeouts tcp 37 tcpfin 23 udp 41\n    dataplane nft\n    nft_table lb_nat\n}\nvirtual_server 10.77.0.1 80 {\n    delay_loop 1\n    lb_algo rr\n    real_server 10.77.0.2 80 {\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n}\n";
    let mut lb = lab.holdfast(1, conf);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.2]:tcp:80 for VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    let deadline = std::time::Instant::now() + 5 * SEC;
    while !table(&lab).contains("10.77.0.2 . 80") {
        assert!(std::time::Instant::now() < deadline, "{}", table(&lab));
        std::thread::sleep(SEC / 20);
    }
    let t = table(&lab);
    for want in [
        "ct timeout t_tcp4 {",
        "established : 37",
        "fin_wait : 23",
        "close_wait : 23",
        "ct timeout t_udp4 {",
        "unreplied : 41",
        " replied : 41",
        "ct timeout set \"t_tcp4\"",
    ] {
        assert!(t.contains(want), "no {want:?} in\n{t}");
    }
}

/// A VRRP instance (v3, adverts every 0.5 s) beside a virtual server on nftables whose real
/// server's MISC_CHECK passes while `flag` exists.
fn vrrp_and_nft(priority: u8, flag: &std::path::Path) -> String {
    format!(
        "global_defs {{\n    script_user root\n    dataplane nft\n    nft_table lb_nat\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    version 3\n    advert_int 0.5\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n}}\nvirtual_server 10.77.0.100 80 {{\n    delay_loop 0.2\n    lb_algo rr\n    real_server 10.77.0.2 80 {{\n        MISC_CHECK {{\n            misc_path \"test -e {}\"\n        }}\n    }}\n}}\n",
        flag.display()
    )
}

#[test]
fn a_slow_nft_does_not_stop_the_vrrp_adverts_while_it_applies_a_change() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    // n1's `nft` takes 4 s a call: longer than twice n2's master-down interval (1.8 s).
    let bin = lab.dir().join("slow-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nft is installed");
    let slow = bin.join("nft");
    std::fs::write(&slow, format!("#!/bin/sh\nsleep 4\nexec {real} \"$@\"\n")).unwrap();
    let _ = std::process::Command::new("chmod")
        .arg("0755")
        .arg(&slow)
        .status();
    let flag = lab.file("up", "");
    let conf = lab.file("n1-slow.conf", &vrrp_and_nft(150, &flag));
    let path = format!("PATH={}:{}", bin.display(), std::env::var("PATH").unwrap());
    let exe = env!("CARGO_BIN_EXE_holdfast");
    let dir = lab.dir().display().to_string();
    let conf = conf.display().to_string();
    let mut n1 = lab.spawn(
        1,
        "holdfast@n1",
        &[
            "env",
            &path,
            exe,
            "run",
            "-n",
            "-l",
            "-D",
            "--data-dir",
            &dir,
            "-p",
            &format!("{dir}/n1.pid"),
            "-f",
            &conf,
        ],
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // The first table is in (two slow calls: clearing a leftover table, then the rules).
    let deadline = std::time::Instant::now() + 25 * SEC;
    while !table(&lab).contains("10.77.0.2 . 80") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}\n{}",
            table(&lab),
            n1.log()
        );
        std::thread::sleep(SEC / 10);
    }
    let other = lab.dir().join("n2-flag");
    let mut n2 = lab.holdfast(2, &vrrp_and_nft(100, &other));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    // n1's real server fails: its removal takes one slow call, during which n1 advertises.
    std::fs::remove_file(&flag).unwrap();
    n1.wait_for(
        "Removing service [10.77.0.2]:tcp:80 from VS [10.77.0.100]:tcp:80",
        5 * SEC,
    );
    let deadline = std::time::Instant::now() + 15 * SEC;
    while table(&lab).contains("10.77.0.2 . 80") {
        assert!(std::time::Instant::now() < deadline, "{}", table(&lab));
        std::thread::sleep(SEC / 20);
    }
    let log2 = n2.log();
    assert!(
        !log2.contains("(VI_1) Entering MASTER STATE"),
        "n2 took over while n1 applied its table:\n{log2}\n-- n1:\n{}",
        n1.log()
    );
    // n1 still stops cleanly, removing the table.
    n1.signal("TERM");
    assert!(n1.wait_exit(10 * SEC), "holdfast did not stop");
    let tables = lab.output(1, &["nft", "list", "tables"]);
    assert!(!tables.contains("lb_nat"), "{tables}\n{}", n1.log());
}
