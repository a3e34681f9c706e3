//! End-to-end across separate node processes, each on its own 127.0.0.x
//! address, data directory and control socket, talking QUIC with mutual TLS.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{cluster, echo_bin, join, pids_with, running, token, wait_for, Daemon, LONG};

fn leaders(d: &Daemon) -> Vec<String> {
    d.rows(&["node", "ls"])
        .iter()
        .filter(|r| r["ManagerStatus"] == "Leader")
        .map(|r| r["Hostname"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Running tasks per node hostname.
fn spread(d: &Daemon, service: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in d.rows(&["service", "ps", service]) {
        if r["DesiredState"] == "Running"
            && r["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Running"))
        {
            *m.entry(r["Node"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
    }
    m
}

#[test]
fn three_managers_two_workers_form_spread_and_survive_leader_loss() {
    let mut nodes = cluster(3, 2, &["--restart-delay", "0s"][..0]);
    let rows = nodes[0].rows(&["node", "ls"]);
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows.iter()
            .filter(|r| !r["ManagerStatus"].as_str().unwrap_or("").is_empty())
            .count(),
        3
    );
    assert_eq!(leaders(&nodes[0]), vec!["manager-1".to_string()]);
    // Every manager sees the same swarm; a worker is told it is not a manager.
    assert_eq!(nodes[2].rows(&["node", "ls"]).len(), 5);
    assert!(nodes[3]
        .fails(&["node", "ls"])
        .contains("This node is not a swarm manager."));
    let t = nodes[0].ok(&["swarm", "join-token", "-q", "worker"]);
    assert!(
        t.trim().starts_with("SWMTKN-1-") && t.lines().count() == 1,
        "{t}"
    );

    // A wrong token is refused and leaves no trace.
    let stranger = Daemon::start_on("127.0.0.9", "stranger", &[]);
    let t = t.trim();
    let last = if t.ends_with('x') { 'y' } else { 'x' };
    let bad = format!("{}{last}", &t[..t.len() - 1]);
    let err = stranger.fails(&["swarm", "join", "--token", &bad, &nodes[0].listen]);
    assert!(err.contains("invalid join token"), "{err}");
    assert!(stranger.ok(&["info"]).contains("Swarm: inactive"));
    assert_eq!(nodes[0].rows(&["node", "ls"]).len(), 5);

    // Six replicas spread over five nodes: no node has two more than another.
    let tok = token("spread");
    let echo = echo_bin();
    nodes[1].create_echo("web", "6", &["--restart-delay", "0s"], &["--print", &tok]);
    wait_for("6 running", LONG, || running(&nodes[0], "web") == 6);
    let s = spread(&nodes[0], "web");
    assert_eq!(s.len(), 5, "every node runs a replica: {s:?}");
    assert!(s.values().all(|n| (1..=2).contains(n)), "{s:?}");
    // Logs come from every node that runs a task, read through the transport.
    wait_for("logs from all five nodes", LONG, || {
        let logs = nodes[1].ok(&["service", "logs", "web"]);
        [
            "manager-1",
            "manager-2",
            "manager-3",
            "worker-1",
            "worker-2",
        ]
        .iter()
        .all(|h| {
            logs.lines()
                .any(|l| l.contains(&format!("@{h} ")) && l.contains("shoal-echo task="))
        })
    });

    // kill -9 the leader: a new one is elected and writes work on a survivor.
    let killed = Instant::now();
    nodes[0].kill9();
    let took = wait_for("a write on a surviving manager", LONG, || {
        nodes[1]
            .shoal(&[
                "service",
                "create",
                "-d",
                "--name",
                "after",
                "--driver",
                "process",
                echo.to_str().expect("path"),
                "--print",
                &tok,
            ])
            .status
            .success()
    });
    eprintln!("leader kill -> write accepted on a survivor: {took:?}");
    let _ = killed;
    let l = leaders(&nodes[1]);
    assert_eq!(l.len(), 1, "exactly one leader: {l:?}");
    assert_ne!(l[0], "manager-1");
    let names: Vec<String> = nodes[2]
        .rows(&["service", "ls"])
        .iter()
        .map(|r| r["Name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        names.contains(&"web".to_string()) && names.contains(&"after".to_string()),
        "{names:?}"
    );
    // The dead leader's replica runs elsewhere, and the cluster sees it down.
    wait_for("web back to 6 running", LONG, || {
        running(&nodes[1], "web") == 6
    });
    wait_for("manager-1 down", LONG, || {
        nodes[1]
            .rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "manager-1" && r["Status"] == "Down")
    });
    // 6 web + 1 after, and none left from the killed node.
    wait_for("7 task processes", LONG, || pids_with(&tok).len() == 7);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        pids_with(&tok).len(),
        7,
        "{}\n{}",
        common::describe(&tok),
        nodes[1].ok(&["service", "ps", "web", "after"])
    );
}

#[test]
fn a_lost_worker_s_tasks_move_and_its_return_duplicates_nothing() {
    let mut nodes = cluster(1, 2, &[]);
    let tok = token("wloss");
    nodes[0].create_echo("web", "4", &["--restart-delay", "0s"], &["--print", &tok]);
    wait_for("4 running", LONG, || running(&nodes[0], "web") == 4);
    let on_worker = spread(&nodes[0], "web")
        .get("worker-1")
        .copied()
        .unwrap_or(0);
    assert!(on_worker > 0, "worker-1 runs some replicas");

    nodes[1].kill9();
    let took = wait_for("all replicas running elsewhere", LONG, || {
        let s = spread(&nodes[0], "web");
        !s.contains_key("worker-1") && s.values().sum::<usize>() == 4
    });
    eprintln!("worker kill -> all replicas running elsewhere: {took:?}");
    assert_eq!(pids_with(&tok).len(), 4);

    // It comes back Ready, stops what was replaced, and no slot runs twice.
    nodes[1].kill9_and_restart();
    wait_for("worker-1 ready again", LONG, || {
        nodes[0]
            .rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "worker-1" && r["Status"] == "Ready")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(running(&nodes[0], "web"), 4);
    let mut per_slot: HashMap<u64, usize> = HashMap::new();
    for t in nodes[0].tasks("web") {
        if t["Status"]["State"] == "running" && t["DesiredState"] == "running" {
            *per_slot.entry(t["Slot"].as_u64().unwrap_or(0)).or_default() += 1;
        }
    }
    assert!(
        per_slot.values().all(|n| *n == 1) && per_slot.len() == 4,
        "{per_slot:?}"
    );
    assert_eq!(pids_with(&tok).len(), 4, "no replaced task still running");
}

#[test]
fn tokens_rotate_nodes_drain_pause_leave_and_removed_nodes_stay_out() {
    let mut nodes = cluster(1, 2, &[]);
    let mut worker2 = nodes.pop().expect("worker-2");
    let m = &nodes[0];
    // Rotation: the old worker token is refused, the new one works.
    let old = m
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let out = m.ok(&["swarm", "join-token", "--rotate", "worker"]);
    assert!(
        out.contains("Successfully rotated worker join token."),
        "{out}"
    );
    let new = m
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    assert_ne!(old, new);
    let late = Daemon::start_on("127.0.0.9", "late", &[]);
    assert!(late
        .fails(&["swarm", "join", "--token", &old, &m.listen])
        .contains("invalid join token"));
    assert_eq!(m.rows(&["node", "ls"]).len(), 3);
    join(&late, &new, m);
    wait_for("late ready", LONG, || m.rows(&["node", "ls"]).len() == 4);

    // Drain: tasks leave the node. Pause: it takes no new ones.
    let tok = token("drain");
    m.create_echo("web", "4", &[], &["--print", &tok]);
    wait_for("4 running", LONG, || running(m, "web") == 4);
    assert_eq!(
        m.ok(&["node", "update", "--availability", "drain", "worker-1"])
            .trim(),
        "worker-1"
    );
    wait_for("worker-1 drained", LONG, || {
        let s = spread(m, "web");
        !s.contains_key("worker-1") && s.values().sum::<usize>() == 4
    });
    assert_eq!(pids_with(&tok).len(), 4, "drained tasks were stopped");
    m.ok(&[
        "node",
        "update",
        "--availability",
        "pause",
        "worker-2",
        "--label-add",
        "zone=b",
    ]);
    m.ok(&["service", "scale", "-d", "web=8"]);
    wait_for("8 running", LONG, || running(m, "web") == 8);
    let s = spread(m, "web");
    assert!(!s.contains_key("worker-1"), "{s:?}");
    let inspect: serde_json::Value =
        serde_json::from_str(&m.ok(&["node", "inspect", "worker-2"])).expect("json");
    assert_eq!(inspect[0]["Spec"]["Availability"], "pause");
    assert_eq!(inspect[0]["Spec"]["Labels"]["zone"], "b");

    // A node that is not down cannot be removed without --force.
    let err = m.fails(&["node", "rm", "late"]);
    assert!(err.contains("is not down and can't be removed"), "{err}");
    let err = m.fails(&["node", "rm", "manager-1"]);
    assert!(
        err.contains("must be demoted to worker before removal"),
        "{err}"
    );

    // A worker leaves; the manager must be forced.
    assert_eq!(late.ok(&["swarm", "leave"]).trim(), "Node left the swarm.");
    assert!(late.ok(&["info"]).contains("Swarm: inactive"));
    let err = m.fails(&["swarm", "leave"]);
    assert!(
        err.contains("--force-new-cluster") && err.contains("Use `--force`"),
        "{err}"
    );

    // A down node is removed, and cannot come back with its old certificate.
    worker2.kill9();
    wait_for("worker-2 down", LONG, || {
        m.rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "worker-2" && r["Status"] == "Down")
    });
    m.ok(&["node", "rm", "worker-2"]);
    assert!(!m.ok(&["node", "ls"]).contains("worker-2"));
    worker2.kill9_and_restart();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !m.ok(&["node", "ls"]).contains("worker-2"),
        "a removed node must stay out"
    );
    wait_for("8 running", LONG, || running(m, "web") == 8);
}

#[test]
fn losing_quorum_fails_writes_fast_and_force_new_cluster_recovers() {
    let mut nodes = cluster(3, 0, &[]);
    let tok = token("quorum");
    nodes[0].create_echo("web", "3", &[], &["--print", &tok]);
    wait_for("3 running", LONG, || running(&nodes[0], "web") == 3);
    nodes[1].kill9();
    nodes[2].kill9();
    // Without quorum a write fails, with a clear message, within a few seconds.
    let started = Instant::now();
    let out = nodes[0].shoal(&["service", "scale", "-d", "web=4"]);
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Make sure more than half of the managers are online."),
        "{err}"
    );
    assert!(took < Duration::from_secs(15), "failed after {took:?}");
    eprintln!("write without quorum failed after {took:?}");

    let out = nodes[0].ok(&["swarm", "init", "--force-new-cluster"]);
    assert!(out.contains("is now a manager"), "{out}");
    wait_for("writes to work again", LONG, || {
        nodes[0]
            .shoal(&["service", "scale", "-d", "web=4"])
            .status
            .success()
    });
    let ls = nodes[0].rows(&["service", "ls"]);
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0]["Name"], "web");
    wait_for("4 running", LONG, || running(&nodes[0], "web") == 4);
}

#[test]
fn promote_a_worker_and_demote_a_manager() {
    let nodes = cluster(2, 1, &[]);
    let m = &nodes[0];
    let out = m.ok(&["node", "promote", "worker-1"]);
    assert!(
        out.contains("Node worker-1 promoted to a manager in the swarm."),
        "{out}"
    );
    wait_for("3 managers", LONG, || {
        m.rows(&["node", "ls"])
            .iter()
            .filter(|r| !r["ManagerStatus"].as_str().unwrap_or("").is_empty())
            .count()
            == 3
    });
    // The promoted node now answers manager commands with the replicated state.
    wait_for("worker-1 serves node ls", LONG, || {
        nodes[2].shoal(&["node", "ls"]).status.success()
            && nodes[2].rows(&["node", "ls"]).len() == 3
    });
    assert!(nodes[2].ok(&["info"]).contains("Is Manager: true"));
    // It is a voter: a write through it commits.
    nodes[2].create_echo("via-promoted", "1", &[], &[]);

    let out = m.ok(&["node", "demote", "manager-2"]);
    assert!(
        out.contains("Manager manager-2 demoted in the swarm."),
        "{out}"
    );
    wait_for("manager-2 is a worker", LONG, || {
        m.rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "manager-2" && r["ManagerStatus"] == "")
    });
    wait_for("manager-2 refuses manager commands", LONG, || {
        nodes[1]
            .fails(&["node", "ls"])
            .contains("This node is not a swarm manager.")
    });
    // Writes still commit with the two voters left.
    m.ok(&["service", "scale", "-d", "via-promoted=2"]);
    // Down to one manager, which cannot be demoted.
    m.ok(&["node", "demote", "worker-1"]);
    let err = m.fails(&["node", "demote", "manager-1"]);
    assert!(
        err.contains("attempting to demote the last manager of the swarm"),
        "{err}"
    );
    m.ok(&["service", "scale", "-d", "via-promoted=1"]);
}

#[test]
fn certificates_are_renewed_before_they_expire() {
    let nodes = cluster(1, 1, &["--cert-expiry", "12s"]);
    let cert =
        |d: &Daemon| std::fs::read_to_string(d.data_dir().join("certs/node.crt")).expect("cert");
    let (m0, w0) = (cert(&nodes[0]), cert(&nodes[1]));
    wait_for("both certificates renewed", LONG, || {
        cert(&nodes[0]) != m0 && cert(&nodes[1]) != w0
    });
    // Well past the first certificates' expiry, the worker still talks to the manager.
    std::thread::sleep(Duration::from_secs(13));
    let tok = token("renew");
    nodes[0].create_echo("web", "2", &[], &["--print", &tok]);
    wait_for("2 running, one on the worker", LONG, || {
        let s = spread(&nodes[0], "web");
        running(&nodes[0], "web") == 2 && s.contains_key("worker-1")
    });
    assert!(nodes[0]
        .rows(&["node", "ls"])
        .iter()
        .all(|r| r["Status"] == "Ready"));
}

#[test]
fn garbage_and_oversized_frames_from_an_authenticated_peer_do_not_crash_a_node() {
    use shoal_node::ca::RootCa;
    use shoal_node::transport::{Transport, TransportConfig};

    let nodes = cluster(1, 0, &[]);
    let m = &nodes[0];
    // A peer with a genuine certificate of this swarm (as a manager, so that
    // it may send anything), made from the CA in the manager's data dir.
    let ca = RootCa::load(&m.data_dir().join("ca")).expect("ca");
    let id = common::minted_identity(&ca, "cluster", "rogue-node");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let rogue = Transport::bind(
            "127.0.0.9:0".parse().expect("addr"),
            &id,
            TransportConfig::default(),
            std::sync::Arc::new(common::Deaf),
        )
        .expect("bind");
        let target = m.listen.parse().expect("addr");
        // Garbage where a message should be, on a one-way stream and as a request.
        let _ = rogue.send(target, b"\x00\xffnot bincode at all").await;
        let _ = rogue.request(target, b"\x07garbage request").await;
        // A frame announcing 4 GiB.
        if let Ok(conn) = rogue.connect(target).await {
            if let Ok(mut s) = conn.open_uni().await {
                let _ = s.write_all(&u32::MAX.to_be_bytes()).await;
                let _ = s.write_all(&[0u8; 1024]).await;
                let _ = s.finish();
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        }
        // A well-formed envelope carrying a corrupt Raft message.
        let raft = shoal_node::protocol::codec::encode(&shoal_node::cluster::wire::OneWay::Raft {
            from: 7,
            from_addr: "127.0.0.9:1".into(),
            msg: vec![0xff; 64],
        })
        .expect("encode");
        let _ = rogue.send(target, &raft).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    // The node is alive and its swarm works.
    assert_eq!(m.rows(&["node", "ls"]).len(), 1);
    m.create_echo("still-here", "1", &[], &[]);
    wait_for("the service runs", LONG, || running(m, "still-here") == 1);
}

#[test]
fn a_manager_joining_after_compaction_catches_up_from_a_snapshot() {
    let first = Daemon::start_on("127.0.0.2", "manager-1", &[]);
    first.ok(&["swarm", "init", "--snapshot-interval", "20"]);
    for i in 0..8 {
        first.create_echo(&format!("s{i}"), "1", &[], &[]);
    }
    wait_for("a snapshot on the first manager", LONG, || {
        first
            .ok(&["info"])
            .lines()
            .any(|l| l.trim().starts_with("Snapshot Index:") && !l.trim().ends_with(" 0"))
    });
    let token = first
        .ok(&["swarm", "join-token", "-q", "manager"])
        .trim()
        .to_string();
    let second = Daemon::start_on("127.0.0.3", "manager-2", &[]);
    join(&second, &token, &first);
    // The log behind the snapshot is gone: the new manager can only have caught up from it.
    wait_for("the new manager sees every service", LONG, || {
        second.shoal(&["service", "ls", "-q"]).status.success()
            && second.ok(&["service", "ls", "-q"]).lines().count() == 8
    });
    assert_eq!(second.rows(&["node", "ls"]).len(), 2);
    // And it votes: a write through it commits.
    second.create_echo("after-snapshot", "1", &[], &[]);
    wait_for("the write seen by the first manager", LONG, || {
        first.ok(&["service", "ls"]).contains("after-snapshot")
    });
}

#[test]
fn a_partitioned_leader_loses_the_swarm_to_the_majority_and_catches_up_after_healing() {
    let nodes = cluster(3, 0, &["--enable-chaos"]);
    let echo = echo_bin();
    nodes[0].create_echo("before", "1", &[], &[]);
    // Cut manager-1 (the leader) off from both others, both ways.
    let rule = format!(
        r#"{{"Peers": ["{}", "{}"], "Direction": "both", "Action": "drop"}}"#,
        nodes[1].listen, nodes[2].listen
    );
    let (code, body) = nodes[0]
        .api("POST", "/debug/chaos/network", Some(&rule))
        .expect("api");
    assert_eq!(code, 200, "{body}");
    // The majority elects a leader of its own and takes writes.
    let took = wait_for("a write on the majority side", LONG, || {
        nodes[1]
            .shoal(&[
                "service",
                "create",
                "-d",
                "--name",
                "during",
                "--driver",
                "process",
                echo.to_str().expect("path"),
            ])
            .status
            .success()
    });
    eprintln!("partition -> majority accepts writes: {took:?}");
    wait_for("a new leader on the majority side", LONG, || {
        let l = leaders(&nodes[1]);
        l.len() == 1 && l[0] != "manager-1"
    });
    // The isolated old leader cannot commit.
    let out = nodes[0].shoal(&[
        "service",
        "create",
        "-d",
        "--name",
        "lost",
        "--driver",
        "process",
        echo.to_str().expect("path"),
    ]);
    assert!(!out.status.success(), "a minority must not commit");
    // Heal: manager-1 follows the new leader and learns what happened meanwhile.
    let (code, _) = nodes[0]
        .api("DELETE", "/debug/chaos/network", None)
        .expect("api");
    assert_eq!(code, 200);
    wait_for("manager-1 caught up", LONG, || {
        let ls = nodes[0].ok(&["service", "ls"]);
        ls.contains("during") && ls.contains("before")
    });
    assert!(
        !nodes[1].ok(&["service", "ls"]).contains("lost"),
        "the minority's write was never committed"
    );
    let l = leaders(&nodes[0]);
    assert_eq!(l.len(), 1);
    // The fault hook is refused on a daemon without --enable-chaos.
    let plain = Daemon::start_on("127.0.0.9", "plain", &[]);
    plain.ok(&["swarm", "init"]);
    let (code, _) = plain
        .api("POST", "/debug/chaos/network", Some(&rule))
        .expect("api");
    assert_eq!(code, 403);
}

#[test]
fn demoting_the_leader_hands_leadership_over_first() {
    let nodes = cluster(3, 0, &[]);
    assert_eq!(leaders(&nodes[0]), vec!["manager-1".to_string()]);
    // The leader demotes itself: leadership moves, then it leaves the voters.
    let out = nodes[0].ok(&["node", "demote", "manager-1"]);
    assert!(
        out.contains("Manager manager-1 demoted in the swarm."),
        "{out}"
    );
    wait_for("a new leader", LONG, || {
        let l = leaders(&nodes[1]);
        l.len() == 1 && l[0] != "manager-1"
    });
    nodes[1].create_echo("after-demote", "1", &[], &[]);
    wait_for("manager-1 is a worker", LONG, || {
        nodes[0]
            .fails(&["node", "ls"])
            .contains("This node is not a swarm manager.")
    });
    assert!(nodes[2].ok(&["service", "ls"]).contains("after-demote"));
}
