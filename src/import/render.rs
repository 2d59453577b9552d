//! The imported config as a document of fields, each with a note saying where it came from, rendered as
//! YAML in vipd's key order (the order of examples/vipd.yaml) whatever order the mapping found them in.

/// Every key the importer can write, in the order it is printed. A path not listed here is a bug in the
/// importer (caught by the golden tests: `set` panics).
const ORDER: &[&str] = &[
    "interface",
    "controlPlaneVIP",
    "controlPlaneLBPort",
    "backends",
    "vrrp.vrid",
    "vrrp.version",
    "vrrp.authPass",
    "vrrp.priority",
    "vrrp.advertInterval",
    "vrrp.preempt",
    "vrrp.preemptDelay",
    "vrrp.unicastPeers",
    "vrrp.unicastSource",
    "vrrp.garp.repeat",
    "vrrp.garp.delay",
    "vrrp.garp.refresh",
    "vrrp.trackWeight",
    "health.type",
    "health.path",
    "health.expectStatus",
    "health.interval",
    "health.timeout",
    "health.rise",
    "health.fall",
    "health.caFile",
    "health.serverName",
    "proxy.bind",
    "proxy.balance",
    "proxy.connectTimeout",
    "proxy.retries",
    "proxy.maxConnections",
    "proxy.idleTimeout",
];

/// Where comments start, unless the value is longer.
const NOTE_COLUMN: usize = 34;

/// A YAML value, already in its written form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Scalar(String),
    /// Items with a note each.
    List(Vec<(String, String)>),
}

impl Value {
    /// A string, quoted when YAML would read it as something else (or as a comment, a list, ...).
    pub fn str(s: &str) -> Value {
        Value::Scalar(quote(s))
    }

    /// A number, boolean or duration, written as is.
    pub fn raw(s: impl ToString) -> Value {
        Value::Scalar(s.to_string())
    }
}

/// Quotes a string unless it is plainly a string to YAML (letters, digits, `.`, `/`, `_`, `-`, and `:` only
/// between digits, as in `192.0.2.20:6443`).
pub fn quote(s: &str) -> String {
    let b = s.as_bytes();
    let plain = !s.is_empty()
        && (b[0].is_ascii_alphanumeric() || b[0] == b'/')
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && b.iter().enumerate().all(|(i, c)| match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'/' | b'_' | b'-' => true,
            b':' => {
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit()
            }
            _ => false,
        });
    if plain {
        s.to_string()
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        serde_json::Value::String(s.to_string()).to_string()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    path: &'static str,
    value: Value,
    note: String,
    /// Comment lines printed above the key.
    above: Vec<String>,
}

/// The config being built.
#[derive(Debug, Default, Clone)]
pub struct Doc {
    sources: Vec<String>,
    carried: Vec<String>,
    entries: Vec<Entry>,
}

impl Doc {
    /// Names an input file in the header.
    pub fn source(&mut self, s: String) {
        self.sources.push(s);
    }

    /// Records a setting whose meaning vipd has without a key (`mode tcp`, `option redispatch`), for the
    /// header.
    pub fn carried(&mut self, s: String) {
        self.carried.push(s);
    }

    /// Sets `path` (replacing an earlier value).
    pub fn set(&mut self, path: &str, value: Value, note: impl Into<String>) {
        let path = *ORDER
            .iter()
            .find(|p| **p == path)
            .unwrap_or_else(|| panic!("import: {path} is not a key the importer writes"));
        let note = note.into();
        match self.entries.iter_mut().find(|e| e.path == path) {
            Some(e) => {
                e.value = value;
                e.note = note;
            }
            None => self.entries.push(Entry {
                path,
                value,
                note,
                above: Vec::new(),
            }),
        }
    }

    /// Adds comment lines above an already set key.
    pub fn comment_above(&mut self, path: &str, lines: &[&str]) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.path == path) {
            e.above.extend(lines.iter().map(|l| l.to_string()));
        }
    }

    pub fn get(&self, path: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|e| e.path == path)
            .map(|e| &e.value)
    }

    pub fn remove(&mut self, path: &str) {
        self.entries.retain(|e| e.path != path);
    }

    /// The YAML text: a header, then the keys in vipd's order, nested sections opened as needed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_header(&mut out);
        let mut open: Vec<&str> = Vec::new();
        for path in ORDER {
            let Some(e) = self.entries.iter().find(|e| e.path == *path) else {
                continue;
            };
            let parts: Vec<&str> = path.split('.').collect();
            let (sections, key) = parts.split_at(parts.len() - 1);
            let common = open
                .iter()
                .zip(sections)
                .take_while(|(a, b)| a == b)
                .count();
            open.truncate(common);
            for s in &sections[common..] {
                out.push_str(&format!("{}{s}:\n", "  ".repeat(open.len())));
                open.push(s);
            }
            let indent = "  ".repeat(open.len());
            for line in &e.above {
                out.push_str(&format!("{indent}# {line}\n"));
            }
            match &e.value {
                Value::Scalar(v) => line(&mut out, format!("{indent}{}: {v}", key[0]), &e.note),
                Value::List(items) => {
                    line(&mut out, format!("{indent}{}:", key[0]), &e.note);
                    for (item, note) in items {
                        line(&mut out, format!("{indent}  - {item}"), note);
                    }
                }
            }
        }
        out
    }

    fn render_header(&self, out: &mut String) {
        out.push_str("# vipd config written by `vipd import` from:\n");
        for s in &self.sources {
            out.push_str(&format!("#   {s}\n"));
        }
        if !self.carried.is_empty() {
            out.push_str("# vipd does this without a setting:\n");
            for s in &self.carried {
                out.push_str(&format!("#   {s}\n"));
            }
        }
        out.push_str("# Keys left out take vipd's defaults (see examples/vipd.yaml). Check with `vipd validate --config`.\n");
    }
}

fn line(out: &mut String, code: String, note: &str) {
    out.push_str(&code);
    if !note.is_empty() {
        let pad = NOTE_COLUMN.saturating_sub(code.len()).max(2);
        out.push_str(&" ".repeat(pad));
        out.push_str("# ");
        out.push_str(note);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_addresses_plain_and_quotes_the_rest() {
        assert_eq!(quote("192.0.2.20:6443"), "192.0.2.20:6443");
        assert_eq!(quote("eth0"), "eth0");
        assert_eq!(quote("[2001:db8::20]:6443"), "\"[2001:db8::20]:6443\"");
        assert_eq!(quote("2001:db8::1"), "\"2001:db8::1\"");
        assert_eq!(quote("::"), "\"::\"");
        assert_eq!(quote("42"), "\"42\"");
        assert_eq!(quote("yes"), "\"yes\"");
        assert_eq!(quote("pa ss#\"x"), "\"pa ss#\\\"x\"");
    }

    #[test]
    fn keys_come_out_in_vipd_order_with_sections_opened_once() {
        let mut d = Doc::default();
        d.set("vrrp.trackWeight", Value::raw(-2), "from b");
        d.set("interface", Value::str("eth0"), "from a");
        d.set("vrrp.garp.delay", Value::raw("5s"), "");
        d.set("vrrp.vrid", Value::raw(51), "x");
        d.comment_above("vrrp.vrid", &["above"]);
        let text = d.render();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "interface: eth0                   # from a",
                "vrrp:",
                "  # above",
                "  vrid: 51                        # x",
                "  garp:",
                "    delay: 5s",
                "  trackWeight: -2                 # from b",
            ]
        );
    }
}
