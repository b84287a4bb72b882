//! Gratuitous ARP over AF_PACKET, as keepalived sends it: an Ethernet broadcast ARP *request*
//! with sender and target IP both the VIP and target MAC ff:ff:ff:ff:ff:ff (captured from
//! keepalived 2.2.7: `garp-v2-lb2.pcap`).

use std::io;
use std::net::Ipv4Addr;

use socket2::{Domain, SockAddr, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;

/// The 42-byte frame.
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An AF_PACKET socket for one interface.
pub struct Garp {
    sock: Socket,
    /// The destination (a `sockaddr_ll`) is built for each send from the index: kept, it
    /// is 136 bytes in every instance for a few sends per transition.
    ifindex: u32,
    mac: [u8; 6],
}

impl Garp {
    /// Opens the socket for interface `ifindex` with hardware address `mac`.
    pub fn open(ifindex: u32, mac: [u8; 6]) -> io::Result<Garp> {
        // Protocol 0: a send-only packet socket. With ETH_P_ARP it would also receive every
        // ARP frame of every interface, once per VRRP instance.
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(socket2::Protocol::from(0)))?;
        // An index the address cannot hold fails here, not at the first send.
        link_addr(ifindex)?;
        Ok(Garp { sock, ifindex, mac })
    }

    /// Another handle on the same socket (a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<Garp> {
        Ok(Garp {
            sock: self.sock.try_clone()?,
            ifindex: self.ifindex,
            mac: self.mac,
        })
    }

    /// Sends one gratuitous ARP for `ip`.
    pub fn send(&self, ip: Ipv4Addr) -> io::Result<()> {
        self.sock
            .send_to(&frame(self.mac, ip), &link_addr(self.ifindex)?)?;
        Ok(())
    }
}

/// `ICMP6_FILTER` (netinet/icmp6.h; not in the libc crate).
const ICMP6_FILTER: libc::c_int = 1;

/// Send-only: an ICMPv6 raw socket would otherwise receive every ICMPv6 message on the
/// link (neighbour discovery included), once per VRRP instance.
#[allow(unsafe_code)]
fn block_all_icmpv6(sock: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // struct icmp6_filter: a bit set per type, 1 = block (RFC 3542 §3.2).
    let filter = [u32::MAX; 8];
    // SAFETY: ICMP6_FILTER at IPPROTO_ICMPV6 takes a struct icmp6_filter (eight 32-bit
    // words); `filter` is one, alive for the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[allow(unsafe_code)]
fn link_addr(ifindex: u32) -> io::Result<SockAddr> {
    let index = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex"))?;
    // SAFETY: the closure fills a zeroed sockaddr_storage with a valid sockaddr_ll (family
    // AF_PACKET, protocol, interface index, broadcast hardware address) and reports its size,
    // which is smaller than sockaddr_storage.
    let ((), addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let ll = storage.cast::<libc::sockaddr_ll>();
            (*ll).sll_family = libc::AF_PACKET as u16;
            (*ll).sll_protocol = ETH_P_ARP.to_be();
            (*ll).sll_ifindex = index;
            (*ll).sll_halen = 6;
            (*ll).sll_addr = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0];
            *len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            Ok(())
        })
    }?;
    Ok(addr)
}

/// Unsolicited neighbour advertisements (RFC 4861 §7.2.6), as keepalived sends them for IPv6
/// VIPs: to ff02::1 with the Override flag and the target link-layer address option.
pub struct Unsolicited {
    sock: Socket,
    ifindex: u32,
    mac: [u8; 6],
}

/// The ICMPv6 NA message (the kernel fills the checksum on ICMPv6 raw sockets).
pub fn na_message(mac: [u8; 6], target: std::net::Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136;
    // Flags: Override.
    m[4] = 0x20;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = 2; // target link-layer address
    m[25] = 1; // 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

impl Unsolicited {
    /// Another handle on the same socket (a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<Unsolicited> {
        Ok(Unsolicited {
            sock: self.sock.try_clone()?,
            ifindex: self.ifindex,
            mac: self.mac,
        })
    }

    /// Opens an ICMPv6 socket on `ifname`, sending from `src` (link-local).
    pub fn open(
        ifname: &str,
        ifindex: u32,
        mac: [u8; 6],
        src: std::net::Ipv6Addr,
    ) -> io::Result<Unsolicited> {
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(socket2::Protocol::ICMPV6))?;
        block_all_icmpv6(&sock)?;
        sock.bind_device(Some(ifname.as_bytes()))?;
        sock.set_multicast_hops_v6(255)?;
        sock.set_multicast_if_v6(ifindex)?;
        sock.bind(
            &std::net::SocketAddr::V6(std::net::SocketAddrV6::new(src, 0, 0, ifindex)).into(),
        )?;
        Ok(Unsolicited { sock, ifindex, mac })
    }

    /// Sends one unsolicited NA for `target`.
    pub fn send(&self, target: std::net::Ipv6Addr) -> io::Result<()> {
        let all_nodes = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let to =
            std::net::SocketAddr::V6(std::net::SocketAddrV6::new(all_nodes, 0, 0, self.ifindex));
        self.sock
            .send_to(&na_message(self.mac, target), &to.into())?;
        Ok(())
    }
}

/// Gratuitous ARPs (IPv4) or unsolicited NAs (IPv6) for an instance's interface.
pub enum Announcer {
    /// IPv4.
    Arp(Garp),
    /// IPv6.
    Na(Unsolicited),
}

impl Announcer {
    /// Another handle on the same socket, for a burst sent by a task of its own.
    pub fn try_clone(&self) -> io::Result<Announcer> {
        Ok(match self {
            Announcer::Arp(g) => Announcer::Arp(g.try_clone()?),
            Announcer::Na(n) => Announcer::Na(n.try_clone()?),
        })
    }

    /// Announces `addr` once; addresses of the other family are skipped.
    pub fn send(&self, addr: std::net::IpAddr) -> io::Result<()> {
        match (self, addr) {
            (Announcer::Arp(g), std::net::IpAddr::V4(a)) => g.send(a),
            (Announcer::Na(n), std::net::IpAddr::V6(a)) => n.send(a),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_advert_has_override_flag_target_and_lladdr_option() {
        let m = na_message([2, 0x99, 0, 0, 1, 0x0a], "fd99::100".parse().unwrap());
        assert_eq!(&m[..8], &[136, 0, 0, 0, 0x20, 0, 0, 0]);
        assert_eq!(
            &m[8..24],
            &"fd99::100".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&m[24..], &[2, 1, 2, 0x99, 0, 0, 1, 0x0a]);
    }

    #[test]
    fn frame_matches_keepalived_capture() {
        // garp-v2-lb2.pcap: 10.99.0.100 from 02:99:00:00:00:0c.
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x99, 0x00, 0x00, 0x00, 0x0c, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x99, 0x00, 0x00, 0x00, 0x0c,
            0x0a, 0x63, 0x00, 0x64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x63, 0x00, 0x64,
        ];
        assert_eq!(
            frame([0x02, 0x99, 0, 0, 0, 0x0c], Ipv4Addr::new(10, 99, 0, 100)),
            expected
        );
    }
}
