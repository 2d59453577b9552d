//! A frozen vipd is visible: after a SIGSTOP longer than the advertisement interval, the master's advert
//! timer fires late and `vipd_vrrp_late_timers_total` counts it, with a rate-limited warning in the log
//! (Keepalived's "A thread timer expired N seconds ago"). A node left running counts nothing.
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vipd_lab::netns::{wait_for, Lab, TempDir};
use vipd_lab::vipd::{VipdNode, VipdSpec};

const LATE: &str = "vipd_vrrp_late_timers_total{vrid=\"51\"}";
const LONG: Duration = Duration::from_secs(20);
const STOP: Duration = Duration::from_secs(2);

fn vipd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vipd"))
}

/// The first late-timer warning from log line `from` on, and the milliseconds it names.
fn late_warning(node: &VipdNode, from: usize) -> Option<(String, u64)> {
    node.proc.lines_from(from).into_iter().find_map(|l| {
        if !l.contains("VRRP timer expired") || !l.contains("was not scheduled") {
            return None;
        }
        let v = l.split("late_ms=").nth(1)?;
        let ms = v
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        Some((l, ms))
    })
}

#[test]
fn a_stopped_master_counts_a_late_timer_and_warns() {
    let mut lab = Lab::new("late").unwrap();
    lab.add_node("lb").unwrap();
    let dir = TempDir::new("late").unwrap();
    let vip: IpAddr = "192.0.2.100".parse().unwrap();
    // No backend answers (nothing listens there): the lone node is master at a tracked-down priority.
    let backend = SocketAddr::new(IpAddr::V4(lab.node("lb").v4), 6443);
    let mut spec = VipdSpec::new(vip, vec![backend], 150);
    // Well below the stop; the lateness rule then needs more than 200 ms, far above normal jitter.
    spec.advert_interval = "200ms";
    let node = VipdNode::start(vipd_bin(), &lab.node("lb").ns, &spec, dir.path()).unwrap();
    assert!(
        node.wait_state("master", LONG).is_some(),
        "never became master: {:?}",
        node.proc.lines()
    );

    // Left running for a few seconds: nothing late.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        node.metric(LATE),
        Some(0.0),
        "late timers without a stop: {:?}",
        node.proc.lines()
    );

    let from = node.proc.line_count();
    node.signal(Signal::SIGSTOP).unwrap();
    std::thread::sleep(STOP);
    node.signal(Signal::SIGCONT).unwrap();
    let resumed = Instant::now();
    let counted = wait_for(LONG, || node.metric(LATE).filter(|v| *v >= 1.0));
    assert!(
        counted.is_some(),
        "no late timer counted after a {STOP:?} stop (last {:?}): {:?}",
        node.metric(LATE),
        node.proc.lines_from(from)
    );
    eprintln!(
        "late timers {counted:?}, counted {:?} after SIGCONT",
        resumed.elapsed()
    );
    let warning = wait_for(Duration::from_secs(5), || late_warning(&node, from));
    let Some((line, late)) = warning else {
        panic!("no late-timer warning: {:?}", node.proc.lines_from(from));
    };
    eprintln!("the timer fired {late} ms late after a {STOP:?} stop: {line}");
    // The deadline fell inside the stop: about the stop less up to one interval (1.8 s at the least, less a
    // margin for when the signals took effect), and not absurdly more.
    assert!(
        (1500..10_000).contains(&late),
        "late by {late} ms after a {STOP:?} stop"
    );
    // Still master: nobody else was there to take over.
    assert_eq!(node.state().as_deref(), Some("master"));
}

/// A stopped backup's Master_Down timer passes during the stop; when it resumes, the queued advertisements
/// and the missed deadline are both ready, and whichever the driver serves first, the miss is counted once.
#[test]
fn a_stopped_backup_counts_a_late_timer() {
    let mut lab = Lab::new("lateb").unwrap();
    lab.add_node("n1").unwrap();
    lab.add_node("n2").unwrap();
    let dir = TempDir::new("lateb").unwrap();
    let vip: IpAddr = "192.0.2.100".parse().unwrap();
    let backend = SocketAddr::new(IpAddr::V4(lab.node("n1").v4), 6443);
    let start = |name: &str, prio: u8| {
        let mut spec = VipdSpec::new(vip, vec![backend], prio);
        spec.advert_interval = "200ms";
        VipdNode::start(vipd_bin(), &lab.node(name).ns, &spec, dir.path()).unwrap()
    };
    let master = start("n1", 200);
    let backup = start("n2", 100);
    assert!(master.wait_state("master", LONG).is_some(), "n1 not master");
    assert!(backup.wait_state("backup", LONG).is_some(), "n2 not backup");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(backup.metric(LATE), Some(0.0), "{:?}", backup.proc.lines());

    let from = backup.proc.line_count();
    backup.signal(Signal::SIGSTOP).unwrap();
    std::thread::sleep(STOP);
    backup.signal(Signal::SIGCONT).unwrap();
    let counted = wait_for(LONG, || backup.metric(LATE).filter(|v| *v >= 1.0));
    assert!(
        counted.is_some(),
        "the backup counted no late timer: {:?}",
        backup.proc.lines_from(from)
    );
    let warning = wait_for(Duration::from_secs(5), || late_warning(&backup, from));
    assert!(warning.is_some(), "{:?}", backup.proc.lines_from(from));
    eprintln!("backup: {:?}", warning);
    // The master ran all along: nothing late there.
    assert_eq!(master.metric(LATE), Some(0.0), "{:?}", master.proc.lines());
    assert!(
        backup.wait_state("backup", LONG).is_some(),
        "n2 did not settle as backup"
    );
}
