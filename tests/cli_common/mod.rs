//! Shared by the CLI tests (`cli_*.rs`): the real `vipd` binary run from the repository root as an operator
//! runs it, its output as text, its exit code checked, and a scratch directory.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The shipped cluster configuration, relative to the repository root.
pub const CLUSTER: &str = "examples/cluster.yaml";

/// Runs `vipd args` in the repository root, without the caller's `RUST_LOG`.
pub fn vipd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run vipd")
}

/// `vipd <cmd> --cluster-config examples/cluster.yaml <extra>`.
pub fn with_cluster(cmd: &str, extra: &[&str]) -> Output {
    vipd(&[&[cmd, "--cluster-config", CLUSTER], extra].concat())
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `out` exited with `code`; else fails showing its stderr.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        text(&out.stderr)
    );
}

/// A scratch directory removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("vipd-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// Writes `content` to `name` in the directory: its path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
