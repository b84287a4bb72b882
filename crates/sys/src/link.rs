//! Link state over rtnetlink: the kernel's RTM_NEWLINK notifications for one interface,
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

/// Subscribes to link notifications and forwards changes of `ifindex`'s state to `tx` (the
/// current state is not sent; read it once before). Returns when `tx` is closed.
pub async fn watch(ifindex: u32, tx: mpsc::Sender<bool>) -> io::Result<()> {
    let (mut conn, _handle, mut messages) = rtnetlink::new_connection()?;
    let groups = rtnetlink::constants::RTMGRP_LINK;
    conn.socket_mut()
        .socket_mut()
        .bind(&netlink_sys::SocketAddr::new(0, groups))?;
    let task = tokio::spawn(conn);
    let mut last = None;
    while let Some((msg, _)) = messages.next().await {
        let up = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l))
                if l.header.index == ifindex =>
            {
                is_up(&l)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l))
                if l.header.index == ifindex =>
            {
                false
            }
            _ => continue,
        };
        if last != Some(up) {
            last = Some(up);
            if tx.send(up).await.is_err() {
                break;
            }
        }
    }
    task.abort();
    Ok(())
}
