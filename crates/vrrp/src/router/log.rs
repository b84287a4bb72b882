//! What a virtual router counts and logs: drop counters by reason, keepalived's statistics,
//! and its log events with keepalived 2.2's exact wording.

use std::fmt;
use std::net::IpAddr;

use super::State;
use super::accept::Rejection;

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

    pub(super) fn drop(&mut self, reason: Drop) {
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
    /// A refused advert, in keepalived's words for the reason.
    Dropped(String, Rejection),
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
            Log::Dropped(n, why) if why.names_instance() => write!(f, "({n}) {why}"),
            Log::Dropped(_, why) => write!(f, "{why}"),
            Log::AhSyncSeq(n) => write!(f, "({n}) IPSEC-AH : Syncing seq_num - Increment seq"),
        }
    }
}
