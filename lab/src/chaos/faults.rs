//! The fault lines of a history, as the checker and the timeline both walk them.
use super::history::Event;

/// One `Event::Fault`, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fault<'a> {
    pub t: f64,
    pub kind: &'a str,
    pub node: &'a str,
    /// `"start"` or `"heal"`.
    pub phase: &'a str,
}

/// The history's faults, in order, without its other events.
pub(crate) fn faults(h: &[Event]) -> impl Iterator<Item = Fault<'_>> {
    h.iter().filter_map(|e| match e {
        Event::Fault {
            t,
            kind,
            node,
            phase,
        } => Some(Fault {
            t: *t,
            kind,
            node,
            phase,
        }),
        _ => None,
    })
}
