//! VRRP over IPv4 raw sockets (protocol 112).
//!
//! Sending uses `IP_HDRINCL`, as keepalived does, so the source address, TTL 255 and TOS 0xc0
//! are exactly ours. Receiving uses a second raw socket bound to the interface and joined to
//! the multicast group; the kernel hands us the IP header, which carries the TTL to check.

use std::io;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

/// IP protocol number of VRRP.
const PROTO_VRRP: i32 = 112;
/// IP protocol number of IPsec AH (`auth_type AH`: VRRP inside AH).
const PROTO_AH: i32 = 51;
/// The AH header's length, ICV included.
const AH_LEN: usize = 24;

/// What completes a whole IPv4 packet before it is sent (AH's ICV).
pub type Sign<'a> = &'a dyn Fn(&mut [u8]);

/// A received packet's IPsec AH header and the IPv4 header its ICV covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AhRaw {
    /// The IPv4 header, as received.
    pub ip_header: Vec<u8>,
    /// The AH header.
    pub ah: [u8; AH_LEN],
}

/// A received VRRP packet with the IP header facts the router checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// TTL.
    pub ttl: u8,
    /// The VRRP message (IP payload, Ethernet padding removed using the IP total length).
    pub payload: Vec<u8>,
    /// The AH header in front of it, on an AH socket.
    pub ah: Option<Box<AhRaw>>,
}

/// A classic BPF program for a VRRP receive socket: accept a packet whose VRID is one of
/// `vrids`, or too short to carry one (so that it is still counted), drop the rest in the
/// kernel — a flood on another VRID then never fills the socket's queue, and adverts for the
/// VRIDs this host runs are not lost behind it. `ip_header`: the packet starts with its IPv4
/// header (raw IPv4 sockets), else with the VRRP message (raw IPv6 sockets).
pub fn vrid_filter(ip_header: bool, vrids: &[u8]) -> Vec<socket2::SockFilter> {
    to_filter(vrid_program(ip_header, 0, vrids, false))
}

/// The counterpart of [`vrid_filter`], for the socket that only counts: adverts for any VRID
/// but `vrids` (packets too short to name one are the main socket's).
pub fn other_vrids_filter(ip_header: bool, vrids: &[u8]) -> Vec<socket2::SockFilter> {
    to_filter(vrid_program(ip_header, 0, vrids, true))
}

fn to_filter(p: Vec<(u16, u8, u8, u32)>) -> Vec<socket2::SockFilter> {
    p.into_iter()
        .map(|(code, jt, jf, k)| socket2::SockFilter::new(code, jt, jf, k))
        .collect()
}

/// [`vrid_filter`]'s instructions, as (code, jt, jf, k); `skip`: bytes between the IP header
/// and the VRRP message (an AH header's 24); `others`: the inverse, for
/// [`other_vrids_filter`].
fn vrid_program(ip_header: bool, skip: u32, vrids: &[u8], others: bool) -> Vec<(u16, u8, u8, u32)> {
    // The classic BPF opcodes (linux/filter.h), as u16.
    const LD_W_LEN: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_LEN) as u16;
    const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
    const ALU_SUB_X: u16 = (libc::BPF_ALU | libc::BPF_SUB | libc::BPF_X) as u16;
    const LD_B_IND: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_IND) as u16;
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const ALL: u32 = 0x0004_0000;
    let mut p = Vec::with_capacity(2 * vrids.len() + 8);
    if ip_header {
        // X = the IPv4 header's length; A = the bytes after it.
        p.push((LDX_B_MSH, 0, 0, 0));
        p.push((LD_W_LEN, 0, 0, 0));
        p.push((ALU_SUB_X, 0, 0, 0));
    } else {
        p.push((LD_W_LEN, 0, 0, 0));
    }
    // Fewer than two bytes of VRRP: the main socket's (the reader counts it as too short).
    let (yes, no) = if others { (0, ALL) } else { (ALL, 0) };
    p.push((JGE_K, 1, 0, skip + 2));
    p.push((RET_K, 0, 0, if others { 0 } else { ALL }));
    // A = the VRID (the second byte of the message).
    if ip_header {
        p.push((LD_B_IND, 0, 0, skip + 1));
    } else {
        p.push((LD_B_ABS, 0, 0, skip + 1));
    }
    for &v in vrids {
        // Equal: fall through to the verdict for a listed VRID; else skip it.
        p.push((JEQ_K, 0, 1, u32::from(v)));
        p.push((RET_K, 0, 0, yes));
    }
    p.push((RET_K, 0, 0, no));
    p
}

/// A program that drops every packet: for the send-only sockets, which as raw sockets of the
/// VRRP protocol would otherwise queue a copy of every advert on the link, never read.
fn drop_all() -> [socket2::SockFilter; 1] {
    [socket2::SockFilter::new(
        (libc::BPF_RET | libc::BPF_K) as u16,
        0,
        0,
        0,
    )]
}

/// Reads one packet into `buf`: its length, or `None` when the socket's read timeout passed
/// (or a signal interrupted the wait).
fn read_timed(s: &Socket, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match (&*s).read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One instance's VRRP sockets on one interface.
pub struct VrrpSocketV4 {
    send: Socket,
    recv: Socket,
    /// Adverts for the VRIDs no instance here runs, kept apart so that a flood of them cannot
    /// crowd out the others in `recv`'s queue; only counted.
    others: Socket,
    ttl: u8,
    id: AtomicU16,
    /// VRRP inside IPsec AH (`auth_type AH`): the sockets are AH's.
    ah: bool,
}

impl VrrpSocketV4 {
    /// Opens the sockets on `ifname` (index `ifindex`), joining `group` unless unicast; `ah`:
    /// for adverts inside IPsec AH (`auth_type AH`), which only AH sockets receive.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        group: Option<Ipv4Addr>,
        unicast_ttl: u8,
        ah: bool,
    ) -> io::Result<VrrpSocketV4> {
        let proto = Some(Protocol::from(if ah { PROTO_AH } else { PROTO_VRRP }));
        let send = Socket::new(Domain::IPV4, Type::RAW, proto)?;
        send.set_header_included_v4(true)?;
        send.bind_device(Some(ifname.as_bytes()))?;
        send.set_multicast_loop_v4(false)?;
        send.attach_filter(&drop_all())?;
        let recv = Socket::new(Domain::IPV4, Type::RAW, proto)?;
        recv.bind_device(Some(ifname.as_bytes()))?;
        if let Some(g) = group {
            recv.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex))?;
        }
        recv.set_read_timeout(Some(Duration::from_millis(200)))?;
        let others = Socket::new(Domain::IPV4, Type::RAW, proto)?;
        others.bind_device(Some(ifname.as_bytes()))?;
        if let Some(g) = group {
            others.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex))?;
        }
        others.set_read_timeout(Some(Duration::from_millis(200)))?;
        // Nothing until the instances are known (set_vrids).
        others.attach_filter(&drop_all())?;
        Ok(VrrpSocketV4 {
            send,
            recv,
            others,
            ttl: unicast_ttl,
            id: AtomicU16::new(1),
            ah,
        })
    }

    /// Sends a VRRP message (after its AH header on an AH socket) from `src` to `dst` (TTL 255
    /// to the multicast group; the configured unicast TTL to a peer). `sign` completes the
    /// whole packet, IPv4 header included, before it leaves (AH's ICV).
    pub fn send(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: &[u8],
        sign: Option<Sign<'_>>,
    ) -> io::Result<()> {
        let total = 20 + payload.len();
        let mut pkt = Vec::with_capacity(total);
        let ttl = if dst.is_multicast() { 255 } else { self.ttl };
        // Never 0, which the kernel would replace after AH signed it (as keepalived does).
        let mut id = self.id.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            id = self.id.fetch_add(1, Ordering::Relaxed);
        }
        let proto = if self.ah { PROTO_AH } else { PROTO_VRRP } as u8;
        pkt.extend_from_slice(&[0x45, 0xc0]);
        pkt.extend_from_slice(&(total as u16).to_be_bytes());
        pkt.extend_from_slice(&id.to_be_bytes());
        pkt.extend_from_slice(&[0, 0, ttl, proto, 0, 0]);
        pkt.extend_from_slice(&src.octets());
        pkt.extend_from_slice(&dst.octets());
        let sum = ipv4_checksum(&pkt);
        pkt[10..12].copy_from_slice(&sum.to_be_bytes());
        pkt.extend_from_slice(payload);
        if let Some(sign) = sign {
            sign(&mut pkt);
        }
        let to = SocketAddr::V4(SocketAddrV4::new(dst, 0));
        self.send.send_to(&pkt, &to.into())?;
        Ok(())
    }

    /// Waits up to the read timeout (200 ms) for a packet; `Ok(None)` on timeout or on a
    /// packet too short to be IPv4.
    pub fn recv(&self) -> io::Result<Option<Received>> {
        let mut buf = [0u8; 2048];
        let Some(n) = read_timed(&self.recv, &mut buf)? else {
            return Ok(None);
        };
        Ok(parse_ipv4(&buf[..n], self.ah))
    }
}

/// Splits an IPv4 packet into the facts VRRP needs; `None` if it is not a plausible IPv4
/// VRRP packet (the router counts what it can parse). `ah`: VRRP inside IPsec AH, whose
/// header is kept for the router to check; an AH header for another protocol is not ours.
pub fn parse_ipv4(b: &[u8], ah: bool) -> Option<Received> {
    if b.len() < 20 || b[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let proto = if ah { PROTO_AH } else { PROTO_VRRP } as u8;
    if ihl < 20 || b.len() < ihl || b[9] != proto {
        return None;
    }
    let (ah, ihl_payload) = if ah {
        if b.len() < ihl + AH_LEN || b[ihl] != PROTO_VRRP as u8 {
            return None;
        }
        let mut h = [0u8; AH_LEN];
        h.copy_from_slice(&b[ihl..ihl + AH_LEN]);
        let raw = AhRaw {
            ip_header: b[..ihl].to_vec(),
            ah: h,
        };
        (Some(Box::new(raw)), ihl + AH_LEN)
    } else {
        (None, ihl)
    };
    // keepalived: tolerate Ethernet padding by trusting the IP total length when shorter.
    let end = if total >= ihl && total <= b.len() {
        total
    } else {
        b.len()
    };
    Some(Received {
        src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
        dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
        ttl: b[8],
        payload: b[ihl_payload.min(end)..end].to_vec(),
        ah,
    })
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for c in h.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// One instance's VRRPv3 sockets over IPv6 on one interface. The kernel gives raw IPv6
/// sockets only the payload, so the destination address and the hop limit come from
/// `IPV6_PKTINFO` / `IPV6_HOPLIMIT` control messages.
pub struct VrrpSocketV6 {
    send: Socket,
    recv: Socket,
    /// As [`VrrpSocketV4`]'s.
    others: Socket,
    ifindex: u32,
}

impl VrrpSocketV6 {
    /// Opens the sockets on `ifname` (index `ifindex`), sending from `src` (link-local),
    /// joining `group` unless unicast.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        src: std::net::Ipv6Addr,
        group: Option<std::net::Ipv6Addr>,
    ) -> io::Result<VrrpSocketV6> {
        use nix::sys::socket::{setsockopt, sockopt};
        let proto = Some(Protocol::from(PROTO_VRRP));
        let send = Socket::new(Domain::IPV6, Type::RAW, proto)?;
        send.bind_device(Some(ifname.as_bytes()))?;
        send.set_multicast_hops_v6(255)?;
        send.set_unicast_hops_v6(255)?;
        send.set_multicast_loop_v6(false)?;
        send.set_multicast_if_v6(ifindex)?;
        send.set_tclass_v6(0xc0)?;
        send.bind(&SocketAddr::V6(std::net::SocketAddrV6::new(src, 0, 0, ifindex)).into())?;
        send.attach_filter(&drop_all())?;
        let recv = Socket::new(Domain::IPV6, Type::RAW, proto)?;
        recv.bind_device(Some(ifname.as_bytes()))?;
        if let Some(g) = group {
            recv.join_multicast_v6(&g, ifindex)?;
        }
        setsockopt(&recv, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        setsockopt(&recv, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
        recv.set_read_timeout(Some(Duration::from_millis(200)))?;
        let others = Socket::new(Domain::IPV6, Type::RAW, proto)?;
        others.bind_device(Some(ifname.as_bytes()))?;
        if let Some(g) = group {
            others.join_multicast_v6(&g, ifindex)?;
        }
        others.set_read_timeout(Some(Duration::from_millis(200)))?;
        // Nothing until the instances are known (set_vrids).
        others.attach_filter(&drop_all())?;
        Ok(VrrpSocketV6 {
            send,
            recv,
            others,
            ifindex,
        })
    }

    /// Sends a VRRP message (checksum already computed with the pseudo-header).
    pub fn send(&self, dst: std::net::Ipv6Addr, payload: &[u8]) -> io::Result<()> {
        let scope = if dst.is_unicast_link_local() || dst.is_multicast() {
            self.ifindex
        } else {
            0
        };
        let to = SocketAddr::V6(std::net::SocketAddrV6::new(dst, 0, 0, scope));
        self.send.send_to(payload, &to.into())?;
        Ok(())
    }

    /// Waits up to the read timeout for a packet.
    pub fn recv(&self) -> io::Result<Option<Received>> {
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg};
        let mut buf = [0u8; 2048];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
        let msg = match recvmsg::<SockaddrIn6>(
            self.recv.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (mut dst, mut hop) = (None, None);
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        dst = Some(std::net::Ipv6Addr::from(info.ipi6_addr.s6_addr))
                    }
                    ControlMessageOwned::Ipv6HopLimit(h) => hop = Some(h),
                    _ => {}
                }
            }
        }
        let (Some(src), Some(dst), Some(hop)) = (msg.address.map(|a| a.ip()), dst, hop) else {
            return Ok(None);
        };
        let n = msg.bytes;
        Ok(Some(Received {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            ttl: u8::try_from(hop).unwrap_or(0),
            payload: buf[..n].to_vec(),
            ah: None,
        }))
    }
}

/// An instance's VRRP sockets, IPv4 or IPv6.
pub enum VrrpSocket {
    /// IPv4 (VRRPv2 or v3).
    V4(VrrpSocketV4),
    /// IPv6 (VRRPv3).
    V6(VrrpSocketV6),
}

impl VrrpSocket {
    /// Sends from `src` to `dst`; the families must match the socket's. `sign` completes an
    /// IPv4 packet before it leaves ([`VrrpSocketV4::send`]).
    pub fn send(
        &self,
        src: IpAddr,
        dst: IpAddr,
        payload: &[u8],
        sign: Option<Sign<'_>>,
    ) -> io::Result<()> {
        match (self, src, dst) {
            (VrrpSocket::V4(s), IpAddr::V4(src), IpAddr::V4(dst)) => {
                s.send(src, dst, payload, sign)
            }
            (VrrpSocket::V6(s), IpAddr::V6(_), IpAddr::V6(dst)) => s.send(dst, payload),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address family does not match the socket",
            )),
        }
    }

    /// Waits up to 200 ms for a packet.
    pub fn recv(&self) -> io::Result<Option<Received>> {
        match self {
            VrrpSocket::V4(s) => s.recv(),
            VrrpSocket::V6(s) => s.recv(),
        }
    }

    /// Lets only adverts for `vrids` (and packets too short to name one) reach the receive
    /// socket; the kernel drops the rest ([`vrid_filter`]).
    pub fn set_vrids(&self, vrids: &[u8]) -> io::Result<()> {
        let (recv, others, v4, skip) = match self {
            VrrpSocket::V4(s) => (
                &s.recv,
                &s.others,
                true,
                if s.ah { AH_LEN as u32 } else { 0 },
            ),
            VrrpSocket::V6(s) => (&s.recv, &s.others, false, 0),
        };
        recv.attach_filter(&to_filter(vrid_program(v4, skip, vrids, false)))?;
        others.attach_filter(&to_filter(vrid_program(v4, skip, vrids, true)))
    }

    /// Waits up to 200 ms for an advert for a VRID no instance here runs; whether one came
    /// (it is only counted, so its content is not kept).
    pub fn recv_other(&self) -> io::Result<bool> {
        let s = match self {
            VrrpSocket::V4(s) => &s.others,
            VrrpSocket::V6(s) => &s.others,
        };
        let mut buf = [0u8; 64];
        Ok(read_timed(s, &mut buf)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program of [`vrid_program`]'s instructions on `pkt`: the bytes kept
    /// (0: dropped).
    fn run(prog: &[(u16, u8, u8, u32)], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let (code, jt, jf, k) = prog[pc];
            let code = u32::from(code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_LEN => a = pkt.len() as u32,
                c if c == libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH => {
                    x = 4 * u32::from(pkt[k as usize] & 0xf)
                }
                c if c == libc::BPF_ALU | libc::BPF_SUB | libc::BPF_X => a = a.wrapping_sub(x),
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_IND => {
                    a = u32::from(pkt[(x + k) as usize])
                }
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => {
                    a = u32::from(pkt[k as usize])
                }
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => {
                    pc += usize::from(if a >= k { jt } else { jf })
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if a == k { jt } else { jf })
                }
                c if c == libc::BPF_RET | libc::BPF_K => return k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn the_vrid_filter_keeps_this_host_s_vrids_and_short_packets_only() {
        // An IPv4 header of 20 bytes (IHL 5) and one of 24 (IHL 6), then VRRP.
        let v4 = |ihl: u8, vrrp: &[u8]| {
            let mut p = vec![0x40 | ihl];
            p.resize(usize::from(ihl) * 4, 0);
            p.extend_from_slice(vrrp);
            p
        };
        let prog = vrid_program(true, 0, &[1, 52, 255], false);
        for (pkt, kept) in [
            (v4(5, &[0x21, 52, 100, 1]), true),
            (v4(6, &[0x21, 52, 100, 1]), true),
            (v4(5, &[0x21, 255, 100, 1]), true),
            (v4(5, &[0x21, 51, 100, 1]), false),
            (v4(6, &[0x21, 0, 100, 1]), false),
            // Too short to name a VRID: kept, to be counted.
            (v4(5, &[0x21]), true),
            (v4(5, &[]), true),
        ] {
            assert_eq!(run(&prog, &pkt) > 0, kept, "{pkt:?}");
        }
        // IPv6 sockets see the VRRP message alone.
        let prog = vrid_program(false, 0, &[7], false);
        assert!(run(&prog, &[0x31, 7, 100, 1]) > 0);
        assert_eq!(run(&prog, &[0x31, 8, 100, 1]), 0);
        assert!(run(&prog, &[0x31]) > 0);
        // No VRID: nothing but short packets.
        assert_eq!(
            run(&vrid_program(true, 0, &[], false), &v4(5, &[0x21, 1, 1, 1])),
            0
        );
        // Every VRID fits the kernel's limit of 4 096 instructions.
        let all: Vec<u8> = (0..=255).collect();
        assert!(vrid_program(true, 0, &all, false).len() < 4096);
        assert!(
            run(
                &vrid_program(true, 0, &all, false),
                &v4(5, &[0x21, 200, 1, 1])
            ) > 0
        );
        // The counting socket's filter is the inverse, short packets excepted.
        let others = vrid_program(true, 0, &[1, 52, 255], true);
        assert!(run(&others, &v4(5, &[0x21, 51, 100, 1])) > 0);
        assert_eq!(run(&others, &v4(5, &[0x21, 52, 100, 1])), 0);
        assert_eq!(run(&others, &v4(5, &[0x21])), 0);
        assert!(run(&vrid_program(false, 0, &[], true), &[0x31, 9, 1, 1]) > 0);
        // Behind an AH header (24 bytes), the VRID is 25 bytes into the payload.
        let ah = |ihl: u8, vrid: u8| {
            let mut vrrp = vec![112, 4];
            vrrp.resize(24, 0);
            vrrp.extend_from_slice(&[0x21, vrid, 100, 1]);
            v4(ihl, &vrrp)
        };
        let prog = vrid_program(true, 24, &[52], false);
        assert!(run(&prog, &ah(5, 52)) > 0);
        assert!(run(&prog, &ah(6, 52)) > 0);
        assert_eq!(run(&prog, &ah(5, 51)), 0);
        assert!(
            run(&prog, &v4(5, &[112, 4, 0])) > 0,
            "too short: kept, to be counted"
        );
    }

    #[test]
    fn parses_the_captured_v2_advert_ip_header() {
        // From vrrp-v2-advert.pcap (IP header onwards), plus 6 bytes of Ethernet padding.
        let mut b = vec![
            0x45, 0xc0, 0x00, 0x28, 0x00, 0x02, 0x00, 0x00, 0xff, 0x70, 0xd0, 0x23, 0x0a, 0x63,
            0x00, 0x0b, 0xe0, 0x00, 0x00, 0x12, 0x21, 0x33, 0x64, 0x01, 0x00, 0x01, 0x70, 0x03,
            0x0a, 0x63, 0x00, 0x64, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(
            ipv4_checksum(&b[..20]),
            0,
            "captured header checksum verifies"
        );
        b.extend_from_slice(&[0; 6]);
        let r = parse_ipv4(&b, false).expect("ipv4");
        assert_eq!(r.src, IpAddr::V4(Ipv4Addr::new(10, 99, 0, 11)));
        assert_eq!(r.dst, IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)));
        assert_eq!(r.ttl, 255);
        assert_eq!(r.payload.len(), 20);
        assert_eq!(parse_ipv4(&b[..10], false), None);
        // Not AH: nothing for an AH socket.
        assert_eq!(parse_ipv4(&b, true), None);
    }

    #[test]
    fn an_ah_packet_gives_its_vrrp_message_with_the_headers_the_router_checks() {
        // keepalived's first AH advert (auth_pass secret), IP header onwards.
        let b: Vec<u8> = [
            "45c000400001000 0ff33d0ad0a090001e0000012",
            "70040000 0a090001 00000001 30eed98b248dccb53feb4de4",
            "21339601 02013c5d 0a090064 0000000000000000",
        ]
        .concat()
        .split_whitespace()
        .collect::<String>()
        .as_bytes()
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect();
        let r = parse_ipv4(&b, true).expect("AH");
        assert_eq!(r.payload.len(), 20);
        assert_eq!(r.payload[1], 0x33);
        let ah = r.ah.expect("AH header");
        assert_eq!(ah.ip_header, b[..20]);
        assert_eq!(ah.ah[..], b[20..44]);
        assert_eq!(parse_ipv4(&b, false), None);
        // An AH header for another protocol is not ours.
        let mut other = b.clone();
        other[20] = 6;
        assert_eq!(parse_ipv4(&other, true), None);
    }
}
