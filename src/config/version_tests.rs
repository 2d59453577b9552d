//! `vrrp.version`, `vrrp.authPass` and `vrrp.authType`: the VRRPv2 / mixed rules, each with its message.

use super::*;

const BASE: &str = "interface: eth0\ncontrolPlaneVIP: 192.0.2.100\nbackends: [192.0.2.20:6443]\n";
const BASE6: &str =
    "interface: eth0\ncontrolPlaneVIP: 2001:db8::100\nbackends: [192.0.2.20:6443]\n";

fn parse(base: &str, vrrp: &str) -> Result<Config, Vec<String>> {
    let vrrp: String = vrrp.lines().map(|l| format!("  {l}\n")).collect();
    match Config::from_yaml(&format!("{base}vrrp:\n  vrid: 51\n{vrrp}")) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid(errs)) => Err(errs.iter().map(|e| e.to_string()).collect()),
        Err(other) => Err(vec![other.to_string()]),
    }
}

fn ok(vrrp: &str) -> VrrpConfig {
    parse(BASE, vrrp)
        .unwrap_or_else(|e| panic!("should be valid: {e:?}\n{vrrp}"))
        .vrrp
}

#[track_caller]
fn error(base: &str, vrrp: &str, expected: &str) {
    assert_eq!(
        parse(base, vrrp).expect_err("should be invalid"),
        [expected.to_string()],
        "input:\n{vrrp}"
    );
}

#[test]
fn version_defaults_to_3_and_takes_2_or_mixed() {
    assert_eq!(ok("").version, Version::V3);
    assert_eq!(ok("version: 3").version, Version::V3);
    assert_eq!(ok("version: 2").version, Version::V2);
    assert_eq!(ok("version: \"2\"").version, Version::V2);
    assert_eq!(ok("version: mixed").version, Version::Mixed);
    error(
        BASE,
        "version: 4",
        "vrrp.version: 4 is not one of 3 | 2 | mixed",
    );
    error(
        BASE,
        "version: both",
        "vrrp.version: \"both\" is not one of 3 | 2 | mixed",
    );
}

#[test]
fn version_2_and_mixed_take_whole_seconds() {
    assert_eq!(ok("version: 2").advert_interval.get(), 100);
    assert_eq!(
        ok("version: 2\nadvertInterval: 3s").advert_interval.get(),
        300
    );
    // Beyond VRRPv3's 40.95 s: only version 2 may.
    let c = ok("version: 2\nadvertInterval: 255s");
    assert_eq!(c.advert_interval.whole_secs(), Some(255));
    assert_eq!(
        ok("version: mixed\nadvertInterval: 40s")
            .advert_interval
            .get(),
        4000
    );
    error(
        BASE,
        "version: 2\nadvertInterval: 1500ms",
        "vrrp.advertInterval: \"1500ms\" is not a whole number of seconds (version 2 carries the interval in seconds)",
    );
    error(
        BASE,
        "version: mixed\nadvertInterval: 100ms",
        "vrrp.advertInterval: \"100ms\" is out of range 1s..=40s",
    );
    error(
        BASE,
        "version: 2\nadvertInterval: 256s",
        "vrrp.advertInterval: \"256s\" is out of range 1s..=4m15s",
    );
    error(
        BASE,
        "advertInterval: 41s",
        "vrrp.advertInterval: \"41s\" is out of range 10ms..=40.95s",
    );
}

#[test]
fn vrrpv2_is_ipv4_only() {
    for v in ["2", "mixed"] {
        error(
            BASE6,
            &format!("version: {v}"),
            &format!(
                "vrrp.version: {v} speaks VRRPv2, which is IPv4 only, but controlPlaneVIP 2001:db8::100 is IPv6 (use 3)"
            ),
        );
    }
    assert!(parse(BASE6, "version: 3").is_ok());
}

#[test]
fn auth_pass_needs_vrrpv2() {
    let c = ok("version: mixed\nauthPass: s3cret");
    assert_eq!(c.auth_pass.as_deref(), Some("s3cret"));
    assert_eq!(
        ok("version: 2\nauthType: PASS\nauthPass: \"42\"")
            .auth_pass
            .as_deref(),
        Some("42")
    );
    // Longer than Keepalived's 8 bytes: kept; the wire takes the first 8 (vrrp::proto::Auth::pass).
    assert_eq!(
        ok("version: 2\nauthPass: \"0123456789\"")
            .auth_pass
            .as_deref(),
        Some("0123456789")
    );
    error(
        BASE,
        "authPass: s3cret",
        "vrrp.authPass: VRRPv3 has no authentication: authPass needs vrrp.version 2 or mixed",
    );
    error(
        BASE,
        "version: 2\nauthPass: \"\"",
        "vrrp.authPass: must not be empty (leave authPass out for no authentication)",
    );
    error(
        BASE,
        "version: 2\nauthPass: 1234",
        "vrrp.authPass: 1234 is a number: quote the password (\"1234\")",
    );
    error(
        BASE,
        "version: 2\nauthType: pass",
        "vrrp.authPass: is required with authType: pass",
    );
}

#[test]
fn auth_type_ah_is_refused_with_the_reason() {
    error(
        BASE,
        "version: 2\nauthType: AH\nauthPass: x",
        "vrrp.authType: AH (IPsec Authentication Header, Keepalived's auth_type AH) is not supported: RFC 3768 \
         dropped it and VRRPv3 has no authentication; use authPass (auth_type PASS) or nothing",
    );
    error(
        BASE,
        "version: 2\nauthType: md5\nauthPass: x",
        "vrrp.authType: \"md5\" is not pass (AH is not supported)",
    );
}

#[test]
fn validate_names_a_version_other_than_3() {
    let line = |vrrp: &str| parse(BASE, vrrp).unwrap().summary("f.yaml");
    assert!(line("").ends_with("every 1s, multicast"), "{}", line(""));
    assert!(line("version: 2").ends_with("multicast, VRRPv2"));
    assert!(line("version: mixed").ends_with("multicast, VRRPv3 + VRRPv2 (mixed)"));
}
