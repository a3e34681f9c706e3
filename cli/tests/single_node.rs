//! End-to-end: one real `shoal daemon` process per test, driven through the CLI.

mod common;

use std::time::Duration;

use common::{echo_bin, pids_with, running, token, wait_for, Daemon};

const LONG: Duration = Duration::from_secs(60);

fn init(d: &Daemon) {
    let out = d.ok(&["swarm", "init"]);
    assert!(out.contains("Swarm initialized: current node ("), "{out}");
    assert!(out.contains("shoal swarm join --token SWMTKN-1-"), "{out}");
}

#[test]
fn service_converges_scales_logs_and_is_removed() {
    let d = Daemon::start(&[]);
    assert!(d.ok(&["info"]).contains("Swarm: inactive"));
    init(&d);
    let info = d.ok(&["info"]);
    assert!(
        info.contains("Swarm: active") && info.contains("Is Manager: true"),
        "{info}"
    );
    let nodes = d.rows(&["node", "ls"]);
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["Status"], "Ready");
    assert_eq!(nodes[0]["ManagerStatus"], "Leader");
    assert_eq!(nodes[0]["Hostname"], "node-1");

    // Without -d the CLI shows docker's progress until the service converges.
    let tok = token("web");
    let echo = echo_bin();
    let out = d.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--driver",
        "process",
        echo.to_str().expect("path"),
        "--print",
        &tok,
    ]);
    assert!(out.contains("overall progress: 3 out of 3 tasks"), "{out}");
    assert!(out.contains("verify: Service web converged"), "{out}");
    let ls = d.rows(&["service", "ls"]);
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0]["Replicas"], "3/3");
    assert_eq!(ls[0]["Name"], "web");
    assert_eq!(running(&d, "web"), 3);
    assert_eq!(d.ok(&["service", "ps", "-q", "web"]).lines().count(), 3);
    assert_eq!(pids_with(&tok).len(), 3);

    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["service", "inspect", "web"])).expect("json");
    assert_eq!(inspect[0]["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(inspect[0]["Spec"]["TaskTemplate"]["Driver"], "process");

    // Logs: every task printed its identity line.
    wait_for("logs of 3 tasks", LONG, || {
        let logs = d.ok(&["service", "logs", "web"]);
        logs.lines()
            .filter(|l| l.contains("| shoal-echo task="))
            .count()
            >= 3
    });
    let logs = d.ok(&["service", "logs", "--tail", "1", "web"]);
    assert!(
        logs.lines()
            .all(|l| l.starts_with("web.") && l.contains("@node-1")),
        "{logs}"
    );

    // Scale 3 -> 5 -> 1.
    let out = d.ok(&["service", "scale", "web=5"]);
    assert!(
        out.contains("web scaled to 5") && out.contains("verify: Service web converged"),
        "{out}"
    );
    assert_eq!(pids_with(&tok).len(), 5);
    d.ok(&["service", "scale", "-d", "web=1"]);
    wait_for("scale down to 1", LONG, || {
        pids_with(&tok).len() == 1 && running(&d, "web") == 1
    });
    assert_eq!(d.rows(&["service", "ls"])[0]["Replicas"], "1/1");

    // rm leaves no task process behind, and the tasks go away.
    assert_eq!(d.ok(&["service", "rm", "web"]).trim(), "web");
    wait_for("task processes to exit", LONG, || {
        pids_with(&tok).is_empty()
    });
    assert!(d.ok(&["service", "ls", "-q"]).trim().is_empty());
    wait_for("tasks to be deleted", LONG, || {
        d.api("GET", "/tasks", None)
            .is_some_and(|(_, v)| v.as_array().is_some_and(|a| a.is_empty()))
    });

    // The chaos hook is off unless the daemon was started with --enable-chaos.
    let (code, body) = d
        .api(
            "POST",
            "/debug/chaos/kill",
            Some(r#"{"Actor":"scheduler"}"#),
        )
        .expect("api");
    assert_eq!(code, 403, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap_or("")
        .contains("--enable-chaos"));
}

#[test]
fn killed_task_is_replaced_and_kept_in_history() {
    let d = Daemon::start(&[]);
    init(&d);
    let tok = token("kill");
    d.create_echo("web", "3", &["--restart-delay", "0s"], &["--print", &tok]);
    wait_for("3 running", LONG, || running(&d, "web") == 3);
    let victim = pids_with(&tok)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let took = wait_for("the slot to be replaced", LONG, || {
        let rows = d.rows(&["service", "ps", "web"]);
        let failed = rows.iter().any(|r| {
            r["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Failed"))
        });
        failed && running(&d, "web") == 3
    });
    eprintln!("task kill -> replacement running: {took:?}");
    let rows = d.rows(&["service", "ps", "web"]);
    let failed = rows
        .iter()
        .find(|r| {
            r["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Failed"))
        })
        .expect("failed row");
    assert_eq!(failed["Error"], "\"task: non-zero exit (137)\"");
    assert!(
        failed["Name"].as_str().unwrap_or("").contains("\\_"),
        "history is shown under its slot: {failed}"
    );
    assert_eq!(pids_with(&tok).len(), 3);
}

fn slot_tasks(d: &Daemon, service: &str) -> Vec<serde_json::Value> {
    d.tasks(service)
        .into_iter()
        .filter(|t| t["Slot"] == 1)
        .collect()
}

#[test]
fn restart_policy_conditions_and_max_attempts() {
    let d = Daemon::start(&[]);
    init(&d);
    // on-failure, 2 attempts: the first task and two restarts, then nothing.
    d.create_echo(
        "fail",
        "1",
        &[
            "--restart-condition",
            "on-failure",
            "--restart-max-attempts",
            "2",
            "--restart-delay",
            "0s",
        ],
        &["--exit-after", "0.2", "--exit-code", "3"],
    );
    wait_for("three failed tasks", LONG, || {
        let t = slot_tasks(&d, "fail");
        t.len() == 3 && t.iter().all(|t| t["Status"]["State"] == "failed")
    });
    std::thread::sleep(Duration::from_secs(2));
    let t = slot_tasks(&d, "fail");
    assert_eq!(t.len(), 3, "no restart after max attempts");
    assert!(t
        .iter()
        .all(|t| t["Status"]["ContainerStatus"]["ExitCode"] == 3));

    // none: never restarted, even on failure.
    d.create_echo(
        "once",
        "1",
        &["--restart-condition", "none", "--restart-delay", "0s"],
        &["--exit-after", "0.2", "--exit-code", "1"],
    );
    wait_for("the task to fail", LONG, || {
        slot_tasks(&d, "once")
            .iter()
            .any(|t| t["Status"]["State"] == "failed")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(slot_tasks(&d, "once").len(), 1);

    // any: a task that exits 0 is restarted too.
    d.create_echo(
        "again",
        "1",
        &["--restart-condition", "any", "--restart-delay", "0s"],
        &["--exit-after", "0.3"],
    );
    wait_for("a completed task to be restarted", LONG, || {
        let t = slot_tasks(&d, "again");
        t.len() >= 2 && t.iter().any(|t| t["Status"]["State"] == "complete")
    });
    // on-failure does not restart a clean exit.
    d.create_echo(
        "clean",
        "1",
        &["--restart-condition", "on-failure", "--restart-delay", "0s"],
        &["--exit-after", "0.2"],
    );
    wait_for("the task to complete", LONG, || {
        slot_tasks(&d, "clean")
            .iter()
            .any(|t| t["Status"]["State"] == "complete")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(slot_tasks(&d, "clean").len(), 1);
}

#[test]
fn daemon_kill9_loses_nothing_and_leaves_no_orphans() {
    let mut d = Daemon::start(&[]);
    init(&d);
    let tok = token("crash");
    let id = d.create_echo("web", "2", &["--restart-delay", "0s"], &["--print", &tok]);
    wait_for("2 running", LONG, || running(&d, "web") == 2);
    let cluster = d
        .ok(&["info"])
        .lines()
        .find(|l| l.contains("ClusterID"))
        .expect("cluster id")
        .to_string();
    let before: Vec<String> = d
        .tasks("web")
        .iter()
        .map(|t| t["ID"].as_str().unwrap_or("").to_string())
        .collect();

    d.kill9();
    wait_for("task processes to die with the daemon", LONG, || {
        pids_with(&tok).is_empty()
    });
    d.kill9_and_restart();

    let info = d.ok(&["info"]);
    assert!(
        info.contains(&cluster),
        "same cluster after restart: {info}"
    );
    assert_eq!(d.ok(&["service", "ls", "-q"]).trim(), &id[..12]);
    let after: Vec<String> = d
        .tasks("web")
        .iter()
        .map(|t| t["ID"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        before.iter().all(|t| after.contains(t)),
        "task history kept: {before:?} vs {after:?}"
    );
    wait_for("tasks running again", LONG, || {
        running(&d, "web") == 2 && pids_with(&tok).len() == 2
    });
}

#[test]
fn killed_actors_heal_and_keep_state() {
    let d = Daemon::start(&["--enable-chaos"]);
    init(&d);
    let tok = token("chaos");
    let id = d.create_echo("web", "2", &["--restart-delay", "0s"], &["--print", &tok]);
    wait_for("2 running", LONG, || running(&d, "web") == 2);
    let task = d.tasks("web")[0]["ID"]
        .as_str()
        .expect("task id")
        .to_string();
    let pids = pids_with(&tok);
    for actor in [
        "scheduler",
        "service/web",
        &format!("task/{task}"),
        "dispatcher",
        "orchestrator",
        "store",
        "raft",
        "agent",
    ] {
        let body = format!(r#"{{"Actor":"{actor}"}}"#);
        let (code, v) = d
            .api("POST", "/debug/chaos/kill", Some(&body))
            .expect("api");
        assert_eq!(code, 200, "kill {actor}: {v}");
        eprintln!("{actor} healed in {}", v["HealedIn"]);
        // The node keeps serving writes after every kill.
        wait_for("a write after the kill", LONG, || {
            d.shoal(&["service", "scale", "-d", "web=2"])
                .status
                .success()
        });
    }
    // Same service, same running processes: killing actors did not restart tasks.
    assert_eq!(d.ok(&["service", "ls", "-q"]).trim(), &id[..12]);
    wait_for("2 running", LONG, || running(&d, "web") == 2);
    assert_eq!(
        sorted(pids_with(&tok)),
        sorted(pids),
        "task processes survived the actor kills"
    );
    // And the cluster still acts: a new replica starts.
    d.ok(&["service", "scale", "-d", "web=3"]);
    wait_for("3 running", LONG, || running(&d, "web") == 3);

    // Stopped (not killed), a permanent actor comes back from its supervisor
    // and a task actor from the agent, which adopts the running process.
    let pids = pids_with(&tok);
    for actor in ["scheduler".to_string(), format!("task/{task}")] {
        let body = format!(r#"{{"Actor":"{actor}","Mode":"stop"}}"#);
        let (code, v) = d
            .api("POST", "/debug/chaos/kill", Some(&body))
            .expect("api");
        assert_eq!(code, 200, "stop {actor}: {v}");
        assert_eq!(v["Replaced"], true, "stop {actor}: {v}");
    }
    assert_eq!(sorted(pids_with(&tok)), sorted(pids), "no task restarted");
    // The task actor watches its process again: a death is noticed.
    let marker = format!("SHOAL_TASK_ID={task}");
    let victim = pids_with(&tok)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
        })
        .expect("the task's process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the task's process");
    wait_for("the killed task replaced", LONG, || {
        d.tasks("web")
            .iter()
            .any(|t| t["ID"] == task.as_str() && t["DesiredState"] == "shutdown")
    });
    wait_for("3 running", LONG, || running(&d, "web") == 3);
    let (code, v) = d
        .api(
            "POST",
            "/debug/chaos/kill",
            Some(r#"{"Actor":"scheduler","Mode":"pause"}"#),
        )
        .expect("api");
    assert_eq!(code, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("expected kill or stop")),
        "{v}"
    );
}

fn sorted(mut v: Vec<i32>) -> Vec<i32> {
    v.sort();
    v
}

#[test]
fn bad_input_is_refused_with_docker_messages_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("unix://{}/nobody.sock", dir.path().display());
    let out = std::process::Command::new(common::shoal_bin())
        .args(["-H", &missing, "service", "ls"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Cannot connect to the shoal daemon at {missing}. Is the daemon running?"
        )),
        "{err}"
    );

    let d = Daemon::start(&[]);
    for cmd in [
        &["service", "ls"][..],
        &["node", "ls"],
        &["swarm", "join-token", "worker"],
    ] {
        let err = d.fails(cmd);
        assert!(
            err.contains("This node is not") && err.contains("swarm"),
            "{cmd:?}: {err}"
        );
    }
    // The cluster port taken by someone else: init fails, and the node stays out.
    let squatter = std::net::UdpSocket::bind(&d.listen).expect("take the port");
    let err = d.fails(&["swarm", "init"]);
    assert!(
        err.contains("cannot bind") && err.contains(&d.listen),
        "{err}"
    );
    assert!(d.ok(&["info"]).contains("Swarm: inactive"));
    drop(squatter);
    init(&d);
    assert!(d
        .fails(&["swarm", "init"])
        .contains("This node is already part of a swarm"));
    let echo = echo_bin();
    let echo = echo.to_str().expect("path");
    d.create_echo("web", "1", &[], &[]);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "service", "create", "--name", "web", "--driver", "process", echo,
            ],
            "service with name web already exists",
        ),
        (
            vec!["service", "create", "--name", "x", "--replicas", "-1", echo],
            "invalid argument \"-1\" for \"--replicas\" flag: strconv.ParseUint: parsing \"-1\": invalid syntax",
        ),
        (
            vec![
                "service",
                "create",
                "--name",
                "x",
                "--restart-delay",
                "5x",
                echo,
            ],
            "invalid duration \"5x\"",
        ),
        (
            vec!["service", "create", "--name", "", echo],
            "invalid service name \"\"",
        ),
        (
            vec![
                "service",
                "create",
                "--name",
                "x",
                "--restart-condition",
                "sometimes",
                echo,
            ],
            "sometimes",
        ),
        (vec!["service", "inspect", "nope"], "Error: no such service: nope"),
        (vec!["service", "rm", "nope"], "service nope not found"),
        (vec!["service", "ps", "nope"], "Error: no such service: nope"),
        (vec!["service", "logs", "nope"], "service nope not found"),
        (vec!["service", "scale", "nope=2"], "service nope not found"),
        (
            vec!["service", "scale", "web"],
            "invalid scale specifier 'web'",
        ),
        (
            vec!["service", "scale", "web=-2"],
            "invalid replicas value -2",
        ),
        (vec!["node", "inspect", "nope"], "Error: no such node: nope"),
    ];
    for (args, want) in cases {
        let err = d.fails(&args);
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
    }
    // Nothing changed: one service, still one replica.
    let ls = d.rows(&["service", "ls"]);
    assert_eq!(ls.len(), 1);
    assert!(
        ls[0]["Replicas"]
            .as_str()
            .is_some_and(|r| r.ends_with("/1")),
        "{ls:?}"
    );
}

#[test]
fn a_task_for_a_driver_no_node_has_stays_pending_with_a_reason() {
    let d = Daemon::start(&[]);
    init(&d);
    // No node offers a "vm" driver (docker may well be there on this machine).
    d.ok(&[
        "service", "create", "-d", "--name", "img", "--driver", "vm", "busybox",
    ]);
    wait_for("a pending reason", LONG, || {
        d.rows(&["service", "ps", "--no-trunc", "img"])
            .iter()
            .any(|r| {
                r["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Pending"))
                    && r["Error"].as_str().is_some_and(|e| {
                        e.contains("no suitable node (driver vm not available on 1 node)")
                    })
            })
    });
}
