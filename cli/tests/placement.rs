//! Placement end to end on real daemons (process driver, shoal-echo):
//! global mode, constraints, spread preferences, replicas per node,
//! reservations and docker's pending reasons.

mod common;

use std::collections::BTreeMap;

use common::{cluster, join, wait_for, Daemon, LONG};
use serde_json::Value;

/// Node id → hostname, from `node ls`.
fn hostnames(d: &Daemon) -> BTreeMap<String, String> {
    let (_, nodes) = d.api("GET", "/nodes", None).expect("nodes");
    nodes
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["ID"].as_str().unwrap_or("").to_string(),
                n["Description"]["Hostname"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn wants_running(t: &Value) -> bool {
    t["DesiredState"] == "running"
}

/// Hostname → tasks of `service` observed running and meant to.
fn running_on(d: &Daemon, service: &str) -> BTreeMap<String, usize> {
    let names = hostnames(d);
    let mut out = BTreeMap::new();
    for t in d.tasks(service) {
        if wants_running(&t) && t["Status"]["State"] == "running" {
            let node = t["NodeID"].as_str().unwrap_or("");
            *out.entry(names.get(node).cloned().unwrap_or_default())
                .or_default() += 1;
        }
    }
    out
}

/// The reasons the tasks of `service` that want to run are pending for.
fn pending_reasons(d: &Daemon, service: &str) -> Vec<String> {
    d.tasks(service)
        .iter()
        .filter(|t| wants_running(t) && t["Status"]["State"] == "pending")
        .map(|t| t["Status"]["Err"].as_str().unwrap_or("").to_string())
        .collect()
}

fn ls_row(d: &Daemon, service: &str) -> Value {
    d.rows(&["service", "ls", "--filter", &format!("name={service}")])
        .into_iter()
        .find(|r| r["Name"] == service)
        .expect("service ls row")
}

#[test]
fn a_global_service_runs_one_task_per_eligible_node_and_follows_drain_and_joins() {
    let mut nodes = cluster(1, 2, &[]);
    let m = &nodes[0];
    m.create_echo(
        "agent",
        "1",
        &["--mode", "global", "--restart-delay", "0s"],
        &[],
    );
    m.create_echo(
        "workers-only",
        "1",
        &["--mode", "global", "--constraint", "node.role==worker"],
        &[],
    );
    let all = |n: usize| {
        move |m: &Daemon| {
            let on = running_on(m, "agent");
            on.len() == n && on.values().all(|&c| c == 1)
        }
    };
    wait_for("one agent on each of 3 nodes", LONG, || all(3)(m));
    wait_for("workers-only on both workers", LONG, || {
        running_on(m, "workers-only")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            == ["worker-1", "worker-2"]
    });
    let row = ls_row(m, "agent");
    assert_eq!(row["Mode"], "global");
    assert_eq!(row["Replicas"], "3/3");
    assert_eq!(ls_row(m, "workers-only")["Replicas"], "2/2");
    // docker names a global task after its node.
    let ps = m.rows(&["service", "ps", "agent", "--no-trunc"]);
    let ids: Vec<String> = hostnames(m).keys().cloned().collect();
    for r in &ps {
        let name = r["Name"].as_str().unwrap_or("");
        assert!(
            ids.iter()
                .any(|id| name.trim_start_matches(" \\_ ") == format!("agent.{id}")),
            "{name}"
        );
    }
    // `node ps` of a worker lists its global tasks.
    let on_w1 = m.rows(&["node", "ps", "worker-1"]);
    assert!(on_w1
        .iter()
        .any(|r| r["Name"].as_str().is_some_and(|n| n.starts_with("agent."))));
    assert!(on_w1.iter().any(|r| r["Name"]
        .as_str()
        .is_some_and(|n| n.starts_with("workers-only."))));

    // Drain: the node's task stops and is not replaced elsewhere.
    m.ok(&["node", "update", "--availability", "drain", "worker-1"]);
    wait_for("the drained node's agent gone", LONG, || {
        let on = running_on(m, "agent");
        on.len() == 2 && !on.contains_key("worker-1") && on.values().all(|&c| c == 1)
    });
    assert_eq!(ls_row(m, "agent")["Replicas"], "2/2");
    m.ok(&["node", "update", "--availability", "active", "worker-1"]);
    wait_for("back on the reactivated node", LONG, || all(3)(m));

    // A node that joins gets one.
    let token = m
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let late = Daemon::start_on("127.0.0.9", "worker-3", &[]);
    assert!(join(&late, &token, m).contains("joined a swarm as a worker"));
    wait_for("an agent on the new node", LONG, || all(4)(m));
    wait_for("workers-only on all three workers", LONG, || {
        running_on(m, "workers-only").len() == 3
    });
    // A global service has no replica count to scale.
    let err = m.fails(&["service", "scale", "agent=3"]);
    assert!(
        err.contains("scale can only be used with replicated"),
        "{err}"
    );
    nodes.push(late);
}

#[test]
fn constraints_spread_replicas_per_node_and_reservations_place_as_docker_does() {
    let nodes = cluster(1, 3, &[]);
    let m = &nodes[0];
    for (worker, zone) in [("worker-1", "a"), ("worker-2", "a"), ("worker-3", "b")] {
        m.ok(&[
            "node",
            "update",
            "--label-add",
            &format!("zone={zone}"),
            worker,
        ]);
    }
    // A bad expression is refused with swarmkit's words, and nothing is made.
    let err = m.fails(&[
        "service",
        "create",
        "--name",
        "bad",
        "--driver",
        "process",
        "--constraint",
        "node.role=worker",
        "/bin/true",
    ]);
    assert!(
        err.contains("constraint expected one operator from ==, !="),
        "{err}"
    );
    assert!(m
        .api("GET", "/services/bad", None)
        .is_some_and(|(c, _)| c == 404));

    // Spread over zones a, a, b: 6 replicas split 3/3 between the zones.
    m.create_echo(
        "spread",
        "6",
        &[
            "--constraint",
            "node.role==worker",
            "--placement-pref",
            "spread=node.labels.zone",
        ],
        &[],
    );
    // Unsatisfiable: pending with the reason, nothing runs.
    m.create_echo(
        "nowhere",
        "1",
        &["--constraint", "node.labels.zone==c"],
        &[],
    );
    // Hostname `!=`.
    m.create_echo(
        "not-w1",
        "3",
        &["--constraint", "node.hostname!=worker-1"],
        &[],
    );
    // At most one per node: 5 replicas on 4 nodes.
    m.create_echo("one-each", "5", &["--replicas-max-per-node", "1"], &[]);
    // More memory than any node has.
    m.create_echo("huge", "1", &["--reserve-memory", "1000000GiB"], &[]);
    // Every CPU of a node: reservations add up, so one task per node fits.
    let (_, me) = m.api("GET", "/nodes/manager-1", None).expect("node");
    let cpus = me["Description"]["Resources"]["NanoCPUs"]
        .as_u64()
        .unwrap_or(0)
        / 1_000_000_000;
    assert!(cpus > 0, "{me}");
    m.create_echo("all-cpus", "5", &["--reserve-cpu", &cpus.to_string()], &[]);

    wait_for("spread 3/3 over the zones", LONG, || {
        let on = running_on(m, "spread");
        let a = on.get("worker-1").unwrap_or(&0) + on.get("worker-2").unwrap_or(&0);
        let b = *on.get("worker-3").unwrap_or(&0);
        (a, b) == (3, 3) && !on.contains_key("manager-1")
    });
    wait_for("nowhere pending with docker's reason", LONG, || {
        pending_reasons(m, "nowhere")
            == ["no suitable node (scheduling constraints not satisfied on 4 nodes)"]
    });
    assert!(running_on(m, "nowhere").is_empty());
    wait_for("not-w1 running off worker-1", LONG, || {
        let on = running_on(m, "not-w1");
        on.values().sum::<usize>() == 3 && !on.contains_key("worker-1")
    });
    wait_for("one-each: 4 running, 1 pending", LONG, || {
        let on = running_on(m, "one-each");
        on.len() == 4
            && on.values().all(|&c| c == 1)
            && pending_reasons(m, "one-each")
                == ["no suitable node (max replicas per node limit exceed)"]
    });
    wait_for("huge pending for resources", LONG, || {
        pending_reasons(m, "huge") == ["no suitable node (insufficient resources on 4 nodes)"]
    });
    wait_for("all-cpus: one per node, the fifth pending", LONG, || {
        let on = running_on(m, "all-cpus");
        on.len() == 4
            && on.values().all(|&c| c == 1)
            && pending_reasons(m, "all-cpus")
                == ["no suitable node (insufficient resources on 4 nodes)"]
    });
    let pretty = m.ok(&["service", "inspect", "--pretty", "one-each"]);
    // docker 28's template: three spaces, no tab.
    assert!(pretty.contains("Max Replicas Per Node:   1"), "{pretty}");

    // A constraint added on update moves tasks off the nodes that no longer match.
    m.ok(&[
        "service",
        "update",
        "-d",
        "--constraint-add",
        "node.hostname!=worker-2",
        "not-w1",
    ]);
    wait_for("not-w1 off worker-1 and worker-2", LONG, || {
        let on = running_on(m, "not-w1");
        on.values().sum::<usize>() == 3
            && !on.contains_key("worker-1")
            && !on.contains_key("worker-2")
    });
    let spec = &m.api("GET", "/services/not-w1", None).expect("inspect").1["Spec"];
    assert_eq!(
        spec["TaskTemplate"]["Placement"]["Constraints"],
        serde_json::json!(["node.hostname!=worker-1", "node.hostname!=worker-2"])
    );
    // A label that appears lets the pending task go.
    m.ok(&["node", "update", "--label-add", "zone=c", "worker-3"]);
    wait_for("nowhere runs on worker-3", LONG, || {
        running_on(m, "nowhere").keys().cloned().collect::<Vec<_>>() == ["worker-3"]
    });
    // `node inspect --pretty` shows what the node reported.
    let pretty = m.ok(&["node", "inspect", "--pretty", "worker-1"]);
    assert!(
        pretty.contains("Resources:") && pretty.contains(" CPUs:"),
        "{pretty}"
    );
}

#[test]
fn rebalancing_moves_replicas_onto_a_node_that_joins_and_off_moves_nothing() {
    let mut nodes = cluster(1, 2, &[]);
    let m = &nodes[0];
    m.ok(&["swarm", "update", "--rebalance", "on"]);
    let info = m.ok(&["info"]);
    assert!(info.contains("Rebalance: on"), "{info}");
    let workers = ["--constraint", "node.role==worker", "--update-delay", "0s"];
    m.create_echo("web", "6", &workers, &[]);
    let mut pinned = workers.to_vec();
    pinned.extend(["--label", "com.shoal.rebalance=off"]);
    m.create_echo("pinned", "6", &pinned, &[]);
    for svc in ["web", "pinned"] {
        wait_for("3/3 on the two workers", LONG, || {
            running_on(m, svc).values().copied().collect::<Vec<_>>() == [3, 3]
        });
    }
    let token = m
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let late = Daemon::start_on("127.0.0.9", "worker-3", &[]);
    assert!(join(&late, &token, m).contains("joined a swarm as a worker"));
    let mut fewest = usize::MAX;
    wait_for("web spread 2/2/2", LONG, || {
        let on = running_on(m, "web");
        fewest = fewest.min(on.values().sum());
        on.values().copied().collect::<Vec<_>>() == [2, 2, 2]
    });
    assert_eq!(fewest, 6, "a move never takes a replica down first");
    // The service that opted out stays as Swarm leaves it.
    assert_eq!(
        running_on(m, "pinned")
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [3, 3]
    );
    nodes.push(late);
}

#[test]
fn a_replicated_job_runs_to_completion_and_is_not_restarted() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    d.create_echo(
        "once",
        "3",
        &[
            "--mode",
            "replicated-job",
            "--max-concurrent",
            "2",
            "--restart-delay",
            "0s",
        ],
        &["--exit-after", "0.2"],
    );
    d.create_echo(
        "each",
        "1",
        &["--mode", "global-job"],
        &["--exit-after", "0.2"],
    );
    let complete = |svc: &str| {
        d.tasks(svc)
            .iter()
            .filter(|t| t["Status"]["State"] == "complete")
            .count()
    };
    wait_for("3 completions", LONG, || complete("once") == 3);
    wait_for("the global job done on the node", LONG, || {
        complete("each") == 1
    });
    assert_eq!(ls_row(&d, "once")["Mode"], "replicated job");
    wait_for("ls shows the job done", LONG, || {
        ls_row(&d, "once")["Replicas"] == "0/0 (3/3 completed)"
    });
    assert_eq!(ls_row(&d, "each")["Replicas"], "0/0 (1/1 completed)");
    // Nothing more is started: exactly the three tasks, all complete.
    let tasks = d.tasks("once");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let err = d.fails(&[
        "service",
        "create",
        "--max-concurrent",
        "2",
        "--driver",
        "process",
        "/bin/true",
    ]);
    assert!(
        err.contains("max-concurrent can only be used with replicated-job mode"),
        "{err}"
    );
}
