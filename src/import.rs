//! `vipd import`: turns a node's keepalived.conf (and haproxy.cfg) into a vipd config, so an operator can
//! move a Keepalived + HAProxy cluster to vipd one node at a time.
//!
//! Each input has its own small tokenizer that keeps file and line ([`keepalived`]: words and `{ }` blocks,
//! with `include`; [`haproxy`]: sections of lines). The mapping writes into a [`render::Doc`], one field at a
//! time with a note saying where the value came from; every setting that has no vipd equivalent becomes a
//! [`Warning`] with its line. Nothing is dropped silently: a key is either in the output, in a warning, or
//! named in the output's header as behaviour vipd has anyway.

pub mod haproxy;
pub mod keepalived;
pub mod lvs;
pub mod render;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use render::Doc;

/// What `vipd import` was asked to read.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub keepalived: PathBuf,
    pub haproxy: Option<PathBuf>,
    /// The `vrrp_instance` to import when the file has several.
    pub instance: Option<String>,
    /// The HAProxy `frontend` or `listen` section to import when the file has several.
    pub frontend: Option<String>,
}

/// A place in an input file, shown as `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A setting that was not carried over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub loc: Loc,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// Something the import needs is missing, ambiguous or cannot work with vipd: no output is produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError(pub String);

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImportError {}

impl ImportError {
    pub(crate) fn at(loc: &Loc, msg: impl fmt::Display) -> ImportError {
        ImportError(format!("{loc}: {msg}"))
    }
}

/// The result: the vipd config as YAML text, and the warnings in input order.
#[derive(Debug, Clone)]
pub struct Imported {
    pub yaml: String,
    pub warnings: Vec<Warning>,
}

/// Collects warnings while the inputs are mapped.
#[derive(Debug, Default)]
pub(crate) struct Warnings(pub Vec<Warning>);

impl Warnings {
    pub(crate) fn push(&mut self, loc: &Loc, message: impl Into<String>) {
        self.0.push(Warning {
            loc: loc.clone(),
            message: message.into(),
        });
    }
}

/// Reads the files and builds the vipd config.
pub fn import(opts: &ImportOptions) -> Result<Imported, ImportError> {
    let mut doc = Doc::default();
    let mut warns = Warnings::default();
    let ka = keepalived::parse_file(&opts.keepalived)?;
    let lvs = opts.haproxy.is_none();
    let vrrp = keepalived::map(&ka, opts.instance.as_deref(), lvs, &mut doc, &mut warns)?;
    doc.source(format!("keepalived: {}", opts.keepalived.display()));
    match &opts.haproxy {
        Some(path) => {
            let text = read(path)?;
            let cfg = haproxy::parse(&display_name(path), &text)?;
            doc.source(format!("haproxy: {}", path.display()));
            haproxy::map(&cfg, opts.frontend.as_deref(), &vrrp, &mut doc, &mut warns)?;
        }
        None => lvs::map(&ka, &vrrp, &mut doc, &mut warns)?,
    }
    Ok(Imported {
        yaml: doc.render(),
        warnings: warns.0,
    })
}

/// What the HAProxy mapping needs to know from the Keepalived side.
#[derive(Debug, Clone)]
pub struct VrrpSummary {
    pub vip: std::net::IpAddr,
}

pub(crate) fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path)
        .map_err(|e| ImportError(format!("cannot read {}: {e}", path.display())))
}

pub(crate) fn display_name(path: &Path) -> Arc<str> {
    Arc::from(path.display().to_string())
}

#[cfg(test)]
mod tests;
