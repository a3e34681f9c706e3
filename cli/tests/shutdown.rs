//! A daemon's stop: on SIGTERM it stops its parts in order (the node's
//! front, the worker part, the manager part, the network stack, the host
//! state, the store), exits, and leaves no listening socket, sandbox or
//! task process behind; started again, it carries on from what it flushed.

mod common;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn sigterm_stops_the_node_part_by_part_and_leaves_nothing_behind() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let mut d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let token = token("shutdown");
    let port = free_tcp_port();
    let publish = format!("{port}:80");
    d.create_echo(
        "web",
        "1",
        &["-p", &publish],
        &["--port", "80", "--print", &token],
    );
    wait_for("the task to run", LONG, || running(&d, "web") == 1);
    wait_for("its process", LONG, || !pids_with(&token).is_empty());
    let ip = d.listen.split(':').next().unwrap_or_default().to_string();
    wait_for("the published port to answer", LONG, || {
        echo_task_at(&format!("{ip}:{port}")).is_some()
    });
    let tag = std::fs::read_to_string(d.data_dir().join("net.json"))
        .ok()
        .and_then(|s| s.split('"').nth(3).map(str::to_string))
        .expect("net.json");
    assert!(
        std::path::Path::new(&format!("/sys/class/net/shb{tag}")).exists(),
        "the sandbox's claim link is up while the daemon runs"
    );

    let status = d.terminate();
    assert!(status.success(), "the daemon exits cleanly: {status}");

    let log = std::fs::read_to_string(d.dir.path().join("daemon.log")).expect("daemon log");
    let steps: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("shutting down part=").nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(
        steps,
        ["front", "worker", "manager", "network", "host", "store"],
        "the parts stop in order:\n{log}"
    );
    assert!(log.contains("node stopped"), "{log}");

    // Nothing listens any more: not the control socket, the cluster port
    // or the published port.
    assert!(!d.socket.exists(), "the control socket is removed");
    UdpSocket::bind(&d.listen).expect("the cluster port is free");
    assert!(
        TcpStream::connect((ip.as_str(), port)).is_err(),
        "the published port is closed"
    );
    TcpListener::bind((ip.as_str(), port)).expect("the published port is free");
    // No task process, namespace, link or table of this daemon's.
    wait_for("the task's processes to be gone", LONG, || {
        pids_with(&token).is_empty()
    });
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("shn{tag}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/shb{tag}")).exists(),
        "the sandbox's claim link is gone"
    );
    let table = std::process::Command::new("nft")
        .args(["list", "table", "ip", &format!("shoal_{tag}")])
        .output();
    if let Ok(out) = table {
        assert!(
            !out.status.success(),
            "the sandbox's nftables table is gone: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // What it flushed is what it starts from: the same swarm, the same
    // service, its task running again.
    d.kill9_and_restart();
    wait_for("the task to run again", LONG, || running(&d, "web") == 1);
}
