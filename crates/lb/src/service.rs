//! One virtual service as keepalived's checker process keeps it: real servers with their
//! configured and effective weights and health, `inhibit_on_failure` (weight 0, kept in the
//! table) versus removal, quorum with hysteresis, and the sorry server. [`Service::wanted`]
//! is the table a data plane must hold; every change returns the events keepalived logs.

use std::net::SocketAddr;

use crate::sched::Dest;

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    /// Address and port.
    pub addr: SocketAddr,
    /// Configured `weight` (keepalived's default 1).
    pub weight: u32,
    /// `inhibit_on_failure`: when down, weight 0 rather than removal.
    pub inhibit_on_failure: bool,
    /// All its checkers are up.
    pub alive: bool,
    /// A weight set by a checker (`misc_dynamic`), in place of the configured one.
    pub dynamic_weight: Option<u32>,
    /// Drained by the operator (`holdfast disable`): weight 0, established connections kept.
    pub drained: bool,
}

impl RealServer {
    /// A server with this weight, alive, without inhibit.
    pub fn new(addr: SocketAddr, weight: u32) -> RealServer {
        RealServer {
            addr,
            weight,
            inhibit_on_failure: false,
            alive: true,
            dynamic_weight: None,
            drained: false,
        }
    }

    /// The weight it carries while alive.
    pub fn effective_weight(&self) -> u32 {
        self.dynamic_weight.unwrap_or(self.weight)
    }
}

/// Service-level settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceConfig {
    /// `quorum` (keepalived: 1): the live weight needed.
    pub quorum: u32,
    /// `hysteresis` (0).
    pub hysteresis: u32,
    /// `sorry_server`.
    pub sorry_server: Option<SocketAddr>,
    /// `sorry_server_inhibit`: keep the sorry server in the table at weight 0 while unused.
    pub sorry_server_inhibit: bool,
}

/// What changed, in keepalived's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `Adding service %s to VS %s`.
    Added(SocketAddr),
    /// `Removing service %s from VS %s`.
    Removed(SocketAddr),
    /// `Enabling service %s of VS %s` (inhibit_on_failure: weight restored).
    Enabled(SocketAddr),
    /// `Disabling service %s of VS %s` (inhibit_on_failure: weight 0).
    Disabled(SocketAddr),
    /// `Changing weight from %d to %d for active service %s of VS %s`.
    Weight(SocketAddr, u32, u32),
    /// `Gained quorum %u+%u=%ld <= %ld for VS %s`.
    QuorumGained {
        /// `quorum`.
        quorum: u32,
        /// `hysteresis`.
        hysteresis: u32,
        /// Live weight.
        live: u64,
    },
    /// `Lost quorum %u-%u=%ld > %ld for VS %s`.
    QuorumLost {
        /// `quorum`.
        quorum: u32,
        /// `hysteresis`.
        hysteresis: u32,
        /// Live weight.
        live: u64,
    },
    /// `Adding sorry server %s to VS %s`.
    SorryAdded(SocketAddr),
    /// `Removing sorry server %s from VS %s`.
    SorryRemoved(SocketAddr),
}

/// keepalived's way of writing a service address: `[IP]:tcp:PORT` (`proto` is `tcp`, `udp`
/// or `sctp`).
pub fn trio(a: &SocketAddr, proto: &str) -> String {
    format!("[{}]:{proto}:{}", a.ip(), a.port())
}

impl Event {
    /// keepalived's log line for this event of virtual service `vs` (as [`trio`] writes it),
    /// its real servers written with the virtual service's protocol `proto`, as keepalived
    /// does.
    pub fn line(&self, vs: &str, proto: &str) -> String {
        let rs = |a: &SocketAddr| trio(a, proto);
        match self {
            Event::Added(a) => format!("Adding service {} to VS {vs}", rs(a)),
            Event::Removed(a) => format!("Removing service {} from VS {vs}", rs(a)),
            Event::Enabled(a) => format!("Enabling service {} of VS {vs}", rs(a)),
            Event::Disabled(a) => format!("Disabling service {} of VS {vs}", rs(a)),
            Event::Weight(a, from, to) => format!(
                "Changing weight from {from} to {to} for active service {} of VS {vs}",
                rs(a)
            ),
            Event::QuorumGained {
                quorum,
                hysteresis,
                live,
            } => format!(
                "Gained quorum {quorum}+{hysteresis}={} <= {live} for VS {vs}",
                u64::from(*quorum) + u64::from(*hysteresis)
            ),
            Event::QuorumLost {
                quorum,
                hysteresis,
                live,
            } => format!(
                "Lost quorum {quorum}-{hysteresis}={} > {live} for VS {vs}",
                i64::from(*quorum) - i64::from(*hysteresis)
            ),
            Event::SorryAdded(a) => format!("Adding sorry server {} to VS {vs}", rs(a)),
            Event::SorryRemoved(a) => format!("Removing sorry server {} from VS {vs}", rs(a)),
        }
    }
}

/// A virtual service's real servers and quorum state.
#[derive(Clone, Debug)]
pub struct Service {
    cfg: ServiceConfig,
    servers: Vec<RealServer>,
    quorum_up: bool,
}

impl Service {
    /// A service with these servers (their `alive` as given: with `alpha`, start them down).
    pub fn new(cfg: ServiceConfig, servers: Vec<RealServer>) -> Service {
        let mut s = Service {
            cfg,
            servers,
            quorum_up: true,
        };
        s.quorum_up = s.live_weight() >= s.up_threshold();
        s
    }

    /// The real servers.
    pub fn servers(&self) -> &[RealServer] {
        &self.servers
    }

    /// Whether the quorum is met.
    pub fn quorum_up(&self) -> bool {
        self.quorum_up
    }

    /// Sum of the weights of live servers (drained ones do not count).
    pub fn live_weight(&self) -> u64 {
        self.servers
            .iter()
            .filter(|s| s.alive && !s.drained)
            .map(|s| u64::from(s.effective_weight()))
            .sum()
    }

    fn up_threshold(&self) -> u64 {
        u64::from(self.cfg.quorum) + u64::from(self.cfg.hysteresis)
    }

    fn down_threshold(&self) -> i64 {
        i64::from(self.cfg.quorum) - i64::from(self.cfg.hysteresis)
    }

    /// Server `i` came up or went down.
    pub fn set_alive(&mut self, i: usize, alive: bool) -> Vec<Event> {
        let Some(s) = self.servers.get_mut(i) else {
            return Vec::new();
        };
        if s.alive == alive {
            return Vec::new();
        }
        s.alive = alive;
        let addr = s.addr;
        let inhibit = s.inhibit_on_failure;
        let mut ev = Vec::new();
        if !self.sorry_active() {
            ev.push(match (alive, inhibit) {
                (true, false) => Event::Added(addr),
                (true, true) => Event::Enabled(addr),
                (false, false) => Event::Removed(addr),
                (false, true) => Event::Disabled(addr),
            });
        }
        ev.extend(self.update_quorum());
        ev
    }

    /// The operator drains server `i` (weight 0, connections kept) or lets it back.
    pub fn set_drained(&mut self, i: usize, drained: bool) -> Vec<Event> {
        let Some(s) = self.servers.get_mut(i) else {
            return Vec::new();
        };
        if s.drained == drained {
            return Vec::new();
        }
        s.drained = drained;
        let addr = s.addr;
        let mut ev = Vec::new();
        if s.alive && !self.sorry_active() {
            ev.push(if drained {
                Event::Disabled(addr)
            } else {
                Event::Enabled(addr)
            });
        }
        ev.extend(self.update_quorum());
        ev
    }

    /// A checker set server `i`'s weight (`misc_dynamic`); `None` restores the configured one.
    pub fn set_dynamic_weight(&mut self, i: usize, w: Option<u32>) -> Vec<Event> {
        let Some(s) = self.servers.get_mut(i) else {
            return Vec::new();
        };
        let from = s.effective_weight();
        s.dynamic_weight = w;
        let to = s.effective_weight();
        let mut ev = Vec::new();
        if from != to && s.alive {
            ev.push(Event::Weight(s.addr, from, to));
        }
        ev.extend(self.update_quorum());
        ev
    }

    fn sorry_active(&self) -> bool {
        !self.quorum_up && self.cfg.sorry_server.is_some()
    }

    fn update_quorum(&mut self) -> Vec<Event> {
        let live = self.live_weight();
        let (quorum, hysteresis) = (self.cfg.quorum, self.cfg.hysteresis);
        let mut ev = Vec::new();
        if self.quorum_up && i64::try_from(live).unwrap_or(i64::MAX) < self.down_threshold() {
            self.quorum_up = false;
            ev.push(Event::QuorumLost {
                quorum,
                hysteresis,
                live,
            });
            if let Some(sorry) = self.cfg.sorry_server {
                for s in self.servers.iter().filter(|s| s.alive) {
                    ev.push(Event::Removed(s.addr));
                }
                ev.push(Event::SorryAdded(sorry));
            }
        } else if !self.quorum_up && live >= self.up_threshold() {
            self.quorum_up = true;
            ev.push(Event::QuorumGained {
                quorum,
                hysteresis,
                live,
            });
            if let Some(sorry) = self.cfg.sorry_server {
                ev.push(Event::SorryRemoved(sorry));
                for s in self.servers.iter().filter(|s| s.alive) {
                    ev.push(Event::Added(s.addr));
                }
            }
        }
        ev
    }

    /// The table the data plane must hold: live servers at their weight; dead ones at weight
    /// 0 with `inhibit_on_failure`, absent otherwise; with the quorum lost and a sorry server,
    /// only the sorry server (and inhibited real servers at weight 0).
    pub fn wanted(&self) -> Vec<Dest> {
        let mut out = Vec::new();
        let sorry = self.sorry_active();
        for s in &self.servers {
            let weight = if s.alive && !sorry && !s.drained {
                s.effective_weight()
            } else {
                0
            };
            // Drained while alive: kept at weight 0 so its connections finish.
            if weight > 0 || s.inhibit_on_failure || (s.drained && s.alive) {
                out.push(Dest::new(s.addr, weight));
            }
        }
        if let Some(addr) = self.cfg.sorry_server {
            if sorry {
                out.push(Dest::new(addr, 1));
            } else if self.cfg.sorry_server_inhibit {
                out.push(Dest::new(addr, 0));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 3306))
    }

    fn weights(s: &Service) -> Vec<(u8, u32)> {
        s.wanted()
            .iter()
            .map(|d| match d.addr.ip() {
                std::net::IpAddr::V4(a) => (a.octets()[3], d.weight),
                std::net::IpAddr::V6(_) => (0, d.weight),
            })
            .collect()
    }

    #[test]
    fn a_dead_server_is_removed_or_inhibited() {
        let mut a = RealServer::new(addr(1), 3);
        a.inhibit_on_failure = true;
        let b = RealServer::new(addr(2), 1);
        let mut s = Service::new(
            ServiceConfig {
                quorum: 1,
                ..ServiceConfig::default()
            },
            vec![a, b],
        );
        assert_eq!(weights(&s), [(1, 3), (2, 1)]);
        assert_eq!(s.set_alive(0, false), [Event::Disabled(addr(1))]);
        assert_eq!(
            s.set_alive(1, false).first(),
            Some(&Event::Removed(addr(2)))
        );
        assert_eq!(weights(&s), [(1, 0)]);
        assert_eq!(
            Event::Disabled(addr(1)).line("[10.0.0.100]:tcp:3306", "tcp"),
            "Disabling service [10.0.0.1]:tcp:3306 of VS [10.0.0.100]:tcp:3306"
        );
    }

    #[test]
    fn quorum_with_hysteresis_and_the_sorry_server() {
        let servers = (1..=3).map(|n| RealServer::new(addr(n), 1)).collect();
        let mut s = Service::new(
            ServiceConfig {
                quorum: 2,
                hysteresis: 1,
                sorry_server: Some(addr(9)),
                sorry_server_inhibit: false,
            },
            servers,
        );
        assert!(s.quorum_up());
        assert_eq!(s.set_alive(0, false), [Event::Removed(addr(1))]);
        assert_eq!(s.set_alive(1, false), [Event::Removed(addr(2))]);
        assert!(s.quorum_up(), "lost only when 2-1 > live: 1 live keeps it");
        let ev = s.set_alive(2, false);
        assert!(ev.contains(&Event::QuorumLost {
            quorum: 2,
            hysteresis: 1,
            live: 0
        }));
        assert!(ev.contains(&Event::SorryAdded(addr(9))));
        assert_eq!(weights(&s), [(9, 1)]);
        // Two live is not enough to come back: quorum + hysteresis = 3.
        s.set_alive(0, true);
        s.set_alive(1, true);
        assert!(!s.quorum_up());
        assert_eq!(weights(&s), [(9, 1)]);
        let ev = s.set_alive(2, true);
        assert!(ev.contains(&Event::SorryRemoved(addr(9))));
        assert_eq!(weights(&s), [(1, 1), (2, 1), (3, 1)]);
        assert_eq!(
            Event::QuorumGained {
                quorum: 2,
                hysteresis: 1,
                live: 3
            }
            .line("VS1", "tcp"),
            "Gained quorum 2+1=3 <= 3 for VS VS1"
        );
        assert_eq!(
            Event::Removed(addr(1)).line("[10.0.0.100]:udp:53", "udp"),
            "Removing service [10.0.0.1]:udp:3306 from VS [10.0.0.100]:udp:53"
        );
    }

    #[test]
    fn a_drained_server_stays_at_weight_zero_until_let_back() {
        let mut s = Service::new(
            ServiceConfig::default(),
            vec![RealServer::new(addr(1), 5), RealServer::new(addr(2), 5)],
        );
        assert_eq!(s.set_drained(0, true), [Event::Disabled(addr(1))]);
        assert_eq!(weights(&s), [(1, 0), (2, 5)]);
        assert_eq!(s.live_weight(), 5);
        assert_eq!(s.set_drained(0, false), [Event::Enabled(addr(1))]);
        assert_eq!(weights(&s), [(1, 5), (2, 5)]);
    }

    #[test]
    fn a_dynamic_weight_replaces_the_configured_one() {
        let mut s = Service::new(ServiceConfig::default(), vec![RealServer::new(addr(1), 5)]);
        assert_eq!(
            s.set_dynamic_weight(0, Some(2)),
            [Event::Weight(addr(1), 5, 2)]
        );
        assert_eq!(weights(&s), [(1, 2)]);
    }
}
