//! Shared by the Keepalived vector tests (`vectors.rs`, `vectors_v2.rs`): reading a capture's JSON and the
//! fields both VRRP versions list the same way.
#![allow(dead_code)]

use std::fmt::Debug;
use std::str::FromStr;

use serde_json::Value;
use vrrp::proto::{Priority, Vrid};

/// The `frames` of `tests/data/<file>`.
pub fn frames(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["frames"].as_array().unwrap().clone()
}

/// The number `v[k]`.
pub fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not a number in {v}"))
}

/// VRID, priority and addresses (`IpAddr` for VRRPv3, `Ipv4Addr` for VRRPv2) of a decoded VRRP message (`frame["vrrp"]`), as tshark listed them.
pub fn common_fields<A: FromStr>(v: &Value) -> (Vrid, Priority, Vec<A>)
where
    A::Err: Debug,
{
    let addresses = v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect();
    (
        Vrid::new(num(v, "vrid") as u8).unwrap(),
        Priority(num(v, "priority") as u8),
        addresses,
    )
}
