//! `service update`, rolling updates, failure actions, `service rollback`
//! and health checks, end to end against real daemons with the process
//! driver and the shoal-echo workload.

mod common;

use std::collections::BTreeMap;

use common::{cluster, wait_for, Daemon, LONG};
use serde_json::Value;

fn swarm() -> Daemon {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    d
}

fn inspect(d: &Daemon, service: &str) -> Value {
    let (code, v) = d
        .api("GET", &format!("/services/{service}"), None)
        .expect("inspect");
    assert_eq!(code, 200, "{v}");
    v
}

fn update_state(d: &Daemon, service: &str) -> String {
    inspect(d, service)["UpdateStatus"]["State"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The workload's `--print` value a task was started with.
fn version(t: &Value) -> String {
    let args: Vec<&str> = t["Spec"]["ContainerSpec"]["Args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    args.iter()
        .position(|a| *a == "--print")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn observed_running(t: &Value) -> bool {
    t["Status"]["State"] == "running"
}

/// Tasks observed running, by the version they run.
fn running_by_version(d: &Daemon, service: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in d.tasks(service).iter().filter(|t| observed_running(t)) {
        *out.entry(version(t)).or_default() += 1;
    }
    out
}

/// Every slot 1..=n has exactly one task that runs and is meant to, on
/// `want`, and no task told to stop still runs (a task of a dead node
/// excepted: it is never heard of again).
fn settled_on(d: &Daemon, service: &str, n: u64, want: &str) -> bool {
    settled_except(d, service, n, want, "")
}

fn settled_except(d: &Daemon, service: &str, n: u64, want: &str, dead_node: &str) -> bool {
    let tasks = d.tasks(service);
    (1..=n).all(|slot| {
        let live: Vec<&Value> = tasks
            .iter()
            .filter(|t| t["Slot"] == slot && observed_running(t))
            .filter(|t| dead_node.is_empty() || t["NodeID"] != dead_node)
            .collect();
        live.len() == 1 && live[0]["DesiredState"] == "running" && version(live[0]) == want
    })
}

#[test]
fn a_rolling_update_replaces_two_slots_at_a_time_and_keeps_two_running() {
    let d = swarm();
    d.create_echo(
        "web",
        "4",
        &[
            "--update-parallelism",
            "2",
            "--update-delay",
            "2s",
            "--update-monitor",
            "1s",
        ],
        &["--print", "v1"],
    );
    wait_for("4 v1 tasks", LONG, || settled_on(&d, "web", 4, "v1"));
    d.ok(&["service", "update", "-d", "--args", "--print v2", "web"]);
    let mut saw_half = false;
    wait_for("the update to complete", LONG, || {
        let counts = running_by_version(&d, "web");
        let total: usize = counts.values().sum();
        assert!(total >= 2, "fewer than 2 tasks ran mid-update: {counts:?}");
        if counts.get("v1") == Some(&2) && counts.get("v2") == Some(&2) {
            saw_half = true;
        }
        update_state(&d, "web") == "completed"
    });
    assert!(saw_half, "never saw 2 old and 2 new tasks running together");
    assert!(settled_on(&d, "web", 4, "v2"), "{:?}", d.tasks("web"));
    let svc = inspect(&d, "web");
    assert_eq!(svc["UpdateStatus"]["Message"], "update completed");
    assert!(svc["UpdateStatus"]["CompletedAt"].is_string(), "{svc}");
    assert_eq!(
        svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        serde_json::json!(["--print", "v1"])
    );
    assert_eq!(svc["Spec"]["UpdateConfig"]["Parallelism"], 2);
    assert_eq!(svc["Spec"]["UpdateConfig"]["Delay"], 2_000_000_000u64);
    assert_eq!(svc["Spec"]["UpdateConfig"]["FailureAction"], "pause");
    assert_eq!(svc["Spec"]["UpdateConfig"]["Order"], "stop-first");
    assert_eq!(svc["Spec"]["RollbackConfig"]["Monitor"], 5_000_000_000u64);
}

#[test]
fn an_update_shows_docker_s_progress_and_a_rollback_goes_back() {
    let d = swarm();
    d.create_echo(
        "api",
        "2",
        &["--update-monitor", "1s", "--rollback-monitor", "1s"],
        &["--print", "v1"],
    );
    wait_for("2 v1 tasks", LONG, || settled_on(&d, "api", 2, "v1"));
    // No previous spec yet: refused, with docker's words.
    let err = d.fails(&["service", "rollback", "api"]);
    assert!(err.contains("does not have a previous spec"), "{err}");

    let out = d.ok(&["service", "update", "--args", "--print v2", "api"]);
    assert!(out.starts_with("api\n"), "{out}");
    assert!(out.contains("overall progress: 2 out of 2 tasks"), "{out}");
    assert!(out.contains("1/2: running"), "{out}");
    assert!(out.contains("verify: Service converged"), "{out}");
    assert!(
        !out.contains('\x1b'),
        "control characters off a TTY: {out:?}"
    );
    assert!(settled_on(&d, "api", 2, "v2"));

    let out = d.ok(&["service", "rollback", "api"]);
    assert!(
        out.contains("rollback: manually requested rollback"),
        "{out}"
    );
    assert!(
        out.contains("overall progress: rolling back update: 2 out of 2 tasks"),
        "{out}"
    );
    assert!(out.contains("rollback: rollback completed"), "{out}");
    assert!(settled_on(&d, "api", 2, "v1"));
    let svc = inspect(&d, "api");
    assert_eq!(svc["UpdateStatus"]["State"], "rollback_completed");
    // A manual rollback swaps the specs, so `--rollback` goes forward again.
    assert_eq!(
        svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        serde_json::json!(["--print", "v2"])
    );
    // An update that changes nothing after a rollback is no failure.
    d.ok(&["service", "update", "api"]);
    d.ok(&["service", "update", "-q", "--rollback", "api"]);
    assert!(settled_on(&d, "api", 2, "v2"));
}

#[test]
fn a_failing_update_pauses_by_default_and_leaves_the_old_tasks_running() {
    let d = swarm();
    d.create_echo(
        "pay",
        "3",
        &["--update-monitor", "30s", "--restart-delay", "1s"],
        &["--print", "v1"],
    );
    wait_for("3 v1 tasks", LONG, || settled_on(&d, "pay", 3, "v1"));
    // An executable that is not there: every new task is rejected.
    let err = d.fails(&[
        "service",
        "update",
        "--image",
        "/nonexistent/v2",
        "--args",
        "--print v2",
        "pay",
    ]);
    assert!(
        err.contains(
            "service update paused: update paused due to failure or early termination of task"
        ),
        "{err}"
    );
    assert_eq!(update_state(&d, "pay"), "paused");
    // Only the first slot was touched: the two others still run v1, and the
    // paused update starts no more.
    let v1_running = |d: &Daemon| running_by_version(d, "pay").get("v1").copied();
    assert_eq!(v1_running(&d), Some(2), "{:?}", d.tasks("pay"));
    let rejected = |d: &Daemon| {
        d.tasks("pay")
            .iter()
            .filter(|t| version(t) == "v2" && t["Status"]["State"] == "rejected")
            .count()
    };
    let so_far = rejected(&d);
    wait_for(
        "the failed slot to be restarted and fail again",
        LONG,
        || rejected(&d) > so_far,
    );
    assert_eq!(v1_running(&d), Some(2), "{:?}", d.tasks("pay"));
    assert_eq!(update_state(&d, "pay"), "paused");

    // An update that changes nothing still resumes a paused rollout, as
    // docker's does: it fails again, and pauses again.
    let version = inspect(&d, "pay")["Version"]["Index"].clone();
    let err = d.fails(&["service", "update", "pay"]);
    assert!(err.contains("service update paused"), "{err}");
    assert_ne!(inspect(&d, "pay")["Version"]["Index"], version);
    // The next update resumes, towards the newest spec.
    d.ok(&[
        "service",
        "update",
        "-q",
        "--image",
        common::echo_bin().to_str().expect("path"),
        "--args",
        "--print v3",
        "--update-monitor",
        "1s",
        "pay",
    ]);
    assert!(settled_on(&d, "pay", 3, "v3"));
    assert_eq!(update_state(&d, "pay"), "completed");
}

#[test]
fn a_failing_update_with_failure_action_rollback_undoes_itself() {
    let d = swarm();
    d.create_echo(
        "shop",
        "2",
        &[
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "30s",
            "--rollback-monitor",
            "1s",
        ],
        &["--print", "v1"],
    );
    wait_for("2 v1 tasks", LONG, || settled_on(&d, "shop", 2, "v1"));
    let err = d.fails(&[
        "service",
        "update",
        "--image",
        "/nonexistent/v2",
        "--args",
        "--print v2",
        "shop",
    ]);
    assert!(err.contains("service rolled back"), "{err}");
    let svc = inspect(&d, "shop");
    assert_eq!(svc["UpdateStatus"]["State"], "rollback_completed", "{svc}");
    assert_eq!(
        svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        serde_json::json!(["--print", "v1"])
    );
    wait_for("2 v1 tasks again", LONG, || settled_on(&d, "shop", 2, "v1"));
}

#[test]
fn a_failing_update_with_failure_action_continue_goes_on() {
    let d = swarm();
    d.create_echo(
        "feed",
        "2",
        &[
            "--update-failure-action",
            "continue",
            "--update-monitor",
            "30s",
            "--restart-delay",
            "1s",
        ],
        &["--print", "v1"],
    );
    wait_for("2 v1 tasks", LONG, || settled_on(&d, "feed", 2, "v1"));
    d.ok(&[
        "service",
        "update",
        "-d",
        "--args",
        "--print v2 --exit-after 0.2 --exit-code 1",
        "feed",
    ]);
    // Both slots are updated although every new task fails.
    wait_for("no v1 task left", LONG, || {
        !running_by_version(&d, "feed").contains_key("v1")
            && d.tasks("feed")
                .iter()
                .filter(|t| version(t) == "v2")
                .map(|t| t["Slot"].as_u64())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 2
    });
    assert_ne!(update_state(&d, "feed"), "paused");
}

#[test]
fn start_first_runs_old_and_new_side_by_side_until_the_new_one_is_healthy() {
    let d = swarm();
    let flag = d.dir.path().join("v2-healthy");
    d.create_echo(
        "one",
        "1",
        &["--update-order", "start-first", "--update-monitor", "0s"],
        &["--print", "v1"],
    );
    wait_for("the v1 task", LONG, || settled_on(&d, "one", 1, "v1"));
    let check = format!("test -f {}", flag.display());
    d.ok(&[
        "service",
        "update",
        "-d",
        "--args",
        "--print v2",
        "--health-cmd",
        &check,
        "--health-interval",
        "100ms",
        "--health-start-period",
        "10m",
        "one",
    ]);
    // The new task runs but is not healthy: the old one keeps running.
    wait_for("old and new side by side", LONG, || {
        let counts = running_by_version(&d, "one");
        assert!(!counts.is_empty(), "no task ran mid-update");
        counts.get("v1") == Some(&1) && counts.get("v2") == Some(&1)
    });
    let new = d
        .tasks("one")
        .into_iter()
        .find(|t| version(t) == "v2" && observed_running(t))
        .expect("the new task");
    assert_eq!(new["Status"]["Health"], "starting", "{new}");
    assert_eq!(update_state(&d, "one"), "updating");
    std::fs::write(&flag, b"").expect("flag");
    wait_for("the update to complete", LONG, || {
        assert!(
            !running_by_version(&d, "one").is_empty(),
            "no task ran mid-update"
        );
        update_state(&d, "one") == "completed"
    });
    assert!(settled_on(&d, "one", 1, "v2"));
    let new = d
        .tasks("one")
        .into_iter()
        .find(|t| version(t) == "v2" && observed_running(t))
        .expect("the new task");
    assert_eq!(new["Status"]["Health"], "healthy", "{new}");
}

#[test]
fn a_task_whose_health_check_starts_failing_is_restarted() {
    let d = swarm();
    // The check looks for a file in the task's own root (a process task does
    // not see the host's files change): the test puts it there, and takes
    // it away, through /proc/<pid>/root.
    let flag = "/tmp/healthy";
    let in_task = |t: &Value| {
        let pid = t["Status"]["ContainerStatus"]["PID"].as_u64().unwrap_or(0);
        std::path::PathBuf::from(format!("/proc/{pid}/root{flag}"))
    };
    d.create_echo(
        "doc",
        "1",
        &[
            "--health-cmd",
            &format!("test -f {flag}"),
            "--health-interval",
            "100ms",
            "--health-retries",
            "2",
            "--restart-delay",
            "0s",
        ],
        &[],
    );
    let mut first = String::new();
    wait_for("a healthy task", LONG, || {
        let tasks = d.tasks("doc");
        for t in tasks.iter().filter(|t| observed_running(t)) {
            let _ = std::fs::write(in_task(t), b"");
        }
        match tasks
            .iter()
            .find(|t| observed_running(t) && t["Status"]["Health"] == "healthy")
        {
            Some(t) => {
                first = t["ID"].as_str().unwrap_or_default().to_string();
                std::fs::remove_file(in_task(t)).is_ok()
            }
            None => false,
        }
    });
    wait_for("the unhealthy task to fail and be replaced", LONG, || {
        let tasks = d.tasks("doc");
        let failed = tasks.iter().any(|t| {
            t["ID"] == first.as_str() && t["Status"]["Err"] == "task: unhealthy container"
        });
        failed && tasks.iter().any(|t| t["ID"] != first.as_str())
    });
    let ps = d.ok(&["service", "ps", "--no-trunc", "doc"]);
    assert!(ps.contains("\"task: unhealthy container\""), "{ps}");
}

#[test]
fn force_replaces_every_task_and_one_update_can_change_env_and_replicas() {
    let d = swarm();
    d.create_echo("w", "2", &["--update-monitor", "0s"], &["--print", "v1"]);
    wait_for("2 tasks", LONG, || settled_on(&d, "w", 2, "v1"));
    let before: Vec<String> = d
        .tasks("w")
        .iter()
        .filter_map(|t| t["ID"].as_str().map(String::from))
        .collect();
    // Nothing changed and no --force: nothing is written.
    let version_before = inspect(&d, "w")["Version"]["Index"].clone();
    d.ok(&["service", "update", "-d", "w"]);
    assert_eq!(inspect(&d, "w")["Version"]["Index"], version_before);

    d.ok(&["service", "update", "-q", "--force", "w"]);
    assert!(settled_on(&d, "w", 2, "v1"));
    let running_ids: Vec<String> = d
        .tasks("w")
        .iter()
        .filter(|t| observed_running(t))
        .filter_map(|t| t["ID"].as_str().map(String::from))
        .collect();
    assert_eq!(running_ids.len(), 2);
    assert!(
        running_ids.iter().all(|id| !before.contains(id)),
        "--force left an old task running: {running_ids:?} of {before:?}"
    );
    assert_eq!(inspect(&d, "w")["Spec"]["TaskTemplate"]["ForceUpdate"], 1);

    d.ok(&[
        "service",
        "update",
        "-q",
        "--env-add",
        "COLOUR=blue",
        "--replicas",
        "3",
        "w",
    ]);
    assert!(settled_on(&d, "w", 3, "v1"));
    for t in d.tasks("w").iter().filter(|t| observed_running(t)) {
        let env = &t["Spec"]["ContainerSpec"]["Env"];
        assert_eq!(env, &serde_json::json!(["COLOUR=blue"]), "{t}");
        let pid = t["Status"]["ContainerStatus"]["PID"].as_u64().expect("pid");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&environ).contains("COLOUR=blue"),
            "task {pid} runs without the new variable"
        );
    }
}

#[test]
fn bad_update_flags_get_docker_s_messages_and_change_nothing() {
    let d = swarm();
    d.create_echo("b", "1", &[], &["--print", "v1"]);
    let version_before = inspect(&d, "b")["Version"]["Index"].clone();
    for (args, want) in [
        (vec!["--update-parallelism", "-1"], "--update-parallelism"),
        (
            vec!["--update-failure-action", "explode"],
            "unrecognized update failure action explode",
        ),
        (
            vec!["--rollback-failure-action", "rollback"],
            "unrecognized rollback failure action rollback",
        ),
        (
            vec!["--update-order", "sideways"],
            "unrecognized update order sideways",
        ),
        (vec!["--update-delay", "soon"], "invalid duration \"soon\""),
        (vec!["--update-monitor", "-5s"], "invalid duration"),
        (
            vec!["--update-max-failure-ratio", "2"],
            "MaxFailureRatio must be between 0 and 1",
        ),
        (
            vec!["--no-healthcheck", "--health-cmd", "true"],
            "--no-healthcheck conflicts with --health-* options",
        ),
    ] {
        let mut cmd = vec!["service", "update", "-d"];
        cmd.extend(args.iter().copied());
        cmd.push("b");
        let err = d.fails(&cmd);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let err = d.fails(&[
        "service",
        "create",
        "-d",
        "--name",
        "c",
        "--update-failure-action",
        "explode",
        "--driver",
        "process",
        "/bin/true",
    ]);
    assert!(
        err.contains("unrecognized update failure action explode"),
        "{err}"
    );
    assert_eq!(inspect(&d, "b")["Version"]["Index"], version_before);
    assert!(inspect(&d, "b")["UpdateStatus"].is_null());
}

#[test]
fn the_leader_dies_mid_update_and_the_new_leader_finishes_it() {
    let nodes = cluster(3, 0, &[]);
    let leader = &nodes[0];
    leader.create_echo(
        "ha",
        "6",
        &["--update-delay", "1s", "--update-monitor", "0s"],
        &["--print", "v1"],
    );
    wait_for("6 v1 tasks", LONG, || settled_on(leader, "ha", 6, "v1"));
    leader.ok(&["service", "update", "-d", "--args", "--print v2", "ha"]);
    // Some slots are done, some are not.
    wait_for("the update half way", LONG, || {
        let counts = running_by_version(leader, "ha");
        counts.get("v2").copied().unwrap_or(0) >= 2 && counts.contains_key("v1")
    });
    let dead = leader.api("GET", "/info", None).expect("info").1["ID"]
        .as_str()
        .expect("node id")
        .to_string();
    let mut nodes = nodes;
    nodes[0].kill9();
    let survivor = &nodes[1];
    wait_for("the new leader to complete the update", LONG, || {
        survivor
            .api("GET", "/services/ha", None)
            .is_some_and(|(code, v)| code == 200 && v["UpdateStatus"]["State"] == "completed")
    });
    // One v2 task per slot, and no slot runs two tasks.
    wait_for("one v2 task per slot", LONG, || {
        settled_except(survivor, "ha", 6, "v2", &dead)
    });
}

#[test]
fn a_second_update_during_a_rollout_restarts_it_toward_the_newest_spec() {
    let d = swarm();
    d.create_echo(
        "twice",
        "3",
        &["--update-delay", "2s", "--update-monitor", "0s"],
        &["--print", "v1"],
    );
    wait_for("3 v1 tasks", LONG, || settled_on(&d, "twice", 3, "v1"));
    d.ok(&["service", "update", "-d", "--args", "--print v2", "twice"]);
    wait_for("the first slot on v2, the others not yet", LONG, || {
        let counts = running_by_version(&d, "twice");
        counts.contains_key("v2") && counts.contains_key("v1")
    });
    d.ok(&["service", "update", "-q", "--args", "--print v3", "twice"]);
    assert!(settled_on(&d, "twice", 3, "v3"), "{:?}", d.tasks("twice"));
    let svc = inspect(&d, "twice");
    assert_eq!(svc["UpdateStatus"]["State"], "completed");
    assert_eq!(
        svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        serde_json::json!(["--print", "v2"])
    );
}

fn actors(d: &Daemon) -> Vec<String> {
    let (_, v) = d.api("GET", "/debug/actors", None).expect("actors");
    v["Actors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["Name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_service_s_updater_lives_while_it_rolls_out_and_heals_when_killed() {
    let d = Daemon::start(&["--enable-chaos"]);
    d.ok(&["swarm", "init"]);
    let flag = d.dir.path().join("v2-healthy");
    let id = d.create_echo(
        "kept",
        "1",
        &["--update-order", "start-first", "--update-monitor", "0s"],
        &["--print", "v1"],
    );
    let child = format!("update/{id}");
    wait_for("the v1 task", LONG, || settled_on(&d, "kept", 1, "v1"));
    assert!(
        !actors(&d).contains(&child),
        "an updater with nothing to do"
    );
    let check = format!("test -f {}", flag.display());
    d.ok(&[
        "service",
        "update",
        "-d",
        "--args",
        "--print v2",
        "--health-cmd",
        &check,
        "--health-interval",
        "100ms",
        "--health-start-period",
        "10m",
        "kept",
    ]);
    wait_for("the new task waiting to be healthy", LONG, || {
        running_by_version(&d, "kept").get("v2") == Some(&1)
    });
    assert!(actors(&d).contains(&child), "{:?}", actors(&d));
    // Its supervisor restarts it, and so does the leader's for the parent.
    for actor in [child.as_str(), "updater"] {
        let body = format!(r#"{{"Actor":"{actor}"}}"#);
        let (code, v) = d
            .api("POST", "/debug/chaos/kill", Some(&body))
            .expect("api");
        assert_eq!(code, 200, "kill {actor}: {v}");
    }
    wait_for("the service's updater back", LONG, || {
        actors(&d).contains(&child)
    });
    assert_eq!(update_state(&d, "kept"), "updating");
    std::fs::write(&flag, b"").expect("flag");
    wait_for("the update to complete", LONG, || {
        update_state(&d, "kept") == "completed"
    });
    assert!(settled_on(&d, "kept", 1, "v2"));
    wait_for("the service's updater gone", LONG, || {
        !actors(&d).contains(&child)
    });
}
