//! Deterministic multi-router simulation: every scenario runs many seeds (500 by default;
//! `HOLDFAST_SIM_SEEDS=10000` for the long run); a failure names the seed and the command
//! that replays it (`HOLDFAST_SIM_SEED=<n>`).

use std::time::Duration;

use holdfast_sim::{Net, Scenario, Sim};

fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("HOLDFAST_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var("HOLDFAST_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    (0..n).collect()
}

fn run(s: &Scenario, test: &str) {
    let mut worst = Duration::ZERO;
    let mut elections = 0;
    let seeds = seeds();
    for &seed in &seeds {
        let mut sim = Sim::new(s, seed);
        if let Err(e) = sim.run(s.duration) {
            panic!(
                "{}: seed {seed}: {e}\nreplay: HOLDFAST_SIM_SEED={seed} cargo test -p holdfast-sim --test scenarios {test}",
                s.name
            );
        }
        worst = worst.max(sim.worst_convergence);
        elections += sim.elections;
    }
    assert!(
        elections >= seeds.len() as u64,
        "{}: no elections happened",
        s.name
    );
    println!(
        "{}: {} seeds, {elections} elections, worst convergence {worst:?}",
        s.name,
        seeds.len()
    );
}

fn net(loss: f64, duplicate: f64, max_delay_ms: u64) -> Net {
    Net {
        loss,
        duplicate,
        min_delay: Duration::from_micros(100),
        max_delay: Duration::from_millis(max_delay_ms),
    }
}

#[test]
fn clean_network_with_crashes_stops_and_partitions() {
    run(
        &Scenario {
            name: "clean",
            routers: 2..=5,
            net: net(0.0, 0.0, 5),
            events: 8,
            drift_ppm: 0,
            duration: Duration::from_secs(80),
            preempt_fast: false,
        },
        "clean_network_with_crashes_stops_and_partitions",
    );
}

#[test]
fn lossy_jittery_duplicating_network_with_clock_drift() {
    run(
        &Scenario {
            name: "lossy",
            routers: 2..=5,
            net: net(0.05, 0.05, 50),
            events: 8,
            drift_ppm: 500,
            duration: Duration::from_secs(80),
            preempt_fast: false,
        },
        "lossy_jittery_duplicating_network_with_clock_drift",
    );
}

#[test]
fn a_silent_master_crash_is_taken_over_within_the_down_interval() {
    run(
        &Scenario {
            name: "crash-only",
            routers: 2..=3,
            net: net(0.0, 0.0, 1),
            events: 3,
            drift_ppm: 0,
            duration: Duration::from_secs(60),
            preempt_fast: false,
        },
        "a_silent_master_crash_is_taken_over_within_the_down_interval",
    );
}

#[test]
fn preempt_fast_on_a_lossy_network_with_crashes_and_partitions() {
    run(
        &Scenario {
            name: "preempt-fast",
            routers: 2..=5,
            net: net(0.05, 0.05, 50),
            events: 8,
            drift_ppm: 500,
            duration: Duration::from_secs(80),
            preempt_fast: true,
        },
        "preempt_fast_on_a_lossy_network_with_crashes_and_partitions",
    );
}
