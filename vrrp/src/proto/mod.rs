//! The pure VRRPv3 protocol: codec, state machine and ARP / NA frames.
//!
//! Nothing here touches a socket, a runtime or the clock: time comes in as an argument and work goes out as
//! [`router::Action`]s, so every timer path can be driven on a virtual clock.
pub mod frames;
pub mod packet;
pub mod router;
pub mod types;

pub use packet::{Advertisement, ChecksumMode, DecodeError};
pub use router::{Action, Input, Mismatch, Router, RouterConfig, State, TransitionReason};
pub use types::{Centis, Priority, Vrid};
