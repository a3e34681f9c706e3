//! The second security review's network findings, reproduced against real
//! daemons: each test runs the attack and sees it refused.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::*;
use shoal_node::mesh::tunnel::{self, Header, Tunnel};
use shoal_node::protocol::ports::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(60);

fn root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn task_id(d: &Daemon, service: &str) -> Option<String> {
    d.tasks(service)
        .into_iter()
        .find(|t| t["Status"]["State"] == "running" && t["DesiredState"] == "running")
        .and_then(|t| t["ID"].as_str().map(str::to_string))
}

/// A tunnel opened to `to` in the name of `peer`'s certificate, asking for
/// `task`'s `port`: `Err` is the far node's refusal (or a transport error).
fn open_tunnel(
    peer: &Peer,
    to: &Daemon,
    task: &str,
    port: u16,
    protocol: Protocol,
) -> Result<Tunnel, String> {
    let addr: SocketAddr = to.listen.parse().map_err(|e| format!("{e}"))?;
    let header = Header {
        task_id: task.to_string(),
        port,
        client: "192.0.2.1:40000".parse().map_err(|e| format!("{e}"))?,
        dest: addr,
        proxy: None,
        protocol,
    };
    peer.rt
        .block_on(tunnel::open(&peer.transport, addr, &header))
        .map_err(|e| e.to_string())
}

/// An HTTP request through an open tunnel: the answer.
fn http_through(peer: &Peer, mut t: Tunnel) -> String {
    peer.rt.block_on(async {
        let mut out = Vec::new();
        let io = async {
            t.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
            t.read_to_end(&mut out).await
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), io).await;
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Finding 1: a worker's certificate asks the manager's node for a tunnel to
/// a port no service publishes, to a UDP port the task answers but does not
/// publish, and (through a `--network host` task) to a server on the far
/// node's loopback. The published port still tunnels; every other is refused
/// and the loopback server is never dialled.
#[test]
fn a_tunnel_reaches_only_a_published_target_and_never_the_far_nodes_loopback() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let nodes = cluster(1, 1, &[]);
    let (manager, worker) = (&nodes[0], &nodes[1]);
    let on_manager = "node.hostname==manager-1";

    // A server only the manager's node itself should reach.
    let private = TcpListener::bind("127.0.0.1:0").expect("bind");
    private.set_nonblocking(true).expect("nonblocking");
    let private_port = private.local_addr().expect("addr").port();

    let web_port = free_tcp_port().to_string();
    manager.create_echo(
        "web",
        "1",
        &["-p", &format!("{web_port}:80"), "--constraint", on_manager],
        &["--port", "80", "--udp-port", "81"],
    );
    manager.create_echo(
        "internal",
        "1",
        &["--constraint", on_manager],
        &["--port", "80"],
    );
    let host_port = free_tcp_port().to_string();
    manager.create_echo(
        "hostnet",
        "1",
        &[
            "--network",
            "host",
            "-p",
            &format!("{host_port}:{private_port}"),
            "--constraint",
            on_manager,
        ],
        &[],
    );
    wait_for("three services running", LONG, || {
        ["web", "internal", "hostnet"]
            .iter()
            .all(|s| running(manager, s) == 1)
    });
    let web = task_id(manager, "web").expect("web task");
    let internal = task_id(manager, "internal").expect("internal task");
    let hostnet = task_id(manager, "hostnet").expect("hostnet task");

    // The worker's own certificate, as any workload with root on it has.
    let peer = Peer::new(&stolen_identity(&worker.data_dir()));

    // The published port tunnels (once the manager's table lists the task):
    // the harness speaks the protocol right.
    let mut answer = String::new();
    wait_for("a tunnel to the published port", LONG, || {
        if let Ok(t) = open_tunnel(&peer, manager, &web, 80, Protocol::Tcp) {
            answer = http_through(&peer, t);
        }
        answer.contains(&format!("task={web}"))
    });

    // An unpublished task port (it answers HTTP 200 inside the task's
    // network) and an unpublished UDP port of a published task.
    let refusals = [
        (
            &internal,
            80,
            Protocol::Tcp,
            "a task of a service with no port",
        ),
        (&web, 81, Protocol::Udp, "an unpublished UDP port"),
        (&web, 22, Protocol::Tcp, "an unpublished TCP port"),
        // A host-network task: its published target is on the node's
        // loopback, and so is anything else its port names.
        (
            &hostnet,
            private_port,
            Protocol::Tcp,
            "the far node's loopback",
        ),
        (&hostnet, 22, Protocol::Tcp, "an unpublished loopback port"),
    ];
    for (task, port, protocol, what) in refusals {
        match open_tunnel(&peer, manager, task, port, protocol) {
            Err(e) => assert!(e.contains("refused"), "{what}: {e}"),
            Ok(t) => panic!("{what}: tunnel accepted: {}", http_through(&peer, t)),
        }
    }
    assert!(
        matches!(private.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the loopback server was dialled"
    );
    assert!(
        manager.log_tail().contains("refused a tunnel"),
        "the refusals are logged"
    );
}
