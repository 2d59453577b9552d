//! VRRPv3 (RFC 5798 / RFC 9568): a pure protocol core in `proto` and its Linux I/O in `sys`.
pub mod proto;
pub mod sys;
