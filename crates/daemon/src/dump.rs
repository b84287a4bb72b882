//! keepalived's SIGUSR1 (`keepalived.data`) and SIGUSR2 (`keepalived.stats`) files, from a
//! status table the instance drivers keep current. Users grep `State = MASTER`,
//! `Effective priority = N` and `Master router = …`; the layout follows keepalived 2.2's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use holdfast_vrrp::router::{Drop, State, Stats};

use crate::plan::InstancePlan;

/// One instance's status: its plan (what the configuration says) and what it is doing.
#[derive(Clone, Debug)]
pub struct Status {
    /// The instance's plan, shared with its driver: interface, VRID, version, priority,
    /// interval and VIPs are read from it (copies cost a thousand instances 0.2 MB).
    pub plan: Arc<InstancePlan>,
    /// Current state.
    pub state: State,
    /// Effective priority.
    pub effective: u8,
    /// Current master's address.
    pub master: Option<IpAddr>,
    /// Current master's priority.
    pub master_priority: Option<u8>,
    /// Counters.
    pub stats: Stats,
    /// When the instance entered its current state.
    pub since: std::time::SystemTime,
}

impl Status {
    /// Interface.
    pub fn ifname(&self) -> &str {
        &self.plan.ifname
    }

    /// VRID.
    pub fn vrid(&self) -> u8 {
        self.plan.router.vrid
    }

    /// Protocol version.
    pub fn version(&self) -> u8 {
        self.plan.router.version.number()
    }

    /// Configured priority.
    pub fn priority(&self) -> u8 {
        self.plan.router.priority
    }

    /// Advert interval in seconds.
    pub fn advert_int(&self) -> f64 {
        self.plan.router.advert_int.as_secs_f64()
    }

    /// VIPs, as `ADDR/PREFIX dev IFNAME`.
    pub fn vips(&self) -> Vec<String> {
        self.plan
            .vips
            .iter()
            .map(|v| format!("{}/{} dev {}", v.addr, v.prefix, v.dev))
            .collect()
    }
}

/// The status table, by instance name.
pub type Table = BTreeMap<String, Status>;

/// The `keepalived.data` text.
pub fn data(t: &Table) -> String {
    let mut s = String::from("------< VRRP Topology >------\n");
    for (name, st) in t {
        let _ = writeln!(s, " VRRP Instance = {name}");
        let _ = writeln!(s, "   VRRP Version = {}", st.version());
        let _ = writeln!(s, "   State = {}", st.state);
        let _ = writeln!(
            s,
            "   Master router = {}",
            st.master.map_or("(none)".into(), |a| a.to_string())
        );
        if let Some(p) = st.master_priority {
            let _ = writeln!(s, "   Master priority = {p}");
        }
        let _ = writeln!(s, "   Interface = {}", st.ifname());
        let _ = writeln!(s, "   Virtual Router ID = {}", st.vrid());
        let _ = writeln!(s, "   Priority = {}", st.priority());
        let _ = writeln!(s, "   Effective priority = {}", st.effective);
        let _ = writeln!(
            s,
            "   Advert interval = {}",
            if st.version() == 2 {
                format!("{} sec", st.advert_int())
            } else {
                format!("{} milli-sec", (st.advert_int() * 1000.0).round())
            }
        );
        if st.plan.debug != 0 {
            let _ = writeln!(s, "   Debug level = {}", st.plan.debug);
        }
        let vips = st.vips();
        let _ = writeln!(s, "   Virtual IP ({}):", vips.len());
        for v in &vips {
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
                plan: Arc::new(crate::plan::test_instance(
                    "VI_1",
                    "eth0",
                    51,
                    150,
                    "10.0.0.100/24",
                )),
                state: State::Master,
                effective: 140,
                master: Some("10.0.0.1".parse().unwrap()),
                master_priority: Some(140),
                stats: counters,
                since: std::time::SystemTime::UNIX_EPOCH,
            },
        );
        let d = data(&t);
        assert!(d.contains(" VRRP Instance = VI_1\n"));
        assert!(d.contains("   State = MASTER\n"));
        assert!(d.contains("   Effective priority = 140\n"));
        assert!(d.contains("   Interface = eth0\n   Virtual Router ID = 51\n   Priority = 150\n"));
        assert!(d.contains("   Virtual IP (1):\n     10.0.0.100/24 dev eth0\n"));
        assert!(d.contains("   Master router = 10.0.0.1\n   Master priority = 140\n"));
        assert!(!d.contains("Debug level"), "{d}");
        // `debug N` shows as keepalived shows it, before the VIPs.
        if let Some(st) = t.get_mut("VI_1") {
            let mut plan = (*st.plan).clone();
            plan.debug = 3;
            st.plan = Arc::new(plan);
        }
        assert!(data(&t).contains("   Debug level = 3\n   Virtual IP (1):\n"));
        let s = stats(&t);
        assert!(s.starts_with("VRRP Instance: VI_1\n  Advertisements:\n    Received: 0\n    Sent: 7\n  Became master: 1\n"));
    }
}
