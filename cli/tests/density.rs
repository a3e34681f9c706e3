//! Node density (issue 30), CI-sized: 300 sandboxed process tasks on one
//! node whose capacity is lowered with `--max-sandboxes`, so that the
//! ceiling is reached. The excess waits PENDING with docker's kind of
//! reason instead of failing, starts when capacity frees, and nothing of
//! a task's network (namespace, veth, route, nftables element) outlives
//! it, after a `service rm` or a `kill -9` of the daemon. Blocks take 100
//! tasks each here (`--sandbox-block-hosts`), so the node claims blocks
//! as it fills and gives them back as it empties.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Room for a debug build making and removing hundreds of namespaces on a
/// shared 2-core machine (a hang, not a timing target).
const SLOW: Duration = Duration::from_secs(240);
const CAPACITY: usize = 250;
const BLOCK: usize = 100;
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

/// The host ends of this node's task veths (`sv<tag>…`).
fn veths(tag: &str) -> usize {
    std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("sv{tag}"))
                })
                .count()
        })
        .unwrap_or_default()
}

/// `ip -4 route show` lines through this node's task veths.
fn routes(tag: &str) -> usize {
    let out = std::process::Command::new("ip")
        .args(["-4", "route", "show"])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dev sv{tag}")))
        .count()
}

/// The blocks this node holds: the addresses on its claim link `shb<tag>`.
fn blocks(tag: &str) -> usize {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &format!("shb{tag}")])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The elements of a set of this node's table (`nft list set`) naming a
/// task veth.
fn elements(tag: &str, set: &str) -> usize {
    let out = std::process::Command::new("nft")
        .args(["list", "set", "ip", &format!("shoal_{tag}"), set])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .matches(&format!("\"sv{tag}"))
        .count()
}

/// Everything of this node's tasks in the kernel: namespaces, veths,
/// routes, the two sets' elements.
fn kernel(tag: &str) -> [usize; 5] {
    [
        namespaces(tag).len(),
        veths(tag),
        routes(tag),
        elements(tag, "tasks"),
        elements(tag, "bound"),
    ]
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
    for bad in ["0", "8169", "many", "99999999999"] {
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
    let mut d = Daemon::start(&[
        "--max-sandboxes",
        &CAPACITY.to_string(),
        "--sandbox-block-hosts",
        &BLOCK.to_string(),
    ]);
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
    assert_eq!(kernel(&tag), [CAPACITY; 5]);
    assert_eq!(
        blocks(&tag),
        CAPACITY.div_ceil(BLOCK),
        "blocks claimed as needed"
    );

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
    wait_for("small's veths, routes and elements gone", SLOW, || {
        kernel(&tag) == [200; 5]
    });
    let left = namespaces(&tag);
    assert!(
        small_ids
            .iter()
            .all(|id| !left.iter().any(|n| n.ends_with(&id[..12]))),
        "small's namespaces are gone"
    );

    // kill -9: the restarted daemon removes what the dead one left, and
    // the service comes back in new sandboxes.
    let before = namespaces(&tag);
    d.kill9_and_restart();
    wait_for("big running again", SLOW, || {
        count(&d, &["big"], &["running"]) == 200 && namespaces(&tag).len() == 200
    });
    assert!(
        before.is_disjoint(&namespaces(&tag)),
        "the killed daemon's namespaces are gone"
    );
    assert_eq!(kernel(&tag), [200; 5], "its veths, routes and elements too");
    assert_eq!(blocks(&tag), 2);

    // service rm: nothing of any task is left, and the blocks but the
    // first are given back.
    d.ok(&["service", "rm", "big"]);
    wait_for("nothing left", SLOW, || kernel(&tag) == [0; 5]);
    assert_eq!(blocks(&tag), 1, "the blocks but the first given back");
}

/// `swarm update --task-history-limit 2`: a service whose program fails at
/// once keeps being replaced, yet its slot never keeps more than two tasks
/// (the newest), so a failing service does not grow the state; `info`
/// shows the limit.
#[test]
fn swarm_update_task_history_limit_bounds_what_a_failing_slot_keeps() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let out = d.shoal(&["swarm", "update", "--task-history-limit", "-1"]);
    assert!(!out.status.success());
    d.ok(&["swarm", "update", "--task-history-limit", "2"]);
    let info = d.ok(&["info"]);
    assert!(info.contains("Task History Retention Limit: 2"), "{info}");
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "failing",
        "--restart-delay",
        "0s",
        "--network",
        "host",
        "--driver",
        "process",
        "/bin/false",
    ]);
    let mut seen = BTreeSet::new();
    wait_for("six tasks made and failed in turn", SLOW, || {
        seen.extend(ids(&d, &["failing"]));
        seen.len() >= 6
    });
    wait_for("the slot down to its two newest tasks", SLOW, || {
        d.tasks("failing").len() <= 2
    });
}
