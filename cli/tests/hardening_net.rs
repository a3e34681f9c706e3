//! The second security review's network findings, reproduced against real
//! daemons: each test runs the attack and sees it refused.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::*;
use shoal_node::mesh::tunnel::{self, Header, Tunnel};
use shoal_node::protocol::model::port::Protocol;
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

/// The daemon's open descriptors, read from /proc.
fn open_fds(d: &Daemon) -> usize {
    let pid = d.pid().expect("daemon pid");
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// One `/_ping` on the control socket: how long it took, if it answered.
fn ping(d: &Daemon) -> Option<Duration> {
    let start = std::time::Instant::now();
    let (code, _) = d.api("GET", "/_ping", None)?;
    (code == 200).then(|| start.elapsed())
}

/// A UDP port nothing on `ip` listens on now.
fn free_udp_port_on(ip: &str) -> u16 {
    let s = std::net::UdpSocket::bind((ip, 0)).expect("bind");
    s.local_addr().expect("addr").port()
}

/// Finding 4: 24,000 UDP datagrams, each from a new source port of 64
/// source addresses, on a published UDP port, and 600 idle TCP connections
/// from two addresses on a published TCP port with a 3 s idle timeout. The
/// control API answers throughout, the daemon's descriptors stay far below
/// its limit, the connections beyond a client's share are closed at once,
/// and the idle ones are closed by the daemon.
#[test]
fn a_flood_on_published_ports_leaves_the_daemon_answering_with_few_descriptors() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let nodes = cluster(1, 0, &[]);
    let manager = &nodes[0];
    let ip = manager
        .listen
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let udp_port = free_udp_port_on(&ip);
    let tcp_port = free_tcp_port();
    manager.create_echo(
        "flooded",
        "1",
        &[
            "-p",
            &format!("{udp_port}:81/udp"),
            "-p",
            &format!("published={tcp_port},target=80,idle-timeout=3s"),
        ],
        &["--port", "80", "--udp-port", "81"],
    );
    wait_for("the service running", LONG, || {
        running(manager, "flooded") == 1
    });
    let udp_target: SocketAddr = format!("{ip}:{udp_port}").parse().expect("addr");
    wait_for("the UDP port to answer", LONG, || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let _ = s.send_to(b"hello", udp_target);
        let mut buf = [0u8; 512];
        s.recv(&mut buf).is_ok()
    });
    wait_for("the TCP port to answer", LONG, || {
        echo_task_at(&format!("{ip}:{tcp_port}")).is_some()
    });
    let baseline = open_fds(manager);
    let limit = {
        let pid = manager.pid().expect("pid");
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    };

    // The UDP flood, on a thread, while the control API is asked again and again.
    let flood = std::thread::spawn(move || {
        let mut sent = 0usize;
        for i in 0..24_000u32 {
            let src = format!("127.1.0.{}", 1 + i % 64);
            if let Ok(s) = std::net::UdpSocket::bind((src.as_str(), 0)) {
                if s.send_to(b"flood", udp_target).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    });
    let mut pings = Vec::new();
    let mut peak = baseline;
    while !flood.is_finished() {
        pings.push(ping(manager).expect("the control API answers during the UDP flood"));
        peak = peak.max(open_fds(manager));
    }
    let sent = flood.join().expect("flood thread");
    // What the flood left behind (flows idle out after 30 s; evicted ones at once).
    for _ in 0..5 {
        pings.push(ping(manager).expect("the control API answers after the UDP flood"));
        peak = peak.max(open_fds(manager));
    }

    // 600 idle TCP connections from two addresses: 256 each are a client's share.
    let target: SocketAddr = format!("{ip}:{tcp_port}").parse().expect("addr");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut held = Vec::new();
    for i in 0..600 {
        let src: SocketAddr = format!("127.2.0.{}:0", 1 + i % 2).parse().expect("addr");
        let connected = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(src)?;
            socket.connect(target).await?.into_std()
        });
        if let Ok(s) = connected {
            held.push(s);
        }
        if i % 50 == 0 {
            pings.push(ping(manager).expect("the control API answers during the TCP flood"));
        }
    }
    assert_eq!(
        held.len(),
        600,
        "every connection was accepted by the kernel"
    );
    // Closed by the daemon: the end of the stream (or a reset) instead of
    // "nothing to read yet".
    let closed = |held: &[std::net::TcpStream]| {
        held.iter()
            .filter(|s| {
                let mut b = [0u8; 1];
                !matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    // Beyond each address's share the daemon closes a connection at once.
    wait_for(
        "the connections beyond a client's share closed",
        LONG,
        || {
            peak = peak.max(open_fds(manager));
            closed(&held) >= 600 - 2 * 256
        },
    );
    let tcp_fds = open_fds(manager);
    peak = peak.max(tcp_fds);
    // The rest idle out after the port's 3 s.
    wait_for("every idle connection closed by the daemon", LONG, || {
        closed(&held) == 600
    });
    drop(held);
    pings.push(ping(manager).expect("the control API answers"));
    let rows = manager.rows(&["node", "ls"]);
    assert_eq!(rows.len(), 1, "node ls answers");

    pings.sort();
    let median = pings[pings.len() / 2];
    let worst = pings[pings.len() - 1];
    eprintln!(
        "figures: {sent} UDP datagrams from new source ports; daemon fds {baseline} before, \
         peak {peak}, {tcp_fds} with 512 TCP connections held (limit {limit}); \
         /_ping {} answers, median {median:?}, worst {worst:?}",
        pings.len()
    );
    assert!(sent >= 20_000, "the flood was sent ({sent})");
    // Bounded by the caps (2,048 flows a port, 2 descriptors a TCP
    // connection), far below the limit.
    assert!(
        peak <= baseline + 2_048 + 2 * 2 * 256 + 256,
        "descriptors stayed bounded: {baseline} -> {peak}"
    );
    assert!(
        limit == 0 || peak < limit / 2,
        "far below the limit {limit}: {peak}"
    );
}

fn node_id(d: &Daemon) -> String {
    let (_, info) = d.api("GET", "/info", None).expect("info");
    info["ID"].as_str().expect("node id").to_string()
}

/// The whole daemon log (`log_tail` is the last 30 lines).
fn daemon_log(d: &Daemon) -> String {
    std::fs::read_to_string(d.dir.path().join("daemon.log")).unwrap_or_default()
}

/// Finding 2: manager-2 is demoted and worker-2 removed (`node rm
/// --force`); their certificates, read from their data dirs before, are
/// still valid and of the swarm's CA. Once worker-1 has learned the
/// members from the leader, it refuses the removed node's connection, drops
/// an endpoint table the demoted manager's old certificate pushes (it would
/// open a port on worker-1), and refuses its role change.
#[test]
fn a_worker_refuses_a_removed_node_and_a_demoted_managers_old_certificate() {
    use shoal_node::cluster::wire::{Refusal, Request, Response, RoleChange};

    let mut nodes = cluster(2, 2, &[]);
    let demoted_id = node_id(&nodes[1]);
    let removed_id = node_id(&nodes[3]);
    let old_manager = Peer::new(&stolen_identity(&nodes[1].data_dir()));
    let removed = Peer::new(&stolen_identity(&nodes[3].data_dir()));

    nodes[0].ok(&["node", "demote", "manager-2"]);
    nodes[3].kill9();
    nodes[0].ok(&["node", "rm", "--force", "worker-2"]);
    let worker = &nodes[2];
    wait_for(
        "worker-1 to learn the demotion and the removal",
        LONG,
        || {
            daemon_log(worker).lines().any(|l| {
                l.contains("learned the swarm's members")
                    && l.contains(&format!("removed={removed_id}"))
                    && l.split("managers=")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .is_some_and(|managers| !managers.contains(&demoted_id))
            })
        },
    );

    // The removed node: its connection to a worker is refused.
    if let Ok(r) = removed.ask(worker, &Request::RenewCert) {
        panic!("a worker answered the removed node: {r:?}");
    }
    assert!(
        daemon_log(worker)
            .lines()
            .any(|l| l.contains("refused a connection")
                && l.contains(&removed_id)
                && l.contains("node removed from the swarm")),
        "worker-1 refused the removed node for another reason"
    );

    // The demoted manager's old certificate pushes an endpoint table that
    // publishes a port on every node.
    let port = free_tcp_port();
    // Stamped with the newest term there can be: the term does not make a
    // node a manager.
    let forged = endpoints_push(u64::MAX, port);
    let bytes = shoal_node::protocol::codec::encode(&forged).expect("encode");
    let to: SocketAddr = worker.listen.parse().expect("addr");
    old_manager
        .rt
        .block_on(old_manager.transport.send(to, &bytes))
        .expect("sent");
    wait_for("worker-1 to drop the pushed table", LONG, || {
        daemon_log(worker)
            .lines()
            .any(|l| l.contains("not a manager now; dropped") && l.contains(&demoted_id))
    });
    let ip = worker
        .listen
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        std::net::TcpStream::connect((ip.as_str(), port)).is_err(),
        "worker-1 listens on the forged table's port {port}"
    );

    // Its role change.
    let change = Request::RoleChange(Box::new(RoleChange {
        role: shoal_node::protocol::model::NodeRole::Manager,
        cert_pem: String::new(),
        key_pem: String::new(),
        ca_key_pem: None,
        managers: Vec::new(),
    }));
    match old_manager.ask(worker, &change) {
        Ok(Response::Refused(Refusal::Superseded)) => {}
        other => panic!("a worker took a role change from an old certificate: {other:?}"),
    }
    let rows = nodes[0].rows(&["node", "ls"]);
    assert!(
        rows.iter()
            .any(|r| r["Hostname"] == "worker-1" && r["ManagerStatus"] == ""),
        "{rows:?}"
    );
}

/// An endpoint table that publishes `port` on every node, as a leader's
/// dispatcher would push it in `term`.
fn endpoints_push(term: u64, port: u16) -> shoal_node::cluster::wire::OneWay {
    use shoal_node::cluster::wire::{OneWay, ToAgent};
    use shoal_node::protocol::model::port::{Balance, PortConfig, PublishMode};
    use shoal_node::protocol::rules::port::ServiceEndpoints;
    OneWay::ToAgent {
        term,
        msg: ToAgent::Endpoints(vec![ServiceEndpoints {
            service_id: "forged".into(),
            ports: vec![PortConfig {
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port: port,
                publish_mode: PublishMode::Ingress,
                proxy_protocol: None,
                idle_timeout_ns: 0,
            }],
            balance: Balance::RoundRobin,
            backends: Vec::new(),
        }]),
    }
}

fn raft_term(d: &Daemon) -> u64 {
    let (_, info) = d.api("GET", "/info", None).expect("info");
    info["Swarm"]["RaftStatus"]["Term"]
        .as_u64()
        .expect("raft status")
}

/// Finding 2, the rest: a worker takes pushes only from the leader whose
/// dispatcher holds its session. The leader is killed and another is
/// elected in a newer term; once the worker has the new leader's push, a
/// push stamped with the deposed leader's term (sent here with the
/// certificate of a manager that is still one, as a deposed leader's late
/// push would come) is dropped and opens nothing. The same push in the
/// current term is taken: the refusal is the term's doing. A role change
/// that carries no newer certificate of the worker is refused.
#[test]
fn a_worker_drops_what_a_deposed_leader_still_pushes() {
    use shoal_node::cluster::wire::{Refusal, Request, Response, RoleChange};

    let mut nodes = cluster(3, 1, &[]);
    let old = leader_of(&nodes, 0).expect("a leader");
    let old_term = raft_term(&nodes[old]);
    let other = (0..3).find(|i| *i != old).expect("another manager");
    let manager = Peer::new(&stolen_identity(&nodes[other].data_dir()));
    nodes[old].kill9();
    let survivor = (0..3).find(|i| *i != old).expect("a survivor");
    let mut new = None;
    wait_for("a new leader", LONG, || {
        new = leader_of(&nodes, survivor).filter(|l| *l != old);
        new.is_some()
    });
    let new = new.expect("a new leader");
    let new_id = node_id(&nodes[new]);
    let new_term = raft_term(&nodes[new]);
    assert!(new_term > old_term, "terms {old_term} then {new_term}");
    let worker = &nodes[3];
    wait_for("the worker's session with the new leader", LONG, || {
        daemon_log(worker).lines().any(|l| {
            l.contains("learned the swarm's members") && l.contains(&format!("from={new_id}"))
        })
    });

    let to: SocketAddr = worker.listen.parse().expect("addr");
    let ip = to.ip().to_string();
    let send = |push| {
        let bytes = shoal_node::protocol::codec::encode(&push).expect("encode");
        manager
            .rt
            .block_on(manager.transport.send(to, &bytes))
            .expect("sent");
    };
    let stale_port = free_tcp_port();
    send(endpoints_push(old_term, stale_port));
    wait_for("the worker to drop the stale push", LONG, || {
        daemon_log(worker)
            .lines()
            .any(|l| l.contains("a push of a deposed leader's term; dropped"))
    });
    assert!(
        std::net::TcpStream::connect((ip.as_str(), stale_port)).is_err(),
        "the worker listens on the stale push's port {stale_port}"
    );

    let current_port = free_tcp_port();
    send(endpoints_push(new_term, current_port));
    wait_for("the worker to take the current term's push", LONG, || {
        std::net::TcpStream::connect((ip.as_str(), current_port)).is_ok()
    });

    // A role change from a current manager that carries no newer
    // certificate of the worker (here its own, replayed) changes nothing.
    let own = stolen_identity(&worker.data_dir());
    let change = Request::RoleChange(Box::new(RoleChange {
        role: shoal_node::protocol::model::NodeRole::Manager,
        cert_pem: own.chain_pem,
        key_pem: own.key_pem,
        ca_key_pem: None,
        managers: Vec::new(),
    }));
    match manager.ask(worker, &change) {
        Ok(Response::Refused(Refusal::Precondition(m))) => {
            assert!(m.contains("newer certificate"), "{m}")
        }
        other => panic!("a worker took a role change without a newer certificate: {other:?}"),
    }
    let rows = nodes[survivor].rows(&["node", "ls"]);
    assert!(
        rows.iter()
            .any(|r| r["Hostname"] == "worker-1" && r["ManagerStatus"] == ""),
        "{rows:?}"
    );
}

/// `swarm unlock` with `key` on stdin.
fn unlock(d: &Daemon, key: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(shoal_bin())
        .args(["swarm", "unlock"])
        .env("SHOAL_HOST", &d.host)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shoal");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{key}\n").as_bytes())
        .expect("write");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// Finding 3: a thief of a manager's data dir. Without autolock it holds
/// the manager's key (as in Swarm), but a forwarded token rotation naming a
/// token it chose is refused, since it cannot seal it. With autolock, the
/// node's key is sealed under the KEK like the CA key: the copy opens no
/// connection at all, and the manager itself starts only once unlocked.
#[test]
fn an_autolocked_managers_data_dir_holds_no_key_that_opens_the_swarm() {
    use shoal_node::cluster::wire::{Refusal, Request, Response};
    use shoal_node::protocol::command::Command;
    use shoal_node::transport::tls::TlsIdentity;
    use shoal_node::transport::{Transport, TransportConfig};

    let mut nodes = cluster(1, 1, &[]);
    let thief = Peer::new(&stolen_identity(&nodes[0].data_dir()));
    let token = nodes[0]
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let chosen = Request::Propose(Box::new(Command::RotateJoinTokens {
        worker: Some("SWMTKN-1-chosen-by-the-thief".into()),
        manager: Some("SWMTKN-1-chosen-by-the-thief-too".into()),
        at: chrono::Utc::now(),
    }));
    match thief.ask(&nodes[0], &chosen) {
        Ok(Response::Refused(Refusal::Rejected(e))) => {
            assert!(e.to_string().contains("sealed"), "{e}");
        }
        other => panic!("a token chosen in plaintext was not refused: {other:?}"),
    }
    assert_eq!(
        nodes[0].ok(&["swarm", "join-token", "-q", "worker"]).trim(),
        token
    );

    // Autolock: the node's key is sealed in the data dir.
    let out = nodes[0].ok(&["swarm", "update", "--autolock"]);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {out}"))
        .to_string();
    let data = nodes[0].data_dir();
    let node_key = std::fs::read(data.join("certs/node.key")).expect("node.key");
    assert!(
        !String::from_utf8_lossy(&node_key).contains("PRIVATE KEY"),
        "node.key is in plaintext"
    );
    let copy = TlsIdentity {
        ca_pem: std::fs::read_to_string(data.join("ca/ca.crt")).expect("ca.crt"),
        chain_pem: std::fs::read_to_string(data.join("certs/node.crt")).expect("node.crt"),
        key_pem: String::from_utf8_lossy(&node_key).into_owned(),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bound = rt.block_on(async {
        Transport::bind(
            "127.0.0.9:0".parse().expect("addr"),
            &copy,
            TransportConfig::default(),
            std::sync::Arc::new(Deaf),
        )
    });
    assert!(bound.is_err(), "the copied data dir opened a transport");

    // The manager: locked after a restart, whole again once unlocked.
    nodes[0].kill9_and_restart();
    assert!(nodes[0]
        .fails(&["node", "ls"])
        .contains("needs to be unlocked"));
    let unlocked = unlock(&nodes[0], &key);
    assert!(
        unlocked.status.success(),
        "{}",
        String::from_utf8_lossy(&unlocked.stderr)
    );
    wait_for("the unlocked manager and its worker ready", LONG, || {
        nodes[0].shoal(&["node", "ls"]).status.success() && {
            let rows = nodes[0].rows(&["node", "ls"]);
            rows.len() == 2 && rows.iter().all(|r| r["Status"] == "Ready")
        }
    });
    // Renewed and rewritten keys stay sealed.
    let node_key = std::fs::read(data.join("certs/node.key")).expect("node.key");
    assert!(!String::from_utf8_lossy(&node_key).contains("PRIVATE KEY"));
}

/// The task's process id.
fn task_pid(d: &Daemon, service: &str) -> i32 {
    d.tasks(service)
        .into_iter()
        .find(|t| t["Status"]["State"] == "running")
        .and_then(|t| t["Status"]["ContainerStatus"]["PID"].as_i64())
        .and_then(|p| i32::try_from(p).ok())
        .expect("a running task's pid")
}

/// The IPv4 address of `dev` in the task's namespace.
fn addr_in_task(pid: i32, dev: &str) -> String {
    let out = common::netns::in_task(pid, &["ip", "-4", "-o", "addr", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .expect("an address")
        .to_string()
}

/// An HTTP request from inside the task's namespace (3 s at most): the
/// answering task's id, if any answered.
fn get_from_task(pid: i32, addr: &str) -> Option<String> {
    let url = format!("http://{addr}:80/");
    let out = common::netns::in_task(pid, &["curl", "-s", "--max-time", "3", &url]);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("task="))
        .map(str::to_string)
}

/// Finding 5: on one node, a task on no overlay reaches neither a task of
/// an `--internal` network (at its overlay address) nor another task of
/// the node bridge, even with a route it adds itself through the gateway;
/// the node itself (the mesh, health checks) still reaches both.
#[test]
fn tasks_on_one_node_reach_no_task_of_another_network_or_port_of_the_bridge() {
    if !common::netns::available() {
        eprintln!("skipped: task sandboxes need root and `ip netns`");
        return;
    }
    let nodes = cluster(1, 0, &[]);
    let m = &nodes[0];
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--internal",
        "--subnet",
        "10.77.0.0/24",
        "vault",
    ]);
    m.create_echo("secret", "1", &["--network", "vault"], &["--port", "80"]);
    m.create_echo("neighbour", "1", &[], &["--port", "80"]);
    m.create_echo("client", "1", &[], &["--port", "80"]);
    wait_for("three tasks running", LONG, || {
        ["secret", "neighbour", "client"]
            .iter()
            .all(|s| running(m, s) == 1)
    });
    let client = task_pid(m, "client");
    let neighbour = addr_in_task(task_pid(m, "neighbour"), "eth0");
    let secret = addr_in_task(task_pid(m, "secret"), "eth1");
    assert!(secret.starts_with("10.77.0."), "{secret}");
    // The node reaches both.
    for addr in [&neighbour, &secret] {
        wait_for("the node to reach the task", LONG, || {
            echo_task_at(&format!("{addr}:80")).is_some()
        });
    }
    // The client reaches neither.
    assert_eq!(
        get_from_task(client, &secret),
        None,
        "the internal network's task answered"
    );
    assert_eq!(
        get_from_task(client, &neighbour),
        None,
        "a task of the bridge answered"
    );
    // Nor through the gateway, with a route of its own (root in its namespace).
    let gateway = {
        let out = common::netns::in_task(client, &["ip", "-4", "route", "show", "default"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .expect("a default route")
            .to_string()
    };
    let added = common::netns::in_task(
        client,
        &[
            "ip",
            "route",
            "add",
            &format!("{neighbour}/32"),
            "via",
            &gateway,
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(
        get_from_task(client, &neighbour),
        None,
        "routed through the gateway"
    );
}

/// A host on the underlay without a certificate: a namespace with a veth
/// to the node's namespace and routes to the task subnets through the
/// node. Removed (namespace and link) when dropped, pass or fail.
struct Neighbour {
    ns: String,
    link: String,
}

impl Neighbour {
    fn new(routes: &[&str]) -> Neighbour {
        let n = std::process::id() % 10_000;
        let nb = Neighbour {
            ns: format!("shnb{n}"),
            link: format!("shnb{n}a"),
        };
        let run = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let inside = format!("shnb{n}b");
        run(&["netns", "add", &nb.ns]);
        run(&[
            "link", "add", &nb.link, "type", "veth", "peer", "name", &inside, "netns", &nb.ns,
        ]);
        run(&["addr", "add", "192.168.231.1/30", "dev", &nb.link]);
        run(&["link", "set", &nb.link, "up"]);
        run(&[
            "-n",
            &nb.ns,
            "addr",
            "add",
            "192.168.231.2/30",
            "dev",
            &inside,
        ]);
        run(&["-n", &nb.ns, "link", "set", &inside, "up"]);
        for r in routes {
            run(&["-n", &nb.ns, "route", "add", r, "via", "192.168.231.1"]);
        }
        nb
    }

    /// `args` run in the neighbour's namespace.
    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// An HTTP request from the neighbour (3 s at most): the answering task.
    fn get(&self, addr: &str) -> Option<String> {
        let url = format!("http://{addr}:80/");
        let out = self.run(&["curl", "-s", "--max-time", "3", &url]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("task="))
            .map(str::to_string)
    }

    /// A DNS query for `name` to `server` (3 s at most): whether it was answered.
    fn resolves(&self, server: &str, name: &str) -> bool {
        let script = format!(
            "import socket,struct\n\
             q=struct.pack('>HHHHHH',0x1234,0x0100,1,0,0,0)+b''.join(bytes([len(p)])+p.encode() for p in '{name}'.split('.'))+b'\\0'+struct.pack('>HH',1,1)\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3)\n\
             s.sendto(q,('{server}',53))\n\
             try:\n  print(len(s.recv(512)))\n\
             except Exception:\n  print(0)\n"
        );
        let out = self.run(&["python3", "-c", &script]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .is_ok_and(|n| n > 0)
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .output();
    }
}

/// Finding 7: a host on the underlay, with no certificate, routes the task
/// subnets through the node: it reaches neither a task's node-local
/// address, nor a task of an overlay network, nor the embedded DNS server
/// on the network's gateway; the task itself still resolves names there.
#[test]
fn a_neighbour_without_a_certificate_reaches_no_task_and_no_dns() {
    if !common::netns::available() {
        eprintln!("skipped: task sandboxes need root and `ip netns`");
        return;
    }
    let nodes = cluster(1, 0, &[]);
    let m = &nodes[0];
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.78.0.0/24",
        "apps",
    ]);
    m.create_echo("app", "1", &["--network", "apps"], &["--port", "80"]);
    wait_for("the task running", LONG, || running(m, "app") == 1);
    let pid = task_pid(m, "app");
    let local = addr_in_task(pid, "eth0");
    let overlay = addr_in_task(pid, "eth1");
    let gateway = "10.78.0.1";
    // The task resolves its service's name at its gateway (the server is up).
    wait_for("the task to resolve a name", LONG, || {
        let out = common::netns::in_task(pid, &["getent", "hosts", "app"]);
        out.status.success()
    });
    let nb = Neighbour::new(&["10.201.0.0/16", "10.78.0.0/24"]);
    assert_eq!(
        nb.get(&local),
        None,
        "the task's node-local address answered"
    );
    assert_eq!(
        nb.get(&overlay),
        None,
        "the task's overlay address answered"
    );
    assert!(
        !nb.resolves(gateway, "app"),
        "the embedded DNS answered a neighbour"
    );
    // The node itself still reaches the task (the mesh, health checks).
    assert!(echo_task_at(&format!("{local}:80")).is_some());
}

/// A UDP listener on port 7777 in a task's namespace, until it hears "end".
fn udp_listener(
    pid: i32,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--", "python3", "-c"])
        .arg(
            "import socket,sys\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('0.0.0.0',7777))\n\
             print('ready',flush=True)\n\
             while True:\n  d,a=s.recvfrom(512)\n  print(d.decode(),a[0],flush=True)\n  if d==b'end': break\n",
        )
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("listener");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("ready"),
        "the listener did not start"
    );
    (child, lines)
}

/// A raw UDP datagram `payload` from `src` to `dst`:7777, sent from the
/// task's namespace (root there has NET_RAW).
fn spoof_from(pid: i32, src: &str, dst: &str, payload: &str) {
    let script = format!(
        "import socket,struct\n\
         src,dst='{src}','{dst}'\n\
         p=b'{payload}'\n\
         u=struct.pack('>HHHH',40000,7777,8+len(p),0)+p\n\
         h=struct.pack('>BBHHHBBH4s4s',0x45,0,20+len(u),0,0,64,17,0,socket.inet_aton(src),socket.inet_aton(dst))\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)\n\
         s.sendto(h+u,(dst,0))\n"
    );
    let sent = common::netns::in_task(pid, &["python3", "-c", &script]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
}

/// What the listener heard once the node's own "end" datagram to `dst`
/// (sent after everything else) arrived.
fn heard_until_end(
    mut listener: (
        std::process::Child,
        std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    ),
    dst: &str,
) -> Vec<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
    s.send_to(b"end", (dst, 7777)).expect("send");
    let heard: Vec<String> = listener.1.by_ref().map_while(Result::ok).collect();
    let _ = listener.0.wait();
    assert!(
        heard.last().is_some_and(|l| l.starts_with("end")),
        "the listener heard {heard:?}"
    );
    heard
}

/// Finding 6: a task of network A (root in its namespace, so with
/// NET_RAW) sends raw UDP datagrams with forged sources: to a task of
/// network B from an address of B, out of its network-A interface; and to
/// a task of its own network from another local task's address of that
/// network. The node drops both (reverse-path filtering, and each task
/// port bound to its task's address): the listeners hear only the datagram
/// the node sends after them.
#[test]
fn a_task_cannot_send_into_another_network_with_a_spoofed_source() {
    if !common::netns::available() {
        eprintln!("skipped: task sandboxes need root and `ip netns`");
        return;
    }
    let nodes = cluster(1, 0, &[]);
    let m = &nodes[0];
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.79.0.0/24",
        "neta",
    ]);
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.80.0.0/24",
        "netb",
    ]);
    for (name, net) in [
        ("attacker", "neta"),
        ("sibling", "neta"),
        ("peer", "neta"),
        ("victim", "netb"),
    ] {
        m.create_echo(name, "1", &["--network", net], &["--port", "80"]);
    }
    wait_for("four tasks running", LONG, || {
        ["attacker", "sibling", "peer", "victim"]
            .iter()
            .all(|s| running(m, s) == 1)
    });
    let attacker = task_pid(m, "attacker");
    let (victim_pid, peer_pid) = (task_pid(m, "victim"), task_pid(m, "peer"));
    let victim = addr_in_task(victim_pid, "eth1");
    let peer = addr_in_task(peer_pid, "eth1");
    let sibling = addr_in_task(task_pid(m, "sibling"), "eth1");
    for addr in [&victim, &peer] {
        wait_for("the node to reach the task", LONG, || {
            echo_task_at(&format!("{addr}:80")).is_some()
        });
    }

    // Into network B, out of the network-A interface, from a B address.
    let listener = udp_listener(victim_pid);
    let gateway_a = {
        let out = common::netns::in_task(attacker, &["ip", "-4", "route", "show", "dev", "eth1"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .expect("network A's gateway")
            .to_string()
    };
    let route = common::netns::in_task(
        attacker,
        &[
            "ip",
            "route",
            "replace",
            &format!("{victim}/32"),
            "via",
            &gateway_a,
            "dev",
            "eth1",
            "onlink",
        ],
    );
    assert!(
        route.status.success(),
        "{}",
        String::from_utf8_lossy(&route.stderr)
    );
    spoof_from(attacker, "10.80.0.200", &victim, "spoofed");
    let heard = heard_until_end(listener, &victim);
    assert!(
        !heard.iter().any(|l| l.starts_with("spoofed")),
        "a spoofed datagram crossed into network B: {heard:?}"
    );

    // Within network A, in the name of another local task of A.
    let listener = udp_listener(peer_pid);
    spoof_from(attacker, &sibling, &peer, "impersonated");
    let heard = heard_until_end(listener, &peer);
    assert!(
        !heard.iter().any(|l| l.starts_with("impersonated")),
        "a datagram in another task's name reached its network: {heard:?}"
    );
}
