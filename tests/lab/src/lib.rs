//! The lab shared by vipd tests: network namespaces, bridges, veth pairs and fake apiservers.
pub mod netns;
