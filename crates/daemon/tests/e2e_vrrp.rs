//! End to end, as root, in namespaces the test creates: real `holdfast run` processes (and
//! Debian's keepalived 2.2.7 as a peer) electing a master and moving the VIP.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use holdfast_lab::netns;

use std::time::Duration;

use netns::{conf, settles};

/// Two holdfast nodes, priorities 150 and 100, started and settled (n1 MASTER, n2 BACKUP).
fn pair(lab: &mut netns::Lab) -> (netns::Proc, netns::Proc) {
    let mut n1 = lab.holdfast(1, &conf(150, "", ""));
    let mut n2 = lab.holdfast(2, &conf(100, "", ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    (n1, n2)
}

/// The VIP is on node `holder` and not on node `other`.
fn assert_vip_only_on(lab: &netns::Lab, holder: usize, other: usize) {
    assert!(
        settles(|| lab.has(holder, VIP) && !lab.has(other, VIP)),
        "VIP expected only on n{holder}: n{holder} {:?}, n{other} {:?}",
        lab.addrs(holder),
        lab.addrs(other)
    );
}

fn lab(n: usize) -> netns::Lab {
    netns::Lab::new(n).with_bin(env!("CARGO_BIN_EXE_holdfast").into())
}

const VIP: &str = "10.77.0.100/24";
const SEC: Duration = Duration::from_secs(1);

#[test]
fn the_higher_priority_holdfast_becomes_master_and_hands_over_on_sigterm() {
    let mut lab = lab(2);
    let (mut n1, mut n2) = pair(&mut lab);
    assert!(settles(|| lab.has(1, VIP) && !lab.has(2, VIP)));
    // Graceful stop: priority 0, the backup takes over after Skew_Time (0.61 s at 100).
    n1.signal("TERM");
    let stopped = n1.wait_for("(VI_1) sent 0 priority", 5 * SEC);
    n2.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    let took = n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(
        took.duration_since(stopped) < Duration::from_millis(1500),
        "handover took {:?}",
        took.duration_since(stopped)
    );
    assert!(n1.wait_exit(5 * SEC));
    assert_vip_only_on(&lab, 2, 1);
}

#[test]
fn a_killed_master_leaves_last_words_through_its_guardian() {
    let mut lab = lab(2);
    let mut n1 = lab.holdfast(1, &conf(150, "", ""));
    let mut n2 = lab.holdfast(2, &conf(100, "", ""));
    n1.wait_for("(VI_1) guardian armed", 10 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    let killed = std::time::Instant::now();
    n1.signal("KILL");
    // The guardian sends priority 0 and removes the VIP, as keepalived's VRRP child does.
    if n2
        .try_wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC)
        .is_none()
    {
        panic!(
            "no priority-0 advert after kill -9\nn1:\n{}\nn2:\n{}",
            n1.log(),
            n2.log()
        );
    }
    let took = n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(
        took.duration_since(killed) < Duration::from_millis(1500),
        "took {:?}",
        took.duration_since(killed)
    );
    assert_vip_only_on(&lab, 2, 1);
}

#[test]
fn a_master_whose_cable_is_cut_is_taken_over_within_the_master_down_interval() {
    let mut lab = lab(2);
    let (_n1, mut n2) = pair(&mut lab);
    let cut = std::time::Instant::now();
    lab.exec_switch(&["ip", "link", "set", &lab.cable(1), "down"]);
    let took = n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // 3 × 1 s + (256 − 100)/256 s = 3.61 s from the last advert heard, which came up to one
    // advert interval before the cut: 2.61–3.61 s after it. The bounds leave a second either
    // way for a loaded machine while still telling the master-down interval from one advert
    // interval too few or too many (the exact timing is the simulation tests' job, in
    // virtual time).
    let after = took.duration_since(cut);
    assert!(
        after > Duration::from_millis(1600) && after < Duration::from_millis(4600),
        "took {after:?}"
    );
    assert!(settles(|| lab.has(2, VIP)));
}

#[test]
fn a_failing_weighted_track_script_moves_the_vip_and_recovery_moves_it_back() {
    let mut lab = lab(2);
    let flag = lab.file("healthy", "");
    let script = format!(
        "vrrp_script chk {{\n    script \"/usr/bin/test -e {}\"\n    interval 0.2\n    fall 2\n    rise 2\n    weight -60\n}}\n",
        flag.display()
    );
    let c1 = format!(
        "{script}{}",
        conf(
            150,
            "    track_script {\n        chk\n    }",
            "    enable_script_security\n    script_user root"
        )
    );
    let mut n1 = lab.holdfast(1, &c1);
    let mut n2 = lab.holdfast(2, &conf(100, "", ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    std::fs::remove_file(&flag).unwrap();
    n1.wait_for("VRRP_Script(chk) failed (exited with status 1)", 5 * SEC);
    n1.wait_for("(VI_1) Changing effective priority from 150 to 90", 5 * SEC);
    // keepalived: the lower-priority master forces a new election; the backup (100) preempts.
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n1.wait_for("(VI_1) Entering BACKUP STATE", 5 * SEC);
    assert!(settles(|| lab.has(2, VIP) && !lab.has(1, VIP)));
    std::fs::write(&flag, "").unwrap();
    n1.wait_for("VRRP_Script(chk) succeeded", 5 * SEC);
    n2.wait_for("with higher priority 150, ours 100", 10 * SEC);
    // The hand-back: n1 enters MASTER again (a line after its step-down) and holds the VIP.
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE", 5 * SEC);
    assert!(settles(|| lab.has(1, VIP) && !lab.has(2, VIP)));
}

#[test]
fn the_advert_source_follows_the_interface_s_primary_address() {
    let mut lab = lab(2);
    let (mut n1, mut n2) = pair(&mut lab);
    // No address to send from: FAULT, and the backup takes over.
    lab.exec(
        1,
        &["ip", "addr", "flush", "dev", "eth0", "scope", "global"],
    );
    let fault = n1.wait_for("(VI_1) Entering FAULT STATE", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // A new primary address: back through BACKUP, and n1 (150) preempts from it.
    lab.exec(1, &["ip", "addr", "add", "10.77.0.61/24", "dev", "eth0"]);
    let back = n1
        .try_wait_for_after("(VI_1) Entering BACKUP STATE", Some(fault), 5 * SEC)
        .expect("n1 BACKUP after the new address");
    n1.try_wait_for_after("(VI_1) Entering MASTER STATE", Some(back), 10 * SEC)
        .expect("n1 MASTER again");
    n2.wait_for(
        "(VI_1) Master received advert from 10.77.0.61 with higher priority 150, ours 100",
        5 * SEC,
    );
    assert_vip_only_on(&lab, 1, 2);
}

#[test]
fn a_weight_smaller_than_the_priority_gap_does_not_move_the_vip() {
    let mut lab = lab(2);
    let (small, big) = (lab.file("small-ok", ""), lab.file("big-ok", ""));
    let script = |name: &str, flag: &std::path::Path, weight: i32| {
        format!(
            "vrrp_script {name} {{\n    script \"/usr/bin/test -e {}\"\n    interval 0.2\n    weight {weight}\n}}\n",
            flag.display()
        )
    };
    let c1 = script("small", &small, -20)
        + &script("big", &big, -40)
        + &conf(
            150,
            "    track_script {\n        small\n        big\n    }",
            "    enable_script_security\n    script_user root",
        );
    let mut n1 = lab.holdfast(1, &c1);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf(100, "    preempt_fast", ""));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    // -20: 130 is still above 100. n2 (preempt_fast, so it would act on the first advert)
    // accepts n1's adverts at 130 and stays BACKUP.
    std::fs::remove_file(&small).unwrap();
    n1.wait_for(
        "(VI_1) Changing effective priority from 150 to 130",
        5 * SEC,
    );
    let data = lab.dir().join("keepalived.data");
    let deadline = std::time::Instant::now() + 5 * SEC;
    loop {
        let _ = std::fs::remove_file(&data);
        n2.signal("USR1");
        let text = wait_file(&data, "VRRP Instance");
        if text.contains("Master priority = 130") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
    }
    assert_eq!(n2.count("Entering MASTER STATE"), 0, "{}", n2.log());
    // Another -40: 90 is below 100 and the VIP moves.
    std::fs::remove_file(&big).unwrap();
    n1.wait_for("(VI_1) Changing effective priority from 130 to 90", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
}

#[test]
fn link_down_enters_fault_and_recovery_goes_through_backup() {
    let mut lab = lab(2);
    let (mut n1, mut n2) = pair(&mut lab);
    lab.exec(1, &["ip", "link", "set", "eth0", "down"]);
    let fault = n1.wait_for("(VI_1) Entering FAULT STATE", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    lab.exec(1, &["ip", "link", "set", "eth0", "up"]);
    let back = n1
        .try_wait_for_after("(VI_1) Entering BACKUP STATE", Some(fault), 5 * SEC)
        .expect("recovery goes through BACKUP");
    n1.try_wait_for_after("(VI_1) Entering MASTER STATE", Some(back), 10 * SEC)
        .expect("and then MASTER");
}

#[test]
fn dont_track_primary_keeps_an_instance_out_of_fault_on_link_down() {
    let mut lab = lab(2);
    let mut n1 = lab.holdfast(1, &conf(150, "    dont_track_primary", ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf(100, "", ""));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    lab.exec(1, &["ip", "link", "set", "eth0", "down"]);
    // n2 stops hearing n1 and takes over after the down interval; n1 never faulted.
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert_eq!(n1.count("Entering FAULT STATE"), 0, "{}", n1.log());
}

fn interop(holdfast_prio: u8, keepalived_prio: u8, extra: &str) {
    let mut lab = lab(2);
    let c = |p| {
        let c = conf(p, extra, "");
        // VRRPv3 has no authentication.
        if extra.contains("version 3") {
            c.replace(
                "    authentication {\n        auth_type PASS\n        auth_pass 1234\n    }\n",
                "",
            )
        } else {
            c
        }
    };
    let mut dump = lab.vrrp_dump();
    let mut ka = lab.keepalived(1, &c(keepalived_prio));
    let mut hf = lab.holdfast(2, &c(holdfast_prio));
    let (master, backup, master_node, backup_node) = if keepalived_prio > holdfast_prio {
        (&mut ka, &mut hf, 1, 2)
    } else {
        (&mut hf, &mut ka, 2, 1)
    };
    master.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    backup.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
    // Three adverts from the MASTER seen on the wire after the BACKUP settled, then hand over
    // on SIGTERM.
    dump.mark();
    dump.wait_count(
        &format!("10.77.0.{master_node} > 224.0.0.18: VRRP"),
        3,
        10 * SEC,
    );
    assert!(settles(
        || lab.has(master_node, VIP) && !lab.has(backup_node, VIP)
    ));
    master.signal("TERM");
    backup.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(master.wait_exit(10 * SEC));
    assert!(settles(|| lab.has(backup_node, VIP)));
    for p in [&mut ka, &mut hf] {
        let log = p.log();
        for bad in [
            "checksum",
            "passwd",
            "auth",
            "wrong version",
            "interval mismatch",
            "ip number count",
            "not present in",
        ] {
            assert!(!log.contains(bad), "log mentions {bad:?}:\n{log}");
        }
    }
}

#[test]
fn keepalived_master_and_holdfast_backup_interoperate_v2_with_pass() {
    interop(100, 150, "");
}

#[test]
fn holdfast_master_and_keepalived_backup_interoperate_v2_with_pass() {
    interop(150, 100, "");
}

#[test]
fn keepalived_and_holdfast_interoperate_over_vrrpv3_both_ways() {
    interop(100, 150, "    version 3");
    interop(150, 100, "    version 3");
}

fn unicast(me: u8, peer: u8) -> String {
    format!("    unicast_src_ip 10.77.0.{me}\n    unicast_peer {{\n        10.77.0.{peer}\n    }}")
}

#[test]
fn unicast_peers_elect_and_hand_over_including_with_keepalived() {
    let mut lab = lab(2);
    let mut dump = lab.vrrp_dump();
    let mut n1 = lab.holdfast(1, &conf(150, &unicast(1, 2), ""));
    let mut n2 = lab.keepalived(2, &conf(100, &unicast(2, 1), ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
    // Three of holdfast's unicast adverts after keepalived settled as BACKUP.
    dump.mark();
    dump.wait_count("10.77.0.1 > 10.77.0.2: VRRPv2", 3, 10 * SEC);
    assert!(
        lab.has(1, VIP) && !lab.has(2, VIP),
        "keepalived must hear holdfast's unicast adverts"
    );
    n1.signal("TERM");
    n2.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    // holdfast comes back as backup with the higher priority and preempts keepalived.
    let mut n1 = lab.holdfast(1, &conf(150, &unicast(1, 2), ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE", 5 * SEC);
    for log in [n1.log(), n2.log()] {
        for bad in ["checksum", "passwd", "not a unicast peer", "Expected"] {
            assert!(!log.contains(bad), "log mentions {bad:?}:\n{log}");
        }
    }
}

#[test]
fn nopreempt_keeps_the_current_master_when_a_higher_priority_node_returns() {
    let mut lab = lab(2);
    let mut dump = lab.vrrp_dump();
    let mut n2 = lab.holdfast(2, &conf(100, "    nopreempt", ""));
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n1 = lab.holdfast(1, &conf(150, "    nopreempt", ""));
    n1.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    // Five of n2's lower-priority adverts after n1 started — past n1's master-down interval
    // (3 × 1 s + skew): n1 accepted them.
    dump.mark();
    dump.wait_count(
        "10.77.0.2 > 224.0.0.18: VRRPv2, Advertisement, vrid 51, prio 100",
        5,
        10 * SEC,
    );
    assert_eq!(n1.count("Entering MASTER STATE"), 0, "{}", n1.log());
    assert!(settles(|| lab.has(2, VIP)));
}

#[test]
fn preempt_delay_postpones_a_higher_priority_takeover() {
    let mut lab = lab(2);
    let mut n2 = lab.holdfast(2, &conf(100, "", ""));
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let started = std::time::Instant::now();
    let mut n1 = lab.holdfast(1, &conf(150, "    preempt_delay 6", ""));
    let took = n1.wait_for("(VI_1) Entering MASTER STATE", 20 * SEC);
    let after = took.duration_since(started);
    // Without the delay it would preempt after ~3.4 s; with it, not before 6 s.
    assert!(after >= Duration::from_secs(6), "preempted after {after:?}");
    n2.wait_for("(VI_1) Entering BACKUP STATE", 5 * SEC);
}

#[test]
fn sighup_adds_a_vip_without_flapping_and_a_bad_reload_keeps_the_running_config() {
    let mut lab = lab(2);
    let mut dump = lab.vrrp_dump();
    let (mut n1, mut n2) = pair(&mut lab);
    let two = |p| {
        conf(p, "", "").replace(
            "        10.77.0.100/24\n",
            "        10.77.0.100/24\n        10.77.0.101/24\n",
        )
    };
    lab.file("n1.conf", &two(150));
    lab.file("n2.conf", &two(100));
    let masters_before = n1.count("Entering MASTER STATE");
    let removals_before = n1.count("removing VIPs.");
    n1.signal("HUP");
    n2.signal("HUP");
    n1.wait_for("Reload finished", 5 * SEC);
    n2.wait_for("Reload finished", 5 * SEC);
    // Adverts now carry two addresses on both sides: three of them pass n2's checks.
    dump.mark();
    dump.wait_count("addrs(2): 10.77.0.100,10.77.0.101", 3, 10 * SEC);
    assert!(
        lab.has(1, VIP) && lab.has(1, "10.77.0.101/24"),
        "{:?}",
        lab.addrs(1)
    );
    assert!(
        !lab.has(2, VIP) && !lab.has(2, "10.77.0.101/24"),
        "{:?}",
        lab.addrs(2)
    );
    assert_eq!(
        n1.count("Entering MASTER STATE"),
        masters_before,
        "the master must not flap:\n{}",
        n1.log()
    );
    assert_eq!(
        n1.count("removing VIPs."),
        removals_before,
        "no VIP was removed:\n{}",
        n1.log()
    );
    assert_eq!(n2.count("Entering MASTER STATE"), 0, "{}", n2.log());
    // A configuration that cannot be read keeps the running one.
    std::fs::remove_file(lab.dir().join("n1.conf")).unwrap();
    n1.signal("HUP");
    n1.wait_for("Reload failed, keeping the running configuration", 5 * SEC);
    assert!(settles(|| lab.has(1, VIP) && lab.has(1, "10.77.0.101/24")));
    // So does one with errors: an out-of-range VRID would take the instance and its VIPs
    // away, a mistyped address would leave a MASTER holding one VIP fewer.
    for bad in [
        two(150).replace("virtual_router_id 51", "virtual_router_id 300"),
        two(150).replace("10.77.0.101/24", "10.77.0.1011/24"),
    ] {
        lab.file("n1.conf", &bad);
        let since = std::time::Instant::now();
        n1.signal("HUP");
        n1.try_wait_for_after(
            "Reload failed, keeping the running configuration:",
            Some(since),
            5 * SEC,
        )
        .unwrap_or_else(|| panic!("the bad reload was not refused:\n{}", n1.log()));
        assert!(settles(|| lab.has(1, VIP) && lab.has(1, "10.77.0.101/24")));
        assert_eq!(n1.count("removing VIPs."), removals_before, "{}", n1.log());
        assert_eq!(n1.count("Reload finished"), 1, "{}", n1.log());
    }
}

/// Waits (bounded) for a file the daemon writes on a signal, and returns its text.
fn wait_file(path: &std::path::Path, must_contain: &str) -> String {
    let deadline = std::time::Instant::now() + 5 * SEC;
    loop {
        let t = std::fs::read_to_string(path);
        if let Ok(t) = &t
            && t.contains(must_contain)
        {
            return t.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never contained {must_contain:?}; it reads {t:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigusr1_and_sigusr2_write_keepalived_style_data_and_stats_files() {
    let mut lab = lab(1);
    let socket = lab.dir().join("control.sock");
    // A GARP burst that takes 1.5 s after the transition: the state shown must be MASTER
    // from the log line on, not from the burst's end.
    let global = format!(
        "control_socket {}\n    vrrp_garp_master_repeat 4\n    vrrp_garp_interval 0.5",
        socket.display()
    );
    let mut n1 = lab.holdfast(1, &conf(150, "", &global));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n1.signal("USR1");
    let data = wait_file(&lab.dir().join("keepalived.data"), "State = MASTER");
    assert!(data.contains(" VRRP Instance = VI_1\n"), "{data}");
    assert!(data.contains("   Effective priority = 150\n"), "{data}");
    assert!(data.contains("   Master router = 10.77.0.1\n"), "{data}");
    n1.signal("USR2");
    let stats = wait_file(&lab.dir().join("keepalived.stats"), "VRRP Instance: VI_1");
    assert!(stats.contains("  Became master: 1\n"), "{stats}");
    // `holdfast dump` prints what SIGUSR1 writes; `holdfast stats` has SIGUSR2's layout.
    let ask = |cmd: &str| netns::cli(env!("CARGO_BIN_EXE_holdfast"), &socket, &[cmd]);
    assert_eq!(ask("dump"), data);
    let live = ask("stats");
    let heads = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split(':').next().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(heads(&live), heads(&stats), "{live}");
    assert!(live.contains("  Became master: 1\n"), "{live}");
}

fn group_conf(priority: u8, flag: Option<&std::path::Path>) -> String {
    group_conf_with(priority, flag, false)
}

/// `on_group`: the tracker sits on the sync group with weight -60 instead of on VI_2.
fn group_conf_with(priority: u8, flag: Option<&std::path::Path>, on_group: bool) -> String {
    let (script, track) = match flag {
        Some(f) => (
            format!(
                "vrrp_script chk {{\n    script \"/usr/bin/test -e {}\"\n    interval 0.2\n}}\n",
                f.display()
            ),
            "    track_script {\n        chk\n    }\n",
        ),
        None => (String::new(), ""),
    };
    let inst = |name: &str, vrid: u8, vip: &str, track: &str| {
        format!(
            "vrrp_instance {name} {{\n    interface eth0\n    virtual_router_id {vrid}\n    priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        {vip}\n    }}\n{track}}}\n"
        )
    };
    let (member_track, group_track) = if on_group && !track.is_empty() {
        ("", "    track_script {\n        chk weight -60\n    }\n")
    } else {
        (track, "")
    };
    format!(
        "global_defs {{\n    enable_script_security\n    script_user root\n}}\n{script}{}{}vrrp_sync_group G1 {{\n    group {{\n        VI_1\n        VI_2\n    }}\n{group_track}}}\n",
        inst("VI_1", 51, "10.77.0.100/24", ""),
        inst("VI_2", 52, "10.77.0.101/24", member_track)
    )
}

#[test]
fn a_sync_group_moves_all_members_when_one_faults() {
    let mut lab = lab(2);
    let flag = lab.file("healthy", "");
    let mut n1 = lab.holdfast(1, &group_conf(150, Some(&flag)));
    n1.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "(VI_2) Entering MASTER STATE",
        ],
        10 * SEC,
    );
    let mut n2 = lab.holdfast(2, &group_conf(100, None));
    n2.wait_for("(VI_2) Entering BACKUP STATE (init)", 5 * SEC);
    assert!(settles(|| lab.has(1, VIP) && lab.has(1, "10.77.0.101/24")));
    // VI_2's weight-0 tracker fails: VI_2 goes to FAULT and the group takes VI_1 with it.
    std::fs::remove_file(&flag).unwrap();
    n1.wait_for("(VI_2) Entering FAULT STATE", 5 * SEC);
    n1.wait_for("VRRP_Group(G1) Syncing instances to FAULT state", 5 * SEC);
    n1.wait_for("(VI_1) Entering FAULT STATE", 5 * SEC);
    n2.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "(VI_2) Entering MASTER STATE",
        ],
        10 * SEC,
    );
    assert!(
        settles(|| lab.has(2, VIP) && lab.has(2, "10.77.0.101/24")),
        "{:?}",
        lab.addrs(2)
    );
    assert!(
        settles(|| !lab.has(1, VIP) && !lab.has(1, "10.77.0.101/24")),
        "{:?}",
        lab.addrs(1)
    );
    // Recovery: both members back through BACKUP, then n1 (150) preempts both.
    std::fs::write(&flag, "").unwrap();
    n1.wait_for("VRRP_Script(chk) succeeded", 5 * SEC);
    n1.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "(VI_2) Entering MASTER STATE",
        ],
        10 * SEC,
    );
}

#[test]
fn a_weighted_sync_group_tracker_lowers_every_member() {
    let mut lab = lab(2);
    let flag = lab.file("healthy", "");
    let mut n1 = lab.holdfast(1, &group_conf_with(150, Some(&flag), true));
    n1.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "(VI_2) Entering MASTER STATE",
        ],
        10 * SEC,
    );
    let mut n2 = lab.holdfast(2, &group_conf(100, None));
    n2.wait_for("(VI_2) Entering BACKUP STATE (init)", 5 * SEC);
    // The group's script fails: both members drop to 90 and n2 (100) preempts both.
    std::fs::remove_file(&flag).unwrap();
    n1.wait_for_all(
        &[
            "(VI_1) Changing effective priority from 150 to 90",
            "(VI_2) Changing effective priority from 150 to 90",
        ],
        5 * SEC,
    );
    n2.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "(VI_2) Entering MASTER STATE",
        ],
        10 * SEC,
    );
    n1.wait_for_all(
        &[
            "(VI_1) Entering BACKUP STATE",
            "(VI_2) Entering BACKUP STATE",
        ],
        5 * SEC,
    );
    assert!(
        settles(|| lab.has(2, VIP) && lab.has(2, "10.77.0.101/24")),
        "{:?}",
        lab.addrs(2)
    );
}

#[test]
fn a_native_http_get_tracker_moves_the_vip_when_the_page_fails() {
    let mut lab = lab(2);
    // HAProxy as a local web page: 200 "ok" on 127.0.0.1:8080.
    let web = lab.file(
        "web.cfg",
        "defaults\n    mode http\n    timeout client 5s\n    timeout connect 1s\n    timeout server 5s\nfrontend web\n    bind 127.0.0.1:8080\n    http-request return status 200 content-type text/plain string ok\n",
    );
    let page = lab.spawn(
        1,
        "haproxy-web",
        &["haproxy", "-db", "-f", web.to_str().unwrap()],
    );
    // The page answers before holdfast starts checking it (a failure logged before it
    // listens would not be the one this test causes).
    assert!(settles(|| lab
        .output(
            1,
            &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && echo up"]
        )
        .contains("up")));
    let check = "vrrp_script chk_http {\n    HTTP_GET {\n        connect_port 8080\n        connect_timeout 0.5\n        url {\n            path /health\n            status_code 200\n            digest 444bcb3a3fcf8389296c49467f27e1d6\n        }\n    }\n    interval 0.1\n    fall 2\n    rise 2\n    weight -60\n}\n";
    let conf1 = check.to_string()
        + &conf(
            150,
            "    preempt_fast\n    track_script {\n        chk_http\n    }",
            "",
        );
    let mut n1 = lab.holdfast(1, &conf1);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf(100, "    preempt_fast", ""));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    assert_eq!(n1.count("VRRP_Script(chk_http) failed"), 0, "{}", n1.log());
    page.signal("KILL");
    n1.wait_for("VRRP_Script(chk_http) failed (connection failed", 5 * SEC);
    n1.wait_for("(VI_1) Changing effective priority from 150 to 90", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert_vip_only_on(&lab, 2, 1);
}

/// A process with a name no other test uses: a copy of `sleep` called `name`.
fn named_sleeper(lab: &netns::Lab, name: &str) -> std::process::Child {
    let bin = lab.dir().join(name);
    if !bin.exists() {
        std::fs::copy("/bin/sleep", &bin).unwrap();
    }
    std::process::Command::new(&bin).arg("600").spawn().unwrap()
}

#[test]
fn track_process_follows_process_events_without_polling() {
    let mut lab = lab(2);
    let name = format!("hfp{}", std::process::id() % 1_000_000);
    let mut proc1 = named_sleeper(&lab, &name);
    let track = format!("vrrp_track_process chk_proc {{\n    process {name}\n    weight -60\n}}\n");
    let conf1 = track.clone()
        + &conf(
            150,
            "    preempt_fast\n    track_process {\n        chk_proc\n    }",
            "",
        );
    // The proc connector answers in the initial network namespace only: point holdfast at
    // this test's own (the root) one for that socket.
    let netns = format!("/proc/{}/ns/net", std::process::id());
    let mut n1 = lab.holdfast_with(1, &conf1, &["--proc-events-netns", &netns]);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf(100, "    preempt_fast", ""));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    // The process dies: quorum lost at once (a rescan would take up to a second), 150 → 90,
    // and n2 (preempt_fast) takes over.
    proc1.kill().unwrap();
    let killed = std::time::Instant::now();
    proc1.wait().unwrap();
    let lost = n1.wait_for("Quorum lost for tracked process chk_proc", 5 * SEC);
    assert!(
        lost.saturating_duration_since(killed) < Duration::from_millis(400),
        "quorum loss seen after {:?}",
        lost.saturating_duration_since(killed)
    );
    n1.wait_for("(VI_1) Changing effective priority from 150 to 90", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    // n1 hears n2's first advert and steps down (before that, a quorum regained would keep it
    // MASTER: nothing to preempt back from).
    n1.wait_for("(VI_1) Entering BACKUP STATE", 5 * SEC);
    // It starts again: quorum gained, n1 preempts back.
    let mut proc2 = named_sleeper(&lab, &name);
    let gained = n1.wait_for("Quorum gained for tracked process chk_proc", 5 * SEC);
    if n1
        .try_wait_for_after("(VI_1) Entering MASTER STATE", Some(gained), 10 * SEC)
        .is_none()
    {
        let (l1, l2) = (n1.log(), n2.log());
        let _ = proc2.kill();
        panic!("n1 not back to MASTER\n-- n1:\n{l1}\n-- n2:\n{l2}");
    }
    proc2.kill().unwrap();
    proc2.wait().unwrap();
}

const VIP6: &str = "fd77::100/64";

fn conf6(priority: u8) -> String {
    format!(
        "vrrp_instance VI_6 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 61\n    priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP6}\n    }}\n}}\n"
    )
}

#[test]
fn ipv6_vrrpv3_elects_hands_over_and_interoperates_with_keepalived() {
    let mut lab = lab(2);
    let mut dump = lab.vrrp_dump();
    let mut n1 = lab.holdfast(1, &conf6(150));
    let mut n2 = lab.keepalived(2, &conf6(100));
    n1.wait_for("(VI_6) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_6) Entering BACKUP STATE", 10 * SEC);
    n1.wait_for(
        "Sending Unsolicited Neighbour Advert on eth0 for fd77::100",
        5 * SEC,
    );
    // Three of holdfast's VRRPv3 adverts after keepalived settled as BACKUP.
    dump.mark();
    dump.wait_count(
        "> ff02::12: VRRPv3, Advertisement, vrid 61, prio 150",
        3,
        10 * SEC,
    );
    assert!(
        lab.has(1, VIP6) && !lab.has(2, VIP6),
        "{:?} {:?}",
        lab.addrs(1),
        lab.addrs(2)
    );
    n1.signal("TERM");
    n2.wait_for("(VI_6) Entering MASTER STATE", 5 * SEC);
    assert!(n1.wait_exit(5 * SEC));
    // holdfast returns as the higher priority and preempts keepalived.
    let mut n1 = lab.holdfast(1, &conf6(150));
    n1.wait_for("(VI_6) Entering MASTER STATE", 10 * SEC);
    n2.wait_for("(VI_6) Entering BACKUP STATE", 5 * SEC);
    assert!(settles(|| lab.has(1, VIP6)));
    for log in [n1.log(), n2.log()] {
        for bad in [
            "checksum",
            "wrong version",
            "ip number count",
            "not present in",
        ] {
            assert!(!log.contains(bad), "log mentions {bad:?}:\n{log}");
        }
    }
}

#[test]
fn gratuitous_arps_and_neighbour_adverts_are_seen_on_the_bridge() {
    let mut lab = lab(2);
    // tcpdump in the switch namespace, on the bridge both nodes hang off.
    let mut arp = lab.spawn(
        0,
        "tcpdump-arp",
        &["tcpdump", "-l", "-n", "-e", "-i", "br0", "arp"],
    );
    arp.wait_for("listening on br0", 10 * SEC);
    let mut n1 = lab.holdfast(1, &conf(150, "", ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // keepalived's form (as captured from 2.2.7): a broadcast request, target MAC all ones,
    // sender and target IP both the VIP; garp_master_repeat (5) of them.
    let garp = "> ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.77.0.100 (ff:ff:ff:ff:ff:ff) tell 10.77.0.100";
    arp.wait_for(garp, 5 * SEC);
    let deadline = std::time::Instant::now() + 5 * SEC;
    while arp.count(garp) < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(arp.count(garp) >= 5, "{}", arp.log());
    let mut na = lab.spawn(
        0,
        "tcpdump-na",
        &[
            "tcpdump",
            "-l",
            "-n",
            "-i",
            "br0",
            "icmp6 and ip6[40] == 136",
        ],
    );
    na.wait_for("listening on br0", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf6(150));
    n2.wait_for("(VI_6) Entering MASTER STATE", 10 * SEC);
    na.wait_for("neighbor advertisement, tgt is fd77::100", 5 * SEC);
    assert!(na.log().contains("ff02::1"), "{}", na.log());
}

#[test]
fn a_track_file_value_moves_the_priority_without_polling() {
    let mut lab = lab(2);
    let file = lab.dir().join("weight");
    let track = format!(
        "track_file tf {{\n    file \"{}\"\n    weight -10\n    init_file 0 overwrite\n}}\n",
        file.display()
    );
    let c1 = format!(
        "{track}{}",
        conf(150, "    track_file {\n        tf\n    }", "")
    );
    let mut n1 = lab.holdfast(1, &c1);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf(100, "", ""));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    // 150 - 6 × 10 = 90 < 100: the backup preempts.
    std::fs::write(&file, "6\n").unwrap();
    n1.wait_for("(VI_1) Changing effective priority from 150 to 90", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    std::fs::write(&file, "0\n").unwrap();
    n1.wait_for("(VI_1) Changing effective priority from 90 to 150", 5 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
}

#[test]
fn notify_scripts_run_after_the_vips_are_set_with_keepalived_arguments() {
    let mut lab = lab(1);
    let seen = lab.dir().join("seen");
    let args = lab.dir().join("args");
    let extra = format!(
        "    notify_master \"/bin/sh -c 'ip -o addr show dev eth0 > {}'\"\n    notify \"/bin/sh -c 'echo \\\"$@\\\" > {}' notify\"",
        seen.display(),
        args.display()
    );
    let mut n1 = lab.holdfast(
        1,
        &conf(
            150,
            &extra,
            "    enable_script_security\n    script_user root",
        ),
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let addrs = wait_file(&seen, "10.77.0.100/24");
    assert!(
        addrs.contains("10.77.0.100/24"),
        "notify_master ran before the VIP was set: {addrs}"
    );
    // The file holds the last call's arguments: BACKUP (at start) until MASTER's call.
    let a = wait_file(&args, "MASTER");
    assert_eq!(a.trim(), "INSTANCE VI_1 MASTER 150");
}

/// One node whose `vrrp_script` (weight 0: failure means FAULT) succeeds only when run as
/// `nobody`; `global` sets script_user.
fn run_as_conf(uid: u32, global: &str) -> String {
    format!(
        "global_defs {{\n    enable_script_security\n{global}\n}}\nvrrp_script chk_uid {{\n    script \"/bin/sh -c 'test $(id -u) = {uid}'\"\n    interval 0.2\n    fall 1\n    rise 1\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n    track_script {{\n        chk_uid\n    }}\n}}\n"
    )
}

#[test]
fn scripts_run_as_script_user_and_lines_go_to_the_log_file() {
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let uid = nobody.uid.as_raw();
    let mut lab = lab(1);
    let log = lab.dir().join("ka.log");
    let g = format!("-g={}", log.display());
    let mut n1 = lab.holdfast_with(1, &run_as_conf(uid, "    script_user nobody"), &[&g]);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // -g: VRRP lines in ka_vrrp.log, with keepalived's timestamp layout.
    let vrrp_log = lab.dir().join("ka_vrrp.log");
    let text = wait_file(&vrrp_log, "(VI_1) Entering MASTER STATE");
    let line = text
        .lines()
        .find(|l| l.ends_with("(VI_1) Entering MASTER STATE"))
        .unwrap();
    assert!(
        line.split(": ").next().is_some_and(|t| t.len() == 34),
        "{line}"
    );
    n1.signal("TERM");
    assert!(n1.wait_exit(5 * SEC));
    // The same script as root fails, so MASTER above means it ran as nobody.
    let mut n1 = lab.holdfast(1, &run_as_conf(uid, "    script_user root"));
    n1.wait_for("(VI_1) Entering FAULT STATE", 10 * SEC);
}

#[test]
fn with_three_nodes_the_next_highest_priority_takes_over() {
    let mut lab = lab(3);
    let mut dump = lab.vrrp_dump();
    let mut n1 = lab.holdfast(1, &conf(150, "", ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf(120, "", ""));
    let mut n3 = lab.holdfast(3, &conf(100, "", ""));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    n3.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    n1.signal("TERM");
    // Both backups see priority 0; 120's skew (0.53 s) beats 100's (0.61 s).
    n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    n3.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    // Even if a loaded host let 100's timer fire first, the election settles on 120: two of
    // its adverts seen after n3's priority-0 line.
    dump.mark();
    dump.wait_count(
        "10.77.0.2 > 224.0.0.18: VRRPv2, Advertisement, vrid 51, prio 120",
        2,
        10 * SEC,
    );
    assert!(
        lab.has(2, VIP) && !lab.has(3, VIP),
        "{:?} {:?}",
        lab.addrs(2),
        lab.addrs(3)
    );
}

#[test]
fn a_weighted_track_interface_follows_netlink_link_events() {
    let mut lab = lab(2);
    lab.exec(
        1,
        &[
            "ip", "link", "add", "t0", "type", "veth", "peer", "name", "t1",
        ],
    );
    lab.exec(1, &["ip", "link", "set", "t0", "up"]);
    lab.exec(1, &["ip", "link", "set", "t1", "up"]);
    let mut n1 = lab.holdfast(
        1,
        &conf(
            150,
            "    track_interface {\n        t0 weight -60\n    }",
            "",
        ),
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mut n2 = lab.holdfast(2, &conf(100, "", ""));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    // The peer end going down takes t0's carrier away.
    lab.exec(1, &["ip", "link", "set", "t1", "down"]);
    n1.wait_for("Netlink reports t0 down", 5 * SEC);
    n1.wait_for("(VI_1) Changing effective priority from 150 to 90", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    lab.exec(1, &["ip", "link", "set", "t1", "up"]);
    n1.wait_for("Netlink reports t0 up", 5 * SEC);
    n2.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
}

#[test]
fn the_startup_script_runs_to_its_end_before_vrrp_and_the_shutdown_script_after_it() {
    let mut lab = lab(1);
    let (started, stopped) = (lab.dir().join("started"), lab.dir().join("stopped"));
    // The startup script takes a while: VRRP must wait for it. The shutdown script reports
    // whether the VIP was already gone when it ran.
    let global = format!(
        "    startup_script \"/bin/sh -c 'sleep 0.5; touch {}'\"\n    shutdown_script \"/bin/sh -c 'ip -br addr > {}'\"\n    shutdown_script_timeout 5",
        started.display(),
        stopped.display()
    );
    let mut n1 = lab.holdfast(1, &conf(150, "", &global));
    n1.wait_for("(VI_1) Entering BACKUP STATE (init)", 10 * SEC);
    assert!(
        started.exists(),
        "VRRP started before the startup script ended"
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n1.signal("TERM");
    n1.wait_for("Stopped", 10 * SEC);
    let addrs = std::fs::read_to_string(&stopped).expect("the shutdown script ran");
    assert!(addrs.contains("eth0"), "{addrs}");
    assert!(
        !addrs.contains("10.77.0.100"),
        "shutdown script ran before the VIP left: {addrs}"
    );
}

#[test]
fn signals_sent_while_the_startup_script_runs_are_answered_once_running() {
    let mut lab = lab(1);
    let (running, go) = (lab.dir().join("running"), lab.dir().join("go"));
    // The startup script says it runs, then waits (at most 10 s) for the test to let it end.
    let global = format!(
        "    startup_script \"/bin/sh -c 'touch {}; i=0; while [ ! -e {} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done'\"\n    startup_script_timeout 20",
        running.display(),
        go.display()
    );
    let mut n1 = lab.holdfast(1, &conf(150, "", &global));
    assert!(settles(|| running.exists()), "the startup script never ran");
    // The pid file is written and the script runs: signals must not kill the daemon now
    // (SIGUSR1's default action would).
    n1.signal("USR1");
    n1.signal("USR2");
    std::fs::write(&go, "").unwrap();
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let data = wait_file(&lab.dir().join("keepalived.data"), "VRRP Instance = VI_1");
    assert!(data.contains("VRRP Instance = VI_1"), "{data}");
    // Written when the main loop answered the early signal, well before MASTER.
    assert!(!data.contains("State = MASTER"), "{data}");
    wait_file(&lab.dir().join("keepalived.stats"), "VRRP Instance: VI_1");
    n1.signal("TERM");
    n1.wait_for("Stopped", 10 * SEC);
}

#[test]
fn promote_secondaries_is_set_while_the_instance_runs_and_put_back_after() {
    let mut lab = lab(1);
    let sysctl = |lab: &netns::Lab| {
        lab.output(
            1,
            &["cat", "/proc/sys/net/ipv4/conf/eth0/promote_secondaries"],
        )
        .trim()
        .to_string()
    };
    assert_eq!(sysctl(&lab), "0");
    let mut n1 = lab.holdfast(1, &conf(150, "    promote_secondaries", ""));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert_eq!(sysctl(&lab), "1");
    n1.signal("TERM");
    n1.wait_for("Stopped", 10 * SEC);
    assert_eq!(sysctl(&lab), "0");
}

#[test]
fn vip_options_peer_preferred_lft_and_nodad_reach_the_kernel() {
    let mut lab = lab(1);
    let conf = "vrrp_instance VI_1 {\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {\n        10.77.0.100/24 preferred_lft 0\n        10.77.0.101/32 peer 10.77.0.201\n    }\n    virtual_ipaddress_excluded {\n        fd00::100/64 nodad\n    }\n}\n";
    let mut n1 = lab.holdfast(1, conf);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let find = |lab: &netns::Lab, local: &str| -> Option<serde_json::Value> {
        let out = lab.output(1, &["ip", "-j", "addr", "show", "dev", "eth0"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v[0]["addr_info"]
            .as_array()?
            .iter()
            .find(|a| a["local"] == local)
            .cloned()
    };
    assert!(settles(|| find(&lab, "fd00::100").is_some()));
    let deprecated = find(&lab, "10.77.0.100").expect("VIP");
    assert_eq!(deprecated["deprecated"], true, "{deprecated}");
    let p2p = find(&lab, "10.77.0.101").expect("VIP");
    assert_eq!(p2p["address"], "10.77.0.201", "{p2p}");
    let v6 = find(&lab, "fd00::100").expect("VIP");
    assert_eq!(v6["nodad"], true, "{v6}");
    // They all leave when the instance stops.
    n1.signal("TERM");
    n1.wait_for("Stopped", 10 * SEC);
    assert!(find(&lab, "10.77.0.101").is_none() && find(&lab, "10.77.0.100").is_none());
}

#[test]
fn vrrp_no_swap_locks_the_daemon_in_memory() {
    let mut lab = lab(1);
    let locked_kb = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let mut plain = lab.holdfast(1, &conf(150, "", ""));
    plain.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert_eq!(locked_kb(plain.pid()), 0);
    plain.signal("TERM");
    plain.wait_for("Stopped", 10 * SEC);
    let mut locked = lab.holdfast(1, &conf(150, "", "    vrrp_no_swap"));
    locked.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(locked_kb(locked.pid()) > 0, "nothing locked");
}

#[test]
fn vrrp_priority_sets_the_nice_value_of_every_thread() {
    let mut lab = lab(1);
    // Every thread's nice value (the 17th field after the command in its stat line).
    let nices = |pid: u32| -> Vec<i32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|e| {
                    let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
                    stat.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(16)?
                        .parse()
                        .ok()
                })
                .collect()
            })
            .unwrap_or_default()
    };
    // The VRRP part takes the more favourable of the two values it is given.
    let mut n1 = lab.holdfast(
        1,
        &conf(150, "", "    vrrp_priority -5\n    checker_priority 3"),
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let seen = nices(n1.pid());
    assert!(seen.len() > 1, "{seen:?}");
    assert!(seen.iter().all(|&n| n == -5), "{seen:?}\n{}", n1.log());
    n1.signal("TERM");
    n1.wait_for("Stopped", 10 * SEC);
    let mut plain = lab.holdfast(1, &conf(150, "", ""));
    plain.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(nices(plain.pid()).iter().all(|&n| n == 0));
}

/// Each thread of process `pid`: its name, its scheduling policy (the 41st field of its stat
/// line) and its real-time priority (the 40th).
fn policies(pid: u32) -> Vec<(String, u32, u32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| {
                let dir = e.ok()?.path();
                let name = std::fs::read_to_string(dir.join("comm")).ok()?;
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                // The fields after the command start at the 3rd.
                Some((
                    name.trim().to_string(),
                    f.get(41 - 3)?.parse().ok()?,
                    f.get(40 - 3)?.parse().ok()?,
                ))
            })
            .collect()
        })
        .unwrap_or_default()
}

#[test]
fn vrrp_rt_priority_runs_the_vrrp_threads_round_robin_and_nothing_they_start_and_without_it_they_ask_a_short_slice()
 {
    const SCHED_RR: u32 = 2;
    let mut lab = lab(1);
    let out = lab.dir().join("notify-policy");
    let script = lab.dir().join("policy.sh");
    // What a notify script runs under: its own stat line's policy.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -- $(sed 's/.*) //' /proc/$$/stat)\necho \"${{39}}\" > {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut n1 = lab.holdfast(
        1,
        &conf(
            150,
            &format!("    notify_master {}", script.display()),
            "    vrrp_rt_priority 20\n    vrrp_rlimit_rttime 200000\n    script_user root",
        ),
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let seen = policies(n1.pid());
    let rr: Vec<&String> = seen
        .iter()
        .filter(|(_, p, prio)| *p == SCHED_RR && *prio == 20)
        .map(|(n, _, _)| n)
        .collect();
    // The VRRP thread (the process's first) and the VRRP packet reader; not the log writer.
    assert!(rr.iter().any(|n| n.starts_with("vrrp-rx")), "{seen:?}");
    assert!(rr.len() >= 2, "{seen:?}");
    assert!(seen.iter().any(|(_, p, _)| *p == 0), "{seen:?}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", n1.pid())).unwrap();
    assert!(
        limits.lines().any(|l| l.starts_with("Max realtime timeout")
            && l.contains("100000")
            && l.contains("200000")),
        "{limits}"
    );
    assert!(settles(
        || std::fs::read_to_string(&out).is_ok_and(|p| p.trim() == "0")
    ));
    n1.signal("TERM");
    n1.wait_for("Stopped", 10 * SEC);
    // Without the keyword nothing runs real-time.
    let mut plain = lab.holdfast(1, &conf(150, "", ""));
    plain.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let seen = policies(plain.pid());
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, p, _)| *p == 0),
        "{seen:?}"
    );
    // Under the normal policy, the VRRP thread and its packet reader ask for a short slice
    // (honoured from Linux 6.12; threads they start inherit it).
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12) {
        let slices = slices(plain.pid());
        let short: Vec<&str> = slices
            .iter()
            .filter(|(_, us)| *us == 100)
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(short.contains(&"holdfast"), "{slices:?}");
        assert!(short.iter().any(|n| n.starts_with("vrrp-rx")), "{slices:?}");
    }
}

/// Each thread of process `pid`: its name and scheduler slice in µs (`se.slice`).
fn slices(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let name = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        let sched = std::fs::read_to_string(t.join("sched")).unwrap_or_default();
        let slice = sched.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "se.slice").then(|| v.trim().parse::<u64>().ok())?
        });
        if let Some(ns) = slice {
            out.push((name.trim().to_owned(), ns / 1000));
        }
    }
    out
}

/// Eight GARPs a second apart: a 7 s burst, far longer than the 3.6 s a BACKUP waits for an
/// advert (advert_int 1).
const SLOW_BURST: &str =
    "    vrrp_garp_interval 1\n    vrrp_garp_master_repeat 8\n    vrrp_garp_master_delay 0";

const GARP_LINE: &str = "Sending gratuitous ARP on eth0 for 10.77.0.100";

/// Waits (bounded) until `node` has logged `want` GARPs.
fn wait_garps(node: &mut netns::Proc, want: usize, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while node.count(GARP_LINE) < want {
        assert!(std::time::Instant::now() < deadline, "{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_spaced_garp_burst_longer_than_the_master_down_interval_does_not_silence_the_master() {
    let mut lab = lab(2);
    let mut n1 = lab.holdfast(1, &conf(150, "", SLOW_BURST));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // n2 starts while n1's burst runs: it hears n1's adverts, or takes over 3.6 s later.
    let mut n2 = lab.holdfast(2, &conf(100, "", SLOW_BURST));
    n2.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    wait_garps(&mut n1, 8, 15 * SEC);
    // The burst is over and n1 advertised all along: n2 stayed BACKUP.
    let log2 = n2.log();
    assert!(
        !log2.contains("(VI_1) Entering MASTER STATE"),
        "n2 took over during n1's burst:\n{log2}\n-- n1:\n{}",
        n1.log()
    );
}

#[test]
fn a_master_that_steps_down_stops_its_garp_burst() {
    let mut lab = lab(2);
    let mut n1 = lab.holdfast(1, &conf(150, "", SLOW_BURST));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // A higher priority takes over within n1's 7 s burst.
    let mut n2 = lab.holdfast(2, &conf(200, "", SLOW_BURST));
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n1.wait_for("(VI_1) Entering BACKUP STATE", 5 * SEC);
    // Two seconds of n2's own burst later, n1 has announced nothing since it stepped down
    // (the lines after the step-down line the wait above matched).
    wait_garps(&mut n2, 3, 10 * SEC);
    let after = n1.after_cursor();
    assert!(
        !after.iter().any(|l| l.contains(GARP_LINE)),
        "n1 announced after stepping down:\n{}",
        n1.log()
    );
}

#[test]
fn vrrp_garp_interval_spaces_the_gratuitous_arps_of_a_burst() {
    let mut lab = lab(1);
    let mut arp = lab.spawn(
        0,
        "tcpdump-arp",
        &["tcpdump", "-l", "-n", "-tt", "-e", "-i", "br0", "arp"],
    );
    arp.wait_for("listening on br0", 10 * SEC);
    let global =
        "    vrrp_garp_interval 0.2\n    vrrp_garp_master_repeat 3\n    vrrp_garp_master_delay 0";
    let mut n1 = lab.holdfast(1, &conf(150, "", global));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let garp = "Request who-has 10.77.0.100 (ff:ff:ff:ff:ff:ff) tell 10.77.0.100";
    let deadline = std::time::Instant::now() + 5 * SEC;
    while arp.count(garp) < 3 {
        assert!(std::time::Instant::now() < deadline, "{}", arp.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let times: Vec<f64> = arp
        .log()
        .lines()
        .filter(|l| l.contains(garp))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(times.len() >= 3, "{times:?}");
    for w in times.windows(2).take(2) {
        let gap = w[1] - w[0];
        assert!((0.18..1.0).contains(&gap), "gap {gap:.3} s in {times:?}");
    }
}

/// A VIP removed from a MASTER by someone else (an operator's `ip addr del`, another daemon
/// cleaning "leftovers") is put back at once, and the MASTER stays MASTER; the BACKUP is
/// not disturbed.
#[test]
fn a_vip_removed_from_outside_a_master_is_restored() {
    let mut lab = lab(2);
    let (mut n1, mut n2) = pair(&mut lab);
    assert!(lab.wait_has(1, VIP, true, 5 * SEC));
    for round in 0..2 {
        n1.mark();
        lab.exec(1, &["ip", "addr", "del", VIP, "dev", "eth0"]);
        n1.wait_for(
            "(VI_1) VIP 10.77.0.100 was removed from eth0 by someone else - restoring it",
            5 * SEC,
        );
        assert!(
            lab.wait_has(1, VIP, true, 5 * SEC),
            "round {round}: not restored: {:?}",
            lab.addrs(1)
        );
    }
    assert_eq!(n1.count("Entering BACKUP STATE"), 1, "{}", n1.log());
    assert_eq!(n2.count("Entering MASTER STATE"), 0, "{}", n2.log());
    assert!(!lab.has(2, VIP));
}

/// The same for a VIP the configuration puts on another interface (`dev`): the MASTER
/// watches that interface too, and announces the VIP there.
#[test]
fn a_vip_removed_from_another_interface_is_restored() {
    let mut lab = lab(1);
    // A veth pair inside the node (no dummy module here); dum0 carries the second VIP.
    lab.exec(
        1,
        &[
            "ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1",
        ],
    );
    lab.exec(1, &["ip", "link", "set", "dum0", "up"]);
    lab.exec(1, &["ip", "link", "set", "dum1", "up"]);
    // What reaches dum0's peer: the VIP set on dum0 is announced there, as keepalived does.
    let mut arp = lab.spawn(
        1,
        "tcpdump-dum1",
        &["tcpdump", "-l", "-n", "-i", "dum1", "arp"],
    );
    arp.wait_for("listening on dum1", 10 * SEC);
    let conf = "vrrp_instance VI_1 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {\n        10.77.0.100/24\n        10.88.0.1/24 dev dum0\n    }\n}\n";
    let mut n1 = lab.holdfast(1, conf);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let on_dum0 = |lab: &netns::Lab| {
        lab.output(1, &["ip", "-o", "addr", "show", "dev", "dum0"])
            .contains("10.88.0.1/24")
    };
    assert!(settles(|| on_dum0(&lab)));
    arp.wait_for("tell 10.88.0.1,", 5 * SEC);
    for round in 0..2 {
        n1.mark();
        arp.mark();
        lab.exec(1, &["ip", "addr", "del", "10.88.0.1/24", "dev", "dum0"]);
        n1.wait_for(
            "(VI_1) VIP 10.88.0.1 was removed from dum0 by someone else - restoring it",
            5 * SEC,
        );
        assert!(settles(|| on_dum0(&lab)), "round {round}: not restored");
        // And announced again where it lives.
        arp.wait_for("tell 10.88.0.1,", 5 * SEC);
    }
    assert!(lab.has(1, VIP));
}

/// Every notify script — notify_master, notify_backup, notify_fault, notify_stop and the
/// generic `notify` with keepalived's four arguments, for instances and for their sync group —
/// through one life: MASTER, FAULT (the group's tracker fails), back to MASTER, stop. The same
/// configuration and the same expectations run against keepalived 2.2.7 first, so the
/// expectations are keepalived's, and then against holdfast.
#[test]
fn every_notify_script_runs_with_keepalived_s_words_as_keepalived_runs_it() {
    for daemon in ["keepalived", "holdfast"] {
        let mut lab = lab(1);
        let out = lab.dir().join("notified");
        let flag = lab.file("healthy", "");
        let o = out.display();
        let each = |kind: &str| format!("    {kind} \"/bin/sh -c 'echo {kind} >> {o}'\"\n");
        let all = format!(
            "{}{}{}{}    notify \"/bin/sh -c 'echo \\\"$*\\\" >> {o}' notify\"\n",
            each("notify_master"),
            each("notify_backup"),
            each("notify_fault"),
            each("notify_stop")
        );
        let inst = |name: &str, vrid: u8, vip: &str| {
            format!(
                "vrrp_instance {name} {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {vrid}\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        {vip}\n    }}\n{all}}}\n"
            )
        };
        let conf = format!(
            "global_defs {{\n    enable_script_security\n    script_user root\n}}\nvrrp_script chk {{\n    script \"/usr/bin/test -e {}\"\n    interval 0.2\n    fall 1\n    rise 1\n}}\n{}{}vrrp_sync_group G1 {{\n    group {{\n        VI_1\n        VI_2\n    }}\n    track_script {{\n        chk\n    }}\n{all}}}\n",
            flag.display(),
            inst("VI_1", 51, "10.77.0.100/24"),
            inst("VI_2", 52, "10.77.0.101/24"),
        );
        let mut node = match daemon {
            "keepalived" => lab.keepalived(1, &conf),
            _ => lab.holdfast(1, &conf),
        };
        // Lines appended since `from`, as a sorted multiset (the scripts run side by side).
        let lines = |from: usize| -> Vec<String> {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let mut v: Vec<String> = text.lines().skip(from).map(str::to_string).collect();
            v.sort();
            v
        };
        let phase = |from: usize, want: &[String], what: &str| -> usize {
            let mut want = want.to_vec();
            want.sort();
            let deadline = std::time::Instant::now() + 15 * SEC;
            loop {
                let got = lines(from);
                if got.len() >= want.len() {
                    assert_eq!(got, want, "{daemon}, {what}");
                    return from + got.len();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{daemon}, {what}: only {got:?} of {want:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // The lines of one transition of both instances and their group: the specific
        // script three times, the generic one with keepalived's four arguments.
        let entered = |word: &str| -> Vec<String> {
            let kind = format!("notify_{}", word.to_lowercase());
            let mut v = vec![kind.clone(), kind.clone(), kind];
            v.push(format!("INSTANCE VI_1 {word} 150"));
            v.push(format!("INSTANCE VI_2 {word} 150"));
            v.push(format!("GROUP G1 {word} 0"));
            v
        };
        // keepalived runs the BACKUP scripts for the initial BACKUP state too.
        let mut at = phase(0, &[entered("BACKUP"), entered("MASTER")].concat(), "start");
        std::fs::remove_file(&flag).unwrap();
        at = phase(at, &entered("FAULT"), "tracker failed");
        std::fs::write(&flag, "").unwrap();
        at = phase(
            at,
            &[entered("BACKUP"), entered("MASTER")].concat(),
            "tracker back",
        );
        node.signal("TERM");
        assert!(node.wait_exit(10 * SEC), "{daemon} did not stop");
        phase(at, &entered("STOP"), "stop");
    }
}

/// SIGINT stops the daemon as SIGTERM does (priority 0, VIPs removed), and a VIP a crashed
/// daemon left on the interface is removed when the next one starts and is not MASTER.
#[test]
fn sigint_hands_over_and_a_leftover_vip_is_removed_at_start() {
    let mut lab = lab(2);
    let (mut n1, mut n2) = pair(&mut lab);
    assert!(lab.wait_has(1, VIP, true, 5 * SEC));
    n1.signal("INT");
    n2.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    n2.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(n1.wait_exit(10 * SEC), "SIGINT did not stop n1");
    assert!(lab.wait_has(1, VIP, false, 5 * SEC), "{:?}", lab.addrs(1));
    // What a crashed daemon leaves behind: the VIP on n1 while n2 is MASTER.
    lab.exec(1, &["ip", "addr", "add", VIP, "dev", "eth0"]);
    assert!(lab.has(1, VIP));
    let mut n1 = lab.holdfast(1, &conf(50, "", ""));
    n1.wait_for("(VI_1) Entering BACKUP STATE (init)", 5 * SEC);
    assert!(
        lab.wait_has(1, VIP, false, 5 * SEC),
        "the leftover VIP stayed: {:?}",
        lab.addrs(1)
    );
    assert!(lab.has(2, VIP));
}

/// Installed or linked under the name `keepalived`, the binary takes keepalived's command
/// line: `-t` checks (with keepalived's exit codes), anything else runs the daemon.
#[test]
fn invoked_as_keepalived_the_binary_takes_keepalived_s_command_line() {
    let mut lab = lab(1);
    let ka = lab.dir().join("keepalived");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_holdfast"), &ka).unwrap();
    let bad = lab.file(
        "bad.conf",
        "vrrp_instance VI_1 {\n    virtual_router_id 300\n}\n",
    );
    let out = std::process::Command::new(&ka)
        .args(["-t", "-l", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = lab.file("good.conf", &conf(150, "", ""));
    let pid = lab.dir().join("ka-named.pid");
    let mut n1 = lab.spawn(
        1,
        "keepalived-named",
        &[
            ka.to_str().unwrap(),
            "-n",
            "-l",
            "-D",
            "-f",
            good.to_str().unwrap(),
            "-p",
            pid.to_str().unwrap(),
        ],
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(lab.wait_has(1, VIP, true, 5 * SEC));
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        n1.pid().to_string()
    );
    n1.signal("TERM");
    assert!(n1.wait_exit(10 * SEC));
    assert!(lab.wait_has(1, VIP, false, 5 * SEC));
}

/// `vrrp_notify_fifo_script`: started once with the FIFO's path, it reads the FIFO's lines
/// as keepalived runs it — the same script against keepalived 2.2.7 first, then holdfast: the
/// same lines reach it, and the daemon ends it at stop (keepalived terminates it).
#[test]
fn a_notify_fifo_script_reads_the_fifo_as_keepalived_runs_it() {
    for daemon in ["keepalived", "holdfast"] {
        let mut lab = lab(1);
        let dir = lab.dir().to_path_buf();
        let out = dir.join("read");
        let script = lab.file(
            "reader.sh",
            &format!(
                "#!/bin/sh\nwhile read -r line; do echo \"$line\" >> {}; done < \"$1\"\necho done >> {}\n",
                out.display(),
                out.display()
            ),
        );
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let conf = format!(
            "global_defs {{\n    vrrp_notify_fifo {}\n    vrrp_notify_fifo_script {}\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n}}\n",
            dir.join("vrrp.fifo").display(),
            script.display()
        );
        let mut node = match daemon {
            "keepalived" => lab.keepalived(1, &conf),
            _ => lab.holdfast(1, &conf),
        };
        node.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
        let read = |want: &str| {
            let deadline = std::time::Instant::now() + 5 * SEC;
            loop {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                if text.lines().any(|l| l == want) || std::time::Instant::now() > deadline {
                    return text;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let text = read("INSTANCE \"VI_1\" MASTER 150");
        assert!(
            text.lines().any(|l| l == "INSTANCE \"VI_1\" BACKUP 150")
                && text.lines().any(|l| l == "INSTANCE \"VI_1\" MASTER 150"),
            "{daemon}: the script read {text:?}"
        );
        let readers = |lab: &netns::Lab| {
            lab.pids(1)
                .into_iter()
                .filter(|p| {
                    std::fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("reader.sh"))
                })
                .count()
        };
        assert_eq!(readers(&lab), 1, "{daemon}: one reader while running");
        node.signal("TERM");
        assert!(node.wait_exit(10 * SEC), "{daemon} did not stop");
        // Ended with the daemon, not left reading.
        let deadline = std::time::Instant::now() + 5 * SEC;
        while readers(&lab) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(readers(&lab), 0, "{daemon}: the reader outlived the daemon");
    }
}

/// `net_namespace NAME` (OpenStack octavia runs keepalived so): holdfast, started in another
/// namespace, enters the named one before anything looks at interfaces — check-config checks
/// that namespace's interfaces, the instance runs there and its VIP is set there — and its log
/// identity carries the namespace's name, as keepalived's does.
#[test]
fn net_namespace_runs_the_daemon_in_the_named_namespace() {
    let mut lab = lab(2);
    // n2 has no interface called `inner0`: only n1 does, so the configuration can only be
    // valid from inside n1.
    lab.exec(
        1,
        &[
            "ip", "link", "add", "inner0", "type", "veth", "peer", "name", "inner1",
        ],
    );
    lab.exec(1, &["ip", "link", "set", "inner0", "up"]);
    lab.exec(1, &["ip", "link", "set", "inner1", "up"]);
    lab.exec(1, &["ip", "addr", "add", "10.99.0.1/24", "dev", "inner0"]);
    let ns = lab.ns(1);
    let conf = format!(
        "net_namespace {ns}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface inner0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        10.99.0.100/24\n    }}\n}}\n"
    );
    let path = lab.file("ns.conf", &conf);
    let check = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(2)])
        .arg(env!("CARGO_BIN_EXE_holdfast"))
        .args(["check-config", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check-config from n2: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut d = lab.holdfast(2, &conf);
    d.wait_for(&format!("Keepalived_vrrp_{ns}["), 10 * SEC);
    d.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let on_inner = |n| {
        lab.output(n, &["ip", "-o", "addr", "show"])
            .contains("10.99.0.100/24")
    };
    assert!(
        settles(|| on_inner(1)),
        "the VIP is not in the named namespace"
    );
    assert!(!on_inner(2));
    d.signal("TERM");
    assert!(d.wait_exit(10 * SEC));
    assert!(settles(|| !on_inner(1)), "the VIP stayed after the stop");
}

/// `auth_type AH` between keepalived 2.2.7 and holdfast: each accepts the other's adverts in
/// either role (the ICV, the SPI and the sequence numbers, carried on from the other's when a
/// node takes over), and refuses them under another password.
#[test]
fn keepalived_and_holdfast_interoperate_with_ipsec_ah_both_ways() {
    let mut lab = lab(2);
    let c = |p: u8, pass: &str| {
        conf(p, "", "")
            .replace("auth_type PASS", "auth_type AH")
            .replace("auth_pass 1234", &format!("auth_pass {pass}"))
    };
    let mut dump = lab.spawn(
        0,
        "tcpdump-ah",
        &["tcpdump", "-l", "-n", "-v", "-i", "br0", "ip proto 51"],
    );
    dump.wait_for("listening on br0", 10 * SEC);
    // keepalived MASTER, holdfast BACKUP.
    let mut ka = lab.keepalived(1, &c(150, "secret"));
    let mut hf = lab.holdfast(2, &c(100, "secret"));
    ka.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    hf.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
    dump.mark();
    dump.wait_count(
        "10.77.0.1 > 224.0.0.18: AH(length=4(24-bytes),spi=0x0a4d0001",
        3,
        10 * SEC,
    );
    hf.mark();
    ka.signal("TERM");
    hf.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    hf.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(ka.wait_exit(10 * SEC));
    assert!(settles(|| lab.has(2, VIP)));
    // keepalived back as BACKUP: it takes holdfast's adverts, and takes over when holdfast
    // stops.
    let mut ka = lab.keepalived(1, &c(50, "secret"));
    ka.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
    dump.mark();
    dump.wait_count(
        "10.77.0.2 > 224.0.0.18: AH(length=4(24-bytes),spi=0x0a4d0002",
        3,
        10 * SEC,
    );
    assert!(
        ka.try_wait_for("(VI_1) Entering MASTER STATE", Duration::ZERO)
            .is_none(),
        "{}",
        ka.log()
    );
    hf.signal("TERM");
    ka.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    ka.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(hf.wait_exit(10 * SEC));
    for p in [&mut ka, &mut hf] {
        let log = p.log();
        assert!(!log.contains("IPSEC"), "{log}");
    }
    // Another password: holdfast refuses keepalived's adverts, as keepalived refuses its.
    let mut hf = lab.holdfast(2, &c(100, "other"));
    hf.wait_for(
        "(VI_1) IPSEC-AH : invalid IPSEC HMAC-MD5 value. Due to fields mutation or bad password !",
        10 * SEC,
    );
    ka.wait_for(
        "(VI_1) IPSEC-AH : invalid IPSEC HMAC-MD5 value. Due to fields mutation or bad password !",
        10 * SEC,
    );
}
