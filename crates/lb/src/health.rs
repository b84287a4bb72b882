//! When a real server is alive, and when it is drained, from what its service loop hears: each
//! checker's result (a `MYSQL_CHECK` gate failing on a healthy session — a role or lag gate —
//! counts as passing but drains the server: its connections stay, it gets no new ones), the
//! operator's `holdfast disable`/`enable`, and `readmit manual` (a server that failed stays
//! out, whatever its checks say, until the operator enables it). Pure transitions on a
//! [`Service`], returning its events.

use crate::service::{Event, Service};

/// The health inputs of a service's real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Per server, per checker: up.
    ups: Vec<Vec<bool>>,
    /// Per server, per checker: down because of a gate only.
    gates: Vec<Vec<bool>>,
    /// Per server: drained by the operator.
    op_drained: Vec<bool>,
    /// Per server: `readmit manual`.
    manual: Vec<bool>,
    /// Per server: failed under `readmit manual`, waiting for the operator.
    held: Vec<bool>,
}

/// What a checker's report changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The service's events (drain, alive, quorum, sorry server).
    pub events: Vec<Event>,
    /// The checker was up before the report.
    pub was_up: bool,
    /// The server is alive now.
    pub alive: bool,
    /// It was alive before.
    pub was_alive: bool,
    /// It passes its checks but is held out (`readmit manual`).
    pub held_passing: bool,
}

impl Health {
    /// `ups` per server and checker (each checker's first state); `manual`: `readmit manual`
    /// per server; `held`: the servers held out already (failed before a reload).
    pub fn new(ups: Vec<Vec<bool>>, manual: Vec<bool>, held: Vec<bool>) -> Health {
        let gates = ups.iter().map(|u| vec![false; u.len()]).collect();
        let n = ups.len();
        Health {
            ups,
            gates,
            op_drained: vec![false; n],
            manual,
            held,
        }
    }

    /// Whether server `rs`'s checks pass (a gate failure counts as passing).
    fn passing(&self, rs: usize) -> bool {
        self.ups
            .get(rs)
            .zip(self.gates.get(rs))
            .is_some_and(|(u, g)| u.iter().zip(g).all(|(u, g)| *u || *g))
    }

    fn drained(&self, rs: usize) -> bool {
        self.gates.get(rs).is_some_and(|g| g.iter().any(|x| *x))
            || self.op_drained.get(rs).copied().unwrap_or(false)
    }

    /// Checker `ck` of server `rs` reports `up` (`gated`: down because of a gate only).
    pub fn on_check(
        &mut self,
        svc: &mut Service,
        rs: usize,
        ck: usize,
        up: bool,
        gated: bool,
    ) -> Outcome {
        let mut was_up = up;
        if let Some(u) = self.ups.get_mut(rs).and_then(|v| v.get_mut(ck)) {
            was_up = *u;
            *u = up;
        }
        if let Some(g) = self.gates.get_mut(rs).and_then(|v| v.get_mut(ck)) {
            *g = gated;
        }
        let passing = self.passing(rs);
        let mut events = svc.set_drained(rs, self.drained(rs));
        if self.manual.get(rs).copied().unwrap_or(false) && !passing {
            self.held[rs] = true;
        }
        let held = self.held.get(rs).copied().unwrap_or(false);
        let alive = passing && !held;
        let was_alive = svc.servers().get(rs).is_some_and(|s| s.alive);
        events.extend(svc.set_alive(rs, alive));
        Outcome {
            events,
            was_up,
            alive,
            was_alive,
            held_passing: held && passing,
        }
    }

    /// The operator enables (`enable`) or drains server `rs`; enabling also lets a held
    /// server back in when its checks pass.
    pub fn on_admin(&mut self, svc: &mut Service, rs: usize, enable: bool) -> Vec<Event> {
        if let Some(d) = self.op_drained.get_mut(rs) {
            *d = !enable;
        }
        let mut events = svc.set_drained(rs, self.drained(rs));
        if enable && self.held.get(rs).copied().unwrap_or(false) {
            self.held[rs] = false;
            events.extend(svc.set_alive(rs, self.passing(rs)));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{RealServer, ServiceConfig};

    fn svc(n: usize) -> Service {
        let servers = (0..n)
            .map(|i| RealServer {
                addr: format!("10.0.0.{}:3306", i + 1).parse().unwrap(),
                weight: 1,
                inhibit_on_failure: false,
                alive: true,
                dynamic_weight: None,
                drained: false,
            })
            .collect();
        Service::new(ServiceConfig::default(), servers)
    }

    #[test]
    fn a_server_is_alive_while_every_checker_passes_and_a_gate_only_drains_it() {
        let mut s = svc(1);
        let mut h = Health::new(vec![vec![true, true]], vec![false], vec![false]);
        let o = h.on_check(&mut s, 0, 1, false, false);
        assert!(!o.alive && o.was_alive && o.was_up);
        assert!(!s.servers()[0].alive);
        let o = h.on_check(&mut s, 0, 1, true, false);
        assert!(o.alive && !o.was_alive);
        // A gate: alive, drained.
        let o = h.on_check(&mut s, 0, 0, false, true);
        assert!(o.alive);
        assert!(s.servers()[0].alive && s.servers()[0].drained);
        let o = h.on_check(&mut s, 0, 0, true, false);
        assert!(o.alive && !s.servers()[0].drained);
    }

    #[test]
    fn the_operator_drains_and_enables_and_a_gate_keeps_a_server_drained() {
        let mut s = svc(1);
        let mut h = Health::new(vec![vec![true]], vec![false], vec![false]);
        h.on_admin(&mut s, 0, false);
        assert!(s.servers()[0].drained);
        h.on_check(&mut s, 0, 0, false, true);
        h.on_admin(&mut s, 0, true);
        assert!(s.servers()[0].drained, "the gate still drains it");
        h.on_check(&mut s, 0, 0, true, false);
        assert!(!s.servers()[0].drained);
    }

    #[test]
    fn readmit_manual_holds_a_failed_server_until_the_operator_enables_it() {
        let mut s = svc(1);
        let mut h = Health::new(vec![vec![true]], vec![true], vec![false]);
        let o = h.on_check(&mut s, 0, 0, false, false);
        assert!(!o.alive);
        let o = h.on_check(&mut s, 0, 0, true, false);
        assert!(!o.alive && o.held_passing, "held out though passing");
        let ev = h.on_admin(&mut s, 0, true);
        assert!(!ev.is_empty());
        assert!(s.servers()[0].alive);
        // Enabled while still failing: held no more, but not alive either.
        h.on_check(&mut s, 0, 0, false, false);
        let mut h2 = h.clone();
        h2.on_admin(&mut s, 0, true);
        assert!(!s.servers()[0].alive);
    }
}
