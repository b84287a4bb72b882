//! Every lab scenario end to end (as root): MariaDB behind HAProxy on two load balancers
//! running holdfast, a client writing every 100 ms through the VIP. No acknowledged write may
//! be lost, and the VIP must move within the VRRP bounds.

use std::time::Duration;

use holdfast_lab::lab::{Options, Scenario, run};
use holdfast_lab::services::Daemon;

/// Options with holdfast on both load balancers.
fn holdfast_nodes(fast: bool, secs: u64, own_proxy: bool) -> Options {
    Options {
        bin: env!("CARGO_BIN_EXE_holdfast").into(),
        lb1: Daemon::Holdfast,
        lb2: Daemon::Holdfast,
        advert: if fast {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        },
        client: Duration::from_millis(100),
        duration: Duration::from_secs(secs),
        own_proxy,
    }
}

#[test]
fn every_lab_scenario_moves_the_vip_and_loses_no_acknowledged_write() {
    let opts = holdfast_nodes(false, 10, false);
    // Bounds: priority-0 handover within skew (0.61 s) + slack; silent loss within the master
    // down interval (3.61 s) + slack; proxy death within detection (0.1 s) + skew, because
    // the lab's configuration sets `preempt_fast`.
    let bounds = [
        (Scenario::Graceful, 1.5),
        (Scenario::Kill9, 4.5),
        (Scenario::Crash, 4.5),
        (Scenario::ProxyDies, 1.5),
        (Scenario::SplitBrain, 4.5),
    ];
    for (s, bound) in bounds {
        let o = run(&opts, s).unwrap_or_else(|e| panic!("{}: {e}", s.name()));
        assert!(
            o.lost.is_empty(),
            "{}: acknowledged writes lost: {:?}",
            s.name(),
            o.lost
        );
        assert!(
            o.acked > 20 && o.stored >= o.acked,
            "{}: acked {} stored {}",
            s.name(),
            o.acked,
            o.stored
        );
        let moved = o.vip_move.expect("lb2 became master").as_secs_f64();
        assert!(
            moved < bound,
            "{}: VIP moved after {moved:.2} s (bound {bound} s)",
            s.name()
        );
        assert!(o.garp.is_some(), "{}: no gratuitous ARP logged", s.name());
    }
}

#[test]
fn the_balance_scenario_takes_db2_out_and_back_without_losing_writes() {
    let opts = holdfast_nodes(false, 12, true);
    for inhibit in [false, true] {
        let o = holdfast_lab::balance::run(&opts, inhibit).unwrap_or_else(|e| panic!("{e}"));
        assert!(o.lost.is_empty(), "acknowledged writes lost: {:?}", o.lost);
        assert!(
            o.acked > 20 && o.stored >= o.acked,
            "acked {} stored {}",
            o.acked,
            o.stored
        );
        // MISC_CHECK every 0.5 s, retry 0: out within a couple of checks.
        let out = o.removed.expect("db2 taken out").as_secs_f64();
        assert!(out < 5.0, "db2 taken out after {out:.2} s");
        assert!(o.readmitted.is_some(), "db2 not readmitted");
        let db2 = format!("  -> {:<28} Masq    ", "10.88.0.22:3306");
        if inhibit {
            assert!(
                o.lvs_failed.contains(&format!("{db2}0 ")),
                "{}",
                o.lvs_failed
            );
        } else {
            assert!(!o.lvs_failed.contains("10.88.0.22"), "{}", o.lvs_failed);
        }
        assert!(o.lvs_back.contains(&format!("{db2}100 ")), "{}", o.lvs_back);
    }
}

#[test]
fn with_holdfast_s_own_proxy_a_killed_node_hands_over_without_losing_writes() {
    let opts = holdfast_nodes(true, 8, true);
    // proxy-dies with the proxy inside holdfast: holdfast itself is killed; the guardian's
    // priority 0 hands the VIP over in Skew_Time.
    let o = run(&opts, Scenario::ProxyDies).unwrap_or_else(|e| panic!("{e}"));
    assert!(o.lost.is_empty(), "acknowledged writes lost: {:?}", o.lost);
    assert!(o.acked > 20, "acked {}", o.acked);
    let moved = o.vip_move.expect("lb2 became master").as_secs_f64();
    assert!(moved < 1.0, "VIP moved after {moved:.2} s");
}

#[test]
fn the_roles_scenario_drains_a_lagging_replica_and_follows_a_promotion() {
    let opts = holdfast_nodes(false, 10, true);
    let o = holdfast_lab::roles::run(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(o.lost.is_empty(), "acknowledged writes lost: {:?}", o.lost);
    assert!(o.acked > 20, "acked {}", o.acked);
    assert!(
        o.drained.is_some_and(|d| d < Duration::from_secs(2)),
        "{o:?}"
    );
    // rise 3 at 0.2 s: not before the third passing check.
    assert!(
        o.readmitted
            .is_some_and(|d| d >= Duration::from_millis(350) && d < Duration::from_secs(5)),
        "{o:?}"
    );
    // One check interval (0.2 s) plus the check itself.
    assert!(
        o.switched.is_some_and(|d| d < Duration::from_secs(1)),
        "{o:?}"
    );
}

#[test]
fn faults_heal_to_one_master_every_time_and_lose_no_acknowledged_write() {
    let opts = holdfast_nodes(true, 50, false);
    let o = holdfast_lab::faults::run(&opts).unwrap_or_else(|e| panic!("faults: {e}"));
    let report = holdfast_lab::faults::report(&o);
    // SIGSTOP, three kill -9 rounds of two steps, five cable cuts, disk full.
    assert_eq!(o.steps.len(), 1 + 3 * 2 + 5 + 1, "{report}");
    assert!(o.lost.is_empty(), "acknowledged writes lost:\n{report}");
    assert!(o.acked > 100 && o.stored >= o.acked, "{report}");
    // Every heal settles (one MASTER, stable for a second) well within the time a hanging
    // notify script would have cost.
    for st in &o.steps {
        assert!(st.settled < Duration::from_secs(5), "{report}");
    }
    assert!(o.hanging_notifies >= 10, "{report}");
}
