//! End to end, as root, in namespaces the test creates: `use_vmac` — the VIP and the adverts
//! on a macvlan carrying the virtual router's MAC, between holdfast and Debian's keepalived
//! 2.2.7 in both roles, with the kernel settings made and put back.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::time::Duration;

use holdfast_lab::netns::{Lab, conf, settles};

const SEC: Duration = Duration::from_secs(1);
/// RFC 5798's virtual router MAC for VRID 51.
const VMAC: &str = "00:00:5e:00:01:33";
const VIP: &str = "10.77.0.100/24";

fn lab(n: usize) -> Lab {
    Lab::new(n).with_bin(env!("CARGO_BIN_EXE_holdfast").into())
}

fn vmac_conf(priority: u8) -> String {
    conf(priority, "    use_vmac", "")
}

/// `ip -d link show DEV` on node `n` (empty when there is no such interface).
fn link(lab: &Lab, n: usize, dev: &str) -> String {
    lab.output(n, &["ip", "-o", "-d", "link", "show", "dev", dev])
}

/// The addresses on `dev` of node `n`.
fn addrs_on(lab: &Lab, n: usize, dev: &str) -> String {
    lab.output(n, &["ip", "-o", "addr", "show", "dev", dev])
}

fn sysctl(lab: &Lab, n: usize, key: &str) -> String {
    lab.output(n, &["sysctl", "-n", key]).trim().to_owned()
}

#[test]
fn use_vmac_moves_the_virtual_mac_between_keepalived_and_holdfast_in_both_roles() {
    let mut lab = lab(3);
    // keepalived clears a non-zero all.rp_filter for IPv4 macvlans and puts it back.
    lab.exec(2, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]);
    let hf_mac = lab
        .output(2, &["cat", "/sys/class/net/eth0/address"])
        .trim()
        .to_owned();
    let mut dump = lab.spawn(
        0,
        "tcpdump-l2",
        &[
            "tcpdump",
            "-l",
            "-n",
            "-e",
            "-i",
            "br0",
            "vrrp or arp or igmp",
        ],
    );
    dump.wait_for("listening on br0", 10 * SEC);

    // keepalived MASTER, holdfast BACKUP: holdfast's macvlan exists without the VIP.
    let mut ka = lab.keepalived(1, &vmac_conf(150));
    let mut hf = lab.holdfast(2, &vmac_conf(100));
    ka.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    hf.wait_for_all(
        &[
            "use_vmac or no_accept/strict specified, but no firewall configured - using nftables",
            "(VI_1): Success creating VMAC interface vrrp.51",
            "NOTICE: setting sysctl net.ipv4.conf.all.rp_filter from 2 to 0",
            "(VI_1) Entering BACKUP STATE",
        ],
        10 * SEC,
    );
    let l = link(&lab, 2, "vrrp.51");
    assert!(
        l.contains("macvlan mode private") && l.contains(&format!("link/ether {VMAC}")),
        "{l}"
    );
    assert!(!addrs_on(&lab, 2, "vrrp.51").contains("10.77.0.100"));
    for (key, want) in [
        ("net.ipv4.conf.vrrp/51.arp_ignore", "1"),
        ("net.ipv4.conf.vrrp/51.accept_local", "1"),
        ("net.ipv4.conf.vrrp/51.rp_filter", "0"),
        ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ("net.ipv4.conf.eth0.arp_filter", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv6.conf.vrrp/51.disable_ipv6", "1"),
    ] {
        assert_eq!(sysctl(&lab, 2, key), want, "{key}");
    }
    // keepalived's adverts come from the virtual MAC; holdfast's IGMP report for the VRRP
    // group left through eth0, not from the virtual MAC.
    dump.wait_line(
        &[
            &format!("{VMAC} > 01:00:5e:00:00:12"),
            "10.77.0.1 > 224.0.0.18",
        ],
        5 * SEC,
    );
    dump.drain();
    let igmp: Vec<&String> = dump
        .lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| l.contains("igmp"))
        .collect();
    assert!(
        igmp.iter().any(|l| l.contains(&format!("{hf_mac} >"))),
        "no IGMP report from holdfast's eth0: {igmp:?}"
    );
    assert!(
        !igmp.iter().any(|l| l.contains(&format!("{VMAC} >"))),
        "an IGMP report from the virtual MAC: {igmp:?}"
    );

    // keepalived stops: holdfast takes over on its macvlan, announces the VIP from the virtual
    // MAC, and the client reaches the VIP there.
    dump.mark();
    hf.mark();
    ka.signal("TERM");
    hf.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(ka.wait_exit(10 * SEC));
    assert!(
        settles(|| addrs_on(&lab, 2, "vrrp.51").contains("10.77.0.100/24")),
        "{}",
        addrs_on(&lab, 2, "vrrp.51")
    );
    assert!(!lab.has(2, VIP), "the VIP is on eth0: {:?}", lab.addrs(2));
    dump.wait_line(
        &[
            &format!("{VMAC} > ff:ff:ff:ff:ff:ff"),
            "Request who-has 10.77.0.100 (ff:ff:ff:ff:ff:ff) tell 10.77.0.100",
        ],
        5 * SEC,
    );
    dump.wait_line(
        &[
            &format!("{VMAC} > 01:00:5e:00:00:12"),
            "10.77.0.2 > 224.0.0.18",
        ],
        5 * SEC,
    );
    lab.exec(3, &["ip", "neigh", "flush", "all"]);
    let reached = lab.output(
        3,
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.77.0.100/9 || echo refused",
        ],
    );
    assert!(reached.contains("refused"), "{reached}");
    dump.wait_line(&["Reply 10.77.0.100 is-at", VMAC], 5 * SEC);

    // keepalived comes back as BACKUP and hears holdfast through its own macvlan; holdfast
    // stops and keepalived takes over.
    let mut ka = lab.keepalived(1, &vmac_conf(50));
    ka.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
    dump.mark();
    dump.expect_count(&format!("{VMAC} > 01:00:5e:00:00:12"), 3, 5 * SEC)
        .unwrap();
    assert!(
        ka.try_wait_for("(VI_1) Entering MASTER STATE", Duration::ZERO)
            .is_none()
    );
    hf.mark();
    hf.signal("TERM");
    ka.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    ka.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(hf.wait_exit(10 * SEC));
    hf.wait_for_all(
        &[
            "NOTICE: resetting sysctl net.ipv4.conf.all.rp_filter to 2",
            "(VI_1) Success removing VMAC interface vrrp.51",
        ],
        SEC,
    );
    // Everything put back.
    assert_eq!(link(&lab, 2, "vrrp.51"), "");
    for (key, want) in [
        ("net.ipv4.conf.eth0.arp_ignore", "0"),
        ("net.ipv4.conf.eth0.arp_filter", "0"),
        ("net.ipv4.conf.all.rp_filter", "2"),
    ] {
        assert_eq!(sysctl(&lab, 2, key), want, "{key}");
    }
    let tables = lab.output(2, &["nft", "list", "tables"]);
    assert!(!tables.contains("keepalived"), "{tables}");
    assert!(settles(
        || addrs_on(&lab, 1, "vrrp.51").contains("10.77.0.100/24")
    ));
}

/// An IPv6 instance with `use_vmac` (VRRPv3).
fn vmac_conf6(priority: u8) -> String {
    format!(
        "vrrp_instance VI_6 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int 1\n    version 3\n    use_vmac\n    virtual_ipaddress {{\n        fd00::100/64\n    }}\n}}\n"
    )
}

#[test]
fn an_ipv6_holdfast_master_on_its_vmac_is_heard_by_keepalived_and_reached_at_the_virtual_mac() {
    const VMAC6: &str = "00:00:5e:00:02:33";
    let mut lab = lab(3);
    lab.exec(
        3,
        &["ip", "addr", "add", "fd00::3/64", "dev", "eth0", "nodad"],
    );
    let mut dump = lab.spawn(
        0,
        "tcpdump-l2",
        &["tcpdump", "-l", "-n", "-e", "-i", "br0", "ip6 proto 112"],
    );
    dump.wait_for("listening on br0", 10 * SEC);
    let mut hf = lab.holdfast(1, &vmac_conf6(150));
    hf.wait_for("(VI_6) Entering MASTER STATE", 10 * SEC);
    let mut ka = lab.keepalived(2, &vmac_conf6(100));
    ka.wait_for("(VI_6) Entering BACKUP STATE", 10 * SEC);
    // holdfast's adverts leave its macvlan from the virtual MAC, with eth0's link-local
    // address (also set on the macvlan) as source.
    let ll = lab.output(
        1,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ],
    );
    let ll = ll
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap()
        .to_owned();
    assert!(addrs_on(&lab, 1, "vrrp.51").contains(&ll));
    dump.mark();
    dump.expect_count(&format!("{VMAC6} > 33:33:00:00:00:12"), 3, 5 * SEC)
        .unwrap();
    dump.wait_line(&[VMAC6, &format!("{ll} > ff02::12")], 5 * SEC);
    assert!(
        ka.try_wait_for("(VI_6) Entering MASTER STATE", Duration::ZERO)
            .is_none()
    );
    assert!(settles(
        || addrs_on(&lab, 1, "vrrp.51").contains("fd00::100/64")
    ));
    let reached = lab.output(
        3,
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/fd00::100/9 || echo refused",
        ],
    );
    assert!(reached.contains("refused"), "{reached}");
    let neigh = lab.output(3, &["ip", "-6", "neigh", "show", "fd00::100"]);
    assert!(neigh.contains(VMAC6), "{neigh}");
    // holdfast stops: keepalived takes over, and holdfast's macvlan is gone.
    hf.signal("TERM");
    ka.wait_for("(VI_6) Entering MASTER STATE", 5 * SEC);
    assert!(hf.wait_exit(10 * SEC));
    assert_eq!(link(&lab, 1, "vrrp.51"), "");
}

#[test]
fn vmac_xmit_base_sends_the_adverts_from_the_base_interface_and_the_vip_from_the_vmac() {
    let mut lab = lab(2);
    let base_mac = lab
        .output(1, &["cat", "/sys/class/net/eth0/address"])
        .trim()
        .to_owned();
    let mut dump = lab.spawn(
        0,
        "tcpdump-l2",
        &["tcpdump", "-l", "-n", "-e", "-i", "br0", "vrrp or arp"],
    );
    dump.wait_for("listening on br0", 10 * SEC);
    let c = |p| conf(p, "    use_vmac\n    vmac_xmit_base", "");
    let mut hf = lab.holdfast(1, &c(150));
    let mut ka = lab.keepalived(2, &c(100));
    hf.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    ka.wait_for("(VI_1) Entering BACKUP STATE", 10 * SEC);
    // The VIP is announced from the macvlan, the adverts leave eth0.
    dump.wait_line(
        &[
            &format!("{VMAC} > ff:ff:ff:ff:ff:ff"),
            "Request who-has 10.77.0.100 (ff:ff:ff:ff:ff:ff) tell 10.77.0.100",
        ],
        5 * SEC,
    );
    dump.mark();
    dump.wait_line(
        &[
            &format!("{base_mac} > 01:00:5e:00:00:12"),
            "10.77.0.1 > 224.0.0.18",
        ],
        5 * SEC,
    );
    assert!(settles(
        || addrs_on(&lab, 1, "vrrp.51").contains("10.77.0.100/24")
    ));
    dump.drain();
    assert!(
        !dump
            .lines
            .iter()
            .any(|(_, l)| l.contains(&format!("{VMAC} > 01:00:5e:00:00:12"))),
        "an advert from the virtual MAC"
    );
    // keepalived (also sending from its base interface) hears holdfast's priority 0.
    hf.signal("TERM");
    ka.wait_for("(VI_1) Backup received priority 0 advertisement", 5 * SEC);
    ka.wait_for("(VI_1) Entering MASTER STATE", 5 * SEC);
    assert!(hf.wait_exit(10 * SEC));
}
