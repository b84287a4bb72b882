//! Scheduler properties from the IPVS documentation of each algorithm, over random pools.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::net::SocketAddr;

use holdfast_lb::sched::{Dest, Flow, HashFlags, Kind, Scheduler};
use proptest::prelude::*;

const ALL: [Kind; 13] = [
    Kind::Rr,
    Kind::Wrr,
    Kind::Lc,
    Kind::Wlc,
    Kind::Lblc,
    Kind::Lblcr,
    Kind::Dh,
    Kind::Sh,
    Kind::Sed,
    Kind::Nq,
    Kind::Mh,
    Kind::Fo,
    Kind::Ovf,
];

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 3306))
}

fn dest() -> impl Strategy<Value = (u32, u32, u32, bool)> {
    (0u32..6, 0u32..20, 0u32..20, prop::bool::weighted(0.1))
}

fn pool() -> impl Strategy<Value = Vec<Dest>> {
    prop::collection::vec(dest(), 1..8).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (w, a, n, o))| Dest {
                addr: addr(i),
                weight: w,
                active: a,
                inactive: n,
                overloaded: o,
            })
            .collect()
    })
}

fn flow(src: u32, port: u16) -> Flow {
    Flow {
        src: SocketAddr::from((src.to_be_bytes(), port)),
        dst: SocketAddr::from(([10, 0, 0, 100], 3306)),
    }
}

proptest! {
    #[test]
    fn no_scheduler_picks_a_down_weight_zero_or_overloaded_server(
        p in pool(),
        flows in prop::collection::vec((any::<u32>(), any::<u16>()), 1..20),
        fallback in any::<bool>(),
    ) {
        for kind in ALL {
            let mut s = Scheduler::new(kind, HashFlags { port: true, fallback });
            for (src, port) in &flows {
                if let Some(i) = s.pick(&p, &flow(*src, *port)) {
                    prop_assert!(p[i].available(), "{kind:?} picked {:?}", p[i]);
                }
            }
        }
    }

    #[test]
    fn schedulers_that_do_not_hash_always_find_an_available_server(p in pool()) {
        let any = p.iter().any(Dest::available);
        for kind in [Kind::Rr, Kind::Wrr, Kind::Lc, Kind::Wlc, Kind::Sed, Kind::Nq, Kind::Fo, Kind::Lblc, Kind::Lblcr] {
            let mut s = Scheduler::new(kind, HashFlags::default());
            prop_assert_eq!(s.pick(&p, &flow(1, 1)).is_some(), any, "{:?}", kind);
        }
    }

    #[test]
    fn wrr_shares_each_cycle_by_weight(weights in prop::collection::vec(1u32..6, 1..6)) {
        let p: Vec<Dest> = weights.iter().enumerate().map(|(i, w)| Dest::new(addr(i), *w)).collect();
        let g = weights.iter().fold(0, |a, b| gcd(a, *b));
        let cycle: u32 = weights.iter().map(|w| w / g).sum();
        let mut s = Scheduler::new(Kind::Wrr, HashFlags::default());
        let mut count = vec![0u32; p.len()];
        for _ in 0..cycle * 3 {
            count[s.pick(&p, &flow(1, 1)).unwrap()] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            prop_assert_eq!(count[i], 3 * w / g, "weights {:?}", weights);
        }
    }

    #[test]
    fn rr_with_equal_weights_takes_each_server_once_per_cycle(n in 1usize..8, w in 1u32..5) {
        let p: Vec<Dest> = (0..n).map(|i| Dest::new(addr(i), w)).collect();
        for kind in [Kind::Rr, Kind::Wrr] {
            let mut s = Scheduler::new(kind, HashFlags::default());
            let mut seen: Vec<usize> = (0..n).map(|_| s.pick(&p, &flow(1, 1)).unwrap()).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{:?}", kind);
        }
    }

    #[test]
    fn least_connection_schedulers_follow_their_formulas(p in pool()) {
        let avail: Vec<usize> = (0..p.len()).filter(|&i| p[i].available()).collect();
        prop_assume!(!avail.is_empty());
        let pick = |k| Scheduler::new(k, HashFlags::default()).pick(&p, &flow(1, 1)).unwrap();
        let overhead = |d: &Dest| f64::from(d.active) * 256.0 + f64::from(d.inactive);
        let min_by = |f: &dyn Fn(&Dest) -> f64| {
            avail.iter().map(|&i| f(&p[i])).fold(f64::INFINITY, f64::min)
        };
        let lc = pick(Kind::Lc);
        prop_assert_eq!(overhead(&p[lc]), min_by(&|d| overhead(d)));
        let wlc = pick(Kind::Wlc);
        let wlc_load = |d: &Dest| overhead(d) / f64::from(d.weight);
        prop_assert!((wlc_load(&p[wlc]) - min_by(&wlc_load)).abs() < 1e-9);
        let sed_load = |d: &Dest| (f64::from(d.active) + 1.0) / f64::from(d.weight);
        let sed = pick(Kind::Sed);
        prop_assert!((sed_load(&p[sed]) - min_by(&sed_load)).abs() < 1e-9);
        let nq = pick(Kind::Nq);
        if avail.iter().any(|&i| p[i].active == 0) {
            prop_assert_eq!(p[nq].active, 0);
        } else {
            prop_assert!((sed_load(&p[nq]) - min_by(&sed_load)).abs() < 1e-9);
        }
        let fo = pick(Kind::Fo);
        prop_assert_eq!(p[fo].weight, avail.iter().map(|&i| p[i].weight).max().unwrap());
    }

    #[test]
    fn sh_keeps_clients_when_an_unrelated_server_goes_down(
        n in 2usize..8,
        gone in 0usize..8,
        clients in prop::collection::vec(any::<u32>(), 1..50),
    ) {
        let gone = gone % n;
        let p: Vec<Dest> = (0..n).map(|i| Dest::new(addr(i), 1)).collect();
        let mut down = p.clone();
        down[gone].weight = 0;
        let mut before = Scheduler::new(Kind::Sh, HashFlags::default());
        let mut after = Scheduler::new(Kind::Sh, HashFlags::default());
        for c in clients {
            let b = before.pick(&p, &flow(c, 1)).unwrap();
            if b != gone {
                prop_assert_eq!(after.pick(&down, &flow(c, 1)), Some(b));
            }
        }
    }

    #[test]
    fn mh_moves_few_clients_when_an_unrelated_server_goes_down(
        n in 3usize..8,
        gone in 0usize..8,
        seed in any::<u32>(),
    ) {
        let gone = gone % n;
        let p: Vec<Dest> = (0..n).map(|i| Dest::new(addr(i), 1)).collect();
        let mut down = p.clone();
        down[gone].weight = 0;
        let mut before = Scheduler::new(Kind::Mh, HashFlags::default());
        let mut after = Scheduler::new(Kind::Mh, HashFlags::default());
        let (mut kept, mut total) = (0, 0);
        for c in 0..400u32 {
            let src = seed.wrapping_add(c.wrapping_mul(2_654_435_761));
            let b = before.pick(&p, &flow(src, 1)).unwrap();
            if b != gone {
                total += 1;
                kept += usize::from(after.pick(&down, &flow(src, 1)) == Some(b));
            }
        }
        // Maglev's promise: minimal disruption. Allow a few percent of moved clients.
        prop_assert!(kept * 100 >= total * 90, "kept {kept} of {total}");
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
