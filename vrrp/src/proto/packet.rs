//! VRRPv3 advertisement codec (RFC 5798 section 5, RFC 9568): the message bytes after the IP header, their
//! checksum (with or without a pseudo-header) and one typed error per receive-side drop reason.
//!
//! The IP header itself belongs to the socket layer: it checks the TTL / hop limit and hands over the payload
//! together with the header's source and destination, which the checksum needs.
//!
//! ```text
//! RFC 5798 5.1.1, IPv4 header fields as VRRP uses them:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | TTL = 255     | Protocol = 112|        Header Checksum        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Address = primary address of the interface    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Destination Address = 224.0.0.18 (or a unicast peer)|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! RFC 5798 5.1.2, IPv6 header fields:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |             Flow Label                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        | Next Header=112| Hop Limit=255 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Source Address = link-local address of the interface (128)  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Destination Address = ff02::12 (or a unicast peer) (128)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! RFC 5798 5.2, the VRRP message (this module's bytes):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                       IPvX Address(es)                        |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Version 3, Type 1 (ADVERTISEMENT); rsvd is sent as 0 and ignored on receive; Max Adver Int in centiseconds.
//!
//! Checksum pseudo-headers (RFC 8200 8.1 for IPv6; for IPv4 the form Keepalived and FRR use, RFC 9568 and
//! Cisco / Juniper checksum the VRRP message alone):
//! +--------+--------+--------+--------+     +--------+--------+--------+--------+
//! |      IPv4 Source Address          |     |   IPv6 Source Address (128 bits)  |
//! +--------+--------+--------+--------+     +--------+--------+--------+--------+
//! |    IPv4 Destination Address       |     | IPv6 Destination Address (128)    |
//! +--------+--------+--------+--------+     +--------+--------+--------+--------+
//! |  zero  |  112   |  VRRP length    |     |     Upper-Layer Packet Length     |
//! +--------+--------+--------+--------+     +--------+--------+--------+--------+
//!                                           |      zero                |  112   |
//!                                           +--------+--------+--------+--------+
//! ```
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::types::{Centis, Priority, Vrid};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The VRRP version this codec speaks (VRRPv2 is in [`super::v2`]).
pub const VERSION: u8 = 3;
/// The only VRRPv3 message type.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Bytes before the address list.
pub const HEADER_LEN: usize = 8;
/// IPv4 multicast group for VRRP.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group for VRRP.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// How an IPv4 advertisement's checksum is computed on transmit. Both are accepted on receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Keepalived and FRR: the IPv4 pseudo-header is included.
    #[default]
    PseudoHeader,
    /// RFC 9568, Cisco, Juniper: the VRRP message alone.
    MessageOnly,
}

/// A decoded VRRPv3 advertisement. All addresses share one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub vrid: Vrid,
    pub priority: Priority,
    pub max_advert_int: Centis,
    pub addresses: Vec<IpAddr>,
}

/// Why a received packet was dropped; one counter per variant (see [`DecodeError::reason`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed header, or than the address list the count announces.
    #[error("truncated packet")]
    Truncated,
    /// Anything but 3; a VRRPv2 packet lands here.
    #[error("version {0} is not 3")]
    Version(u8),
    #[error("type {0} is not 1 (advertisement)")]
    Type(u8),
    /// Neither checksum form verifies (IPv6: the pseudo-header form).
    #[error("bad checksum")]
    Checksum,
    #[error("address count is 0")]
    NoAddresses,
    #[error("advertisement interval is 0")]
    ZeroInterval,
    #[error("VRID 0")]
    ZeroVrid,
    /// Source and destination of the IP header are of different families.
    #[error("address family does not match the IP header")]
    Family,
    /// TTL / hop limit not 255 on a multicast advertisement (checked by the socket layer, see
    /// [`check_hop_limit`]): the packet was routed, so it is not from this link.
    #[error("TTL / hop limit {0} is not 255")]
    HopLimit(u8),
    /// A VRID not configured on this interface (checked by the driver, which knows its routers).
    #[error("VRID {0} is not configured here")]
    UnknownVrid(u8),
    /// A unicast advertisement from an address not in the peer list (checked by the socket layer).
    #[error("{0} is not a configured unicast peer")]
    UnknownPeer(IpAddr),
    /// The IPv4 header around the message is malformed (see [`Ipv4Header::parse`]).
    #[error("malformed IPv4 header")]
    IpHeader,
    /// VRRPv2: the authentication type or password is not ours (RFC 3768 7.1).
    #[error("authentication type or password does not match")]
    Auth,
    /// VRRPv2: Adver Int differs from ours (RFC 3768 7.1: a v2 router does not learn the master's interval).
    #[error("advertisement interval {0}s is not ours")]
    Interval(u8),
}

impl DecodeError {
    /// A stable label for the drop counter of this reason.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::Version(_) => "version",
            DecodeError::Type(_) => "type",
            DecodeError::Checksum => "checksum",
            DecodeError::NoAddresses => "no_addresses",
            DecodeError::ZeroInterval => "zero_interval",
            DecodeError::ZeroVrid => "zero_vrid",
            DecodeError::Family => "family",
            DecodeError::HopLimit(_) => "hop_limit",
            DecodeError::UnknownVrid(_) => "unknown_vrid",
            DecodeError::UnknownPeer(_) => "unknown_peer",
            DecodeError::IpHeader => "ip_header",
            DecodeError::Auth => "auth",
            DecodeError::Interval(_) => "interval",
        }
    }

    /// Every reason label, so a metrics layer can pre-register all counters at zero.
    pub const REASONS: [&'static str; 14] = [
        "truncated",
        "version",
        "type",
        "checksum",
        "no_addresses",
        "zero_interval",
        "zero_vrid",
        "family",
        "hop_limit",
        "unknown_vrid",
        "unknown_peer",
        "ip_header",
        "auth",
        "interval",
    ];
}

/// RFC 5798 7.1: a multicast advertisement must arrive with TTL / hop limit 255. (Unicast peers are checked
/// against the peer list instead, since some setups route them.)
pub fn check_hop_limit(ttl: u8) -> Result<(), DecodeError> {
    if ttl == 255 {
        Ok(())
    } else {
        Err(DecodeError::HopLimit(ttl))
    }
}

/// The IPv4 header fields the receive path needs, read from what an IPv4 raw socket delivers (header
/// included). The header length comes from IHL: options are legal, so 20 bytes is never assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    /// Bytes of header; the payload starts here.
    pub header_len: usize,
    /// Header plus payload, from Total Length; anything after it is padding.
    pub total_len: usize,
}

impl Ipv4Header {
    /// Parse `packet` and return the header and the payload (without padding).
    pub fn parse(packet: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        if packet.len() < 20 {
            return Err(DecodeError::Truncated);
        }
        let header_len = usize::from(packet[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        if packet[0] >> 4 != 4 || header_len < 20 || total_len < header_len {
            return Err(DecodeError::IpHeader);
        }
        let payload = packet
            .get(header_len..total_len)
            .ok_or(DecodeError::Truncated)?;
        let hdr = Ipv4Header {
            src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
            dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
            ttl: packet[8],
            protocol: packet[9],
            header_len,
            total_len,
        };
        Ok((hdr, payload))
    }
}

/// The receive checks VRRPv2 and VRRPv3 share, in this order: the fixed header is there, its version is
/// `version`, its type is an advertisement.
pub(super) fn check_header(bytes: &[u8], version: u8) -> Result<(), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let found = bytes[0] >> 4;
    if found != version {
        return Err(DecodeError::Version(found));
    }
    let kind = bytes[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DecodeError::Type(kind));
    }
    Ok(())
}

impl Advertisement {
    /// Decode the VRRP message (the IP payload; trailing Ethernet padding allowed). `src` and `dst` are the IP
    /// header's addresses, for the pseudo-header checksum.
    pub fn decode(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Self, DecodeError> {
        Self::decode_with_mode(bytes, src, dst).map(|(adv, _)| adv)
    }

    /// As [`decode`](Self::decode), and also tell which checksum form the sender used (always
    /// [`ChecksumMode::PseudoHeader`] for IPv6), so a peer's form can be logged or matched.
    pub fn decode_with_mode(
        bytes: &[u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(Self, ChecksumMode), DecodeError> {
        check_header(bytes, VERSION)?;
        let addr_len = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 4,
            (IpAddr::V6(_), IpAddr::V6(_)) => 16,
            _ => return Err(DecodeError::Family),
        };
        let count = usize::from(bytes[3]);
        if count == 0 {
            return Err(DecodeError::NoAddresses);
        }
        let len = HEADER_LEN + count * addr_len;
        // Anything after `len` is link-layer padding and is outside the checksum.
        let msg = bytes.get(..len).ok_or(DecodeError::Truncated)?;
        let mode = if checksum(msg, Some((src, dst))) == 0 {
            ChecksumMode::PseudoHeader
        } else if src.is_ipv4() && checksum(msg, None) == 0 {
            ChecksumMode::MessageOnly
        } else {
            return Err(DecodeError::Checksum);
        };
        let vrid = Vrid::new(msg[1]).ok_or(DecodeError::ZeroVrid)?;
        let priority = Priority(msg[2]);
        let interval = u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff;
        let max_advert_int = Centis::new(interval).ok_or(DecodeError::ZeroInterval)?;
        let addresses = msg[HEADER_LEN..]
            .chunks_exact(addr_len)
            .map(|c| match <[u8; 4]>::try_from(c) {
                Ok(b) => IpAddr::from(b),
                Err(_) => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(c);
                    IpAddr::from(b)
                }
            })
            .collect();
        let adv = Advertisement {
            vrid,
            priority,
            max_advert_int,
            addresses,
        };
        Ok((adv, mode))
    }

    /// Encode the VRRP message for one destination (each unicast peer gets its own pseudo-header checksum).
    ///
    /// Only addresses of `src`'s family are written, at most 255 of them: configuration validation is where a
    /// mixed or oversized list is refused, so this stays infallible for the send path. `mode` is ignored for
    /// IPv6, whose checksum always includes the pseudo-header.
    pub fn encode(&self, src: IpAddr, dst: IpAddr, mode: ChecksumMode) -> Vec<u8> {
        let addrs: Vec<&IpAddr> = self
            .addresses
            .iter()
            .filter(|a| a.is_ipv4() == src.is_ipv4())
            .take(255)
            .collect();
        let addr_len = if src.is_ipv4() { 4 } else { 16 };
        let mut out = Vec::with_capacity(HEADER_LEN + addrs.len() * addr_len);
        out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid.get());
        out.push(self.priority.get());
        out.push(addrs.len() as u8);
        out.extend_from_slice(&(self.max_advert_int.get() & 0x0fff).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in addrs {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        let pseudo = match (src, mode) {
            (IpAddr::V4(_), ChecksumMode::MessageOnly) => None,
            _ => Some((src, dst)),
        };
        let sum = checksum(&out, pseudo);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }
}

/// The Internet checksum (RFC 1071) of `msg`, preceded by the pseudo-header for `(src, dst)` when given.
/// Over a message that already carries its checksum, a result of 0 means it verifies.
pub(crate) fn checksum(msg: &[u8], pseudo: Option<(IpAddr, IpAddr)>) -> u16 {
    let mut sum = Sum::default();
    match pseudo {
        Some((IpAddr::V4(s), IpAddr::V4(d))) => {
            sum.add(&s.octets());
            sum.add(&d.octets());
            sum.add(&[0, IPPROTO_VRRP]);
            sum.add(&(msg.len() as u16).to_be_bytes());
        }
        Some((s, d)) => {
            sum.add(&v6_octets(s));
            sum.add(&v6_octets(d));
            sum.add(&(msg.len() as u32).to_be_bytes());
            sum.add(&[0, 0, 0, IPPROTO_VRRP]);
        }
        None => {}
    }
    sum.add(msg);
    sum.finish()
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// A running RFC 1071 sum. Every caller feeds even-length chunks except possibly the last.
#[derive(Default)]
pub(crate) struct Sum(u64);

impl Sum {
    pub(crate) fn add(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(2);
        for c in &mut chunks {
            self.0 += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            self.0 += u64::from(*last) << 8;
        }
    }

    pub(crate) fn finish(self) -> u16 {
        let mut s = self.0;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sample() -> Advertisement {
        Advertisement {
            vrid: Vrid::new(51).unwrap(),
            priority: Priority(150),
            max_advert_int: Centis::new(100).unwrap(),
            addresses: vec![v4("192.0.2.100")],
        }
    }

    #[test]
    fn message_only_checksum_is_accepted_and_reported() {
        let (src, dst) = (v4("192.0.2.10"), v4("224.0.0.18"));
        let bytes = sample().encode(src, dst, ChecksumMode::MessageOnly);
        let (adv, mode) = Advertisement::decode_with_mode(&bytes, src, dst).unwrap();
        assert_eq!(adv, sample());
        assert_eq!(mode, ChecksumMode::MessageOnly);
        let bytes = sample().encode(src, dst, ChecksumMode::PseudoHeader);
        let (_, mode) = Advertisement::decode_with_mode(&bytes, src, dst).unwrap();
        assert_eq!(mode, ChecksumMode::PseudoHeader);
    }

    #[test]
    fn every_drop_reason_has_its_error() {
        let (src, dst) = (v4("192.0.2.10"), v4("224.0.0.18"));
        let good = sample().encode(src, dst, ChecksumMode::PseudoHeader);
        let dec = |b: &[u8]| Advertisement::decode(b, src, dst);
        // Re-checksum after a mutation so only the intended check fails.
        let fix = |mut b: Vec<u8>| {
            b[6] = 0;
            b[7] = 0;
            let s = checksum(&b, Some((src, dst)));
            b[6..8].copy_from_slice(&s.to_be_bytes());
            b
        };
        assert_eq!(dec(&good[..7]), Err(DecodeError::Truncated));
        assert_eq!(dec(&good[..11]), Err(DecodeError::Truncated));
        assert_eq!(dec(&[]), Err(DecodeError::Truncated));
        let mut b = good.clone();
        b[0] = 0x21;
        assert_eq!(dec(&b), Err(DecodeError::Version(2)));
        b[0] = 0x32;
        assert_eq!(dec(&b), Err(DecodeError::Type(2)));
        let mut b = good.clone();
        b[12 - 1] ^= 1;
        assert_eq!(dec(&b), Err(DecodeError::Checksum));
        let mut b = good.clone();
        b[1] = 0;
        assert_eq!(dec(&fix(b)), Err(DecodeError::ZeroVrid));
        let mut b = good.clone();
        b[3] = 0;
        assert_eq!(dec(&fix(b)), Err(DecodeError::NoAddresses));
        let mut b = good.clone();
        b[3] = 2;
        assert_eq!(dec(&fix(b)), Err(DecodeError::Truncated));
        let mut b = good.clone();
        b[4] = 0xf0; // rsvd bits set, interval 0
        b[5] = 0;
        assert_eq!(dec(&fix(b)), Err(DecodeError::ZeroInterval));
        assert_eq!(
            Advertisement::decode(&good, src, "ff02::12".parse().unwrap()),
            Err(DecodeError::Family)
        );
        // Checksummed for another destination (a unicast peer's packet seen elsewhere): rejected.
        assert_eq!(
            Advertisement::decode(&good, src, v4("192.0.2.11")),
            Err(DecodeError::Checksum)
        );
    }

    #[test]
    fn reserved_bits_are_ignored_and_padding_is_outside_the_checksum() {
        let (src, dst) = (v4("192.0.2.10"), v4("224.0.0.18"));
        let mut b = sample().encode(src, dst, ChecksumMode::MessageOnly);
        b[4] |= 0xf0;
        // Keep the sum valid: the rsvd nibble adds 0xf000 to the message.
        let s = u16::from_be_bytes([b[6], b[7]]);
        let fixed = {
            let mut t = Sum::default();
            t.add(&(!s).to_be_bytes());
            t.add(&[0xf0, 0]);
            t.finish()
        };
        b[6..8].copy_from_slice(&fixed.to_be_bytes());
        b.extend_from_slice(&[0xaa; 34]);
        assert_eq!(Advertisement::decode(&b, src, dst), Ok(sample()));
    }

    #[test]
    fn ipv4_header_uses_ihl_and_total_length() {
        // 24-byte header (one option word), then 12 bytes of message, then 10 bytes of padding.
        let msg = sample().encode(
            v4("192.0.2.10"),
            v4("224.0.0.18"),
            ChecksumMode::PseudoHeader,
        );
        let mut p = vec![
            0x46, 0xc0, 0, 36, 0, 1, 0, 0, 255, 112, 0, 0, 192, 0, 2, 10, 224, 0, 0, 18,
        ];
        p.extend_from_slice(&[1, 1, 1, 1]);
        p.extend_from_slice(&msg);
        p.extend_from_slice(&[0; 10]);
        let (h, payload) = Ipv4Header::parse(&p).unwrap();
        assert_eq!(
            (h.header_len, h.total_len, h.ttl, h.protocol),
            (24, 36, 255, 112)
        );
        assert_eq!(payload, &msg[..]);
        assert_eq!(check_hop_limit(h.ttl), Ok(()));
        assert_eq!(check_hop_limit(64), Err(DecodeError::HopLimit(64)));
        assert_eq!(
            Ipv4Header::parse(&p[..30]).unwrap_err(),
            DecodeError::Truncated
        );
        let mut bad = p.clone();
        bad[0] = 0x44;
        assert_eq!(Ipv4Header::parse(&bad).unwrap_err(), DecodeError::IpHeader);
        bad[0] = 0x65;
        assert_eq!(Ipv4Header::parse(&bad).unwrap_err(), DecodeError::IpHeader);
        bad[0] = 0x46;
        bad[3] = 10;
        assert_eq!(Ipv4Header::parse(&bad).unwrap_err(), DecodeError::IpHeader);
    }

    #[test]
    fn encode_skips_foreign_family_addresses() {
        let mut adv = sample();
        adv.addresses.push("2001:db8::1".parse().unwrap());
        let (src, dst) = (v4("192.0.2.10"), v4("224.0.0.18"));
        let b = adv.encode(src, dst, ChecksumMode::PseudoHeader);
        assert_eq!(b.len(), 12);
        assert_eq!(Advertisement::decode(&b, src, dst), Ok(sample()));
    }

    #[test]
    fn reasons_are_distinct_and_listed() {
        let all = [
            DecodeError::Truncated,
            DecodeError::Version(2),
            DecodeError::Type(0),
            DecodeError::Checksum,
            DecodeError::NoAddresses,
            DecodeError::ZeroInterval,
            DecodeError::ZeroVrid,
            DecodeError::Family,
            DecodeError::HopLimit(1),
            DecodeError::UnknownVrid(9),
            DecodeError::UnknownPeer(v4("192.0.2.9")),
            DecodeError::IpHeader,
            DecodeError::Auth,
            DecodeError::Interval(2),
        ];
        let labels: Vec<_> = all.iter().map(DecodeError::reason).collect();
        assert_eq!(labels, DecodeError::REASONS);
    }
}
