//! Least privilege: checking that vipd has the capabilities it needs, and dropping every other one.
//!
//! vipd needs CAP_NET_ADMIN (add/remove the VIP, IP_FREEBIND, multicast membership), CAP_NET_RAW (the VRRP raw
//! socket, gratuitous ARP / NA) and, only when it listens on a port below 1024, CAP_NET_BIND_SERVICE. Nothing
//! else: a process started as root keeps none of root's other powers after `drop_to_required`.
//!
//! Capabilities are per thread on Linux. `drop_to_required` changes the calling thread only, so it must run
//! before any other thread exists (before the tokio runtime is built); it checks that and refuses otherwise,
//! because a worker thread that kept CAP_SYS_ADMIN would make the drop a pretence. The three kept
//! capabilities are exactly those needed to bind and to run, so there is nothing to do "before" the drop.

use std::fmt;

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities vipd keeps. `needs_bind_service` is true when it listens on a port below 1024.
pub fn required(needs_bind_service: bool) -> Vec<Capability> {
    let mut v = vec![Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];
    if needs_bind_service {
        v.push(Capability::CAP_NET_BIND_SERVICE);
    }
    v
}

/// Whether listening on any of `ports` takes CAP_NET_BIND_SERVICE: a port below the kernel's
/// `net.ipv4.ip_unprivileged_port_start` (1024 unless lowered; it applies to IPv6 too).
pub fn needs_bind_service(ports: &[u16]) -> bool {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    privileged(ports, start)
}

fn privileged(ports: &[u16], unprivileged_start: u32) -> bool {
    ports.iter().any(|p| u32::from(*p) < unprivileged_start)
}

/// Capabilities that are needed and not held, with a message an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCaps {
    pub missing: Vec<Capability>,
}

impl fmt::Display for MissingCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.missing.iter().map(|c| c.to_string()).collect();
        write!(
            f,
            "vipd lacks {}: it needs CAP_NET_ADMIN and CAP_NET_RAW (and CAP_NET_BIND_SERVICE for a port \
             below 1024). Run it as root, or grant them: systemd `AmbientCapabilities=CAP_NET_ADMIN \
             CAP_NET_RAW CAP_NET_BIND_SERVICE`, a static pod `securityContext.capabilities.add: [NET_ADMIN, \
             NET_RAW, NET_BIND_SERVICE]`",
            names.join(", ")
        )
    }
}

impl std::error::Error for MissingCaps {}

/// Parses the hexadecimal mask of a `Cap*:` line of `/proc/<pid>/status`.
pub fn parse_status_mask(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        u64::from_str_radix(rest.trim(), 16).ok()
    })
}

/// The effective capability mask of the calling thread, read from `/proc/thread-self/status`.
pub fn effective_mask() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    parse_status_mask(&status, "CapEff").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no CapEff line in /proc/thread-self/status",
        )
    })
}

/// Which of `needed` are absent from the mask.
pub fn missing_from(mask: u64, needed: &[Capability]) -> Vec<Capability> {
    needed
        .iter()
        .copied()
        .filter(|c| mask & c.bitmask() == 0)
        .collect()
}

/// Checks the calling thread's effective set; an error names each missing capability.
pub fn check(needs_bind_service: bool) -> Result<(), CheckError> {
    let mask = effective_mask().map_err(CheckError::Read)?;
    let missing = missing_from(mask, &required(needs_bind_service));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CheckError::Missing(MissingCaps { missing }))
    }
}

#[derive(Debug)]
pub enum CheckError {
    Read(std::io::Error),
    Missing(MissingCaps),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Read(e) => write!(f, "cannot read this process's capabilities: {e}"),
            CheckError::Missing(m) => m.fmt(f),
        }
    }
}

impl std::error::Error for CheckError {}

/// Why the drop failed.
#[derive(Debug)]
pub enum DropError {
    /// Other threads exist; they would keep their capabilities.
    Threaded(usize),
    Missing(MissingCaps),
    Caps(String),
    Io(std::io::Error),
}

impl fmt::Display for DropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropError::Threaded(n) => write!(
                f,
                "cannot drop capabilities with {n} threads running (capabilities are per thread); \
                 drop them before starting the runtime"
            ),
            DropError::Missing(m) => m.fmt(f),
            DropError::Caps(e) => write!(f, "cannot drop capabilities: {e}"),
            DropError::Io(e) => write!(f, "cannot read this process's capabilities: {e}"),
        }
    }
}

impl std::error::Error for DropError {}

/// Number of threads in this process (the `Threads:` line of `/proc/self/status`).
pub fn thread_count() -> std::io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no Threads line"))
}

/// Keeps only `required(needs_bind_service)` in the bounding, inheritable, effective and permitted sets, clears
/// the ambient set and sets no_new_privs, so neither this process nor anything it could exec regains more.
/// Fails, changing nothing, when a required capability is missing or other threads exist.
pub fn drop_to_required(needs_bind_service: bool) -> Result<(), DropError> {
    let threads = thread_count().map_err(DropError::Io)?;
    if threads != 1 {
        return Err(DropError::Threaded(threads));
    }
    let keep_list = required(needs_bind_service);
    let mask = effective_mask().map_err(DropError::Io)?;
    let missing = missing_from(mask, &keep_list);
    if !missing.is_empty() {
        return Err(DropError::Missing(MissingCaps { missing }));
    }
    let keep: CapsHashSet = keep_list.into_iter().collect();
    let err = |e: caps::errors::CapsError| DropError::Caps(e.to_string());

    // The bounding set first: dropping from it needs CAP_SETPCAP, which the later steps remove.
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    let inheritable: CapsHashSet = caps::read(None, CapSet::Inheritable)
        .map_err(err)?
        .intersection(&keep)
        .copied()
        .collect();
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(err)?;
    // Effective before permitted: the kernel refuses an effective set larger than the permitted one.
    caps::set(None, CapSet::Effective, &keep).map_err(err)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err)?;
    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| DropError::Caps(format!("PR_SET_NO_NEW_PRIVS: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tvipd\nThreads:\t1\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                          CapEff:\t0000000000003000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";

    #[test]
    fn parses_proc_status_masks() {
        assert_eq!(parse_status_mask(STATUS, "CapEff"), Some(0x3000));
        assert_eq!(parse_status_mask(STATUS, "CapPrm"), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_status_mask(STATUS, "CapInh"), Some(0));
        assert_eq!(parse_status_mask(STATUS, "CapXyz"), None);
        assert_eq!(parse_status_mask("CapEff:\tzz\n", "CapEff"), None);
    }

    #[test]
    fn privileged_ports() {
        assert!(privileged(&[9440, 443], 1024));
        assert!(!privileged(&[9440, 6443], 1024));
        assert!(
            !privileged(&[443], 0),
            "a lowered sysctl makes every port unprivileged"
        );
        assert!(!privileged(&[], 1024));
        // On this machine, 443 needs it unless the sysctl was lowered; 9440 never does.
        assert!(!needs_bind_service(&[9440]));
    }

    #[test]
    fn missing_capabilities_are_named() {
        // 0x3000 = bits 12 (NET_ADMIN) and 13 (NET_RAW).
        assert!(missing_from(0x3000, &required(false)).is_empty());
        assert_eq!(
            missing_from(0x3000, &required(true)),
            [Capability::CAP_NET_BIND_SERVICE]
        );
        assert_eq!(
            missing_from(0x1000, &required(false)),
            [Capability::CAP_NET_RAW]
        );
        let m = MissingCaps {
            missing: missing_from(0, &required(true)),
        };
        let text = m.to_string();
        assert!(
            text.starts_with("vipd lacks CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE: "),
            "{text}"
        );
        assert!(text.contains("AmbientCapabilities"), "{text}");
    }

    #[test]
    fn reads_own_capabilities() {
        let mask = effective_mask().unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            // Tests run as root: the full set includes what vipd needs.
            assert!(check(true).is_ok(), "{mask:x}");
        } else {
            assert!(check(false).is_err());
        }
    }

    #[test]
    fn refuses_to_drop_while_threads_run() {
        // The test harness runs this on its own thread next to the main one.
        let extra =
            std::thread::spawn(|| std::thread::park_timeout(std::time::Duration::from_secs(5)));
        match drop_to_required(false) {
            Err(DropError::Threaded(n)) => assert!(n >= 2),
            other => panic!("expected a refusal, got {other:?}"),
        }
        extra.thread().unpark();
        extra.join().unwrap();
        // Nothing was dropped.
        if nix::unistd::geteuid().is_root() {
            assert!(check(true).is_ok());
        }
    }
}
