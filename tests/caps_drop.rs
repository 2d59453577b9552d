//! `caps::drop_to_required` on a real, single-threaded process (libtest would run it on a second thread, and
//! capabilities are per thread). Prints the plain `N passed, N failed` line cargo's summary understands.

use std::process::ExitCode;

use vipd::caps::{drop_to_required, parse_status_mask};

fn status() -> String {
    std::fs::read_to_string("/proc/self/status").unwrap()
}

fn main() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        println!("caps_drop: skipped, needs root");
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    let keep: u64 = (1 << 10) | (1 << 12) | (1 << 13); // NET_BIND_SERVICE, NET_ADMIN, NET_RAW
    let before = status();
    let eff_before = parse_status_mask(&before, "CapEff").unwrap();
    let mut failures = Vec::new();
    if eff_before & !keep == 0 {
        failures.push(format!(
            "precondition: root should start with more than {keep:x}, has {eff_before:x}"
        ));
    }
    let locked = std::env::temp_dir().join(format!("vipd-caps-drop-{}", std::process::id()));
    std::fs::write(&locked, b"secret").unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    if std::fs::read(&locked).is_err() {
        failures.push("precondition: root should read a mode-000 file".to_string());
    }
    if let Err(e) = drop_to_required(true) {
        failures.push(format!("drop_to_required: {e}"));
    }
    let after = status();
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        let got = parse_status_mask(&after, field).unwrap();
        if got != keep {
            failures.push(format!("{field} is {got:x}, want {keep:x}"));
        }
    }
    for field in ["CapInh", "CapAmb"] {
        let got = parse_status_mask(&after, field).unwrap();
        if got & !keep != 0 {
            failures.push(format!("{field} is {got:x}, want a subset of {keep:x}"));
        }
    }
    if !after
        .lines()
        .any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1'))
    {
        failures.push("NoNewPrivs is not set".to_string());
    }
    // The kept capabilities still work: a raw socket needs CAP_NET_RAW.
    if let Err(e) = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(112)),
    ) {
        failures.push(format!("raw socket after the drop: {e}"));
    }
    // And a dropped one does not: reading a mode-000 file takes CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH.
    match std::fs::read(&locked) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        other => failures.push(format!(
            "mode-000 file still readable after the drop: {other:?}"
        )),
    }
    let _ = std::fs::remove_file(&locked);
    for f in &failures {
        println!("caps_drop: FAILED: {f}");
    }
    if failures.is_empty() {
        println!(
            "caps_drop: drop_to_required keeps exactly NET_ADMIN, NET_RAW, NET_BIND_SERVICE ... ok"
        );
        println!("1 passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!("0 passed, 1 failed");
        ExitCode::FAILURE
    }
}
