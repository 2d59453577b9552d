//! `vipd demo` as a user runs it: the real binary, as root, end to end; interrupted midway (Ctrl-C to its
//! process group, SIGTERM to it alone); and without root. After every run, no namespace the demo printed is
//! left and no process mentions one (vipd children run `ip netns exec <ns>` with a config named after it).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_vipd");
/// The demo takes a few seconds; this only bounds a hung run on a loaded machine.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// How to interrupt a run: when a stdout line contains `when`, send `signal` to the demo (or its group).
struct Interrupt {
    when: &'static str,
    signal: Signal,
    group: bool,
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `vipd demo` in its own process group (as a shell runs a foreground job), optionally interrupting it.
fn run_demo(interrupt: Option<Interrupt>) -> Run {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .arg("demo")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vipd demo");
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut lines = Vec::new();
    let mut interrupt = interrupt;
    let deadline = start + RUN_BOUND;
    let mut signalled_late = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(i) = &interrupt {
                    if line.contains(i.when) {
                        if i.group {
                            killpg(pid, i.signal).unwrap();
                        } else {
                            kill(pid, i.signal).unwrap();
                        }
                        interrupt = None;
                    }
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() > deadline && !signalled_late {
                    // Hung: let it clean up, then the wait below reaps it.
                    let _ = killpg(pid, Signal::SIGINT);
                    signalled_late = true;
                }
            }
        }
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let stdout = lines.join("\n");
    assert!(
        !signalled_late,
        "demo did not finish within {RUN_BOUND:?}:\n{stdout}\n{stderr}"
    );
    assert!(
        interrupt.is_none(),
        "the line to interrupt at never came:\n{stdout}\n{stderr}"
    );
    Run {
        status,
        stdout,
        stderr,
        took: start.elapsed(),
    }
}

/// The namespaces the demo said it created.
fn printed_namespaces(out: &str) -> Vec<String> {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix("namespaces: "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Asserts that none of `names` is still a namespace and that no process's command line mentions one.
fn assert_clean(names: &[String], out: &str) {
    assert_eq!(names.len(), 8, "expected 8 printed namespaces:\n{out}");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(
            !list.split_whitespace().any(|w| w == n),
            "namespace {n} left behind:\n{list}"
        );
    }
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if names.iter().any(|n| cmdline.contains(n.as_str())) {
            left.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// The word after `prefix` on the first line that contains it.
fn word_after<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
}

#[test]
fn demo_shows_election_failover_and_preemption_then_cleans_up() {
    let run = run_demo(None);
    let out = &run.stdout;
    assert!(
        run.status.success(),
        "{}\n{out}\n{}",
        run.status,
        run.stderr
    );

    let master = word_after(out, "election: ").expect("no election line");
    assert!(
        out.contains(&format!("election: {master} is master")),
        "{out}"
    );
    assert!(["lb1", "lb2", "lb3"].contains(&master), "master {master:?}");

    // Requests went through the VIP and were spread: every apiserver answered some.
    let spread = out
        .lines()
        .find(|l| l.contains("client: 30 HTTPS GET /version"))
        .expect("no spread line");
    for api in ["api1", "api2", "api3"] {
        let n: usize = word_after(spread, &format!("{api} "))
            .and_then(|w| w.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("no count for {api} in {spread:?}"));
        assert!(n > 0, "{api} answered nothing: {spread}");
    }

    assert!(out.contains(&format!("kill -9 vipd on {master}")), "{out}");
    let new_master = out
        .lines()
        .find_map(|l| l.split_once(" is the new master").map(|(a, _)| a))
        .and_then(|a| a.split_whitespace().last())
        .expect("no new master line");
    assert_ne!(new_master, master, "{out}");

    let outage_ms: u64 = word_after(out, "outage: ")
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no outage figure:\n{out}"));
    assert!(
        outage_ms < 3000,
        "client-visible outage {outage_ms} ms at a 100 ms interval:\n{out}"
    );

    assert!(
        out.contains(&format!("{master}: vipd removed the stale VIP")),
        "{out}"
    );
    assert!(
        out.contains(&format!("preemption: {master} is master again")),
        "{out}"
    );
    assert!(out.contains("summary"), "{out}");
    assert!(
        out.contains("cleaned up in") && out.contains("no child process left"),
        "{out}"
    );
    assert!(
        run.took < Duration::from_secs(60),
        "the demo took {:?}",
        run.took
    );
    assert_clean(&printed_namespaces(out), out);
}

#[test]
fn ctrl_c_midway_tears_everything_down() {
    // Ctrl-C reaches the whole foreground process group: the demo and its vipd children.
    let run = run_demo(Some(Interrupt {
        when: "client: 30 HTTPS GET",
        signal: Signal::SIGINT,
        group: true,
    }));
    let out = &run.stdout;
    assert_eq!(run.status.code(), Some(130), "{out}\n{}", run.stderr);
    assert!(out.contains("interrupted by SIGINT"), "{out}");
    assert!(!out.contains("summary"), "{out}");
    assert!(
        out.contains("cleaned up in") && out.contains("no child process left"),
        "{out}"
    );
    assert_clean(&printed_namespaces(out), out);
}

#[test]
fn sigterm_while_starting_tears_everything_down() {
    // Only the demo gets the signal: its guards must stop the children it started.
    let run = run_demo(Some(Interrupt {
        when: "namespaces: ",
        signal: Signal::SIGTERM,
        group: false,
    }));
    let out = &run.stdout;
    assert_eq!(run.status.code(), Some(143), "{out}\n{}", run.stderr);
    assert!(out.contains("interrupted by SIGTERM"), "{out}");
    assert!(out.contains("cleaned up in"), "{out}");
    assert_clean(&printed_namespaces(out), out);
}

#[test]
fn without_root_it_says_what_it_needs() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "demo",
        ])
        .output()
        .expect("setpriv (util-linux) runs the demo as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("vipd demo needs root (this process runs as uid 65534)"),
        "{stderr}"
    );
    assert!(stderr.contains("network namespaces"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing should have started");
}
