//! The README's quickstart, run as written against a real daemon: the one
//! block of shell under "## Quickstart", with only the socket path pointed
//! at this test's daemon and the `cargo build` line left to the test runner
//! (which has just built every binary the block uses).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{shoal_bin, Daemon};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The shell block under the README's "## Quickstart" heading.
fn quickstart_block() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    let section = readme
        .split("## Quickstart")
        .nth(1)
        .expect("a Quickstart section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a sh block in the Quickstart section");
    block.to_string()
}

#[test]
fn the_readme_quickstart_works_as_written() {
    let d = Daemon::start(&[]);
    let block = quickstart_block();
    assert!(
        block.contains("unix:///tmp/shoal.sock"),
        "the quickstart names the daemon's socket:\n{block}"
    );
    let script: String = block
        .replace(
            "unix:///tmp/shoal.sock",
            &format!("unix://{}", d.socket.display()),
        )
        .lines()
        .filter(|line| !line.trim_start().starts_with("cargo "))
        .map(|line| format!("{line}\n"))
        .collect();
    // Where cargo put the binaries, as the block's ${CARGO_TARGET_DIR:-target} reads it.
    let target = shoal_bin()
        .parent()
        .and_then(|debug| debug.parent())
        .expect("the target directory")
        .to_path_buf();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\nshopt -s expand_aliases\n{script}"
        ))
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("SHOAL_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the quickstart failed:\n--- script ---\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- daemon ---\n{}",
        d.log_tail()
    );
    for expected in [
        "Swarm: inactive",
        "Swarm initialized: current node (",
        "verify: Service web converged",
        "web scaled to 5",
        "| shoal-echo",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout.lines().last(),
        Some("web"),
        "service rm prints the name"
    );
}
