//! keepalived's SIGUSR1 (`keepalived.data`) and SIGUSR2 (`keepalived.stats`) files, from a
//! status table the instance drivers keep current. Users grep `State = MASTER`,
//! `Effective priority = N` and `Master router = …`; the layout follows keepalived 2.2's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use holdfast_vrrp::router::{Drop, State, Stats};

/// One instance's status.
#[derive(Clone, Debug)]
pub struct Status {
    /// Interface.
    pub ifname: String,
    /// VRID.
    pub vrid: u8,
    /// Protocol version.
    pub version: u8,
    /// Current state.
    pub state: State,
    /// Configured priority.
    pub priority: u8,
    /// Effective priority.
    pub effective: u8,
    /// Advert interval in seconds.
    pub advert_int: f64,
    /// Current master's address.
    pub master: Option<IpAddr>,
    /// Current master's priority.
    pub master_priority: Option<u8>,
    /// VIPs.
    pub vips: Vec<String>,
    /// Counters.
    pub stats: Stats,
    /// When the instance entered its current state.
    pub since: std::time::SystemTime,
}

/// The status table, by instance name.
pub type Table = BTreeMap<String, Status>;

/// The `keepalived.data` text.
pub fn data(t: &Table) -> String {
    let mut s = String::from("------< VRRP Topology >------\n");
    for (name, st) in t {
        let _ = writeln!(s, " VRRP Instance = {name}");
        let _ = writeln!(s, "   VRRP Version = {}", st.version);
        let _ = writeln!(s, "   State = {}", st.state);
        let _ = writeln!(
            s,
            "   Master router = {}",
            st.master.map_or("(none)".into(), |a| a.to_string())
        );
        if let Some(p) = st.master_priority {
            let _ = writeln!(s, "   Master priority = {p}");
        }
        let _ = writeln!(s, "   Interface = {}", st.ifname);
        let _ = writeln!(s, "   Virtual Router ID = {}", st.vrid);
        let _ = writeln!(s, "   Priority = {}", st.priority);
        let _ = writeln!(s, "   Effective priority = {}", st.effective);
        let _ = writeln!(
            s,
            "   Advert interval = {}",
            if st.version == 2 {
                format!("{} sec", st.advert_int)
            } else {
                format!("{} milli-sec", (st.advert_int * 1000.0).round())
            }
        );
        let _ = writeln!(s, "   Virtual IP ({}):", st.vips.len());
        for v in &st.vips {
            let _ = writeln!(s, "     {v}");
        }
    }
    s
}

/// The `keepalived.stats` text.
pub fn stats(t: &Table) -> String {
    let mut s = String::new();
    for (name, st) in t {
        let c = &st.stats;
        let d = |r: Drop| c.dropped(r);
        let _ = writeln!(s, "VRRP Instance: {name}");
        let _ = writeln!(
            s,
            "  Advertisements:\n    Received: {}\n    Sent: {}",
            c.adverts_received, c.adverts_sent
        );
        let _ = writeln!(
            s,
            "  Became master: {}\n  Released master: {}",
            c.became_master, c.released_master
        );
        let _ = writeln!(
            s,
            "  Packet Errors:\n    Length: {}\n    TTL: {}\n    Invalid Type: {}\n    Advertisement Interval: {}\n    Address List: {}",
            d(Drop::Length),
            d(Drop::Ttl),
            d(Drop::Type),
            d(Drop::Interval),
            d(Drop::AddressList) + d(Drop::AddressCount)
        );
        let _ = writeln!(
            s,
            "  Authentication Errors:\n    Invalid Type: {}\n    Type Mismatch: {}\n    Failure: {}",
            d(Drop::InvalidAuthType),
            d(Drop::AuthTypeMismatch),
            d(Drop::AuthFailure)
        );
        let _ = writeln!(
            s,
            "  Priority Zero:\n    Received: {}\n    Sent: {}",
            c.priority_zero_received, c.priority_zero_sent
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_have_the_lines_users_grep() {
        let mut t = Table::new();
        let counters = Stats {
            adverts_sent: 7,
            became_master: 1,
            ..Stats::default()
        };
        t.insert(
            "VI_1".into(),
            Status {
                ifname: "eth0".into(),
                vrid: 51,
                version: 2,
                state: State::Master,
                priority: 150,
                effective: 140,
                advert_int: 1.0,
                master: Some("10.0.0.1".parse().unwrap()),
                master_priority: Some(140),
                vips: vec!["10.0.0.100/24".into()],
                stats: counters,
                since: std::time::SystemTime::UNIX_EPOCH,
            },
        );
        let d = data(&t);
        assert!(d.contains(" VRRP Instance = VI_1\n"));
        assert!(d.contains("   State = MASTER\n"));
        assert!(d.contains("   Effective priority = 140\n"));
        assert!(d.contains("   Master router = 10.0.0.1\n   Master priority = 140\n"));
        let s = stats(&t);
        assert!(s.starts_with("VRRP Instance: VI_1\n  Advertisements:\n    Received: 0\n    Sent: 7\n  Became master: 1\n"));
    }
}
