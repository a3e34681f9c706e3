//! The security review's findings, each reproduced against real daemons and
//! shown refused or survived: oversized specs, file modes under umask 000,
//! a demoted manager's old certificate, status reports for another node's
//! task, a removed node's open connection, `../` task ids.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{cluster, raft_last_index, running, stolen_identity, wait_for, Daemon, Peer, LONG};
use serde_json::{json, Value};
use shoal_node::cluster::wire::{Refusal, Request, Response, ToDispatcher};
use shoal_node::protocol::command::Command;
use shoal_node::protocol::model::{TaskState, TaskStatus};

/// The request was refused as forbidden, for a reason that says `why`.
fn refused(r: Result<Response, String>, why: &str) {
    match r {
        Ok(Response::Refused(r @ (Refusal::Forbidden(_) | Refusal::Superseded))) => {
            assert!(
                r.to_string().contains(why),
                "refused for another reason: {r}"
            );
        }
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

fn create(d: &Daemon, spec: Value) -> (u16, Value) {
    d.api("POST", "/services/create", Some(&spec.to_string()))
        .expect("api answers")
}

fn spec(name: &str, replicas: Value) -> Value {
    json!({
        "Name": name,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {"Driver": "process", "ContainerSpec": {"Image": "/bin/sleep", "Args": ["600"]}}
    })
}

#[test]
fn numbers_and_sizes_past_the_limits_are_refused_before_anything_is_proposed() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let before = raft_last_index(&d);
    for (what, body, expect) in [
        (
            "2^63 replicas",
            spec("huge", json!(9223372036854775808u64)),
            "Replicas must be at most 100000",
        ),
        (
            "one replica past the limit",
            spec("huge", json!(100_001)),
            "Replicas must be at most",
        ),
        (
            "a restart delay of centuries",
            {
                let mut s = spec("slow", json!(1));
                s["TaskTemplate"]["RestartPolicy"] = json!({"Delay": u64::MAX});
                s
            },
            "RestartPolicy.Delay must be at most",
        ),
        (
            "an environment of 2,000 variables",
            {
                let mut s = spec("env", json!(1));
                let env: Vec<String> = (0..2000).map(|i| format!("V{i}=x")).collect();
                s["TaskTemplate"]["ContainerSpec"]["Env"] = json!(env);
                s
            },
            "the number of Env must be at most 1024",
        ),
        (
            "a label value of 8 KiB",
            {
                let mut s = spec("labels", json!(1));
                s["Labels"] = json!({"k": "x".repeat(8 << 10)});
                s
            },
            "the limit is 4096",
        ),
    ] {
        let (code, body) = create(&d, body);
        assert_eq!(code, 400, "{what}: {body}");
        let msg = body["message"].as_str().unwrap_or("");
        assert!(msg.contains(expect), "{what}: {msg}");
    }
    assert!(d.rows(&["service", "ls"]).is_empty());
    assert_eq!(
        raft_last_index(&d),
        before,
        "a refused spec reached the log"
    );
    let (code, body) = d
        .api(
            "POST",
            "/swarm/init",
            Some(r#"{"Spec":{"Orchestration":{"TaskHistoryRetentionLimit":100000}}}"#),
        )
        .expect("api");
    assert_eq!(code, 400, "{body}");

    // A valid but large service (its tasks can never be placed: no node has
    // the driver) is created in bounded passes; the node keeps answering and
    // the service can be removed.
    let mut big = spec("big", json!(5000));
    big["TaskTemplate"]["Driver"] = json!("nosuch");
    let (code, body) = create(&d, big);
    assert_eq!(code, 201, "{body}");
    wait_for("5,000 tasks pending", LONG, || d.tasks("big").len() == 5000);
    assert_eq!(d.rows(&["service", "ls"]).len(), 1);
    d.ok(&["service", "rm", "big"]);
    wait_for("the big service's tasks are gone", LONG, || {
        let (code, v) = d.api("GET", "/tasks", None).expect("tasks");
        code == 200 && v.as_array().is_some_and(|a| a.is_empty())
    });
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777
}

/// Every directory under `dir` is 0700 and every file 0600.
fn assert_private(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        let kind = std::fs::symlink_metadata(&p).expect("stat").file_type();
        if kind.is_dir() {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        } else if kind.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            files += 1;
        } else {
            assert!(kind.is_symlink() || kind.is_socket(), "{}", p.display());
        }
    }
    assert!(files > 5, "only {files} files under {}", dir.display());
}

#[test]
fn the_data_dir_is_private_whatever_the_umask() {
    let mut d = Daemon::start_with(Some(0), &[]);
    d.ok(&["swarm", "init"]);
    d.create_echo("logs", "1", &[], &["--print", "secret-ish"]);
    wait_for("the task runs", LONG, || running(&d, "logs") == 1);
    wait_for("the task wrote its log", LONG, || {
        std::fs::read_dir(d.data_dir().join("logs"))
            .map(|mut r| r.next().is_some())
            .unwrap_or(false)
    });
    let data = d.data_dir();
    assert_private(&data);
    // A wider mode found at start is repaired.
    d.kill9();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let key = data.join("ca/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    d.kill9_and_restart();
    assert_private(&data);
    let log = std::fs::read_to_string(d.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("repaired") && log.contains("ca.key"),
        "the repair was not reported"
    );
}

#[test]
fn a_demoted_managers_old_certificate_opens_nothing() {
    let nodes = cluster(3, 0, &[]);
    let m = &nodes[0];
    let old = stolen_identity(&nodes[2].data_dir());
    let tokens = |d: &Daemon| {
        let (_, v) = d.api("GET", "/swarm", None).expect("swarm");
        v["JoinTokens"]["Manager"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let before = tokens(m);
    m.ok(&["node", "demote", "manager-3"]);
    wait_for("manager-3 is a worker", LONG, || {
        m.rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "manager-3" && r["ManagerStatus"] == "")
    });
    // With the certificate it had as a manager, ask every manager to rotate
    // the manager token to one of the attacker's choosing.
    let chosen = format!("SWMTKN-1-{}-{}", "a".repeat(50), "b".repeat(25));
    let peer = Peer::new(&old);
    for target in &nodes[..2] {
        let r = peer.ask(
            target,
            &Request::Propose(Box::new(Command::RotateJoinTokens {
                worker: None,
                manager: Some(chosen.clone()),
                at: chrono::Utc::now(),
            })),
        );
        refused(r, "certificate superseded by a role change");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tokens(m), before);
    // The node itself, with the certificate it was given on demotion, still
    // works as a worker.
    wait_for("manager-3 ready as a worker", LONG, || {
        m.rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "manager-3" && r["Status"] == "Ready")
    });
    let now = stolen_identity(&nodes[2].data_dir());
    let r = Peer::new(&now).ask(
        m,
        &Request::Propose(Box::new(Command::RotateJoinTokens {
            worker: None,
            manager: Some(chosen),
            at: chrono::Utc::now(),
        })),
    );
    refused(r, "only managers");
    assert_eq!(tokens(m), before);
}

#[test]
fn a_worker_cannot_report_the_status_of_another_nodes_task() {
    let nodes = cluster(1, 2, &[]);
    let m = &nodes[0];
    // Three replicas spread one to a node: one of them runs on worker-1.
    m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "victim",
        "--replicas",
        "3",
        "--driver",
        "process",
        "/bin/sleep",
        "600",
    ]);
    wait_for("the victim runs", LONG, || running(m, "victim") == 3);
    let (w1_id, w2_id) = (node_id(&nodes[1]), node_id(&nodes[2]));
    let task = m
        .tasks("victim")
        .iter()
        .find(|t| t["NodeID"] == w1_id.as_str())
        .and_then(|t| t["ID"].as_str())
        .expect("a task on worker-1")
        .to_string();
    let w2 = Peer::new(&stolen_identity(&nodes[2].data_dir()));
    let failed = TaskStatus::new(TaskState::Failed, "forged", chrono::Utc::now());
    // Speaking for worker-1: refused outright.
    let r = w2.ask(
        m,
        &Request::Dispatcher(ToDispatcher::Status {
            node_id: w1_id,
            updates: vec![(task.clone(), failed.clone())],
        }),
    );
    refused(r, "only speak for itself");
    // Speaking for itself about worker-1's task: accepted as a message, but
    // the report is dropped.
    let r = w2.ask(
        m,
        &Request::Dispatcher(ToDispatcher::Status {
            node_id: w2_id,
            updates: vec![(task.clone(), failed)],
        }),
    );
    assert!(matches!(r, Ok(Response::Done)), "{r:?}");
    std::thread::sleep(Duration::from_secs(2));
    let tasks = m.tasks("victim");
    assert_eq!(tasks.len(), 3, "a task was replaced: {tasks:?}");
    let t = tasks
        .iter()
        .find(|t| t["ID"] == task.as_str())
        .expect("the task is still there");
    assert_eq!(t["Status"]["State"], "running");
}

fn node_id(d: &Daemon) -> String {
    let (_, info) = d.api("GET", "/info", None).expect("info");
    info["ID"].as_str().expect("node id").to_string()
}

#[test]
fn a_removed_nodes_open_connection_is_closed_and_ids_are_checked() {
    let nodes = cluster(1, 1, &[]);
    let m = &nodes[0];
    let worker_id = node_id(&nodes[1]);
    let peer = Peer::new(&stolen_identity(&nodes[1].data_dir()));
    let beat = Request::Dispatcher(ToDispatcher::Heartbeat {
        node_id: worker_id.clone(),
        addr: nodes[1].listen.clone(),
        at: chrono::Utc::now(),
    });
    assert!(matches!(peer.ask(m, &beat), Ok(Response::Done)));
    let conn = peer
        .rt
        .block_on(peer.transport.connect(m.listen.parse().expect("addr")))
        .expect("connection");
    m.ok(&["node", "rm", "--force", "worker-1"]);
    let closed = peer
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), conn.closed()).await });
    let reason = closed.expect("the removed node's connection was not closed");
    assert!(
        format!("{reason}").contains("removed"),
        "closed for another reason: {reason}"
    );
    // A new connection is refused too.
    assert!(peer.ask(m, &beat).is_err());

    // Task ids never become paths outside the log directory: a manager's
    // request for `../../../outside` is refused.
    std::fs::write(m.dir.path().join("outside.log"), "not yours\n").expect("write");
    let manager = Peer::new(&stolen_identity(&m.data_dir()));
    let r = manager.ask(
        m,
        &Request::TaskLog {
            task_id: "../../../outside".into(),
            offset: 0,
        },
    );
    match r {
        Ok(Response::Refused(Refusal::BadRequest(message))) => {
            assert!(message.contains("invalid task id"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_flood_of_refused_connections_writes_a_few_log_lines() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    // A certificate from another swarm's CA: every handshake is refused.
    let other = shoal_node::ca::RootCa::generate().expect("ca");
    let peer = Peer::new(&common::minted_identity(&other, "elsewhere", "intruder"));
    let target = d.listen.parse().expect("addr");
    let count = |log: &str| log.matches("refused an incoming connection").count();
    let before =
        count(&std::fs::read_to_string(d.dir.path().join("daemon.log")).unwrap_or_default());
    let started = std::time::Instant::now();
    peer.rt.block_on(async {
        for _ in 0..300 {
            let _ = peer.transport.request(target, b"hello").await;
        }
    });
    // One line per 10 s at most, the first at once.
    let allowed = 2 + started.elapsed().as_secs() as usize / 10;
    let log = std::fs::read_to_string(d.dir.path().join("daemon.log")).unwrap_or_default();
    let lines = count(&log) - before;
    assert!(
        (1..=allowed).contains(&lines),
        "{lines} log lines for 300 refused connections"
    );
    // The node is unharmed.
    assert_eq!(d.rows(&["node", "ls"]).len(), 1);
}

/// A worker's heartbeats carry its clock, which the leader measures it by
/// (docs/security.md, clocks). A worker that sends the ends of time, and
/// reports of its own task stamped there, moves nothing but its own times:
/// the leader's dispatcher keeps running and the task's times stay sane.
#[test]
fn a_worker_sending_the_ends_of_time_moves_only_its_own_times() {
    let nodes = cluster(1, 2, &[]);
    let m = &nodes[0];
    m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "mine",
        "--constraint",
        "node.hostname==worker-1",
        "--driver",
        "process",
        "/bin/sleep",
        "600",
    ]);
    wait_for("the task runs", LONG, || running(m, "mine") == 1);
    let task = m.tasks("mine")[0]["ID"].as_str().expect("id").to_string();
    let w1_id = node_id(&nodes[1]);
    let w1 = Peer::new(&stolen_identity(&nodes[1].data_dir()));
    let (end, start) = (
        chrono::DateTime::<chrono::Utc>::MAX_UTC,
        chrono::DateTime::<chrono::Utc>::MIN_UTC,
    );
    // A heartbeat at one end of time, then a report at the other.
    for (at, reported) in [(end, start), (start, end)] {
        let beat = Request::Dispatcher(ToDispatcher::Heartbeat {
            node_id: w1_id.clone(),
            addr: nodes[1].listen.clone(),
            at,
        });
        assert!(matches!(w1.ask(m, &beat), Ok(Response::Done)));
        let mut status = TaskStatus::new(
            TaskState::Running,
            "lying about the time",
            chrono::Utc::now(),
        );
        status.timestamp = reported;
        let report = Request::Dispatcher(ToDispatcher::Status {
            node_id: w1_id.clone(),
            updates: vec![(task.clone(), status)],
        });
        assert!(matches!(w1.ask(m, &report), Ok(Response::Done)));
    }
    std::thread::sleep(Duration::from_secs(2));
    // The manager still answers and writes, the task is where it was, its
    // times within the calendar, and no actor of the manager failed (a
    // panic in a handler is a child that stopped and was restarted).
    m.ok(&["service", "scale", "-d", "mine=1"]);
    let t = &m.tasks("mine")[0];
    assert_eq!(t["Status"]["State"], "running", "{t}");
    let log = std::fs::read_to_string(m.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(
        !log.contains("panicked") && !log.contains("child stopped; restarting"),
        "{log}"
    );
    wait_for("worker-1 ready", LONG, || {
        m.rows(&["node", "ls"]).iter().any(|r| {
            r["Hostname"] == "worker-1"
                && r["Status"].as_str().is_some_and(|s| s.starts_with("Ready"))
        })
    });
}
