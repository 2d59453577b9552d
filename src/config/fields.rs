//! The field walker behind config and cluster-config validation: it takes a parsed YAML document apart key by
//! key, records every problem under its field path, and keeps going.
//!
//! serde's derived `Deserialize` stops at the first wrong key or type; an operator fixing a config wants all of
//! them at once, each with its path, value and rule (`vrrp.priority: 300 is out of range 1..=255`). So the YAML
//! is first read into a `serde_json::Value` tree (syntax errors stop there, with line and column), and the
//! schema is then applied here, one typed leaf parser per kind of value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::{Map, Value};

use super::duration::{fmt_duration, parse_duration};

/// One problem in a configuration file, located by its field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with list indices, e.g. `vrrp.unicastPeers[1]`; empty for the document itself.
    pub path: String,
    /// What is wrong, including the offending value and the rule it breaks.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one file, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

/// Joins a parent path and a key.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Renders a value the way the operator wrote it: strings quoted, numbers and booleans bare, JSON-style.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::Object(_) => "a mapping".to_string(),
        Value::Array(_) => "a list".to_string(),
        other => other.to_string(),
    }
}

/// A YAML mapping being taken apart. Keys the schema asks for are removed; whatever is left at `finish` is an
/// unknown key. An explicit `null` counts as absent, so `unicastSource: null` means "use the default".
#[derive(Debug)]
pub(crate) struct Section {
    path: String,
    map: Map<String, Value>,
    known: Vec<&'static str>,
}

impl Section {
    /// Wraps `value`, which must be a mapping; otherwise records an error and returns `None`.
    pub(crate) fn new(path: &str, value: Value, errs: &mut FieldErrors) -> Option<Section> {
        match value {
            Value::Object(map) => Some(Section {
                path: path.to_string(),
                map,
                known: Vec::new(),
            }),
            other => {
                errs.push(path, format!("{} is not a mapping", show(&other)));
                None
            }
        }
    }

    /// An empty section, for a whole block left out (every key takes its default).
    pub(crate) fn empty(path: &str) -> Section {
        Section {
            path: path.to_string(),
            map: Map::new(),
            known: Vec::new(),
        }
    }

    /// Opens a nested section; absent or null means all defaults, a non-mapping is an error (and defaults are
    /// used so the checks below it still run).
    pub(crate) fn section(&mut self, key: &'static str, errs: &mut FieldErrors) -> Section {
        let path = self.path(key);
        match self.take(key) {
            None => Section::empty(&path),
            Some(v) => Section::new(&path, v, errs).unwrap_or_else(|| Section::empty(&path)),
        }
    }

    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Removes `key`, returning its value unless absent or null.
    pub(crate) fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Like `take`, but records "is required" when absent.
    pub(crate) fn require(&mut self, key: &'static str, errs: &mut FieldErrors) -> Option<Value> {
        let v = self.take(key);
        if v.is_none() {
            errs.push(self.path(key), "is required");
        }
        v
    }

    /// Takes `key` and parses it with `parse`, or yields `default` when absent. A value that fails to parse
    /// also yields `None` (the error is recorded).
    pub(crate) fn field<T>(
        &mut self,
        key: &'static str,
        errs: &mut FieldErrors,
        parse: impl FnOnce(&str, &Value, &mut FieldErrors) -> Option<T>,
    ) -> Option<T> {
        let path = self.path(key);
        let v = self.take(key)?;
        parse(&path, &v, errs)
    }

    /// Every key still present is unknown to the schema: one error each, with a hint when it looks like a
    /// misspelt known key.
    pub(crate) fn finish(self, errs: &mut FieldErrors) {
        for key in self.map.keys() {
            let path = join(&self.path, key);
            match closest(key, &self.known) {
                Some(k) => errs.push(path, format!("unknown key (did you mean {k}?)")),
                None => errs.push(path, "unknown key"),
            }
        }
    }

    /// Drops the keys that are not ours to check (cluster configs carry many other fields).
    pub(crate) fn ignore_rest(self) {}
}

/// The known key closest to a misspelt one, if close enough to be a plausible typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (levenshtein(&lower, &k.to_ascii_lowercase()), *k))
        .map(|(d, k)| {
            // A shortened key (`advertInt`) is as plausible a typo as a misspelt one.
            let kl = k.to_ascii_lowercase();
            let prefix = lower.len() >= 4 && (kl.starts_with(&lower) || lower.starts_with(&kl));
            (if prefix { 0 } else { d }, k)
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---- leaf parsers: each records its own error and returns None on failure ----

pub(crate) fn int(
    range: RangeInclusive<i64>,
) -> impl FnOnce(&str, &Value, &mut FieldErrors) -> Option<i64> {
    move |path, v, errs| {
        let Some(n) = v.as_i64() else {
            errs.push(path, format!("{} is not an integer", show(v)));
            return None;
        };
        if !range.contains(&n) {
            errs.push(
                path,
                format!("{n} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        Some(n)
    }
}

pub(crate) fn boolean(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => {
            errs.push(path, format!("{} is not true or false", show(other)));
            None
        }
    }
}

pub(crate) fn string(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => {
            errs.push(path, format!("{} is not a string", show(other)));
            None
        }
    }
}

/// A non-empty string.
pub(crate) fn text(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<String> {
    let s = string(path, v, errs)?;
    if s.trim().is_empty() {
        errs.push(path, "must not be empty");
        return None;
    }
    Some(s)
}

/// One of a fixed set of words; the message lists them.
pub(crate) fn one_of(
    words: &'static [&'static str],
) -> impl FnOnce(&str, &Value, &mut FieldErrors) -> Option<&'static str> {
    move |path, v, errs| {
        if let Value::String(s) = v {
            if let Some(w) = words.iter().find(|w| **w == s) {
                return Some(*w);
            }
        }
        errs.push(
            path,
            format!("{} is not one of {}", show(v), words.join(" | ")),
        );
        None
    }
}

pub(crate) fn ip(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<IpAddr> {
    if let Value::String(s) = v {
        if let Ok(a) = s.parse::<IpAddr>() {
            return Some(a);
        }
    }
    errs.push(path, format!("{} is not an IPv4 or IPv6 address", show(v)));
    None
}

/// `addr:port`, IPv6 as `[addr]:port`; port 0 is refused since nothing can be reached or listened on there.
pub(crate) fn socket_addr(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<SocketAddr> {
    let parsed = match v {
        Value::String(s) => s.parse::<SocketAddr>().ok(),
        _ => None,
    };
    let Some(a) = parsed else {
        errs.push(
            path,
            format!(
                "{} is not an address:port (IPv6 as [addr]:port, quoted in YAML)",
                show(v)
            ),
        );
        return None;
    };
    if a.port() == 0 {
        errs.push(path, format!("{} has port 0", show(v)));
        return None;
    }
    Some(a)
}

/// A duration within `range`; the rule in the message uses the same notation the operator writes.
pub(crate) fn duration(
    range: RangeInclusive<Duration>,
) -> impl FnOnce(&str, &Value, &mut FieldErrors) -> Option<Duration> {
    move |path, v, errs| {
        let d = match v {
            Value::String(s) => parse_duration(s),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
            Value::Number(_) => Err("needs a unit (ms, s, m or h), e.g. 5s".to_string()),
            _ => Err("is not a duration (e.g. 1s, 250ms, 1m)".to_string()),
        };
        match d {
            Err(why) => {
                errs.push(path, format!("{} {why}", show(v)));
                None
            }
            Ok(d) if !range.contains(&d) => {
                errs.push(
                    path,
                    format!(
                        "{} is out of range {}..={}",
                        show(v),
                        fmt_duration(*range.start()),
                        fmt_duration(*range.end())
                    ),
                );
                None
            }
            Ok(d) => Some(d),
        }
    }
}

/// A list; each element is handed to `each` with its indexed path.
pub(crate) fn list<T>(
    path: &str,
    v: Value,
    errs: &mut FieldErrors,
    mut each: impl FnMut(&str, Value, &mut FieldErrors) -> Option<T>,
) -> Option<Vec<Option<T>>> {
    match v {
        Value::Array(items) => Some(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| each(&format!("{path}[{i}]"), item, errs))
                .collect(),
        ),
        other => {
            errs.push(path, format!("{} is not a list", show(&other)));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_are_reported_with_a_hint() {
        let mut errs = FieldErrors::default();
        let mut s = Section::new(
            "vrrp",
            json!({"priorty": 1, "vrid": 2, "bogus": true}),
            &mut errs,
        )
        .unwrap();
        s.take("vrid");
        s.take("priority");
        s.finish(&mut errs);
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "vrrp.bogus: unknown key",
                "vrrp.priorty: unknown key (did you mean priority?)"
            ]
        );
    }

    #[test]
    fn null_counts_as_absent() {
        let mut errs = FieldErrors::default();
        let mut s = Section::new("", json!({"a": null}), &mut errs).unwrap();
        assert!(s.take("a").is_none());
        assert!(s.require("b", &mut errs).is_none());
        assert_eq!(errs.to_string(), "b: is required");
    }

    #[test]
    fn leaf_parsers_name_value_and_rule() {
        let mut errs = FieldErrors::default();
        assert_eq!(int(1..=255)("p", &json!(300), &mut errs), None);
        assert_eq!(int(1..=255)("p", &json!("x"), &mut errs), None);
        assert_eq!(boolean("b", &json!("yes"), &mut errs), None);
        assert_eq!(ip("i", &json!("192.0.2.300"), &mut errs), None);
        assert_eq!(socket_addr("s", &json!("192.0.2.1"), &mut errs), None);
        assert_eq!(socket_addr("s", &json!("192.0.2.1:0"), &mut errs), None);
        assert_eq!(one_of(&["a", "b"])("o", &json!("c"), &mut errs), None);
        assert_eq!(text("t", &json!(" "), &mut errs), None);
        assert_eq!(
            duration(Duration::ZERO..=Duration::from_secs(1))("d", &json!("2s"), &mut errs),
            None
        );
        assert_eq!(
            duration(Duration::ZERO..=Duration::from_secs(1))("d", &json!(5), &mut errs),
            None
        );
        assert_eq!(
            errs.to_string(),
            "p: 300 is out of range 1..=255\n\
             p: \"x\" is not an integer\n\
             b: \"yes\" is not true or false\n\
             i: \"192.0.2.300\" is not an IPv4 or IPv6 address\n\
             s: \"192.0.2.1\" is not an address:port (IPv6 as [addr]:port, quoted in YAML)\n\
             s: \"192.0.2.1:0\" has port 0\n\
             o: \"c\" is not one of a | b\n\
             t: must not be empty\n\
             d: \"2s\" is out of range 0s..=1s\n\
             d: 5 needs a unit (ms, s, m or h), e.g. 5s"
        );
    }

    #[test]
    fn good_values_parse() {
        let mut errs = FieldErrors::default();
        assert_eq!(int(1..=255)("p", &json!(255), &mut errs), Some(255));
        assert_eq!(
            socket_addr("s", &json!("[2001:db8::1]:6443"), &mut errs),
            Some("[2001:db8::1]:6443".parse().unwrap())
        );
        assert_eq!(
            duration(Duration::ZERO..=Duration::from_secs(1))("d", &json!(0), &mut errs),
            Some(Duration::ZERO)
        );
        let l = list("l", json!([1, "x"]), &mut errs, |p, v, e| {
            int(0..=9)(p, &v, e)
        })
        .unwrap();
        assert_eq!(l, vec![Some(1), None]);
        assert_eq!(errs.to_string(), "l[1]: \"x\" is not an integer");
    }
}
