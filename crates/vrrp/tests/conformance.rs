//! Single-router conformance with virtual time: one test per row of reference/keepalived.md
//! §2.5 (state machine) and §2.6 (receive checks), named as the rule they check.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::net::IpAddr;
use std::time::Duration;

use holdfast_vrrp::Instant;
use holdfast_vrrp::router::*;
use holdfast_vrrp::wire::*;

const ME: &str = "10.0.0.2";
const VIP: &str = "10.0.0.100";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct H {
    r: VirtualRouter,
    now: Instant,
    out: Vec<Output>,
}

impl H {
    fn with(cfg: RouterConfig) -> H {
        let mut h = H {
            r: VirtualRouter::new(cfg, Instant::ZERO, 1),
            now: Instant::ZERO,
            out: Vec::new(),
        };
        h.input(Input::SourceAddr(Some(ip(ME))));
        h.input(Input::Start);
        h
    }

    fn new(priority: u8) -> H {
        H::with(cfg(priority))
    }

    fn input(&mut self, i: Input<'_>) {
        self.r.handle(self.now, i);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.r.poll_output() {
            self.out.push(o);
        }
    }

    /// Advances virtual time by `d`, firing every timer on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.r.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.r.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    fn logs(&mut self) -> Vec<String> {
        self.take()
            .into_iter()
            .filter_map(|o| {
                if let Output::Log(l) = o {
                    Some(l.to_string())
                } else {
                    None
                }
            })
            .collect()
    }

    fn sends(&self) -> Vec<(IpAddr, AdvertRepr)> {
        let cfg = self.r.config();
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Send { dst, payload } => {
                    let ips = IpPair {
                        src: ip(ME),
                        dst: *dst,
                    };
                    Some((
                        *dst,
                        AdvertRepr::parse(&Packet::new_unchecked(&payload[..]), cfg.family, &ips)
                            .unwrap()
                            .0,
                    ))
                }
                _ => None,
            })
            .collect()
    }

    fn advert_bytes(&self, src: &str, priority: u8, f: impl FnOnce(&mut AdvertRepr)) -> Vec<u8> {
        let cfg = self.r.config();
        let mut a = AdvertRepr {
            version: cfg.version,
            vrid: cfg.vrid,
            priority,
            interval_cs: (cfg.advert_int.as_millis() / 10) as u16,
            addrs: cfg.vips.clone(),
            auth: cfg.auth,
        };
        f(&mut a);
        let dst = cfg
            .unicast_peers
            .first()
            .map_or(cfg.mcast_group, |_| ip(ME));
        a.to_bytes(ChecksumForm::PseudoHeader, &IpPair { src: ip(src), dst })
    }

    fn advert(&mut self, src: &str, priority: u8) {
        let bytes = self.advert_bytes(src, priority, |_| {});
        self.raw(src, 255, &bytes);
    }

    fn raw(&mut self, src: &str, ttl: u8, payload: &[u8]) {
        let cfg = self.r.config();
        let dst = if cfg.unicast_peers.is_empty() {
            cfg.mcast_group
        } else {
            ip(ME)
        };
        self.input(Input::Advert {
            src: ip(src),
            dst,
            ttl,
            payload,
            ah: None,
        });
    }

    fn state_changes(&self) -> Vec<(State, State, Reason)> {
        self.out
            .iter()
            .filter_map(|o| {
                if let Output::StateChanged { from, to, reason } = o {
                    Some((*from, *to, *reason))
                } else {
                    None
                }
            })
            .collect()
    }
}

fn cfg(priority: u8) -> RouterConfig {
    RouterConfig::new("VI_1", 51, priority, vec![ip(VIP)])
}

/// Master-down interval for v2 with a 1 s interval: 3 s + (256 − p)/256 s.
fn down(priority: u8) -> Duration {
    Duration::from_secs(3)
        + Duration::from_micros(u64::from(256 - u32::from(priority)) * 1_000_000 / 256)
}

// ---- §2.5: state machine ----

#[test]
fn owner_with_state_master_becomes_master_at_start() {
    let mut c = cfg(255);
    c.init_master = true;
    let h = H::with(c);
    assert_eq!(h.r.state(), State::Master);
    assert!(h.out.contains(&Output::AddVips));
}

#[test]
fn state_master_below_255_waits_like_a_backup() {
    let mut c = cfg(200);
    c.init_master = true;
    let mut h = H::with(c);
    assert_eq!(h.r.state(), State::Backup);
    assert_eq!(h.logs(), ["(VI_1) Entering BACKUP STATE (init)"]);
    h.advance(down(200) - Duration::from_micros(1));
    assert_eq!(h.r.state(), State::Backup);
    h.advance(Duration::from_micros(1));
    assert_eq!(h.r.state(), State::Master);
}

#[test]
fn backup_times_out_after_three_intervals_plus_skew_and_becomes_master_in_keepalived_order() {
    let mut h = H::new(100);
    h.take();
    h.advance(down(100) - Duration::from_micros(1));
    assert!(h.out.is_empty());
    h.advance(Duration::from_micros(1));
    let out = h.take();
    assert!(matches!(out[0], Output::Log(Log::ReceiveTimeout(_))));
    assert!(
        matches!(out[1], Output::Send { .. }),
        "advert first: {out:?}"
    );
    assert_eq!(
        out[2],
        Output::Log(Log::Entering("VI_1".into(), State::Master, false))
    );
    assert_eq!(out[3], Output::Log(Log::SettingVips("VI_1".into())));
    assert_eq!(out[4], Output::AddVips);
    assert_eq!(out[5], Output::Announce { count: 5 });
    assert_eq!(
        out[6],
        Output::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: Reason::MasterDown
        }
    );
    assert_eq!(down(100), Duration::from_micros(3_609_375));
}

#[test]
fn backup_takes_over_within_skew_after_a_priority_zero_advert() {
    let mut h = H::new(100);
    h.advance(ms(1000));
    h.advert("10.0.0.1", 0);
    assert!(
        h.logs()
            .contains(&"(VI_1) Backup received priority 0 advertisement".to_string())
    );
    h.advance(ms(609));
    assert_eq!(h.r.state(), State::Backup);
    h.advance(ms(1));
    assert_eq!(h.r.state(), State::Master);
    assert_eq!(h.r.stats().priority_zero_received, 1);
}

#[test]
fn backup_resets_the_down_timer_on_an_equal_or_higher_priority_advert() {
    let mut h = H::new(100);
    for _ in 0..10 {
        h.advance(ms(1000));
        h.advert("10.0.0.1", 150);
        h.advance(ms(1000));
        h.advert("10.0.0.1", 100);
    }
    assert_eq!(h.r.state(), State::Backup);
    assert_eq!(h.r.master_addr(), Some(ip("10.0.0.1")));
    h.advance(down(100));
    assert_eq!(h.r.state(), State::Master);
}

#[test]
fn backup_discards_a_lower_priority_advert_and_preempts_at_expiry() {
    let mut h = H::new(100);
    h.take();
    h.advance(ms(1000));
    h.advert("10.0.0.1", 50);
    assert_eq!(
        h.logs(),
        ["(VI_1) received lower priority (50) advert from 10.0.0.1 - discarding"]
    );
    h.advance(down(100) - ms(1000));
    assert_eq!(h.r.state(), State::Master);
}

#[test]
fn preempt_fast_backup_takes_over_a_lower_priority_master_after_skew_time() {
    let mut c = cfg(100);
    c.preempt_fast = true;
    let mut h = H::with(c);
    h.advance(ms(1000));
    h.advert("10.0.0.1", 150);
    h.advance(ms(1000));
    h.take();
    h.advert("10.0.0.1", 50);
    assert_eq!(
        h.logs(),
        ["(VI_1) received lower priority (50) advert from 10.0.0.1 - preempting"]
    );
    // Skew_Time for priority 100 at 1 s: (256 - 100) / 256 s = 609 ms.
    h.advance(ms(600));
    assert_eq!(h.r.state(), State::Backup);
    h.advance(ms(20));
    assert_eq!(h.r.state(), State::Master);
}

#[test]
fn preempt_fast_master_announces_a_lowered_priority_at_once() {
    let mut c = cfg(150);
    c.preempt_fast = true;
    c.trackers = vec![Tracker {
        weight: -60,
        reverse: false,
    }];
    let mut h = H::with(c);
    h.advance(down(150) + ms(10));
    assert_eq!(h.r.state(), State::Master);
    h.advance(ms(500));
    h.take();
    h.input(Input::Tracker {
        index: 0,
        up: false,
    });
    let sent: Vec<u8> = h
        .take()
        .iter()
        .filter_map(|o| match o {
            Output::Send { payload, .. } => Some(payload[2]),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [90],
        "one advert at the new priority, before the interval"
    );
}

#[test]
fn preempt_fast_does_not_override_nopreempt() {
    let mut c = cfg(200);
    c.nopreempt = true;
    c.preempt_fast = true;
    let mut h = H::with(c);
    for _ in 0..10 {
        h.advance(ms(1000));
        h.advert("10.0.0.1", 100);
    }
    assert_eq!(h.r.state(), State::Backup);
}

#[test]
fn nopreempt_backup_accepts_a_lower_priority_master() {
    let mut c = cfg(200);
    c.nopreempt = true;
    let mut h = H::with(c);
    for _ in 0..10 {
        h.advance(ms(1000));
        h.advert("10.0.0.1", 100);
    }
    assert_eq!(h.r.state(), State::Backup);
}

#[test]
fn preempt_delay_holds_a_takeover_until_it_elapses() {
    let mut c = cfg(200);
    c.preempt_delay = Duration::from_secs(10);
    let mut h = H::with(c);
    let mut became = None;
    for i in 0..30u64 {
        h.advance(ms(1000));
        if h.r.state() == State::Master {
            became = Some(i);
            break;
        }
        h.advert("10.0.0.1", 100);
    }
    // Adverts from the lower master are accepted for 10 s, then discarded: master at ~13 s.
    assert!(became.is_some_and(|s| (12..=14).contains(&s)), "{became:?}");
}

#[test]
fn master_sends_an_advert_every_interval() {
    let mut c = cfg(255);
    c.init_master = true;
    let mut h = H::with(c);
    h.take();
    h.advance(ms(10_000));
    let sends = h.sends();
    assert_eq!(sends.len(), 10);
    assert!(
        sends
            .iter()
            .all(|(d, a)| *d == ip("224.0.0.18") && a.priority == 255)
    );
}

#[test]
fn master_answers_a_priority_zero_advert_with_an_immediate_advert() {
    let mut h = master(100);
    h.advert("10.0.0.1", 0);
    assert_eq!(h.sends().len(), 1);
    assert_eq!(h.r.state(), State::Master);
}

fn master(priority: u8) -> H {
    let mut h = H::new(priority);
    h.advance(down(priority));
    assert_eq!(h.r.state(), State::Master);
    h.take();
    h
}

#[test]
fn master_yields_to_a_higher_priority_and_removes_its_vips() {
    let mut h = master(100);
    h.advert("10.0.0.1", 150);
    assert_eq!(h.r.state(), State::Backup);
    assert!(h.out.contains(&Output::RemoveVips));
    assert_eq!(
        h.state_changes(),
        [(State::Master, State::Backup, Reason::HigherPriority)]
    );
    let logs = h.logs();
    assert!(
        logs.contains(
            &"(VI_1) Master received advert from 10.0.0.1 with higher priority 150, ours 100"
                .to_string()
        )
    );
    assert!(logs.contains(&"(VI_1) Entering BACKUP STATE".to_string()));
    assert_eq!(h.r.stats().released_master, 1);
}

#[test]
fn master_yields_on_equal_priority_from_a_higher_address() {
    let mut h = master(100);
    h.advert("10.0.0.9", 100);
    assert_eq!(h.r.state(), State::Backup);
    assert!(h.logs().contains(&"(VI_1) Master received advert from 10.0.0.9 with same priority 100 but higher IP address than ours".to_string()));
}

#[test]
fn master_forces_a_new_election_on_a_lower_priority_advert() {
    let mut h = master(100);
    h.advert("10.0.0.1", 100);
    assert_eq!(h.r.state(), State::Master);
    assert_eq!(h.sends().len(), 1);
    assert!(h.out.contains(&Output::Announce { count: 5 }));
    assert!(h.out.contains(&Output::MasterRxLowerPri));
    assert!(h.logs().contains(&"(VI_1) Received advert from 10.0.0.1 with lower priority 100, ours 100, forcing new election".to_string()));
}

#[test]
fn lower_prio_no_advert_keeps_a_master_quiet_on_a_lower_priority_advert() {
    let mut c = cfg(100);
    c.lower_prio_no_advert = true;
    let mut h = H::with(c);
    h.advance(down(100));
    h.take();
    h.advert("10.0.0.1", 50);
    assert!(h.sends().is_empty());
    assert!(h.logs().contains(
        &"(VI_1) Received advert from 10.0.0.1 with lower priority 50, ours 100".to_string()
    ));
}

#[test]
fn higher_prio_send_advert_sends_one_advert_before_yielding() {
    let mut c = cfg(100);
    c.higher_prio_send_advert = true;
    let mut h = H::with(c);
    h.advance(down(100));
    h.take();
    h.advert("10.0.0.1", 200);
    assert_eq!(h.sends().len(), 1);
    assert_eq!(h.r.state(), State::Backup);
}

#[test]
fn of_two_owners_the_lower_address_steps_down_to_254() {
    let mut c = cfg(255);
    c.init_master = true;
    let mut h = H::with(c);
    h.take();
    h.advert("10.0.0.9", 255);
    assert_eq!(h.r.effective_priority(), 254);
    assert_eq!(h.r.state(), State::Backup);
    assert!(
        h.logs()
            .iter()
            .any(|l| l.contains("both configured as address owner"))
    );
}

#[test]
fn a_failing_weight_zero_tracker_faults_a_master_after_a_priority_zero_advert() {
    let mut c = cfg(100);
    c.trackers = vec![Tracker {
        weight: 0,
        reverse: false,
    }];
    let mut h = H::with(c);
    h.advance(down(100));
    h.take();
    h.input(Input::Tracker {
        index: 0,
        up: false,
    });
    assert_eq!(h.r.state(), State::Fault);
    assert_eq!(h.sends()[0].1.priority, 0);
    assert!(h.out.contains(&Output::RemoveVips));
    assert_eq!(
        h.state_changes(),
        [(State::Master, State::Fault, Reason::Fault)]
    );
}

#[test]
fn recovery_from_fault_goes_to_backup_not_master() {
    let mut c = cfg(100);
    c.trackers = vec![Tracker {
        weight: 0,
        reverse: false,
    }];
    let mut h = H::with(c);
    h.input(Input::Tracker {
        index: 0,
        up: false,
    });
    assert_eq!(h.r.state(), State::Fault);
    h.take();
    h.input(Input::Tracker { index: 0, up: true });
    assert_eq!(h.r.state(), State::Backup);
    assert_eq!(
        h.state_changes(),
        [(State::Fault, State::Backup, Reason::Recovered)]
    );
}

#[test]
fn a_weight_zero_tracker_down_at_start_enters_fault_init() {
    let mut c = cfg(100);
    c.trackers = vec![Tracker {
        weight: 0,
        reverse: true,
    }];
    let mut r = VirtualRouter::new(c, Instant::ZERO, 0);
    r.handle(Instant::ZERO, Input::SourceAddr(Some(ip(ME))));
    // `weight 0 reverse`: FAULT while the tracker is up (trackers start up).
    r.handle(Instant::ZERO, Input::Start);
    assert_eq!(r.state(), State::Fault);
    let first = std::iter::from_fn(|| r.poll_output()).find_map(|o| {
        if let Output::Log(l) = o {
            Some(l.to_string())
        } else {
            None
        }
    });
    assert_eq!(first.as_deref(), Some("(VI_1) Entering FAULT STATE (init)"));
}

#[test]
fn tracker_weights_follow_keepalived_signs_reverse_and_clamping() {
    let mut c = cfg(100);
    c.trackers = vec![
        Tracker {
            weight: 20,
            reverse: false,
        },
        Tracker {
            weight: -30,
            reverse: false,
        },
        Tracker {
            weight: 10,
            reverse: true,
        },
        Tracker {
            weight: -200,
            reverse: false,
        },
    ];
    let mut h = H::with(c);
    // All up: +20, -30 not applied, reverse +10 not applied, -200 not applied.
    assert_eq!(h.r.effective_priority(), 120);
    h.input(Input::Tracker {
        index: 1,
        up: false,
    });
    assert_eq!(h.r.effective_priority(), 90);
    h.input(Input::Tracker {
        index: 2,
        up: false,
    });
    assert_eq!(h.r.effective_priority(), 100);
    h.input(Input::Tracker {
        index: 3,
        up: false,
    });
    assert_eq!(h.r.effective_priority(), 1, "clamped to 1");
    assert!(
        h.logs()
            .contains(&"(VI_1) Changing effective priority from 100 to 1".to_string())
    );
}

#[test]
fn an_owners_priority_is_never_adjusted() {
    let mut c = cfg(255);
    c.trackers = vec![Tracker {
        weight: -50,
        reverse: false,
    }];
    let mut h = H::with(c);
    h.input(Input::Tracker {
        index: 0,
        up: false,
    });
    assert_eq!(h.r.effective_priority(), 255);
}

#[test]
fn the_link_going_down_faults_the_instance() {
    let mut h = master(100);
    h.input(Input::Link(false));
    assert_eq!(h.r.state(), State::Fault);
    h.input(Input::Link(true));
    assert_eq!(h.r.state(), State::Backup);
}

#[test]
fn stop_sends_priority_zero_and_removes_the_vips() {
    let mut h = master(100);
    h.input(Input::Stop);
    assert_eq!(h.sends()[0].1.priority, 0);
    assert!(h.out.contains(&Output::RemoveVips));
    assert!(h.logs().contains(&"(VI_1) sent 0 priority".to_string()));
    assert_eq!(h.r.state(), State::Init);
    assert_eq!(h.r.poll_timeout(), None);
}

#[test]
fn a_v3_backup_adopts_the_masters_interval() {
    let mut c = cfg(100);
    c.version = Version::V3;
    let mut h = H::with(c);
    let bytes = h.advert_bytes("10.0.0.1", 200, |a| a.interval_cs = 10);
    h.raw("10.0.0.1", 255, &bytes);
    // Master_Down = 3 × 0.1 s + (156 × 0.1 s)/256 ≈ 0.361 s.
    h.advance(ms(360));
    assert_eq!(h.r.state(), State::Backup);
    h.advance(ms(2));
    assert_eq!(h.r.state(), State::Master);
}

#[test]
fn a_second_garp_burst_follows_after_garp_master_delay_and_refresh_repeats() {
    let mut c = cfg(100);
    c.garp.master_refresh = Some(Duration::from_secs(60));
    let mut h = H::with(c);
    h.advance(down(100));
    h.take();
    h.advance(ms(5000));
    assert!(h.take().contains(&Output::Announce { count: 5 }));
    h.advance(ms(55_000));
    assert!(h.take().contains(&Output::Announce { count: 1 }));
}

#[test]
fn an_equal_priority_advert_from_our_own_address_is_warned_about() {
    let mut h = master(100);
    h.advert(ME, 100);
    assert!(h.logs().contains(&"(VI_1) WARNING - equal priority advert received from remote host with our IP address.".to_string()));
    assert_eq!(h.r.state(), State::Master);
}

#[test]
fn unicast_mode_sends_one_advert_to_each_peer() {
    let mut c = cfg(100);
    c.unicast_peers = vec![
        Peer {
            addr: ip("10.0.0.1"),
            min_ttl: None,
            max_ttl: None,
        },
        Peer {
            addr: ip("10.0.0.3"),
            min_ttl: None,
            max_ttl: None,
        },
    ];
    let mut h = H::with(c);
    h.advance(down(100));
    let dsts: Vec<IpAddr> = h.sends().into_iter().map(|(d, _)| d).collect();
    assert_eq!(dsts, [ip("10.0.0.1"), ip("10.0.0.3")]);
    assert_eq!(h.r.stats().adverts_sent, 1);
}

#[test]
fn a_reload_keeps_a_master_master_and_diffs_its_vips() {
    let mut h = master(100);
    let mut c = h.r.config().clone();
    c.vips = vec![ip(VIP), ip("10.0.0.101")];
    c.priority = 120;
    h.input(Input::Reload(&std::sync::Arc::new(c)));
    assert_eq!(h.r.state(), State::Master);
    assert!(h.out.contains(&Output::VipsChanged {
        added: vec![ip("10.0.0.101")],
        removed: vec![]
    }));
    assert!(!h.out.contains(&Output::RemoveVips));
    assert_eq!(h.r.effective_priority(), 120);
    h.take();
    h.advance(ms(1000));
    assert_eq!(h.sends()[0].1.addrs.len(), 2);
}

#[test]
fn a_burst_of_reloads_does_not_postpone_the_masters_adverts() {
    let mut h = master(100);
    h.take();
    // A reload every 300 ms for 3 s (a SIGHUP burst): the MASTER still sends on its own
    // 1 s schedule, so a BACKUP never sees three intervals of silence.
    let same = std::sync::Arc::new(h.r.config().clone());
    let mut sent_at = Vec::new();
    for _ in 0..10 {
        h.advance(ms(300));
        h.input(Input::Reload(&same));
        if !h.sends().is_empty() {
            sent_at.push(h.now);
        }
        h.take();
    }
    assert_eq!(h.r.state(), State::Master);
    assert!(sent_at.len() >= 2, "adverts at {sent_at:?}");
    let gaps = sent_at.windows(2).map(|w| w[1] - w[0]);
    // (Seen at 300 ms steps: an advert on time shows up to 300 ms late.)
    assert!(
        gaps.clone().all(|g| g <= ms(1300)),
        "{:?}",
        gaps.collect::<Vec<_>>()
    );
}

#[test]
fn a_reload_to_a_shorter_advert_interval_takes_effect_at_once() {
    let mut h = master(100);
    h.take();
    h.advance(ms(100));
    let mut c = h.r.config().clone();
    c.advert_int = ms(200);
    h.input(Input::Reload(&std::sync::Arc::new(c)));
    h.advance(ms(200));
    assert_eq!(h.sends().len(), 1, "no advert within the new interval");
}

#[test]
fn a_flood_of_lower_priority_adverts_is_answered_once_an_interval() {
    let mut h = master(150);
    h.take();
    // 1 000 in 100 ms.
    for _ in 0..1000 {
        h.advert("10.0.0.1", 100);
        h.now = h.now + Duration::from_micros(100);
    }
    let out = h.take();
    let count = |f: &dyn Fn(&Output) -> bool| out.iter().filter(|o| f(o)).count();
    assert_eq!(count(&|o| matches!(o, Output::Send { .. })), 1);
    assert_eq!(count(&|o| matches!(o, Output::Announce { .. })), 1);
    assert_eq!(count(&|o| matches!(o, Output::MasterRxLowerPri)), 1);
    assert_eq!(count(&|o| matches!(o, Output::Log(_))), 1);
    assert_eq!(h.r.stats().lower_priority_unanswered, 999);
    assert_eq!(h.r.state(), State::Master);
    // An interval later the next one is answered again.
    h.now = h.now + ms(1000);
    h.advert("10.0.0.1", 100);
    assert!(
        h.take()
            .iter()
            .any(|o| matches!(o, Output::MasterRxLowerPri))
    );
}

#[test]
fn a_reload_continues_a_router_by_keepalived_s_rule() {
    let base = cfg(100);
    fn at(c: &RouterConfig) -> Placement<'_> {
        Placement {
            interface: "eth0",
            source: None,
            unicast_ttl: 255,
            vmac: None,
            config: c,
        }
    }
    let same = |f: &dyn Fn(&mut RouterConfig)| {
        let mut c = base.clone();
        f(&mut c);
        continues(&at(&base), &at(&c))
    };
    // Other settings change in place.
    assert!(same(&|c| c.priority = 200));
    assert!(same(&|c| c.vips.push(ip("10.0.0.101"))));
    assert!(same(&|c| c.advert_int = ms(500)));
    assert!(same(&|c| c.version = Version::V3));
    // Another router: another VRID, another multicast group, unicast instead of multicast.
    assert!(!same(&|c| c.vrid = 52));
    assert!(!same(&|c| c.mcast_group = ip("224.0.0.19")));
    assert!(!same(&|c| {
        c.unicast_peers = vec![Peer {
            addr: ip("10.0.0.1"),
            min_ttl: None,
            max_ttl: None,
        }]
    }));
    // Another interface or source.
    let moved = Placement {
        interface: "eth1",
        ..at(&base)
    };
    assert!(!continues(&at(&base), &moved));
    let sourced = Placement {
        source: Some(ip(ME)),
        ..at(&base)
    };
    assert!(!continues(&at(&base), &sourced));
    // A macvlan given, or another one.
    let vmac = Placement {
        vmac: Some(("vrrp.51", [0, 0, 0x5e, 0, 1, 51], false)),
        ..at(&base)
    };
    assert!(!continues(&at(&base), &vmac));
    assert!(continues(&vmac, &vmac));
    let xmit_base = Placement {
        vmac: Some(("vrrp.51", [0, 0, 0x5e, 0, 1, 51], true)),
        ..at(&base)
    };
    assert!(!continues(&vmac, &xmit_base));
    // In unicast, peers may change; the group means nothing.
    let mut u1 = base.clone();
    u1.unicast_peers = vec![Peer {
        addr: ip("10.0.0.1"),
        min_ttl: None,
        max_ttl: None,
    }];
    let mut u2 = u1.clone();
    u2.unicast_peers[0].addr = ip("10.0.0.3");
    u2.mcast_group = ip("224.0.0.19");
    assert!(continues(&at(&u1), &at(&u2)));
}

#[test]
fn a_reload_to_another_router_leaves_the_running_one_alone() {
    let mut h = master(100);
    h.take();
    let mut c = h.r.config().clone();
    c.vrid = 52;
    h.input(Input::Reload(&std::sync::Arc::new(c)));
    assert_eq!(h.r.config().vrid, 51);
    assert_eq!(h.r.state(), State::Master);
}

// ---- §2.6: receive checks, in keepalived's order ----

fn dropped(h: &mut H, reason: Drop) -> String {
    assert_eq!(
        h.r.stats().dropped(reason),
        1,
        "{reason:?}: {:?}",
        h.r.stats()
    );
    h.logs().last().cloned().unwrap_or_default()
}

#[test]
fn a_truncated_or_padded_packet_is_dropped_as_a_length_error() {
    let mut h = H::new(100);
    let b = h.advert_bytes("10.0.0.1", 100, |_| {});
    h.raw("10.0.0.1", 255, &b[..b.len() - 1]);
    assert_eq!(
        dropped(&mut h, Drop::Length),
        "(VI_1) vrrp packet too short/long, length 19 and expect 20"
    );
}

#[test]
fn a_multicast_advert_with_ttl_below_255_is_dropped() {
    let mut h = H::new(100);
    let b = h.advert_bytes("10.0.0.1", 100, |_| {});
    h.raw("10.0.0.1", 254, &b);
    assert_eq!(
        dropped(&mut h, Drop::Ttl),
        "(VI_1) invalid TTL/HL. Received 254 and expect 255"
    );
}

#[test]
fn a_unicast_advert_ttl_is_only_checked_against_min_and_max_ttl() {
    let mut c = cfg(100);
    c.unicast_peers = vec![Peer {
        addr: ip("10.0.0.1"),
        min_ttl: Some(250),
        max_ttl: None,
    }];
    let mut h = H::with(c);
    let b = h.advert_bytes("10.0.0.1", 100, |_| {});
    h.raw("10.0.0.1", 251, &b);
    assert_eq!(h.r.stats().adverts_received, 1);
    h.raw("10.0.0.1", 64, &b);
    assert_eq!(
        dropped(&mut h, Drop::Ttl),
        "(VI_1) TTL/HL 64 not in range 250 - 255"
    );
}

#[test]
fn a_wrong_version_is_dropped() {
    let mut h = H::new(100);
    let b = h.advert_bytes("10.0.0.1", 100, |a| {
        a.version = Version::V3;
        a.interval_cs = 100;
    });
    // A v3 packet is 8 bytes shorter; keepalived checks the version after the length
    // computed from the packet's own version.
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(
        dropped(&mut h, Drop::Version),
        "(VI_1) wrong version. Received 3 and expect 2"
    );
}

#[test]
fn v2_authentication_type_and_password_are_checked() {
    let mut c = cfg(100);
    c.auth = Auth::pass("secret99");
    let mut h = H::with(c);
    let none = h.advert_bytes("10.0.0.1", 100, |a| a.auth = Auth::None);
    h.raw("10.0.0.1", 255, &none);
    assert_eq!(
        dropped(&mut h, Drop::AuthTypeMismatch),
        "(VI_1) received a 0 auth, expecting 1!"
    );
    let wrong = h.advert_bytes("10.0.0.1", 100, |a| a.auth = Auth::pass("secret98"));
    h.raw("10.0.0.1", 255, &wrong);
    assert_eq!(
        dropped(&mut h, Drop::AuthFailure),
        "(VI_1) received an invalid passwd!"
    );
    let mut bad_type = h.advert_bytes("10.0.0.1", 100, |_| {});
    bad_type[4] = 7;
    h.raw("10.0.0.1", 255, &bad_type);
    assert_eq!(
        dropped(&mut h, Drop::InvalidAuthType),
        "(VI_1) Invalid auth type: 7"
    );
    let good = h.advert_bytes("10.0.0.1", 100, |_| {});
    h.raw("10.0.0.1", 255, &good);
    assert_eq!(h.r.stats().adverts_received, 1);
}

#[test]
fn a_v2_interval_mismatch_is_dropped() {
    let mut h = H::new(100);
    let b = h.advert_bytes("10.0.0.1", 100, |a| a.interval_cs = 200);
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(
        dropped(&mut h, Drop::Interval),
        "(VI_1) advertisement interval mismatch mine=1 sec rcv'd=2 sec"
    );
}

#[test]
fn a_non_advertisement_type_is_dropped() {
    let mut h = H::new(100);
    let mut b = h.advert_bytes("10.0.0.1", 100, |_| {});
    b[0] = 0x22;
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(dropped(&mut h, Drop::Type), "(VI_1) Invalid packet type");
}

#[test]
fn a_bad_checksum_is_dropped() {
    let mut h = H::new(100);
    let mut b = h.advert_bytes("10.0.0.1", 100, |_| {});
    b[6] ^= 0xff;
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(
        dropped(&mut h, Drop::Checksum),
        "(VI_1) Invalid VRRPv2 checksum"
    );
}

#[test]
fn a_v3_ipv4_advert_with_a_message_only_checksum_is_accepted_and_remembered() {
    let mut c = cfg(100);
    c.version = Version::V3;
    let mut h = H::with(c);
    let cfgc = h.r.config().clone();
    let a = AdvertRepr {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        addrs: cfgc.vips.clone(),
        auth: Auth::None,
    };
    let b = a.to_bytes(
        ChecksumForm::MessageOnly,
        &IpPair {
            src: ip("10.0.0.1"),
            dst: cfgc.mcast_group,
        },
    );
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(h.r.stats().adverts_received, 1);
    assert_eq!(
        h.r.peer_checksum_form(ip("10.0.0.1")),
        Some(ChecksumForm::MessageOnly)
    );
}

#[test]
fn checksum_forms_are_kept_for_valid_senders_only_and_boundedly() {
    let mut c = cfg(100);
    c.version = Version::V3;
    let mut h = H::with(c);
    let cfgc = h.r.config().clone();
    let advert = |src: &str, vips: Vec<IpAddr>| {
        AdvertRepr {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addrs: vips,
            auth: Auth::None,
        }
        .to_bytes(
            ChecksumForm::MessageOnly,
            &IpPair {
                src: ip(src),
                dst: cfgc.mcast_group,
            },
        )
    };
    // Dropped (wrong address list): not remembered.
    h.raw("10.0.1.1", 255, &advert("10.0.1.1", vec![ip("10.9.9.9")]));
    assert_eq!(h.r.peer_checksum_form(ip("10.0.1.1")), None);
    // A thousand valid senders: the most recent are kept, no more.
    for i in 0..1000u32 {
        let src = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        h.raw(&src, 255, &advert(&src, cfgc.vips.clone()));
    }
    let kept = (0..1000u32)
        .filter(|i| {
            let src = format!("10.1.{}.{}", i / 250, i % 250 + 1);
            h.r.peer_checksum_form(ip(&src)).is_some()
        })
        .count();
    assert_eq!(kept, PEER_FORMS);
    assert!(h.r.peer_checksum_form(ip("10.1.3.250")).is_some());
}

#[test]
fn a_multicast_advert_in_unicast_mode_is_dropped() {
    let mut c = cfg(100);
    c.unicast_peers = vec![Peer {
        addr: ip("10.0.0.1"),
        min_ttl: None,
        max_ttl: None,
    }];
    let mut h = H::with(c);
    let a = h.advert_bytes("10.0.0.1", 100, |_| {});
    h.input(Input::Advert {
        src: ip("10.0.0.1"),
        dst: ip("224.0.0.18"),
        ttl: 255,
        payload: &a,
        ah: None,
    });
    assert_eq!(
        dropped(&mut h, Drop::Addressing),
        "(VI_1) Expected unicast packet but received multicast packet"
    );
}

#[test]
fn keepalived_2_2_drops_an_advert_with_another_address_count() {
    let mut h = H::new(100);
    let b = h.advert_bytes("10.0.0.1", 100, |a| a.addrs.push(ip("10.0.0.101")));
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(
        dropped(&mut h, Drop::AddressCount),
        "(VI_1) received an unexpected ip number count 2, expected 1!"
    );
}

#[test]
fn keepalived_2_2_drops_an_advert_with_another_address_list_unless_skipped_for_the_same_master() {
    let mut c = cfg(100);
    c.skip_check_adv_addr = true;
    let mut h = H::with(c);
    let b = h.advert_bytes("10.0.0.1", 100, |a| a.addrs = vec![ip("10.0.0.99")]);
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(
        dropped(&mut h, Drop::AddressList),
        "(VI_1) ip address associated with VRID 51 not present in MASTER advert: 10.0.0.100"
    );
    h.advert("10.0.0.1", 100);
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(
        h.r.stats().adverts_received,
        2,
        "same master: list check skipped"
    );
}

#[test]
fn unicast_sources_are_checked_only_with_check_unicast_src() {
    let peers = vec![Peer {
        addr: ip("10.0.0.1"),
        min_ttl: None,
        max_ttl: None,
    }];
    let mut c = cfg(100);
    c.unicast_peers = peers.clone();
    let mut h = H::with(c.clone());
    h.advert("10.0.0.7", 100);
    assert_eq!(
        h.r.stats().adverts_received,
        1,
        "default: any source accepted"
    );
    c.check_unicast_src = true;
    let mut h = H::with(c);
    h.advert("10.0.0.7", 100);
    assert_eq!(
        dropped(&mut h, Drop::NotPeer),
        "(VI_1) unicast source address 10.0.0.7 not a unicast peer"
    );
}

#[test]
fn priority_zero_adverts_are_counted() {
    let mut h = H::new(100);
    h.advert("10.0.0.1", 0);
    h.advert("10.0.0.1", 0);
    assert_eq!(h.r.stats().priority_zero_received, 2);
}

#[test]
fn an_advert_for_another_vrid_is_ignored_silently() {
    let mut h = H::new(100);
    h.take();
    let b = h.advert_bytes("10.0.0.1", 100, |a| a.vrid = 52);
    h.raw("10.0.0.1", 255, &b);
    assert_eq!(h.r.stats().dropped(Drop::Vrid), 1);
    assert!(h.logs().is_empty());
}

#[test]
fn a_fault_forced_by_the_sync_group_is_reported_as_sync_and_cleared_by_it() {
    let mut h = master(100);
    h.input(Input::Sync(SyncCmd::Fault));
    assert_eq!(h.r.state(), State::Fault);
    assert_eq!(
        h.state_changes(),
        [(State::Master, State::Fault, Reason::Sync)]
    );
    h.take();
    h.input(Input::Sync(SyncCmd::ClearFault));
    assert_eq!(h.r.state(), State::Backup);
    assert_eq!(
        h.state_changes(),
        [(State::Fault, State::Backup, Reason::Sync)]
    );
}

#[test]
fn a_sync_master_command_takes_a_backup_to_master_at_once() {
    let mut h = H::new(100);
    h.take();
    h.input(Input::Sync(SyncCmd::Master));
    assert_eq!(h.r.state(), State::Master);
    assert!(h.out.contains(&Output::AddVips));
}

#[test]
fn a_track_file_value_times_its_weight_moves_the_priority_and_weight_zero_faults() {
    let mut c = cfg(100);
    c.trackers = vec![
        Tracker {
            weight: -10,
            reverse: false,
        },
        Tracker {
            weight: 0,
            reverse: false,
        },
    ];
    let mut h = H::with(c);
    h.input(Input::TrackerValue { index: 0, value: 3 });
    assert_eq!(h.r.effective_priority(), 70);
    h.input(Input::TrackerValue { index: 0, value: 0 });
    assert_eq!(h.r.effective_priority(), 100);
    h.input(Input::TrackerValue { index: 1, value: 0 });
    assert_eq!(h.r.state(), State::Backup);
    h.input(Input::TrackerValue { index: 1, value: 1 });
    assert_eq!(h.r.state(), State::Fault);
    h.input(Input::TrackerValue { index: 1, value: 0 });
    h.input(Input::TrackerValue {
        index: 0,
        value: 30,
    });
    assert_eq!(h.r.state(), State::Fault, "-300 is below -253");
}

/// `auth_type AH`: a router keyed with "secret".
fn ah_cfg(priority: u8) -> RouterConfig {
    let mut c = cfg(priority);
    c.auth = Auth::ah("secret");
    c
}

/// A whole IPv4 packet as a peer at `src` sends it: its IPv4 header (TTL 255 to the VRRP
/// group), an AH header with `seq`, and `vrrp`, signed with `key`.
fn ah_packet(src: &str, seq: u32, vrrp: &[u8], key: &str) -> Vec<u8> {
    use holdfast_vrrp::ah;
    let IpAddr::V4(s) = ip(src) else {
        unreachable!()
    };
    let total = (20 + ah::AH_LEN + vrrp.len()) as u16;
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 7, 0, 0, 255, ah::PROTO_AH, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&[224, 0, 0, 18]);
    p.extend_from_slice(&ah::header(s, seq));
    p.extend_from_slice(vrrp);
    let Auth::Ah(k) = Auth::ah(key) else {
        unreachable!()
    };
    ah::sign(&k, &mut p, false);
    p
}

impl H {
    /// Feeds a packet made by [`ah_packet`].
    fn ah_input(&mut self, packet: &[u8]) {
        let (header, rest) = packet.split_at(20);
        let (a, vrrp) = rest.split_at(holdfast_vrrp::ah::AH_LEN);
        let a: &[u8; 24] = a.try_into().unwrap();
        let src = IpAddr::from([header[12], header[13], header[14], header[15]]);
        self.input(Input::Advert {
            src,
            dst: ip("224.0.0.18"),
            ttl: 255,
            payload: vrrp,
            ah: Some(AhPart {
                ip_header: header,
                ah: a,
            }),
        });
    }
}

#[test]
fn ah_adverts_carry_an_ah_header_with_a_rising_sequence_number_and_no_password() {
    let mut h = H::with(ah_cfg(150));
    h.advance(Duration::from_secs(4));
    assert_eq!(h.r.state(), State::Master);
    h.advance(Duration::from_secs(1));
    let sent: Vec<Vec<u8>> = h
        .take()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert!(sent.len() >= 2, "{sent:?}");
    for (k, p) in sent.iter().enumerate() {
        // Next header VRRP, length 4, SPI our address, sequence 1, 2, …, a zero ICV (the
        // sender signs the whole packet).
        assert_eq!(p[..4], [112, 4, 0, 0]);
        assert_eq!(p[4..8], [10, 0, 0, 2]);
        assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), k as u32 + 1);
        assert_eq!(p[12..24], [0; 12]);
        let vrrp = Packet::new_unchecked(&p[24..]);
        assert_eq!(vrrp.auth_type(), 2);
        assert_eq!(vrrp.auth_data(), [0; 8]);
    }
    // No last words under AH (a number signed in advance would be refused).
    assert!(h.r.adverts(0).is_empty());
}

#[test]
fn ah_adverts_are_checked_for_their_icv_spi_and_sequence_as_keepalived_checks_them() {
    let mut h = H::with(ah_cfg(100));
    let vrrp = h.advert_bytes("10.0.0.1", 150, |_| {});
    h.ah_input(&ah_packet("10.0.0.1", 5, &vrrp, "secret"));
    assert_eq!(h.r.stats().adverts_received, 1);
    assert_eq!(h.r.master_addr(), Some(ip("10.0.0.1")));
    // The same number again: a replay.
    h.take();
    h.ah_input(&ah_packet("10.0.0.1", 5, &vrrp, "secret"));
    assert_eq!(
        dropped(&mut h, Drop::AuthFailure),
        "(VI_1) IPSEC-AH : sequence number 5 already processed. Packet dropped. Local(5)"
    );
    // Another password.
    let mut h = H::with(ah_cfg(100));
    h.ah_input(&ah_packet("10.0.0.1", 6, &vrrp, "other"));
    assert_eq!(
        dropped(&mut h, Drop::AuthFailure),
        "(VI_1) IPSEC-AH : invalid IPSEC HMAC-MD5 value. Due to fields mutation or bad password !"
    );
    // Without an AH header.
    let mut h = H::with(ah_cfg(100));
    h.raw("10.0.0.1", 255, &vrrp);
    assert_eq!(
        dropped(&mut h, Drop::AuthTypeMismatch),
        "(VI_1) No AH header but auth type is AH"
    );
    // A valid signature whose SPI is not the sender.
    let mut h = H::with(ah_cfg(100));
    let mut p = ah_packet("10.0.0.1", 7, &vrrp, "secret");
    p[24..28].copy_from_slice(&[10, 0, 0, 9]);
    let Auth::Ah(k) = Auth::ah("secret") else {
        unreachable!()
    };
    holdfast_vrrp::ah::sign(&k, &mut p, false);
    h.ah_input(&p);
    assert_eq!(h.r.stats().dropped(Drop::AuthFailure), 1);
    assert!(
        h.logs()
            .last()
            .is_some_and(|l| l.starts_with("IPSEC AH : invalid IPSEC SPI value."))
    );
}

#[test]
fn an_ah_master_answering_a_lower_priority_one_carries_on_from_its_sequence_number() {
    let mut h = H::with(ah_cfg(150));
    h.advance(Duration::from_secs(4));
    assert_eq!(h.r.state(), State::Master);
    h.take();
    let vrrp = h.advert_bytes("10.0.0.1", 100, |_| {});
    h.ah_input(&ah_packet("10.0.0.1", 1000, &vrrp, "secret"));
    let logs: Vec<String> = h
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Log(l) => Some(l.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        logs.contains(&"(VI_1) IPSEC-AH : Syncing seq_num - Increment seq".to_string()),
        "{logs:?}"
    );
    // The answer carries 1001 + 1.
    let seq = h.out.iter().find_map(|o| match o {
        Output::Send { payload, .. } => Some(u32::from_be_bytes([
            payload[8],
            payload[9],
            payload[10],
            payload[11],
        ])),
        _ => None,
    });
    assert_eq!(seq, Some(1002));
}
