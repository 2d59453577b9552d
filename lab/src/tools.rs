//! The programs the lab runs (`ip`, `ping`, `tcpdump`, `keepalived`, ...), looked up on `PATH` before they
//! are run, so a missing one fails with its name and the package to install rather than with an assertion
//! about a command that "did not succeed".
//!
//! The packages are those scripts/test.sh installs; its PACKAGES list is the one place they are named for a
//! machine, this table only maps a program back to its package for the message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

/// Program -> Debian package.
const PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("ping", "iputils-ping"),
    ("sysctl", "procps"),
    ("ps", "procps"),
    ("setpriv", "util-linux"),
    ("nsenter", "util-linux"),
    ("getpcaps", "libcap2-bin"),
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
    ("keepalived", "keepalived"),
    ("haproxy", "haproxy"),
    ("nft", "nftables"),
    ("curl", "curl"),
    ("iperf3", "iperf3"),
    ("wrk", "wrk"),
    ("promtool", "prometheus"),
    ("systemd-analyze", "systemd"),
];

/// The Debian package that provides `program`, if the lab knows it.
pub fn package_of(program: &str) -> Option<&'static str> {
    PACKAGES
        .iter()
        .find(|(p, _)| *p == program)
        .map(|(_, pkg)| *pkg)
}

/// Where `program` is found on `PATH` (a name with a `/` is taken as a path and only checked to exist).
pub fn find(program: &OsStr) -> Option<PathBuf> {
    find_in(program, &std::env::var_os("PATH").unwrap_or_default())
}

fn find_in(program: &OsStr, path: &OsStr) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return is_executable(p).then(|| p.to_path_buf());
    }
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Ok when `program` can be run; else an error naming it and the package to install, e.g.
/// "ping not found on PATH: apt-get install iputils-ping (scripts/test.sh installs it)".
pub fn require(program: &OsStr) -> Result<()> {
    require_in(program, &std::env::var_os("PATH").unwrap_or_default())
}

fn require_in(program: &OsStr, path: &OsStr) -> Result<()> {
    if find_in(program, path).is_some() {
        return Ok(());
    }
    let name = program.to_string_lossy();
    match package_of(&name) {
        Some(pkg) => {
            bail!("{name} not found on PATH: apt-get install {pkg} (scripts/test.sh installs it)")
        }
        None => bail!("{name} not found on PATH"),
    }
}

/// Checks every program `cmd` will run: the program itself, and for `ip netns exec NS PROGRAM ...` (how the
/// lab runs things inside a namespace) also PROGRAM, whose absence `ip` would report only on stderr.
pub fn require_for(cmd: &Command) -> Result<()> {
    require(cmd.get_program())?;
    if cmd.get_program() == "ip" {
        let args: Vec<&OsStr> = cmd.get_args().take(4).collect();
        if let [netns, exec, _ns, program] = args[..] {
            if netns == "netns" && exec == "exec" {
                require(program)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_itself_and_its_package() {
        let e = require_in(OsStr::new("ping"), OsStr::new("/nonexistent")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ping not found on PATH: apt-get install iputils-ping (scripts/test.sh installs it)"
        );
        let e = require_in(OsStr::new("no-such-tool-xyz"), OsStr::new("/usr/bin")).unwrap_err();
        assert_eq!(e.to_string(), "no-such-tool-xyz not found on PATH");
        assert!(require_in(OsStr::new("sh"), OsStr::new("/nonexistent:/bin")).is_ok());
        assert!(require(OsStr::new("/bin/sh")).is_ok());
        assert!(require(OsStr::new("/nonexistent/sh")).is_err());
    }

    #[test]
    fn the_program_inside_ip_netns_exec_is_checked_too() {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", "ns1", "no-such-tool-xyz", "-c1"]);
        // (`ip` itself is there: every lab test needs it.)
        let e = require_for(&cmd).unwrap_err().to_string();
        assert_eq!(e, "no-such-tool-xyz not found on PATH");
        let mut ok = Command::new("sh");
        ok.args(["-c", "true"]);
        assert!(require_for(&ok).is_ok());
    }

    #[test]
    fn known_tools_map_to_their_package() {
        assert_eq!(package_of("ping"), Some("iputils-ping"));
        assert_eq!(package_of("nft"), Some("nftables"));
        assert_eq!(package_of("keepalived"), Some("keepalived"));
        assert_eq!(package_of("promtool"), Some("prometheus"));
    }
}
