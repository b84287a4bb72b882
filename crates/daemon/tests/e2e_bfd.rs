//! End to end, as root, in namespaces the test creates: `bfd_instance` sessions (RFC 5880/5881)
//! between holdfast and Debian's keepalived 2.2.7 and between two holdfast nodes, and
//! `track_bfd` moving a VRRP instance's priority with them.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::time::Duration;

use holdfast_lab::netns::{Lab, settles};

const SEC: Duration = Duration::from_secs(1);

fn lab(n: usize) -> Lab {
    Lab::new(n).with_bin(env!("CARGO_BIN_EXE_holdfast").into())
}

/// A BFD session to `neighbor` and, with `track`, a VRRP instance of `priority` tracking it
/// with weight 60.
fn conf(priority: u8, neighbor: &str, track: bool) -> String {
    let t = if track {
        "    track_bfd {\n        B1 weight 60\n    }\n"
    } else {
        ""
    };
    format!(
        "bfd_instance B1 {{\n    neighbor_ip {neighbor}\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n{t}}}\n"
    )
}

/// Drops BFD control packets in and out of node `n` (`cut`), or lets them through again.
fn cut_bfd(lab: &Lab, n: usize, cut: bool) {
    if cut {
        let rules = "table inet bfdcut {\n chain in { type filter hook input priority 0; udp dport 3784 drop; }\n chain out { type filter hook output priority 0; udp dport 3784 drop; }\n}\n";
        let path = lab.file("bfdcut.nft", rules);
        lab.exec(n, &["nft", "-f", path.to_str().unwrap()]);
    } else {
        lab.exec(n, &["nft", "delete", "table", "inet", "bfdcut"]);
    }
}

#[test]
fn a_bfd_session_with_keepalived_comes_up_and_track_bfd_moves_the_vip_when_it_fails() {
    let mut lab = lab(2);
    // keepalived at 150 without tracking; holdfast at 100 + 60 while its session is up.
    let mut ka = lab.keepalived(1, &conf(150, "10.77.0.2", false));
    let mut hf = lab.holdfast(2, &conf(100, "10.77.0.1", true));
    ka.wait_for("(B1) Entering Up state", 10 * SEC);
    hf.wait_for_all(
        &[
            "(B1) Entering Up state",
            "VRRP_Instance(VI_1) Tracked BFD instance B1 is UP",
        ],
        10 * SEC,
    );
    hf.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(settles(|| lab.has(2, "10.77.0.100/24")));
    // The fast rates were agreed: 5 × 10 ms.
    assert!(hf.count("Detection time is 50000 us") >= 1, "{}", hf.log());
    // Cut: both sessions expire; holdfast falls to 100 and keepalived takes over.
    ka.mark();
    hf.mark();
    cut_bfd(&lab, 2, true);
    hf.wait_for_all(
        &[
            "(B1) Entering Down state (Local diagnostic - Control Detection Time Expired",
            "VRRP_Instance(VI_1) Tracked BFD instance B1 is DOWN",
            "(VI_1) Changing effective priority from 160 to 100",
        ],
        5 * SEC,
    );
    ka.wait_for_all(
        &[
            "(B1) Entering Down state (Local diagnostic - Control Detection Time Expired",
            "(VI_1) Entering MASTER STATE",
        ],
        10 * SEC,
    );
    assert!(settles(
        || lab.has(1, "10.77.0.100/24") && !lab.has(2, "10.77.0.100/24")
    ));
    // Restored: up again, and holdfast at 160 takes the VIP back.
    ka.mark();
    hf.mark();
    cut_bfd(&lab, 2, false);
    hf.wait_for_all(
        &[
            "(B1) Entering Up state",
            "(VI_1) Changing effective priority from 100 to 160",
            "(VI_1) Entering MASTER STATE",
        ],
        15 * SEC,
    );
    ka.wait_for("(B1) Entering Up state", 5 * SEC);
    assert!(settles(|| lab.has(2, "10.77.0.100/24")));
}

#[test]
fn two_holdfast_nodes_keep_a_bfd_session_and_see_it_fail() {
    let mut lab = lab(2);
    let mut a = lab.holdfast(1, &conf(150, "10.77.0.2", true));
    let mut b = lab.holdfast(2, &conf(100, "10.77.0.1", true));
    for n in [&mut a, &mut b] {
        n.wait_for_all(
            &[
                "(B1) Entering Up state",
                "VRRP_Instance(VI_1) Tracked BFD instance B1 is UP",
            ],
            10 * SEC,
        );
    }
    a.mark();
    b.mark();
    cut_bfd(&lab, 1, true);
    for n in [&mut a, &mut b] {
        n.wait_for_all(
            &[
                "(B1) Expired after ",
                "VRRP_Instance(VI_1) Tracked BFD instance B1 is DOWN",
            ],
            5 * SEC,
        );
    }
}

#[test]
fn a_reload_keeps_an_unchanged_bfd_session_up_and_restarts_a_changed_one() {
    let mut lab = lab(2);
    let mut a = lab.holdfast(1, &conf(150, "10.77.0.2", true));
    let mut b = lab.holdfast(2, &conf(100, "10.77.0.1", true));
    for n in [&mut a, &mut b] {
        n.wait_for(
            "VRRP_Instance(VI_1) Tracked BFD instance B1 is UP",
            10 * SEC,
        );
    }
    // The same configuration: the session goes on; for two seconds after the reload (some
    // hundreds of packets each way at 10 ms) neither side sees it go down.
    a.mark();
    b.mark();
    a.signal("HUP");
    a.wait_for("Reload finished", 10 * SEC);
    for n in [&mut a, &mut b] {
        assert!(
            n.try_wait_for("B1 is DOWN", 2 * SEC).is_none(),
            "{}",
            n.log()
        );
    }
    // Another multiplier: the session starts again — the neighbour sees the old one go (its
    // packets stop), then both come up again with the new multiplier.
    lab.file(
        "n1.conf",
        &conf(150, "10.77.0.2", true).replace(
            "neighbor_ip 10.77.0.2\n",
            "neighbor_ip 10.77.0.2\n    multiplier 4\n",
        ),
    );
    b.mark();
    a.signal("HUP");
    b.wait_for_all(
        &["(B1) Entering Down state", "(B1) Entering Up state"],
        10 * SEC,
    );
    b.wait_for("Detection time is 40000 us", 5 * SEC);
}
