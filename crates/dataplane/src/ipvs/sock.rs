//! A blocking generic netlink socket speaking to the IPVS family. IPVS changes are rare and
//! answered in microseconds by the kernel, so the plane uses plain blocking calls (each with a
//! receive timeout) rather than a reactor.

use std::fmt::Debug;
use std::io;
use std::time::Duration;

use netlink_packet_core::{
    Emitable, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkSerializable,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use super::msg::{Attr, Cmd, FAMILY, IpvsMsg, Raw};

/// A connection to the kernel's IPVS.
pub struct Genl {
    sock: Socket,
    family: u16,
    seq: u32,
}

impl Genl {
    /// Opens a socket and resolves the IPVS family. A kernel without IPVS (or without the
    /// module loaded) answers ENOENT, reported as such.
    pub fn open() -> io::Result<Genl> {
        let mut sock = Socket::new(NETLINK_GENERIC)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        socket2::SockRef::from(&sock).set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut g = Genl {
            sock,
            family: 0,
            seq: 0,
        };
        let ask = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY.to_owned())],
        });
        let replies = g.roundtrip(ask, 0, false).map_err(|e| {
            if e.raw_os_error() == Some(2) {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the kernel has no IPVS (generic netlink family \"IPVS\" not found; modprobe ip_vs)",
                )
            } else {
                e
            }
        })?;
        g.family = replies
            .iter()
            .flat_map(|m| m.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("the IPVS family has no id"))?;
        Ok(g)
    }

    /// Runs a command that changes something; the kernel's refusal is the error.
    pub fn exec(&mut self, cmd: Cmd, attrs: Vec<Attr>) -> io::Result<()> {
        let family = self.family;
        let msg = GenlMessage::from_payload(IpvsMsg::new(cmd, attrs));
        self.roundtrip(msg, family, false).map(|_| ())
    }

    /// A dump: the attributes of every reply message.
    pub fn dump(&mut self, cmd: Cmd, attrs: Vec<Attr>) -> io::Result<Vec<Raw>> {
        let family = self.family;
        let msg = GenlMessage::from_payload(IpvsMsg::new(cmd, attrs));
        Ok(self
            .roundtrip(msg, family, true)?
            .into_iter()
            .map(|m| m.payload.raw)
            .collect())
    }

    /// A request answered by one message (GET_INFO, GET_CONFIG).
    pub fn get(&mut self, cmd: Cmd) -> io::Result<Raw> {
        self.get_with(cmd, Vec::new())
    }

    /// A request with attributes answered by one message (GET_SERVICE for one service).
    pub fn get_with(&mut self, cmd: Cmd, attrs: Vec<Attr>) -> io::Result<Raw> {
        let family = self.family;
        let msg = GenlMessage::from_payload(IpvsMsg::new(cmd, attrs));
        self.roundtrip(msg, family, false)?
            .into_iter()
            .next()
            .map(|m| m.payload.raw)
            .ok_or_else(|| io::Error::other("IPVS sent no answer"))
    }

    fn roundtrip<F>(
        &mut self,
        mut msg: GenlMessage<F>,
        family: u16,
        dump: bool,
    ) -> io::Result<Vec<GenlMessage<F>>>
    where
        F: GenlFamily + Emitable + Debug,
        GenlMessage<F>: NetlinkSerializable + NetlinkDeserializable,
    {
        if family != 0 {
            msg.set_resolved_family_id(family);
        }
        self.seq = self.seq.wrapping_add(1);
        let flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
        crate::nl::send(&self.sock, msg, flags, self.seq)?;
        crate::nl::replies(&self.sock, self.seq, dump)
    }
}
