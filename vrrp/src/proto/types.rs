//! Protocol quantities as newtypes, so a unit mistake does not compile.
use std::fmt;
use std::time::Duration;

/// Virtual router identifier, 1..=255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vrid(u8);

impl Vrid {
    pub fn new(v: u8) -> Option<Self> {
        (v != 0).then_some(Vrid(v))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Vrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// VRRP priority. 0 = the master is leaving, 255 = the address owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    pub const LEAVING: Priority = Priority(0);
    pub const OWNER: Priority = Priority(255);
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A duration in centiseconds, the unit of VRRPv3's 12-bit Max Adver Int field (1..=4095 on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Centis(u16);

impl Centis {
    pub const MAX: u16 = 4095;
    /// A valid advertisement interval (1..=4095).
    pub fn new(cs: u16) -> Option<Self> {
        (1..=Self::MAX).contains(&cs).then_some(Centis(cs))
    }
    pub fn get(self) -> u16 {
        self.0
    }
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
    /// The interval for a duration in whole centiseconds; `None` when not whole or out of range.
    pub fn from_duration(d: Duration) -> Option<Self> {
        let ns = d.as_nanos();
        if !ns.is_multiple_of(10_000_000) {
            return None;
        }
        u16::try_from(ns / 10_000_000).ok().and_then(Self::new)
    }
}

impl fmt::Display for Centis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}cs", self.0)
    }
}
