//! The vipd daemon as a library: configuration, the command line, and the pieces the supervisor wires together.
//! `main.rs` only calls `cli::main`; everything else lives here so that integration tests can reach it.

pub mod admin;
pub mod caps;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod import;
pub mod live;
pub mod localnet;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod supervisor;

#[cfg(test)]
mod golden;
