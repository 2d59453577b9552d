//! Property tests for the codec: encode then decode is the identity, and no byte string makes decode panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vrrp::proto::{Advertisement, Centis, ChecksumMode, Priority, Vrid};

fn family_case() -> impl Strategy<Value = (IpAddr, IpAddr, Vec<IpAddr>)> {
    let v4 = (
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u32>(), 1..=255),
    )
        .prop_map(|(s, d, a)| {
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                a.into_iter()
                    .map(|x| IpAddr::V4(Ipv4Addr::from(x)))
                    .collect(),
            )
        });
    let v6 = (
        any::<u128>(),
        any::<u128>(),
        prop::collection::vec(any::<u128>(), 1..=40),
    )
        .prop_map(|(s, d, a)| {
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                a.into_iter()
                    .map(|x| IpAddr::V6(Ipv6Addr::from(x)))
                    .collect(),
            )
        });
    prop_oneof![v4, v6]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(
        (src, dst, addresses) in family_case(),
        vrid in 1u8..=255,
        prio in any::<u8>(),
        interval in 1u16..=4095,
        message_only in any::<bool>(),
        padding in 0usize..40,
    ) {
        let adv = Advertisement {
            vrid: Vrid::new(vrid).unwrap(),
            priority: Priority(prio),
            max_advert_int: Centis::new(interval).unwrap(),
            addresses,
        };
        let mode = if message_only { ChecksumMode::MessageOnly } else { ChecksumMode::PseudoHeader };
        let mut bytes = adv.encode(src, dst, mode);
        bytes.extend(std::iter::repeat_n(0u8, padding));
        let (back, got_mode) = Advertisement::decode_with_mode(&bytes, src, dst).unwrap();
        prop_assert_eq!(back, adv);
        if src.is_ipv4() {
            // A message-only sum can coincide with the pseudo-header one only when the pseudo-header sums to 0.
            if got_mode != mode {
                prop_assert_eq!(mode, ChecksumMode::MessageOnly);
            }
        } else {
            prop_assert_eq!(got_mode, ChecksumMode::PseudoHeader);
        }
    }

    #[test]
    fn decode_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        v6 in any::<bool>(),
        mixed in any::<bool>(),
    ) {
        let (a, b): (IpAddr, IpAddr) = if v6 {
            ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap())
        } else {
            ("192.0.2.1".parse().unwrap(), "224.0.0.18".parse().unwrap())
        };
        let dst = if mixed { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { b };
        let _ = Advertisement::decode(&bytes, a, dst);
    }

    #[test]
    fn ipv4_header_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        if let Ok((h, payload)) = vrrp::proto::packet::Ipv4Header::parse(&bytes) {
            prop_assert_eq!(payload.len(), h.total_len - h.header_len);
        }
    }

    #[test]
    fn decode_of_plausible_headers_never_panics(
        count in any::<u8>(),
        tail in prop::collection::vec(any::<u8>(), 0..300),
        v6 in any::<bool>(),
    ) {
        // Bias towards valid version/type so the fuzz reaches the count and checksum paths.
        let mut bytes = vec![0x31, 1, 100, count, 0, 100, 0, 0];
        bytes.extend(tail);
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap())
        } else {
            ("192.0.2.1".parse().unwrap(), "224.0.0.18".parse().unwrap())
        };
        let _ = Advertisement::decode(&bytes, src, dst);
    }
}

mod v2 {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;
    use vrrp::proto::v2::AdvertisementV2;
    use vrrp::proto::{Priority, Vrid};

    proptest! {
        #[test]
        fn v2_encode_then_decode_is_identity(
            addrs in prop::collection::vec(any::<u32>(), 1..=255),
            vrid in 1u8..=255,
            prio in any::<u8>(),
            interval in 1u8..=255,
            auth_type in 0u8..=1,
            auth_data in any::<[u8; 8]>(),
            padding in 0usize..40,
        ) {
            let adv = AdvertisementV2 {
                vrid: Vrid::new(vrid).unwrap(),
                priority: Priority(prio),
                adver_int: interval,
                addresses: addrs.into_iter().map(Ipv4Addr::from).collect(),
                auth_type,
                auth_data,
            };
            let mut bytes = adv.encode();
            bytes.extend(std::iter::repeat_n(0u8, padding));
            prop_assert_eq!(AdvertisementV2::decode(&bytes), Ok(adv));
        }

        #[test]
        fn v2_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
            let _ = AdvertisementV2::decode(&bytes);
        }
    }
}
