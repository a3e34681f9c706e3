//! End to end, a short run with the harness's newer parts: a traffic load
//! on a published port, register clients, a filled data filesystem (a
//! tmpfs the harness mounts, so this needs root) and a slow Raft log. The
//! run must pass, its journal must hold what each part recorded, and no
//! mount may be left behind. The long versions are documented runs
//! (docs/chaos.md), not tests.

mod common;

use shoal_chaos::history::RegKind;

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
    let run = common::run_scenario(dir.path(), "short-faults", SCENARIO, "3");
    let (out, show) = (&run.out, &run.show);
    let out_dir = dir.path().join("run");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let under = out_dir.to_str().expect("path");
    assert!(
        !mounts.lines().any(|l| l.contains(under)),
        "a mount under {under} was left behind:\n{mounts}"
    );
    assert!(out.status.success(), "{show}");

    let j = run.journal.as_ref().expect("journal");
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
    for checker in ["traffic", "linearizable", "local-reads"] {
        assert!(common::passed(&run, checker), "{checker} judged: {show}");
    }
}
