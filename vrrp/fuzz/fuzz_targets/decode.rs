//! Fuzz the VRRP receive path: no input may panic the IPv4 header parser or the VRRPv3 / VRRPv2 advertisement
//! decoders, and whatever decodes must survive a re-encode round trip.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use vrrp::proto::packet::Ipv4Header;
use vrrp::proto::v2::AdvertisementV2;
use vrrp::proto::{Advertisement, Auth, ChecksumMode};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the addresses and the checksum form; the rest is the VRRP message, or with bit 3 set
    // a whole IPv4 packet as a raw socket delivers it.
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let (mut src, mut dst): (IpAddr, IpAddr) = match sel & 3 {
        0 => ([192, 0, 2, 10].into(), [224, 0, 0, 18].into()),
        1 => ([192, 0, 2, 10].into(), [192, 0, 2, 11].into()),
        2 => ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap()),
        _ => ([192, 0, 2, 10].into(), "ff02::12".parse().unwrap()),
    };
    let mut msg = msg;
    if sel & 8 != 0 {
        let Ok((hdr, payload)) = Ipv4Header::parse(msg) else {
            return;
        };
        assert!(hdr.header_len >= 20 && hdr.total_len <= msg.len());
        (src, dst, msg) = (hdr.src.into(), hdr.dst.into(), payload);
    }
    if let Ok((adv, mode)) = Advertisement::decode_with_mode(msg, src, dst) {
        let mode = if sel & 4 != 0 { ChecksumMode::MessageOnly } else { mode };
        let again = adv.encode(src, dst, mode);
        assert_eq!(Advertisement::decode(&again, src, dst).as_ref(), Ok(&adv));
    }
    if let Ok(adv) = AdvertisementV2::decode(msg) {
        assert_eq!(AdvertisementV2::decode(&adv.encode()).as_ref(), Ok(&adv));
        let _ = adv.check_auth(&Auth::None);
        let _ = adv.to_advert();
    }
});
