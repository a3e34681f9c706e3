//! End to end: a manager whose data filesystem fills (a tmpfs the harness
//! mounts, so this needs root) refuses writes through it with the 503 that
//! says it cannot persist, and once the space is freed the same process —
//! the scenario restarts nothing — opens its store again, catches up and
//! acknowledges writes through it; no acknowledged write is lost
//! (`acknowledged-writes`, judged by the run).

use std::os::unix::process::CommandExt;
use std::process::Command;

use shoal_chaos::history::{Journal, Outcome};

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
    let file = dir.path().join("disk-recovers.toml");
    std::fs::write(&file, SCENARIO).expect("write");
    let out_dir = dir.path().join("run");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-chaos"));
    cmd.args([
        "run",
        file.to_str().expect("path"),
        "--seed",
        "5",
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
