//! Byte/struct pairs for VRRPv2 against the frames Keepalived 2.2.7 sent in its default protocol (no
//! `vrrp_version` line): `tests/data/keepalived-2.2.7-v2.json`, captured by `capture-keepalived-v2.sh` and
//! decoded field by field by tshark. Every frame decodes to exactly those fields, passes (or fails) the
//! authentication check as Keepalived's configuration says, and re-encodes to the same VRRP bytes.
mod vectors_common;

use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;
use vectors_common::{common_fields, frames, num};
use vrrp::proto::packet::Ipv4Header;
use vrrp::proto::v2::{self, AdvertisementV2};
use vrrp::proto::{Advertisement, Auth, DecodeError};

/// (IP header, VRRP message) of an Ethernet frame carrying IPv4.
fn split(f: &Value) -> (Ipv4Header, Vec<u8>) {
    let bytes = hex::decode(f["frame_hex"].as_str().unwrap()).unwrap();
    assert_eq!(&bytes[12..14], &[0x08, 0x00], "IPv4 ethertype");
    let (h, payload) = Ipv4Header::parse(&bytes[14..]).unwrap();
    (h, payload.to_vec())
}

fn expected(v: &Value) -> AdvertisementV2 {
    let n = |k: &str| num(v, k);
    let auth = v["auth_string"].as_str().unwrap().as_bytes();
    let mut auth_data = [0u8; 8];
    auth_data[..auth.len()].copy_from_slice(auth);
    let (vrid, priority, addresses) = common_fields(v);
    AdvertisementV2 {
        vrid,
        priority,
        adver_int: n("advert_int_seconds") as u8,
        addresses,
        auth_type: n("auth_type") as u8,
        auth_data,
    }
}

/// What each captured instance was configured with (see the capture script).
fn configured_auth(vrid: u8) -> Auth {
    match vrid {
        81 => Auth::None,
        82 => Auth::pass("42").unwrap(),
        // auth_pass longpassword: Keepalived logs "Truncating auth_pass to 8 characters".
        83 => Auth::pass("longpassword").unwrap(),
        other => panic!("unexpected VRID {other}"),
    }
}

#[test]
fn keepalived_v2_frames_decode_field_by_field_and_reencode_byte_for_byte() {
    let all = frames("keepalived-2.2.7-v2.json");
    assert!(all.len() >= 6, "capture has {} frames", all.len());
    for f in &all {
        let name = f["name"].as_str().unwrap();
        let (h, msg) = split(f);
        assert_eq!(
            h.src.to_string(),
            f["ip"]["src"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            h.dst.to_string(),
            f["ip"]["dst"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(h.ttl, 255, "{name}");
        let want = expected(&f["vrrp"]);
        assert_eq!(f["vrrp"]["version"], 2, "{name}");
        assert_eq!(f["vrrp"]["type"], 1, "{name}");
        assert_eq!(
            f["vrrp"]["count_addrs"].as_u64(),
            Some(want.addresses.len() as u64)
        );
        let got = AdvertisementV2::decode(&msg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
        assert_eq!(
            u64::from(u16::from_be_bytes([msg[6], msg[7]])),
            f["vrrp"]["checksum"].as_u64().unwrap(),
            "{name}"
        );
        // Byte for byte: the whole VRRP message, authentication data included.
        assert_eq!(want.encode(), msg, "{name}");
        // And from the router's side: the advertisement plus the configured password give the same bytes.
        let auth = configured_auth(want.vrid.get());
        let common = got.to_advert();
        assert_eq!(common.max_advert_int.get(), 100);
        assert_eq!(
            AdvertisementV2::from_advert(&common, &auth).encode(),
            msg,
            "{name}"
        );
        assert_eq!(got.check_auth(&auth), Ok(()), "{name}");
        // A VRRPv3 decoder must refuse it as a version mismatch, whatever the destination.
        assert_eq!(
            Advertisement::decode(&msg, IpAddr::V4(h.src), IpAddr::V4(h.dst)),
            Err(DecodeError::Version(2)),
            "{name}"
        );
    }
}

#[test]
fn the_capture_covers_no_auth_pass_unicast_and_priority_zero() {
    let all = frames("keepalived-2.2.7-v2.json");
    let has = |pred: &dyn Fn(&Value) -> bool| all.iter().any(pred);
    assert!(has(&|f| f["vrrp"]["auth_type"] == 0));
    assert!(has(
        &|f| f["vrrp"]["auth_type"] == 1 && f["vrrp"]["auth_string"] == "42"
    ));
    assert!(has(&|f| f["ip"]["dst"] == "192.0.2.11"), "a unicast frame");
    assert!(has(&|f| f["vrrp"]["priority"] == 0));
    // Keepalived truncated the 12-byte auth_pass to its first 8 bytes on the wire.
    assert!(has(&|f| f["vrrp"]["auth_string"] == "longpass"));
}

#[test]
fn wrong_or_missing_passwords_are_refused() {
    for f in frames("keepalived-2.2.7-v2.json") {
        let (_, msg) = split(&f);
        let got = AdvertisementV2::decode(&msg).unwrap();
        let right = configured_auth(got.vrid.get());
        for wrong in [
            Auth::None,
            Auth::pass("43").unwrap(),
            Auth::pass("longpasX").unwrap(),
        ] {
            if wrong != right {
                assert_eq!(
                    got.check_auth(&wrong),
                    Err(DecodeError::Auth),
                    "{}",
                    f["name"]
                );
            }
        }
    }
}

#[test]
fn the_shared_v2_vector_decodes_too() {
    let f = frames("keepalived-2.2.7.json")
        .into_iter()
        .find(|f| f["name"] == "v2-ipv4-advert")
        .unwrap();
    let (_, msg) = split(&f);
    let got = AdvertisementV2::decode(&msg).unwrap();
    assert_eq!(v2::version_of(&msg), Some(2));
    assert_eq!(
        (
            got.vrid.get(),
            got.priority.get(),
            got.adver_int,
            got.auth_type
        ),
        (62, 110, 1, 0)
    );
    assert_eq!(got.addresses, [Ipv4Addr::new(192, 0, 2, 120)]);
    assert_eq!(got.encode(), msg);
}
