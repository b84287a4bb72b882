//! What the blocking netlink sockets (IPVS's generic netlink, conntrack's ctnetlink) share:
//! sending one request and collecting the answers to it.

use std::fmt::Debug;
use std::io;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::Socket;

/// Sends `msg` with `flags` as request number `seq`.
pub fn send<M>(sock: &Socket, msg: M, flags: u16, seq: u32) -> io::Result<()>
where
    M: NetlinkSerializable + Debug,
{
    let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
    nl.header.flags = flags;
    nl.header.sequence_number = seq;
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    sock.send(&buf, 0)?;
    Ok(())
}

/// The messages answering request `seq`, until its ACK (or, for a dump, its end); the
/// kernel's refusal is the error. Answers to other requests (a late one after a timeout) are
/// skipped.
pub fn replies<M>(sock: &Socket, seq: u32, dump: bool) -> io::Result<Vec<M>>
where
    M: NetlinkDeserializable + Debug,
{
    let mut out = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full()?;
        if data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink socket closed",
            ));
        }
        let mut off = 0;
        while off < data.len() {
            let reply = NetlinkMessage::<M>::deserialize(&data[off..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = usize::try_from(reply.header.length).unwrap_or(0);
            if len == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink message of length 0",
                ));
            }
            off += (len + 3) & !3;
            if reply.header.sequence_number != seq {
                continue;
            }
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                // The ACK: the request is complete (a dump ends with Done first).
                NetlinkPayload::Error(_) => return Ok(out),
                NetlinkPayload::Done(_) if dump => return Ok(out),
                _ => {}
            }
        }
    }
}
