//! The typed configuration: what a keepalived.conf means, with keepalived 2.2's defaults applied.
//!
//! Keyword names survive in field names where they are keepalived's (`virtual_router_id` →
//! `vrid` is the one abbreviation). Source locations are kept in [`Origin`] fields, which compare
//! equal whatever they hold, so `parse(print(c)) == c` compares meaning, not layout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::span::Span;

/// Where an item was declared. Always equal to any other `Origin`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin(pub Option<Span>);

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

impl Eq for Origin {}

/// Values a later line replaced, with where each was given: kept for the checks keepalived
/// makes on each line as it reads it. Like [`Origin`], always equal to any other.
#[derive(Clone, Debug, Default)]
pub struct Replaced(pub Vec<(String, Origin)>);

impl PartialEq for Replaced {
    fn eq(&self, _: &Replaced) -> bool {
        true
    }
}

impl Eq for Replaced {}

/// Instances read and then dropped (see [`Config::dropped_instances`]). Like [`Origin`],
/// always equal to any other: the configuration means the same without them.
#[derive(Clone, Debug, Default)]
pub struct Dropped(pub Vec<VrrpInstance>);

impl PartialEq for Dropped {
    fn eq(&self, _: &Dropped) -> bool {
        true
    }
}

/// A whole configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// `global_defs`.
    pub global: Global,
    /// `vrrp_script` blocks.
    pub scripts: Vec<VrrpScript>,
    /// `track_file` (old name `vrrp_track_file`) blocks.
    pub track_files: Vec<TrackFile>,
    /// `vrrp_track_process` blocks.
    pub track_processes: Vec<TrackProcess>,
    /// `vrrp_instance` blocks.
    pub instances: Vec<VrrpInstance>,
    /// Instances keepalived reads and then drops in its checks after reading (strict mode's
    /// refusals, a VRRPv3 instance without VIPs): not run, but their interfaces are checked
    /// against the host before those checks, as keepalived does.
    pub dropped_instances: Dropped,
    /// `vrrp_sync_group` blocks.
    pub sync_groups: Vec<SyncGroup>,
    /// `virtual_server_group` blocks.
    pub vs_groups: Vec<VsGroup>,
    /// `virtual_server` blocks.
    pub virtual_servers: Vec<VirtualServer>,
    /// `static_ipaddress`: set at start, kept while running, removed at stop.
    pub static_addresses: Vec<Vip>,
    /// `static_routes`.
    pub static_routes: Vec<Route>,
    /// `static_rules`.
    pub static_rules: Vec<Rule>,
    /// `bfd_instance` blocks (those keepalived's BFD process keeps).
    pub bfd_instances: Vec<BfdInstance>,
    /// `bgp_announce` blocks (holdfast extension).
    pub announces: Vec<Announce>,
}

/// `bgp_announce NAME { … }` (holdfast extension): prefixes announced through the site's BGP
/// speaker while what they track is healthy. holdfast puts a route per prefix in `table`
/// (`dev lo`, keepalived's protocol number) while every tracked condition is up; the speaker
/// (FRR's `ip import-table`, BIRD's `protocol kernel { kernel table N; learn; }`) turns it
/// into an announcement. The BGP attributes are for the speaker's configuration, which
/// `holdfast frr-config` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// Name (for log lines and the speaker's route-map).
    pub name: String,
    /// `prefix ADDR[/LEN]` lines (a host prefix without `/LEN`), each with where it is.
    pub prefixes: Vec<(IpAddr, u8, Origin)>,
    /// `table N` (1-252, required): the routing table the speaker imports.
    pub table: Option<u32>,
    /// `track_virtual_server IP PORT [TCP|UDP|SCTP]`, `… fwmark N`, `… group NAME`: announced
    /// while each has its quorum.
    pub virtual_servers: Vec<(VsKey, Protocol, Origin)>,
    /// `track_interface`, `track_script`, `track_file`, `track_process`: announced while each
    /// is up (weights do not apply).
    pub track: Tracking,
    /// `community …` words (`AA:NN`, large `A:B:C`, or a well-known name).
    pub communities: Vec<String>,
    /// `med N` (the announcement's MULTI_EXIT_DISC).
    pub med: Option<u32>,
    /// `next_hop ADDR`, at most one per address family.
    pub next_hops: Vec<IpAddr>,
    /// Declaration site.
    pub origin: Origin,
}

/// `bfd_instance NAME { … }`: a BFD session with a neighbour (RFC 5880/5881, single hop), as
/// keepalived 2.2.7 reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdInstance {
    /// Name (at most 31 characters).
    pub name: String,
    /// `neighbor_ip` (or `neighbour_ip`).
    pub neighbor: IpAddr,
    /// `source_ip`.
    pub source: Option<IpAddr>,
    /// `min_rx` (ms, to the µs; default 10 ms): the slowest rate it asks the neighbour for.
    pub min_rx: Duration,
    /// `min_tx` (default 10 ms): the rate it sends at once the session is up.
    pub min_tx: Duration,
    /// `idle_tx` (default 1 s): the rate it sends at while the session is not up.
    pub idle_tx: Duration,
    /// `multiplier` (1-255, default 5): packets missed before the session is down.
    pub multiplier: u8,
    /// `passive`: sends nothing until the neighbour has spoken.
    pub passive: bool,
    /// `ttl` / `hoplimit` (default 255 for IPv4, 64 for IPv6).
    pub ttl: u8,
    /// `max_hops` (255, or -1 as written: any; default 0, the packets must arrive with
    /// `ttl`), at most `ttl`.
    pub max_hops: i32,
    /// `weight` (-253..253, default 0) that `track_bfd` applies, and `reverse`.
    pub weight: i32,
    /// `weight … reverse`.
    pub weight_reverse: bool,
    /// Declaration site.
    pub origin: Origin,
}

/// `user [[:]group]` for scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    /// User name.
    pub user: String,
    /// Group name, if given.
    pub group: Option<String>,
}

/// A script to run: the command line exactly as configured (split by the runner) and its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The command string (quotes already removed).
    pub cmd: String,
    /// `user [group]`, else the default script user.
    pub user: Option<UserSpec>,
}

/// `dataplane proxy|nft|ipvs|auto` (holdfast extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPlane {
    /// Userspace TCP proxy.
    Proxy,
    /// nftables NAT/DSR.
    Nft,
    /// Kernel IPVS, as keepalived.
    Ipvs,
    /// IPVS when the kernel has it, otherwise the proxy.
    Auto,
}

/// GARP / unsolicited-NA timing; `None` means "inherit" (instance → global → keepalived default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Garp {
    /// `garp_master_delay` (default 5 s).
    pub master_delay: Option<Duration>,
    /// `garp_master_repeat` (default 5).
    pub master_repeat: Option<u32>,
    /// `garp_master_refresh` (default off).
    pub master_refresh: Option<Duration>,
    /// `garp_master_refresh_repeat` (default 1).
    pub master_refresh_repeat: Option<u32>,
    /// `garp_lower_prio_delay` (default = master_delay).
    pub lower_prio_delay: Option<Duration>,
    /// `garp_lower_prio_repeat` (default = master_repeat).
    pub lower_prio_repeat: Option<u32>,
    /// `garp_interval` / `vrrp_garp_interval` (spacing between GARPs).
    pub interval: Option<Duration>,
    /// `gna_interval` / `vrrp_gna_interval` (spacing between NAs).
    pub gna_interval: Option<Duration>,
}

/// `lvs_timeouts [tcp S] [tcpfin S] [udp S]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LvsTimeouts {
    /// TCP established.
    pub tcp: Option<u32>,
    /// TCP after FIN.
    pub tcpfin: Option<u32>,
    /// UDP.
    pub udp: Option<u32>,
}

/// `lvs_sync_daemon IFACE [[inst] VRRP_INSTANCE] [id N] [maxlen N] [port N] [ttl N]
/// [group IP]`: the kernel's IPVS connection synchronisation, master or backup as the VRRP
/// instance is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LvsSyncDaemon {
    /// Interface the sync messages use.
    pub iface: String,
    /// The VRRP instance whose state it follows (none: both roles run).
    pub instance: Option<String>,
    /// `id` (syncid, 0-255; default 0).
    pub id: Option<u8>,
    /// `maxlen`: largest sync message.
    pub maxlen: Option<u16>,
    /// `port`: UDP port.
    pub port: Option<u16>,
    /// `ttl`: multicast TTL.
    pub ttl: Option<u8>,
    /// `group`: multicast group.
    pub group: Option<IpAddr>,
    /// Declaration site.
    pub origin: Origin,
}

/// `global_defs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// `router_id`.
    pub router_id: Option<String>,
    /// `notification_email { … }`.
    pub notification_email: Vec<String>,
    /// `notification_email_from`.
    pub notification_email_from: Option<String>,
    /// `smtp_server HOST [PORT]`: the host.
    pub smtp_server: Option<String>,
    /// `smtp_server HOST [PORT]`: the port (default 25).
    pub smtp_port: Option<u16>,
    /// `smtp_connect_timeout`.
    pub smtp_connect_timeout: Option<Duration>,
    /// `smtp_helo_name`.
    pub smtp_helo_name: Option<String>,
    /// `smtp_alert [BOOL]`: the default of every `smtp_alert`.
    pub smtp_alert: Option<bool>,
    /// `smtp_alert_vrrp [BOOL]`: the default for VRRP instances and sync groups.
    pub smtp_alert_vrrp: Option<bool>,
    /// `smtp_alert_checker [BOOL]`: the default for virtual and real servers.
    pub smtp_alert_checker: Option<bool>,
    /// `no_checker_emails`: a checker's change sends mail only when its server's state
    /// changes.
    pub no_checker_emails: bool,
    /// `no_email_faults`: no mail when an instance or group enters FAULT.
    pub no_email_faults: bool,
    /// `script_user`.
    pub script_user: Option<UserSpec>,
    /// `enable_script_security`.
    pub enable_script_security: bool,
    /// `vrrp_version` (default 2).
    pub vrrp_version: u8,
    /// `vrrp_mcast_group4` (default 224.0.0.18).
    pub vrrp_mcast_group4: Ipv4Addr,
    /// `vrrp_mcast_group6` (default ff02::12).
    pub vrrp_mcast_group6: Ipv6Addr,
    /// `vrrp_garp_*` / `vrrp_gna_interval`.
    pub garp: Garp,
    /// `vrrp_min_garp`.
    pub vrrp_min_garp: bool,
    /// `vrrp_lower_prio_no_advert`.
    pub lower_prio_no_advert: bool,
    /// `vrrp_higher_prio_send_advert`.
    pub higher_prio_send_advert: bool,
    /// `vrrp_check_unicast_src`.
    pub check_unicast_src: bool,
    /// `vrrp_skip_check_adv_addr`.
    pub skip_check_adv_addr: bool,
    /// `vrrp_strict`.
    pub strict: bool,
    /// `nftables [TABLE]`: the VRRP firewall's table (keepalived's default, `keepalived`,
    /// when an instance needs one and this is not given).
    pub nftables: Option<String>,
    /// `nftables_priority` (default -1).
    pub nftables_priority: Option<i32>,
    /// `nftables_counters`.
    pub nftables_counters: bool,
    /// `nftables_ifindex`: link-local VIPs matched by interface index, never by name.
    pub nftables_ifindex: bool,
    /// `vrrp_startup_delay`.
    pub startup_delay: Option<Duration>,
    /// `dynamic_interfaces`.
    pub dynamic_interfaces: bool,
    /// `max_auto_priority [N]` (bare keyword = 99).
    pub max_auto_priority: Option<i32>,
    /// `vrrp_priority`: the nice value (-20 to 19) of the part that runs VRRP.
    pub vrrp_priority: Option<i32>,
    /// `checker_priority`: the nice value of the part that runs the checkers.
    pub checker_priority: Option<i32>,
    /// `vrrp_rt_priority`.
    pub vrrp_rt_priority: Option<u32>,
    /// `checker_rt_priority`.
    pub checker_rt_priority: Option<u32>,
    /// `vrrp_rlimit_rttime`: microseconds a real-time VRRP thread may run without blocking
    /// (keepalived's default 10 000).
    pub vrrp_rlimit_rttime: Option<u64>,
    /// `checker_rlimit_rttime`.
    pub checker_rlimit_rttime: Option<u64>,
    /// `vrrp_no_swap`.
    pub vrrp_no_swap: bool,
    /// `checker_no_swap`.
    pub checker_no_swap: bool,
    /// `lvs_flush`.
    pub lvs_flush: bool,
    /// `lvs_flush_on_stop` (old `lvs_flush_onstop`).
    pub lvs_flush_on_stop: bool,
    /// `lvs_timeouts`.
    pub lvs_timeouts: Option<LvsTimeouts>,
    /// `lvs_sync_daemon` (or a vrrp_instance's deprecated `lvs_sync_daemon_interface`).
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    /// `notify_fifo`.
    pub notify_fifo: Option<Command>,
    /// `vrrp_notify_fifo`.
    pub vrrp_notify_fifo: Option<Command>,
    /// `lvs_notify_fifo`.
    pub lvs_notify_fifo: Option<Command>,
    /// `v3_checksum_as_v2`.
    pub v3_checksum_as_v2: bool,
    /// `checker_log_all_failures`.
    pub checker_log_all_failures: bool,
    /// `net_namespace NAME` (top level): the network namespace (`/var/run/netns/NAME`) the
    /// daemon enters before anything else.
    pub net_namespace: Option<String>,
    /// `instance NAME` (top level): names the daemon's pid file and log identity.
    pub instance_name: Option<String>,
    /// `default_interface`: the interface of static addresses given without `dev` (eth0).
    pub default_interface: Option<String>,
    /// `notify_fifo_script`: started once with `notify_fifo`'s path as its last argument, to
    /// read the FIFO.
    pub notify_fifo_script: Option<Command>,
    /// `vrrp_notify_fifo_script`.
    pub vrrp_notify_fifo_script: Option<Command>,
    /// `lvs_notify_fifo_script`.
    pub lvs_notify_fifo_script: Option<Command>,
    /// `startup_script`.
    pub startup_script: Option<Command>,
    /// `startup_script_timeout` (default 10 s).
    pub startup_script_timeout: Option<Duration>,
    /// `shutdown_script`.
    pub shutdown_script: Option<Command>,
    /// `shutdown_script_timeout` (default 10 s).
    pub shutdown_script_timeout: Option<Duration>,
    /// `dataplane` (holdfast).
    pub dataplane: Option<DataPlane>,
    /// `control_socket PATH` (holdfast).
    pub control_socket: Option<String>,
    /// `metrics_listen ADDR:PORT` (holdfast).
    pub metrics_listen: Option<SocketAddr>,
    /// `nft_table NAME` (holdfast): the `inet` table `dataplane nft` owns (default
    /// `holdfast`).
    pub nft_table: Option<String>,
    /// `nft_flowtable on|off` (holdfast): whether `dataplane nft` offloads established NAT
    /// connections to a flowtable where the kernel has one (default on).
    pub nft_flowtable: Option<bool>,
    /// `proxy_maxconn N` (holdfast): connections the proxy plane carries at once, over every
    /// virtual server; past it, accepts pause (HAProxy's `maxconn`). Default: derived from
    /// the open file limit.
    pub proxy_maxconn: Option<u32>,
    /// Declaration site.
    pub origin: Origin,
}

impl Default for Global {
    /// keepalived's global defaults.
    fn default() -> Self {
        Global {
            router_id: None,
            notification_email: Vec::new(),
            notification_email_from: None,
            smtp_server: None,
            smtp_port: None,
            smtp_connect_timeout: None,
            smtp_helo_name: None,
            smtp_alert: None,
            smtp_alert_vrrp: None,
            smtp_alert_checker: None,
            no_checker_emails: false,
            no_email_faults: false,
            script_user: None,
            enable_script_security: false,
            vrrp_version: 2,
            vrrp_mcast_group4: Ipv4Addr::new(224, 0, 0, 18),
            vrrp_mcast_group6: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
            garp: Garp::default(),
            vrrp_min_garp: false,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            check_unicast_src: false,
            skip_check_adv_addr: false,
            strict: false,
            nftables: None,
            nftables_priority: None,
            nftables_counters: false,
            nftables_ifindex: false,
            startup_delay: None,
            dynamic_interfaces: false,
            max_auto_priority: None,
            vrrp_priority: None,
            checker_priority: None,
            vrrp_rt_priority: None,
            checker_rt_priority: None,
            vrrp_rlimit_rttime: None,
            checker_rlimit_rttime: None,
            vrrp_no_swap: false,
            checker_no_swap: false,
            lvs_flush: false,
            lvs_flush_on_stop: false,
            lvs_timeouts: None,
            lvs_sync_daemon: None,
            notify_fifo: None,
            vrrp_notify_fifo: None,
            lvs_notify_fifo: None,
            v3_checksum_as_v2: false,
            checker_log_all_failures: false,
            net_namespace: None,
            instance_name: None,
            default_interface: None,
            notify_fifo_script: None,
            vrrp_notify_fifo_script: None,
            lvs_notify_fifo_script: None,
            startup_script: None,
            startup_script_timeout: None,
            shutdown_script: None,
            shutdown_script_timeout: None,
            dataplane: None,
            control_socket: None,
            metrics_listen: None,
            nft_table: None,
            nft_flowtable: None,
            proxy_maxconn: None,
            origin: Origin::default(),
        }
    }
}

/// What a `vrrp_script` runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptKind {
    /// `script "…"`: a command.
    Command(String),
    /// A native checker block in place of `script` (holdfast extension).
    Checker(Box<Checker>),
}

/// `vrrp_script NAME { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpScript {
    /// Name.
    pub name: String,
    /// What to run; `None` if neither a script nor a checker was given (keepalived removes it).
    pub kind: Option<ScriptKind>,
    /// `interval` (default 1 s).
    pub interval: Duration,
    /// `timeout` (default: the interval).
    pub timeout: Option<Duration>,
    /// `weight` (default 0).
    pub weight: i32,
    /// `weight … reverse`.
    pub reverse: bool,
    /// `rise` (default 1).
    pub rise: u32,
    /// `fall` (default 1).
    pub fall: u32,
    /// `user`.
    pub user: Option<UserSpec>,
    /// `init_fail`.
    pub init_fail: bool,
    /// Declaration site.
    pub origin: Origin,
}

/// `track_file NAME { … }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFile {
    /// Name.
    pub name: String,
    /// `file`.
    pub file: String,
    /// `weight` (default 1).
    pub weight: i32,
    /// `weight … reverse`.
    pub reverse: bool,
    /// `init_file [VALUE] [overwrite]`.
    pub init_file: Option<(i64, bool)>,
    /// Declaration site.
    pub origin: Origin,
}

/// `vrrp_track_process NAME { … }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackProcess {
    /// Name.
    pub name: String,
    /// `process NAME [ARGS…]`: the process name.
    pub process: String,
    /// The arguments after the name, if any.
    pub args: Vec<String>,
    /// `param_match initial|partial`.
    pub param_match: Option<String>,
    /// `weight` (default 0).
    pub weight: i32,
    /// `weight … reverse`.
    pub reverse: bool,
    /// `quorum` (default 1).
    pub quorum: u32,
    /// `quorum_max`.
    pub quorum_max: Option<u32>,
    /// `fork_delay`.
    pub fork_delay: Option<Duration>,
    /// `terminate_delay`.
    pub terminate_delay: Option<Duration>,
    /// `delay` (sets both).
    pub delay: Option<Duration>,
    /// `full_command`.
    pub full_command: bool,
    /// Declaration site.
    pub origin: Origin,
}

/// `state MASTER|BACKUP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitState {
    /// `state MASTER`.
    Master,
    /// `state BACKUP` (default).
    Backup,
}

/// `authentication { auth_type …; auth_pass … }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// `PASS` or `AH`.
    pub auth_type: AuthType,
    /// `auth_pass` (only the first 8 bytes go on the wire).
    pub pass: String,
}

/// VRRPv2 authentication type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthType {
    /// Simple text password (type 1).
    Pass,
    /// IPsec AH (type 2).
    Ah,
}

/// `unicast_peer` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnicastPeer {
    /// Address.
    pub addr: IpAddr,
    /// `min_ttl`.
    pub min_ttl: Option<u8>,
    /// `max_ttl`.
    pub max_ttl: Option<u8>,
}

/// A `virtual_ipaddress` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length (default /32 or /128).
    pub prefix: u8,
    /// `brd IP|+|-`.
    pub brd: Option<String>,
    /// `dev IF` (default: the instance's interface).
    pub dev: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `label`.
    pub label: Option<String>,
    /// `peer`.
    pub peer: Option<IpAddr>,
    /// Flags: `home`, `-nodad`, `mngtmpaddr`, `noprefixroute`, `autojoin`, `no_track`.
    pub flags: Vec<String>,
    /// `preferred_lft N|forever`.
    pub preferred_lft: Option<String>,
    /// Declaration site.
    pub origin: Origin,
}

impl Vip {
    /// The address as keepalived's messages show it: with its prefix unless that is the whole
    /// address (keepalived shows it as written).
    pub fn written(&self) -> String {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.prefix)
        }
    }
}

/// A `track_interface` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackIf {
    /// Interface name.
    pub name: String,
    /// `weight N` (0 = FAULT when down).
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
    /// Declaration site.
    pub origin: Origin,
}

/// A `track_script` / `track_file` / `track_process` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackRef {
    /// The tracker's name.
    pub name: String,
    /// `weight N` overriding the tracker's own.
    pub weight: Option<i32>,
    /// `reverse` / `noreverse`.
    pub reverse: Option<bool>,
    /// Declaration site.
    pub origin: Origin,
}

/// Trackers attached to an instance or a sync group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracking {
    /// `track_interface`.
    pub interfaces: Vec<TrackIf>,
    /// `track_script`.
    pub scripts: Vec<TrackRef>,
    /// `track_file`.
    pub files: Vec<TrackRef>,
    /// `track_process`.
    pub processes: Vec<TrackRef>,
    /// `track_bfd`.
    pub bfds: Vec<TrackRef>,
}

/// `notify_*` scripts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// `notify_master`.
    pub master: Option<Command>,
    /// `notify_backup`.
    pub backup: Option<Command>,
    /// `notify_fault`.
    pub fault: Option<Command>,
    /// `notify_stop`.
    pub stop: Option<Command>,
    /// `notify` (generic, with 4 appended arguments).
    pub generic: Option<Command>,
    /// `notify_master_rx_lower_pri`.
    pub master_rx_lower_pri: Option<Command>,
}

impl Notify {
    /// Every configured script with its keyword.
    pub fn commands(&self) -> impl Iterator<Item = (&'static str, &Command)> {
        [
            ("notify_master", &self.master),
            ("notify_backup", &self.backup),
            ("notify_fault", &self.fault),
            ("notify_stop", &self.stop),
            ("notify", &self.generic),
            ("notify_master_rx_lower_pri", &self.master_rx_lower_pri),
        ]
        .into_iter()
        .filter_map(|(k, c)| c.as_ref().map(|c| (k, c)))
    }

    /// Every script slot with its keyword, for checks that disable or rewrite scripts.
    pub fn slots_mut(&mut self) -> [(&'static str, &mut Option<Command>); 6] {
        [
            ("notify_master", &mut self.master),
            ("notify_backup", &mut self.backup),
            ("notify_fault", &mut self.fault),
            ("notify_stop", &mut self.stop),
            ("notify", &mut self.generic),
            ("notify_master_rx_lower_pri", &mut self.master_rx_lower_pri),
        ]
    }
}

/// `vrrp_instance NAME { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpInstance {
    /// Name.
    pub name: String,
    /// `state` (default BACKUP).
    pub state: InitState,
    /// `interface`.
    pub interface: Option<String>,
    /// Where `interface` was given.
    pub interface_at: Origin,
    /// Earlier `interface` lines a later one replaced: keepalived checks each against the
    /// host as it reads it.
    pub replaced_interfaces: Replaced,
    /// `virtual_router_id` (mandatory, 1-255).
    pub vrid: u8,
    /// `priority` (default 100; 255 if `state MASTER` and no priority).
    pub priority: u8,
    /// `advert_int` (default 1 s).
    pub advert_int: Duration,
    /// `version` (default `vrrp_version`; IPv6 ⇒ 3).
    pub version: u8,
    /// `nopreempt`.
    pub nopreempt: bool,
    /// `preempt_delay` (0-1000 s).
    pub preempt_delay: Option<Duration>,
    /// `preempt_fast` (holdfast extension): a backup that hears a lower-priority master
    /// takes over after Skew_Time instead of waiting out the Master_Down_Interval.
    pub preempt_fast: bool,
    /// `unicast_peer { … }`.
    pub unicast_peers: Vec<UnicastPeer>,
    /// `unicast_src_ip`.
    pub unicast_src_ip: Option<IpAddr>,
    /// `mcast_src_ip`.
    pub mcast_src_ip: Option<IpAddr>,
    /// `unicast_ttl` (default 255).
    pub unicast_ttl: Option<u8>,
    /// `check_unicast_src`.
    pub check_unicast_src: bool,
    /// `unicast_fault_no_peer`.
    pub unicast_fault_no_peer: bool,
    /// `smtp_alert [BOOL]`.
    pub smtp_alert: Option<bool>,
    /// `authentication`.
    pub auth: Option<Auth>,
    /// `virtual_ipaddress`.
    pub vips: Vec<Vip>,
    /// `virtual_ipaddress_excluded`.
    pub excluded_vips: Vec<Vip>,
    /// `virtual_routes`: installed while MASTER.
    pub routes: Vec<Route>,
    /// `virtual_rules`: installed while MASTER.
    pub rules: Vec<Rule>,
    /// `track_*`.
    pub track: Tracking,
    /// `dont_track_primary`.
    pub dont_track_primary: bool,
    /// `native_ipv6`: an IPv6 instance (VRRPv3) whatever its addresses.
    pub native_ipv6: bool,
    /// `accept` / `no_accept` (`None` = keepalived's default: accept unless strict).
    pub accept: Option<bool>,
    /// `skip_check_adv_addr`.
    pub skip_check_adv_addr: Option<bool>,
    /// `strict_mode`.
    pub strict_mode: Option<bool>,
    /// `garp_*` overrides.
    pub garp: Garp,
    /// `lower_prio_no_advert`.
    pub lower_prio_no_advert: Option<bool>,
    /// `higher_prio_send_advert`.
    pub higher_prio_send_advert: Option<bool>,
    /// `notify_*`.
    pub notify: Notify,
    /// `promote_secondaries`.
    pub promote_secondaries: bool,
    /// `debug N` (0-4): shown in the SIGUSR1 dump, as keepalived does with it.
    pub debug: u8,
    /// `use_vmac [NAME] [MAC]`: adverts and VIPs on a macvlan carrying the virtual MAC.
    pub vmac: Option<Vmac>,
    /// `vmac_xmit_base`: adverts sent and received on the base interface, not the macvlan.
    pub vmac_xmit_base: bool,
    /// Declaration site.
    pub origin: Origin,
}

/// `use_vmac [NAME] [MAC]` as keepalived reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vmac {
    /// The macvlan's name (default: `vmac_prefix` (`vrrp`) `.VRID`).
    pub name: Option<String>,
    /// Its MAC address (default: RFC 5798's for the VRID and family); five octets given take
    /// the VRID as the sixth (`mac_use_vrid`).
    pub mac: Option<[u8; 6]>,
    /// The MAC was given with five octets: the sixth is the VRID.
    pub mac_use_vrid: bool,
    /// Where `use_vmac` was given.
    pub at: Origin,
}

impl VrrpInstance {
    /// Whether the instance is IPv6: `native_ipv6`, or its first VIP is (keepalived takes the
    /// family from the first address it reads).
    pub fn is_v6(&self) -> bool {
        self.native_ipv6 || self.vips.first().is_some_and(|v| v.addr.is_ipv6())
    }
}

/// `vrrp_sync_group NAME { … }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncGroup {
    /// Name.
    pub name: String,
    /// `group { VI_1 VI_2 }`.
    pub members: Vec<String>,
    /// `track_*`.
    pub track: Tracking,
    /// `notify_*`.
    pub notify: Notify,
    /// `sync_group_tracking_weight`.
    pub tracking_weight: bool,
    /// `smtp_alert [BOOL]`.
    pub smtp_alert: Option<bool>,
    /// Declaration site.
    pub origin: Origin,
}

/// One `virtual_server_group` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VsGroupEntry {
    /// `IP[-LAST][/PREFIX] PORT`.
    Addr {
        /// First address.
        addr: IpAddr,
        /// `-N`: last value of the final octet/hextet of a range.
        range_end: Option<u16>,
        /// `/N`.
        prefix: Option<u8>,
        /// Port.
        port: u16,
    },
    /// `fwmark N [inet|inet6]`.
    Fwmark {
        /// Mark.
        mark: u32,
        /// Family, if given.
        family: Option<String>,
    },
}

/// `virtual_server_group NAME { … }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsGroup {
    /// Name.
    pub name: String,
    /// Entries.
    pub entries: Vec<VsGroupEntry>,
    /// Declaration site.
    pub origin: Origin,
}

/// What a `virtual_server` is keyed on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VsKey {
    /// `IP PORT`.
    Addr(IpAddr, u16),
    /// `fwmark N`.
    Fwmark(u32),
    /// `group NAME`.
    Group(String),
}

/// `lvs_method` / `lb_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LvsMethod {
    /// NAT (Masq), the default.
    Nat,
    /// Direct routing.
    Dr,
    /// IP tunnelling.
    Tun,
}

/// The options of `lvs_method TUN`: `type ipip|gue|gre`, `port N` (GUE), `nocsum|csum|remcsum`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunnel {
    /// `type`.
    pub kind: TunnelType,
    /// `port` (GUE only).
    pub port: u16,
    /// The checksum option.
    pub csum: TunnelCsum,
}

/// A tunnel's encapsulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TunnelType {
    /// IP in IP (the default).
    #[default]
    Ipip,
    /// Generic UDP Encapsulation.
    Gue,
    /// GRE.
    Gre,
}

/// A tunnel's checksum option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TunnelCsum {
    /// `nocsum` (the default).
    #[default]
    NoCsum,
    /// `csum`.
    Csum,
    /// `remcsum`.
    RemCsum,
}

/// `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// Timing keys that cascade virtual_server → real_server → checker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckTiming {
    /// `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// `retry` (old `nb_get_retry` in HTTP/SSL_GET).
    pub retry: Option<u32>,
    /// `delay_before_retry`.
    pub delay_before_retry: Option<Duration>,
    /// `warmup`.
    pub warmup: Option<Duration>,
    /// `delay_loop` (real_server and checker level only; the virtual server's is separate).
    pub delay_loop: Option<Duration>,
}

/// `virtual_server … { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualServer {
    /// Address, fwmark or group.
    pub key: VsKey,
    /// `delay_loop` (default 60 s).
    pub delay_loop: Duration,
    /// `lvs_sched` / `lb_algo` (default `wlc`).
    pub lvs_sched: String,
    /// `sh-port` / `mh-port` / `flag-2`: the hashing schedulers hash the client's port too
    /// (IPVS's SCHED2 flag).
    pub sched_port: bool,
    /// `sh-fallback` / `mh-fallback` / `flag-1`: a hashed server that cannot take the
    /// connection passes it to another (IPVS's SCHED1 flag).
    pub sched_fallback: bool,
    /// `ops`: one-packet scheduling (UDP services, or fwmark).
    pub ops: bool,
    /// `ip_family inet|inet6`: `Some(true)` for IPv6 (a fwmark service's family; an address
    /// service's must agree with its address).
    pub ip_family_v6: Option<bool>,
    /// The service's address family as keepalived settles it while reading the block
    /// (`Some(true)` for IPv6): its address's; else `ip_family`, the form of
    /// `persistence_granularity`, or its first real server not tunnelled, whichever comes
    /// first; `None` when nothing did (keepalived then takes its sorry server's).
    pub family_v6: Option<bool>,
    /// `lvs_method` / `lb_kind` (default NAT).
    pub lvs_method: LvsMethod,
    /// `lvs_method TUN …`'s options (`None`: IPIP without checksum).
    pub tunnel: Option<Tunnel>,
    /// `protocol` (default TCP).
    pub protocol: Protocol,
    /// `persistence_timeout [S]` (no value ⇒ 360).
    pub persistence_timeout: Option<u32>,
    /// `persistence_granularity`.
    pub persistence_granularity: Option<String>,
    /// `persistence_engine NAME`: an IPVS persistence engine (`sip`: persistence by SIP
    /// Call-ID); keepalived keeps at most 15 characters.
    pub persistence_engine: Option<String>,
    /// `ha_suspend`.
    pub ha_suspend: bool,
    /// `proxy_protocol` (holdfast extension): the proxy data plane sends a PROXY protocol v2
    /// header to the real servers, so they see the client's address.
    pub proxy_protocol: bool,
    /// `virtualhost` (default for HTTP checkers).
    pub virtualhost: Option<String>,
    /// `alpha`.
    pub alpha: bool,
    /// `omega`.
    pub omega: bool,
    /// `quorum` (default 1).
    pub quorum: u32,
    /// `hysteresis` (default 0).
    pub hysteresis: u32,
    /// `quorum_up`.
    pub quorum_up: Option<Command>,
    /// `quorum_down`.
    pub quorum_down: Option<Command>,
    /// `sorry_server IP [PORT]`.
    pub sorry_server: Option<(IpAddr, Option<u16>)>,
    /// `sorry_server_inhibit`.
    pub sorry_server_inhibit: bool,
    /// `sorry_server_lvs_method`.
    pub sorry_server_lvs_method: Option<LvsMethod>,
    /// `sorry_server_lvs_method TUN …`'s options.
    pub sorry_server_tunnel: Option<Tunnel>,
    /// `inhibit_on_failure`.
    pub inhibit_on_failure: bool,
    /// `smtp_alert [BOOL]`.
    pub smtp_alert: Option<bool>,
    /// Cascading checker timing.
    pub timing: CheckTiming,
    /// `dataplane` (holdfast).
    pub dataplane: Option<DataPlane>,
    /// `real_server` blocks.
    pub real_servers: Vec<RealServer>,
    /// Declaration site.
    pub origin: Origin,
}

impl VirtualServer {
    /// `persistence_granularity` as the data planes take it, a prefix length: an IPv6
    /// service's is one already, an IPv4 one's is a netmask in any form `inet_aton(3)` reads
    /// (the forms check-config accepts). `Err` holds a netmask whose bits are not contiguous,
    /// which IPVS takes and a prefix length cannot say.
    pub fn persistence_prefix(&self) -> Option<Result<u8, std::net::Ipv4Addr>> {
        let g = self.persistence_granularity.as_deref()?;
        if self.family_v6 == Some(true) {
            return g.parse().ok().map(Ok);
        }
        let bits = crate::lower::inet_aton(g)?;
        Some(if bits.leading_ones() + bits.trailing_zeros() == 32 {
            Ok(bits.leading_ones() as u8)
        } else {
            Err(bits.into())
        })
    }
}

/// `real_server IP [PORT] { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    /// Address.
    pub addr: IpAddr,
    /// Port (default: the virtual server's).
    pub port: Option<u16>,
    /// `weight` (default 1).
    pub weight: i32,
    /// `lvs_method`.
    pub lvs_method: Option<LvsMethod>,
    /// `lvs_method TUN …`'s options.
    pub tunnel: Option<Tunnel>,
    /// `notify_up`.
    pub notify_up: Option<Command>,
    /// `notify_down`.
    pub notify_down: Option<Command>,
    /// `uthreshold`.
    pub uthreshold: Option<u32>,
    /// `lthreshold`.
    pub lthreshold: Option<u32>,
    /// `inhibit_on_failure` (default: the virtual server's).
    pub inhibit_on_failure: Option<bool>,
    /// `smtp_alert [BOOL]`.
    pub smtp_alert: Option<bool>,
    /// `alpha`.
    pub alpha: Option<bool>,
    /// Cascading checker timing.
    pub timing: CheckTiming,
    /// `readmit manual` (holdfast).
    pub readmit_manual: bool,
    /// Checker blocks.
    pub checkers: Vec<Checker>,
    /// Declaration site.
    pub origin: Origin,
}

/// Keys every checker has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckerCommon {
    /// `connect_ip`.
    pub connect_ip: Option<IpAddr>,
    /// `connect_port`.
    pub connect_port: Option<u16>,
    /// `bindto`.
    pub bindto: Option<IpAddr>,
    /// `bind_port`.
    pub bind_port: Option<u16>,
    /// `bind_if`.
    pub bind_if: Option<String>,
    /// `fwmark`.
    pub fwmark: Option<u32>,
    /// Cascading timing.
    pub timing: CheckTiming,
    /// `alpha`.
    pub alpha: Option<bool>,
    /// `log_all_failures`.
    pub log_all_failures: Option<bool>,
}

/// An HTTP_GET/SSL_GET `url { … }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Url {
    /// `path`.
    pub path: String,
    /// `digest` (MD5 hex).
    pub digest: Option<String>,
    /// `status_code` ranges (default 200-299).
    pub status_codes: Vec<(u16, u16)>,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
    /// `regex` with its `regex_*` settings.
    pub regex: Option<UrlRegex>,
}

/// A url's `regex`: the body must (or with `regex_no_match`, must not) match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlRegex {
    /// The pattern (PCRE2's syntax in keepalived; holdfast's engine is Rust's `regex`, which
    /// has no look-around or backreferences: such a pattern is refused).
    pub pattern: String,
    /// `regex_no_match`.
    pub no_match: bool,
    /// `regex_options`, as written (those holdfast implements; see [`REGEX_OPTIONS`]).
    pub options: Vec<String>,
    /// `regex_min_offset`: a match must start at or after this byte of the body.
    pub min_offset: Option<usize>,
    /// `regex_max_offset`: a match must start at or before this byte.
    pub max_offset: Option<usize>,
}

/// keepalived's `regex_options` holdfast implements: those that change what matches
/// (`caseless`, `multiline`, `dotall`, `extended`, `ungreedy`, `utf` and `ucp` for Unicode
/// classes, `firstline`, `dollar_endonly`) and those that only tune PCRE2's compiler or
/// forbid constructs (accepted, no effect on the result).
pub const REGEX_OPTIONS: &[&str] = &[
    "caseless",
    "multiline",
    "dotall",
    "extended",
    "ungreedy",
    "utf",
    "ucp",
    "firstline",
    "dollar_endonly",
    "auto_callout",
    "dupnames",
    "never_ucp",
    "never_utf",
    "never_backslash_c",
    "no_auto_capture",
    "no_auto_possess",
    "no_dotstar_anchor",
    "no_start_optimize",
    "alt_verbnames",
    "use_offset_limit",
];

/// keepalived's `regex_options` holdfast does not implement (PCRE2 behaviours Rust's engine
/// has no switch for).
pub const REGEX_OPTIONS_UNSUPPORTED: &[&str] = &[
    "allow_empty_class",
    "alt_bsux",
    "alt_circumflex",
    "match_unset_backref",
];

impl UrlRegex {
    /// Whether option `o` was given.
    pub fn has(&self, o: &str) -> bool {
        self.options.iter().any(|x| x == o)
    }

    /// The compiled pattern, as the HTTP check matches it against the body's bytes: without
    /// `utf`/`ucp` classes are ASCII and `.` any byte, as PCRE2 without UTF.
    pub fn compile(&self) -> Result<regex::bytes::Regex, String> {
        regex::bytes::RegexBuilder::new(&self.pattern)
            .case_insensitive(self.has("caseless"))
            .multi_line(self.has("multiline"))
            .dot_matches_new_line(self.has("dotall"))
            .ignore_whitespace(self.has("extended"))
            .swap_greed(self.has("ungreedy"))
            .unicode(self.has("utf") || self.has("ucp"))
            .build()
            .map_err(|e| match e {
                regex::Error::Syntax(s) => s,
                e => e.to_string(),
            })
    }
}

/// HTTP_GET / SSL_GET.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpCheck {
    /// `url` blocks.
    pub urls: Vec<Url>,
    /// `http_protocol 1.0|1.0C|1.1`.
    pub http_protocol: Option<String>,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
    /// `enable_sni`.
    pub enable_sni: bool,
    /// `sni_name`.
    pub sni_name: Option<String>,
    /// `fast_recovery`.
    pub fast_recovery: bool,
}

/// MISC_CHECK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MiscCheck {
    /// `misc_path`.
    pub path: String,
    /// `misc_timeout`.
    pub timeout: Option<Duration>,
    /// `misc_dynamic`.
    pub dynamic: bool,
    /// `user`.
    pub user: Option<UserSpec>,
}

/// MYSQL_CHECK (holdfast extension).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MysqlCheck {
    /// `user`.
    pub user: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `credentials_file` (root-only file with user and password).
    pub credentials_file: Option<String>,
    /// `database`.
    pub database: Option<String>,
    /// `query` (default `SELECT 1`).
    pub query: Option<String>,
    /// `require_writable`.
    pub require_writable: bool,
    /// `require_read_only`.
    pub require_read_only: bool,
    /// `max_replication_lag SECS`.
    pub max_replication_lag: Option<Duration>,
    /// `rise N`: consecutive passing checks before a server that failed is readmitted.
    pub rise: Option<u32>,
    /// `tls`.
    pub tls: bool,
    /// `tls_ca`.
    pub tls_ca: Option<String>,
}

/// The kind of a checker block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckerKind {
    /// TCP_CHECK.
    Tcp,
    /// HTTP_GET.
    Http(HttpCheck),
    /// SSL_GET.
    Ssl(HttpCheck),
    /// MISC_CHECK.
    Misc(MiscCheck),
    /// SMTP_CHECK.
    Smtp {
        /// `helo_name`.
        helo_name: Option<String>,
    },
    /// DNS_CHECK.
    Dns {
        /// `type` (default SOA).
        qtype: Option<String>,
        /// `name` (default `.`).
        name: Option<String>,
    },
    /// UDP_CHECK.
    Udp {
        /// `payload` hex, as written (its words joined by one space); valid for [`hex`].
        payload: Option<String>,
        /// `require_reply [HEX]`: `Some("")` when a reply is required whatever it holds; else
        /// valid for [`hex`] with wildcards.
        require_reply: Option<String>,
        /// `min_reply_length`.
        min_reply_length: Option<u32>,
        /// `max_reply_length`.
        max_reply_length: Option<u32>,
    },
    /// PING_CHECK.
    Ping,
    /// FILE_CHECK.
    File {
        /// `track_file`.
        track_file: String,
        /// `dynamic`.
        dynamic: bool,
        /// `weight`.
        weight: Option<i32>,
        /// `reverse`.
        reverse: bool,
        /// Where `track_file` was given and where the block closes (keepalived reports a
        /// track_file it has not read yet at both).
        at: (Origin, Origin),
    },
    /// MYSQL_CHECK (holdfast).
    Mysql(MysqlCheck),
}

impl CheckerKind {
    /// The block keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            CheckerKind::Tcp => "TCP_CHECK",
            CheckerKind::Http(_) => "HTTP_GET",
            CheckerKind::Ssl(_) => "SSL_GET",
            CheckerKind::Misc(_) => "MISC_CHECK",
            CheckerKind::Smtp { .. } => "SMTP_CHECK",
            CheckerKind::Dns { .. } => "DNS_CHECK",
            CheckerKind::Udp { .. } => "UDP_CHECK",
            CheckerKind::Ping => "PING_CHECK",
            CheckerKind::File { .. } => "FILE_CHECK",
            CheckerKind::Mysql(_) => "MYSQL_CHECK",
        }
    }
}

/// A checker block.
#[derive(Clone, Debug, PartialEq)]
pub struct Checker {
    /// Kind and kind-specific keys.
    pub kind: CheckerKind,
    /// Common keys.
    pub common: CheckerCommon,
    /// Declaration site.
    pub origin: Origin,
}

/// Effective checker timing after the cascade, with keepalived 2.2's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveTiming {
    /// Seconds between checks.
    pub delay_loop: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Retries before declaring failure.
    pub retry: u32,
    /// Delay between retries.
    pub delay_before_retry: Duration,
    /// Maximum random delay before the first check (`None` = random up to delay_loop).
    pub warmup: Option<Duration>,
}

impl Checker {
    /// Timing for this checker: its own keys, else the real server's, else the virtual
    /// server's, else keepalived's per-checker defaults (§1.10: retry 1, DNS 3, MISC 0;
    /// delay_before_retry 1, HTTP/SSL 3, DNS = delay_loop; connect_timeout 5).
    pub fn effective_timing(&self, rs: &RealServer, vs: &VirtualServer) -> EffectiveTiming {
        let pick = |f: fn(&CheckTiming) -> Option<Duration>| {
            f(&self.common.timing).or(f(&rs.timing)).or(f(&vs.timing))
        };
        let delay_loop = pick(|t| t.delay_loop).unwrap_or(vs.delay_loop);
        let retry = self
            .common
            .timing
            .retry
            .or(rs.timing.retry)
            .or(vs.timing.retry);
        let (def_retry, def_dbr) = match self.kind {
            CheckerKind::Dns { .. } => (3, delay_loop),
            CheckerKind::Misc(_) => (0, Duration::from_secs(1)),
            CheckerKind::Http(_) | CheckerKind::Ssl(_) => (1, Duration::from_secs(3)),
            _ => (1, Duration::from_secs(1)),
        };
        EffectiveTiming {
            delay_loop,
            connect_timeout: pick(|t| t.connect_timeout).unwrap_or(Duration::from_secs(5)),
            retry: retry.unwrap_or(def_retry),
            delay_before_retry: pick(|t| t.delay_before_retry).unwrap_or(def_dbr),
            warmup: pick(|t| t.warmup),
        }
    }
}

/// A route of `virtual_routes` or `static_routes`, as keepalived 2.2.7 reads it (its
/// `ip route`-like syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// IPv6 (true) or IPv4.
    pub v6: bool,
    /// The route's type (`unicast` unless `blackhole`, `unreachable`, `prohibit`, `throw`,
    /// `local`, `broadcast`, `anycast`, `multicast` or `nat` comes before the destination):
    /// the kernel's RTN_* number.
    pub kind: u8,
    /// Destination and prefix length (`default`: prefix 0).
    pub dst: (IpAddr, u8),
    /// `from` (IPv6 source prefix).
    pub from: Option<(IpAddr, u8)>,
    /// `src` (preferred source address).
    pub src: Option<IpAddr>,
    /// `via` / `gw`.
    pub via: Option<IpAddr>,
    /// `dev` / `oif`.
    pub dev: Option<String>,
    /// `table` (default main, 254).
    pub table: u32,
    /// `protocol` (keepalived's, 18, unless `no_track` or given).
    pub protocol: Option<u8>,
    /// `scope`.
    pub scope: Option<u8>,
    /// `metric` / `priority` / `preference`.
    pub metric: Option<u32>,
    /// `tos` / `dsfield`.
    pub tos: Option<u8>,
    /// `onlink`.
    pub onlink: bool,
    /// Route metrics (`mtu`, `advmss`, `hoplimit`, `window`, `cwnd`, `ssthresh`,
    /// `reordering`, `initcwnd`, `initrwnd`) as (RTAX_* number, value, `lock`).
    pub metrics: Vec<(u16, u32, bool)>,
    /// `nexthop via … dev … weight … onlink …` (multipath).
    pub nexthops: Vec<NextHop>,
    /// `add` (fail if present), `append`, or `prepend` (the default).
    pub mode: RouteMode,
    /// Whether a deletion by someone else is noticed (not `no_track`, and a `dev` given).
    pub track: bool,
    /// Declaration site.
    pub origin: Origin,
}

/// One hop of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// `via`.
    pub via: Option<IpAddr>,
    /// `dev`.
    pub dev: Option<String>,
    /// `weight` (1-256; the kernel stores weight - 1).
    pub weight: u16,
    /// `onlink`.
    pub onlink: bool,
}

/// How a route is added, as keepalived's `add`/`append`/`prepend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteMode {
    /// NLM_F_CREATE (the kernel's default and keepalived's).
    Prepend,
    /// NLM_F_CREATE | NLM_F_EXCL.
    Add,
    /// NLM_F_CREATE | NLM_F_APPEND.
    Append,
}

/// What a policy rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// `table N` / `lookup N`.
    Table(u32),
    /// `goto N`.
    Goto(u32),
    /// `nop`.
    Nop,
    /// `blackhole`.
    Blackhole,
    /// `unreachable`.
    Unreachable,
    /// `prohibit`.
    Prohibit,
}

/// A policy rule of `virtual_rules` or `static_rules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// IPv6 (true) or IPv4.
    pub v6: bool,
    /// `not`.
    pub invert: bool,
    /// `from`.
    pub from: Option<(IpAddr, u8)>,
    /// `to`.
    pub to: Option<(IpAddr, u8)>,
    /// `preference` / `priority` / `order` (keepalived numbers rules without one down from
    /// 16384, per family).
    pub priority: u32,
    /// The action.
    pub action: RuleAction,
    /// `tos` / `dsfield`.
    pub tos: Option<u8>,
    /// `fwmark N[/MASK]`.
    pub fwmark: Option<(u32, Option<u32>)>,
    /// `iif` / `dev`.
    pub iif: Option<String>,
    /// `oif`.
    pub oif: Option<String>,
    /// `suppress_prefixlength` / `sup_pl`.
    pub suppress_prefixlen: Option<u32>,
    /// `ipproto` (protocol number).
    pub ipproto: Option<u8>,
    /// `sport N[-M]`.
    pub sport: Option<(u16, u16)>,
    /// `dport N[-M]`.
    pub dport: Option<(u16, u16)>,
    /// `protocol` (keepalived's, 18, unless `no_track` or given).
    pub protocol: Option<u8>,
    /// Whether a deletion by someone else is noticed (not `no_track`).
    pub track: bool,
    /// Declaration site.
    pub origin: Origin,
}

/// keepalived's hex strings (UDP_CHECK's `payload` and `require_reply`): octets of one or two
/// hex digits, optionally separated by spaces or tabs (`0a ff`, `a ff`, `0aff`); with
/// `wildcards`, an `x` or `X` stands for any nibble. Returns the bytes and, per byte, the mask
/// of the nibbles that are wildcards (all zero without them); `None` if the string holds no
/// octet or anything else — or, as keepalived 2.2.7 reads it, ends with the octet `ff`
/// (keepalived reports such a string as invalid and uses none of it; so does holdfast, so
/// that a configuration means the same in both).
pub fn hex(s: &str, wildcards: bool) -> Option<(Vec<u8>, Vec<u8>)> {
    // A nibble's value, or `None` for a wildcard; `Err` for anything else.
    let nibble = |c: char| -> Result<Option<u8>, ()> {
        match c.to_digit(16) {
            Some(v) => Ok(u8::try_from(v).ok()),
            None if wildcards && c.eq_ignore_ascii_case(&'x') => Ok(None),
            None => Err(()),
        }
    };
    let (mut data, mut mask) = (Vec::new(), Vec::new());
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let Some(c) = chars.next() else {
            break;
        };
        let (mut v, mut m) = match nibble(c).ok()? {
            Some(v) => (v, 0),
            None => (0, 0x0f),
        };
        if let Some(c) = chars.next_if(|c| *c != ' ') {
            match nibble(c).ok()? {
                Some(lo) => (v, m) = (v << 4 | lo, m << 4),
                None => (v, m) = (v << 4, m << 4 | 0x0f),
            }
        }
        data.push(v);
        mask.push(m);
    }
    (!data.is_empty() && data.last() != Some(&0xff)).then_some((data, mask))
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_strings_are_read_as_keepalived_reads_them() {
        let bytes = |s: &str, w: bool| hex(s, w).map(|(d, _)| d);
        // Octets of two digits, or one digit where a space follows; spaces and tabs between.
        assert_eq!(
            bytes("0aFF 1 \t2b", false),
            Some(vec![0x0a, 0xff, 0x01, 0x2b])
        );
        // Only a space ends a one-digit octet (keepalived's reading).
        assert_eq!(bytes("1\t2b", false), None);
        assert_eq!(bytes("0a1b", false), Some(vec![0x0a, 0x1b]));
        assert_eq!(bytes("abc", false), Some(vec![0xab, 0x0c]));
        // Nothing, or anything but hex digits, is not a hex string.
        for bad in ["", "  ", "0g", "zz", "0a,0b"] {
            assert_eq!(bytes(bad, false), None, "{bad:?}");
        }
        // Wildcards only where allowed, with the mask of their nibbles.
        assert_eq!(bytes("3X", false), None);
        assert_eq!(
            hex("3X x1", true),
            Some((vec![0x30, 0x01], vec![0x0f, 0xf0]))
        );
        // keepalived 2.2.7 takes a final octet ff for its error mark.
        assert_eq!(bytes("12 ff", false), None);
        assert_eq!(bytes("ff 12", false), Some(vec![0xff, 0x12]));
    }
}
