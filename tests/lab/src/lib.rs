//! The lab shared by vipd tests: network namespaces, bridges, veth pairs and fake apiservers.

pub mod apiserver;
pub mod netns;
pub mod vipd;
