//! Link state and addresses over rtnetlink: the kernel's RTM_NEWLINK / RTM_NEWADDR / RTM_DELADDR
//! notifications of every interface, one socket each per process (the daemon fans them out by
//! interface); link state
//! reported as up (IFF_UP and IFF_RUNNING, as keepalived judges) or down. No polling.

use std::io;

use futures_util::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_sys::AsyncSocket;
use tokio::sync::mpsc;

/// Whether a link message says the interface can carry traffic.
pub fn is_up(m: &LinkMessage) -> bool {
    m.header.flags.contains(LinkFlags::Up) && m.header.flags.contains(LinkFlags::Running)
}

/// A link notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    /// The interface's index.
    pub index: u32,
    /// Its name, when the kernel gave it.
    pub name: Option<String>,
    /// Up (IFF_UP and IFF_RUNNING).
    pub up: bool,
    /// The interface was deleted.
    pub deleted: bool,
}

/// Subscribes to link notifications and forwards every interface's, as [`LinkEvent`]s, to
/// `tx` — one socket for all the instances of a process. Returns when `tx` is closed.
pub async fn watch_all(tx: mpsc::Sender<LinkEvent>) -> io::Result<()> {
    let (mut conn, _handle, mut messages) = rtnetlink::new_connection()?;
    conn.socket_mut()
        .socket_mut()
        .bind(&netlink_sys::SocketAddr::new(
            0,
            rtnetlink::constants::RTMGRP_LINK,
        ))?;
    let task = tokio::spawn(conn);
    while let Some((msg, _)) = messages.next().await {
        let name_of = |l: &LinkMessage| {
            l.attributes.iter().find_map(|a| match a {
                netlink_packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        };
        let ev = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => LinkEvent {
                index: l.header.index,
                name: name_of(&l),
                up: is_up(&l),
                deleted: false,
            },
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => LinkEvent {
                index: l.header.index,
                name: name_of(&l),
                up: false,
                deleted: true,
            },
            _ => continue,
        };
        if tx.send(ev).await.is_err() {
            break;
        }
    }
    task.abort();
    Ok(())
}

/// An address appearing on or leaving an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrChange {
    /// The address.
    pub addr: std::net::IpAddr,
    /// Added (true) or removed.
    pub added: bool,
}

/// Address notifications of every interface, as (ifindex, change) — one socket for all the
/// instances of a process. Returns when `tx` is closed.
pub async fn watch_addresses_all(tx: mpsc::Sender<(u32, AddrChange)>) -> io::Result<()> {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    let (mut conn, _handle, mut messages) = rtnetlink::new_connection()?;
    let groups =
        rtnetlink::constants::RTMGRP_IPV4_IFADDR | rtnetlink::constants::RTMGRP_IPV6_IFADDR;
    conn.socket_mut()
        .socket_mut()
        .bind(&netlink_sys::SocketAddr::new(0, groups))?;
    let task = tokio::spawn(conn);
    let addr_of = |m: &AddressMessage| {
        m.attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            })
            .or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            })
    };
    while let Some((msg, _)) = messages.next().await {
        let change = match &msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => {
                addr_of(m).map(|addr| (m.header.index, AddrChange { addr, added: true }))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
                addr_of(m).map(|addr| (m.header.index, AddrChange { addr, added: false }))
            }
            _ => None,
        };
        if let Some(c) = change
            && tx.send(c).await.is_err()
        {
            break;
        }
    }
    task.abort();
    Ok(())
}
