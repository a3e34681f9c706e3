//! Node density (issue 30), CI-sized: 300 sandboxed process tasks on one
//! node whose capacity is lowered with `--max-sandboxes`, so that the
//! ceiling is reached. The excess waits PENDING with docker's kind of
//! reason instead of failing, starts when capacity frees, and nothing of
//! a task's network (namespace, veth, port binding) outlives it, after a
//! `service rm` or a `kill -9` of the daemon.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Room for a debug build making and removing hundreds of namespaces on a
/// shared 2-core machine (a hang, not a timing target).
const SLOW: Duration = Duration::from_secs(240);
const CAPACITY: usize = 250;
const FULL: &str = "no suitable node (no network sandbox left on 1 node)";

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn sleepers(d: &Daemon, name: &str, replicas: usize) {
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        name,
        "--replicas",
        &replicas.to_string(),
        "--restart-delay",
        "0s",
        "--driver",
        "process",
        "/bin/sleep",
        "100000",
    ]);
}

fn state(t: &Value) -> &str {
    t["Status"]["State"].as_str().unwrap_or("")
}

/// The tasks of `services` in `states`.
fn count(d: &Daemon, services: &[&str], states: &[&str]) -> usize {
    services
        .iter()
        .flat_map(|s| d.tasks(s))
        .filter(|t| states.contains(&state(t)))
        .count()
}

/// Every task of `services` that failed or was rejected, for the assertion message.
fn failures(d: &Daemon, services: &[&str]) -> Vec<String> {
    services
        .iter()
        .flat_map(|s| d.tasks(s))
        .filter(|t| matches!(state(t), "failed" | "rejected"))
        .map(|t| format!("{}: {}", state(&t), t["Status"]["Err"]))
        .collect()
}

/// This node's task namespaces (`shn<tag>-…`).
fn namespaces(tag: &str) -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("shn{tag}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// The host ends of veths (`shv<task id>`) left for any task id in `ids`.
fn veths(ids: &BTreeSet<String>) -> Vec<String> {
    ids.iter()
        .map(|id| format!("shv{}", &id[..id.len().min(12)]))
        .filter(|link| std::path::Path::new("/sys/class/net").join(link).exists())
        .collect()
}

/// The task ports bound in this node's bridge table (`nft list set`).
fn bound_ports(tag: &str) -> usize {
    let out = std::process::Command::new("nft")
        .args(["list", "set", "bridge", &format!("shoalbr_{tag}"), "bound"])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .matches("\"shv")
        .count()
}

fn ids(d: &Daemon, services: &[&str]) -> BTreeSet<String> {
    services
        .iter()
        .flat_map(|s| d.tasks(s))
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_full_node_keeps_the_excess_pending_and_leaves_nothing_behind() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    // A capacity out of range is refused before the daemon starts.
    for bad in ["0", "1022", "many", "99999999999"] {
        let out = std::process::Command::new(shoal_bin())
            .args([
                "daemon",
                "--data-dir",
                "/nonexistent/shoal",
                "--max-sandboxes",
                bad,
            ])
            .output()
            .expect("run shoal daemon");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--max-sandboxes"),
            "{bad}: {err}"
        );
    }
    let mut d = Daemon::start(&["--max-sandboxes", &CAPACITY.to_string()]);
    d.ok(&["swarm", "init"]);
    let tag = std::fs::read_to_string(d.data_dir().join("net.json"))
        .ok()
        .and_then(|s| s.split('"').nth(3).map(str::to_string))
        .expect("net.json");
    // The node says how many it holds; docker has no such field, shoal's is
    // under its sandbox's description.
    let inspect = d.ok(&[
        "node",
        "inspect",
        "self",
        "--format",
        "{{json .Description.NetworkSandbox}}",
    ]);
    assert!(
        inspect.contains(&format!("\"MaxSandboxes\":{CAPACITY}")),
        "{inspect}"
    );

    // 300 tasks, 250 places: 50 wait, with the reason, and none fails.
    sleepers(&d, "big", 200);
    sleepers(&d, "small", 100);
    let both = ["big", "small"];
    wait_for("250 running and 50 pending", SLOW, || {
        count(&d, &both, &["running"]) == CAPACITY && count(&d, &both, &["pending"]) == 50
    });
    let pending: Vec<Value> = both
        .iter()
        .flat_map(|s| d.tasks(s))
        .filter(|t| state(t) == "pending")
        .collect();
    assert!(
        pending.iter().all(|t| t["Status"]["Err"] == FULL),
        "{:?}",
        pending
            .iter()
            .map(|t| &t["Status"]["Err"])
            .collect::<Vec<_>>()
    );
    assert!(pending
        .iter()
        .all(|t| t["NodeID"].as_str().is_none_or(str::is_empty)));
    let table = d.ok(&["service", "ps", "--no-trunc", "big"])
        + &d.ok(&["service", "ps", "--no-trunc", "small"]);
    assert!(table.contains(FULL), "service ps shows the reason: {table}");
    // They stay pending (the node does not take them and fail them).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&d, &both, &["running"]), CAPACITY);
    assert_eq!(failures(&d, &both), Vec::<String>::new());
    assert_eq!(namespaces(&tag).len(), CAPACITY);

    // Capacity frees when another service goes: the waiting ones start.
    let small_ids = ids(&d, &["small"]);
    d.ok(&["service", "rm", "small"]);
    wait_for("all of big running", SLOW, || {
        count(&d, &["big"], &["running"]) == 200
    });
    assert_eq!(failures(&d, &["big"]), Vec::<String>::new());
    wait_for("small's namespaces gone", SLOW, || {
        namespaces(&tag).len() == 200
    });
    assert_eq!(
        veths(&small_ids),
        Vec::<String>::new(),
        "small's veths are gone"
    );

    // kill -9: the restarted daemon removes what the dead one left, and
    // the service comes back in new sandboxes.
    let before = namespaces(&tag);
    let big_ids = ids(&d, &["big"]);
    d.kill9_and_restart();
    wait_for("big running again", SLOW, || {
        count(&d, &["big"], &["running"]) == 200 && namespaces(&tag).len() == 200
    });
    assert!(
        before.is_disjoint(&namespaces(&tag)),
        "the killed daemon's namespaces are gone"
    );
    assert_eq!(veths(&big_ids), Vec::<String>::new(), "its veths too");
    assert_eq!(bound_ports(&tag), 200, "one binding a live task");

    // service rm: nothing of any task is left.
    let all = ids(&d, &["big"]).union(&big_ids).cloned().collect();
    d.ok(&["service", "rm", "big"]);
    wait_for("no namespace left", SLOW, || namespaces(&tag).is_empty());
    wait_for("no veth left", SLOW, || veths(&all).is_empty());
    assert_eq!(bound_ports(&tag), 0, "no port binding left");
}
