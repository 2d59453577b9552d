//! The systemd unit's ExecStart line, run the way systemd would run it: as an unprivileged user holding only
//! the unit's capabilities (ambient, inheritable and bounding), with no_new_privs, clean environment, cwd
//! `/`, inside a network namespace this test creates. Everything is derived from `systemd/vipd.service`
//! itself, so a change to the unit's capabilities or command line is what gets tested.
//!
//! Needs root (to create the namespace and to switch user) and util-linux `setpriv`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const UNIT: &str = include_str!("../systemd/vipd.service");
const POD: &str = include_str!("../manifests/vipd.yaml");

/// systemd's User=vipd does not exist on a test machine; any unprivileged uid proves the same thing.
const NOBODY: u32 = 65534;
/// systemd's default PATH for system services; the unit's environment is otherwise empty.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `[Service]` section as key -> values in order (a key may repeat; an empty value resets, as systemd
/// does for list settings).
fn service_section(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "line continuations are not handled by this test: {line}"
        );
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        if section == "Service" {
            let values = out.entry(key.trim().to_owned()).or_default();
            if value.trim().is_empty() {
                values.clear();
            } else {
                values.push(value.trim().to_owned());
            }
        }
    }
    out
}

fn one<'a>(service: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match service.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("[Service] {key}= must be set exactly once, found {other:?}"),
    }
}

/// ExecStart's argv. The unit keeps it free of quoting, specifiers and prefixes, which would each change
/// its meaning in ways this split does not model; fail loudly instead of testing something else.
fn exec_start(service: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let line = one(service, "ExecStart");
    assert!(
        !line.contains(['"', '\'', '%', '$', '\\'])
            && !line.starts_with(['-', '@', '+', '!', ':', '|']),
        "ExecStart uses syntax this test does not model: {line}"
    );
    line.split_whitespace().map(str::to_owned).collect()
}

/// A capability list setting (union of its lines), as lowercase names without `CAP_` (setpriv's spelling).
fn capability_set(service: &BTreeMap<String, Vec<String>>, key: &str) -> BTreeSet<String> {
    let mut caps = BTreeSet::new();
    for value in service.get(key).into_iter().flatten() {
        assert!(
            !value.starts_with('~'),
            "{key}= as a deny list is not modelled: {value}"
        );
        for cap in value.split_whitespace() {
            let name = cap
                .strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{key}: {cap} is not CAP_*"));
            caps.insert(name.to_ascii_lowercase());
        }
    }
    caps
}

/// Linux capability numbers (linux/capability.h), to read /proc/PID/status masks.
fn capability_bit(name: &str) -> u32 {
    const ORDER: [&str; 41] = [
        "chown",
        "dac_override",
        "dac_read_search",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "linux_immutable",
        "net_bind_service",
        "net_broadcast",
        "net_admin",
        "net_raw",
        "ipc_lock",
        "ipc_owner",
        "sys_module",
        "sys_rawio",
        "sys_chroot",
        "sys_ptrace",
        "sys_pacct",
        "sys_admin",
        "sys_boot",
        "sys_nice",
        "sys_resource",
        "sys_time",
        "sys_tty_config",
        "mknod",
        "lease",
        "audit_write",
        "audit_control",
        "setfcap",
        "mac_override",
        "mac_admin",
        "syslog",
        "wake_alarm",
        "block_suspend",
        "audit_read",
        "perfmon",
        "bpf",
        "checkpoint_restore",
    ];
    let bit = ORDER
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("unknown capability {name}"));
    u32::try_from(bit).unwrap()
}

/// The unit's credentials, as a setpriv prefix.
struct Credentials {
    caps: BTreeSet<String>,
    no_new_privs: bool,
}

impl Credentials {
    fn from_unit(service: &BTreeMap<String, Vec<String>>) -> Self {
        let user = one(service, "User");
        assert!(
            user != "root" && user != "0",
            "the unit must not run as root"
        );
        let bounding = capability_set(service, "CapabilityBoundingSet");
        let ambient = capability_set(service, "AmbientCapabilities");
        assert_eq!(
            bounding, ambient,
            "an ambient capability outside the bounding set is silently dropped"
        );
        assert!(!ambient.is_empty(), "vipd cannot work without capabilities");
        Credentials {
            caps: ambient,
            no_new_privs: one(service, "NoNewPrivileges") == "yes",
        }
    }

    fn none() -> Self {
        Credentials {
            caps: BTreeSet::new(),
            no_new_privs: true,
        }
    }

    fn mask(&self) -> u64 {
        self.caps
            .iter()
            .map(|c| 1u64 << capability_bit(c))
            .fold(0, |a, b| a | b)
    }

    /// `setpriv ... --`: inheritable first, since the kernel only raises an ambient capability that is
    /// both permitted and inheritable; setpriv keeps the permitted set across the uid change for it.
    fn setpriv(&self) -> Vec<String> {
        let list: String = self.caps.iter().map(|c| format!(",+{c}")).collect();
        let mut args = vec![
            "setpriv".to_owned(),
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".to_owned(),
            format!("--inh-caps=-all{list}"),
            format!("--ambient-caps=-all{list}"),
            format!("--bounding-set=-all{list}"),
        ];
        if self.no_new_privs {
            args.push("--no-new-privs".to_owned());
        }
        args.push("--".to_owned());
        args
    }
}

/// A network namespace of this test, removed on drop (also when the test panics).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        let name = unique("vipd-pkg");
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(
            status.success(),
            "ip netns add {name} failed (the test needs root)"
        );
        let ns = Netns { name };
        // An `eth0` with an address, so the config's interface exists as on a node (veth: the dummy
        // driver is not available everywhere).
        ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ]);
        ns.ip(&["addr", "add", "192.0.2.10/24", "dev", "eth0"]);
        for dev in ["lo", "eth0", "eth0-peer"] {
            ns.ip(&["link", "set", dev, "up"]);
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `argv` inside the namespace under `creds`, with systemd's environment and working directory.
    fn run(&self, creds: &Credentials, argv: &[String]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .args(creds.setpriv())
            .args(argv);
        cmd.env_clear().env("PATH", SYSTEMD_PATH).current_dir("/");
        run_bounded(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs to completion within CHILD_TIMEOUT; a hung child is killed by its pid and reaped, then the test fails.
fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A directory only this test uses, readable by the unprivileged user, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("vipd-pkg"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The unit's ExecStart with the test's binary and config: `vipd run --config FILE`, as systemd starts it.
fn exec_start_command(unit_argv: &[String], config: &Path) -> Vec<String> {
    let mut argv: Vec<String> = unit_argv.to_vec();
    assert!(
        argv[0].ends_with("/vipd"),
        "ExecStart runs {}, not vipd",
        argv[0]
    );
    argv[0] = env!("CARGO_BIN_EXE_vipd").to_owned();
    let flag = argv
        .iter()
        .position(|a| a == "--config")
        .expect("ExecStart passes --config");
    assert!(argv.len() > flag + 1, "--config without a value");
    argv[flag + 1] = config.to_str().unwrap().to_owned();
    assert!(
        argv.iter().any(|a| a == "run"),
        "ExecStart runs `vipd run`: {argv:?}"
    );
    argv
}

/// A daemon started in the background in a namespace; killed (by pid) and reaped on drop, so a failing
/// test leaves nothing running.
struct Daemon {
    child: std::process::Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Daemon {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// SIGTERM by pid, then the exit status and everything it logged (bounded by CHILD_TIMEOUT).
    fn terminate(mut self) -> (ExitStatus, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill -TERM");
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = loop {
            if let Some(st) = self.exited() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "vipd did not stop within {CHILD_TIMEOUT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.stderr.take().unwrap().join().unwrap();
        (status, log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Netns {
    /// `argv` in the background, inside the namespace under `creds`, with systemd's environment plus `env`.
    fn spawn(&self, creds: &Credentials, argv: &[String], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .args(creds.setpriv())
            .args(argv);
        cmd.env_clear().env("PATH", SYSTEMD_PATH).current_dir("/");
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        Daemon {
            child,
            stderr: Some(stderr),
        }
    }

    fn has_addr(&self, addr: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "addr", "show", "dev", "eth0"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
    }
}

/// Waits (bounded) for a notification datagram satisfying `pred`; every datagram seen is kept in `seen`.
fn wait_notify(
    sock: &std::os::unix::net::UnixDatagram,
    seen: &mut Vec<String>,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = pred(&msg);
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn unit_capabilities_match_the_static_pod() {
    let service = service_section(UNIT);
    let creds = Credentials::from_unit(&service);
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_saphyr::from_str(POD).expect("manifests/vipd.yaml is a Pod");
    let container = &pod.spec.expect("spec").containers[0];
    let added: BTreeSet<String> = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .expect("capabilities.add")
        .into_iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    assert_eq!(
        creds.caps, added,
        "the systemd unit and the static pod must grant the same capabilities"
    );
    // Both packagings start the same command line.
    let argv = exec_start(&service);
    assert_eq!(argv[0], "/usr/local/bin/vipd");
    assert_eq!(Some(&argv[1..]), container.args.as_deref());
}

/// The wrapper really gives the process what systemd would: the unit's capabilities and nothing more, in
/// every set, as the unprivileged user, with no_new_privs, in a namespace other than the test's.
#[test]
fn setpriv_reproduces_the_unit_credentials_in_a_netns() {
    let creds = Credentials::from_unit(&service_section(UNIT));
    let ns = Netns::new();
    let status = ns.run(&creds, &["cat".to_owned(), "/proc/self/status".to_owned()]);
    assert!(status.status.success(), "{status:?}");
    let field = |name: &str| {
        let prefix = format!("{name}:");
        let line = status
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{name}"));
        line[prefix.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid"), vec![NOBODY.to_string(); 4]);
    assert_eq!(field("Gid"), vec![NOBODY.to_string(); 4]);
    assert!(field("Groups").is_empty());
    assert_eq!(field("NoNewPrivs"), ["1"]);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let mask = u64::from_str_radix(&field(set)[0], 16).unwrap();
        assert_eq!(
            mask,
            creds.mask(),
            "{set} is {mask:#x}, the unit grants {:#x} {:?}",
            creds.mask(),
            creds.caps
        );
    }
    let inside = ns.run(
        &creds,
        &["readlink".to_owned(), "/proc/self/ns/net".to_owned()],
    );
    let outside = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        inside.stdout.trim(),
        outside.to_str().unwrap(),
        "not in the test's namespace"
    );

    // The capabilities are usable: NET_ADMIN adds an address in the namespace; without it, refused.
    let add = |creds: &Credentials, addr: &str| {
        let argv = ["ip", "addr", "add", addr, "dev", "eth0"].map(String::from);
        ns.run(creds, &argv)
    };
    let with = add(&creds, "192.0.2.11/32");
    assert!(
        with.status.success(),
        "with the unit's capabilities: {with:?}"
    );
    let without = add(&Credentials::none(), "192.0.2.12/32");
    assert!(
        !without.status.success(),
        "an unprivileged process changed addresses: {without:?}"
    );
    assert!(
        without.stderr.contains("Operation not permitted"),
        "{without:?}"
    );
}

/// The unit's ExecStart line, under the unit's credentials: the daemon really runs (READY=1 on the notify
/// socket, the VIP on the namespace's eth0, only the unit's capabilities), stops on SIGTERM with exit 0 and
/// STOPPING=1, the VIP withdrawn; and an invalid config is refused with the field's path.
#[test]
fn exec_start_line_runs_under_the_unit_capabilities() {
    let service = service_section(UNIT);
    let creds = Credentials::from_unit(&service);
    let unit_argv = exec_start(&service);
    let dir = TempDir::new();
    let ns = Netns::new();

    let good = dir.write(
        "vipd.yaml",
        "interface: eth0\n\
         controlPlaneVIP: 192.0.2.100\n\
         controlPlaneLBPort: 443\n\
         backends: [192.0.2.20:6443, 192.0.2.21:6443]\n\
         vrrp:\n  vrid: 51\n  priority: 100\n  advertInterval: 200ms\n\
         health:\n  type: tcp\n",
    );
    // systemd's notify socket: the unprivileged service user must be able to write to it.
    let notify_path = dir.0.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut daemon = ns.spawn(
        &creds,
        &exec_start_command(&unit_argv, &good),
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let mut seen = Vec::new();
    let ready = wait_notify(&sock, &mut seen, CHILD_TIMEOUT, |m| {
        m.lines().any(|l| l == "READY=1")
    });
    if !ready {
        let exited = daemon.exited();
        let (_, log) = daemon.terminate();
        panic!("no READY=1 (exited: {exited:?}, got {seen:?}):\n{log}");
    }

    // Only the unit's capabilities, in every thread; as the unit's user.
    for task in std::fs::read_dir(format!("/proc/{}/task", daemon.pid())).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            let mask = vipd::caps::parse_status_mask(&status, set).unwrap();
            assert_eq!(
                mask & !creds.mask(),
                0,
                "{set} {mask:#x} exceeds the unit's {:#x}",
                creds.mask()
            );
            let needed = (1 << capability_bit("net_admin")) | (1 << capability_bit("net_raw"));
            assert_eq!(mask & needed, needed, "{set} {mask:#x}");
        }
        assert!(
            status.contains(&format!("Uid:\t{NOBODY}\t")),
            "not the unit's user:\n{status}"
        );
    }

    // Alone on its LAN, it becomes master and holds the VIP.
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while !ns.has_addr("192.0.2.100") && Instant::now() < deadline && daemon.exited().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ns.has_addr("192.0.2.100"), "the VIP never appeared on eth0");

    let (status, log) = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        wait_notify(&sock, &mut seen, Duration::from_secs(5), |m| m
            == "STOPPING=1\n"),
        "no STOPPING=1: {seen:?}"
    );
    assert!(!ns.has_addr("192.0.2.100"), "the VIP stayed after exit");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in the journal:\n{log}"
    );

    // The same line must still reject bad input with the field path: proves the config was really read.
    let bad = dir.write(
        "bad.yaml",
        "interface: eth0\n\
         controlPlaneVIP: 192.0.2.100\n\
         backends: [192.0.2.20:6443]\n\
         vrrp:\n  vrid: 51\n  priority: 300\n",
    );
    let out = ns.run(&creds, &exec_start_command(&unit_argv, &bad));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("vrrp.priority"),
        "{out:?}"
    );
}

/// CI's `systemd-analyze verify` and offline security review of the unit (systemd/check.sh), with the
/// binary under test standing in for /usr/local/bin/vipd. Needs the Debian package `systemd` (no running
/// systemd).
#[test]
fn systemd_analyze_accepts_the_unit() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/check.sh");
    let mut cmd = Command::new(script);
    cmd.arg(env!("CARGO_BIN_EXE_vipd"));
    let out = run_bounded(cmd);
    assert!(
        out.status.success(),
        "systemd/check.sh failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("no messages"), "{out:?}");
}
