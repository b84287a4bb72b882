//! VRRP virtual MAC interfaces (`use_vmac`): a private-mode macvlan on the instance's
//! interface carrying the virtual router's MAC address (RFC 5798 §7.3: 00-00-5E-00-01-{VRID},
//! 00-00-5E-00-02-{VRID} for IPv6), and the interface facts needed to find one left by an
//! earlier run. The daemon decides when; this module only talks to the kernel.

use std::io;

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec};

/// The virtual router MAC address of RFC 5798 §7.3 for `vrid`.
pub fn rfc_mac(vrid: u8, v6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}

/// What the kernel says of an existing interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFacts {
    /// Its index.
    pub index: u32,
    /// `IFLA_INFO_KIND` (`macvlan`, `veth`…), if it has one.
    pub kind: Option<String>,
    /// A macvlan's mode is private.
    pub private_macvlan: bool,
    /// The interface it is stacked on (`IFLA_LINK`), if any.
    pub link: Option<u32>,
    /// Its hardware address.
    pub mac: Option<[u8; 6]>,
}

/// What a link message says of its interface.
fn facts_of(m: &LinkMessage) -> LinkFacts {
    let mut f = LinkFacts {
        index: m.header.index,
        kind: None,
        private_macvlan: false,
        link: None,
        mac: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Link(l) => f.link = Some(*l),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                f.mac = Some(mac);
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => f.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::MacVlan(d)) => {
                            f.private_macvlan = d
                                .iter()
                                .any(|x| matches!(x, InfoMacVlan::Mode(MacVlanMode::Private)));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    f
}

/// The facts of interface `name` of this thread's network namespace, `None` if there is no
/// such interface. Synchronous (one request on a netlink socket of its own), for
/// `check-config` as much as for the daemon.
pub fn facts(name: &str) -> io::Result<Option<LinkFacts>> {
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut req = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(msg)),
    );
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    sock.send(&buf, 0)?;
    let mut rx = vec![0u8; 64 * 1024];
    let n = sock.recv(&mut &mut rx[..], 0)?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => Ok(Some(facts_of(&m))),
        NetlinkPayload::Error(e) => match e.code {
            Some(c) if c.get() == -libc::ENODEV => Ok(None),
            _ => Err(e.to_io()),
        },
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected netlink answer to a link request",
        )),
    }
}

fn nl_err(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        e => io::Error::other(e.to_string()),
    }
}

/// Creates the private macvlan `name` on `base` with `mac`, or, when `update` names an
/// existing one, changes its MAC address and mode in place. Not brought up.
pub async fn create(
    nl: &Handle,
    name: &str,
    base: u32,
    mac: [u8; 6],
    update: Option<u32>,
) -> io::Result<()> {
    match update {
        None => {
            let msg = LinkMacVlan::new(name, base, MacVlanMode::Private)
                .address(mac.to_vec())
                .build();
            nl.link().add(msg).execute().await.map_err(nl_err)
        }
        Some(index) => {
            // The existing macvlan, given the mode and the address in place.
            let mut msg = LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .build();
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Private,
                )])),
            ]));
            nl.link().change(msg).execute().await.map_err(nl_err)
        }
    }
}

/// Brings interface `index` up.
pub async fn up(nl: &Handle, index: u32) -> io::Result<()> {
    nl.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err)
}

/// Deletes interface `index`.
pub async fn delete(nl: &Handle, index: u32) -> io::Result<()> {
    nl.link().del(index).execute().await.map_err(nl_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_5798_addresses() {
        assert_eq!(rfc_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(rfc_mac(255, true), [0, 0, 0x5e, 0, 2, 255]);
    }

    #[test]
    fn loopback_facts_and_a_missing_interface() {
        // Read only: the loopback interface every network namespace has.
        let lo = facts("lo").unwrap().unwrap();
        assert_eq!(lo.index, 1);
        assert_eq!(lo.kind, None);
        assert!(!lo.private_macvlan);
        assert_eq!(facts("hf-no-such-if").unwrap(), None);
    }
}
