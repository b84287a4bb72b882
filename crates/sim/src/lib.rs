//! holdfast-sim: N virtual routers on one simulated segment, driven by a seeded event queue.
//!
//! The network loses, delays, jitters (and so reorders) and duplicates adverts per link; it is
//! partitioned and healed; routers crash (silently), stop (priority 0), restart, and run on
//! clocks that drift. After every event the invariants of DESIGN.md's simulation tier are
//! checked; the first violation stops the run with a description. Everything follows from the
//! seed, so a failing seed replays exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use holdfast_vrrp::Instant;
use holdfast_vrrp::router::{Input, Output, RouterConfig, State, VirtualRouter};
use holdfast_vrrp::wire::{Family, Packet, Version};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Link behaviour.
#[derive(Clone, Debug)]
pub struct Net {
    /// Probability an advert is lost on one link.
    pub loss: f64,
    /// Probability an advert is delivered twice.
    pub duplicate: f64,
    /// Smallest delivery delay.
    pub min_delay: Duration,
    /// Largest delivery delay (jitter makes adverts overtake each other).
    pub max_delay: Duration,
}

/// What a scenario may do to the routers and the network.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name, for the replay command.
    pub name: &'static str,
    /// Routers: 2..=5.
    pub routers: std::ops::RangeInclusive<usize>,
    /// Link behaviour.
    pub net: Net,
    /// Topology events (crash, stop, restart, partition, heal) per run.
    pub events: usize,
    /// Largest clock drift, in parts per million.
    pub drift_ppm: u32,
    /// Simulated duration.
    pub duration: Duration,
    /// Every router runs with holdfast's `preempt_fast`.
    pub preempt_fast: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Deliver packet `pkt` to router `to`.
    Deliver { to: usize, pkt: usize },
    /// Router timer (stale unless `gen` is current).
    Timer { r: usize, generation: u64 },
    /// Topology event `i` of the plan.
    Topo { i: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topo {
    Crash(usize),
    Stop(usize),
    Start(usize),
    Partition(u32),
    Heal,
}

struct Node {
    router: VirtualRouter,
    addr: IpAddr,
    up: bool,
    vips: bool,
    rate_ppm: i64,
    timer_gen: u64,
}

/// One run.
pub struct Sim {
    seed: u64,
    rng: SmallRng,
    net: Net,
    nodes: Vec<Node>,
    cfgs: Vec<RouterConfig>,
    queue: BinaryHeap<Reverse<(Instant, u64, Ev)>>,
    seq: u64,
    packets: Vec<(usize, IpAddr, Vec<u8>)>,
    plan: Vec<(Instant, Topo)>,
    /// Partition as a bit mask of the nodes on side 1 (0 = none).
    partition: u32,
    now: Instant,
    last_topo: Instant,
    /// Since when each component has had a number of masters other than one.
    anomaly_since: Vec<Option<(Instant, usize)>>,
    /// First invariant violation seen while draining outputs.
    pending: Option<String>,
    /// After a master stops (priority 0) on a loss-free network: when a new master must exist.
    fast_takeover: Option<(Instant, Vec<usize>, usize)>,
    steps: u64,
    /// Largest time to convergence observed.
    pub worst_convergence: Duration,
    /// Masters elected over the run.
    pub elections: u64,
}

/// Events per run before the simulation declares a livelock.
const MAX_STEPS: u64 = 2_000_000;

fn local(rate_ppm: i64, t: Instant) -> Instant {
    let us = t.0 as i128;
    Instant((us + us * i128::from(rate_ppm) / 1_000_000).max(0) as u64)
}

fn global(rate_ppm: i64, t: Instant) -> Instant {
    let us = t.0 as i128;
    // Inverse of `local`, rounded up so a timer never fires early in global time.
    let g = (us * 1_000_000 + (1_000_000 + i128::from(rate_ppm)) - 1)
        / (1_000_000 + i128::from(rate_ppm));
    Instant(g.max(0) as u64)
}

impl Sim {
    /// Builds the run for `seed`.
    pub fn new(s: &Scenario, seed: u64) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = rng.random_range(s.routers.clone());
        let version = if rng.random_bool(0.5) {
            Version::V2
        } else {
            Version::V3
        };
        let vip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));
        let mut cfgs = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let prio = if rng.random_bool(0.2) && i > 0 {
                cfgs.iter()
                    .map(|c: &RouterConfig| c.priority)
                    .next()
                    .unwrap_or(100)
            } else {
                rng.random_range(1..=254u8)
            };
            let mut c = RouterConfig::new(&format!("R{i}"), 51, prio, vec![vip]);
            c.version = version;
            c.family = Family::V4;
            c.preempt_fast = s.preempt_fast;
            cfgs.push(c.clone());
            let drift = i64::from(s.drift_ppm);
            nodes.push(Node {
                router: VirtualRouter::new(c, Instant::ZERO, seed ^ i as u64),
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + i as u8)),
                up: false,
                vips: false,
                rate_ppm: if drift > 0 {
                    rng.random_range(-drift..=drift)
                } else {
                    0
                },
                timer_gen: 0,
            });
        }
        // Topology plan: random events after a settled start, each valid at its time.
        let mut plan = Vec::new();
        let mut down: Vec<bool> = vec![false; n];
        let mut stopped: Vec<bool> = vec![false; n];
        let mut partitioned = false;
        let span = s.duration.as_micros() as u64;
        let mut times: Vec<u64> = (0..s.events)
            .map(|_| rng.random_range(span / 8..span * 7 / 8))
            .collect();
        times.sort();
        for t in times {
            let r = rng.random_range(0..n);
            let ev = match rng.random_range(0..5u8) {
                0 if !down[r] && !stopped[r] => {
                    down[r] = true;
                    Topo::Crash(r)
                }
                1 if !down[r] && !stopped[r] => {
                    stopped[r] = true;
                    Topo::Stop(r)
                }
                0..=2 if down[r] || stopped[r] => {
                    down[r] = false;
                    stopped[r] = false;
                    Topo::Start(r)
                }
                3 if !partitioned && n > 1 => {
                    partitioned = true;
                    Topo::Partition(rng.random_range(1..(1u32 << n) - 1))
                }
                4 if partitioned => {
                    partitioned = false;
                    Topo::Heal
                }
                _ => continue,
            };
            plan.push((Instant(t), ev));
        }
        let mut sim = Sim {
            seed,
            rng,
            net: s.net.clone(),
            nodes,
            cfgs,
            queue: BinaryHeap::new(),
            seq: 0,
            packets: Vec::new(),
            plan,
            partition: 0,
            now: Instant::ZERO,
            last_topo: Instant::ZERO,
            anomaly_since: Vec::new(),
            pending: None,
            fast_takeover: None,
            steps: 0,
            worst_convergence: Duration::ZERO,
            elections: 0,
        };
        for i in 0..sim.plan.len() {
            sim.push(sim.plan[i].0, Ev::Topo { i });
        }
        for r in 0..n {
            sim.start(r);
        }
        sim
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    fn start(&mut self, r: usize) {
        let node = &mut self.nodes[r];
        node.router = VirtualRouter::new(
            self.cfgs[r].clone(),
            local(node.rate_ppm, self.now),
            self.seed,
        );
        node.up = true;
        let (now, addr) = (local(node.rate_ppm, self.now), node.addr);
        node.router.handle(now, Input::SourceAddr(Some(addr)));
        node.router.handle(now, Input::Start);
        self.after_step(r, State::Init);
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.partition == 0 || ((self.partition >> a) & 1) == ((self.partition >> b) & 1)
    }

    /// Runs to the scenario's end; `Err` describes the first invariant violation.
    pub fn run(&mut self, until: Duration) -> Result<(), String> {
        let end = Instant::from_epoch(until);
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            if t > end {
                break;
            }
            self.now = t;
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(format!(
                    "more than {MAX_STEPS} events by {t:?}: a timer that never advances?"
                ));
            }
            match ev {
                Ev::Deliver { to, pkt } => {
                    if !self.nodes[to].up {
                        continue;
                    }
                    let (from, dst, ref payload) = self.packets[pkt];
                    if !self.connected(from, to) {
                        continue;
                    }
                    let payload = payload.clone();
                    // An older advert from the stopping master overtaking its priority-0 advert
                    // (jitter) legitimately restarts the full down interval.
                    if self.fast_takeover.as_ref().is_some_and(|f| f.2 == from)
                        && Packet::new_unchecked(&payload[..]).priority() != 0
                    {
                        self.fast_takeover = None;
                    }
                    let before = self.nodes[to].router.state();
                    let from_addr = self.nodes[from].addr;
                    let node = &mut self.nodes[to];
                    node.router.handle(
                        local(node.rate_ppm, t),
                        Input::Advert {
                            src: from_addr,
                            dst,
                            ttl: 255,
                            payload: &payload,
                            ah: None,
                        },
                    );
                    self.after_step(to, before);
                }
                Ev::Timer { r, generation } => {
                    let node = &mut self.nodes[r];
                    if !node.up || node.timer_gen != generation {
                        continue;
                    }
                    let before = node.router.state();
                    node.router.handle_timeout(local(node.rate_ppm, t));
                    self.after_step(r, before);
                }
                Ev::Topo { i } => {
                    if std::env::var_os("HOLDFAST_SIM_TRACE").is_some() {
                        eprintln!(
                            "{t:?} topo {:?}; states {:?}",
                            self.plan[i].1,
                            self.nodes
                                .iter()
                                .map(|n| (n.up, n.router.state(), n.router.effective_priority()))
                                .collect::<Vec<_>>()
                        );
                    }
                    self.check_settled(t)?;
                    // A new topology event supersedes a pending fast-takeover expectation.
                    self.fast_takeover = None;
                    let before = self
                        .nodes
                        .iter()
                        .map(|n| n.router.state())
                        .collect::<Vec<_>>();
                    match self.plan[i].1 {
                        Topo::Crash(r) => {
                            // Silent: no priority-0 advert, VIPs stay on the dead box but it
                            // no longer answers; for the invariants it owns nothing.
                            self.nodes[r].up = false;
                            self.nodes[r].vips = false;
                        }
                        Topo::Stop(r) => {
                            let was_master = self.nodes[r].router.state() == State::Master;
                            let node = &mut self.nodes[r];
                            node.router.handle(local(node.rate_ppm, t), Input::Stop);
                            self.after_step(r, before[r]);
                            self.nodes[r].up = false;
                            if was_master && self.net.loss == 0.0 {
                                // RFC 5798 §6.4.2: a backup hearing priority 0 takes over after
                                // Skew_Time; allow one delivery delay and drift.
                                let comp: Vec<usize> = self
                                    .components()
                                    .into_iter()
                                    .find(|c| c.iter().all(|&x| self.connected(x, r)))
                                    .unwrap_or_default();
                                if !comp.is_empty() {
                                    let best = comp
                                        .iter()
                                        .map(|&x| self.nodes[x].router.effective_priority())
                                        .max()
                                        .unwrap_or(1);
                                    let skew = self.skew(best);
                                    let deadline = t
                                        + skew
                                        + self.net.max_delay
                                        + skew / 500
                                        + Duration::from_millis(1);
                                    self.fast_takeover = Some((deadline, comp, r));
                                }
                            }
                        }
                        Topo::Start(r) => self.start(r),
                        Topo::Partition(mask) => self.partition = mask,
                        Topo::Heal => self.partition = 0,
                    }
                    self.last_topo = t;
                    self.anomaly_since.clear();
                }
            }
            self.check_step()?;
        }
        self.now = end;
        self.check_settled(end)
    }

    /// Drains a router's outputs, checks the per-step invariants, re-arms its timer.
    fn after_step(&mut self, r: usize, before: State) {
        let mut sends = Vec::new();
        let trace = std::env::var_os("HOLDFAST_SIM_TRACE").is_some();
        while let Some(o) = self.nodes[r].router.poll_output() {
            if trace && let Output::Log(l) = &o {
                eprintln!("{:?} R{r}: {l}", self.now);
            }
            match o {
                Output::Send { dst, payload } => sends.push((dst, payload)),
                Output::AddVips => self.nodes[r].vips = true,
                Output::RemoveVips => self.nodes[r].vips = false,
                Output::StateChanged {
                    to: State::Master, ..
                } => self.elections += 1,
                _ => {}
            }
        }
        let after = self.nodes[r].router.state();
        // (e) A BACKUP never sends adverts.
        if before == State::Backup && after == State::Backup && !sends.is_empty() {
            self.violation(format!("R{r} sent an advert while BACKUP"));
        }
        for (dst, payload) in sends {
            let prio = Packet::new_unchecked(&payload[..]).priority();
            if after != State::Master && prio != 0 && before != State::Master {
                self.violation(format!("R{r} sent priority {prio} while {after}"));
            }
            self.packets.push((r, dst, payload));
            let pkt = self.packets.len() - 1;
            for to in 0..self.nodes.len() {
                if to == r || self.rng.random_bool(self.net.loss) {
                    continue;
                }
                let copies = if self.rng.random_bool(self.net.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let d = self.rng.random_range(
                        self.net.min_delay.as_micros() as u64
                            ..=self.net.max_delay.as_micros() as u64,
                    );
                    self.push(self.now + Duration::from_micros(d), Ev::Deliver { to, pkt });
                }
            }
        }
        let node = &mut self.nodes[r];
        node.timer_gen += 1;
        if let Some(t) = node.router.poll_timeout() {
            let at = global(node.rate_ppm, t).max(self.now);
            let generation = node.timer_gen;
            self.push(at, Ev::Timer { r, generation });
        }
    }

    fn violation(&mut self, what: String) {
        self.pending.get_or_insert(what);
    }

    /// Components of up routers.
    fn components(&self) -> Vec<Vec<usize>> {
        let mut comps: Vec<Vec<usize>> = Vec::new();
        for r in (0..self.nodes.len()).filter(|&r| self.nodes[r].up) {
            match comps.iter_mut().find(|c| self.connected(c[0], r)) {
                Some(c) => c.push(r),
                None => comps.push(vec![r]),
            }
        }
        comps
    }

    /// Skew_Time of a router with priority `prio` (RFC 5798 §6.1).
    fn skew(&self, prio: u8) -> Duration {
        let int = self.cfgs[0].advert_int;
        match self.cfgs[0].version {
            Version::V2 => {
                Duration::from_micros(u64::from(256 - u32::from(prio)) * 1_000_000 / 256)
            }
            Version::V3 => int * (256 - u32::from(prio)) / 256,
        }
    }

    /// The longest a component may go without exactly one master: the best router's master-
    /// down interval plus the largest delay, with drift and loss slack.
    fn bound(&self, comp: &[usize]) -> Duration {
        let best = comp
            .iter()
            .map(|&r| self.nodes[r].router.effective_priority())
            .max()
            .unwrap_or(1);
        let int = self.cfgs[0].advert_int;
        let skew = self.skew(best);
        let base = int * 3 + skew + self.net.max_delay * 2 + Duration::from_millis(2);
        let drift = base * 2 / 1000;
        // With loss, an election can need a few more adverts to be heard.
        let loss = if self.net.loss > 0.0 {
            int * 6
        } else {
            Duration::ZERO
        };
        base + drift + loss
    }

    fn check_step(&mut self) -> Result<(), String> {
        if let Some(v) = self.pending.take() {
            return Err(v);
        }
        if let Some((deadline, comp, _)) = &self.fast_takeover {
            let has_master = comp
                .iter()
                .any(|&r| self.nodes[r].up && self.nodes[r].router.state() == State::Master);
            if has_master {
                self.fast_takeover = None;
            } else if self.now > *deadline {
                return Err(format!(
                    "no master in {comp:?} by {deadline:?} after a priority-0 advert (skew + delay)"
                ));
            }
        }
        // (d) VIPs installed iff MASTER.
        for (r, n) in self.nodes.iter().enumerate() {
            if n.up && n.vips != (n.router.state() == State::Master) {
                return Err(format!(
                    "R{r} has VIPs={} in state {}",
                    n.vips,
                    n.router.state()
                ));
            }
        }
        // (a)/(c) exactly one master per component, restored within the bound.
        let comps = self.components();
        if self.anomaly_since.len() != comps.len() {
            self.anomaly_since = vec![None; comps.len()];
        }
        for (ci, comp) in comps.iter().enumerate() {
            let masters = comp
                .iter()
                .filter(|&&r| self.nodes[r].router.state() == State::Master)
                .count();
            let bound = self.bound(comp);
            match (masters == 1, self.anomaly_since[ci]) {
                (true, Some((since, _))) => {
                    self.worst_convergence = self.worst_convergence.max(self.now - since);
                    self.anomaly_since[ci] = None;
                }
                (false, None) => {
                    self.anomaly_since[ci] = Some((self.now.max(self.last_topo), masters))
                }
                (false, Some((since, m))) if self.now - since > bound => {
                    return Err(format!(
                        "component {comp:?} had {m} masters (now {masters}) for {:?} > bound {bound:?}",
                        self.now - since
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// (b) after a quiet period, each component's master is its best router.
    fn check_settled(&mut self, t: Instant) -> Result<(), String> {
        let comps = self.components();
        for comp in &comps {
            let settle = self.bound(comp) * 2;
            if t - self.last_topo < settle {
                continue;
            }
            let masters: Vec<usize> = comp
                .iter()
                .copied()
                .filter(|&r| self.nodes[r].router.state() == State::Master)
                .collect();
            // The master has the highest priority. Among equals the higher address wins only
            // when they contend as masters (RFC 5798 §6.4.3); a BACKUP accepts an equal
            // priority master (§6.4.2), so a returning equal router does not preempt.
            let best = comp
                .iter()
                .map(|&r| self.nodes[r].router.effective_priority())
                .max()
                .unwrap_or(0);
            let ok =
                masters.len() == 1 && self.nodes[masters[0]].router.effective_priority() == best;
            if !ok {
                return Err(format!(
                    "after {:?} quiet, component {comp:?} has masters {masters:?}, expected one of priority {best} (priorities {:?})",
                    t - self.last_topo,
                    comp.iter()
                        .map(|&r| self.nodes[r].router.effective_priority())
                        .collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    }
}
