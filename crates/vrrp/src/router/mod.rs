//! The virtual router: one `vrrp_instance`, sans-IO, with keepalived 2.2's semantics
//! (reference/keepalived.md §2.4-§2.6).
//!
//! Contract (quinn's): feed inputs with [`VirtualRouter::handle`], call
//! [`VirtualRouter::handle_timeout`] when [`VirtualRouter::poll_timeout`] passes, and drain
//! [`VirtualRouter::poll_output`] after each call, carrying the outputs out in order.

mod accept;
mod config;
mod log;
mod timers;

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::time::Instant;
use crate::wire::{AdvertRepr, Auth, ChecksumForm, Family, IpPair, Version};

use accept::Received;
pub use accept::Rejection;
pub use config::{GarpTiming, Peer, Placement, RouterConfig, Tracker, continues};
pub use log::{Drop, Log, Stats};
use timers::{Timer, Timers};

/// VRRP states (keepalived adds FAULT to the RFC's three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or stopped.
    Init,
    /// Listening for the master.
    Backup,
    /// Owning the VIPs and advertising.
    Master,
    /// A tracked resource failed.
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// Why the state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Start-up.
    Init,
    /// The master-down timer expired.
    MasterDown,
    /// Priority 255 with `state MASTER` at start-up.
    Owner,
    /// A higher-priority (or tie-winning) advert arrived.
    HigherPriority,
    /// A tracker, the link or the address failed.
    Fault,
    /// Recovered from FAULT.
    Recovered,
    /// The sync group moved this member.
    Sync,
    /// Administrative stop.
    Stop,
}

/// Sync-group commands to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncCmd {
    /// Become MASTER now (another member did).
    Master,
    /// Leave MASTER (another member did).
    Backup,
    /// Another member is in FAULT.
    Fault,
    /// No member is in FAULT any more.
    ClearFault,
}

/// A received packet's IPsec AH header and the IPv4 header its ICV covers
/// (`auth_type AH`, [`crate::ah`]).
#[derive(Clone, Copy, Debug)]
pub struct AhPart<'a> {
    /// The IPv4 header, as received.
    pub ip_header: &'a [u8],
    /// The AH header.
    pub ah: &'a [u8; crate::ah::AH_LEN],
}

/// Inputs.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A received VRRP message (the IP payload) with its IP header facts.
    Advert {
        /// IP source.
        src: IpAddr,
        /// IP destination.
        dst: IpAddr,
        /// TTL / hop limit.
        ttl: u8,
        /// VRRP bytes.
        payload: &'a [u8],
        /// The IPsec AH header and the IPv4 header it covers, when the packet had one.
        ah: Option<AhPart<'a>>,
    },
    /// The instance's interface went up (true) or down.
    Link(bool),
    /// The address adverts are sent from (unicast_src_ip, or the interface's primary).
    SourceAddr(Option<IpAddr>),
    /// A tracker's result.
    Tracker {
        /// Index into [`RouterConfig::trackers`].
        index: usize,
        /// Whether it succeeds.
        up: bool,
    },
    /// A value tracker's reading (`track_file`): value × weight (negated with `reverse`) is
    /// added to the priority; with weight 0 any non-zero value means FAULT.
    TrackerValue {
        /// Index into [`RouterConfig::trackers`].
        index: usize,
        /// The number read.
        value: i64,
    },
    /// Start (from INIT).
    Start,
    /// Stop: priority-0 advert if MASTER, VIPs removed.
    Stop,
    /// From the sync group.
    Sync(SyncCmd),
    /// A reloaded configuration for this instance. keepalived keeps the running state when
    /// VRID, version and family are unchanged (a MASTER stays MASTER, no VIP flap); the caller
    /// replaces the router otherwise.
    Reload(&'a Arc<RouterConfig>),
}

/// Outputs, to be carried out in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these VRRP bytes to `dst` (TTL/hop limit 255, or `unicast_ttl`).
    Send {
        /// Multicast group or unicast peer.
        dst: IpAddr,
        /// VRRP message.
        payload: Vec<u8>,
    },
    /// Install the VIPs.
    AddVips,
    /// Remove the VIPs.
    RemoveVips,
    /// Send `count` gratuitous ARPs / unsolicited NAs for every VIP.
    Announce {
        /// Rounds.
        count: u32,
    },
    /// The state changed: run notify scripts (after any VIP change above).
    StateChanged {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// A lower-priority advert arrived while MASTER (`notify_master_rx_lower_pri`).
    MasterRxLowerPri,
    /// This member's own cause of FAULT (its link, its trackers) began (true) or ended: a sync
    /// group must know even while it holds the member in FAULT, or two members faulted at
    /// once would hold each other there for ever.
    OwnFault(bool),
    /// A reload changed the VIPs of a MASTER: install `added`, remove `removed`.
    VipsChanged {
        /// New VIPs.
        added: Vec<IpAddr>,
        /// Dropped VIPs.
        removed: Vec<IpAddr>,
    },
    /// A log line.
    Log(Log),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GarpKind {
    Master,
    LowerPrio,
}

/// One VRRP instance.
#[derive(Debug)]
pub struct VirtualRouter {
    /// Shared with the daemon's plan (a thousand instances each held a second copy).
    cfg: Arc<RouterConfig>,
    state: State,
    src: Option<IpAddr>,
    link_up: bool,
    tracker_up: Vec<bool>,
    /// Values of value trackers (`track_file`); `None` for up/down trackers.
    tracker_value: Vec<Option<i64>>,
    group_fault: bool,
    recovering_by_sync: bool,
    /// The last [`Output::OwnFault`] value reported.
    own_fault_reported: bool,
    effective: u8,
    owner_reduced: bool,
    master_adv_int: Duration,
    master_addr: Option<IpAddr>,
    master_prio: Option<u8>,
    timers: Timers,
    preempt_since: Option<Instant>,
    /// What the [`Timer::Garp`] round is for.
    garp_kind: GarpKind,
    out: VecDeque<Output>,
    stats: Stats,
    peer_forms: Vec<(IpAddr, ChecksumForm)>,
    /// When this MASTER last answered a lower-priority advert.
    lower_prio_answered: Option<Instant>,
    /// `auth_type AH`: the sequence number, sent and received alike (keepalived keeps one),
    /// and whether it reached its end.
    ah_seq: u32,
    ah_cycle: bool,
}

/// Senders whose checksum form a router remembers (a VRRP group has a handful of routers).
pub const PEER_FORMS: usize = 16;

impl VirtualRouter {
    /// A router in INIT. `seed` is reserved for randomised behaviour (none in keepalived 2.2).
    pub fn new(cfg: impl Into<Arc<RouterConfig>>, _now: Instant, _seed: u64) -> VirtualRouter {
        let cfg = cfg.into();
        let n = cfg.trackers.len();
        let master_adv_int = cfg.advert_int;
        let mut r = VirtualRouter {
            cfg,
            state: State::Init,
            src: None,
            link_up: true,
            tracker_up: vec![true; n],
            tracker_value: vec![None; n],
            group_fault: false,
            recovering_by_sync: false,
            own_fault_reported: false,
            effective: 0,
            owner_reduced: false,
            master_adv_int,
            master_addr: None,
            master_prio: None,
            timers: Timers::default(),
            preempt_since: None,
            garp_kind: GarpKind::Master,
            out: VecDeque::new(),
            stats: Stats::default(),
            peer_forms: Vec::new(),
            lower_prio_answered: None,
            ah_seq: 0,
            ah_cycle: false,
        };
        r.effective = r.compute_priority();
        r
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Effective priority (configured priority adjusted by trackers).
    pub fn effective_priority(&self) -> u8 {
        self.effective
    }
    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }
    /// The last master seen (BACKUP) or our own address (MASTER).
    pub fn master_addr(&self) -> Option<IpAddr> {
        if self.state == State::Master {
            self.src
        } else {
            self.master_addr
        }
    }
    /// The priority in the last accepted master's advert (BACKUP) or our own (MASTER).
    pub fn master_priority(&self) -> Option<u8> {
        if self.state == State::Master {
            Some(self.effective)
        } else {
            self.master_prio
        }
    }
    /// Which checksum form a peer was last seen using (v3 over IPv4).
    pub fn peer_checksum_form(&self, peer: IpAddr) -> Option<ChecksumForm> {
        self.peer_forms
            .iter()
            .find(|(a, _)| *a == peer)
            .map(|(_, f)| *f)
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        let o = self.out.pop_front();
        if o.is_none() && self.out.capacity() > 0 {
            // Drained: the queue's room goes back to the allocator (a thousand idle routers
            // each kept a couple of hundred bytes; taking them again costs less than the
            // advert's own buffer).
            self.out = VecDeque::new();
        }
        o
    }

    /// Handles one input.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Advert {
                src,
                dst,
                ttl,
                payload,
                ah,
            } => self.on_advert(
                now,
                &Received {
                    src,
                    dst,
                    ttl,
                    payload,
                    ah,
                },
            ),
            Input::Link(up) => {
                self.link_up = up;
                self.reevaluate(now);
            }
            Input::SourceAddr(a) => {
                self.src = a;
                self.reevaluate(now);
            }
            Input::Tracker { index, up } => {
                if let Some(t) = self.tracker_up.get_mut(index) {
                    *t = up;
                }
                self.reevaluate(now);
            }
            Input::TrackerValue { index, value } => {
                if let Some(t) = self.tracker_value.get_mut(index) {
                    *t = Some(value);
                }
                self.reevaluate(now);
            }
            Input::Start => self.start(now),
            Input::Stop => self.stop(now),
            Input::Sync(cmd) => self.on_sync(now, cmd),
            Input::Reload(cfg) => self.reload(now, cfg),
        }
    }

    /// A reload to `cfg`, which the caller found to continue this router ([`continues`]):
    /// the state is kept and the new settings apply.
    fn reload(&mut self, now: Instant, cfg: &Arc<RouterConfig>) {
        if cfg.vrid != self.cfg.vrid || cfg.family != self.cfg.family {
            // Not this router ([`continues`] says so); the caller replaces it.
            return;
        }
        let added: Vec<IpAddr> = cfg
            .vips
            .iter()
            .filter(|v| !self.cfg.vips.contains(v))
            .copied()
            .collect();
        let removed: Vec<IpAddr> = self
            .cfg
            .vips
            .iter()
            .filter(|v| !cfg.vips.contains(v))
            .copied()
            .collect();
        self.tracker_value.resize(cfg.trackers.len(), None);
        let mut up = std::mem::take(&mut self.tracker_up);
        up.resize(cfg.trackers.len(), true);
        self.tracker_up = up;
        self.cfg = Arc::clone(cfg);
        if self.state == State::Master && (!added.is_empty() || !removed.is_empty()) {
            self.out.push_back(Output::VipsChanged { added, removed });
            self.out.push_back(Output::Announce {
                count: self.cfg.garp.master_repeat,
            });
        }
        // The next advert stays where it was (a burst of reloads must not silence a MASTER),
        // unless a shorter interval brings it forward.
        if self.state == State::Master {
            let by_new_interval = now + self.cfg.advert_int;
            let at = self
                .timers
                .get(Timer::Advert)
                .map_or(by_new_interval, |t| t.min(by_new_interval));
            self.timers.set(Timer::Advert, at);
        }
        self.reevaluate(now);
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for t in Timer::ALL {
            if self.timers.expire(t, now) {
                self.on_timer(t, now);
            }
        }
    }

    fn on_timer(&mut self, t: Timer, now: Instant) {
        match (t, self.state) {
            (Timer::MasterDown, State::Backup) => {
                self.log(Log::ReceiveTimeout(self.cfg.name.clone()));
                self.become_master(now, Reason::MasterDown);
            }
            (Timer::Advert, State::Master) => {
                self.send_advert(self.effective);
                self.timers.set(Timer::Advert, now + self.cfg.advert_int);
            }
            (Timer::Garp, State::Master) => {
                let count = match self.garp_kind {
                    GarpKind::Master => self.cfg.garp.master_repeat,
                    GarpKind::LowerPrio => self.cfg.garp.lower_prio_repeat,
                };
                self.out.push_back(Output::Announce { count });
            }
            (Timer::Refresh, State::Master) => {
                if let Some(every) = self.cfg.garp.master_refresh {
                    self.out.push_back(Output::Announce {
                        count: self.cfg.garp.master_refresh_repeat,
                    });
                    self.timers.set(Timer::Refresh, now + every);
                }
            }
            _ => {}
        }
    }

    fn log(&mut self, l: Log) {
        self.out.push_back(Output::Log(l));
    }

    /// keepalived's weighting: the effective priority, clamped to 1..254; 255 never moves.
    fn compute_priority(&self) -> u8 {
        if self.cfg.priority == 255 {
            return if self.owner_reduced { 254 } else { 255 };
        }
        let mut p = i32::from(self.cfg.priority);
        for (i, (t, up)) in self.cfg.trackers.iter().zip(&self.tracker_up).enumerate() {
            if let Some(v) = self.tracker_value.get(i).copied().flatten() {
                p = p.saturating_add(value_adjust(t, v));
                continue;
            }
            let active = if t.reverse { !up } else { *up };
            // keepalived: a positive weight counts while up, a negative one while down.
            if (t.weight > 0 && active) || (t.weight < 0 && !active) {
                p += t.weight;
            }
        }
        p.clamp(1, 254) as u8
    }

    /// Whether something this instance tracks puts it in FAULT.
    fn own_fault(&self) -> bool {
        let tracker_fault = self
            .cfg
            .trackers
            .iter()
            .zip(&self.tracker_up)
            .enumerate()
            .any(|(i, (t, up))| {
                match self.tracker_value.get(i).copied().flatten() {
                    // keepalived track_file: weight 0 faults on any non-zero value; otherwise
                    // value × weight below -253 faults.
                    Some(v) => (t.weight == 0 && v != 0) || value_adjust(t, v) < -253,
                    None => t.weight == 0 && (if t.reverse { *up } else { !*up }),
                }
            });
        tracker_fault || !self.link_up || self.src.is_none()
    }

    fn skew(&self) -> Duration {
        let p = u64::from(256 - u32::from(self.effective).min(255)) as u128;
        match self.cfg.version {
            Version::V2 => Duration::from_micros((p * 1_000_000 / 256) as u64),
            Version::V3 => {
                Duration::from_micros((p * self.master_adv_int.as_micros() / 256) as u64)
            }
        }
    }

    fn master_down_interval(&self) -> Duration {
        self.master_adv_int * self.cfg.down_timer_adverts + self.skew()
    }

    fn start(&mut self, now: Instant) {
        if self.state != State::Init {
            return;
        }
        self.effective = self.compute_priority();
        if self.own_fault() || self.group_fault {
            self.set_state(State::Fault, Reason::Init, true);
            return;
        }
        if self.cfg.priority == 255 && self.cfg.init_master {
            self.become_master(now, Reason::Owner);
            return;
        }
        self.set_state(State::Backup, Reason::Init, true);
        self.master_adv_int = self.cfg.advert_int;
        self.timers.set(
            Timer::MasterDown,
            now + self.master_down_interval() + self.cfg.startup_delay,
        );
        if !self.cfg.preempt_delay.is_zero() {
            self.preempt_since = Some(now);
        }
    }

    fn stop(&mut self, _now: Instant) {
        if self.state == State::Master {
            self.send_advert(0);
            self.log(Log::SentPrio0(self.cfg.name.clone()));
            self.log(Log::RemovingVips(self.cfg.name.clone()));
            self.out.push_back(Output::RemoveVips);
            self.stats.released_master += 1;
        }
        self.clear_timers();
        let from = self.state;
        self.state = State::Init;
        self.out.push_back(Output::StateChanged {
            from,
            to: State::Init,
            reason: Reason::Stop,
        });
    }

    fn clear_timers(&mut self) {
        self.timers.clear();
    }

    fn set_state(&mut self, to: State, reason: Reason, init: bool) {
        let from = self.state;
        self.state = to;
        self.log(Log::Entering(self.cfg.name.clone(), to, init));
        self.out
            .push_back(Output::StateChanged { from, to, reason });
    }

    fn become_master(&mut self, now: Instant, reason: Reason) {
        // keepalived: a MASTER whose AH sequence numbers had reached their end starts again.
        if self.ah_cycle {
            self.ah_cycle = false;
            self.ah_seq = 0;
        }
        // keepalived: the advert goes first, then the log line, the VIPs and the GARPs.
        self.send_advert(self.effective);
        let from = self.state;
        self.state = State::Master;
        self.log(Log::Entering(self.cfg.name.clone(), State::Master, false));
        self.log(Log::SettingVips(self.cfg.name.clone()));
        self.out.push_back(Output::AddVips);
        self.out.push_back(Output::Announce {
            count: self.cfg.garp.master_repeat,
        });
        self.out.push_back(Output::StateChanged {
            from,
            to: State::Master,
            reason,
        });
        self.stats.became_master += 1;
        self.timers.stop(Timer::MasterDown);
        self.preempt_since = None;
        self.timers.set(Timer::Advert, now + self.cfg.advert_int);
        self.timers.stop(Timer::Garp);
        if !self.cfg.garp.master_delay.is_zero() {
            self.garp_kind = GarpKind::Master;
            self.timers
                .set(Timer::Garp, now + self.cfg.garp.master_delay);
        }
        self.timers.stop(Timer::Refresh);
        if let Some(every) = self.cfg.garp.master_refresh {
            self.timers.set(Timer::Refresh, now + every);
        }
    }

    fn leave_master(&mut self, now: Instant, to: State, reason: Reason) {
        if to == State::Fault {
            // keepalived: a master going to FAULT tells the others first.
            self.send_advert(0);
            self.log(Log::SentPrio0(self.cfg.name.clone()));
        }
        self.clear_timers();
        self.state = to;
        self.log(Log::Entering(self.cfg.name.clone(), to, false));
        self.log(Log::RemovingVips(self.cfg.name.clone()));
        self.out.push_back(Output::RemoveVips);
        self.out.push_back(Output::StateChanged {
            from: State::Master,
            to,
            reason,
        });
        self.stats.released_master += 1;
        if to == State::Backup {
            self.timers
                .set(Timer::MasterDown, now + self.master_down_interval());
        }
    }

    /// Re-evaluates priority and fault after a tracker, link or address change.
    fn reevaluate(&mut self, now: Instant) {
        let p = self.compute_priority();
        if p != self.effective {
            self.log(Log::EffectivePriority(
                self.cfg.name.clone(),
                self.effective,
                p,
            ));
            let lowered = p < self.effective;
            self.effective = p;
            if lowered && self.cfg.preempt_fast && self.state == State::Master {
                // preempt_fast: say so at once, so a preempting backup need not wait for the
                // next advert interval.
                self.send_advert(p);
                self.timers.set(Timer::Advert, now + self.cfg.advert_int);
            }
        }
        if self.state == State::Init {
            return;
        }
        let own = self.own_fault();
        if own != self.own_fault_reported {
            self.own_fault_reported = own;
            self.out.push_back(Output::OwnFault(own));
        }
        let fault = own || self.group_fault;
        // A fault (or a recovery) the sync group caused is reported as such, so the group does
        // not mistake it for this member's own.
        let (fault_reason, recover_reason) = if own {
            (Reason::Fault, Reason::Recovered)
        } else if self.group_fault {
            (Reason::Sync, Reason::Recovered)
        } else {
            (
                Reason::Fault,
                if self.recovering_by_sync {
                    Reason::Sync
                } else {
                    Reason::Recovered
                },
            )
        };
        match (self.state, fault) {
            (State::Master, true) => self.leave_master(now, State::Fault, fault_reason),
            (State::Backup, true) => {
                self.clear_timers();
                self.set_state(State::Fault, fault_reason, false);
            }
            (State::Fault, false) => {
                if self.cfg.priority == 255 && self.cfg.init_master {
                    self.become_master(now, recover_reason);
                } else {
                    self.set_state(State::Backup, recover_reason, false);
                    self.master_adv_int = self.cfg.advert_int;
                    self.timers
                        .set(Timer::MasterDown, now + self.master_down_interval());
                }
            }
            _ => {}
        }
    }

    fn on_sync(&mut self, now: Instant, cmd: SyncCmd) {
        match cmd {
            SyncCmd::Master => {
                if self.state == State::Backup {
                    self.become_master(now, Reason::Sync);
                }
            }
            SyncCmd::Backup => {
                if self.state == State::Master {
                    self.leave_master(now, State::Backup, Reason::Sync);
                }
            }
            SyncCmd::Fault => {
                self.group_fault = true;
                self.reevaluate(now);
            }
            SyncCmd::ClearFault => {
                self.group_fault = false;
                self.recovering_by_sync = true;
                self.reevaluate(now);
                self.recovering_by_sync = false;
            }
        }
    }

    /// The adverts this router would send now with `priority`: one per destination (the
    /// multicast group, or each unicast peer). A guardian process keeps the priority-0 set to
    /// send if the daemon dies (keepalived's VRRP child does the same when its parent dies).
    /// None under `auth_type AH`: an advert signed in advance carries a sequence number the
    /// peers will have passed by the time it is sent, and they would refuse it.
    pub fn adverts(&self, priority: u8) -> Vec<(IpAddr, Vec<u8>)> {
        if matches!(self.cfg.auth, Auth::Ah(_)) {
            return Vec::new();
        }
        self.messages(priority)
    }

    /// The VRRP messages for `priority`, one per destination.
    fn messages(&self, priority: u8) -> Vec<(IpAddr, Vec<u8>)> {
        let Some(src) = self.src else {
            return Vec::new();
        };
        let repr = AdvertRepr {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval_cs: (self.cfg.advert_int.as_millis() / 10).min(4095) as u16,
            addrs: self.cfg.vips.clone(),
            auth: if self.cfg.version == Version::V2 {
                self.cfg.auth
            } else {
                Auth::None
            },
        };
        let dsts: Vec<IpAddr> = if self.cfg.unicast_peers.is_empty() {
            vec![self.cfg.mcast_group]
        } else {
            self.cfg.unicast_peers.iter().map(|p| p.addr).collect()
        };
        let form = match (self.cfg.version, self.cfg.family) {
            (Version::V3, Family::V6) => ChecksumForm::PseudoHeader,
            (Version::V3, Family::V4) => self.cfg.v3_checksum,
            (Version::V2, _) => ChecksumForm::MessageOnly,
        };
        dsts.into_iter()
            .map(|dst| (dst, repr.to_bytes(form, &IpPair { src, dst })))
            .collect()
    }

    fn send_advert(&mut self, priority: u8) {
        let adverts = self.messages(priority);
        if adverts.is_empty() {
            return;
        }
        let ah = match (self.cfg.auth, self.src) {
            (Auth::Ah(_), Some(IpAddr::V4(src))) if self.cfg.version == Version::V2 => {
                // keepalived: one number per advert (every peer gets the same), which stops
                // at its end: the MASTER then sends it again, its peers refuse it and take
                // over, and a MASTER starting afresh resets it.
                if self.ah_seq > 0xFFFF_FFFD {
                    self.ah_cycle = true;
                } else {
                    self.ah_seq += 1;
                }
                Some(crate::ah::header(src, self.ah_seq))
            }
            _ => None,
        };
        for (dst, payload) in adverts {
            let payload = match &ah {
                Some(h) => [&h[..], &payload].concat(),
                None => payload,
            };
            self.out.push_back(Output::Send { dst, payload });
        }
        self.stats.adverts_sent += 1;
        if priority == 0 {
            self.stats.priority_zero_sent += 1;
        }
    }

    /// keepalived's `vrrp_check_packet` ([`accept`]), then the state machine.
    fn on_advert(&mut self, now: Instant, rx: &Received<'_>) {
        let verdict = accept::accept(&self.cfg, rx, self.ah_seq, self.master_addr);
        if let Some(seq) = verdict.ah_seq {
            self.ah_seq = seq;
            if self.state == State::Backup {
                // keepalived: a MASTER's numbers are flowing again.
                self.ah_cycle = false;
            }
        }
        let accepted = match verdict.result {
            Ok(a) => a,
            Err(why) => {
                if let Some(counter) = why.counter() {
                    self.stats.drop(counter);
                }
                if why.logged() {
                    self.log(Log::Dropped(self.cfg.name.clone(), why));
                }
                return;
            }
        };
        self.remember_form(rx.src, accepted.form);
        self.stats.adverts_received += 1;
        if accepted.advert.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        self.on_valid_advert(now, rx.src, &accepted.advert, verdict.ah_seq);
    }

    /// Records a sender's checksum form, for senders whose adverts passed every check: a
    /// flood from forged sources cannot grow it, and it keeps the [`PEER_FORMS`] most recent.
    fn remember_form(&mut self, src: IpAddr, form: ChecksumForm) {
        if let Some(k) = self.peer_forms.iter().position(|(a, _)| *a == src) {
            self.peer_forms.remove(k);
        } else if self.peer_forms.len() >= PEER_FORMS {
            self.peer_forms.remove(0);
        }
        self.peer_forms.push((src, form));
    }

    /// `ah_seq`: the advert's AH sequence number (`auth_type AH`).
    fn on_valid_advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        adv: &AdvertRepr,
        ah_seq: Option<u32>,
    ) {
        let name = self.cfg.name.clone();
        let ours = self.effective;
        match self.state {
            State::Backup => {
                if adv.priority == 0 {
                    self.log(Log::BackupPrio0(name));
                    self.timers.set(Timer::MasterDown, now + self.skew());
                    return;
                }
                let preempt_blocked = self
                    .preempt_since
                    .is_some_and(|t| now < t + self.cfg.preempt_delay);
                if adv.priority >= ours || self.cfg.nopreempt || preempt_blocked {
                    if self.cfg.version == Version::V3 && adv.interval_cs > 0 {
                        // RFC 5798 §6.4.2: a backup adopts the master's interval.
                        self.master_adv_int =
                            Duration::from_millis(u64::from(adv.interval_cs) * 10);
                    }
                    self.master_addr = Some(src);
                    self.master_prio = Some(adv.priority);
                    self.timers
                        .set(Timer::MasterDown, now + self.master_down_interval());
                } else {
                    if !self.cfg.preempt_delay.is_zero() && self.preempt_since.is_none() {
                        // keepalived: the delay starts when a lower-priority master is seen.
                        self.preempt_since = Some(now);
                        self.master_addr = Some(src);
                        self.master_prio = Some(adv.priority);
                        self.timers
                            .set(Timer::MasterDown, now + self.master_down_interval());
                        return;
                    }
                    if self.cfg.preempt_fast {
                        let at = now + self.skew();
                        if self.timers.get(Timer::MasterDown).is_none_or(|d| d > at) {
                            self.log(Log::FastPreempt(name, adv.priority, src));
                            self.timers.set(Timer::MasterDown, at);
                        }
                        return;
                    }
                    self.log(Log::Discarding(name, adv.priority, src));
                }
            }
            State::Master => {
                if adv.priority == 0 {
                    self.log(Log::MasterPrio0(name));
                    self.send_advert(ours);
                    self.timers.set(Timer::Advert, now + self.cfg.advert_int);
                    return;
                }
                let our_addr = self.src;
                if adv.priority == 255 && self.cfg.priority == 255 && !self.owner_reduced {
                    self.log(Log::TwoOwners(name.clone(), src));
                    // keepalived: the owner with the lower address steps down to 254.
                    if our_addr.is_some_and(|a| a < src) {
                        self.owner_reduced = true;
                        let p = self.compute_priority();
                        self.log(Log::EffectivePriority(name.clone(), self.effective, p));
                        self.effective = p;
                    }
                }
                let ours = self.effective;
                let higher = adv.priority > ours
                    || (adv.priority == ours && our_addr.is_some_and(|a| src > a));
                if higher {
                    if ah_seq.is_some() {
                        self.ah_cycle = false;
                    }
                    if adv.priority > ours {
                        self.log(Log::HigherPriority(name, src, adv.priority, ours));
                    } else {
                        self.log(Log::SamePriorityHigherIp(name, src, adv.priority));
                    }
                    if self.cfg.higher_prio_send_advert {
                        self.send_advert(ours);
                    }
                    if self.cfg.version == Version::V3 && adv.interval_cs > 0 {
                        self.master_adv_int =
                            Duration::from_millis(u64::from(adv.interval_cs) * 10);
                    }
                    self.master_addr = Some(src);
                    self.master_prio = Some(adv.priority);
                    self.leave_master(now, State::Backup, Reason::HigherPriority);
                } else if adv.priority == ours && our_addr == Some(src) {
                    self.log(Log::EqualPriorityOurIp(name));
                } else {
                    // keepalived (RFC 9568): answer a lower-priority master at once — but at
                    // most once per advert interval: a flood of such adverts (forged or from a
                    // confused peer) must not turn into a flood of adverts, GARP bursts,
                    // notify scripts and log lines. One answer an interval is all a real
                    // lower-priority master needs to step down.
                    if self
                        .lower_prio_answered
                        .is_some_and(|t| now < t + self.cfg.advert_int)
                    {
                        self.stats.lower_priority_unanswered += 1;
                        return;
                    }
                    self.lower_prio_answered = Some(now);
                    let force = !self.cfg.lower_prio_no_advert;
                    self.log(Log::LowerPriority(
                        name.clone(),
                        src,
                        adv.priority,
                        ours,
                        force,
                    ));
                    if let Some(seq) = ah_seq {
                        // keepalived: carry on from the other MASTER's number.
                        self.log(Log::AhSyncSeq(name));
                        self.ah_seq = seq.wrapping_add(1);
                        self.ah_cycle = false;
                    }
                    if force {
                        self.send_advert(ours);
                        self.timers.set(Timer::Advert, now + self.cfg.advert_int);
                    }
                    self.out.push_back(Output::Announce {
                        count: self.cfg.garp.lower_prio_repeat,
                    });
                    if !self.cfg.garp.lower_prio_delay.is_zero() {
                        self.garp_kind = GarpKind::LowerPrio;
                        self.timers
                            .set(Timer::Garp, now + self.cfg.garp.lower_prio_delay);
                    }
                    self.out.push_back(Output::MasterRxLowerPri);
                }
            }
            State::Init | State::Fault => {}
        }
    }
}

/// A value tracker's priority adjustment.
fn value_adjust(t: &Tracker, v: i64) -> i32 {
    let w = if t.reverse {
        -i64::from(t.weight)
    } else {
        i64::from(t.weight)
    };
    v.saturating_mul(w)
        .clamp(i64::from(i32::MIN / 2), i64::from(i32::MAX / 2)) as i32
}
