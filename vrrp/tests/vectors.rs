//! Byte/struct pairs against the frames Keepalived 2.2.7 really sent (`tests/data/keepalived-2.2.7.json`,
//! a copy of the shared capture): every VRRPv3 frame decodes to exactly the listed fields and re-encodes to the
//! same VRRP bytes; the ARP / NA frames are rebuilt byte for byte.
mod vectors_common;

use std::net::IpAddr;

use serde_json::Value;
use vectors_common::{common_fields, num};
use vrrp::proto::packet::Ipv4Header;
use vrrp::proto::{frames, Advertisement, Centis, ChecksumMode, DecodeError};

fn frame(name: &str) -> (Value, Vec<u8>) {
    let f = vectors_common::frames("keepalived-2.2.7.json")
        .into_iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    let bytes = hex::decode(f["frame_hex"].as_str().unwrap()).unwrap();
    (f, bytes)
}

/// Split an Ethernet frame into (IP source, IP destination, IP payload), honouring the IPv4 header length and
/// the IP length field so Ethernet padding stays out.
fn ip_payload(frame: &[u8]) -> (IpAddr, IpAddr, &[u8]) {
    let ip = &frame[14..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            let (h, payload) = Ipv4Header::parse(ip).unwrap();
            assert_eq!((h.ttl, h.protocol), (255, 112));
            (h.src.into(), h.dst.into(), payload)
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let src = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
            let dst = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
            (src, dst, &ip[40..40 + plen])
        }
        t => panic!("ethertype {t:#x}"),
    }
}

fn expected(f: &Value) -> (Advertisement, u16) {
    let v = &f["vrrp"];
    let n = |k: &str| num(v, k);
    let (vrid, priority, addresses) = common_fields(v);
    let adv = Advertisement {
        vrid,
        priority,
        max_advert_int: Centis::new(n("max_advert_int_centiseconds") as u16).unwrap(),
        addresses,
    };
    assert_eq!(n("count_addrs") as usize, adv.addresses.len());
    assert_eq!(n("version"), 3);
    assert_eq!(n("type"), 1);
    (adv, n("checksum") as u16)
}

const V3: [&str; 6] = [
    "v3-ipv6-advert",
    "v3-ipv4-advert",
    "v3-ipv4-priority0",
    "v3-ipv6-priority0",
    "v3-ipv4-three-vips",
    "v3-ipv4-unicast",
];

#[test]
fn every_v3_vector_decodes_to_the_listed_fields() {
    for name in V3 {
        let (f, bytes) = frame(name);
        let (src, dst, payload) = ip_payload(&bytes);
        assert_eq!(src.to_string(), f["ip"]["src"].as_str().unwrap(), "{name}");
        assert_eq!(dst.to_string(), f["ip"]["dst"].as_str().unwrap(), "{name}");
        let (want, want_sum) = expected(&f);
        let (got, mode) = Advertisement::decode_with_mode(payload, src, dst)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
        assert_eq!(
            u16::from_be_bytes([payload[6], payload[7]]),
            want_sum,
            "{name}"
        );
        // Keepalived checksums IPv4 with the pseudo-header.
        assert_eq!(mode, ChecksumMode::PseudoHeader, "{name}");
    }
}

#[test]
fn every_v3_vector_reencodes_to_the_same_bytes() {
    for name in V3 {
        let (f, bytes) = frame(name);
        let (src, dst, payload) = ip_payload(&bytes);
        let (adv, want_sum) = expected(&f);
        let out = adv.encode(src, dst, ChecksumMode::PseudoHeader);
        assert_eq!(hex::encode(&out), hex::encode(payload), "{name}");
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), want_sum, "{name}");
    }
}

#[test]
fn unicast_vector_checksum_depends_on_the_peer_address() {
    let (f, bytes) = frame("v3-ipv4-unicast");
    let (src, dst, payload) = ip_payload(&bytes);
    assert_eq!(dst, "192.0.2.11".parse::<IpAddr>().unwrap());
    let (adv, want_sum) = expected(&f);
    let to_peer = adv.encode(src, dst, ChecksumMode::PseudoHeader);
    assert_eq!(u16::from_be_bytes([to_peer[6], to_peer[7]]), want_sum);
    let to_group = adv.encode(
        src,
        "224.0.0.18".parse().unwrap(),
        ChecksumMode::PseudoHeader,
    );
    assert_ne!(to_group[6..8], to_peer[6..8]);
    // Seen with the wrong destination, the pseudo-header form no longer verifies.
    assert_eq!(
        Advertisement::decode(payload, src, "192.0.2.12".parse().unwrap()),
        Err(DecodeError::Checksum)
    );
}

#[test]
fn vectors_decode_with_ethernet_padding() {
    for name in V3 {
        let (_, bytes) = frame(name);
        let (src, dst, payload) = ip_payload(&bytes);
        let mut padded = payload.to_vec();
        padded.extend_from_slice(&[0u8; 18]);
        assert!(Advertisement::decode(&padded, src, dst).is_ok(), "{name}");
    }
}

#[test]
fn vrrpv2_vector_is_a_version_mismatch() {
    let (_, bytes) = frame("v2-ipv4-advert");
    let (src, dst, payload) = ip_payload(&bytes);
    assert_eq!(
        Advertisement::decode(payload, src, dst),
        Err(DecodeError::Version(2))
    );
}

#[test]
fn gratuitous_arp_matches_keepalived() {
    let (f, bytes) = frame("gratuitous-arp");
    let arp = &f["arp"];
    assert_eq!(arp["op"], 1);
    assert_eq!(arp["psrc"], arp["pdst"]);
    let mac = parse_mac(arp["hwsrc"].as_str().unwrap());
    let vip = arp["psrc"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        hex::encode(frames::gratuitous_arp(mac, vip)),
        hex::encode(&bytes)
    );
}

#[test]
fn unsolicited_na_matches_keepalived() {
    let (f, bytes) = frame("unsolicited-na");
    let na = &f["na"];
    assert_eq!(na["override"], 1);
    assert_eq!(na["solicited"], 0);
    assert_eq!(na["router"], 0);
    let mac: [u8; 6] = bytes[6..12].try_into().unwrap();
    let vip = na["target"].as_str().unwrap().parse().unwrap();
    assert_eq!(f["ip"]["src"], na["target"]);
    let built = frames::unsolicited_na(mac, vip);
    assert_eq!(hex::encode(&built), hex::encode(&bytes));
    assert_eq!(&built[..6], &parse_mac(na["eth_dst"].as_str().unwrap()));
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}
