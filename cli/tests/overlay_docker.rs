//! A docker-driver task on an overlay network: node 0 runs in the test's own
//! namespace, where the Docker engine is, joined to the test's underlay by a
//! veth; node 1 runs in a namespace of its own with process tasks. The
//! docker task (shoal-echo `--get server:80`, which resolves the name itself
//! through its resolv.conf) reaches both process replicas on the other node
//! through the service's VIP.

mod common;

use std::collections::BTreeSet;

use common::images::{build_image, containers, engine, rt, Cleanup, IMAGE};
use common::netns::{self, Underlay};
use common::{join, wait_for, Daemon, LONG};

const SUBNET: &str = "10.0.19.0/24";

/// Lines `get server -> ADDR: shoal-echo task=ID ...` of the client's log:
/// (ADDR, ID).
fn answers(d: &Daemon) -> Vec<(String, String)> {
    let logs = d.ok(&["service", "logs", "--raw", "client"]);
    logs.lines()
        .filter_map(|l| {
            let rest = l.split("get server -> ").nth(1)?;
            let (addr, body) = rest.split_once(": ")?;
            let task = body
                .split_whitespace()
                .find_map(|w| w.strip_prefix("task="))?;
            Some((addr.to_string(), task.to_string()))
        })
        .collect()
}

#[test]
fn a_docker_task_on_an_overlay_reaches_process_tasks_on_another_node_by_name() {
    if !netns::available() {
        eprintln!("skipped: overlay tests need root and `ip netns`");
        return;
    }
    let Some(docker) = engine() else { return };
    build_image(&docker);
    let _cleanup = Cleanup(docker.clone(), vec!["client"]);
    let mut u = Underlay::new(1, 1500);
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

    a.ok(&[
        "network", "create", "-d", "overlay", "--subnet", SUBNET, "mixed",
    ]);
    a.create_echo(
        "server",
        "2",
        &[
            "--network",
            "mixed",
            "--constraint",
            "node.hostname==node-proc",
        ],
        &["--port", "80"],
    );
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
    let vip = a
        .ok(&[
            "service",
            "inspect",
            "--format",
            "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}",
            "server",
        ])
        .trim()
        .to_string();
    let vip = vip.split('/').next().unwrap_or_default().to_string();
    assert!(vip.starts_with("10.0.19."), "server's VIP: {vip:?}");
    let servers: BTreeSet<String> = a
        .tasks("server")
        .iter()
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect();
    assert_eq!(servers.len(), 2);

    // Both replicas on the other node answer the docker task, by name, at the VIP.
    wait_for(
        "both server replicas answer the docker client",
        LONG,
        || {
            let got = answers(&a);
            let seen: BTreeSet<String> = got
                .iter()
                .filter(|(addr, _)| *addr == vip)
                .map(|(_, t)| t.clone())
                .collect();
            servers.is_subset(&seen)
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
