//! Network fault injectors that work inside one node's namespace with nftables (this kernel has no netem):
//! VRRP dropped in either direction (both at once isolate the node's VRRP: a VRRP-only partition, the
//! client still reaches it), random packet loss with `numgen random`. Each injector owns one nftables table in the node's namespace and removes it on `clear` and
//! on drop, so a panicking run leaves nothing behind (the namespace itself is removed by its guard anyway).
use anyhow::Result;

use crate::netns::Netns;

/// The table every injector of this module uses, one per namespace.
const TABLE: &str = "vipdchaos";

/// What to drop in a node's namespace. Several may be active at once (one rule each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Inbound VRRP (IP protocol 112 / next header 112): the node hears no advertisement.
    VrrpIn,
    /// Outbound VRRP: nobody hears the node's advertisements; its gratuitous ARPs still go out (ARP is not IP,
    /// and packet sockets bypass these hooks).
    VrrpOut,
    /// Every IP packet in or out, with this probability in percent (`numgen random mod 100 < p`).
    Loss(u8),
}

/// The nftables rules that implement `drops`, as one `nft -f` script that (re)creates the table.
pub fn script(drops: &[Drop]) -> String {
    let mut input = Vec::new();
    let mut output = Vec::new();
    for d in drops {
        match d {
            Drop::VrrpIn => input.push("meta l4proto 112 drop".to_string()),
            Drop::VrrpOut => output.push("meta l4proto 112 drop".to_string()),
            Drop::Loss(p) => {
                let rule = format!("numgen random mod 100 < {p} drop");
                input.push(rule.clone());
                output.push(rule);
            }
        }
    }
    let chain = |name: &str, hook: &str, rules: &[String]| {
        let mut s = format!("  chain {name} {{\n    type filter hook {hook} priority -300;\n");
        for r in rules {
            s.push_str("    ");
            s.push_str(r);
            s.push('\n');
        }
        s.push_str("  }\n");
        s
    };
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n{}{}}}\n",
        chain("in", "input", &input),
        chain("out", "output", &output)
    )
}

/// Apply `drops` in `ns`, replacing whatever this module set there before (atomically: one nft transaction).
pub fn set(ns: &Netns, drops: &[Drop]) -> Result<()> {
    let path = std::env::temp_dir().join(format!("{}.nft", ns.name()));
    // Removed whatever happens: a failed write (a full disk) may still have created it.
    let r = std::fs::write(&path, script(drops))
        .map_err(anyhow::Error::from)
        .and_then(|()| ns.run(["nft", "-f", path.to_str().unwrap_or_default()]));
    let _ = std::fs::remove_file(&path);
    r.map(drop)
}

/// Remove every rule this module set in `ns`.
pub fn clear(ns: &Netns) -> Result<()> {
    set(ns, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_recreates_the_table_with_one_rule_per_drop() {
        let s = script(&[Drop::VrrpIn, Drop::Loss(30)]);
        assert!(s.starts_with("table inet vipdchaos\ndelete table inet vipdchaos\n"));
        let input = s
            .split("chain in")
            .nth(1)
            .unwrap()
            .split("chain out")
            .next()
            .unwrap();
        assert!(input.contains("meta l4proto 112 drop"));
        assert!(input.contains("numgen random mod 100 < 30 drop"));
        let output = s.split("chain out").nth(1).unwrap();
        assert!(!output.contains("l4proto 112"));
        assert!(output.contains("numgen random mod 100 < 30 drop"));
    }
}
