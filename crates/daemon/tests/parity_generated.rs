//! Differential parity on generated configurations: `holdfast check-config` against
//! `keepalived -t` (Debian's 2.2.7), both in one network namespace holding `eth0` and `eth1`, on
//! keepalived.conf files generated from a grammar — the blocks a real configuration has, each
//! with what it needs to be valid, plus keywords drawn from every keyword keepalived knows in
//! that block (`crates/config/src/reference/keepalived-2.2.7.txt`) with values from domains that
//! hold the edge cases (0, negative, out of range, too long, missing, duplicated, a keyword in
//! the wrong block, references to what is defined later or nowhere, `$` definitions). The
//! exit codes and the reported line numbers must agree, but for the deliberate deviations of
//! `tests/parity-deviations.txt`.
//!
//! A disagreement is shrunk (proptest's value trees: items and blocks removed, values moved
//! towards the first of their domain) to a small configuration, written to
//! `target/parity-found/`, and the test fails with it; a case worth keeping goes to
//! `tests/fixtures/parity/` once fixed, or to the deviations with its reason.
//!
//! The test suite runs seed 1 and 1 000 cases over the keywords holdfast implements;
//! a longer campaign, over every keyword keepalived knows as well:
//!
//! ```sh
//! HOLDFAST_PARITY_SEED=7 HOLDFAST_PARITY_CASES=5000 HOLDFAST_PARITY_ALL=1 \
//!     cargo test -p holdfast --test parity_generated -- --nocapture
//! ```
//!
//! Needs root and keepalived (`scripts/deps` installs it).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

#[path = "support/parity.rs"]
mod parity;

/// One line of a configuration, or a block of them.
#[derive(Clone, Debug)]
enum Item {
    Line(String),
    Block(String, Vec<Item>),
}

fn render(items: &[Item], depth: usize, out: &mut String) {
    for it in items {
        let pad = "    ".repeat(depth);
        match it {
            Item::Line(l) => {
                let _ = writeln!(out, "{pad}{l}");
            }
            Item::Block(head, body) => {
                let _ = writeln!(out, "{pad}{head} {{");
                render(body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }
}

/// Every keyword keepalived 2.2.7 knows, by block path (`/vrrp_instance`).
fn vocabulary() -> BTreeMap<String, Vec<String>> {
    let text = include_str!("../../config/src/reference/keepalived-2.2.7.txt");
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((block, kw)) = l.split_once(' ') {
            m.entry(block.to_owned()).or_default().push(kw.to_owned());
        }
    }
    m
}

/// Keywords never generated: they reach outside the test's namespace (entering or creating
/// namespaces, pid and data directories) or read other files.
const NEVER: &[&str] = &[
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "include",
    "config_save_dir",
    "tmp_config_directory",
];

/// Differences the campaign found and holdfast does not match yet: a generated configuration
/// with such a line is not compared (it is still generated, so the cases stay the same). Each is (keyword, value, `*` or
/// [`LINE`], what differs).
const OPEN: &[(&str, &str, &str)] = &[
    (
        "notify_deleted",
        "*",
        "its script (run when a reload deletes the instance) is not run by holdfast, so script security does not count it as keepalived does",
    ),
    (
        "use_ipvlan",
        "*",
        "ipvlan is not implemented yet (#26): keepalived's checks of its options and its source address are not made",
    ),
];

/// Deliberate deviations on generated configurations, as `tests/parity-deviations.txt` lists
/// them for kept files: never compared. Each is (keyword, value or [`LINE`], why holdfast's
/// answer is the better one for users).
const DEVIATES: &[(&str, &str, &str)] = &[
    (
        "virtual_routes",
        LINE,
        "written as a line without its block: keepalived reads the lines that follow as routes and stops reading the configuration (exit 2) at the first that is not one; holdfast reports each such line and reads on, so every other mistake is reported too",
    ),
    (
        "virtual_rules",
        LINE,
        "as virtual_routes written as a line: keepalived stops reading (exit 2) at the first line that is not a rule; holdfast reports each and reads on",
    ),
    (
        "unicast_ttl",
        "0",
        "keepalived takes a TTL of 0 and sends its unicast adverts with it (no router forwards them; Linux refuses it as a socket's TTL); holdfast reports it as out of range at the value, so the mistake is seen (1 reaches a peer on the same link)",
    ),
    (
        "bfd_instance/neighbor_ip",
        "",
        "without its address: keepalived 2.2.7's BFD process reads the missing value and crashes (exit 255); holdfast reports the missing parameter as for any keyword (exit 2)",
    ),
    (
        "bfd_instance/neighbour_ip",
        "",
        "as neighbor_ip without its address: keepalived 2.2.7 crashes; holdfast reports the missing parameter",
    ),
    (
        "bfd_instance/neighbor_ip",
        "$VALUE",
        "a definition may leave it without its address, where keepalived 2.2.7 crashes (above)",
    ),
    (
        "bfd_instance/neighbour_ip",
        "$VALUE",
        "a definition may leave it without its address, where keepalived 2.2.7 crashes (above)",
    ),
];

/// Keywords whose verdict depends on the host beyond its interfaces (user and group names,
/// name resolution): left out of generated configurations.
const HOST_DEPENDENT: &[&str] = &["script_user", "user", "smtp_server"];

/// The keywords holdfast implements, by block: what the CI run draws from. Keywords holdfast
/// reports unsupported (their values still checked as keepalived checks them) are left to the
/// campaign (`HOLDFAST_PARITY_ALL`), which keeps the CI run's cases the same as they are added.
fn implemented() -> BTreeSet<(String, String)> {
    holdfast_config::reference::entries()
        .into_iter()
        .filter(|e| e.keepalived && e.status == holdfast_config::reference::Status::Implemented)
        .map(|e| (e.block, e.keyword))
        .collect()
}

/// In [`OPEN`]: the keyword written as a line (whatever its value), not as a block.
const LINE: &str = "(line)";

const LONG: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// The values a keyword is tried with: its own domain first (what shrinking moves towards),
/// then values every keyword may meet.
fn values(keyword: &str) -> Vec<String> {
    let own: &[&str] = match keyword {
        "state" => &["BACKUP", "MASTER", "FAULT", "backup"],
        "interface" => &["eth0", "eth1", "eth9"],
        "virtual_router_id" => &["51", "1", "255", "0", "256"],
        "priority" => &["100", "1", "254", "255", "0", "256"],
        "advert_int" => &["1", "0.5", "0.01", "40.95", "41", "255", "256"],
        "version" => &["2", "3", "4"],
        "lb_algo" | "lvs_sched" => &["rr", "wrr", "lc", "wlc", "mh", "sh", "xyz"],
        "lb_kind" | "lvs_method" => &["NAT", "DR", "TUN", "FOO"],
        "protocol" => &["TCP", "UDP", "SCTP", "ICMP"],
        "delay_loop" => &["6", "0.5", "0"],
        "persistence_timeout" => &["300", "1", "2678400", "2678401"],
        "weight" => &[
            "1",
            "-10",
            "253",
            "254",
            "-254",
            "-255",
            "65535",
            "2147483647",
        ],
        "interval" | "timeout" | "rise" | "fall" => &["2", "1", "3", "0.5", "0"],
        "script" => &[
            "\"/bin/true\"",
            "/bin/false",
            "\"/bin/sh -c 'exit 0'\"",
            "/nonexistent",
        ],
        "preempt_delay" => &["5", "0", "1000", "1001"],
        "garp_master_delay" | "garp_master_refresh" | "garp_master_repeat" => &["5", "0", "1"],
        "mcast_src_ip" | "unicast_src_ip" => &["10.0.0.1", "fe80::1", "10.0.0.300"],
        "neighbor_ip" | "neighbour_ip" => &["10.0.0.2", "10.0.0.3", "fe80::2", "x"],
        "source_ip" => &["10.0.0.1", "fe80::1", "x"],
        "min_rx" | "min_tx" | "idle_tx" => &["10", "0", "0.5", "1000", "1.2345", "5000000", "x"],
        "multiplier" => &["5", "0", "255", "256"],
        "ttl" | "hoplimit" => &["255", "0", "64", "256"],
        "max_hops" => &["0", "-1", "-2", "255", "256"],
        "use_vmac" => &[
            "",
            "vrrp.51",
            "vmac1 00:11:22:33:44",
            "00:11:22:33:44:55",
            "02:11:22:33:44: vmac2",
            "00:00:5e:00:01:01",
            "01:00:5e:00:00:12",
            "00:11:22:33",
            "0011:22:33:44:55",
            "00:11:22:33:44:55:66",
            "00:1g:22:33:44:55",
            "eth0",
            "eth1 eth0",
            "a/b",
            "vmac1 vmac1",
            "00:11:22:33:44:55 02:11:22:33:44:55",
            "vrrpxxxxxxxxxxxx",
        ],
        "smtp_alert" | "nopreempt" | "preempt" | "accept" | "no_accept" | "dont_track_primary" => {
            &[""]
        }
        "notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
            &["\"/bin/true\"", "/nonexistent"]
        }
        "connect_timeout" | "retry" | "delay_before_retry" => &["3", "0", "1"],
        "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => &["1", "0", "/bin/true"],
        "sorry_server" => &["10.0.0.9 80", "10.0.0.9", "fe80::9 80"],
        _ => &[],
    };
    let generic = [
        "",
        "1",
        "0",
        "-1",
        "2",
        "255",
        "256",
        "65536",
        "4294967296",
        "0.5",
        "abc",
        "on",
        "off",
        "true",
        "10.0.0.1",
        "10.0.0.1/24",
        "fe80::1",
        "eth0",
        "eth9",
        "/bin/true",
        "1 2",
        LONG,
        "$VALUE",
        "$UNDEFINED",
    ];
    // A deliberate deviation is not generated: sub-second script intervals and timeouts
    // (tests/parity-deviations.txt, script-interval-below-one-second.conf).
    let deviation = |v: &str| {
        matches!(keyword, "interval" | "timeout")
            && v.parse::<f64>().is_ok_and(|f| f > 0.0 && f < 1.0)
    };
    own.iter()
        .chain(generic.iter())
        .filter(|v| !deviation(v))
        .map(|v| (*v).to_owned())
        .collect()
}

/// The elements of a list block (`virtual_ipaddress { … }`).
fn elements(keyword: &str) -> Option<&'static [&'static str]> {
    Some(match keyword {
        "virtual_ipaddress" | "virtual_ipaddress_excluded" | "static_ipaddress" => &[
            "10.0.0.100/24",
            "10.0.0.101",
            "10.0.0.102/24 dev eth1",
            "fe80::100",
            "2001:db8::100/64",
            "10.0.0.300",
            "10.0.0.103/33",
            "10.0.0.104/24 dev eth9",
        ],
        "track_script" => &[
            "chk_a",
            "chk_b",
            "chk_missing",
            "chk_a weight 10",
            "chk_a weight 300",
        ],
        "track_interface" => &["eth0", "eth1", "eth9", "eth0 weight 10", "eth1 weight -300"],
        "unicast_peer" => &["10.0.0.2", "10.0.0.3", "fe80::2", "x"],
        "group" => &["VI_1", "VI_2", "VI_9"],
        "notification_email" => &["root@localhost", "x"],
        "track_file" | "track_process" => &["missing"],
        "track_bfd" => &[
            "B1",
            "B2",
            "B9",
            "B1 weight 10",
            "B1 weight 300",
            "B1 weight",
            "B1 foo",
            "B1 weight 10 reverse",
            "B1 weight 10 x",
        ],
        _ => return None,
    })
}

fn line(keyword: String, vals: Vec<String>) -> BoxedStrategy<Item> {
    if vals.is_empty() {
        return Just(Item::Line(String::new())).boxed();
    }
    proptest::sample::select(vals)
        .prop_map(move |v| {
            if v.is_empty() {
                Item::Line(keyword.clone())
            } else {
                Item::Line(format!("{keyword} {v}"))
            }
        })
        .boxed()
}

/// A keyword with a value from its domain (or its elements for a list block).
fn keyword_item(keywords: Vec<String>) -> BoxedStrategy<Item> {
    proptest::sample::select(keywords)
        .prop_flat_map(move |kw| match elements(&kw) {
            Some(els) => {
                let els: Vec<String> = els.iter().map(|e| (*e).to_owned()).collect();
                proptest::collection::vec(proptest::sample::select(els), 0..3)
                    .prop_map(move |v| {
                        Item::Block(kw.clone(), v.into_iter().map(Item::Line).collect())
                    })
                    .boxed()
            }
            None => line(kw.clone(), values(&kw)),
        })
        .boxed()
}

/// A block `head` holding `fixed` (what makes it valid, each of which shrinking may remove)
/// and up to `extra` keywords of `path` (with one in eight from another block).
fn block(
    head: BoxedStrategy<String>,
    fixed: Vec<Item>,
    path: &str,
    vocab: &BTreeMap<String, Vec<String>>,
    only: Option<&BTreeSet<(String, String)>>,
    extra: usize,
) -> BoxedStrategy<Item> {
    let own: Vec<String> = vocab
        .get(path)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|k| !NEVER.contains(&k.as_str()) && !HOST_DEPENDENT.contains(&k.as_str()))
        // Keywords that open blocks of their own are generated by their own templates.
        .filter(|k| !vocab.contains_key(&format!("{path}/{k}")))
        .collect();
    let own: Vec<String> = own
        .into_iter()
        .filter(|k| only.is_none_or(|o| o.contains(&(path.to_owned(), k.clone()))))
        .collect();
    let others: Vec<String> = ["lb_algo", "priority", "script", "interface", "router_id"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let kw = if own.is_empty() {
        keyword_item(others)
    } else {
        prop_oneof![7 => keyword_item(own), 1 => keyword_item(others)].boxed()
    };
    let fixed = fixed.into_iter().map(Just).collect::<Vec<_>>();
    (head, fixed, proptest::collection::vec(kw, 0..=extra))
        .prop_map(|(head, fixed, extra)| {
            let mut body = fixed;
            body.extend(extra);
            Item::Block(head, body)
        })
        .boxed()
}

fn lines(ls: &[&str]) -> Vec<Item> {
    ls.iter().map(|l| Item::Line((*l).to_owned())).collect()
}

fn names(v: &[&str]) -> BoxedStrategy<String> {
    proptest::sample::select(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).boxed()
}

/// A whole configuration: `$` definitions, then one to five blocks.
fn configuration(all: bool) -> BoxedStrategy<Vec<Item>> {
    let vocab = vocabulary();
    let implemented = implemented();
    let only = (!all).then_some(&implemented);
    let instance = block(
        names(&["vrrp_instance VI_1", "vrrp_instance VI_2"]),
        vec![
            Item::Line("interface eth0".into()),
            Item::Line("virtual_router_id 51".into()),
            Item::Line("priority 100".into()),
            Item::Line("advert_int 1".into()),
            Item::Block("virtual_ipaddress".into(), lines(&["10.0.0.100/24"])),
        ],
        "/vrrp_instance",
        &vocab,
        only,
        4,
    );
    let script = block(
        names(&["vrrp_script chk_a", "vrrp_script chk_b"]),
        lines(&["script \"/bin/true\""]),
        "/vrrp_script",
        &vocab,
        only,
        3,
    );
    let real = Item::Block(
        "real_server 10.0.0.2 80".into(),
        vec![Item::Block(
            "TCP_CHECK".into(),
            lines(&["connect_timeout 3"]),
        )],
    );
    let vs = block(
        names(&[
            "virtual_server 10.0.0.1 80",
            "virtual_server 10.0.0.1 81",
            "virtual_server fwmark 1",
        ]),
        vec![
            Item::Line("lb_algo rr".into()),
            Item::Line("lb_kind NAT".into()),
            Item::Line("protocol TCP".into()),
            real,
        ],
        "/virtual_server",
        &vocab,
        only,
        4,
    );
    let globals = block(
        names(&["global_defs"]),
        Vec::new(),
        "/global_defs",
        &vocab,
        only,
        3,
    );
    let group = block(
        names(&["vrrp_sync_group G1"]),
        vec![Item::Block("group".into(), lines(&["VI_1", "VI_2"]))],
        "/vrrp_sync_group",
        &vocab,
        only,
        2,
    );
    let bfd = block(
        names(&[
            "bfd_instance B1",
            "bfd_instance B2",
            "bfd_instance BFDxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ]),
        lines(&["neighbor_ip 10.0.0.2"]),
        "/bfd_instance",
        &vocab,
        only,
        3,
    );
    let defs = proptest::collection::vec(
        proptest::sample::select(vec![
            "$VALUE=1".to_owned(),
            "$VALUE=eth0".to_owned(),
            "$VALUE=".to_owned(),
        ])
        .prop_map(Item::Line),
        0..2,
    );
    let blocks = proptest::collection::vec(
        prop_oneof![4 => instance, 2 => script, 3 => vs, 1 => globals, 1 => group, 1 => bfd],
        1..5,
    );
    (defs, blocks)
        .prop_map(|(mut d, b)| {
            d.extend(b);
            d
        })
        .boxed()
}

/// Whether a listed `key` (a keyword, or `BLOCK/keyword` for one block only) names keyword `k`
/// in the block opened by `parent`.
fn open_key(key: &str, parent: &str, k: &str) -> bool {
    match key.split_once('/') {
        Some((block, kw)) => kw == k && parent.split(' ').next() == Some(block),
        None => key == k,
    }
}

/// The difference of `list` ([`OPEN`] or [`DEVIATES`]) that `items` (in the block opened by
/// `parent`) holds, if any.
fn listed(
    list: &[(&str, &str, &'static str)],
    items: &[Item],
    parent: &str,
) -> Option<&'static str> {
    for it in items {
        match it {
            Item::Line(l) => {
                let (k, v) = l.split_once(' ').unwrap_or((l.as_str(), ""));
                if let Some((_, _, why)) = list.iter().find(|(ok, ov, _)| {
                    open_key(ok, parent, k) && (*ov == "*" || *ov == LINE || *ov == v)
                }) {
                    return Some(why);
                }
            }
            Item::Block(head, body) => {
                let kw = head.split(' ').next().unwrap_or_default();
                if let Some((_, _, why)) = list
                    .iter()
                    .find(|(k, v, _)| *v == "*" && open_key(k, parent, kw))
                {
                    return Some(why);
                }
                if elements(head).is_none()
                    && let Some(why) = listed(list, body, head)
                {
                    return Some(why);
                }
            }
        }
    }
    None
}

/// Whether a case is left uncompared: it holds a deliberate deviation or an open difference.
fn skipped_case(items: &[Item]) -> bool {
    listed(DEVIATES, items, "").is_some() || listed(OPEN, items, "").is_some()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn generated_configurations_match_keepalived() {
    let seed = env_u64("HOLDFAST_PARITY_SEED", 1);
    let cases = env_u64("HOLDFAST_PARITY_CASES", 1000);
    let all = std::env::var_os("HOLDFAST_PARITY_ALL").is_some();
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let strategy = configuration(all);
    let dev = parity::deviations();
    let ns = parity::Ns::new();
    let dir = std::env::temp_dir().join(format!("hfparity-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let found = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/parity-found");
    let file = dir.join("keepalived.conf");
    let check = |items: &[Item]| -> Option<String> {
        let mut text = String::new();
        render(items, 0, &mut text);
        std::fs::write(&file, &text).unwrap();
        parity::disagreement(&ns, &file, "generated.conf", &dev)
    };
    let mut failures: BTreeSet<String> = BTreeSet::new();
    let mut reports = Vec::new();
    let mut skipped = 0;
    for case in 0..cases {
        let mut tree = strategy.new_tree(&mut runner).unwrap();
        if skipped_case(&tree.current()) {
            skipped += 1;
            continue;
        }
        let Some(mut why) = check(&tree.current()) else {
            continue;
        };
        // Shrink: simplify while it still disagrees (and holds no open difference), step
        // back when it stops.
        let mut minimal = tree.current();
        for _ in 0..2000 {
            let current = tree.current();
            let verdict = if skipped_case(&current) {
                None
            } else {
                check(&current)
            };
            let stepped = match verdict {
                Some(w) => {
                    minimal = tree.current();
                    why = w;
                    tree.simplify()
                }
                None => tree.complicate(),
            };
            if !stepped {
                break;
            }
        }
        let mut text = String::new();
        render(&minimal, 0, &mut text);
        if failures.insert(text.clone()) {
            std::fs::create_dir_all(&found).unwrap();
            let path: PathBuf = found.join(format!("seed{seed}-case{case}.conf"));
            std::fs::write(&path, &text).unwrap();
            reports.push(format!("{}\n{why}\n{text}", path.display()));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "parity: {cases} generated configurations (seed {seed}{}), {skipped} not compared (deliberate deviations and open differences), {} disagreements",
        if all { ", every keyword" } else { "" },
        reports.len()
    );
    assert!(
        reports.is_empty(),
        "check-config disagrees with keepalived -t on generated configurations (shrunk):\n\n{}",
        reports.join("\n")
    );
}
