//! `bgp_announce` end to end (as root, in namespaces the test creates): holdfast on a director
//! holds the announcement's routes (an IPv4 and an IPv6 prefix) in the table a BGP speaker
//! would import while the virtual server it tracks has its quorum and the file it tracks says
//! 0; the routes go when the real server fails, when the file says otherwise, at a clean stop,
//! and — through the guardian — when holdfast is killed; a reload keeps an unchanged
//! announcement quietly and withdraws one no longer configured. FRR (configured from `holdfast
//! frr-config`) and BIRD (configured as the manual says) announce it to a router.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::time::Duration;

use holdfast_lab::netns::{self, Lab, Proc, settles};

const SEC: Duration = Duration::from_secs(1);

/// The announcement's routes as `ip route show table 100` prints them, IPv4 and IPv6.
const ROUTES: [(&str, &str); 2] = [
    ("-4", "192.0.2.10 dev lo proto keepalived"),
    ("-6", "2001:db8:10::/64 dev lo proto keepalived"),
];

/// Which of the announcement's routes are in table 100.
fn announced(lab: &Lab) -> [bool; 2] {
    ROUTES.map(|(family, route)| {
        lab.output(1, &["ip", family, "route", "show", "table", "100"])
            .contains(route)
    })
}

/// Waits until both routes are (or neither is) in table 100, showing the daemon's log if not.
fn expect_announced(lab: &Lab, d: &mut Proc, want: bool, after: &str) {
    assert!(
        settles(|| announced(lab) == [want; 2]),
        "after {after}: routes {} expected; table 100: {:?} {:?}\nlog:\n{}",
        if want { "present" } else { "absent" },
        lab.output(1, &["ip", "-4", "route", "show", "table", "100"]),
        lab.output(1, &["ip", "-6", "route", "show", "table", "100"]),
        d.log()
    );
}

/// The real server: a TCP listener on node 2, port 8080.
fn listener(lab: &mut Lab) -> Proc {
    let p = lab.spawn(
        2,
        "listener",
        &["socat", "TCP-LISTEN:8080,fork,reuseaddr", "EXEC:/bin/true"],
    );
    assert!(settles(|| lab
        .output(
            1,
            &["bash", "-c", "exec 3<>/dev/tcp/10.77.0.2/8080 && echo up"]
        )
        .contains("up")));
    p
}

fn config(flag: &std::path::Path) -> String {
    format!(
        "global_defs {{\n    dataplane nft\n    nft_table hf_announce\n}}\n\
         track_file flag {{\n    file {}\n}}\n\
         virtual_server 192.0.2.10 8080 {{\n    delay_loop 1\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n    real_server 10.77.0.2 8080 {{\n        TCP_CHECK {{\n            connect_timeout 1\n            retry 0\n        }}\n    }}\n}}\n\
         bgp_announce web {{\n    prefix 192.0.2.10\n    prefix 2001:db8:10::/64\n    table 100\n    track_virtual_server 192.0.2.10 8080\n    track_file {{\n        flag\n    }}\n}}\n",
        flag.display()
    )
}

#[test]
fn an_announcement_follows_its_virtual_server_and_file_and_is_withdrawn_at_stop_and_death() {
    if !netns::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut lab = Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let flag = lab.file("flag", "0\n");
    let conf = config(&flag);
    let backend = listener(&mut lab);
    assert_eq!(announced(&lab), [false; 2], "table 100 starts empty");

    let mut d = lab.holdfast(1, &conf);
    d.wait_for(
        "bgp_announce web: announcing 192.0.2.10/32 in table 100",
        10 * SEC,
    );
    expect_announced(&lab, &mut d, true, "start");

    // The real server fails: the virtual server loses its quorum, the route goes.
    d.mark();
    backend.signal("KILL");
    d.wait_for(
        "bgp_announce web: withdrawing 192.0.2.10/32 from table 100 (VS [192.0.2.10]:tcp:8080 lost its quorum)",
        10 * SEC,
    );
    expect_announced(&lab, &mut d, false, "the real server failed");

    // It returns: announced again.
    d.mark();
    let _backend = listener(&mut lab);
    d.wait_for(
        "bgp_announce web: announcing 192.0.2.10/32 in table 100 (VS [192.0.2.10]:tcp:8080 has its quorum)",
        10 * SEC,
    );
    expect_announced(&lab, &mut d, true, "the real server returned");

    // The tracked file says 1: withdrawn while the service is still healthy; 0: back.
    d.mark();
    std::fs::write(&flag, "1\n").unwrap();
    d.wait_for("(track_file flag is down)", 5 * SEC);
    expect_announced(&lab, &mut d, false, "the file said 1");
    d.mark();
    std::fs::write(&flag, "0\n").unwrap();
    d.wait_for("(track_file flag is up)", 5 * SEC);
    expect_announced(&lab, &mut d, true, "the file said 0");

    // Killed: the guardian withdraws it.
    d.signal("KILL");
    assert!(d.wait_exit(5 * SEC));
    expect_announced(&lab, &mut d, false, "kill -9");

    // Started again and stopped cleanly: announced, then withdrawn before it exits.
    let mut d = lab.holdfast(1, &conf);
    d.wait_for(
        "bgp_announce web: announcing 192.0.2.10/32 in table 100",
        10 * SEC,
    );
    expect_announced(&lab, &mut d, true, "restart");

    // Reloaded unchanged: the announcement stays, neither withdrawn nor announced anew. The
    // reloaded announcement's next move (the file says 1) comes after anything it said on
    // starting again.
    d.mark();
    let reloaded = std::time::Instant::now();
    d.signal("HUP");
    d.wait_for("Reload finished", 10 * SEC);
    std::fs::write(&flag, "1\n").unwrap();
    let moved = d.wait_for(
        "bgp_announce web: withdrawing 192.0.2.10/32 from table 100 (track_file flag is down)",
        5 * SEC,
    );
    let between: Vec<&String> = d
        .lines
        .iter()
        .filter(|(t, l)| *t >= reloaded && *t < moved && l.contains("bgp_announce web:"))
        .map(|(_, l)| l)
        .collect();
    assert!(between.is_empty(), "after an unchanged reload: {between:?}");
    std::fs::write(&flag, "0\n").unwrap();
    d.wait_for("(track_file flag is up)", 5 * SEC);
    expect_announced(&lab, &mut d, true, "an unchanged reload");
    // Reloaded without the block: withdrawn; with it again: announced.
    let without = &conf[..conf.find("bgp_announce web").unwrap()];
    lab.file("n1.conf", without);
    d.mark();
    d.signal("HUP");
    d.wait_for(
        "bgp_announce web: withdrawing 192.0.2.10/32 from table 100 (no longer configured)",
        10 * SEC,
    );
    expect_announced(&lab, &mut d, false, "a reload without the block");
    lab.file("n1.conf", &conf);
    d.mark();
    d.signal("HUP");
    d.wait_for(
        "bgp_announce web: announcing 192.0.2.10/32 in table 100",
        10 * SEC,
    );
    expect_announced(&lab, &mut d, true, "a reload with the block again");

    d.signal("TERM");
    d.wait_for(
        "bgp_announce web: withdrawing 192.0.2.10/32 from table 100 (stopping)",
        10 * SEC,
    );
    assert!(
        d.wait_exit(10 * SEC),
        "still running after TERM:\n{}",
        d.log()
    );
    expect_announced(&lab, &mut d, false, "a clean stop");
}

/// The BGP path of an announcement as the router (node 3) sees it: `None` while it has none.
fn router_sees(frr: &netns::Frr) -> Option<serde_json::Value> {
    let out = frr.vtysh("show ip bgp 192.0.2.10/32 json");
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["paths"].as_array()?.first().cloned()
}

/// The router (node 3): FRR in AS 65000 peering with the director (node 1, AS 65001).
fn router(lab: &mut Lab) -> netns::Frr {
    lab.frr(
        3,
        "frr defaults datacenter\nrouter bgp 65000\n bgp router-id 10.77.0.3\n neighbor 10.77.0.1 remote-as 65001\nexit\n",
    )
}

/// Waits (30 s: the session may still be coming up) for the router to learn the prefix; its
/// path, or a panic with what `why` says of the speakers.
fn learnt(router: &netns::Frr, mut why: impl FnMut() -> String) -> serde_json::Value {
    let deadline = std::time::Instant::now() + 30 * SEC;
    loop {
        if let Some(p) = router_sees(router) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the router never learnt 192.0.2.10/32:\n{}\n{}",
            router.vtysh("show ip bgp summary"),
            why()
        );
        std::thread::sleep(SEC / 10);
    }
}

/// The tracked file says 1 (the announcement is withdrawn): waits (10 s) for the router to
/// lose the prefix.
fn withdrawn_by_the_file(d: &mut Proc, flag: &std::path::Path, router: &netns::Frr) {
    d.mark();
    std::fs::write(flag, "1\n").unwrap();
    d.wait_for("(track_file flag is down)", 5 * SEC);
    let deadline = std::time::Instant::now() + 10 * SEC;
    while router_sees(router).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the router kept 192.0.2.10/32 after the withdrawal"
        );
        std::thread::sleep(SEC / 10);
    }
}

#[test]
fn frr_announces_what_holdfast_frr_config_prints_and_withdraws_it_when_the_service_fails() {
    if !netns::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_holdfast");
    let mut lab = Lab::new(3).with_bin(bin.into());
    let flag = lab.file("flag", "0\n");
    let conf = config(&flag).replace(
        "track_virtual_server 192.0.2.10 8080\n",
        "track_virtual_server 192.0.2.10 8080\n    community 65001:100 65001:200\n    med 50\n    next_hop 10.77.0.2\n",
    );
    let path = lab.file("director.conf", &conf);
    // The director's FRR: what `holdfast frr-config` prints, and a session with the router.
    let snippet = holdfast_lab::anycast::frr_config(bin.as_ref(), &path, 65001).unwrap();
    let director = format!(
        "frr defaults datacenter\n{snippet}router bgp 65001\n bgp router-id 10.77.0.1\n neighbor 10.77.0.3 remote-as 65000\nexit\n"
    );
    let d_frr = lab.frr(1, &director);
    let r_frr = router(&mut lab);
    let _backend = listener(&mut lab);
    assert!(router_sees(&r_frr).is_none(), "nothing announced yet");

    let mut d = lab.holdfast(1, &conf);
    d.wait_for("bgp_announce web: announcing 192.0.2.10/32", 10 * SEC);
    // The router learns it, with the block's attributes.
    let path = learnt(&r_frr, || {
        format!(
            "director's FRR:\n{}\n{}\n{}\ndirector:\n{}",
            d_frr.vtysh("show running-config"),
            d_frr.vtysh("show ip route table 100"),
            d_frr.vtysh("show ip bgp"),
            d.log()
        )
    });
    assert_eq!(path["metric"], 50, "{path}");
    assert_eq!(
        path["community"]["string"].as_str(),
        Some("65001:100 65001:200"),
        "{path}"
    );
    // The block's next hop (here another host on the segment), which zebra installs in the
    // router's kernel after BGP has it.
    assert_eq!(
        path["nexthops"][0]["ip"].as_str(),
        Some("10.77.0.2"),
        "{path}"
    );
    assert!(
        settles(|| lab
            .output(3, &["ip", "route", "show", "192.0.2.10"])
            .contains("via 10.77.0.2")),
        "the router's kernel has no route through the block's next hop"
    );

    // The tracked file says 1: the router loses the prefix.
    withdrawn_by_the_file(&mut d, &flag, &r_frr);
}

/// The manual's BIRD configuration (the active-active page), its neighbour made the router.
fn manual_bird_config() -> String {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/manual/src/anycast.md"
    ))
    .unwrap();
    let start = page
        .find("```text\nprotocol device {")
        .expect("the manual's BIRD block");
    let block = &page[start + "```text\n".len()..];
    let end = block.find("```").unwrap();
    block[..end].replace("neighbor 10.0.0.1 as 65000", "neighbor 10.77.0.3 as 65000")
}

#[test]
fn bird_configured_as_the_manual_says_announces_the_table_and_withdraws_it() {
    if !netns::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_holdfast");
    let mut lab = Lab::new(3).with_bin(bin.into());
    let flag = lab.file("flag", "0\n");
    let conf = config(&flag);
    let bird = manual_bird_config();
    assert!(bird.contains("neighbor 10.77.0.3 as 65000"), "{bird}");
    let b = lab.bird(1, &bird);
    let r_frr = router(&mut lab);
    let _backend = listener(&mut lab);
    let mut d = lab.holdfast(1, &conf);
    d.wait_for("bgp_announce web: announcing 192.0.2.10/32", 10 * SEC);
    let path = learnt(&r_frr, || {
        format!(
            "BIRD:\n{}\n{}",
            b.birdc("show protocols all"),
            b.birdc("show route")
        )
    });
    assert_eq!(path["metric"], 50, "{path}");
    assert_eq!(
        path["community"]["string"].as_str(),
        Some("65001:100"),
        "{path}"
    );
    withdrawn_by_the_file(&mut d, &flag, &r_frr);
}
