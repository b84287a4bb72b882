//! Virtual IPs over rtnetlink: add and remove with mask, broadcast, label, scope and
//! noprefixroute; list an interface's addresses (primary address, leftover VIPs).

use std::io;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
pub use rtnetlink::Handle;

/// One address to manage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSpec {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Interface index.
    pub ifindex: u32,
    /// Broadcast address (IPv4).
    pub brd: Option<std::net::Ipv4Addr>,
    /// Label (`eth0:vip`).
    pub label: Option<String>,
    /// Scope (`global` default).
    pub scope: Option<String>,
    /// `noprefixroute`.
    pub noprefixroute: bool,
    /// `-nodad` (IPv6).
    pub nodad: bool,
    /// The rarer options.
    pub extra: VipExtra,
}

impl VipSpec {
    /// `addr`/`prefix` on `ifindex` without options: all that removing an address needs.
    pub fn plain(addr: IpAddr, prefix: u8, ifindex: u32) -> VipSpec {
        VipSpec {
            addr,
            prefix,
            ifindex,
            brd: None,
            label: None,
            scope: None,
            noprefixroute: false,
            nodad: false,
            extra: VipExtra::default(),
        }
    }
}

/// A VIP's rarer options (keepalived's `virtual_ipaddress` words of the same names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipExtra {
    /// `peer`: the other end of a point-to-point address.
    pub peer: Option<IpAddr>,
    /// `preferred_lft` in seconds (`None`: forever); 0 keeps the address from being chosen
    /// as a source.
    pub preferred_lft: Option<u32>,
    /// `home` (IPv6 mobility).
    pub home: bool,
    /// `mngtmpaddr` (IPv6 temporary addresses from this prefix).
    pub mngtmpaddr: bool,
    /// `autojoin` (multicast: join the group).
    pub autojoin: bool,
}

/// A netlink handle with its connection task running on the current tokio runtime.
pub fn connect() -> io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

fn err(e: rtnetlink::Error) -> io::Error {
    io::Error::other(e.to_string())
}

fn scope(s: Option<&str>) -> AddressScope {
    match s {
        Some("host") => AddressScope::Host,
        Some("link") => AddressScope::Link,
        Some("site") => AddressScope::Site,
        Some("nowhere") => AddressScope::Nowhere,
        Some(other) => other
            .parse::<u8>()
            .map(AddressScope::from)
            .unwrap_or(AddressScope::Universe),
        None => AddressScope::Universe,
    }
}

/// Adds a VIP (an existing identical address is replaced, which is not an error).
pub async fn add(handle: &Handle, v: &VipSpec) -> io::Result<()> {
    let mut req = handle.address().add(v.ifindex, v.addr, v.prefix).replace();
    let msg = req.message_mut();
    msg.header.scope = scope(v.scope.as_deref());
    if let Some(b) = v.brd {
        msg.attributes.push(AddressAttribute::Broadcast(b));
    }
    if let Some(l) = &v.label {
        msg.attributes.push(AddressAttribute::Label(l.clone()));
    }
    let mut flags = AddressFlags::empty();
    for (on, f) in [
        (v.noprefixroute, AddressFlags::Noprefixroute),
        (v.nodad, AddressFlags::Nodad),
        (v.extra.home, AddressFlags::Homeaddress),
        (v.extra.mngtmpaddr, AddressFlags::Managetempaddr),
        (v.extra.autojoin, AddressFlags::Mcautojoin),
    ] {
        if on {
            flags |= f;
        }
    }
    if !flags.is_empty() {
        msg.attributes.push(AddressAttribute::Flags(flags));
    }
    if let Some(p) = v.extra.peer {
        // The local address stays `addr`; the address attribute names the peer.
        msg.attributes
            .retain(|a| !matches!(a, AddressAttribute::Address(_)));
        msg.attributes.push(AddressAttribute::Address(p));
        if !msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Local(_)))
        {
            msg.attributes.push(AddressAttribute::Local(v.addr));
        }
    }
    if let Some(lft) = v.extra.preferred_lft {
        let mut ci = netlink_packet_route::address::CacheInfo::default();
        ci.ifa_preferred = lft;
        ci.ifa_valid = u32::MAX;
        msg.attributes.push(AddressAttribute::CacheInfo(ci));
    }
    req.execute().await.map_err(err)
}

/// Removes a VIP; an address that is not there is not an error.
pub async fn del(handle: &Handle, v: &VipSpec) -> io::Result<()> {
    let mut msgs = handle
        .address()
        .get()
        .set_link_index_filter(v.ifindex)
        .set_address_filter(v.addr)
        .execute();
    while let Some(m) = msgs.try_next().await.map_err(err)? {
        if m.header.prefix_len == v.prefix {
            handle.address().del(m).execute().await.map_err(err)?;
        }
    }
    Ok(())
}

fn addr_of(m: &AddressMessage) -> Option<IpAddr> {
    m.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Local(a) => Some(*a),
            _ => None,
        })
        .or_else(|| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(a) => Some(*a),
                _ => None,
            })
        })
}

/// The interface's addresses with prefix lengths, in kernel order.
pub async fn list(handle: &Handle, ifindex: u32) -> io::Result<Vec<(IpAddr, u8, bool)>> {
    let mut out = Vec::new();
    let mut msgs = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute();
    while let Some(m) = msgs.try_next().await.map_err(err)? {
        let secondary = m.attributes.iter().any(
            |a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Secondary)),
        );
        if let Some(a) = addr_of(&m) {
            out.push((a, m.header.prefix_len, secondary));
        }
    }
    Ok(out)
}

/// The first IPv6 link-local address of an interface (VRRPv3 over IPv6 sends from it).
pub async fn link_local_v6(handle: &Handle, ifindex: u32) -> io::Result<Option<IpAddr>> {
    Ok(list(handle, ifindex)
        .await?
        .into_iter()
        .find(|(a, _, _)| matches!(a, IpAddr::V6(v) if v.is_unicast_link_local()))
        .map(|(a, _, _)| a))
}

/// The primary IPv4 address of an interface, skipping `exclude` (our own VIPs).
pub async fn primary_v4(
    handle: &Handle,
    ifindex: u32,
    exclude: &[IpAddr],
) -> io::Result<Option<IpAddr>> {
    Ok(list(handle, ifindex)
        .await?
        .into_iter()
        .find(|(a, _, secondary)| a.is_ipv4() && !secondary && !exclude.contains(a))
        .map(|(a, _, _)| a))
}
