//! `bgp_announce` blocks → what the announcer runs: the routes to hold in the speaker's
//! table, the virtual servers and trackers that gate them, and the BGP attributes
//! `holdfast frr-config` writes. A tracked virtual server that cannot run from several
//! directors at once (NAT) is refused here; one whose moved connections are lost or change
//! server is run, with a note saying so (the data plane's own rule, [`PlaneKind::across_directors`]).

use std::net::IpAddr;

use holdfast_config::model::{Announce, Config, Protocol, VsKey};
use holdfast_dataplane::caps::Across;
use holdfast_dataplane::{Proto, ServiceKey};

use super::lvs::{PlaneKind, VsPlan};
use super::vrrp::tracker_plans;
use super::{Findings, TrackerPlan};

/// One `bgp_announce` block as the announcer runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct AnnouncePlan {
    /// The block's name.
    pub name: String,
    /// The prefixes: a route each in `table` while announced.
    pub prefixes: Vec<(IpAddr, u8)>,
    /// The routing table the BGP speaker imports.
    pub table: u32,
    /// The tracked virtual servers, by keepalived's name for them (`[192.0.2.10]:tcp:80`).
    pub services: Vec<String>,
    /// The trackers followed, with their `reverse` flags.
    pub trackers: Vec<(TrackerPlan, bool)>,
    /// Whether a tracked virtual server runs on IPVS (which then must schedule a connection
    /// from any packet, not only its first: `net.ipv4.vs.sloppy_tcp`).
    pub on_ipvs: bool,
    /// `community` words.
    pub communities: Vec<String>,
    /// `med`.
    pub med: Option<u32>,
    /// `next_hop`s.
    pub next_hops: Vec<IpAddr>,
}

impl AnnouncePlan {
    /// The routes it holds while announced, as (prefix, length, table).
    pub fn routes(&self) -> impl Iterator<Item = (IpAddr, u8, u32)> + '_ {
        self.prefixes.iter().map(|&(a, l)| (a, l, self.table))
    }
}

/// Plans every `bgp_announce` block against the planned virtual servers.
pub(super) fn build(
    cfg: &Config,
    services: &[VsPlan],
    disabled: &[String],
    found: &mut Findings,
) -> Vec<AnnouncePlan> {
    cfg.announces
        .iter()
        .filter_map(|a| announce(cfg, a, services, disabled, found))
        .collect()
}

fn announce(
    cfg: &Config,
    a: &Announce,
    services: &[VsPlan],
    disabled: &[String],
    found: &mut Findings,
) -> Option<AnnouncePlan> {
    let name = &a.name;
    let mut tracked = Vec::new();
    let mut on_ipvs = false;
    for (key, proto, at) in &a.virtual_servers {
        let Some(vs) = services.iter().find(|p| is(p, key, *proto)) else {
            found.refused(
                *at,
                format!(
                    "bgp_announce {name}: no virtual_server {} to track; not announced",
                    said(key, *proto)
                ),
            );
            return None;
        };
        match vs
            .plane
            .across_directors(&vs.spec, vs.servers.iter().map(|r| r.method))
        {
            Across::Kept => {}
            Across::Moved(why) => found.note(*at, format!("bgp_announce {name}: {why}")),
            Across::Refused(why) => {
                found.refused(
                    *at,
                    format!(
                        "bgp_announce {name}: virtual_server {} cannot run from several directors: {why}; not announced",
                        vs.name()
                    ),
                );
                return None;
            }
        }
        on_ipvs |= vs.plane == PlaneKind::Ipvs;
        tracked.push(vs.name());
    }
    for r in a
        .track
        .scripts
        .iter()
        .chain(&a.track.files)
        .chain(&a.track.processes)
    {
        if r.weight.is_some() {
            found.note(
                r.origin,
                format!(
                    "bgp_announce {name}: {} weight has no effect here (the prefixes are withdrawn while any tracked condition is down)",
                    r.name
                ),
            );
        }
    }
    for i in &a.track.interfaces {
        if i.weight != 0 {
            found.note(
                i.origin,
                format!(
                    "bgp_announce {name}: {} weight has no effect here (the prefixes are withdrawn while any tracked condition is down)",
                    i.name
                ),
            );
        }
    }
    let missing = |kind: &str, list: &[holdfast_config::model::TrackRef], known: &[&str]| {
        list.iter()
            .filter(|r| !known.contains(&r.name.as_str()))
            .map(|r| {
                (
                    r.origin,
                    format!("bgp_announce {name}: {kind} {} not found", r.name),
                )
            })
            .collect::<Vec<_>>()
    };
    let scripts: Vec<&str> = cfg.scripts.iter().map(|s| s.name.as_str()).collect();
    let files: Vec<&str> = cfg.track_files.iter().map(|s| s.name.as_str()).collect();
    let procs: Vec<&str> = cfg
        .track_processes
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let unknown: Vec<_> = missing("track_script", &a.track.scripts, &scripts)
        .into_iter()
        .chain(missing("track_file", &a.track.files, &files))
        .chain(missing("track_process", &a.track.processes, &procs))
        .collect();
    let unknown: Vec<_> = unknown
        .into_iter()
        .chain(
            a.track
                .scripts
                .iter()
                .filter(|r| disabled.contains(&r.name))
                .map(|r| {
                    (
                        r.origin,
                        format!(
                            "bgp_announce {name}: track_script {} is disabled by script security",
                            r.name
                        ),
                    )
                }),
        )
        .collect();
    if !unknown.is_empty() {
        for (at, m) in unknown {
            found.refused(at, format!("{m}; not announced"));
        }
        return None;
    }
    let (plans, weights) = tracker_plans(cfg, &a.track, disabled, found, &format!("{name}:"));
    let trackers = plans
        .into_iter()
        .zip(weights)
        .map(|(p, w)| (p, w.reverse))
        .collect();
    Some(AnnouncePlan {
        name: name.clone(),
        prefixes: a.prefixes.iter().map(|&(p, l, _)| (p, l)).collect(),
        table: a.table.unwrap_or(0),
        services: tracked,
        trackers,
        on_ipvs,
        communities: a.communities.clone(),
        med: a.med,
        next_hops: a.next_hops.clone(),
    })
}

/// Whether `vs` is the virtual server `key` with `proto`.
fn is(vs: &VsPlan, key: &VsKey, proto: Protocol) -> bool {
    match (key, &vs.group) {
        (VsKey::Group(g), Some((name, _))) => g == name,
        (VsKey::Addr(ip, port), None) => {
            let p = match proto {
                Protocol::Tcp => Proto::Tcp,
                Protocol::Udp => Proto::Udp,
                Protocol::Sctp => Proto::Sctp,
            };
            vs.spec.key
                == ServiceKey::Addr {
                    proto: p,
                    addr: std::net::SocketAddr::new(*ip, *port),
                }
        }
        (VsKey::Fwmark(m), None) => {
            matches!(vs.spec.key, ServiceKey::Fwmark { mark, .. } if mark == *m)
        }
        _ => false,
    }
}

fn said(key: &VsKey, proto: Protocol) -> String {
    let proto = match proto {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    };
    match key {
        VsKey::Addr(ip, port) => format!("{ip} {port} {proto}"),
        VsKey::Fwmark(m) => format!("fwmark {m}"),
        VsKey::Group(g) => format!("group {g}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{Facts, build as plan};
    use holdfast_config::diag::Class;

    const NO_IPVS: Facts = Facts { ipvs: false };

    fn conf(vs: &str, announce: &str) -> String {
        format!(
            "vrrp_script chk {{\n script /bin/true\n}}\nglobal_defs {{\n dataplane nft\n}}\nvirtual_server 192.0.2.10 80 {{\n{vs}\n real_server 10.0.1.11 80 {{\n }}\n}}\nbgp_announce web {{\n prefix 192.0.2.10\n table 100\n{announce}\n}}\n"
        )
    }

    fn findings(text: &str) -> (Vec<super::AnnouncePlan>, Vec<(Class, String)>) {
        let cfg = holdfast_config::parse_str(text).config;
        let p = plan(&cfg, &[], NO_IPVS);
        let f = p
            .findings
            .iter()
            .map(|d| (d.class, d.message.clone()))
            .collect();
        (p.announces, f)
    }

    #[test]
    fn an_announcement_tracks_its_virtual_servers_by_name_and_its_trackers() {
        let (a, f) = findings(&conf(
            " lb_algo mh\n lb_kind DR",
            " track_virtual_server 192.0.2.10 80\n track_script {\n  chk reverse\n }",
        ));
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].services, ["[192.0.2.10]:tcp:80"]);
        assert_eq!(a[0].trackers.len(), 1);
        assert_eq!(
            (a[0].trackers[0].0.name.as_str(), a[0].trackers[0].1),
            ("chk", true)
        );
        assert_eq!(
            a[0].routes().collect::<Vec<_>>(),
            [("192.0.2.10".parse().unwrap(), 32, 100)]
        );
        assert!(!a[0].on_ipvs);
    }

    #[test]
    fn nat_is_refused_and_a_scheduler_that_moves_connections_is_noted() {
        let (a, f) = findings(&conf(
            " lb_algo mh\n lb_kind NAT",
            " track_virtual_server 192.0.2.10 80",
        ));
        assert!(a.is_empty());
        assert!(
            f.iter().any(|(c, m)| *c == Class::Invalid
                && m.contains("cannot run from several directors: lb_kind NAT")),
            "{f:?}"
        );
        let (a, f) = findings(&conf(
            " lb_algo rr\n lb_kind DR",
            " track_virtual_server 192.0.2.10 80",
        ));
        assert_eq!(a.len(), 1);
        assert!(
            f.iter()
                .any(|(c, m)| *c == Class::Note && m.contains("lb_algo rr")),
            "{f:?}"
        );
    }

    #[test]
    fn what_an_announcement_tracks_must_exist() {
        for (track, said) in [
            (
                " track_virtual_server 192.0.2.10 81",
                "no virtual_server 192.0.2.10 81 TCP to track",
            ),
            (
                " track_virtual_server 192.0.2.10 80 UDP",
                "no virtual_server 192.0.2.10 80 UDP to track",
            ),
            (" track_script {\n  nope\n }", "track_script nope not found"),
            (" track_file {\n  nope\n }", "track_file nope not found"),
        ] {
            let (a, f) = findings(&conf(" lb_algo mh\n lb_kind DR", track));
            assert!(a.is_empty(), "{track}");
            assert!(
                f.iter()
                    .any(|(c, m)| *c == Class::Invalid && m.contains(said)),
                "{track}: {f:?}"
            );
        }
    }
}
