//! End to end: a manager whose data filesystem fills (a tmpfs the harness
//! mounts, so this needs root) refuses writes through it with the 503 that
//! says it cannot persist, and once the space is freed the same process —
//! the scenario restarts nothing — opens its store again, catches up and
//! acknowledges writes through it; no acknowledged write is lost
//! (`acknowledged-writes`, judged by the run).

mod common;

use shoal_chaos::history::Outcome;

const SCENARIO: &str = r#"
name = "disk-recovers"
description = "a full leader recovers in place once space returns"
settle = "45s"

[cluster]
managers = 3
disk = "32M"

[[hypothesis]]
probe = "one-leader"

[[hypothesis]]
probe = "write"
within = "2s"

[load]
rate = 10
services = 1

[[method]]
at = "1s"
action = "fill"
target = "leader"
bind = "full"
duration = "8s"
"#;

#[test]
fn a_full_manager_refuses_writes_then_takes_them_again_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = common::run_scenario(dir.path(), "disk-recovers", SCENARIO, "5");
    let show = &run.show;
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let under = dir.path().join("run");
    let under = under.to_str().expect("path");
    assert!(
        !mounts.lines().any(|l| l.contains(under)),
        "a mount under {under} was left behind:\n{mounts}"
    );
    assert!(run.out.status.success(), "{show}");
    assert!(common::passed(&run, "acknowledged-writes"), "{show}");
    let j = run.journal.as_ref().expect("journal");
    let actions: Vec<&str> = j.faults.iter().map(|f| f.action.as_str()).collect();
    assert_eq!(actions, ["fill", "unfill"], "nothing restarted: {show}");
    let (fill, unfill) = (&j.faults[0], &j.faults[1]);
    assert!(fill.ok && unfill.ok, "{show}");
    let full = &fill.nodes[0];
    let through: Vec<_> = j.ops.iter().filter(|o| &o.via == full).collect();
    assert!(
        through.iter().any(|o| o.sent >= fill.done
            && o.sent < unfill.at
            && o.status == Some(503)
            && o.error.contains("cannot persist")),
        "a write through the full manager refused with the 503: {show}"
    );
    assert!(
        through
            .iter()
            .any(|o| o.sent >= unfill.done && o.outcome == Outcome::Ok),
        "a write through it acknowledged after the space came back: {show}"
    );
}
