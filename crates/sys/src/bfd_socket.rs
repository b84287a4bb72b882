//! BFD's UDP sockets (RFC 5881): one receiving socket per address family on port 3784, which
//! hands each datagram over with its source and TTL (hop limit), and one sending socket per
//! session, from a source port in 49152-65535 with the session's TTL.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// The single-hop BFD control port.
pub const PORT: u16 = 3784;

/// The receiving socket of one family, bound to port 3784 on every address, non-blocking.
pub fn open_rx(v6: bool) -> io::Result<UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let (domain, any) = if v6 {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if v6 {
        s.set_only_v6(true)?;
        setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
    } else {
        setsockopt(&s, sockopt::Ipv4RecvTtl, &true).map_err(io::Error::from)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(any, PORT).into())?;
    Ok(s.into())
}

/// One datagram from `sock` into `buf`: its length, source and TTL (hop limit; 0 when the
/// kernel did not say). `WouldBlock` when none is waiting.
pub fn recv(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, u8)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let mut ttl = 0u8;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                ttl = u8::try_from(t).unwrap_or(0);
            }
            _ => {}
        }
    }
    let src = msg
        .address
        .and_then(|a: SockaddrStorage| {
            a.as_sockaddr_in()
                .map(|s| SocketAddr::from(std::net::SocketAddrV4::from(*s)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|s| SocketAddr::from(std::net::SocketAddrV6::from(*s)))
                })
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without source"))?;
    Ok((msg.bytes, src, ttl))
}

/// A session's sending socket: from `source` (any address of the family when `None`) and a
/// free port in 49152-65535 (RFC 5881 §4), with `ttl` as the TTL (hop limit), non-blocking.
pub fn open_tx(source: Option<IpAddr>, v6: bool, ttl: u8, seed: u16) -> io::Result<UdpSocket> {
    let ip = source.unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        s.set_unicast_hops_v6(u32::from(ttl))?;
    } else {
        s.set_ttl_v4(u32::from(ttl))?;
    }
    s.set_nonblocking(true)?;
    let span = 65535 - 49152 + 1;
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free source port");
    for k in 0..span {
        let port = 49152 + ((u32::from(seed) + k) % span) as u16;
        match s.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => return Ok(s.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}
