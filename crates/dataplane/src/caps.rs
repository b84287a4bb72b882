//! What each data plane can run: the one statement of each plane's limits, asked by the
//! planner (for `run` and `check-config` alike) and by the plane itself before it applies a
//! service. Pure.

use holdfast_lb::sched::Kind;

use crate::{Forward, ServiceKey, ServiceSpec};

/// What becomes of a service's established connections when equal-cost routing sends their
/// packets to another director running the same configuration (active-active, each director
/// announcing the service through BGP): the ECMP hash moves some flows whenever a director
/// joins or leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Across {
    /// They keep their real server: a director with no state for a packet picks the same
    /// server the first one did, and forwards it there.
    Kept,
    /// They can run from several directors, but a moved connection is lost or may reach
    /// another real server (why).
    Moved(String),
    /// The service cannot be run from several directors at once (why).
    Refused(String),
}

/// A data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plane {
    /// holdfast's userspace proxy.
    Proxy,
    /// The kernel's IPVS.
    Ipvs,
    /// nftables NAT rules in holdfast's table.
    Nft,
}

impl Plane {
    /// Its `dataplane` keyword.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Proxy => "proxy",
            Plane::Ipvs => "ipvs",
            Plane::Nft => "nft",
        }
    }

    /// Why this plane cannot run `spec` (its destinations filled in), whose service is
    /// reached at `keys` (a `virtual_server_group`'s entries, else the spec's own key); `None`
    /// when it can.
    pub fn refuses(self, spec: &ServiceSpec, keys: &[ServiceKey]) -> Option<String> {
        match self {
            Plane::Proxy => proxy(spec, keys),
            Plane::Ipvs => ipvs(spec),
            Plane::Nft => crate::nft::unsupported(spec),
        }
    }
}

impl Plane {
    /// What becomes of `spec`'s connections that equal-cost routing moves to another director
    /// (`methods`: its real servers' forwarding methods).
    pub fn across_directors(
        self,
        spec: &ServiceSpec,
        methods: impl IntoIterator<Item = Forward>,
    ) -> Across {
        if self == Plane::Proxy {
            return Across::Moved(
                "the proxy holds each connection itself: one that equal-cost routing moves to another director (when a director joins or leaves) is reset there; new connections are not affected (the kernel planes with lb_kind DR and lb_algo mh keep them)"
                    .into(),
            );
        }
        if methods.into_iter().any(|m| m == Forward::Masq) {
            return Across::Refused(
                "lb_kind NAT: a connection's replies must come back through the director that translated it, which equal-cost routing cannot promise (use lb_kind DR, or TUN on IPVS, to run it from several directors)"
                    .into(),
            );
        }
        // The hashing schedulers (and fo's fixed choice) pick the same server on every
        // director that has the same live servers; the others depend on each director's own
        // history.
        if matches!(spec.sched, Kind::Mh | Kind::Sh | Kind::Dh | Kind::Fo) {
            Across::Kept
        } else {
            Across::Moved(format!(
                "lb_algo {}: a connection that equal-cost routing moves to another director is scheduled afresh there and may reach another real server (mh, Maglev hashing, makes every director pick the same)",
                spec.sched.name()
            ))
        }
    }
}

fn proxy(spec: &ServiceSpec, keys: &[ServiceKey]) -> Option<String> {
    let by_tcp_address =
        |k: &ServiceKey| matches!(k, ServiceKey::Addr { proto, .. } if *proto == crate::Proto::Tcp);
    if !by_tcp_address(&spec.key) || !keys.iter().all(by_tcp_address) {
        return Some(
            "the proxy forwards TCP services by address only (UDP, SCTP, fwmark and groups of them need dataplane ipvs)"
                .into(),
        );
    }
    if let Some(pe) = &spec.persistence_engine {
        return Some(format!(
            "persistence_engine {pe}: persistence engines are IPVS's; the proxy has none (use dataplane ipvs or auto)"
        ));
    }
    None
}

fn ipvs(spec: &ServiceSpec) -> Option<String> {
    if spec.proxy_protocol {
        return Some(
            "proxy_protocol: IPVS forwards the client's packets unchanged and cannot send a PROXY header (use dataplane proxy, or auto)"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proto;
    use holdfast_lb::sched::Kind;

    #[test]
    fn connections_survive_a_change_of_director_on_the_kernel_planes_with_direct_return_and_hashing()
     {
        let mut s = spec(Proto::Tcp);
        s.sched = Kind::Mh;
        for p in [Plane::Nft, Plane::Ipvs] {
            assert_eq!(
                p.across_directors(&s, [Forward::Route]),
                Across::Kept,
                "{p:?}"
            );
            assert!(matches!(
                p.across_directors(&s, [Forward::Route, Forward::Masq]),
                Across::Refused(m) if m.contains("lb_kind NAT")
            ));
        }
        assert!(matches!(
            Plane::Proxy.across_directors(&s, [Forward::Masq]),
            Across::Moved(m) if m.contains("reset")
        ));
        s.sched = Kind::Wrr;
        assert!(matches!(
            Plane::Nft.across_directors(&s, [Forward::Route]),
            Across::Moved(m) if m.contains("lb_algo wrr")
        ));
        assert_eq!(
            Plane::Ipvs.across_directors(&s, [Forward::Tunnel]),
            Plane::Nft.across_directors(&s, [Forward::Route])
        );
    }

    fn spec(proto: Proto) -> ServiceSpec {
        let key = ServiceKey::Addr {
            proto,
            addr: "10.0.0.100:80".parse().unwrap(),
        };
        ServiceSpec::new(key, Kind::Rr, Vec::new())
    }

    #[test]
    fn each_plane_says_what_it_cannot_run() {
        let tcp = spec(Proto::Tcp);
        for p in [Plane::Proxy, Plane::Ipvs, Plane::Nft] {
            assert_eq!(p.refuses(&tcp, &[tcp.key]), None, "{p:?}");
        }
        let udp = spec(Proto::Udp);
        assert!(Plane::Proxy.refuses(&udp, &[udp.key]).is_some());
        assert_eq!(Plane::Ipvs.refuses(&udp, &[udp.key]), None);
        let fwmark = ServiceKey::Fwmark { mark: 1, v6: false };
        assert!(Plane::Proxy.refuses(&tcp, &[tcp.key, fwmark]).is_some());

        let mut pp = spec(Proto::Tcp);
        pp.proxy_protocol = true;
        assert_eq!(Plane::Proxy.refuses(&pp, &[pp.key]), None);
        assert!(
            Plane::Ipvs
                .refuses(&pp, &[pp.key])
                .is_some_and(|w| w.contains("PROXY"))
        );
        assert!(Plane::Nft.refuses(&pp, &[pp.key]).is_some());

        let mut pe = spec(Proto::Udp);
        pe.persistence_engine = Some("sip".into());
        assert_eq!(Plane::Ipvs.refuses(&pe, &[pe.key]), None);
        assert!(Plane::Nft.refuses(&pe, &[pe.key]).is_some());
        let mut pe_tcp = spec(Proto::Tcp);
        pe_tcp.persistence_engine = Some("sip".into());
        assert!(
            Plane::Proxy
                .refuses(&pe_tcp, &[pe_tcp.key])
                .is_some_and(|w| w.contains("sip"))
        );
    }
}
