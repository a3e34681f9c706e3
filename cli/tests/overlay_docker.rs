//! A docker-driver task on an overlay network: node 0 runs in the test's own
//! namespace, where the Docker engine is, joined to the test's underlay by a
//! veth; node 1 runs in a namespace of its own with process tasks. The
//! docker task (shoal-echo `--get server:80`, which resolves the name itself
//! through its resolv.conf) reaches both process replicas on the other node
//! through the service's VIP; a container started outside shoal joins an
//! attachable network with `network connect`.

mod common;

use std::collections::BTreeSet;

use common::images::{build_image, containers, engine, rt, Cleanup, IMAGE};
use common::netns::{self, Underlay};
use common::{join, wait_for, Daemon, LONG};

const SUBNET: &str = "10.0.19.0/24";

/// Lines `get NAME -> ADDR: shoal-echo task=ID ...` of a log: (ADDR, ID).
fn answers(logs: &str, name: &str) -> Vec<(String, String)> {
    let head = format!("get {name} -> ");
    logs.lines()
        .filter_map(|l| {
            let rest = l.split(head.as_str()).nth(1)?;
            let (addr, body) = rest.split_once(": ")?;
            let task = body
                .split_whitespace()
                .find_map(|w| w.strip_prefix("task="))?;
            Some((addr.to_string(), task.to_string()))
        })
        .collect()
}

/// Whether every task in `want` answered at `vip` in `logs`.
fn all_answered(logs: &str, name: &str, vip: &str, want: &BTreeSet<String>) -> bool {
    let seen: BTreeSet<String> = answers(logs, name)
        .into_iter()
        .filter(|(addr, _)| addr == vip)
        .map(|(_, t)| t)
        .collect();
    want.is_subset(&seen)
}

/// The engine (with the test image built), or `None`: the test is skipped.
fn engine_and_namespaces() -> Option<bollard::Docker> {
    if !netns::available() {
        eprintln!("skipped: overlay tests need root and `ip netns`");
        return None;
    }
    let docker = engine()?;
    build_image(&docker);
    Some(docker)
}

/// Node 0 (`node-docker`, a manager) in the test's namespace, node 1
/// (`node-proc`, a worker) in the underlay's, both ready.
fn mixed_swarm(u: &mut Underlay) -> (Daemon, Daemon) {
    let root = u.add_root();
    let a = Daemon::start_on(&root, "node-docker", &[]);
    a.ok(&["swarm", "init"]);
    let token = a
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let b = Daemon::start_in_netns(&u.nodes[0], &u.addr(0), "node-proc", &[]);
    assert!(join(&b, &token, &a).contains("joined a swarm as a worker"));
    wait_for("both nodes ready", LONG, || {
        let rows = a.rows(&["node", "ls"]);
        rows.len() == 2 && rows.iter().all(|r| r["Status"] == "Ready")
    });
    (a, b)
}

/// Task ids of a service.
fn task_ids(d: &Daemon, service: &str) -> BTreeSet<String> {
    d.tasks(service)
        .iter()
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect()
}

/// The address of a service's (first) VIP.
fn vip_of(d: &Daemon, service: &str) -> String {
    let vip = d.ok(&[
        "service",
        "inspect",
        "--format",
        "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}",
        service,
    ]);
    vip.trim().split('/').next().unwrap_or_default().to_string()
}

/// `process` replicas of shoal-echo on port 80, on `node-proc`.
fn servers_on_proc(a: &Daemon, name: &str, network: &str) {
    a.create_echo(
        name,
        "2",
        &[
            "--network",
            network,
            "--constraint",
            "node.hostname==node-proc",
        ],
        &["--port", "80"],
    );
}

#[test]
fn a_docker_task_on_an_overlay_reaches_process_tasks_on_another_node_by_name() {
    let Some(docker) = engine_and_namespaces() else {
        return;
    };
    let _cleanup = Cleanup(docker.clone(), vec!["client"]);
    let mut u = Underlay::new(1, 1500);
    let (a, b) = mixed_swarm(&mut u);
    a.ok(&[
        "network", "create", "-d", "overlay", "--subnet", SUBNET, "mixed",
    ]);
    servers_on_proc(&a, "server", "mixed");
    a.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "client",
        "--network",
        "mixed",
        "--constraint",
        "node.hostname==node-docker",
        IMAGE,
        "--get",
        "server:80",
    ]);
    let vip = vip_of(&a, "server");
    assert!(vip.starts_with("10.0.19."), "server's VIP: {vip:?}");
    let servers = task_ids(&a, "server");
    assert_eq!(servers.len(), 2);

    // Both replicas on the other node answer the docker task, by name, at the VIP.
    wait_for(
        "both server replicas answer the docker client",
        LONG,
        || {
            let logs = a.ok(&["service", "logs", "--raw", "client"]);
            all_answered(&logs, "server", &vip, &servers)
        },
    );

    // The client's container shares the namespace of its sandbox container,
    // whose resolv.conf names the network's DNS server (its gateway).
    let ids = containers(&docker, "client");
    assert_eq!(ids.len(), 2, "the task's container and its sandbox");
    let inspects: Vec<_> = ids
        .iter()
        .map(|id| {
            rt().block_on(docker.inspect_container(id, None))
                .expect("inspect")
        })
        .collect();
    let sandbox = inspects
        .iter()
        .find(|i| i.config.as_ref().and_then(|c| c.image.as_deref()) == Some("shoal/pause:1"))
        .expect("a sandbox container");
    let task = inspects
        .iter()
        .find(|i| i.config.as_ref().and_then(|c| c.image.as_deref()) == Some(IMAGE))
        .expect("the task's container");
    let mode = task
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    assert_eq!(
        mode,
        format!("container:{}", sandbox.id.clone().unwrap_or_default())
    );
    let dns = sandbox
        .host_config
        .as_ref()
        .and_then(|h| h.dns.clone())
        .unwrap_or_default();
    assert_eq!(dns, vec!["10.0.19.1".to_string()]);
    let attachment = a.tasks("client")[0]["NetworksAttachments"].to_string();
    assert!(attachment.contains("10.0.19."), "{attachment}");

    // Removing the service removes both containers.
    a.ok(&["service", "rm", "client"]);
    wait_for("the client's containers removed", LONG, || {
        containers(&docker, "client").is_empty()
    });
    drop(b);
    drop(a);
}

/// A container's output so far.
fn container_logs(docker: &bollard::Docker, name: &str) -> String {
    use futures::StreamExt;
    let opts = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    rt().block_on(async {
        let mut out = String::new();
        let mut stream = docker.logs(name, Some(opts));
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
        out
    })
}

/// `docker run -d --name NAME` of the test image, labelled so that
/// `Cleanup` removes it.
fn docker_run(docker: &bollard::Docker, name: &str, args: &[&str]) {
    let body = bollard::models::ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(args.iter().map(|a| a.to_string()).collect()),
        labels: Some([("com.shoal.service.name".to_string(), "attached".to_string())].into()),
        ..Default::default()
    };
    let opts = bollard::query_parameters::CreateContainerOptionsBuilder::default()
        .name(name)
        .build();
    rt().block_on(async {
        docker
            .create_container(Some(opts), body)
            .await
            .expect("create");
        docker.start_container(name, None).await.expect("start");
    });
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_plain_docker_container_connects_to_an_attachable_overlay_and_back_out() {
    let Some(docker) = engine_and_namespaces() else {
        return;
    };
    let _cleanup = Cleanup(docker.clone(), vec!["attached"]);
    let mut u = Underlay::new(1, 1500);
    let (a, _b) = mixed_swarm(&mut u);
    a.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        "--subnet",
        "10.0.29.0/24",
        "att",
    ]);
    a.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.0.39.0/24",
        "closed",
    ]);
    servers_on_proc(&a, "srv", "att");
    let name = format!("shoal-att-{}", std::process::id());
    docker_run(&docker, &name, &["--get", "srv:80"]);

    // Bad input: docker's words, and nothing connected.
    let refused = a.shoal(&["network", "connect", "closed", &name]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr_of(&refused).contains("not manually attachable"),
        "{refused:?}"
    );
    let missing = a.shoal(&["network", "connect", "att", "no-such-container-x"]);
    assert!(
        stderr_of(&missing).contains("No such container"),
        "{missing:?}"
    );
    let outside = a.shoal(&["network", "connect", "--ip", "10.0.29.77", "att", &name]);
    assert!(
        stderr_of(&outside).contains("not this node's to give"),
        "{outside:?}"
    );

    a.ok(&["network", "connect", "att", &name]);
    let (code, v) = a.api("GET", "/networks/att", None).expect("inspect");
    assert_eq!(code, 200);
    let held: Vec<String> = v["Containers"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|c| c["IPv4Address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(held.len(), 1, "{v}");
    assert!(
        held[0].starts_with("10.0.29.") && held[0].ends_with("/24"),
        "{held:?}"
    );
    let again = a.shoal(&["network", "connect", "att", &name]);
    assert!(stderr_of(&again).contains("already exists"), "{again:?}");

    // It resolves the service by name and reaches both replicas at the VIP.
    let vip = vip_of(&a, "srv");
    let servers = task_ids(&a, "srv");
    wait_for(
        "both srv replicas answer the connected container",
        LONG,
        || all_answered(&container_logs(&docker, &name), "srv", &vip, &servers),
    );

    // Disconnected: gone from inspect, and its requests fail from then on.
    a.ok(&["network", "disconnect", "att", &name]);
    let (_, v) = a.api("GET", "/networks/att", None).expect("inspect");
    assert_eq!(v["Containers"], serde_json::json!({}));
    let before = container_logs(&docker, &name).lines().count();
    wait_for("requests fail once disconnected", LONG, || {
        let logs = container_logs(&docker, &name);
        let lines: Vec<&str> = logs.lines().skip(before).collect();
        lines.len() >= 3
            && lines[lines.len() - 2..]
                .iter()
                .all(|l| l.contains("failed"))
    });
    let not_connected = a.shoal(&["network", "disconnect", "att", &name]);
    assert!(
        stderr_of(&not_connected).contains("is not connected"),
        "{not_connected:?}"
    );
    a.ok(&["network", "disconnect", "--force", "att", &name]);
}
