//! `shoal stack deploy|ls|services|ps|rm` end to end: real daemons, the
//! process driver (`x-shoal-driver: process`) and the shoal-echo workload.

mod common;

use std::path::Path;

use common::{cluster, echo_bin, wait_for, Daemon, LONG};

/// The spec version of `service`.
fn version(d: &Daemon, service: &str) -> u64 {
    d.ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Version.Index}}",
        service,
    ])
    .trim()
    .parse()
    .expect("version")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

/// The stack: a web tier behind a published port, which waits for a
/// healthy api, which waits for a db with a secret and a config; an agent
/// on every node, and a one-shot job.
fn compose(echo: &str, web_print: &str, with_job: bool) -> String {
    let mut text = format!(
        r#"version: "3.8"
x-proc: &proc
  x-shoal-driver: process
services:
  web:
    <<: *proc
    image: {echo}
    command: ["--port", "8080", "--print", "{web_print}"]
    ports:
      - "${{WEB_PORT:-18091}}:8080"
    environment:
      GREETING: ${{GREETING}}
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        order: start-first
    depends_on:
      api:
        condition: service_healthy
  api:
    <<: *proc
    image: {echo}
    command: ["--port", "9000"]
    healthcheck:
      test: python3 -c "import socket; socket.create_connection(('127.0.0.1', 9000), 1)"
      interval: 200ms
      retries: 2
    depends_on: [db]
  db:
    <<: *proc
    image: {echo}
    command: ["--port", "5432"]
    secrets: [pw]
    configs:
      - source: conf
        target: /etc/db.conf
        mode: 0440
  agent:
    <<: *proc
    image: {echo}
    deploy:
      mode: global
networks:
  default: {{}}
secrets:
  pw:
    file: ./pw.txt
configs:
  conf:
    file: ./db.conf
"#
    );
    if with_job {
        text = text.replace(
            "networks:\n  default",
            &format!(
                "  once:\n    <<: *proc\n    image: {echo}\n    command: [\"--exit-after\", \"0\"]\n    deploy:\n      mode: replicated-job\n      replicas: 2\nnetworks:\n  default"
            ),
        );
    }
    text
}

/// When the first task of `service` started running.
fn first_running(d: &Daemon, service: &str) -> chrono::DateTime<chrono::FixedOffset> {
    d.tasks(service)
        .iter()
        .filter(|t| t["Status"]["State"] == "running")
        .filter_map(|t| {
            chrono::DateTime::parse_from_rfc3339(t["Status"]["Timestamp"].as_str()?).ok()
        })
        .min()
        .expect("a running task")
}

/// When `service` was created.
fn created(d: &Daemon, service: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let at = d.ok(&["service", "inspect", "--format", "{{.CreatedAt}}", service]);
    chrono::DateTime::parse_from_rfc3339(at.trim()).expect("CreatedAt")
}

#[test]
fn deploy_redeploy_prune_and_rm() {
    let nodes = cluster(1, 2, &[]);
    let m = &nodes[0];
    let dir = m.dir.path().join("stack");
    std::fs::create_dir_all(&dir).expect("dir");
    let echo = echo_bin().to_string_lossy().into_owned();
    let port = common::free_tcp_port();
    write(
        &dir,
        ".env",
        &format!("GREETING=hello from dotenv\nWEB_PORT={port}\n"),
    );
    write(&dir, "pw.txt", "s3cret-1");
    write(&dir, "db.conf", "max=1");
    let file = write(&dir, "compose.yml", &compose(&echo, "v1", true));

    // The first deploy creates everything and waits for convergence.
    let out = m.ok(&["stack", "deploy", "-c", &file, "app"]);
    for line in [
        "Creating network app_default",
        "Creating secret app_pw",
        "Creating config app_conf",
        "Creating service app_db",
        "Creating service app_web",
        "Creating service app_once",
        "Stack converged",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    // depends_on: db running before api was created, api healthy before web.
    let at = |line: &str| {
        out.find(line)
            .unwrap_or_else(|| panic!("{line:?} in {out}"))
    };
    assert!(
        at("Creating service app_db") < at("Creating service app_api"),
        "{out}"
    );
    assert!(
        at("Creating service app_api") < at("Creating service app_web"),
        "{out}"
    );
    assert!(
        out.contains("Waiting for service app_db to be running"),
        "{out}"
    );
    assert!(
        out.contains("Waiting for service app_api to be healthy"),
        "{out}"
    );
    assert!(first_running(m, "app_db") <= created(m, "app_api"));
    assert!(first_running(m, "app_api") <= created(m, "app_web"));
    // The job ended as completed (the deploy returned), the agent runs on all 3 nodes.
    let once = m.ok(&[
        "service",
        "ls",
        "--filter",
        "name=app_once",
        "--format",
        "{{.Replicas}}",
    ]);
    assert!(once.contains("(2/2 completed)"), "{once}");
    let agent = m.ok(&[
        "service",
        "ls",
        "--filter",
        "name=app_agent",
        "--format",
        "{{.Replicas}}",
    ]);
    assert_eq!(agent.trim(), "3/3");

    let ls = m.ok(&["stack", "ls"]);
    assert_eq!(
        ls.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        vec![vec!["NAME", "SERVICES"], vec!["app", "5"]],
        "{ls}"
    );
    let services = m.ok(&["stack", "services", "app"]);
    let header = services.lines().next().expect("header");
    for col in ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"] {
        assert!(header.contains(col), "{services}");
    }
    assert!(
        services.contains(&format!("*:{port}->8080/tcp")),
        "{services}"
    );
    let ps = m.ok(&[
        "stack",
        "ps",
        "--format",
        "{{.Name}} {{.DesiredState}}",
        "app",
    ]);
    assert!(ps.contains("app_web.1 Running"), "{ps}");
    // Labels and aliases as docker's client makes them; .env interpolated.
    let labels = m.ok(&["service", "inspect", "--format", "{{json .Spec.Labels}} {{json .Spec.TaskTemplate.Networks}} {{json .Spec.TaskTemplate.ContainerSpec.Env}}", "app_web"]);
    assert!(
        labels.contains(r#""com.docker.stack.namespace":"app""#),
        "{labels}"
    );
    assert!(
        labels.contains(&format!(r#""com.docker.stack.image":"{echo}""#)),
        "{labels}"
    );
    assert!(labels.contains(r#""Aliases":["web"]"#), "{labels}");
    assert!(labels.contains("GREETING=hello from dotenv"), "{labels}");
    // Answers through the routing mesh.
    wait_for("web through the mesh", LONG, || {
        common::echo_task_at(&format!("127.0.0.2:{port}")).is_some()
    });

    // The same file again: nothing is touched.
    let (web, db) = (version(m, "app_web"), version(m, "app_db"));
    let plan = m.ok(&["stack", "deploy", "--dry-run", "-c", &file, "app"]);
    assert!(!plan.contains("Would update service"), "{plan}");
    assert!(!plan.contains("Would create"), "{plan}");
    let again = m.ok(&["stack", "deploy", "-d", "-c", &file, "app"]);
    assert!(!again.contains("Updating service"), "{again}");
    assert_eq!((version(m, "app_web"), version(m, "app_db")), (web, db));

    // One service changed: --dry-run shows the field and writes nothing.
    std::fs::write(&file, compose(&echo, "v2", true)).expect("write");
    let plan = m.ok(&["stack", "deploy", "--dry-run", "-c", &file, "app"]);
    assert!(plan.contains("Would update service app_web"), "{plan}");
    assert!(
        plan.contains(r#"TaskTemplate.ContainerSpec.Args[3]: "v1" -> "v2""#),
        "{plan}"
    );
    assert!(plan.contains("Service app_db is up to date"), "{plan}");
    assert!(plan.contains("Service app_api is up to date"), "{plan}");
    assert_eq!(version(m, "app_web"), web);
    // Deployed: only web's spec version moves.
    let out = m.ok(&["stack", "deploy", "-c", &file, "app"]);
    assert!(out.contains("Updating service app_web"), "{out}");
    assert!(!out.contains("Updating service app_db"), "{out}");
    assert!(version(m, "app_web") > web);
    assert_eq!(version(m, "app_db"), db);

    // A changed secret file: the secret gets its new value, db rolls.
    write(&dir, "pw.txt", "s3cret-2");
    m.ok(&["stack", "deploy", "-d", "-c", &file, "app"]);
    let data_version = m.ok(&[
        "secret",
        "inspect",
        "--format",
        "{{.DataVersion}}",
        "app_pw",
    ]);
    assert_eq!(data_version.trim(), "1");
    wait_for("db to roll", LONG, || version(m, "app_db") > db);

    // The job left out, with --prune: it is removed.
    std::fs::write(&file, compose(&echo, "v2", false)).expect("write");
    let out = m.ok(&["stack", "deploy", "-d", "--prune", "-c", &file, "app"]);
    assert!(out.contains("Removing service app_once"), "{out}");
    assert!(m.shoal(&["service", "inspect", "app_once"]).status.code() == Some(1));

    // rm leaves nothing behind.
    let out = m.ok(&["stack", "rm", "app"]);
    assert!(out.contains("Removing service app_web"), "{out}");
    assert!(out.contains("Removing network app_default"), "{out}");
    assert_eq!(m.ok(&["service", "ls", "-q"]), "");
    assert_eq!(m.ok(&["secret", "ls", "-q"]), "");
    assert_eq!(m.ok(&["config", "ls", "-q"]), "");
    assert!(!m.ok(&["network", "ls"]).contains("app_default"));
    assert_eq!(m.ok(&["stack", "ls"]), "NAME      SERVICES\n");
    let nothing = m.shoal(&["stack", "rm", "app"]);
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("Nothing found in stack: app"));
}

#[test]
fn bad_files_are_refused_and_nothing_is_created() {
    let nodes = cluster(1, 0, &[]);
    let m = &nodes[0];
    let dir = m.dir.path().join("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    let echo = echo_bin().to_string_lossy().into_owned();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown top-level key",
            "version: '3.8'\nservices:\n  a:\n    image: x\nbogus: 1\n".into(),
            ":5: bogus: unknown field `bogus`",
        ),
        (
            "wrong type",
            "services:\n  a:\n    image: x\n    deploy:\n      replicas: many\n".into(),
            ":5: services.a.deploy.replicas: invalid value",
        ),
        (
            "missing external secret",
            format!("services:\n  a:\n    image: {echo}\n    x-shoal-driver: process\n    secrets: [gone]\nsecrets:\n  gone:\n    external: true\n"),
            "secret not found: gone",
        ),
        (
            "port clash",
            "services:\n  a:\n    image: x\n    ports: ['8080:80']\n  b:\n    image: x\n    ports:\n      - 8080:81\n".into(),
            ":8: services.b.ports: port 8080/tcp is already published by service a",
        ),
        (
            "required variable",
            "services:\n  a:\n    image: ${IMAGE:?set IMAGE to the image to run}\n".into(),
            ":3: services.a.image: required variable IMAGE is missing a value: set IMAGE to the image to run",
        ),
        (
            "depends_on cycle",
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n".into(),
            ":4: services.a.depends_on: a cycle among services [\"a\", \"b\"]",
        ),
        (
            "forbidden key",
            "services:\n  a:\n    image: x\n    extends: b\n".into(),
            ":4: compose file contains unsupported options:",
        ),
        (
            // The attack: a few lines that expand to billions of nodes.
            "alias bomb",
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n".into(),
            "repetition limit exceeded",
        ),
        (
            "syntax",
            "services:\n  a:\n    image: [x\n".into(),
            "bad.yml:",
        ),
    ];
    for (what, text, expected) in &cases {
        let file = write(&dir, "bad.yml", text);
        let err = m.fails(&["stack", "deploy", "-c", &file, "bad"]);
        assert!(err.contains(expected), "{what}: {expected:?} not in {err}");
        assert!(err.contains(&file), "{what}: no file name in {err}");
    }
    // A 10 MB file is refused before it is parsed.
    let big = dir.join("big.yml");
    std::fs::write(&big, vec![b'#'; 10 << 20]).expect("big");
    let err = m.fails(&["stack", "deploy", "-c", &big.to_string_lossy(), "bad"]);
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    // Nothing was created by any of them.
    assert_eq!(m.ok(&["service", "ls", "-q"]), "");
    assert_eq!(m.ok(&["secret", "ls", "-q"]), "");
    assert!(!m.ok(&["network", "ls"]).contains("bad_default"));

    // Ignored keys are warned about in docker's words, and the deploy goes on.
    let file = write(
        &dir,
        "warn.yml",
        &format!("services:\n  a:\n    image: {echo}\n    x-shoal-driver: process\n    restart: always\n    build: .\n    container_name: x\n"),
    );
    let out = m.shoal(&["stack", "deploy", "--dry-run", "-c", &file, "warn"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Ignoring unsupported options: build, restart"),
        "{stderr}"
    );
    assert!(stderr.contains("Ignoring deprecated options:\n\ncontainer_name: Setting the container name is not supported."), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Would create network warn_default"),
        "{stdout}"
    );
    assert!(stdout.contains("Would create service warn_a"), "{stdout}");
    assert_eq!(m.ok(&["service", "ls", "-q"]), "");
}

/// `docker ARGS` against `d`, with a config dir of its own.
fn docker(d: &Daemon, args: &[&str]) -> std::process::Output {
    let config = d.dir.path().join("docker-config");
    let _ = std::fs::create_dir_all(&config);
    std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run docker")
}

/// A service's spec as `service inspect` shows it, ids left out (a
/// network, secret or config made twice has two ids; its name says which).
fn spec_without_ids(d: &Daemon, service: &str) -> serde_json::Value {
    let text = d.ok(&["service", "inspect", "--format", "{{json .Spec}}", service]);
    let mut spec: serde_json::Value = serde_json::from_str(&text).expect("spec");
    let tt = &mut spec["TaskTemplate"];
    for n in tt["Networks"].as_array_mut().into_iter().flatten() {
        n.as_object_mut().expect("network").remove("Target");
    }
    let c = &mut tt["ContainerSpec"];
    for s in c["Secrets"].as_array_mut().into_iter().flatten() {
        s.as_object_mut().expect("secret").remove("SecretID");
    }
    for s in c["Configs"].as_array_mut().into_iter().flatten() {
        s.as_object_mut().expect("config").remove("ConfigID");
    }
    spec
}

/// The paths where `a` and `b` differ, with both values.
fn differences(a: &serde_json::Value, b: &serde_json::Value, path: String, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                differences(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                differences(x, y, format!("{path}[{i}]"), out);
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push(format!("{path}: docker {x}, shoal {y}")),
    }
}

#[test]
fn docker_stack_deploy_and_shoal_stack_deploy_make_the_same_specs() {
    let docker_found = std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(engine) = common::images::engine().filter(|_| docker_found) else {
        println!("skipped: no docker CLI or engine on this machine");
        return;
    };
    common::images::build_image(&engine);
    let _cleanup = common::images::Cleanup(engine.clone(), vec!["app_web", "app_db"]);
    let nodes = cluster(1, 0, &[]);
    let m = &nodes[0];
    let dir = m.dir.path().join("same");
    std::fs::create_dir_all(&dir).expect("dir");
    write(&dir, "pw.txt", "pw");
    write(&dir, "app.conf", "conf");
    let port = common::free_tcp_port();
    let file = write(
        &dir,
        "compose.yml",
        &format!(
            r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["--port", "8080"]
    environment:
      - B=2
      - A=1
    labels: [tier=front]
    hostname: web-host
    stop_grace_period: 3s
    ports:
      - "{port}:8080"
    healthcheck:
      test: ["CMD", "/shoal-echo", "--get", "127.0.0.1:8080"]
      interval: 2s
      timeout: 1s
      retries: 3
    networks:
      front:
        aliases: [www]
    volumes:
      - data:/data
      - type: tmpfs
        target: /scratch
        tmpfs:
          size: 1048576
    deploy:
      replicas: 2
      labels: {{role: web}}
      endpoint_mode: vip
      placement:
        constraints: [node.role == manager]
        max_replicas_per_node: 2
      resources:
        limits: {{cpus: "0.5", memory: 64M}}
        reservations: {{memory: 16M}}
      restart_policy:
        condition: on-failure
        delay: 1s
        max_attempts: 3
      update_config:
        parallelism: 2
        delay: 1s
        failure_action: rollback
        order: start-first
        max_failure_ratio: 0.1
      rollback_config:
        parallelism: 1
  db:
    image: {image}
    user: "1000"
    working_dir: /tmp
    secrets:
      - source: pw
        target: db_pw
        mode: 0400
    configs: [conf]
    deploy:
      mode: global
networks:
  front: {{}}
volumes:
  data: {{}}
secrets:
  pw:
    file: ./pw.txt
configs:
  conf:
    file: ./app.conf
"#,
            image = common::images::IMAGE
        ),
    );
    let out = docker(
        m,
        &[
            "stack",
            "deploy",
            "--detach=true",
            "--resolve-image",
            "never",
            "-c",
            &file,
            "app",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = (
        spec_without_ids(m, "app_web"),
        spec_without_ids(m, "app_db"),
    );
    let out = docker(m, &["stack", "rm", "app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("docker's stack gone", LONG, || {
        m.ok(&["service", "ls", "-q"]).is_empty()
            && m.ok(&["secret", "ls", "-q"]).is_empty()
            && !m.ok(&["network", "ls"]).contains("app_front")
    });
    m.ok(&["stack", "deploy", "-d", "-c", &file, "app"]);
    let ours = (
        spec_without_ids(m, "app_web"),
        spec_without_ids(m, "app_db"),
    );
    for (name, theirs, ours) in [
        ("app_web", &theirs.0, &ours.0),
        ("app_db", &theirs.1, &ours.1),
    ] {
        let mut differ = Vec::new();
        differences(theirs, ours, String::new(), &mut differ);
        assert!(
            differ.is_empty(),
            "{name}: docker's spec and shoal's differ: {differ:#?}"
        );
    }
    // And docker's client sees shoal's stack as its own.
    let out = docker(m, &["stack", "services", "--format", "{{.Name}}", "app"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app_db\napp_web\n");
    let out = docker(m, &["stack", "rm", "app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two files, the second over the first, as docker's client merges them: a
/// secret and a constraint added, an environment variable changed in the
/// other form, the image replaced; the first file's secret and variables kept.
#[test]
fn a_second_file_is_merged_over_the_first_as_docker_merges() {
    let nodes = cluster(1, 0, &[]);
    let m = &nodes[0];
    let echo = echo_bin();
    let echo = echo.to_string_lossy();
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "pw.txt", "hunter2");
    write(dir.path(), "tls.txt", "cert");
    let base = write(
        dir.path(),
        "base.yml",
        r#"version: "3.8"
services:
  web:
    image: /bin/false
    x-shoal-driver: process
    command: ["--print", "web"]
    environment: [MODE=dev, KEEP=1]
    secrets: [pw]
    deploy:
      placement:
        constraints: ["node.role==manager"]
secrets:
  pw: {file: ./pw.txt}
"#,
    );
    let prod = write(
        dir.path(),
        "prod.yml",
        &format!(
            r#"version: "3.8"
services:
  web:
    image: {echo}
    environment: {{MODE: prod}}
    secrets: [tls]
    deploy:
      placement:
        constraints: ["node.platform.os==linux"]
secrets:
  tls: {{file: ./tls.txt}}
"#
        ),
    );
    m.ok(&["stack", "deploy", "-c", &base, "-c", &prod, "app"]);
    let spec: serde_json::Value =
        serde_json::from_str(&m.ok(&["service", "inspect", "app_web"])).expect("json");
    let cs = &spec[0]["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Image"], echo.as_ref(), "{cs}");
    let env: Vec<&str> = cs["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(env, ["KEEP=1", "MODE=prod"], "{cs}");
    let secrets: Vec<&str> = cs["Secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["SecretName"].as_str())
        .collect();
    assert_eq!(secrets, ["app_pw", "app_tls"], "{cs}");
    let constraints = &spec[0]["Spec"]["TaskTemplate"]["Placement"]["Constraints"];
    assert_eq!(
        constraints,
        &serde_json::json!(["node.role==manager", "node.platform.os==linux"]),
        "{spec}"
    );
    wait_for("web running", LONG, || {
        m.ok(&["stack", "services", "app"]).contains("1/1")
    });
    m.ok(&["stack", "rm", "app"]);
}
