//! What a virtual router is configured with ([`RouterConfig`]) and where it runs
//! ([`Placement`]), and the one rule for whether a reloaded router continues a running one.

use std::net::IpAddr;
use std::time::Duration;

use crate::wire::{Auth, ChecksumForm, Family, Version};

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
    /// Trackers, addressed by index in [`super::Input::Tracker`].
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
