//! keepalived's routing entries end to end, in network namespaces: `virtual_routes` and
//! `virtual_rules` installed while MASTER and removed on leaving it, `static_ipaddress`,
//! `static_routes` and `static_rules` for the daemon's life, compared with what keepalived
//! 2.2.7 installs for the same configuration, and put back when someone removes them.
//!
//! Needs root, iproute2 and keepalived (scripts/test installs them).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

use std::time::{Duration, Instant};

use holdfast_lab::netns;

const SEC: Duration = Duration::from_secs(1);

fn lab(n: usize) -> netns::Lab {
    netns::Lab::new(n).with_bin(env!("CARGO_BIN_EXE_holdfast").into())
}

/// One instance with every kind of entry keepalived's samples and OpenStack's routers use:
/// gateways, tables, metrics, a preferred source (a VIP), types, route metrics with a lock,
/// multipath, untracked entries; rules by source, destination, fwmark and mask, input
/// interface, goto and `not`.
fn conf(priority: u8) -> String {
    format!(
        "static_ipaddress {{
    10.66.0.1/24 dev eth0
}}
static_routes {{
    10.67.0.0/16 via 10.77.0.254 dev eth0
}}
static_rules {{
    from 10.67.0.0/16 table 67 priority 167
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        10.77.0.100/24
    }}
    virtual_routes {{
        10.20.0.0/16 via 10.77.0.254 dev eth0 table 100 metric 5
        src 10.77.0.100 10.21.0.0/16 via 10.77.0.254 dev eth0
        blackhole 10.22.0.0/16 no_track
        10.23.0.0/16 dev eth0 scope link mtu lock 1400
        10.24.0.0/16 dev eth0 nexthop via 10.77.0.253 dev eth0 weight 2 nexthop via 10.77.0.252 dev eth0
        unreachable 10.25.0.0/16 table 100 no_track
    }}
    virtual_rules {{
        from 10.20.0.0/16 table 100 priority 100
        to 10.21.0.0/16 lookup 200 priority 200
        fwmark 0x1/0xff table 100 priority 300
        iif eth0 from 10.26.0.0/16 blackhole priority 400
        from 10.30.0.0/16 goto 600 priority 500
        not from 10.31.0.0/16 table 100 priority 501 no_track
    }}
}}
"
    )
}

/// Node `n`'s routes (but the kernel's own), rules and eth0's IPv4 addresses, sorted.
fn snapshot(lab: &netns::Lab, n: usize) -> Vec<String> {
    let mut out: Vec<String> = lab
        .output(n, &["ip", "route", "show", "table", "all"])
        .lines()
        .filter(|l| !l.contains("proto kernel") && !l.contains("table local"))
        .filter(|l| !l.starts_with("local") && !l.starts_with("broadcast"))
        .map(|l| l.trim().to_owned())
        .collect();
    for fam in ["-4", "-6"] {
        out.extend(
            lab.output(n, &["ip", fam, "rule", "show"])
                .lines()
                .map(|l| format!("{fam} {}", l.trim())),
        );
    }
    out.extend(
        lab.output(n, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned)),
    );
    out.sort();
    out
}

/// Every entry of [`conf`] as `ip` shows it begins (route destinations, rule preferences,
/// addresses).
const MARKS: &[&str] = &[
    "10.20.0.0/16",
    "10.21.0.0/16",
    "blackhole 10.22.0.0/16",
    "10.23.0.0/16",
    "10.24.0.0/16",
    "unreachable 10.25.0.0/16",
    "10.67.0.0/16",
    "10.66.0.1/24",
    "10.77.0.100/24",
    "-4 100:",
    "-4 167:",
    "-4 200:",
    "-4 300:",
    "-4 400:",
    "-4 500:",
    "-4 501:",
];

fn has(snap: &[String], mark: &str) -> bool {
    snap.iter().any(|l| l.starts_with(mark))
}

/// Polls node `n`'s snapshot (every 20 ms, at most `timeout`) until `done` holds for it.
fn wait_snapshot(
    lab: &netns::Lab,
    n: usize,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = snapshot(lab, n);
        if done(&s) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// keepalived 2.2.7 first, then holdfast, on the same configuration in a fresh namespace each:
/// while MASTER the routes, rules and addresses are the same, line for line as `ip` shows
/// them, and after a stop both leave the same (none of them).
#[test]
fn routes_rules_and_static_entries_are_installed_and_removed_as_keepalived_does() {
    let mut seen = Vec::new();
    for daemon in ["keepalived", "holdfast"] {
        let mut lab = lab(1);
        let before = snapshot(&lab, 1);
        let mut node = match daemon {
            "keepalived" => lab.keepalived(1, &conf(150)),
            _ => lab.holdfast(1, &conf(150)),
        };
        node.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
        let master = wait_snapshot(&lab, 1, 5 * SEC, |s| MARKS.iter().all(|m| has(s, m)));
        for m in MARKS {
            assert!(
                has(&master, m),
                "{daemon}: no {m} while MASTER: {master:#?}"
            );
        }
        node.signal("TERM");
        assert!(node.wait_exit(10 * SEC), "{daemon} did not stop");
        let after = snapshot(&lab, 1);
        assert_eq!(after, before, "{daemon} left entries behind");
        seen.push((daemon, master));
    }
    let (k, h) = (&seen[0].1, &seen[1].1);
    assert_eq!(
        k, h,
        "keepalived's entries (left) and holdfast's (right) differ"
    );
}

/// Two holdfast nodes: the MASTER holds the virtual routes and rules and the BACKUP does not;
/// one removed by hand on the MASTER is put back, as is a static one on the BACKUP; a
/// hand-over moves them.
#[test]
fn virtual_routes_follow_the_master_and_removed_entries_are_put_back() {
    let mut lab = lab(2);
    let mut n1 = lab.holdfast(1, &conf(150));
    let mut n2 = lab.holdfast(2, &conf(100));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    let m = wait_snapshot(&lab, 1, 5 * SEC, |s| MARKS.iter().all(|m| has(s, m)));
    assert!(MARKS.iter().all(|x| has(&m, x)), "{m:#?}");
    let b = snapshot(&lab, 2);
    assert!(!has(&b, "10.20.0.0/16") && !has(&b, "-4 100:"), "{b:#?}");
    assert!(
        has(&b, "10.67.0.0/16") && has(&b, "-4 167:"),
        "statics on the BACKUP: {b:#?}"
    );

    // A virtual route and a virtual rule removed on the MASTER.
    n1.mark();
    lab.exec(1, &["ip", "route", "del", "10.20.0.0/16", "table", "100"]);
    n1.wait_for("(VI_1) virtual route prepend 10.20.0.0/16", 5 * SEC);
    let s = wait_snapshot(&lab, 1, 5 * SEC, |s| has(s, "10.20.0.0/16"));
    assert!(has(&s, "10.20.0.0/16"), "route not put back: {s:#?}");
    n1.mark();
    lab.exec(1, &["ip", "rule", "del", "priority", "100"]);
    n1.wait_for("was removed by someone else - restoring it", 5 * SEC);
    let s = wait_snapshot(&lab, 1, 5 * SEC, |s| has(s, "-4 100:"));
    assert!(has(&s, "-4 100:"), "rule not put back: {s:#?}");
    // An untracked one stays removed: deleted before a tracked one, whose restoration then
    // shows that the deletion of the first was seen (one watcher, in order).
    n1.mark();
    lab.exec(1, &["ip", "rule", "del", "priority", "501"]);
    lab.exec(1, &["ip", "rule", "del", "priority", "200"]);
    n1.wait_for("virtual rule to 10.21.0.0/16", 5 * SEC);
    let s = wait_snapshot(&lab, 1, 5 * SEC, |s| has(s, "-4 200:"));
    assert!(has(&s, "-4 200:"), "rule 200 not put back: {s:#?}");
    assert!(!has(&s, "-4 501:"), "an untracked rule came back: {s:#?}");
    // A static route on the BACKUP, with keepalived's line.
    n2.mark();
    lab.exec(2, &["ip", "route", "del", "10.67.0.0/16"]);
    n2.wait_for(
        "Restoring deleted static route prepend 10.67.0.0/16",
        5 * SEC,
    );
    let s = wait_snapshot(&lab, 2, 5 * SEC, |s| has(s, "10.67.0.0/16"));
    assert!(has(&s, "10.67.0.0/16"), "static route not put back: {s:#?}");
    // The static address too.
    n2.mark();
    lab.exec(2, &["ip", "addr", "del", "10.66.0.1/24", "dev", "eth0"]);
    n2.wait_for("Restoring deleted static address 10.66.0.1/24", 5 * SEC);

    // Hand-over: the BACKUP takes the entries, the old MASTER gives them up.
    n1.signal("TERM");
    n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    let b = wait_snapshot(&lab, 2, 5 * SEC, |s| {
        has(s, "10.20.0.0/16") && has(s, "-4 100:")
    });
    assert!(has(&b, "10.20.0.0/16") && has(&b, "-4 500:"), "{b:#?}");
    assert!(n1.wait_exit(10 * SEC));
    let gone = snapshot(&lab, 1);
    assert!(
        !MARKS.iter().any(|x| has(&gone, x)),
        "the stopped node kept entries: {gone:#?}"
    );
}

/// A reload on a MASTER applies the difference: a route and a rule that went are removed, new
/// ones are added, and those that stay are left alone (never removed and put back).
#[test]
fn a_reload_applies_the_difference_of_routes_and_rules() {
    let mut lab = lab(1);
    let mut n1 = lab.holdfast(1, &conf(150));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let m = wait_snapshot(&lab, 1, 5 * SEC, |s| MARKS.iter().all(|m| has(s, m)));
    assert!(MARKS.iter().all(|x| has(&m, x)), "{m:#?}");
    let changed = conf(150)
        .replace(
            "10.21.0.0/16 via 10.77.0.254 dev eth0",
            "10.41.0.0/16 via 10.77.0.254 dev eth0",
        )
        .replace(
            "to 10.21.0.0/16 lookup 200 priority 200",
            "to 10.41.0.0/16 lookup 200 priority 210",
        )
        .replace("10.67.0.0/16 via", "10.68.0.0/16 via");
    // The configuration holdfast was started with is n1.conf in the lab's directory.
    std::fs::write(lab.dir().join("n1.conf"), changed).unwrap();
    n1.mark();
    n1.signal("HUP");
    n1.wait_for("Reload finished", 5 * SEC);
    let s = wait_snapshot(&lab, 1, 5 * SEC, |s| {
        has(s, "10.41.0.0/16") && has(s, "-4 210:") && has(s, "10.68.0.0/16")
    });
    for gone in ["10.21.0.0/16", "-4 200:", "10.67.0.0/16"] {
        assert!(!has(&s, gone), "{gone} kept after the reload: {s:#?}");
    }
    for kept in [
        "10.41.0.0/16",
        "-4 210:",
        "10.68.0.0/16",
        "10.20.0.0/16",
        "-4 100:",
    ] {
        assert!(has(&s, kept), "{kept} missing after the reload: {s:#?}");
    }
    // Nothing that stayed was taken away and put back.
    assert_eq!(n1.count("restoring it"), 0, "{}", n1.log());
    assert_eq!(n1.count("Entering BACKUP STATE"), 1, "{}", n1.log());
}

/// Whether node `from` gets an answer from `addr`:7777 (a listener on node 1 says `hi`),
/// within 2 s.
fn reaches(lab: &netns::Lab, from: usize, addr: &str) -> bool {
    let script = format!("exec 3<>/dev/tcp/{addr}/7777 && head -c 2 <&3");
    lab.output(from, &["timeout", "2", "bash", "-c", &script]) == "hi"
}

/// `vrrp_strict` (keepalived's default configuration has it): a MASTER that is not the
/// address owner does not accept traffic to its VIP (RFC 5798's Accept_Mode off), through
/// keepalived's nftables table — keepalived 2.2.7 first, then holdfast, the same; without
/// strict mode the VIP answers; at stop the table goes.
#[test]
fn vrrp_strict_drops_traffic_to_the_vips_of_a_non_owner_master_as_keepalived_does() {
    for daemon in ["keepalived", "holdfast"] {
        for strict in [true, false] {
            let mut lab = lab(2);
            let _listener = lab.spawn(
                1,
                "listener",
                &["socat", "TCP-LISTEN:7777,fork,reuseaddr", "SYSTEM:echo hi"],
            );
            let conf = format!(
                "global_defs {{\n{}}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n}}\n",
                if strict { "    vrrp_strict\n" } else { "" }
            );
            // The node's own address answers whatever the daemon does.
            let deadline = Instant::now() + 5 * SEC;
            while !reaches(&lab, 2, "10.77.0.1") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(reaches(&lab, 2, "10.77.0.1"), "no listener");
            let mut node = match daemon {
                "keepalived" => lab.keepalived(1, &conf),
                _ => lab.holdfast(1, &conf),
            };
            node.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
            assert!(
                lab.wait_has(1, "10.77.0.100/24", true, 5 * SEC),
                "{daemon}: no VIP"
            );
            let set = || lab.output(1, &["nft", "list", "set", "ip", "keepalived", "vips"]);
            if strict {
                let deadline = Instant::now() + 5 * SEC;
                while !set().contains("10.77.0.100") && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                assert!(set().contains("10.77.0.100"), "{daemon}: {}", set());
                assert!(
                    !reaches(&lab, 2, "10.77.0.100"),
                    "{daemon}: the VIP answered in strict mode"
                );
                assert!(
                    reaches(&lab, 2, "10.77.0.1"),
                    "{daemon}: own address blocked"
                );
            } else {
                assert!(
                    reaches(&lab, 2, "10.77.0.100"),
                    "{daemon}: the VIP did not answer without strict mode"
                );
                assert!(!set().contains("10.77.0.100"));
            }
            node.signal("TERM");
            assert!(node.wait_exit(10 * SEC), "{daemon} did not stop");
            let tables = lab.output(1, &["nft", "list", "tables"]);
            assert!(
                !tables.contains("keepalived"),
                "{daemon} (strict {strict}) left its table: {tables}"
            );
        }
    }
}

/// Accept mode off with an IPv6 link-local VIP: keepalived matches it with its interface — by
/// name for an instance with `dont_track_primary` (unless `nftables_ifindex`), by index
/// otherwise — and holdfast puts it in the same set, with the traffic to it dropped.
#[test]
fn link_local_vips_are_blocked_per_interface_as_keepalived_blocks_them() {
    for (dont_track, ifindex, set) in [
        (false, false, "vips_link_local"),
        (true, false, "vips_link_local_name"),
        (true, true, "vips_link_local"),
    ] {
        for daemon in ["keepalived", "holdfast"] {
            let mut lab = lab(2);
            let conf = format!(
                "global_defs {{\n    nftables\n{}}}\nvrrp_instance VI_6 {{\n    state MASTER\n    interface eth0\n    virtual_router_id 52\n    priority 150\n    advert_int 1\n    no_accept\n{}    virtual_ipaddress {{\n        fe80::52/64\n        fd00::52/64\n    }}\n}}\n",
                if ifindex {
                    "    nftables_ifindex\n"
                } else {
                    ""
                },
                if dont_track {
                    "    dont_track_primary\n"
                } else {
                    ""
                },
            );
            let mut node = match daemon {
                "keepalived" => lab.keepalived(1, &conf),
                _ => lab.holdfast(1, &conf),
            };
            node.wait_for("(VI_6) Entering MASTER STATE", 10 * SEC);
            let list = |s: &str| lab.output(1, &["nft", "list", "set", "ip6", "keepalived", s]);
            let other = if set == "vips_link_local" {
                "vips_link_local_name"
            } else {
                "vips_link_local"
            };
            let deadline = Instant::now() + 5 * SEC;
            while !list(set).contains("fe80::52 . \"eth0\"") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                list(set).contains("fe80::52 . \"eth0\""),
                "{daemon} (dont_track_primary {dont_track}, nftables_ifindex {ifindex}): {set}: {}",
                list(set)
            );
            assert!(!list(other).contains("fe80::52"), "{daemon}: {other}");
            assert!(list("vips").contains("fd00::52"), "{daemon}: vips");
            assert!(!list("vips").contains("fe80::52"), "{daemon}: vips");
            node.signal("TERM");
            assert!(node.wait_exit(10 * SEC), "{daemon} did not stop");
        }
    }
}

/// Adds a veth pair `name`/`name`p on node `n`, with `addr`, both ends up.
fn add_link(lab: &netns::Lab, n: usize, name: &str, addr: &str) {
    let peer = format!("{name}p");
    lab.exec(
        n,
        &[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
        ],
    );
    lab.exec(n, &["ip", "addr", "add", addr, "dev", name]);
    lab.exec(n, &["ip", "link", "set", &peer, "up"]);
    lab.exec(n, &["ip", "link", "set", name, "up"]);
}

/// `dynamic_interfaces`: an instance whose interface does not exist yet waits in FAULT, runs
/// when it appears, goes to FAULT when it is deleted and runs again when it comes back — as
/// keepalived 2.2.7 does; a tracked interface likewise. `keepalived -t` and check-config
/// accept the configuration.
#[test]
fn dynamic_interfaces_waits_for_an_interface_and_follows_it_being_deleted_and_made_again() {
    let mut lab = lab(1);
    let conf = "global_defs {\n    dynamic_interfaces\n}\n\
        vrrp_instance VI_1 {\n    state BACKUP\n    interface eth7\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {\n        10.78.0.100/24\n    }\n}\n\
        vrrp_instance VI_2 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 52\n    priority 150\n    advert_int 1\n    track_interface {\n        eth8\n    }\n    virtual_ipaddress {\n        10.77.0.102/24\n    }\n}\n";
    let path = lab.file("dynamic.conf", conf);
    let path = path.to_str().unwrap();
    for check in [
        vec!["keepalived", "-t", "-f", path],
        vec![env!("CARGO_BIN_EXE_holdfast"), "check-config", "-f", path],
    ] {
        let st = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.ns(1)])
            .args(&check)
            .output()
            .unwrap();
        assert_eq!(st.status.code(), Some(0), "{check:?}: {st:?}");
    }
    let on = |lab: &netns::Lab, dev: &str| lab.output(1, &["ip", "-o", "addr", "show", "dev", dev]);
    let mut n1 = lab.holdfast(1, conf);
    n1.wait_for_all(
        &[
            "Configuration specifies interface eth7 which doesn't currently exist - will use if created",
            "(VI_1): entering FAULT state (interface eth7 down)",
            "(VI_2) Entering FAULT STATE",
        ],
        10 * SEC,
    );
    // It appears: MASTER, the VIP on it. Deleted: FAULT. Made again: MASTER again, the VIP on
    // the new interface.
    for round in 0..2 {
        if round > 0 {
            n1.mark();
            lab.exec(1, &["ip", "link", "del", "eth7"]);
            lab.exec(1, &["ip", "link", "del", "eth8"]);
            n1.wait_for_all(
                &[
                    "(VI_1) Entering FAULT STATE",
                    "Interface eth7 deleted",
                    "(VI_2) Entering FAULT STATE",
                ],
                5 * SEC,
            );
        }
        n1.mark();
        add_link(&lab, 1, "eth7", "10.78.0.1/24");
        add_link(&lab, 1, "eth8", "10.79.0.1/24");
        n1.wait_for_all(
            &[
                "Interface eth7 added",
                "(VI_1) Entering MASTER STATE",
                "(VI_2) Entering MASTER STATE",
            ],
            10 * SEC,
        );
        assert!(
            netns::settles(|| on(&lab, "eth7").contains("10.78.0.100/24")),
            "round {round}: {}",
            on(&lab, "eth7")
        );
    }
    n1.signal("TERM");
    assert!(n1.wait_exit(10 * SEC));
}
