//! VRRPv3 advertisement codec (RFC 5798 section 5, RFC 9568). CONTRACT STUB: to be implemented (issue 3).
use std::net::IpAddr;

use super::types::{Centis, Priority, Vrid};

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

/// Why a received packet was dropped; one counter per variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated packet")]
    Truncated,
    #[error("version {0} is not 3")]
    Version(u8),
    #[error("type {0} is not 1 (advertisement)")]
    Type(u8),
    #[error("bad checksum")]
    Checksum,
    #[error("address count is 0")]
    NoAddresses,
    #[error("advertisement interval is 0")]
    ZeroInterval,
    #[error("VRID 0")]
    ZeroVrid,
    #[error("address family does not match the IP header")]
    Family,
}

impl Advertisement {
    /// Decode the VRRP message (the IP payload; trailing Ethernet padding allowed). `src` and `dst` are the IP
    /// header's addresses, for the pseudo-header checksum.
    pub fn decode(_bytes: &[u8], _src: IpAddr, _dst: IpAddr) -> Result<Self, DecodeError> {
        unimplemented!("issue 3")
    }

    /// Encode the VRRP message for one destination (each unicast peer gets its own pseudo-header checksum).
    pub fn encode(&self, _src: IpAddr, _dst: IpAddr, _mode: ChecksumMode) -> Vec<u8> {
        unimplemented!("issue 3")
    }
}
