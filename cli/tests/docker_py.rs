//! docker-py (the `docker` package on PyPI, installed by `.ci/run`),
//! unmodified, against a real shoal daemon: the steps are in
//! `docker_py/swarm.py`, which asserts what the SDK hands back.

mod common;

use std::process::Command;

use common::images::{build_image, engine, Cleanup, IMAGE};
use common::Daemon;

#[test]
fn docker_py_inits_a_swarm_and_manages_services_secrets_configs_networks_nodes_and_events() {
    let Some(engine) = engine() else { return };
    build_image(&engine);
    let _cleanup = Cleanup(engine, vec!["pyweb", "pymount", "pyopts", "pylog"]);
    let d = Daemon::start(&[]);
    let has_sdk = Command::new("python3")
        .args(["-c", "import docker"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_sdk,
        "docker-py is missing: pip install docker==7.1.0 (.ci/run does)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker_py/swarm.py");
    // A listen address of the SDK's choosing, as test suites pass one.
    let port = common::free_tcp_port();
    let out = Command::new("python3")
        .arg(script)
        .arg(&d.socket)
        .arg(format!("127.0.0.1:{port}"))
        .arg(IMAGE)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "docker-py failed:\n{}{}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log_tail()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all steps passed"));
}
