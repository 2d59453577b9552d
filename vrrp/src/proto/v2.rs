//! VRRPv2 advertisement codec (RFC 3768 section 5), as Keepalived sends it by default for IPv4: the message
//! bytes after the IP header, its checksum and its simple text authentication.
//!
//! ```text
//! RFC 3768 5.1, the VRRPv2 message:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Adver Int   |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         IP Address (1)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            .........                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         IP Address (n)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (1)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (2)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Version 2, Type 1; Adver Int in whole seconds; the checksum covers the VRRP message alone (no
//! pseudo-header, unlike Keepalived's VRRPv3); IPv4 only. Auth Type 0 (none: the data is zero and ignored) or
//! 1 (simple text password, zero-padded to 8 bytes). Type 2 (IP Authentication Header) never reaches a raw
//! protocol-112 socket and is refused by configuration.
use std::net::{IpAddr, Ipv4Addr};

use super::packet::{
    check_header, checksum, Advertisement, DecodeError, HEADER_LEN, TYPE_ADVERTISEMENT,
};
use super::types::{Centis, Priority, Vrid};

/// The VRRP version of this codec.
pub const VERSION: u8 = 2;
/// Bytes of authentication data after the address list.
pub const AUTH_LEN: usize = 8;
/// Auth Type 0: no authentication.
pub const AUTH_NONE: u8 = 0;
/// Auth Type 1: simple text password (Keepalived's `auth_type PASS`).
pub const AUTH_SIMPLE: u8 = 1;

/// The authentication this router sends and demands in VRRPv2 advertisements.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    /// The password as it goes on the wire: at most 8 bytes, zero-padded.
    Pass([u8; AUTH_LEN]),
}

impl std::fmt::Debug for Auth {
    // The password stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Pass(_) => f.write_str("Pass(..)"),
        }
    }
}

impl Auth {
    /// A simple text password as Keepalived keeps it: only the first 8 bytes count (Keepalived truncates a
    /// longer `auth_pass`, with a warning), a shorter one is zero-padded. `None` for an empty password.
    pub fn pass(password: &str) -> Option<Auth> {
        let bytes = password.as_bytes();
        if bytes.is_empty() {
            return None;
        }
        let mut data = [0u8; AUTH_LEN];
        let n = bytes.len().min(AUTH_LEN);
        data[..n].copy_from_slice(&bytes[..n]);
        Some(Auth::Pass(data))
    }

    fn wire(&self) -> (u8, [u8; AUTH_LEN]) {
        match self {
            Auth::None => (AUTH_NONE, [0; AUTH_LEN]),
            Auth::Pass(d) => (AUTH_SIMPLE, *d),
        }
    }
}

/// A decoded VRRPv2 advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertisementV2 {
    pub vrid: Vrid,
    pub priority: Priority,
    /// Adver Int, whole seconds, 1..=255.
    pub adver_int: u8,
    pub addresses: Vec<Ipv4Addr>,
    pub auth_type: u8,
    pub auth_data: [u8; AUTH_LEN],
}

impl AdvertisementV2 {
    /// The VRRPv2 form of a router's advertisement: the interval in whole seconds (configuration guarantees a
    /// whole number for versions 2 and mixed; anything else is rounded down, at least 1), IPv4 addresses only.
    pub fn from_advert(adv: &Advertisement, auth: &Auth) -> Self {
        let (auth_type, auth_data) = auth.wire();
        AdvertisementV2 {
            vrid: adv.vrid,
            priority: adv.priority,
            adver_int: u8::try_from(adv.max_advert_int.get() / 100)
                .unwrap_or(u8::MAX)
                .max(1),
            addresses: adv
                .addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .take(255)
                .collect(),
            auth_type,
            auth_data,
        }
    }

    /// The advertisement in the router's common form: the interval in centiseconds.
    pub fn to_advert(&self) -> Advertisement {
        Advertisement {
            vrid: self.vrid,
            priority: self.priority,
            max_advert_int: Centis::from_secs(self.adver_int).expect("decode refuses interval 0"),
            addresses: self.addresses.iter().map(|a| IpAddr::V4(*a)).collect(),
        }
    }

    /// Decode a VRRPv2 message (the IPv4 payload; trailing Ethernet padding allowed). Authentication is
    /// checked separately ([`check_auth`](Self::check_auth)), so a router that does not speak v2 can still
    /// tell whose advertisement it heard.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_header(bytes, VERSION)?;
        let count = usize::from(bytes[3]);
        if count == 0 {
            return Err(DecodeError::NoAddresses);
        }
        let len = HEADER_LEN + count * 4 + AUTH_LEN;
        let msg = bytes.get(..len).ok_or(DecodeError::Truncated)?;
        if checksum(msg, None) != 0 {
            return Err(DecodeError::Checksum);
        }
        let vrid = Vrid::new(msg[1]).ok_or(DecodeError::ZeroVrid)?;
        if msg[5] == 0 {
            return Err(DecodeError::ZeroInterval);
        }
        let addr_end = HEADER_LEN + count * 4;
        let addresses = msg[HEADER_LEN..addr_end]
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        let mut auth_data = [0u8; AUTH_LEN];
        auth_data.copy_from_slice(&msg[addr_end..]);
        Ok(AdvertisementV2 {
            vrid,
            priority: Priority(msg[2]),
            adver_int: msg[5],
            addresses,
            auth_type: msg[4],
            auth_data,
        })
    }

    /// RFC 3768 7.1: the Auth Type must be ours, and with a simple text password the data must match. With no
    /// authentication the data is ignored.
    pub fn check_auth(&self, auth: &Auth) -> Result<(), DecodeError> {
        let (want_type, want_data) = auth.wire();
        if self.auth_type != want_type || (want_type == AUTH_SIMPLE && self.auth_data != want_data)
        {
            return Err(DecodeError::Auth);
        }
        Ok(())
    }

    /// Encode the VRRPv2 message; the checksum does not depend on the destination.
    pub fn encode(&self) -> Vec<u8> {
        let addrs = &self.addresses[..self.addresses.len().min(255)];
        let mut out = Vec::with_capacity(HEADER_LEN + addrs.len() * 4 + AUTH_LEN);
        out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid.get());
        out.push(self.priority.get());
        out.push(addrs.len() as u8);
        out.push(self.auth_type);
        out.push(self.adver_int);
        out.extend_from_slice(&[0, 0]);
        for a in addrs {
            out.extend_from_slice(&a.octets());
        }
        out.extend_from_slice(&self.auth_data);
        let sum = checksum(&out, None);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }
}

/// The version nibble of a received VRRP message, to pick its decoder.
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().map(|b| b >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(auth: &Auth) -> AdvertisementV2 {
        let adv = Advertisement {
            vrid: Vrid::new(62).unwrap(),
            priority: Priority(110),
            max_advert_int: Centis::new(100).unwrap(),
            addresses: vec![IpAddr::from([192, 0, 2, 120])],
        };
        AdvertisementV2::from_advert(&adv, auth)
    }

    #[test]
    fn round_trip_and_checksum_over_the_message_alone() {
        for auth in [Auth::None, Auth::pass("42").unwrap()] {
            let a = sample(&auth);
            let b = a.encode();
            assert_eq!(b.len(), 20);
            assert_eq!(checksum(&b, None), 0);
            let d = AdvertisementV2::decode(&b).unwrap();
            assert_eq!(d, a);
            assert_eq!(d.check_auth(&auth), Ok(()));
            assert_eq!(d.to_advert().max_advert_int.get(), 100);
        }
    }

    #[test]
    fn authentication_must_match() {
        let none = Auth::None;
        let pass = Auth::pass("secret").unwrap();
        let other = Auth::pass("other").unwrap();
        let d = AdvertisementV2::decode(&sample(&pass).encode()).unwrap();
        assert_eq!(d.check_auth(&pass), Ok(()));
        assert_eq!(d.check_auth(&other), Err(DecodeError::Auth));
        assert_eq!(d.check_auth(&none), Err(DecodeError::Auth));
        let d = AdvertisementV2::decode(&sample(&none).encode()).unwrap();
        assert_eq!(d.check_auth(&pass), Err(DecodeError::Auth));
    }

    #[test]
    fn long_passwords_keep_their_first_eight_bytes_as_keepalived_does() {
        assert_eq!(Auth::pass("0123456789"), Auth::pass("01234567"));
        assert_eq!(Auth::pass("42"), Some(Auth::Pass(*b"42\0\0\0\0\0\0")));
        assert_eq!(Auth::pass(""), None);
        assert_eq!(format!("{:?}", Auth::pass("hunter2")), "Some(Pass(..))");
    }

    #[test]
    fn every_drop_reason_has_its_error() {
        let good = sample(&Auth::None).encode();
        let fix = |mut b: Vec<u8>| {
            b[6] = 0;
            b[7] = 0;
            let s = checksum(&b, None);
            b[6..8].copy_from_slice(&s.to_be_bytes());
            b
        };
        assert_eq!(
            AdvertisementV2::decode(&good[..7]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            AdvertisementV2::decode(&good[..19]),
            Err(DecodeError::Truncated)
        );
        let mut b = good.clone();
        b[0] = 0x31;
        assert_eq!(AdvertisementV2::decode(&b), Err(DecodeError::Version(3)));
        b[0] = 0x22;
        assert_eq!(AdvertisementV2::decode(&b), Err(DecodeError::Type(2)));
        let mut b = good.clone();
        b[19] ^= 1;
        assert_eq!(AdvertisementV2::decode(&b), Err(DecodeError::Checksum));
        let mut b = good.clone();
        b[1] = 0;
        assert_eq!(AdvertisementV2::decode(&fix(b)), Err(DecodeError::ZeroVrid));
        let mut b = good.clone();
        b[3] = 0;
        assert_eq!(
            AdvertisementV2::decode(&fix(b)),
            Err(DecodeError::NoAddresses)
        );
        let mut b = good.clone();
        b[5] = 0;
        assert_eq!(
            AdvertisementV2::decode(&fix(b)),
            Err(DecodeError::ZeroInterval)
        );
        let mut padded = good.clone();
        padded.extend_from_slice(&[0xaa; 26]);
        assert!(AdvertisementV2::decode(&padded).is_ok());
    }
}
