//! vipd's failover harness: the real `vipd` binary run on several "nodes" inside one machine.
//!
//! Each node is a network namespace on one bridge (itself in a namespace this crate made), so nothing changes
//! in the root namespace. The harness is one of vipd's three uses: the engine of `vipd demo`, the ground of the
//! network-namespace tests, the benchmarks (`examples/bench_failover.rs`) and the chaos run.
//!
//! - [`netns`]: namespace guards (removed on drop and on panic), bridges, veth pairs, child processes reaped by
//!   PID, `ip -j` readers, packet capture.
//! - [`apiserver`]: a fake kube-apiserver (HTTPS `/readyz`, `/version`, watch streams, stall and not-ready
//!   switches) and the throwaway PKI it serves with.
//! - [`client`]: the client of the VIP (HTTPS `GET /version`, a fresh connection each time) that records a
//!   sample per request, and the outage computed from them.
//! - [`vipd`]: a vipd node: its config from a typed spec, the process in its namespace, its admin endpoint.
//! - [`pair`]: a Keepalived + HAProxy node doing the same job, for the comparisons (benchmark, chaos run).
//! - [`tools`]: the programs the lab runs, checked before they run (a missing one names its package).

pub mod apiserver;
pub mod chaos;
pub mod client;
pub mod netns;
pub mod pair;
pub mod tools;
pub mod vipd;
