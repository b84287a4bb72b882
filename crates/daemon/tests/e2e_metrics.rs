//! The Prometheus endpoint end to end (as root, in namespaces the test creates): a VRRP
//! instance and a virtual server's states and counts, reloads, and no secrets.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::time::{Duration, Instant};

use holdfast_lab::netns;

const SEC: Duration = Duration::from_secs(1);

const CONF: &str = "global_defs {
    metrics_listen 127.0.0.1:9650
}
vrrp_script chk_true {
    script \"/bin/true\"
    interval 0.5
    weight -10
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.5
    authentication {
        auth_type PASS
        auth_pass s3cr3tpw
    }
    virtual_ipaddress {
        10.77.0.100/24
    }
    track_script {
        chk_true
    }
}
virtual_server 10.77.0.100 80 {
    delay_loop 0.5
    lb_algo rr
    real_server 10.77.0.2 80 {
        TCP_CHECK {
            connect_timeout 0.5
            retry 0
        }
    }
}
";

/// The exposition text from node 1's loopback.
fn scrape(lab: &netns::Lab) -> String {
    lab.http_get(1, "127.0.0.1:9650")
}

fn until(lab: &netns::Lab, line: &str) -> String {
    let deadline = Instant::now() + 10 * SEC;
    loop {
        let text = scrape(lab);
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(Instant::now() < deadline, "no line {line:?} in:\n{text}");
        std::thread::sleep(SEC / 5);
    }
}

#[test]
fn metrics_show_states_counts_and_reloads_but_no_secrets() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let mut lb = lab.holdfast(1, CONF);
    lb.wait_for(
        "Serving Prometheus metrics on http://127.0.0.1:9650/metrics",
        5 * SEC,
    );
    // The instance and the checker start side by side; nothing listens on 10.77.0.2:80, so
    // its check fails and it is taken out.
    lb.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "Removing service [10.77.0.2]:tcp:80 from VS [10.77.0.100]:tcp:80",
        ],
        10 * SEC,
    );
    let text = until(
        &lab,
        r#"holdfast_vrrp_state{instance="VI_1",state="master"} 1"#,
    );
    assert!(
        text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == r#"holdfast_vrrp_effective_priority{instance="VI_1"} 150"#),
        "{text}"
    );
    until(
        &lab,
        r#"holdfast_real_server_up{virtual_server="[10.77.0.100]:tcp:80",real_server="10.77.0.2:80"} 0"#,
    );
    // The checker: down, its probes counted as failures and timed.
    let text = until(
        &lab,
        r#"holdfast_checker_up{virtual_server="[10.77.0.100]:tcp:80",real_server="10.77.0.2:80",checker="TCP_CHECK",index="0"} 0"#,
    );
    let value = |t: &str, prefix: &str| -> f64 {
        t.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{t}"))
    };
    let labels = r#"{virtual_server="[10.77.0.100]:tcp:80",real_server="10.77.0.2:80",checker="TCP_CHECK",index="0"} "#;
    let probes = value(&text, &format!("holdfast_checker_probes_total{labels}"));
    let failures = value(
        &text,
        &format!("holdfast_checker_probe_failures_total{labels}"),
    );
    assert!(probes >= 1.0 && failures == probes, "{text}");
    assert!(
        value(
            &text,
            &format!("holdfast_checker_probe_duration_seconds_sum{labels}")
        ) > 0.0,
        "{text}"
    );
    // The tracker: up, probed, each probe taking the time of a fork and exec.
    let text = until(
        &lab,
        r#"holdfast_tracker_up{instance="VI_1",tracker="chk_true",kind="vrrp_script"} 1"#,
    );
    let t_labels = r#"{instance="VI_1",tracker="chk_true",kind="vrrp_script"} "#;
    assert!(value(&text, &format!("holdfast_tracker_probes_total{t_labels}")) >= 1.0);
    assert_eq!(
        value(
            &text,
            &format!("holdfast_tracker_probe_failures_total{t_labels}")
        ),
        0.0
    );
    assert!(
        value(
            &text,
            &format!("holdfast_tracker_last_probe_duration_seconds{t_labels}")
        ) > 0.0
    );
    // Adverts go out every half second.
    let sent = |t: &str| -> u64 {
        t.lines()
            .find_map(|l| l.strip_prefix(r#"holdfast_vrrp_adverts_sent_total{instance="VI_1"} "#))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = sent(&scrape(&lab));
    let deadline = Instant::now() + 5 * SEC;
    while sent(&scrape(&lab)) <= before {
        assert!(Instant::now() < deadline, "adverts_sent did not grow");
        std::thread::sleep(SEC / 5);
    }
    // A reload is counted.
    lb.signal("HUP");
    let text = until(&lab, "holdfast_reloads_total 1");
    assert!(
        text.lines().any(|l| l == "holdfast_reload_last_success 1"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3tpw"),
        "a password in the metrics:\n{text}"
    );
}
