//! Fuzz the VRRPv3 decoder: no input may panic, and whatever decodes must survive a re-encode round trip.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use vrrp::proto::{Advertisement, ChecksumMode};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the address family and the checksum form; the rest is the VRRP message.
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let (src, dst): (IpAddr, IpAddr) = match sel & 3 {
        0 => ([192, 0, 2, 10].into(), [224, 0, 0, 18].into()),
        1 => ([192, 0, 2, 10].into(), [192, 0, 2, 11].into()),
        2 => (
            "fe80::1".parse().unwrap(),
            "ff02::12".parse().unwrap(),
        ),
        _ => ([192, 0, 2, 10].into(), "ff02::12".parse().unwrap()),
    };
    if let Ok((adv, mode)) = Advertisement::decode_with_mode(msg, src, dst) {
        let mode = if sel & 4 != 0 { ChecksumMode::MessageOnly } else { mode };
        let again = adv.encode(src, dst, mode);
        assert_eq!(Advertisement::decode(&again, src, dst).as_ref(), Ok(&adv));
    }
});
