//! The pure VRRP protocol (v3, and v2 for migrations): codecs, state machine and ARP / NA frames.
//!
//! Nothing here touches a socket, a runtime or the clock: time comes in as an argument and work goes out as
//! [`router::Action`]s, so every timer path can be driven on a virtual clock.
pub mod frames;
pub mod packet;
pub mod router;
pub mod types;
pub mod v2;

pub use packet::{Advertisement, ChecksumMode, DecodeError};
pub use router::{Action, Input, Mismatch, Router, RouterConfig, State, TransitionReason};
pub use types::{Centis, Priority, Version, Vrid};
pub use v2::{AdvertisementV2, Auth};
