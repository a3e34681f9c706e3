//! End to end: shoal-chaos starts a real cluster (separate `shoal daemon`
//! processes), runs the shipped smoke scenario against it and must pass;
//! a scenario whose steady state never holds must fail with a reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shoal_chaos::history::{Journal, Outcome};

mod common;

fn chaos(args: &[&str]) -> Output {
    common::chaos(args).output().expect("run shoal-chaos")
}

/// `shoal-chaos run FILE --seed SEED`, its output going beside the file.
fn run_file(file: &Path, seed: &str) -> (Output, PathBuf) {
    let out_dir = file.with_extension("run");
    (common::run_file(file, seed, &out_dir), out_dir)
}

fn journal(dir: &Path) -> Journal {
    let text = std::fs::read_to_string(dir.join("journal.json")).expect("journal.json written");
    serde_json::from_str(&text).expect("journal parses")
}

fn show(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_smoke_scenario_passes_against_a_real_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir: PathBuf = dir.path().join("run");
    let out = chaos(&[
        "run",
        "smoke",
        "--seed",
        "7",
        "--out",
        out_dir.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "smoke failed:\n{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("RESULT: PASS"), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("seed 7"),
        "the seed is printed"
    );

    let j = journal(&out_dir);
    let actions: Vec<&str> = j.faults.iter().map(|f| f.action.as_str()).collect();
    for want in [
        "kill",
        "start",
        "kill-actor",
        "partition",
        "heal",
        "pause",
        "resume",
    ] {
        assert!(actions.contains(&want), "no {want} in {actions:?}");
    }
    assert!(
        j.faults.iter().all(|f| f.ok),
        "every fault was injected: {:?}",
        j.faults
    );
    let acked = j.ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
    assert!(
        acked >= 20,
        "the load wrote: only {acked} acknowledged writes"
    );
    assert!(j
        .ops
        .iter()
        .any(|o| o.client == "method" && o.kind == "scale"));
    assert!(
        j.observations.len() >= 40,
        "observed throughout: {}",
        j.observations.len()
    );
    assert!(
        j.observations.iter().any(|o| !o.processes.is_empty()),
        "task processes were seen"
    );
    assert!(j
        .final_state
        .as_ref()
        .is_some_and(|f| f.services.contains_key("web")));
    let svg = std::fs::read_to_string(out_dir.join("timeline.svg")).expect("timeline.svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("kill"),
        "the timeline marks faults"
    );

    // The journal can be judged again, without the cluster.
    let again = chaos(&[
        "report",
        out_dir.join("journal.json").to_str().expect("path"),
    ]);
    assert!(again.status.success(), "{}", show(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("RESULT: PASS"));
}

#[test]
fn a_steady_state_that_never_holds_fails_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ghost.toml");
    std::fs::write(
        &file,
        r#"
name = "ghost"
description = "probes a service nobody created"
settle = "3s"
[cluster]
managers = 1
[[hypothesis]]
probe = "running"
service = "ghost"
[[method]]
at = "0s"
action = "kill"
target = "leader"
"#,
    )
    .expect("write");
    let (out, out_dir) = run_file(&file, "1");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("RESULT: FAIL"), "{}", show(&out));
    assert!(stdout.contains("service ghost not found"), "{}", show(&out));
    let j = journal(&out_dir);
    assert!(
        j.faults.is_empty(),
        "nothing is injected when the steady state does not hold first"
    );
}

#[test]
fn a_bad_scenario_is_refused_before_anything_starts() {
    let out = chaos(&["run", "no-such-scenario"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shoal-chaos list"),
        "{}",
        show(&out)
    );
    let list = chaos(&["list"]);
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("smoke"));
}

/// A daemon this test starts itself, for the harness to attach to.
struct Daemon {
    socket: PathBuf,
    data: PathBuf,
    child: std::process::Child,
}

fn shoal_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_shoal-chaos")).with_file_name("shoal")
}

fn daemon(dir: &Path, name: &str, ip: &str) -> Daemon {
    let port = std::net::UdpSocket::bind(format!("{ip}:0"))
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let socket = dir.join(format!("{name}.sock"));
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let mut cmd = Command::new(shoal_bin());
    cmd.arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args([
            "daemon",
            "--hostname",
            name,
            "--enable-chaos",
            "--listen-addr",
        ])
        .arg(format!("{ip}:{port}"))
        .arg("--data-dir")
        .arg(dir.join(name))
        .stderr(log);
    let child = cmd.spawn().expect("start shoal daemon");
    let d = Daemon {
        socket,
        data: dir.join(name),
        child,
    };
    let start = std::time::Instant::now();
    while api(&d.socket, "GET", "/_ping", "").is_none() {
        assert!(start.elapsed().as_secs() < 20, "{name} did not answer");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    d
}

fn api(socket: &Path, method: &str, path: &str, body: &str) -> Option<serde_json::Value> {
    let v = if method == "GET" {
        shoal_chaos::api::get(socket, path, std::time::Duration::from_secs(10))
    } else {
        let body: serde_json::Value = serde_json::from_str(body).ok()?;
        shoal_chaos::api::post(socket, path, &body, std::time::Duration::from_secs(30))
    };
    v.ok()
}

/// Kills whatever daemon answers on `socket` (the harness may have started
/// it again, so it is not necessarily our child).
fn kill_daemon_at(socket: &Path) {
    if let Some(pid) = api(socket, "GET", "/info", "").and_then(|i| i["Pid"].as_i64()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_daemon_at(&self.socket);
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The killed daemon's tasks leave their network namespaces behind.
        let _ = Command::new(shoal_bin())
            .arg("daemon")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--clean-sandbox")
            .status();
    }
}

#[test]
fn an_existing_cluster_is_attached_by_its_sockets_and_left_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = daemon(dir.path(), "ext-manager", "127.0.0.60");
    let w = daemon(dir.path(), "ext-worker", "127.0.0.61");
    api(&m.socket, "POST", "/swarm/init", "{}").expect("swarm init");
    let info = api(&m.socket, "GET", "/info", "").expect("info");
    let addr = info
        .pointer("/Swarm/NodeAddr")
        .and_then(|a| a.as_str())
        .expect("addr")
        .to_string();
    let swarm = api(&m.socket, "GET", "/swarm", "").expect("swarm");
    let token = swarm
        .pointer("/JoinTokens/Worker")
        .and_then(|t| t.as_str())
        .expect("token");
    api(
        &w.socket,
        "POST",
        "/swarm/join",
        &serde_json::json!({"JoinToken": token, "RemoteAddrs": [addr]}).to_string(),
    )
    .expect("join");

    let file = dir.path().join("attach.toml");
    std::fs::write(
        &file,
        format!(
            r#"
name = "attach"
description = "kills the worker of a cluster the harness did not start"
settle = "30s"
[cluster]
hosts = ["unix://{}", "unix://{}"]
[[service]]
name = "web"
replicas = 2
[[hypothesis]]
probe = "running"
service = "web"
[[hypothesis]]
probe = "nodes-ready"
[[method]]
at = "1s"
action = "kill"
target = "random-worker"
duration = "2s"
"#,
            m.socket.display(),
            w.socket.display()
        ),
    )
    .expect("write");
    let (out, out_dir) = run_file(&file, "3");
    assert!(out.status.success(), "{}", show(&out));
    let j = journal(&out_dir);
    let kill = j
        .faults
        .iter()
        .find(|f| f.action == "kill")
        .expect("a kill");
    assert_eq!(kill.nodes, vec!["ext-worker".to_string()]);
    assert!(
        j.faults.iter().any(|f| f.action == "start" && f.ok),
        "{:?}",
        j.faults
    );
    // The harness started the worker again from its recorded command line,
    // and leaves the cluster running when it is done.
    assert!(
        api(&w.socket, "GET", "/_ping", "").is_some(),
        "the worker runs again"
    );
    assert!(
        api(&m.socket, "GET", "/_ping", "").is_some(),
        "the manager still runs"
    );
}
