//! The recorded history of a chaos run: one JSON object per line, written as the run goes (so a crashed run
//! still leaves what happened) and read back by the checker and the timeline. Times are seconds since the
//! run started.
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// First line: what ran, so the checker can derive its bounds.
    Meta {
        t: f64,
        implementation: String,
        seed: u64,
        nodes: Vec<String>,
        priorities: Vec<u8>,
        advert_ms: u64,
        /// The load balancers' health checks (absent in older histories: their bounds are not checked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        health: Option<HealthTimers>,
        /// Apiserver name -> its address as the load balancers' logs name it (`192.0.2.5:6443`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        backends: BTreeMap<String, String>,
    },
    /// A fault begins (`phase: "start"`) or is healed (`"heal"`).
    Fault {
        t: f64,
        kind: String,
        node: String,
        phase: String,
    },
    /// Who holds the VIP (addresses on the interfaces) and which node's MAC the client's neighbour entry
    /// names (`None`: no entry or an unknown MAC). `down`: nodes whose daemon the run has killed or stopped
    /// and not yet restarted; a VIP left on such a node's interface is a stale address nobody serves, not a
    /// second VRRP master.
    Sample {
        t: f64,
        holders: Vec<String>,
        arp: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        down: Vec<String>,
    },
    /// One client request through the VIP: when it started and ended, and how it went.
    Request {
        t: f64,
        end: f64,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        err: Option<String>,
    },
    /// A node's daemon process: open file descriptors and resident memory.
    Resources {
        t: f64,
        node: String,
        pid: i32,
        fds: u64,
        rss_kb: u64,
    },
    /// A daemon process ended; `expected` when the run killed or stopped it.
    Exit {
        t: f64,
        node: String,
        expected: bool,
        status: String,
    },
    /// Evidence of a fault in the node's logs or metrics (e.g. a state change counted), for the checker's
    /// "every fault visible" rule.
    Observed { t: f64, node: String, what: String },
    /// A line a node's daemon logged (vipd's, or Keepalived's and HAProxy's), stamped when the run read it
    /// (at most one sample interval late).
    Log { t: f64, node: String, line: String },
}

/// The health-check timers every load balancer runs with, for the checker's backend bounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthTimers {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl Event {
    pub fn t(&self) -> f64 {
        match self {
            Event::Meta { t, .. }
            | Event::Fault { t, .. }
            | Event::Sample { t, .. }
            | Event::Request { t, .. }
            | Event::Resources { t, .. }
            | Event::Exit { t, .. }
            | Event::Observed { t, .. }
            | Event::Log { t, .. } => *t,
        }
    }
}

/// Appends events to a JSON-lines file, flushing each line.
#[derive(Debug)]
pub struct Recorder {
    out: std::io::BufWriter<std::fs::File>,
    pub events: Vec<Event>,
}

impl Recorder {
    pub fn create(path: &std::path::Path) -> std::io::Result<Recorder> {
        Ok(Recorder {
            out: std::io::BufWriter::new(std::fs::File::create(path)?),
            events: Vec::new(),
        })
    }

    pub fn record(&mut self, ev: Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &ev)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        self.events.push(ev);
        Ok(())
    }
}

/// Read a history; a line that does not parse is an error naming its number.
pub fn read(r: impl BufRead) -> anyhow::Result<Vec<Event>> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let ev = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("history line {}: {e}", i + 1))?;
        out.push(ev);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json_lines() {
        let text = r#"{"type":"meta","t":0.0,"implementation":"vipd","seed":7,"nodes":["lb0"],"priorities":[150],"advert_ms":100}
{"type":"fault","t":1.0,"kind":"kill9","node":"lb0","phase":"start"}
{"type":"sample","t":1.05,"holders":["lb0","lb1"],"arp":null}
{"type":"request","t":1.1,"end":1.2,"ok":false,"err":"connect: refused"}
"#;
        let evs = read(text.as_bytes()).unwrap();
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[2].t(), 1.05);
        let back = serde_json::to_string(&evs[3]).unwrap();
        assert_eq!(
            back,
            r#"{"type":"request","t":1.1,"end":1.2,"ok":false,"err":"connect: refused"}"#
        );
        assert!(read("{\"type\":\"nope\"}\n".as_bytes())
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }
}
