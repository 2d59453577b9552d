//! The chaos run (issue 17): faults drawn from a seeded schedule against three load-balancer nodes, a client
//! and three fake apiservers; a recorded history of events and samples (JSON lines); a checker that reads the
//! history afterwards, so the same invariants judge vipd and Keepalived + HAProxy and can be unit-tested on
//! small hand-written histories; and a timeline of the history drawn as SVG.
pub mod check;
pub mod history;
pub mod inject;
pub mod schedule;
