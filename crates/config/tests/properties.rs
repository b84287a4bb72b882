//! Property tests: the parser never panics, spans stay inside their files, and the printed
//! configuration parses back to the same model — on arbitrary text and on text built from
//! keepalived's own vocabulary (which reaches much deeper into the lowering).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

use holdfast_config::fuzzing::config_parse;
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "global_defs",
    "vrrp_instance",
    "vrrp_script",
    "virtual_server",
    "real_server",
    "TCP_CHECK",
    "HTTP_GET",
    "MISC_CHECK",
    "MYSQL_CHECK",
    "url",
    "path",
    "status_code",
    "vrrp_sync_group",
    "group",
    "track_script",
    "track_interface",
    "virtual_ipaddress",
    "unicast_peer",
    "state",
    "MASTER",
    "BACKUP",
    "interface",
    "eth0",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "3",
    "2",
    "0",
    "255",
    "256",
    "-20",
    "1.5",
    "0.01",
    "weight",
    "reverse",
    "authentication",
    "auth_type",
    "PASS",
    "auth_pass",
    "10.0.0.1",
    "10.0.0.1/24",
    "fe80::1",
    "dev",
    "brd",
    "label",
    "scope",
    "3306",
    "lb_algo",
    "lb_kind",
    "DR",
    "NAT",
    "nb_get_retry",
    "persistence_timeout",
    "script",
    "\"a b\"",
    "'q'",
    "include",
    "$X=1",
    "${X}",
    "$X",
    "@n",
    "@^n",
    "~SEQ(i,1,3)",
    "${_HASH}",
    "\u{a0}",
    "notify_master",
    "fwmark",
    "sorry_server",
    "nopreempt",
    "preempt_delay",
    "preempt_fast",
    "proxy_protocol",
    "track_file",
    "file",
    "vrrp_track_process",
    "process",
    "readmit",
    "manual",
    "dataplane",
    "proxy",
    "metrics_listen",
    "127.0.0.1:9100",
    "nft_table",
    "lb_nat",
    "ip_family",
    "inet6",
    "ops",
    "sh-port",
    "sh-fallback",
    "flag-2",
    "regex",
    "regex_no_match",
    "regex_options",
    "caseless",
    "firstline",
    "regex_min_offset",
    "regex_max_offset",
    "(a|b)+$",
    "\\",
];

fn vocabulary_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        8 => proptest::sample::select(WORDS).prop_map(str::to_string),
        2 => Just("{".to_string()),
        2 => Just("}".to_string()),
        3 => Just("\n".to_string()),
        1 => Just("#".to_string()),
        1 => "[ -~]{0,6}",
    ];
    proptest::collection::vec(token, 0..120).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        config_parse(&data);
    }

    #[test]
    fn keepalived_vocabulary_never_panics_and_round_trips(text in vocabulary_text()) {
        config_parse(text.as_bytes());
    }
}
