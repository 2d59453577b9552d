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
    /// A VRRPv2 interval of whole seconds (1..=255). Up to 25500 cs: beyond VRRPv3's 12-bit field, which is
    /// why configuration allows more than 40 s only with version 2, which never sends VRRPv3.
    pub fn from_secs(s: u8) -> Option<Self> {
        (s != 0).then(|| Centis(u16::from(s) * 100))
    }
    /// Whole seconds, when the interval is a whole number of them (VRRPv2's Adver Int).
    pub fn whole_secs(self) -> Option<u8> {
        self.0
            .is_multiple_of(100)
            .then(|| u8::try_from(self.0 / 100).ok())
            .flatten()
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

/// Which VRRP this router speaks on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Version {
    /// RFC 5798 / RFC 9568 only.
    #[default]
    V3,
    /// RFC 3768 only: IPv4, intervals in whole seconds, `Skew_Time = (256 - Priority) / 256` s.
    V2,
    /// RFC 5798 section 8.4: sends both a VRRPv3 and a VRRPv2 advertisement, accepts either.
    Mixed,
}

impl Version {
    pub fn sends_v3(self) -> bool {
        self != Version::V2
    }
    pub fn sends_v2(self) -> bool {
        self != Version::V3
    }
    /// A stable label (logs, status).
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V3 => "3",
            Version::V2 => "2",
            Version::Mixed => "mixed",
        }
    }
}
