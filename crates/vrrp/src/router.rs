//! The virtual router: one `vrrp_instance`, sans-IO, with keepalived 2.2's semantics
//! (reference/keepalived.md §2.4-§2.6).
//!
//! Contract (quinn's): feed inputs with [`VirtualRouter::handle`], call
//! [`VirtualRouter::handle_timeout`] when [`VirtualRouter::poll_timeout`] passes, and drain
//! [`VirtualRouter::poll_output`] after each call, carrying the outputs out in order.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::time::Instant;
use crate::wire::{
    AdvertRepr, Auth, ChecksumForm, Family, HEADER_LEN, IpPair, Packet, Version, WireError,
};

/// GARP / unsolicited-NA policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GarpTiming {
    /// Delay before the second burst after becoming MASTER (`garp_master_delay`, 5 s).
    pub master_delay: Duration,
    /// Announcements per burst (`garp_master_repeat`, 5).
    pub master_repeat: u32,
    /// Periodic refresh while MASTER (`garp_master_refresh`, off).
    pub master_refresh: Option<Duration>,
    /// Announcements per refresh (`garp_master_refresh_repeat`, 1).
    pub master_refresh_repeat: u32,
    /// Delay of the second burst after a lower-priority advert (`garp_lower_prio_delay`).
    pub lower_prio_delay: Duration,
    /// Announcements per lower-priority burst (`garp_lower_prio_repeat`).
    pub lower_prio_repeat: u32,
}

impl Default for GarpTiming {
    fn default() -> Self {
        GarpTiming {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: None,
            master_refresh_repeat: 1,
            lower_prio_delay: Duration::from_secs(5),
            lower_prio_repeat: 5,
        }
    }
}

/// A unicast peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Address adverts go to and may come from.
    pub addr: IpAddr,
    /// Lowest accepted TTL/hop limit from this peer.
    pub min_ttl: Option<u8>,
    /// Highest accepted TTL/hop limit.
    pub max_ttl: Option<u8>,
}

/// A tracker (script, interface, file, process) as the router weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    /// 0: failure means FAULT; > 0 added while up; < 0 added while down.
    pub weight: i32,
    /// Swap which state applies the weight (or, for weight 0, FAULT while up).
    pub reverse: bool,
}

/// Everything a router needs to know; the daemon maps the configuration onto it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// Instance name, for log lines.
    pub name: String,
    /// Virtual router id (1-255).
    pub vrid: u8,
    /// Protocol version.
    pub version: Version,
    /// Address family.
    pub family: Family,
    /// Configured priority (1-255).
    pub priority: u8,
    /// Advertisement interval.
    pub advert_int: Duration,
    /// `state MASTER` (only effective at priority 255).
    pub init_master: bool,
    /// `nopreempt`.
    pub nopreempt: bool,
    /// `preempt_delay` (zero: none).
    pub preempt_delay: Duration,
    /// `preempt_fast` (holdfast extension): a preempting backup that hears a lower-priority
    /// master takes over after Skew_Time rather than the Master_Down_Interval. The skew lets
    /// the highest of several backups go first, so the others hear it and stay.
    pub preempt_fast: bool,
    /// Advertised VIPs.
    pub vips: Vec<IpAddr>,
    /// v2 authentication.
    pub auth: Auth,
    /// Unicast peers; empty means multicast.
    pub unicast_peers: Vec<Peer>,
    /// Accept unicast adverts only from the peers.
    pub check_unicast_src: bool,
    /// Multicast group.
    pub mcast_group: IpAddr,
    /// GARP timing.
    pub garp: GarpTiming,
    /// `lower_prio_no_advert`.
    pub lower_prio_no_advert: bool,
    /// `higher_prio_send_advert`.
    pub higher_prio_send_advert: bool,
    /// `skip_check_adv_addr`.
    pub skip_check_adv_addr: bool,
    /// Checksum form sent for v3 over IPv4 (keepalived: pseudo-header).
    pub v3_checksum: ChecksumForm,
    /// Advert intervals in the master-down interval (3).
    pub down_timer_adverts: u32,
    /// Trackers, addressed by index in [`Input::Tracker`].
    pub trackers: Vec<Tracker>,
    /// `vrrp_startup_delay`.
    pub startup_delay: Duration,
}

impl RouterConfig {
    /// A configuration with keepalived's defaults for the rest.
    pub fn new(name: &str, vrid: u8, priority: u8, vips: Vec<IpAddr>) -> RouterConfig {
        let family = vips.first().map_or(Family::V4, |a| Family::of(*a));
        RouterConfig {
            name: name.to_string(),
            vrid,
            version: if family == Family::V6 {
                Version::V3
            } else {
                Version::V2
            },
            family,
            priority,
            advert_int: Duration::from_secs(1),
            init_master: false,
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            preempt_fast: false,
            vips,
            auth: Auth::None,
            unicast_peers: Vec::new(),
            check_unicast_src: false,
            mcast_group: match family {
                Family::V4 => IpAddr::V4(crate::wire::MCAST_V4),
                Family::V6 => IpAddr::V6(crate::wire::MCAST_V6),
            },
            garp: GarpTiming::default(),
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            skip_check_adv_addr: false,
            v3_checksum: ChecksumForm::PseudoHeader,
            down_timer_adverts: 3,
            trackers: Vec::new(),
            startup_delay: Duration::ZERO,
        }
    }
}

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

/// A dropped advertisement's reason: one keepalived counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Drop {
    /// Too short or too long.
    Length,
    /// TTL/hop limit not 255 (multicast) or out of range (unicast).
    Ttl,
    /// Version differs from ours.
    Version,
    /// v2 auth type invalid.
    InvalidAuthType,
    /// v2 auth type differs from ours.
    AuthTypeMismatch,
    /// v2 password wrong.
    AuthFailure,
    /// v2 interval differs from ours.
    Interval,
    /// Type is not advertisement.
    Type,
    /// Checksum wrong.
    Checksum,
    /// Multicast when unicast was expected or the reverse.
    Addressing,
    /// Address count differs (keepalived 2.2 drops).
    AddressCount,
    /// Address list differs (keepalived 2.2 drops).
    AddressList,
    /// Unicast source not a configured peer.
    NotPeer,
    /// Another VRID (demultiplexing error upstream).
    Vrid,
}

/// Counters: keepalived's `/tmp/keepalived.stats` plus per-reason drops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Adverts accepted.
    pub adverts_received: u64,
    /// Adverts sent (one per advert event, whatever the number of peers).
    pub adverts_sent: u64,
    /// Transitions to MASTER.
    pub became_master: u64,
    /// Transitions out of MASTER.
    pub released_master: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Priority-0 adverts sent.
    pub priority_zero_sent: u64,
    /// Lower-priority adverts a MASTER did not answer, having answered one within the
    /// advert interval.
    pub lower_priority_unanswered: u64,
    /// Drops by reason.
    pub drops: Vec<(Drop, u64)>,
}

impl Stats {
    /// Drops counted for `reason`.
    pub fn dropped(&self, reason: Drop) -> u64 {
        self.drops
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    fn drop(&mut self, reason: Drop) {
        match self.drops.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.drops.push((reason, 1)),
        }
    }
}

/// Log events, printed with keepalived 2.2's exact wording by `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Log {
    /// `(%s) Entering MASTER STATE` etc.; `init` adds ` (init)`.
    Entering(String, State, bool),
    /// `(%s) Receive advertisement timeout` (-D).
    ReceiveTimeout(String),
    /// `(%s) Received advert from %s with lower priority %d, ours %d[, forcing new election]`.
    LowerPriority(String, IpAddr, u8, u8, bool),
    /// `(%s) Master received advert from %s with higher priority %d, ours %d`.
    HigherPriority(String, IpAddr, u8, u8),
    /// `(%s) Master received advert from %s with same priority %d but higher IP address than ours`.
    SamePriorityHigherIp(String, IpAddr, u8),
    /// `(%s) received lower priority (%d) advert from %s - discarding`.
    Discarding(String, u8, IpAddr),
    /// holdfast's `preempt_fast`: `(%s) received lower priority (%d) advert from %s - preempting`.
    FastPreempt(String, u8, IpAddr),
    /// `(%s) Backup received priority 0 advertisement` (-D).
    BackupPrio0(String),
    /// `(%s) Master received priority 0 message` (-D).
    MasterPrio0(String),
    /// `(%s) sent 0 priority` (-D).
    SentPrio0(String),
    /// `(%s) Changing effective priority from %d to %d`.
    EffectivePriority(String, u8, u8),
    /// `(%s) setting VIPs.` (-D).
    SettingVips(String),
    /// `(%s) removing VIPs.` (-D).
    RemovingVips(String),
    /// `(%s) WARNING - equal priority advert received from remote host with our IP address.`
    EqualPriorityOurIp(String),
    /// Two owners.
    TwoOwners(String, IpAddr),
    /// A dropped advert, in keepalived's words for that reason.
    Dropped(String, Drop, String),
    /// `IPSEC AH : invalid IPSEC SPI value. %u and expect %u` (no instance name, as
    /// keepalived logs it).
    AhSpi(u32, u32),
    /// `(%s) IPSEC-AH : Syncing seq_num - Increment seq`.
    AhSyncSeq(String),
}

impl Log {
    /// Whether keepalived logs this only with `-D` (`--log-detail`).
    pub fn detail(&self) -> bool {
        matches!(
            self,
            Log::ReceiveTimeout(_)
                | Log::BackupPrio0(_)
                | Log::MasterPrio0(_)
                | Log::SentPrio0(_)
                | Log::SettingVips(_)
                | Log::RemovingVips(_)
        )
    }
}

impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Log::Entering(n, s, init) => write!(
                f,
                "({n}) Entering {s} STATE{}",
                if *init { " (init)" } else { "" }
            ),
            Log::ReceiveTimeout(n) => write!(f, "({n}) Receive advertisement timeout"),
            Log::LowerPriority(n, a, p, o, force) => write!(
                f,
                "({n}) Received advert from {a} with lower priority {p}, ours {o}{}",
                if *force { ", forcing new election" } else { "" }
            ),
            Log::HigherPriority(n, a, p, o) => write!(
                f,
                "({n}) Master received advert from {a} with higher priority {p}, ours {o}"
            ),
            Log::SamePriorityHigherIp(n, a, p) => write!(
                f,
                "({n}) Master received advert from {a} with same priority {p} but higher IP address than ours"
            ),
            Log::Discarding(n, p, a) => write!(
                f,
                "({n}) received lower priority ({p}) advert from {a} - discarding"
            ),
            Log::FastPreempt(n, p, a) => write!(
                f,
                "({n}) received lower priority ({p}) advert from {a} - preempting"
            ),
            Log::BackupPrio0(n) => write!(f, "({n}) Backup received priority 0 advertisement"),
            Log::MasterPrio0(n) => write!(f, "({n}) Master received priority 0 message"),
            Log::SentPrio0(n) => write!(f, "({n}) sent 0 priority"),
            Log::EffectivePriority(n, a, b) => {
                write!(f, "({n}) Changing effective priority from {a} to {b}")
            }
            Log::SettingVips(n) => write!(f, "({n}) setting VIPs."),
            Log::RemovingVips(n) => write!(f, "({n}) removing VIPs."),
            Log::EqualPriorityOurIp(n) => write!(
                f,
                "({n}) WARNING - equal priority advert received from remote host with our IP address."
            ),
            Log::TwoOwners(n, a) => write!(
                f,
                "({n}) CONFIGURATION ERROR: local instance and {a} are both configured as address owner, please resolve"
            ),
            Log::Dropped(n, _, text) => write!(f, "({n}) {text}"),
            Log::AhSpi(saddr, spi) => write!(
                f,
                "IPSEC AH : invalid IPSEC SPI value. {saddr} and expect {spi}"
            ),
            Log::AhSyncSeq(n) => write!(f, "({n}) IPSEC-AH : Syncing seq_num - Increment seq"),
        }
    }
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
    advert_at: Option<Instant>,
    down_at: Option<Instant>,
    preempt_since: Option<Instant>,
    garp_at: Option<(Instant, GarpKind)>,
    refresh_at: Option<Instant>,
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

/// Where a virtual router runs, besides its [`RouterConfig`]: what [`continues`] compares.
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    /// The interface it advertises on.
    pub interface: &'a str,
    /// Its configured source address (`unicast_src_ip` / `mcast_src_ip`), if any.
    pub source: Option<IpAddr>,
    /// `unicast_ttl`.
    pub unicast_ttl: u8,
    /// `use_vmac`: the macvlan's name and MAC address, and whether adverts use the
    /// instance's own interface (`vmac_xmit_base`).
    pub vmac: Option<(&'a str, [u8; 6], bool)>,
    /// The router's settings.
    pub config: &'a RouterConfig,
}

/// Whether, across a reload, the router configured as `new` continues the running `old` one
/// (its state — MASTER above all — kept, its other settings replaced) or is another router
/// (the old one stops and the new one starts in INIT). The one rule for it.
///
/// keepalived's (`vrrp_exist`): the same interface, VRID and family, both unicast or both
/// multicast; then, unicast, the same source address, and multicast, the same group. holdfast
/// also wants the same configured source and `unicast_ttl` in multicast (its socket is bound
/// to them and is not reopened in place): where keepalived would keep the state through such
/// a change, holdfast starts the instance afresh; likewise for a change of `use_vmac` (the
/// macvlan is made again).
pub fn continues(old: &Placement<'_>, new: &Placement<'_>) -> bool {
    let (o, n) = (old.config, new.config);
    let unicast = !n.unicast_peers.is_empty();
    old.interface == new.interface
        && o.vrid == n.vrid
        && o.family == n.family
        && o.unicast_peers.is_empty() != unicast
        && old.source == new.source
        && old.unicast_ttl == new.unicast_ttl
        && old.vmac == new.vmac
        && (unicast || o.mcast_group == n.mcast_group)
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
            advert_at: None,
            down_at: None,
            preempt_since: None,
            garp_at: None,
            refresh_at: None,
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
        [
            self.advert_at,
            self.down_at,
            self.garp_at.map(|(t, _)| t),
            self.refresh_at,
        ]
        .into_iter()
        .flatten()
        .min()
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
            } => self.on_advert(now, src, dst, ttl, payload, ah),
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
            self.advert_at = Some(
                self.advert_at
                    .map_or(by_new_interval, |t| t.min(by_new_interval)),
            );
        }
        self.reevaluate(now);
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.down_at.is_some_and(|t| t <= now) {
            self.down_at = None;
            if self.state == State::Backup {
                self.log(Log::ReceiveTimeout(self.cfg.name.clone()));
                self.become_master(now, Reason::MasterDown);
            }
        }
        if self.advert_at.is_some_and(|t| t <= now) {
            self.advert_at = None;
            if self.state == State::Master {
                self.send_advert(self.effective);
                self.advert_at = Some(now + self.cfg.advert_int);
            }
        }
        if let Some((t, kind)) = self.garp_at
            && t <= now
        {
            self.garp_at = None;
            if self.state == State::Master {
                let count = match kind {
                    GarpKind::Master => self.cfg.garp.master_repeat,
                    GarpKind::LowerPrio => self.cfg.garp.lower_prio_repeat,
                };
                self.out.push_back(Output::Announce { count });
            }
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            if let (State::Master, Some(every)) = (self.state, self.cfg.garp.master_refresh) {
                self.out.push_back(Output::Announce {
                    count: self.cfg.garp.master_refresh_repeat,
                });
                self.refresh_at = Some(now + every);
            }
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
        self.down_at = Some(now + self.master_down_interval() + self.cfg.startup_delay);
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
        self.advert_at = None;
        self.down_at = None;
        self.garp_at = None;
        self.refresh_at = None;
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
        self.down_at = None;
        self.preempt_since = None;
        self.advert_at = Some(now + self.cfg.advert_int);
        self.garp_at = (!self.cfg.garp.master_delay.is_zero())
            .then(|| (now + self.cfg.garp.master_delay, GarpKind::Master));
        self.refresh_at = self.cfg.garp.master_refresh.map(|d| now + d);
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
            self.down_at = Some(now + self.master_down_interval());
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
                self.advert_at = Some(now + self.cfg.advert_int);
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
                    self.down_at = Some(now + self.master_down_interval());
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

    fn dropped(&mut self, reason: Drop, text: String) {
        self.stats.drop(reason);
        self.log(Log::Dropped(self.cfg.name.clone(), reason, text));
    }

    /// keepalived's `vrrp_check_packet` order (reference §2.6), then the state machine.
    fn on_advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        payload: &[u8],
        ah: Option<AhPart<'_>>,
    ) {
        let family = self.cfg.family;
        let unicast = !self.cfg.unicast_peers.is_empty();
        let ah_key = match self.cfg.auth {
            Auth::Ah(k) if family == Family::V4 => Some(k),
            _ => None,
        };
        let mut rx_seq = None;
        if ah.is_some() != ah_key.is_some() {
            let text = if ah.is_some() {
                "Received AH header but auth type not AH"
            } else {
                "No AH header but auth type is AH"
            };
            self.dropped(Drop::AuthTypeMismatch, text.to_string());
            return;
        }
        if payload.len() < HEADER_LEN {
            self.dropped(Drop::Length, "IPv4 VRRP packet too short".to_string());
            return;
        }
        let p = Packet::new_unchecked(payload);
        if p.vrid() != self.cfg.vrid {
            self.stats.drop(Drop::Vrid);
            return;
        }
        if let Err(e) = p.check_len(family) {
            match e {
                WireError::Version(v) => self.dropped(
                    Drop::Version,
                    format!(
                        "wrong version. Received {v} and expect {}",
                        self.cfg.version.number()
                    ),
                ),
                _ => {
                    let expect = match self.cfg.version {
                        Version::V2 => HEADER_LEN + 4 * usize::from(p.count()) + 8,
                        Version::V3 => HEADER_LEN + family_len(family) * usize::from(p.count()),
                    };
                    self.dropped(
                        Drop::Length,
                        format!(
                            "vrrp packet too short/long, length {} and expect {expect}",
                            payload.len()
                        ),
                    );
                }
            }
            return;
        }
        // TTL: multicast must be 255; unicast only checked against min/max_ttl.
        if !unicast {
            if ttl != 255 {
                self.dropped(
                    Drop::Ttl,
                    format!("invalid TTL/HL. Received {ttl} and expect 255"),
                );
                return;
            }
        } else if let Some(peer) = self.cfg.unicast_peers.iter().find(|p| p.addr == src) {
            let lo = peer.min_ttl.unwrap_or(0);
            let hi = peer.max_ttl.unwrap_or(255);
            if ttl < lo || ttl > hi {
                self.dropped(Drop::Ttl, format!("TTL/HL {ttl} not in range {lo} - {hi}"));
                return;
            }
        }
        if p.version() != self.cfg.version.number() {
            self.dropped(
                Drop::Version,
                format!(
                    "wrong version. Received {} and expect {}",
                    p.version(),
                    self.cfg.version.number()
                ),
            );
            return;
        }
        if self.cfg.version == Version::V2 {
            let t = p.auth_type();
            if t > 2 {
                self.dropped(Drop::InvalidAuthType, format!("Invalid auth type: {t}"));
                return;
            }
            if t != self.cfg.auth.type_number() {
                self.dropped(
                    Drop::AuthTypeMismatch,
                    format!(
                        "received a {t} auth, expecting {}!",
                        self.cfg.auth.type_number()
                    ),
                );
                return;
            }
            if let Auth::Pass(ours) = self.cfg.auth {
                // Constant-time comparison.
                let diff = ours
                    .iter()
                    .zip(p.auth_data())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if diff != 0 {
                    self.dropped(Drop::AuthFailure, "received an invalid passwd!".to_string());
                    return;
                }
            }
            if let (Some(key), Some(ah)) = (ah_key, ah) {
                if ah.ah[0] != crate::wire::PROTO_VRRP {
                    // An AH header for another protocol: not ours to count.
                    return;
                }
                match crate::ah::verify(&key, ah.ip_header, ah.ah, payload, unicast) {
                    Err(crate::ah::AhError::Icv) => {
                        self.dropped(
                            Drop::AuthFailure,
                            "IPSEC-AH : invalid IPSEC HMAC-MD5 value. Due to fields mutation or bad password !".to_string(),
                        );
                        return;
                    }
                    Err(crate::ah::AhError::Spi { saddr, spi }) => {
                        self.stats.drop(Drop::AuthFailure);
                        self.log(Log::AhSpi(saddr, spi));
                        return;
                    }
                    Ok(seq) if seq > self.ah_seq => {
                        self.ah_seq = seq;
                        rx_seq = Some(seq);
                    }
                    Ok(seq) => {
                        let local = self.ah_seq;
                        self.dropped(
                            Drop::AuthFailure,
                            format!("IPSEC-AH : sequence number {seq} already processed. Packet dropped. Local({local})"),
                        );
                        return;
                    }
                }
                if self.state == State::Backup {
                    // keepalived: a MASTER's numbers are flowing again.
                    self.ah_cycle = false;
                }
            }
            let ours = self.cfg.advert_int.as_secs();
            if u64::from(p.adver_int_secs()) != ours {
                self.dropped(
                    Drop::Interval,
                    format!(
                        "advertisement interval mismatch mine={ours} sec rcv'd={} sec",
                        p.adver_int_secs()
                    ),
                );
                return;
            }
        }
        if p.kind() != 1 {
            self.dropped(Drop::Type, "Invalid packet type".to_string());
            return;
        }
        let ips = IpPair { src, dst };
        let Some(form) = p.verify_checksum(family, &ips) else {
            self.dropped(
                Drop::Checksum,
                format!("Invalid VRRPv{} checksum", self.cfg.version.number()),
            );
            return;
        };
        let dst_mcast = dst.is_multicast();
        if dst_mcast == unicast {
            let (e, r) = if unicast {
                ("un", "mult")
            } else {
                ("mult", "un")
            };
            self.dropped(
                Drop::Addressing,
                format!("Expected {e}icast packet but received {r}icast packet"),
            );
            return;
        }
        let Ok((adv, _)) = AdvertRepr::parse(&p, family, &ips) else {
            self.dropped(
                Drop::Checksum,
                format!("Invalid VRRPv{} checksum", self.cfg.version.number()),
            );
            return;
        };
        // keepalived 2.2 drops adverts whose VIP count or list differs.
        if adv.addrs.len() != self.cfg.vips.len() {
            self.dropped(
                Drop::AddressCount,
                format!(
                    "received an unexpected ip number count {}, expected {}!",
                    adv.addrs.len(),
                    self.cfg.vips.len()
                ),
            );
            return;
        }
        let same_master = self.master_addr == Some(src);
        if !(self.cfg.skip_check_adv_addr && same_master)
            && let Some(missing) = self.cfg.vips.iter().find(|v| !adv.addrs.contains(v))
        {
            {
                self.dropped(
                    Drop::AddressList,
                    format!("ip address associated with VRID {} not present in MASTER advert: {missing}", self.cfg.vrid),
                );
                return;
            }
        }
        let peer_check = self.cfg.check_unicast_src
            || self
                .cfg
                .unicast_peers
                .iter()
                .any(|p| p.min_ttl.is_some() || p.max_ttl.is_some());
        if unicast && peer_check && !self.cfg.unicast_peers.iter().any(|p| p.addr == src) {
            self.dropped(
                Drop::NotPeer,
                format!("unicast source address {src} not a unicast peer"),
            );
            return;
        }
        self.remember_form(src, form);
        self.stats.adverts_received += 1;
        if adv.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        self.on_valid_advert(now, src, &adv, rx_seq);
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
                    self.down_at = Some(now + self.skew());
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
                    self.down_at = Some(now + self.master_down_interval());
                } else {
                    if !self.cfg.preempt_delay.is_zero() && self.preempt_since.is_none() {
                        // keepalived: the delay starts when a lower-priority master is seen.
                        self.preempt_since = Some(now);
                        self.master_addr = Some(src);
                        self.master_prio = Some(adv.priority);
                        self.down_at = Some(now + self.master_down_interval());
                        return;
                    }
                    if self.cfg.preempt_fast {
                        let at = now + self.skew();
                        if self.down_at.is_none_or(|d| d > at) {
                            self.log(Log::FastPreempt(name, adv.priority, src));
                            self.down_at = Some(at);
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
                    self.advert_at = Some(now + self.cfg.advert_int);
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
                        self.advert_at = Some(now + self.cfg.advert_int);
                    }
                    self.out.push_back(Output::Announce {
                        count: self.cfg.garp.lower_prio_repeat,
                    });
                    if !self.cfg.garp.lower_prio_delay.is_zero() {
                        self.garp_at =
                            Some((now + self.cfg.garp.lower_prio_delay, GarpKind::LowerPrio));
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

fn family_len(f: Family) -> usize {
    match f {
        Family::V4 => 4,
        Family::V6 => 16,
    }
}
