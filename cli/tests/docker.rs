//! End-to-end with the docker driver against this machine's Docker engine.
//! There is no registry: the tests build their own image (`FROM scratch` and
//! a statically linked shoal-echo) through bollard's build API.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use common::images::{build_image, build_image_as, containers, engine, rt, Cleanup, IMAGE};
use common::{echo_task_at, free_tcp_port, running, wait_for, Daemon};

const LONG: Duration = Duration::from_secs(90);

fn running_containers(docker: &Docker, service: &str) -> Vec<String> {
    let filters = HashMap::from([
        (
            "label".to_string(),
            vec![format!("com.shoal.service.name={service}")],
        ),
        ("status".to_string(), vec!["running".to_string()]),
    ]);
    let opts = ListContainersOptionsBuilder::default()
        .filters(&filters)
        .build();
    let mut v: Vec<String> = rt()
        .block_on(docker.list_containers(Some(opts)))
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    v.sort();
    v
}

#[test]
fn docker_tasks_converge_heal_scale_log_restart_and_clean_up() {
    let Some(docker) = engine() else { return };
    build_image(&docker);
    let _cleanup = Cleanup(docker.clone(), vec!["dweb", "dmissing"]);
    let mut d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let nodes = d.rows(&["node", "ls"]);
    assert!(
        nodes[0]["EngineVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty() && v != "0.1.0"),
        "{nodes:?}"
    );

    // A 3-replica docker service converges; the containers carry swarm-style names and labels.
    let started = Instant::now();
    let out = d.ok(&[
        "service",
        "create",
        "--name",
        "dweb",
        "--replicas",
        "3",
        "--limit-memory",
        "64m",
        "--workdir",
        "/",
        IMAGE,
        "--print",
        "hello-from-docker",
    ]);
    eprintln!(
        "docker service create -> converged (incl. 2 s verify): {:?}",
        started.elapsed()
    );
    assert!(out.contains("verify: Service dweb converged"), "{out}");
    assert_eq!(running_containers(&docker, "dweb").len(), 3);

    // Logs carry the workload's output with docker's task prefix.
    wait_for("container logs", LONG, || {
        let logs = d.ok(&["service", "logs", "dweb"]);
        logs.lines()
            .filter(|l| l.starts_with("dweb.") && l.contains("| hello-from-docker"))
            .count()
            == 3
    });

    // A container killed through the engine is replaced.
    let victim = running_containers(&docker, "dweb")[0].clone();
    rt().block_on(docker.kill_container(
        &victim,
        None::<bollard::query_parameters::KillContainerOptions>,
    ))
    .expect("kill");
    wait_for("the killed container replaced", LONG, || {
        let now = running_containers(&docker, "dweb");
        now.len() == 3 && !now.contains(&victim) && running(&d, "dweb") == 3
    });

    // Scale up and down; scale-down leaves no container behind.
    d.ok(&["service", "scale", "-d", "dweb=5"]);
    wait_for("5 containers", LONG, || {
        running_containers(&docker, "dweb").len() == 5 && running(&d, "dweb") == 5
    });
    d.ok(&["service", "scale", "-d", "dweb=2"]);
    wait_for("2 containers", LONG, || {
        containers(&docker, "dweb").len() == 2 && running(&d, "dweb") == 2
    });

    // kill -9 the daemon: the containers keep running and are adopted, not duplicated.
    let before = running_containers(&docker, "dweb");
    d.kill9_and_restart();
    std::thread::sleep(Duration::from_secs(3));
    wait_for("2 running after the restart", LONG, || {
        running(&d, "dweb") == 2
    });
    assert_eq!(
        running_containers(&docker, "dweb"),
        before,
        "the same containers, adopted"
    );

    // A missing image is REJECTED with the engine's message.
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "dmissing",
        "no-such-image:never",
    ]);
    wait_for("rejected with the engine's message", LONG, || {
        d.rows(&["service", "ps", "--no-trunc", "dmissing"])
            .iter()
            .any(|r| {
                r["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Rejected"))
                    && r["Error"]
                        .as_str()
                        .is_some_and(|e| e.contains("No such image: no-such-image:never"))
            })
    });

    // service rm removes every container.
    d.ok(&["service", "rm", "dweb", "dmissing"]);
    wait_for("no container left", LONG, || {
        containers(&docker, "dweb").is_empty()
    });
}

/// A docker task behind the routing mesh: the node's proxy reaches the
/// container at its engine address.
#[test]
fn a_docker_service_answers_through_the_mesh() {
    let Some(docker) = engine() else { return };
    build_image(&docker);
    let _cleanup = Cleanup(docker.clone(), vec!["dmesh"]);
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let port = free_tcp_port();
    let publish = format!("{port}:80");
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "dmesh",
        "--replicas",
        "2",
        "-p",
        &publish,
        IMAGE,
        "--port",
        "80",
    ]);
    wait_for("2 running", LONG, || running(&d, "dmesh") == 2);
    let ip = d
        .listen
        .split(':')
        .next()
        .unwrap_or("127.0.0.1")
        .to_string();
    let ask = || echo_task_at(&format!("{ip}:{port}"));
    let mut seen = std::collections::BTreeSet::new();
    wait_for("both containers answer through the mesh", LONG, || {
        if let Some(t) = ask() {
            seen.insert(t);
        }
        seen.len() == 2
    });
    d.ok(&["service", "rm", "dmesh"]);
}

fn inspect_container(docker: &Docker, id: &str) -> bollard::models::ContainerInspectResponse {
    rt().block_on(docker.inspect_container(id, None))
        .expect("inspect container")
}

#[test]
fn a_docker_service_rolls_over_to_a_second_image_tag_and_reports_health() {
    const V2: &str = "shoal-echo:e2e-v2";
    let Some(docker) = engine() else { return };
    build_image(&docker);
    build_image_as(&docker, V2);
    let _cleanup = Cleanup(docker.clone(), vec!["dupd"]);
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "dupd",
        "--replicas",
        "2",
        "--update-monitor",
        "1s",
        IMAGE,
    ]);
    wait_for("2 running containers", LONG, || {
        running_containers(&docker, "dupd").len() == 2
    });
    let images = |docker: &Docker| -> Vec<String> {
        running_containers(docker, "dupd")
            .iter()
            .filter_map(|id| inspect_container(docker, id).config?.image)
            .collect()
    };
    assert_eq!(images(&docker), [IMAGE, IMAGE]);

    let out = d.ok(&["service", "update", "--image", V2, "dupd"]);
    assert!(out.contains("overall progress: 2 out of 2 tasks"), "{out}");
    assert!(out.contains("verify: Service converged"), "{out}");
    wait_for("only v2 containers", LONG, || images(&docker) == [V2, V2]);
    let (_, svc) = d.api("GET", "/services/dupd", None).expect("inspect");
    assert_eq!(svc["UpdateStatus"]["State"], "completed", "{svc}");
    assert_eq!(
        svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        IMAGE
    );

    // A health check goes to the engine, and its verdict comes back.
    let mut spec = svc["Spec"].clone();
    spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"] = serde_json::json!({
        "Test": ["CMD", "/shoal-echo", "--help"],
        "Interval": 200_000_000u64,
        "Retries": 3,
    });
    let (code, body) = d
        .api(
            "POST",
            &format!(
                "/services/dupd/update?version={}",
                svc["Version"]["Index"].as_u64().expect("version")
            ),
            Some(&spec.to_string()),
        )
        .expect("update");
    assert_eq!(code, 200, "{body}");
    wait_for("healthy tasks under the new spec", LONG, || {
        let tasks = d.tasks("dupd");
        let healthy = tasks
            .iter()
            .filter(|t| t["Status"]["State"] == "running" && t["Status"]["Health"] == "healthy")
            .count();
        healthy == 2
    });
    for id in running_containers(&docker, "dupd") {
        let c = inspect_container(&docker, &id);
        let test = c.config.and_then(|c| c.healthcheck).and_then(|h| h.test);
        assert_eq!(
            test,
            Some(vec!["CMD".into(), "/shoal-echo".into(), "--help".into()])
        );
    }
}

/// The secret a container reads: a tmpfs of the task's on the host,
/// bind-mounted read-only at /run/secrets/<target>; gone with the task.
#[test]
fn docker_tasks_read_secrets_and_configs_from_a_per_task_tmpfs() {
    let Some(docker) = engine() else { return };
    build_image(&docker);
    let _cleanup = Cleanup(docker.clone(), vec!["dsecret"]);
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let value = dir.path().join("pw");
    std::fs::write(&value, "1q2w3e4r-docker").expect("pw");
    let conf = dir.path().join("conf");
    std::fs::write(&conf, "a: 1\n").expect("conf");
    d.ok(&["secret", "create", "dpw", value.to_str().expect("path")]);
    d.ok(&["config", "create", "dconf", conf.to_str().expect("path")]);
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "dsecret",
        "--secret",
        "source=dpw,target=mysql_root_password",
        "--config",
        "source=dconf,target=/etc/app.yml",
        IMAGE,
    ]);
    wait_for("the container to run", LONG, || running(&d, "dsecret") == 1);
    let id = running_containers(&docker, "dsecret").remove(0);
    let pid = rt()
        .block_on(docker.inspect_container(&id, None))
        .expect("inspect")
        .state
        .and_then(|s| s.pid)
        .expect("pid");
    let read = |p: &str| std::fs::read_to_string(format!("/proc/{pid}/root{p}")).ok();
    assert_eq!(
        read("/run/secrets/mysql_root_password").as_deref(),
        Some("1q2w3e4r-docker")
    );
    assert_eq!(read("/etc/app.yml").as_deref(), Some("a: 1\n"));
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let line = mountinfo
        .lines()
        .find(|l| l.contains(" /run/secrets/mysql_root_password "))
        .unwrap_or_else(|| panic!("no secret mount in {mountinfo}"));
    assert!(
        line.contains(" ro,") && line.contains(" - tmpfs "),
        "{line}"
    );
    let secrets_dir = d.data_dir().join("secrets");
    assert_eq!(
        std::fs::read_dir(&secrets_dir)
            .expect("secrets dir")
            .count(),
        1
    );
    d.ok(&["service", "rm", "dsecret"]);
    wait_for("the task's tmpfs to go", LONG, || {
        std::fs::read_dir(&secrets_dir)
            .map(|r| r.count())
            .unwrap_or(0)
            == 0
    });
}
