//! VRRP advertisements on the wire: a checked view [`Packet`] over a buffer and a value
//! [`AdvertRepr`] with `parse` / `emit` / `buffer_len` (smoltcp's split).
//!
//! ```text
//! VRRPv2 (RFC 3768)                         VRRPv3 (RFC 5798)
//!  0       4       8               16              24            31
//! +-------+-------+---------------+---------------+---------------+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IPvX    |
//! +-------+-------+---------------+---------------+---------------+
//! v2: | Auth Type | Adver Int (s) |   Checksum    |
//! v3: |Rsvd|  Max Adver Int (cs, 12 bits)         |   Checksum    |
//! +---------------------------------------------------------------+
//! |                 IPvX Address(es)  (4 or 16 bytes each)        |
//! +---------------------------------------------------------------+
//! v2 only: 8 bytes of authentication data
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// IPv4 multicast group (RFC 5798 §5.1.1.2).
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group (RFC 5798 §5.1.2.2).
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Fixed header length.
pub const HEADER_LEN: usize = 8;
/// v2 authentication data length.
pub const AUTH_LEN: usize = 8;

/// Why bytes are not a VRRP advertisement. Each maps to a keepalived counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header, or than the address count needs.
    Truncated,
    /// Longer than the address count says.
    TooLong,
    /// Version is not 2 or 3.
    Version(u8),
    /// Type is not 1 (advertisement).
    Type(u8),
    /// Checksum does not verify.
    Checksum,
    /// v2 over IPv6, or an address count that does not fit the family.
    Family,
    /// v2 auth type not 0, 1 or 2.
    AuthType(u8),
}

/// Protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768.
    V2,
    /// RFC 5798.
    V3,
}

impl Version {
    /// The number on the wire.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// v2 authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Type 0.
    None,
    /// Type 1: simple text password, first 8 bytes, zero padded.
    Pass([u8; 8]),
    /// Type 2: IPsec AH, keyed with the password (first 8 bytes, zero padded); the message's
    /// data field is zero.
    Ah([u8; 8]),
}

impl Auth {
    /// A PASS authentication from a configured `auth_pass` (keepalived keeps 8 bytes).
    pub fn pass(s: &str) -> Auth {
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(s.bytes()) {
            *d = s;
        }
        Auth::Pass(b)
    }

    /// An AH authentication from a configured `auth_pass` (keepalived keys with 8 bytes).
    pub fn ah(s: &str) -> Auth {
        match Auth::pass(s) {
            Auth::Pass(b) => Auth::Ah(b),
            other => other,
        }
    }

    /// The auth type number.
    pub fn type_number(&self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Pass(_) => 1,
            Auth::Ah(_) => 2,
        }
    }

    /// What the message's authentication data carries: the password for PASS; nothing for
    /// AH, whose key signs the AH header instead ([`crate::ah`]).
    fn data(&self) -> [u8; 8] {
        match self {
            Auth::None | Auth::Ah(_) => [0; 8],
            Auth::Pass(d) => *d,
        }
    }
}

/// Address family of the carrying IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The family of an address.
    pub fn of(a: IpAddr) -> Family {
        if a.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// Which checksum a v3/IPv4 packet used (keepalived sends the pseudo-header form; RFC 9568
/// and some vendors use the message alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumForm {
    /// Message plus the IP pseudo-header (v3 IPv6 always; v3 IPv4 keepalived default).
    PseudoHeader,
    /// Message only (v2 always; v3 IPv4 with `v3_checksum_as_v2`).
    MessageOnly,
}

/// The IP addresses a checksum may cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPair {
    /// Source.
    pub src: IpAddr,
    /// Destination (multicast group or unicast peer).
    pub dst: IpAddr,
}

/// RFC 1071 one's-complement sum, folded, not inverted.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn pseudo_sum(ips: &IpPair, len: usize) -> u32 {
    let mut acc = 0u32;
    match (ips.src, ips.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum16(acc, &s.octets());
            acc = sum16(acc, &d.octets());
            acc += u32::from(PROTO_VRRP) + len as u32;
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            acc = sum16(acc, &v6(s));
            acc = sum16(acc, &v6(d));
            acc += len as u32 + u32::from(PROTO_VRRP);
        }
    }
    acc
}

/// The checksum field value for `msg` (with its checksum bytes zero or not: they are skipped).
pub fn checksum(msg: &[u8], form: ChecksumForm, ips: Option<&IpPair>) -> u16 {
    let mut acc = sum16(0, &msg[..6.min(msg.len())]);
    if msg.len() > 8 {
        acc = sum16(acc, &msg[8..]);
    }
    if let (ChecksumForm::PseudoHeader, Some(ips)) = (form, ips) {
        acc += pseudo_sum(ips, msg.len());
    }
    !fold(acc)
}

/// A read/write view of a VRRP advertisement in a buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks; accessors may panic on a short buffer.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`] for `family`.
    pub fn new_checked(buffer: T, family: Family) -> Result<Packet<T>, WireError> {
        let p = Packet { buffer };
        p.check_len(family)?;
        Ok(p)
    }

    /// Checks the buffer holds exactly the header, the addresses the count announces and (v2)
    /// the authentication data.
    pub fn check_len(&self, family: Family) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let expected = expected_len(b[0] >> 4, b[3], family)?;
        match b.len().cmp(&expected) {
            std::cmp::Ordering::Less => Err(WireError::Truncated),
            std::cmp::Ordering::Greater => Err(WireError::TooLong),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (2 or 3 when valid).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// Type field (1 = advertisement).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x0f
    }
    /// Virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Priority.
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
    /// Address count.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[3]
    }
    /// v2 auth type.
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[4]
    }
    /// v2 advertisement interval in seconds.
    pub fn adver_int_secs(&self) -> u8 {
        self.buffer.as_ref()[5]
    }
    /// v3 maximum advertisement interval in centiseconds (12 bits).
    pub fn max_adver_int_cs(&self) -> u16 {
        u16::from_be_bytes([self.buffer.as_ref()[4], self.buffer.as_ref()[5]]) & 0x0fff
    }
    /// Checksum field.
    pub fn checksum_field(&self) -> u16 {
        u16::from_be_bytes([self.buffer.as_ref()[6], self.buffer.as_ref()[7]])
    }
    /// The raw address bytes.
    pub fn addr_bytes(&self, family: Family) -> &[u8] {
        let n = usize::from(self.count()) * family.addr_len();
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + n]
    }
    /// v2 authentication data.
    pub fn auth_data(&self) -> [u8; 8] {
        let b = self.buffer.as_ref();
        let mut d = [0u8; 8];
        if b.len() >= AUTH_LEN {
            d.copy_from_slice(&b[b.len() - AUTH_LEN..]);
        }
        d
    }

    /// Which checksum form verifies: v2 and v3/IPv4 may be message-only; v3 may use the
    /// pseudo-header (required for IPv6). `None` if neither does.
    pub fn verify_checksum(&self, family: Family, ips: &IpPair) -> Option<ChecksumForm> {
        let b = self.buffer.as_ref();
        let field = self.checksum_field();
        let forms: &[ChecksumForm] = match (self.version(), family) {
            (3, Family::V6) => &[ChecksumForm::PseudoHeader],
            (3, Family::V4) => &[ChecksumForm::PseudoHeader, ChecksumForm::MessageOnly],
            _ => &[ChecksumForm::MessageOnly],
        };
        forms
            .iter()
            .copied()
            .find(|&f| checksum(b, f, Some(ips)) == field)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets version and type.
    pub fn set_version_kind(&mut self, version: u8, kind: u8) {
        self.b()[0] = (version << 4) | (kind & 0x0f);
    }
    /// Sets the VRID.
    pub fn set_vrid(&mut self, v: u8) {
        self.b()[1] = v;
    }
    /// Sets the priority.
    pub fn set_priority(&mut self, v: u8) {
        self.b()[2] = v;
    }
    /// Sets the address count.
    pub fn set_count(&mut self, v: u8) {
        self.b()[3] = v;
    }
    /// Sets the checksum field.
    pub fn set_checksum_field(&mut self, v: u16) {
        self.b()[6..8].copy_from_slice(&v.to_be_bytes());
    }
    /// Computes and stores the checksum.
    pub fn fill_checksum(&mut self, form: ChecksumForm, ips: &IpPair) {
        let c = checksum(self.buffer.as_ref(), form, Some(ips));
        self.set_checksum_field(c);
    }
}

fn expected_len(version: u8, count: u8, family: Family) -> Result<usize, WireError> {
    let addrs = usize::from(count) * family.addr_len();
    match (version, family) {
        (2, Family::V4) => Ok(HEADER_LEN + addrs + AUTH_LEN),
        (2, Family::V6) => Err(WireError::Family),
        (3, _) => Ok(HEADER_LEN + addrs),
        (v, _) => Err(WireError::Version(v)),
    }
}

/// An advertisement as a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertRepr {
    /// Version.
    pub version: Version,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority (0 = master leaving, 255 = owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: seconds × 100).
    pub interval_cs: u16,
    /// Advertised addresses, all of one family.
    pub addrs: Vec<IpAddr>,
    /// v2 authentication (always `None` for v3).
    pub auth: Auth,
}

impl AdvertRepr {
    /// Parses a checked packet. Checks type, auth type and checksum; returns which checksum
    /// form the sender used.
    pub fn parse<T: AsRef<[u8]>>(
        p: &Packet<T>,
        family: Family,
        ips: &IpPair,
    ) -> Result<(AdvertRepr, ChecksumForm), WireError> {
        p.check_len(family)?;
        let version = match p.version() {
            2 => Version::V2,
            3 => Version::V3,
            v => return Err(WireError::Version(v)),
        };
        if p.kind() != 1 {
            return Err(WireError::Type(p.kind()));
        }
        let form = p.verify_checksum(family, ips).ok_or(WireError::Checksum)?;
        let addrs = p
            .addr_bytes(family)
            .chunks_exact(family.addr_len())
            .map(|c| match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                Family::V6 => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::V6(Ipv6Addr::from(o))
                }
            })
            .collect();
        let (interval_cs, auth) = match version {
            Version::V2 => {
                let auth = match p.auth_type() {
                    0 => Auth::None,
                    1 => Auth::Pass(p.auth_data()),
                    2 => Auth::Ah(p.auth_data()),
                    t => return Err(WireError::AuthType(t)),
                };
                (u16::from(p.adver_int_secs()) * 100, auth)
            }
            Version::V3 => (p.max_adver_int_cs(), Auth::None),
        };
        Ok((
            AdvertRepr {
                version,
                vrid: p.vrid(),
                priority: p.priority(),
                interval_cs,
                addrs,
                auth,
            },
            form,
        ))
    }

    /// The family of the addresses (IPv4 when there are none).
    pub fn family(&self) -> Family {
        self.addrs.first().map_or(Family::V4, |a| Family::of(*a))
    }

    /// Bytes [`AdvertRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let a = self.addrs.len() * self.family().addr_len();
        match self.version {
            Version::V2 => HEADER_LEN + a + AUTH_LEN,
            Version::V3 => HEADER_LEN + a,
        }
    }

    /// Writes the advertisement and its checksum into a buffer of [`AdvertRepr::buffer_len`]
    /// bytes. v2 always uses the message-only checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        form: ChecksumForm,
        ips: &IpPair,
    ) {
        p.set_version_kind(self.version.number(), 1);
        p.set_vrid(self.vrid);
        p.set_priority(self.priority);
        p.set_count(self.addrs.len().min(255) as u8);
        {
            let b = p.b();
            match self.version {
                Version::V2 => {
                    b[4] = self.auth.type_number();
                    b[5] = (self.interval_cs / 100).min(255) as u8;
                }
                Version::V3 => {
                    b[4..6].copy_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
                }
            }
            let mut at = HEADER_LEN;
            for a in &self.addrs {
                match a {
                    IpAddr::V4(a) => {
                        b[at..at + 4].copy_from_slice(&a.octets());
                        at += 4;
                    }
                    IpAddr::V6(a) => {
                        b[at..at + 16].copy_from_slice(&a.octets());
                        at += 16;
                    }
                }
            }
            if self.version == Version::V2 {
                b[at..at + AUTH_LEN].copy_from_slice(&self.auth.data());
            }
        }
        let form = if self.version == Version::V2 {
            ChecksumForm::MessageOnly
        } else {
            form
        };
        p.set_checksum_field(0);
        p.fill_checksum(form, ips);
    }

    /// Emits into a new vector.
    pub fn to_bytes(&self, form: ChecksumForm, ips: &IpPair) -> Vec<u8> {
        let mut v = vec![0u8; self.buffer_len()];
        let mut p = Packet::new_unchecked(&mut v[..]);
        self.emit(&mut p, form, ips);
        v
    }
}
