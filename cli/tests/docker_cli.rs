//! The unmodified `docker` CLI of this machine drives a three-manager shoal
//! swarm through `DOCKER_HOST`: one row per command (exit status, stdout and
//! stderr patterns), then the same commands against a surviving manager
//! after the leader is killed. Services run as containers on this machine's
//! engine (the docker CLI has no word for shoal's process driver), from the
//! tests' own `FROM scratch` image.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::images::{build_image, engine, Cleanup, IMAGE};
use common::{cluster, leader_of, running, wait_for, Daemon, LONG};
use regex::Regex;

/// The docker CLI, or `None` (the test is skipped) if this machine has none.
fn docker_cli() -> Option<()> {
    let found = Command::new("docker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipped: no docker CLI on this machine");
    }
    found.then_some(())
}

/// Runs `docker ARGS` against `d`, with a config dir of its own (no
/// credentials or contexts of the machine's user leak in).
fn docker(d: &Daemon, args: &[&str], env: &[(&str, &str)]) -> Output {
    let config = d.dir.path().join("docker-config");
    let _ = std::fs::create_dir_all(&config);
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// One row: `docker ARGS` exits with `code`, its stdout and stderr match
/// the patterns ("" is not checked). Returns stdout.
fn row(d: &Daemon, args: &[&str], code: i32, out: &str, err: &str) -> String {
    row_env(d, args, &[], code, out, err)
}

fn row_env(
    d: &Daemon,
    args: &[&str],
    env: &[(&str, &str)],
    code: i32,
    out: &str,
    err: &str,
) -> String {
    let o = docker(d, args, env);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let show = || format!("docker {args:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert_eq!(o.status.code(), Some(code), "{}", show());
    for (pattern, text) in [(out, &stdout), (err, &stderr)] {
        if !pattern.is_empty() {
            let re = Regex::new(pattern).expect("pattern");
            assert!(re.is_match(text), "{pattern:?} not found\n{}", show());
        }
    }
    stdout
}

/// The non-empty values of `docker` that `shoal` does not have, by path.
fn differences(docker: &serde_json::Value, shoal: &serde_json::Value, path: &str) -> Vec<String> {
    use serde_json::Value;
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    };
    match (docker, shoal) {
        (Value::Object(d), _) => d
            .iter()
            .flat_map(|(k, v)| differences(v, &shoal[k.as_str()], &format!("{path}.{k}")))
            .collect(),
        (Value::Array(d), Value::Array(s)) if d.len() == s.len() => d
            .iter()
            .zip(s)
            .enumerate()
            .flat_map(|(i, (d, s))| differences(d, s, &format!("{path}[{i}]")))
            .collect(),
        (Value::Number(d), Value::Number(s)) if d.as_f64() == s.as_f64() => Vec::new(),
        // The same instant: Go trims a time's trailing zeros (`.08016393Z`),
        // shoal writes 3, 6 or 9 digits (`.080163930Z`).
        (Value::String(d), Value::String(s)) if same_instant(d, s) => Vec::new(),
        (d, s) if d == s || empty(d) && empty(s) => Vec::new(),
        (d, s) => vec![format!("{path}: docker {d}, shoal {s}")],
    }
}

/// Whether `a` and `b` are RFC 3339 times of the same instant.
fn same_instant(a: &str, b: &str) -> bool {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    at(a).is_some_and(|a| Some(a) == at(b))
}

/// Waits until `docker node ls` shows `node` in `status`.
fn wait_for_status(d: &Daemon, node: &str, status: &str) {
    let filter = format!("name={node}");
    wait_for(&format!("{node} {status}"), LONG, || {
        let o = docker(
            d,
            &["node", "ls", "-f", &filter, "--format", "{{.Status}}"],
            &[],
        );
        String::from_utf8_lossy(&o.stdout).trim() == status
    });
}

/// Waits until `service` has no rollout in progress.
fn settled(d: &Daemon, service: &str) {
    wait_for("the rollout to finish", LONG, || {
        let o = docker(
            d,
            &[
                "service",
                "inspect",
                "--format",
                "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                service,
            ],
            &[],
        );
        let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
        o.status.success() && !state.contains("updating") && !state.contains("rollback_started")
    });
}

/// Now as docker's `seconds.nanoseconds` timestamp: a whole second would
/// cut off the events committed later in that same second.
fn now_secs() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

#[test]
fn the_docker_cli_drives_a_shoal_swarm_and_survives_a_leader_kill() {
    let Some(()) = docker_cli() else { return };
    let Some(engine) = engine() else { return };
    build_image(&engine);
    let _cleanup = Cleanup(
        engine,
        vec![
            "cliweb", "cliwait", "app_web", "app_db", "after", "dmount", "dlog", "dopts",
        ],
    );
    let mut nodes = cluster(3, 0, &[]);
    let m = &nodes[0];
    let since = now_secs();

    // The handshake and the node's own view.
    row(
        m,
        &["version"],
        0,
        r"API version:\s+1\.41 \(downgraded from 1\.\d+\)(.|\n)*Server: shoal(.|\n)*API version:\s+1\.41 \(minimum version 1\.24\)",
        "",
    );
    row(
        m,
        &["info"],
        0,
        r" Swarm: active\n  NodeID: [a-z0-9]{25}\n  Is Manager: true(.|\n)*  Managers: 3\n  Nodes: 3\n",
        "",
    );
    row(
        m,
        &[
            "info",
            "--format",
            "{{.Swarm.ControlAvailable}} {{len .Swarm.RemoteManagers}}",
        ],
        0,
        r"^true 3\n$",
        "",
    );

    // Nodes.
    row(
        m,
        &[
            "node",
            "ls",
            "--format",
            "{{.Hostname}} {{.ManagerStatus}} {{.Self}}",
        ],
        0,
        r"^manager-1 Leader true\nmanager-2 Reachable false\nmanager-3 Reachable false\n$",
        "",
    );
    row(
        m,
        &["node", "ls", "-f", "name=manager-2", "-q"],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    row(
        m,
        &["node", "update", "--label-add", "zone=a", "manager-2"],
        0,
        r"^manager-2\n$",
        "",
    );
    row(
        m,
        &[
            "node",
            "inspect",
            "--format",
            "{{.Spec.Labels.zone}} {{.Spec.Role}}",
            "manager-2",
        ],
        0,
        r"^a manager\n$",
        "",
    );
    row(
        m,
        &["node", "update", "--label-rm", "zone", "manager-2"],
        0,
        "",
        "",
    );
    row(
        m,
        &["node", "demote", "manager-3"],
        0,
        r"^Manager manager-3 demoted in the swarm\.\n$",
        "",
    );
    wait_for("manager-3 to be a worker", LONG, || {
        docker(
            m,
            &["node", "inspect", "--format", "{{.Spec.Role}}", "manager-3"],
            &[],
        )
        .stdout
            == b"worker\n"
    });
    row(
        m,
        &["node", "promote", "manager-3"],
        0,
        r"^Node manager-3 promoted to a manager in the swarm\.\n$",
        "",
    );
    row(
        m,
        &["node", "promote", "manager-1"],
        0,
        r"^Node [a-z0-9]{25} is already a manager\.\n$",
        "",
    );
    row(
        m,
        &["node", "inspect", "--pretty", "self"],
        0,
        r"Hostname:\s+manager-1\n",
        "",
    );
    row(
        m,
        &["node", "inspect", "nobody"],
        1,
        "",
        r"Error response from daemon: node nobody not found",
    );

    // The swarm.
    row(
        m,
        &["swarm", "join-token", "worker"],
        0,
        r"docker swarm join --token SWMTKN-1-\S+ 127\.0\.0\.2:\d+",
        "",
    );
    row(
        m,
        &["swarm", "join-token", "-q", "manager"],
        0,
        r"^SWMTKN-1-\S+\n$",
        "",
    );
    row(
        m,
        &["swarm", "update", "--task-history-limit", "4"],
        0,
        r"^Swarm updated\.\n$",
        "",
    );
    row(
        m,
        &[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}}",
        ],
        0,
        r"^4\n$",
        "",
    );
    row(
        m,
        &["swarm", "update", "--dispatcher-heartbeat", "20s"],
        1,
        "",
        r"shoal does not support changing Dispatcher\.HeartbeatPeriod",
    );
    row(m, &["swarm", "unlock-key"], 1, "", r"no unlock key is set");

    // Secrets, configs and networks.
    let secret_file = m.dir.path().join("secret.txt");
    std::fs::write(&secret_file, "s3cret").expect("secret file");
    let secret_path = secret_file.to_string_lossy().into_owned();
    row(
        m,
        &[
            "secret",
            "create",
            "--label",
            "k=v",
            "dsecret",
            &secret_path,
        ],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    row(
        m,
        &["secret", "ls", "--format", "{{.Name}}"],
        0,
        r"^dsecret\n$",
        "",
    );
    row(
        m,
        &["secret", "ls", "-f", "label=k=v", "-q"],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    row(
        m,
        &[
            "secret",
            "inspect",
            "--format",
            "{{.Spec.Name}} {{.Spec.Labels.k}}",
            "dsecret",
        ],
        0,
        r"^dsecret v\n$",
        "",
    );
    row(
        m,
        &["config", "create", "dconfig", &secret_path],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    row(
        m,
        &["config", "ls", "--format", "{{.Name}}"],
        0,
        r"^dconfig\n$",
        "",
    );
    row(
        m,
        &[
            "config",
            "inspect",
            "--format",
            "{{printf \"%s\" .Spec.Data}}",
            "dconfig",
        ],
        0,
        r"^s3cret\n$",
        "",
    );
    row(
        m,
        &["network", "create", "-d", "overlay", "--attachable", "dnet"],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    row(
        m,
        &[
            "network",
            "ls",
            "--filter",
            "scope=swarm",
            "--format",
            "{{.Name}} {{.Driver}}",
        ],
        0,
        r"(?m)^dnet overlay$",
        "",
    );
    row(
        m,
        &[
            "network",
            "inspect",
            "--format",
            "{{.Name}} {{.Attachable}}",
            "dnet",
        ],
        0,
        r"^dnet true\n$",
        "",
    );

    // Services: detached, then waiting for convergence as the CLI does.
    row(
        m,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "cliweb",
            "--replicas",
            "2",
            "--secret",
            "dsecret",
            "--network",
            "dnet",
            "--label",
            "tier=front",
            IMAGE,
            "--print",
            "hello-docker-cli",
        ],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    let started = Instant::now();
    row(
        m,
        &[
            "service",
            "create",
            "--name",
            "cliwait",
            "--update-monitor",
            "1s",
            IMAGE,
        ],
        0,
        r"(?s)^[a-z0-9]{25}\n.*verify: Service \S+ converged",
        "",
    );
    eprintln!(
        "docker service create (no -d) converged in {:?}",
        started.elapsed()
    );
    wait_for("cliweb 2/2", LONG, || {
        docker(
            m,
            &[
                "service",
                "ls",
                "-f",
                "name=cliweb",
                "--format",
                "{{.Replicas}}",
            ],
            &[],
        )
        .stdout
            == b"2/2\n"
    });
    row(
        m,
        &[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}}",
        ],
        0,
        r"^cliwait replicated 1/1\ncliweb replicated 2/2\n$",
        "",
    );
    row(
        m,
        &[
            "service",
            "ps",
            "--format",
            "{{.Name}} {{.DesiredState}}",
            "cliweb",
        ],
        0,
        r"^cliweb\.1 Running\ncliweb\.2 Running\n$",
        "",
    );
    // docker's `node ps` lists each node's tasks (`/tasks?filters={"node":…}`).
    row(
        m,
        &[
            "node",
            "ps",
            "-f",
            "desired-state=running",
            "--format",
            "{{.Name}}",
            "manager-1",
            "manager-2",
            "manager-3",
        ],
        0,
        r"(?m)^cliweb\.2$",
        "",
    );
    row(
        m,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.Name}} {{.Spec.Labels.tier}} {{.Spec.Mode.Replicated.Replicas}}",
            "cliweb",
        ],
        0,
        r"^cliweb front 2\n$",
        "",
    );
    row(
        m,
        &["service", "inspect", "--pretty", "cliweb"],
        0,
        r"Name:\s+cliweb\n(.|\n)*Replicas:\s+2\n",
        "",
    );
    wait_for("cliweb's logs", LONG, || {
        let o = docker(m, &["service", "logs", "cliweb"], &[]);
        let out = String::from_utf8_lossy(&o.stdout);
        o.status.success()
            && Regex::new(r"cliweb\.[12]\.[a-z0-9]{12}@manager-\d\s+\| .*hello-docker-cli")
                .expect("pattern")
                .is_match(&out)
    });
    row(
        m,
        &["service", "logs", "--raw", "--no-task-ids", "cliweb"],
        0,
        r"hello-docker-cli",
        "",
    );
    row(
        m,
        &[
            "service",
            "update",
            "-d",
            "--env-add",
            "COLOUR=blue",
            "cliweb",
        ],
        0,
        r"^cliweb\n$",
        "",
    );
    row(
        m,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
            "cliweb",
        ],
        0,
        r#"^\["COLOUR=blue"\]\n$"#,
        "",
    );
    // A client reads a service and sends it back at the version it read; a
    // rollout in progress moves the version (as in Docker Swarm), so the
    // next change waits for it to finish.
    settled(m, "cliweb");
    row(
        m,
        &["service", "scale", "-d", "cliweb=3"],
        0,
        r"^cliweb scaled to 3\n$",
        "",
    );
    row(
        m,
        &["service", "rollback", "-d", "cliweb"],
        0,
        r"^cliweb\n$",
        "",
    );
    row(
        m,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}}",
            "cliweb",
        ],
        0,
        r"^2\n$",
        "",
    );
    // Mounts are docker's.
    row(
        m,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "dmount",
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=1m",
            IMAGE,
        ],
        0,
        "",
        "",
    );
    row(
        m,
        &[
            "service",
            "inspect",
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Mounts}}{{.Type}} {{.Target}} {{.TmpfsOptions.SizeBytes}}{{end}}",
            "dmount",
        ],
        0,
        r"^tmpfs /scratch 1048576\n$",
        "",
    );
    row(m, &["service", "rm", "dmount"], 0, "", "");
    // A field shoal would not act on is refused, not dropped.
    row(
        m,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "dlog",
            "--log-driver",
            "syslog",
            IMAGE,
        ],
        1,
        "",
        r"shoal does not support TaskTemplate\.LogDriver",
    );
    row(m, &["service", "ls", "-f", "name=dlog", "-q"], 0, r"^$", "");
    // docker's container options reach the spec as docker's client sends them.
    row(
        m,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "dopts",
            "--dns",
            "192.0.2.53",
            "--host",
            "db:10.0.0.9",
            "--ulimit",
            "nofile=100:200",
            "--sysctl",
            "net.core.somaxconn=512",
            "--init",
            "--group",
            "4242",
            IMAGE,
        ],
        0,
        r"^[0-9a-z]{25}\n$",
        "",
    );
    row(
        m,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Ulimits}} {{json .Spec.TaskTemplate.ContainerSpec.Hosts}} {{.Spec.TaskTemplate.ContainerSpec.Init}}",
            "dopts",
        ],
        0,
        r#"^\[\{"Name":"nofile","Hard":200,"Soft":100\}\] \["10\.0\.0\.9 db"\] true\n$"#,
        "",
    );
    row(m, &["service", "rm", "dopts"], 0, "", "");

    // shoal's CLI and docker's see the same service.
    let ours: serde_json::Value = serde_json::from_str(&m.ok(&["service", "inspect", "cliwait"]))
        .expect("shoal inspect json");
    let theirs: serde_json::Value =
        serde_json::from_slice(&docker(m, &["service", "inspect", "cliwait"], &[]).stdout)
            .expect("docker inspect json");
    // docker's client re-prints through its Go types: it leaves out empty
    // values and fields it has no type for (shoal's `Driver`, `Balance`).
    let mismatches = differences(&theirs[0], &ours[0], "");
    assert!(
        mismatches.is_empty(),
        "docker's inspect differs from shoal's: {mismatches:?}"
    );
    assert!(!theirs[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].is_null());

    // A stack, deployed and removed by the docker client.
    let compose = m.dir.path().join("compose.yml");
    std::fs::write(
        &compose,
        format!(
            "version: \"3.8\"\nservices:\n  web:\n    image: {IMAGE}\n    command: [\"--print\", \"from-stack\"]\n    deploy:\n      replicas: 2\n    secrets: [token]\n    networks: [front]\n  db:\n    image: {IMAGE}\nnetworks:\n  front: {{}}\nsecrets:\n  token:\n    file: {secret_path}\n"
        ),
    )
    .expect("compose file");
    let compose = compose.to_string_lossy().into_owned();
    row(
        m,
        &["stack", "deploy", "-c", &compose, "app"],
        0,
        r"Creating network app_front\n(.|\n)*Creating secret app_token\n(.|\n)*Creating service app_(web|db)\n",
        "",
    );
    row(m, &["stack", "ls"], 0, r"(?m)^app\s+2\s*$", "");
    row(
        m,
        &["stack", "services", "--format", "{{.Name}}", "app"],
        0,
        r"^app_db\napp_web\n$",
        "",
    );
    row(
        m,
        &[
            "service",
            "inspect",
            "--format",
            "{{index .Spec.Labels \"com.docker.stack.namespace\"}}",
            "app_web",
        ],
        0,
        r"^app\n$",
        "",
    );
    wait_for("the stack's tasks", LONG, || {
        let o = docker(m, &["stack", "ps", "--format", "{{.Name}}", "app"], &[]);
        String::from_utf8_lossy(&o.stdout).lines().count() == 3
    });
    // A redeploy of the same file changes nothing and succeeds.
    row(
        m,
        &["stack", "deploy", "-c", &compose, "app"],
        0,
        r"Updating service app_(web|db)",
        "",
    );
    row(
        m,
        &["stack", "rm", "app"],
        0,
        r"Removing service app_web(.|\n)*Removing network app_front",
        "",
    );
    row(m, &["stack", "ls"], 0, r"^NAME\s+SERVICES\n$", "");

    // The events of all that, in commit order.
    let until = now_secs();
    std::thread::sleep(Duration::from_millis(1100));
    let events = row(
        m,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "type=service",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ],
        0,
        r"(?m)^create cliweb$",
        "",
    );
    let lines: Vec<&str> = events.lines().collect();
    let at = |l: &str| lines.iter().position(|x| *x == l);
    assert!(at("create cliweb") < at("update cliweb"), "{events}");
    assert!(
        at("create app_web").is_some() && at("remove app_web") > at("create app_web"),
        "{events}"
    );
    row(
        m,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=update",
            "--filter",
            "service=cliweb",
            "--format",
            "{{.Actor.Attributes}}",
        ],
        0,
        r"replicas\.new:3 replicas\.old:2",
        "",
    );
    row(
        m,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "type=secret",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Scope}}",
        ],
        0,
        r"(?m)^secret create dsecret swarm$",
        "",
    );

    // Bad input: versions outside the range served.
    row_env(
        m,
        &["service", "ls"],
        &[("DOCKER_API_VERSION", "1.99")],
        1,
        "",
        r"client version 1\.99 is too new\. Maximum supported API version is 1\.41",
    );
    row_env(
        m,
        &["version", "--format", "{{.Server.Version}}"],
        &[("DOCKER_API_VERSION", "1.12")],
        1,
        "",
        r"client version 1\.12 is too old\. Minimum supported API version is 1\.24",
    );

    // The leader dies: a surviving manager serves the same commands.
    let leader = leader_of(&nodes, 1).expect("a leader");
    nodes[leader].kill9();
    let survivor = (0..3).find(|i| *i != leader).expect("a survivor");
    wait_for("a new leader", LONG, || {
        leader_of(&nodes, survivor).is_some_and(|l| l != leader)
    });
    let s = &nodes[survivor];
    wait_for("docker node ls to show the dead leader down", LONG, || {
        let o = docker(
            s,
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            &[],
        );
        String::from_utf8_lossy(&o.stdout).contains(&format!("manager-{} Down", leader + 1))
    });
    row(
        s,
        &["service", "ls", "--format", "{{.Name}}"],
        0,
        r"^cliwait\ncliweb\n$",
        "",
    );
    row(
        s,
        &["service", "create", "-d", "--name", "after", IMAGE],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    row(
        s,
        &["service", "scale", "-d", "cliweb=1"],
        0,
        r"^cliweb scaled to 1\n$",
        "",
    );
    settled(s, "cliweb");
    row(
        s,
        &["service", "update", "-d", "--env-add", "AFTER=1", "cliweb"],
        0,
        r"^cliweb\n$",
        "",
    );
    row(
        s,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
            "cliweb",
        ],
        0,
        r#"^\["AFTER=1","COLOUR=blue"\]\n$|^\["COLOUR=blue","AFTER=1"\]\n$"#,
        "",
    );
    row(
        s,
        &["service", "ps", "--format", "{{.Name}}", "cliweb"],
        0,
        r"(?m)^cliweb\.1$",
        "",
    );
    row(
        s,
        &["network", "create", "-d", "overlay", "dnet2"],
        0,
        r"^[a-z0-9]{25}\n$",
        "",
    );
    row(
        s,
        &["network", "ls", "-q", "-f", "name=dnet2"],
        0,
        r"^[a-z0-9]{12}\n$",
        "",
    );
    row(s, &["network", "rm", "dnet2"], 0, r"^dnet2\n$", "");
    row(
        s,
        &["secret", "rm", "dsecret"],
        1,
        "",
        r"in use by the following service",
    );
    for name in ["cliweb", "cliwait", "after"] {
        row(s, &["service", "rm", name], 0, &format!("^{name}\n$"), "");
    }
    row(s, &["secret", "rm", "dsecret"], 0, r"^dsecret\n$", "");
    row(s, &["config", "rm", "dconfig"], 0, r"^dconfig\n$", "");
    // dnet's endpoints on the dead leader stay allocated until it comes
    // back or is removed: no network rm here.
}

#[test]
fn the_docker_cli_inits_joins_and_leaves_a_swarm() {
    let Some(()) = docker_cli() else { return };
    let first = Daemon::start_on("127.0.0.2", "manager-1", &[]);
    let second = Daemon::start_on("127.0.0.3", "worker-1", &[]);
    row(
        &first,
        &[
            "swarm",
            "init",
            "--listen-addr",
            &first.listen,
            "--advertise-addr",
            &first.listen,
        ],
        0,
        r"Swarm initialized: current node \([a-z0-9]{25}\) is now a manager\.",
        "",
    );
    let token = row(
        &first,
        &["swarm", "join-token", "-q", "worker"],
        0,
        r"^SWMTKN-1-\S+\n$",
        "",
    );
    // The worker's own address, as SDK suites pass one (docker's default
    // would be 0.0.0.0:2377, shared by every daemon on this machine).
    row(
        &second,
        &[
            "swarm",
            "join",
            "--listen-addr",
            &second.listen,
            "--token",
            token.trim(),
            &first.listen,
        ],
        0,
        r"^This node joined a swarm as a worker\.\n$",
        "",
    );
    wait_for_status(&first, "worker-1", "Ready");
    row(
        &second,
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
        0,
        r"^active false\n$",
        "",
    );
    row(
        &second,
        &["node", "ls"],
        1,
        "",
        r"This node is not a swarm manager",
    );
    row(
        &first,
        &["node", "rm", "worker-1"],
        1,
        "",
        r"is not down and can't be removed",
    );
    row(
        &second,
        &["swarm", "leave"],
        0,
        r"^Node left the swarm\.\n$",
        "",
    );
    wait_for_status(&first, "worker-1", "Down");
    row(&first, &["node", "rm", "worker-1"], 0, r"^worker-1\n$", "");
    row(&first, &["swarm", "leave"], 1, "", r"force");
    row(
        &first,
        &["swarm", "leave", "--force"],
        0,
        r"^Node left the swarm\.\n$",
        "",
    );
    row(
        &first,
        &["info", "--format", "{{.Swarm.LocalNodeState}}"],
        0,
        r"^inactive\n$",
        "",
    );
}

/// One service, created by `shoal service create`, inspected by shoal's CLI
/// and by docker's: the same JSON. docker's client re-prints through its Go
/// types, so it leaves out empty values and the fields it has no type for;
/// those are exactly shoal's extensions (docs/api.md), nothing else.
#[test]
fn shoal_and_docker_inspect_a_service_made_by_shoal_alike() {
    let Some(()) = docker_cli() else { return };
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let echo = common::echo_bin();
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "same",
        "--replicas",
        "2",
        "--driver",
        "process",
        "--label",
        "tier=web",
        "--env",
        "GREETING=hi",
        "--restart-condition",
        "on-failure",
        "--restart-max-attempts",
        "3",
        "--limit-memory",
        "64M",
        "--reserve-cpu",
        "0.1",
        "--endpoint-lb",
        "least-conn",
        "--workdir",
        "/",
        echo.to_str().expect("path"),
        "--print",
        "same",
    ]);
    // An update, so that PreviousSpec and UpdateStatus are there too.
    d.ok(&["service", "update", "-d", "--env-add", "MORE=1", "same"]);
    // Settled, so that both reads see the same task counts.
    wait_for("the update to complete", LONG, || {
        d.ok(&[
            "service",
            "inspect",
            "--format",
            "{{.UpdateStatus.State}}",
            "same",
        ])
        .trim()
            == "completed"
            && running(&d, "same") == 2
    });
    let ours: serde_json::Value =
        serde_json::from_str(&d.ok(&["service", "inspect", "same"])).expect("shoal inspect json");
    let o = docker(&d, &["service", "inspect", "same"], &[]);
    assert!(
        o.status.success(),
        "docker service inspect: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&o.stdout).expect("docker inspect json");
    assert_eq!(theirs.as_array().map(Vec::len), Some(1));
    assert_eq!(ours.as_array().map(Vec::len), Some(1));
    // Everything docker shows, shoal shows alike.
    let missing = differences(&theirs[0], &ours[0], "");
    assert!(
        missing.is_empty(),
        "docker shows what shoal does not: {missing:?}"
    );
    // What shoal shows beyond docker: its extensions and no other field.
    let extensions = [
        ".Spec.TaskTemplate.Driver",
        ".Spec.EndpointSpec.Balance",
        ".Endpoint.Spec.Balance",
        ".PreviousSpec.TaskTemplate.Driver",
        ".PreviousSpec.EndpointSpec.Balance",
    ];
    let beyond: Vec<String> = differences(&ours[0], &theirs[0], "")
        .into_iter()
        .filter(|d| !extensions.iter().any(|e| d.starts_with(&format!("{e}:"))))
        .collect();
    assert!(
        beyond.is_empty(),
        "shoal shows what docker does not: {beyond:?}"
    );
    assert_eq!(ours[0]["Spec"]["TaskTemplate"]["Driver"], "process");
    assert_eq!(theirs[0]["Spec"]["Labels"]["tier"], "web");
    assert_eq!(
        theirs[0]["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Env"],
        serde_json::json!(["GREETING=hi"])
    );
    d.ok(&["service", "rm", "same"]);
}

/// `service inspect --pretty` prints docker 28's text, character for
/// character, for a service with most of what the template shows (the
/// `Started`/`Completed` lines say "N seconds ago" at two moments apart and
/// are left out of the comparison).
#[test]
fn shoal_and_docker_print_the_same_pretty_inspect() {
    let Some(()) = docker_cli() else { return };
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let file = d.dir.path().join("value.txt");
    std::fs::write(&file, "v").expect("value file");
    let file = file.to_string_lossy().into_owned();
    d.ok(&["secret", "create", "psecret", &file]);
    d.ok(&["config", "create", "pconfig", &file]);
    d.ok(&["network", "create", "-d", "overlay", "pnet"]);
    let echo = common::echo_bin();
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "pretty",
        "--replicas",
        "2",
        "--driver",
        "process",
        "--label",
        "tier=web",
        "--label",
        "bare",
        "--env",
        "GREETING=hi",
        "--secret",
        "psecret",
        "--config",
        "source=pconfig,target=/etc/pconfig",
        "--network",
        "pnet",
        "--mount",
        "type=tmpfs,target=/scratch",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "CHOWN",
        "--workdir",
        "/",
        "--limit-memory",
        "64M",
        "--limit-pids",
        "64",
        "--reserve-cpu",
        "0.25",
        "--constraint",
        "node.role==manager",
        "--placement-pref",
        "spread=node.labels.zone",
        "--update-delay",
        "2s",
        "--rollback-max-failure-ratio",
        "0.25",
        "--health-cmd",
        "true",
        "--health-interval",
        "5s",
        echo.to_str().expect("path"),
        "--print",
        "pretty",
    ]);
    d.ok(&["service", "update", "-d", "--env-add", "MORE=1", "pretty"]);
    // The same UpdateStatus for both: once the rollout is over.
    settled(&d, "pretty");
    let timeless = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with(" Started:") && !l.starts_with(" Completed:"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let ours = d.ok(&["service", "inspect", "--pretty", "pretty"]);
    let o = docker(&d, &["service", "inspect", "--pretty", "pretty"], &[]);
    assert!(
        o.status.success(),
        "docker service inspect --pretty: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let theirs = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(timeless(&ours), timeless(&theirs));
    assert!(ours.contains("Networks: pnet \n"), "{ours}");
    assert!(ours.contains("\n Healthcheck:\n"), "{ours}");
    d.ok(&["service", "rm", "pretty"]);
}
