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
