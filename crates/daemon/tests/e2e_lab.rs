//! Every lab scenario end to end (as root): MariaDB behind HAProxy on two load balancers
//! running holdfast, a client writing every 100 ms through the VIP. No acknowledged write may
//! be lost, and the VIP must move within the VRRP bounds.

use std::time::Duration;

use holdfast_lab::lab::{Options, Scenario, run};
use holdfast_lab::services::Daemon;

#[test]
fn every_lab_scenario_moves_the_vip_and_loses_no_acknowledged_write() {
    let opts = Options {
        bin: env!("CARGO_BIN_EXE_holdfast").into(),
        lb1: Daemon::Holdfast,
        lb2: Daemon::Holdfast,
        fast: false,
        duration: Duration::from_secs(10),
    };
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
