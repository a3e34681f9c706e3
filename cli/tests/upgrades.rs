//! The cluster version with real daemons: nodes claim the newest record
//! format they support (`--max-format`, the stand-in for an older build,
//! docs/upgrades.md), the managers agree on the lowest through Raft, `node
//! ls` and `node inspect` show each node's, the swarm's rises once its last
//! old node is upgraded, and a node too old for the swarm cannot join.

mod common;

use common::*;

const FORMAT: u32 = shoal_node::protocol::codec::FORMAT;

/// The cluster version, from `GET /swarm`.
fn swarm_format(d: &Daemon) -> Option<u64> {
    d.api("GET", "/swarm", None)
        .and_then(|(_, v)| v["Format"].as_u64())
}

/// Each node's FORMAT column in `node ls`, by hostname.
fn formats(d: &Daemon) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = d
        .rows(&["node", "ls"])
        .iter()
        .map(|r| {
            (
                r["Hostname"].as_str().unwrap_or("").to_string(),
                r["Format"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn the_swarm_runs_the_oldest_format_of_its_nodes_and_refuses_a_node_too_old() {
    // An "older build" starts the swarm: the swarm runs format 1.
    let mut manager = Daemon::start_on("127.0.0.2", "manager-1", &["--max-format", "1"]);
    manager.ok(&["swarm", "init"]);
    assert_eq!(swarm_format(&manager), Some(1));
    let token = manager
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();

    // A node of this build reads format 1: it joins.
    let worker = Daemon::start_on("127.0.0.3", "worker-1", &[]);
    assert!(join(&worker, &token, &manager).contains("joined a swarm as a worker"));
    wait_for("both nodes ready", LONG, || {
        let rows = manager.rows(&["node", "ls"]);
        rows.len() == 2 && rows.iter().all(|r| r["Status"] == "Ready")
    });
    assert_eq!(
        formats(&manager),
        [
            ("manager-1".to_string(), "1".to_string()),
            ("worker-1".to_string(), FORMAT.to_string())
        ]
    );
    assert_eq!(swarm_format(&manager), Some(1), "still the oldest node's");
    let table = manager.ok(&["node", "ls"]);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("FORMAT")),
        "{table}"
    );
    let inspect = manager.ok(&["node", "inspect", "worker-1"]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    assert_eq!(inspect[0]["Description"]["Format"], FORMAT);

    // The old node is upgraded (started again on the same data without the
    // cap): it registers with its new format, and the swarm moves up.
    manager.restart_with(&[]);
    wait_for("the swarm to run this build's format", LONG, || {
        swarm_format(&manager) == Some(u64::from(FORMAT))
    });
    assert_eq!(
        formats(&manager),
        [
            ("manager-1".to_string(), FORMAT.to_string()),
            ("worker-1".to_string(), FORMAT.to_string())
        ]
    );

    // Now a node that reads only format 1 is too old to join, and says why.
    let old = Daemon::start_on("127.0.0.4", "worker-2", &["--max-format", "1"]);
    let out = old.shoal(&["swarm", "join", "--token", &token, &manager.listen]);
    assert!(!out.status.success(), "an old node joined");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "this node supports record formats 1 to 1; the swarm runs format {FORMAT}: upgrade shoal on this node first"
        )),
        "{stderr}"
    );
    assert_eq!(
        manager.rows(&["node", "ls"]).len(),
        2,
        "the old node is not a member"
    );
    assert!(old.ok(&["info"]).contains("Swarm: inactive"));
}
