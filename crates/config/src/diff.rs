//! What a reload changes: instances, VIPs, virtual servers and real servers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{Config, RealServer, Vip, VirtualServer, VrrpInstance, VsKey};

/// One difference between two configurations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new `vrrp_instance`.
    InstanceAdded(String),
    /// A `vrrp_instance` that is gone.
    InstanceRemoved(String),
    /// A changed instance. `keeps_state` is keepalived's rule: the state survives the reload
    /// when VRID, family, interface and unicast/multicast addressing are unchanged.
    InstanceChanged {
        /// Instance name.
        name: String,
        /// Whether the running state (e.g. MASTER) is kept.
        keeps_state: bool,
    },
    /// A VIP to add to an instance.
    VipAdded {
        /// Instance name.
        instance: String,
        /// `addr/prefix`.
        vip: String,
    },
    /// A VIP to remove from an instance.
    VipRemoved {
        /// Instance name.
        instance: String,
        /// `addr/prefix`.
        vip: String,
    },
    /// A new virtual server.
    VirtualServerAdded(VsKey),
    /// A removed virtual server.
    VirtualServerRemoved(VsKey),
    /// A virtual server whose own settings changed (scheduler, method, persistence …).
    VirtualServerChanged(VsKey),
    /// A new real server.
    RealServerAdded {
        /// Its virtual server.
        vs: VsKey,
        /// Address and port.
        rs: (IpAddr, Option<u16>),
    },
    /// A removed real server.
    RealServerRemoved {
        /// Its virtual server.
        vs: VsKey,
        /// Address and port.
        rs: (IpAddr, Option<u16>),
    },
    /// A real server whose weight changed.
    RealServerWeight {
        /// Its virtual server.
        vs: VsKey,
        /// Address and port.
        rs: (IpAddr, Option<u16>),
        /// Old weight.
        from: i32,
        /// New weight.
        to: i32,
    },
    /// A real server whose checkers or other settings changed.
    RealServerChanged {
        /// Its virtual server.
        vs: VsKey,
        /// Address and port.
        rs: (IpAddr, Option<u16>),
    },
}

fn vip_key(v: &Vip) -> String {
    format!("{}/{}", v.addr, v.prefix)
}

fn identity(i: &VrrpInstance) -> impl PartialEq + '_ {
    let v6 = i.vips.first().is_some_and(|v| v.addr.is_ipv6());
    (
        i.vrid,
        v6,
        i.interface.as_deref(),
        i.unicast_peers.is_empty(),
        i.unicast_src_ip,
        i.mcast_src_ip,
    )
}

/// Lists the changes from `old` to `new`, instances first, then virtual servers, each in the
/// new file's order (removals in the old file's order).
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    let old_i: BTreeMap<&str, &VrrpInstance> =
        old.instances.iter().map(|i| (i.name.as_str(), i)).collect();
    let new_names: Vec<&str> = new.instances.iter().map(|i| i.name.as_str()).collect();
    for i in &old.instances {
        if !new_names.contains(&i.name.as_str()) {
            out.push(Change::InstanceRemoved(i.name.clone()));
        }
    }
    for n in &new.instances {
        let Some(o) = old_i.get(n.name.as_str()) else {
            out.push(Change::InstanceAdded(n.name.clone()));
            continue;
        };
        let old_v: Vec<String> = o.vips.iter().map(vip_key).collect();
        let new_v: Vec<String> = n.vips.iter().map(vip_key).collect();
        let mut rest_o = (*o).clone();
        let mut rest_n = n.clone();
        rest_o.vips.clear();
        rest_n.vips.clear();
        if rest_o != rest_n || o.vips != n.vips {
            out.push(Change::InstanceChanged {
                name: n.name.clone(),
                keeps_state: identity(o) == identity(n),
            });
        }
        for v in &old_v {
            if !new_v.contains(v) {
                out.push(Change::VipRemoved {
                    instance: n.name.clone(),
                    vip: v.clone(),
                });
            }
        }
        for v in &new_v {
            if !old_v.contains(v) {
                out.push(Change::VipAdded {
                    instance: n.name.clone(),
                    vip: v.clone(),
                });
            }
        }
    }
    let old_vs: BTreeMap<&VsKey, &VirtualServer> =
        old.virtual_servers.iter().map(|v| (&v.key, v)).collect();
    let new_keys: Vec<&VsKey> = new.virtual_servers.iter().map(|v| &v.key).collect();
    for v in &old.virtual_servers {
        if !new_keys.contains(&&v.key) {
            out.push(Change::VirtualServerRemoved(v.key.clone()));
        }
    }
    for n in &new.virtual_servers {
        let Some(o) = old_vs.get(&n.key) else {
            out.push(Change::VirtualServerAdded(n.key.clone()));
            continue;
        };
        let (mut so, mut sn) = ((*o).clone(), n.clone());
        so.real_servers.clear();
        sn.real_servers.clear();
        if so != sn {
            out.push(Change::VirtualServerChanged(n.key.clone()));
        }
        let rkey = |r: &RealServer| (r.addr, r.port);
        let old_rs: BTreeMap<_, &RealServer> =
            o.real_servers.iter().map(|r| (rkey(r), r)).collect();
        let new_rs: Vec<_> = n.real_servers.iter().map(rkey).collect();
        for r in &o.real_servers {
            if !new_rs.contains(&rkey(r)) {
                out.push(Change::RealServerRemoved {
                    vs: n.key.clone(),
                    rs: rkey(r),
                });
            }
        }
        for r in &n.real_servers {
            match old_rs.get(&rkey(r)) {
                None => out.push(Change::RealServerAdded {
                    vs: n.key.clone(),
                    rs: rkey(r),
                }),
                Some(or) => {
                    if or.weight != r.weight {
                        out.push(Change::RealServerWeight {
                            vs: n.key.clone(),
                            rs: rkey(r),
                            from: or.weight,
                            to: r.weight,
                        });
                    }
                    let (mut a, mut b) = ((*or).clone(), r.clone());
                    a.weight = 0;
                    b.weight = 0;
                    if a != b {
                        out.push(Change::RealServerChanged {
                            vs: n.key.clone(),
                            rs: rkey(r),
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_str;

    const BASE: &str = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n  10.0.0.100/24\n }\n}\nvrrp_instance VI_2 {\n interface eth0\n virtual_router_id 52\n}\nvirtual_server 10.0.0.100 3306 {\n real_server 10.0.0.1 3306 {\n  weight 1\n }\n real_server 10.0.0.2 3306 {\n  weight 1\n }\n}\n";

    fn changes(old: &str, new: &str) -> Vec<Change> {
        diff(&parse_str(old).config, &parse_str(new).config)
    }

    #[test]
    fn identical_configs_have_no_changes() {
        assert_eq!(changes(BASE, BASE), vec![]);
    }

    #[test]
    fn adding_a_vip_keeps_the_instance_state() {
        let new = BASE.replace("  10.0.0.100/24\n", "  10.0.0.100/24\n  10.0.0.101/24\n");
        assert_eq!(
            changes(BASE, &new),
            vec![
                Change::InstanceChanged {
                    name: "VI_1".into(),
                    keeps_state: true
                },
                Change::VipAdded {
                    instance: "VI_1".into(),
                    vip: "10.0.0.101/24".into()
                },
            ]
        );
    }

    #[test]
    fn changing_the_vrid_loses_the_state() {
        let new = BASE.replace("virtual_router_id 51", "virtual_router_id 61");
        assert_eq!(
            changes(BASE, &new),
            vec![Change::InstanceChanged {
                name: "VI_1".into(),
                keeps_state: false
            }]
        );
    }

    #[test]
    fn priority_change_keeps_state() {
        let new = BASE.replace("priority 100", "priority 90");
        assert_eq!(
            changes(BASE, &new),
            vec![Change::InstanceChanged {
                name: "VI_1".into(),
                keeps_state: true
            }]
        );
    }

    #[test]
    fn instances_added_and_removed() {
        let new = BASE.replace("vrrp_instance VI_2", "vrrp_instance VI_3");
        assert_eq!(
            changes(BASE, &new),
            vec![
                Change::InstanceRemoved("VI_2".into()),
                Change::InstanceAdded("VI_3".into())
            ]
        );
    }

    #[test]
    fn real_server_weight_add_and_remove() {
        let vs = VsKey::Addr("10.0.0.100".parse().unwrap(), 3306);
        let new = BASE
            .replace(
                " real_server 10.0.0.2 3306 {\n  weight 1\n }\n",
                " real_server 10.0.0.3 3306 {\n  weight 1\n }\n",
            )
            .replace(
                "real_server 10.0.0.1 3306 {\n  weight 1",
                "real_server 10.0.0.1 3306 {\n  weight 5",
            );
        assert_eq!(
            changes(BASE, &new),
            vec![
                Change::RealServerRemoved {
                    vs: vs.clone(),
                    rs: ("10.0.0.2".parse().unwrap(), Some(3306))
                },
                Change::RealServerWeight {
                    vs: vs.clone(),
                    rs: ("10.0.0.1".parse().unwrap(), Some(3306)),
                    from: 1,
                    to: 5
                },
                Change::RealServerAdded {
                    vs,
                    rs: ("10.0.0.3".parse().unwrap(), Some(3306))
                },
            ]
        );
    }

    #[test]
    fn scheduler_change_is_a_virtual_server_change() {
        let new = BASE.replace(
            "virtual_server 10.0.0.100 3306 {\n",
            "virtual_server 10.0.0.100 3306 {\n lb_algo rr\n",
        );
        let vs = VsKey::Addr("10.0.0.100".parse().unwrap(), 3306);
        assert_eq!(changes(BASE, &new), vec![Change::VirtualServerChanged(vs)]);
    }
}
