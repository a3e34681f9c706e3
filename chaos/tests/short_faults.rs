//! End to end, a short run with the harness's newer parts: a traffic load
//! on a published port, register clients, a filled data filesystem (a
//! tmpfs the harness mounts, so this needs root) and a slow Raft log. The
//! run must pass, its journal must hold what each part recorded, and no
//! mount may be left behind. The long versions are documented runs
//! (docs/chaos.md), not tests.

use std::os::unix::process::CommandExt;
use std::process::Command;

use shoal_chaos::history::{Journal, RegKind};

const SCENARIO: &str = r#"
name = "short-faults"
description = "traffic, a register, a full disk and a slow one, briefly"
settle = "45s"

[cluster]
managers = 3
disk = "32M"

[[service]]
name = "web"
replicas = 2
publish = 30950

[[hypothesis]]
probe = "one-leader"

[[hypothesis]]
probe = "running"
service = "web"

[load]
rate = 5
services = 1

[traffic]
service = "web"
rate = 50
max_failed = 0

[register]
clients = 2
rate = 5

[[method]]
at = "1s"
action = "fill"
target = "random-follower"
bind = "full"
duration = "3s"

[[method]]
at = "6s"
action = "restart"
target = "full"

[[method]]
at = "9s"
action = "slow-disk"
target = "leader"
ms = 100
duration = "2s"
"#;

#[test]
fn traffic_a_register_and_disk_faults_pass_a_short_run_and_leave_no_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("short-faults.toml");
    std::fs::write(&file, SCENARIO).expect("write");
    let out_dir = dir.path().join("run");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-chaos"));
    cmd.args([
        "run",
        file.to_str().expect("path"),
        "--seed",
        "3",
        "--out",
        out_dir.to_str().expect("path"),
    ]);
    // SAFETY: one async-signal-safe call between fork and exec. If this
    // test dies, the runner (and through it every daemon) dies too.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run shoal-chaos");
    let show = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let run = out_dir.to_str().expect("path");
    assert!(
        !mounts.lines().any(|l| l.contains(run)),
        "a mount under {run} was left behind:\n{mounts}"
    );
    assert!(out.status.success(), "{show}");

    let text = std::fs::read_to_string(out_dir.join("journal.json")).expect("journal");
    let j: Journal = serde_json::from_str(&text).expect("journal parses");
    for proto in ["tcp", "udp"] {
        assert!(
            j.requests.iter().any(|r| r.proto == proto && r.ok),
            "{proto} requests answered"
        );
    }
    for kind in [RegKind::Write, RegKind::LocalRead, RegKind::BarrierRead] {
        assert!(
            j.register.iter().any(|o| o.kind == kind),
            "{kind:?} recorded"
        );
    }
    for action in ["fill", "unfill", "restart", "slow-disk", "fast-disk"] {
        assert!(
            j.faults.iter().any(|f| f.action == action && f.ok),
            "{action} ran: {:?}",
            j.faults
        );
    }
    let report = String::from_utf8_lossy(&out.stdout);
    for checker in ["traffic", "linearizable", "local-reads"] {
        assert!(
            report
                .lines()
                .any(|l| l.contains("PASS") && l.contains(checker)),
            "{checker} judged: {show}"
        );
    }
}
