//! The routing mesh end to end: three nodes on 127.0.0.x, process tasks in
//! their own network namespaces, every node answering on a published port.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One HTTP request to `ip:port`: the answering task's id.
fn get(ip: &str, port: u16) -> Option<String> {
    echo_task_at(&format!("{ip}:{port}"))
}

fn node_ip(d: &Daemon) -> String {
    d.listen.split(':').next().unwrap_or_default().to_string()
}

fn free_port() -> u16 {
    free_tcp_port()
}

fn running_ids(d: &Daemon, service: &str) -> BTreeSet<String> {
    d.tasks(service)
        .into_iter()
        .filter(|t| t["Status"]["State"] == "running" && t["DesiredState"] == "running")
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_node_answers_on_a_published_port_with_every_replica() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let mut nodes = cluster(1, 2, &[]);
    let port = free_port();
    let publish = format!("{port}:80");
    nodes[0].create_echo(
        "web",
        "4",
        &["-p", &publish, "--restart-delay", "0s"],
        &["--port", "80"],
    );
    wait_for("4 running", LONG, || running(&nodes[0], "web") == 4);
    let ls = nodes[0].ok(&["service", "ls"]);
    assert!(ls.contains(&format!("*:{port}->80/tcp")), "{ls}");
    let inspect = nodes[0].ok(&[
        "service",
        "inspect",
        "--format",
        "{{json .Endpoint.Ports}}",
        "web",
    ]);
    assert!(
        inspect.contains(&format!("\"PublishedPort\":{port}")),
        "{inspect}"
    );

    // Every node, the ones without a replica too, reaches all four, round robin.
    let all = running_ids(&nodes[0], "web");
    for d in &nodes {
        let ip = node_ip(d);
        // Once this node's endpoint table has all four (it follows the state
        // by a push), eight successive connections reach all four.
        let mut seen = BTreeSet::new();
        wait_for("every replica to answer", LONG, || {
            if let Some(t) = get(&ip, port) {
                seen.insert(t);
            }
            seen == all
        });
        let eight: BTreeSet<String> = (0..8).filter_map(|_| get(&ip, port)).collect();
        assert_eq!(eight, all, "round robin through {ip}");
    }

    // A killed replica: once it is replaced, no request fails and none goes to it.
    let victim = all.iter().next().cloned().expect("a task");
    let pid = nodes[0]
        .tasks("web")
        .into_iter()
        .find(|t| t["ID"] == victim.as_str())
        .and_then(|t| t["Status"]["ContainerStatus"]["PID"].as_i64())
        .expect("pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_for("the replica replaced", LONG, || {
        let ids = running_ids(&nodes[0], "web");
        ids.len() == 4 && !ids.contains(&victim)
    });
    std::thread::sleep(Duration::from_millis(500));
    let ip = node_ip(&nodes[1]);
    for _ in 0..12 {
        let answer = get(&ip, port).expect("no request fails");
        assert_ne!(answer, victim, "nothing goes to the dead replica");
    }

    // Scaled to 6: two more backends, several on one node, all on port 80.
    nodes[0].ok(&["service", "scale", "-d", "web=6"]);
    wait_for("6 running", LONG, || running(&nodes[0], "web") == 6);
    let six = running_ids(&nodes[0], "web");
    let mut seen = BTreeSet::new();
    wait_for("all six answer", LONG, || {
        if let Some(t) = get(&ip, port) {
            seen.insert(t);
        }
        seen == six
    });

    // A worker killed: once it is down, the others still answer every request.
    nodes[2].kill9();
    wait_for("worker-2 down", LONG, || {
        nodes[0]
            .rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "worker-2" && r["Status"] == "Down")
    });
    let ip0 = node_ip(&nodes[0]);
    wait_for("the endpoint table to drop worker-2", LONG, || {
        (0..6).all(|_| get(&ip0, port).is_some())
    });
    for _ in 0..12 {
        assert!(
            get(&ip0, port).is_some(),
            "a request through the manager failed"
        );
    }
}

#[test]
fn a_published_port_clash_is_refused_and_host_mode_binds_only_where_a_task_runs() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let nodes = cluster(1, 1, &[]);
    let ls = nodes[0].ok(&["network", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.contains("ingress") && l.contains("overlay") && l.contains("swarm")),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.contains("bridge") && l.contains("local")),
        "{ls}"
    );
    let ingress = nodes[0].ok(&[
        "network",
        "inspect",
        "--format",
        "{{.Driver}} {{.Scope}}",
        "ingress",
    ]);
    assert_eq!(ingress.trim(), "overlay swarm");
    let missing = nodes[0].shoal(&["network", "inspect", "nothere"]);
    assert_eq!(missing.status.code(), Some(1));
    let port = free_port();
    let publish = format!("{port}:80");
    nodes[0].create_echo("a", "1", &["-p", &publish], &["--port", "80"]);
    let err = nodes[0].fails(&[
        "service",
        "create",
        "-d",
        "--name",
        "b",
        "--driver",
        "process",
        "-p",
        &publish,
        echo_bin().to_str().expect("path"),
    ]);
    assert!(
        err.contains(&format!("port '{port}' is already in use by service 'a'")),
        "{err}"
    );
    let bad = nodes[0].shoal(&["service", "create", "-p", "x:80", "img"]);
    assert_eq!(
        bad.status.code(),
        Some(125),
        "a bad --publish is a usage error"
    );

    // A port left to the swarm comes from 30000-32767; --publish-add and
    // --publish-rm change what a running service publishes.
    nodes[0].create_echo("dyn", "1", &["-p", "80"], &["--port", "80"]);
    let dynamic = nodes[0].ok(&[
        "service",
        "inspect",
        "--format",
        "{{range .Endpoint.Ports}}{{.PublishedPort}}{{end}}",
        "dyn",
    ]);
    let dynamic: u16 = dynamic.trim().parse().expect("a published port");
    assert!((30000..=32767).contains(&dynamic), "{dynamic}");
    let added = free_port();
    nodes[0].ok(&[
        "service",
        "update",
        "-d",
        "--publish-rm",
        "80",
        "--publish-add",
        &format!("{added}:80"),
        "dyn",
    ]);
    let ports = nodes[0].ok(&[
        "service",
        "inspect",
        "--format",
        "{{json .Endpoint.Ports}}",
        "dyn",
    ]);
    assert!(
        ports.contains(&format!("\"PublishedPort\":{added}"))
            && !ports.contains(&format!(":{dynamic},")),
        "{ports}"
    );
    wait_for("the added port to answer", LONG, || {
        get(&node_ip(&nodes[1]), added).is_some()
    });

    // Host mode: one replica, so one node listens and the other does not.
    let hport = free_port();
    let host = format!("published={hport},target=80,mode=host");
    nodes[0].create_echo("h", "1", &["-p", &host], &["--port", "80"]);
    wait_for("h running", LONG, || running(&nodes[0], "h") == 1);
    let on = nodes[0]
        .tasks("h")
        .into_iter()
        .find(|t| t["Status"]["State"] == "running")
        .and_then(|t| t["NodeID"].as_str().map(str::to_string))
        .expect("node");
    let (here, there) = if nodes[0]
        .ok(&["node", "inspect", "--format", "{{.ID}}", "self"])
        .trim()
        == on
    {
        (&nodes[0], &nodes[1])
    } else {
        (&nodes[1], &nodes[0])
    };
    wait_for("the host port to answer", LONG, || {
        get(&node_ip(here), hport).is_some()
    });
    let ps = nodes[0].ok(&["service", "ps", "h"]);
    assert!(ps.contains(&format!("*:{hport}->80/tcp")), "{ps}");
    assert!(
        get(&node_ip(there), hport).is_none(),
        "only the task's node listens"
    );
    // Two replicas of a host-mode port cannot share a node: with two nodes,
    // a third stays pending with the scheduler's reason.
    nodes[0].ok(&["service", "scale", "-d", "h=3"]);
    wait_for("a pending replica", LONG, || {
        nodes[0].tasks("h").iter().any(|t| {
            t["Status"]["State"] == "pending"
                && t["Status"]["Err"]
                    .as_str()
                    .is_some_and(|e| e.contains("host-mode port already in use"))
        })
    });
}

#[test]
fn least_conn_sends_new_connections_away_from_a_backend_holding_one() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let port = free_port();
    let publish = format!("{port}:80");
    d.create_echo(
        "lc",
        "2",
        &["-p", &publish, "--endpoint-lb", "least-conn"],
        &["--port", "80"],
    );
    wait_for("2 running", LONG, || running(&d, "lc") == 2);
    let ip = node_ip(&d);
    wait_for("the mesh to answer", LONG, || get(&ip, port).is_some());
    // A connection that sends nothing yet holds its backend.
    let held = TcpStream::connect((ip.as_str(), port)).expect("hold");
    std::thread::sleep(Duration::from_millis(200));
    // Each request's connection is closed before the next one starts (a
    // proxy counts a connection until it has seen both ends close).
    let answers: Vec<String> = (0..6)
        .filter_map(|_| {
            let a = get(&ip, port);
            std::thread::sleep(Duration::from_millis(100));
            a
        })
        .collect();
    assert_eq!(answers.len(), 6);
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every new connection goes to the backend without one: {answers:?}"
    );
    // The held connection still works, and reaches the other task.
    let mut held = held;
    held.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    held.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = held.read_to_string(&mut out);
    assert!(out.contains("shoal-echo"), "{out}");
    assert!(!out.contains(&format!("task={}", answers[0])), "{out}");
}

#[test]
fn a_node_killed_and_restarted_leaves_no_namespace_behind() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let mut d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    d.create_echo("ns", "3", &["--restart-delay", "0s"], &["--port", "80"]);
    wait_for("3 running", LONG, || running(&d, "ns") == 3);
    let tag = std::fs::read_to_string(d.data_dir().join("net.json"))
        .ok()
        .and_then(|s| s.split('"').nth(3).map(str::to_string))
        .expect("net.json");
    let namespaces = || -> BTreeSet<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("shn{tag}-")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = namespaces();
    assert_eq!(before.len(), 3, "one namespace a task: {before:?}");
    d.kill9_and_restart();
    wait_for("3 running again", LONG, || {
        running(&d, "ns") == 3 && namespaces().len() == 3
    });
    let after = namespaces();
    assert!(
        before.is_disjoint(&after),
        "the old namespaces are gone: {before:?} {after:?}"
    );
    d.ok(&["service", "rm", "ns"]);
    wait_for("no namespace left", LONG, || namespaces().is_empty());
}

#[test]
fn proxy_protocol_v2_tells_every_replica_the_real_client_address() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let nodes = cluster(1, 1, &[]);
    let port = free_port();
    let publish = format!("published={port},target=80,proxy-protocol=v2");
    nodes[0].create_echo("pp", "2", &["-p", &publish], &["--port", "80"]);
    wait_for("2 running", LONG, || running(&nodes[0], "pp") == 2);
    for d in &nodes {
        let ip = node_ip(d);
        wait_for("the mesh to answer", LONG, || get(&ip, port).is_some());
        // Until both replicas (one local, one remote) have answered through
        // this node, every answer names this client.
        let mut tasks = BTreeSet::new();
        wait_for("both replicas to answer", LONG, || {
            let mut s = TcpStream::connect((ip.as_str(), port)).expect("connect");
            let me = s.local_addr().expect("addr").to_string();
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            assert!(out.contains(&format!("client={me}")), "through {ip}: {out}");
            if let Some(t) = out.split_whitespace().find(|w| w.starts_with("task=")) {
                tasks.insert(t.to_string());
            }
            tasks.len() == 2
        });
    }
}

#[test]
fn udp_through_the_mesh_reaches_local_and_remote_replicas() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let nodes = cluster(1, 1, &[]);
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let publish = format!("{port}:53/udp");
    nodes[0].create_echo("dns", "2", &["-p", &publish], &["--udp-port", "53"]);
    wait_for("2 running", LONG, || running(&nodes[0], "dns") == 2);
    // Each new client socket is a new flow, sent to the next replica.
    let ask = |ip: &str| -> Option<String> {
        let s = std::net::UdpSocket::bind((ip, 0)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.send_to(b"who?", (ip, port)).ok()?;
        let mut buf = [0u8; 2048];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        line.split_whitespace()
            .find(|w| w.starts_with("task="))
            .map(str::to_string)
    };
    for d in &nodes {
        let ip = node_ip(d);
        let mut seen = BTreeSet::new();
        wait_for("both replicas answer over udp", LONG, || {
            if let Some(t) = ask(&ip) {
                seen.insert(t);
            }
            seen.len() == 2
        });
    }
}

/// Every UDP payload seen on the loopback while `during` runs (the nodes'
/// QUIC traffic rides UDP on lo; the client's own TCP does not count).
fn udp_payloads_on_lo(during: impl FnOnce()) -> Vec<Vec<u8>> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto as u16;
        addr.sll_ifindex = libc::if_nametoindex(c"lo".as_ptr()) as i32;
        let bound = libc::bind(
            fd,
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop2, raw) = (stop.clone(), fd);
        let reader = std::thread::spawn(move || {
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let mut out = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let n = libc::recv(raw, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                if n <= 0 {
                    continue;
                }
                let p = &buf[..n as usize];
                // Ethernet (14), IPv4, UDP (8).
                if p.len() < 14 + 20 + 8 || p[12..14] != [0x08, 0x00] || p[14 + 9] != 17 {
                    continue;
                }
                let ihl = ((p[14] & 0x0f) as usize) * 4;
                out.push(p[14 + ihl + 8..].to_vec());
            }
            out
        });
        during();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let out = reader.join().unwrap_or_default();
        libc::close(fd);
        out
    }
}

#[test]
fn bytes_between_nodes_are_not_plaintext() {
    if !root() {
        eprintln!("skipped: needs root (task sandboxes, a raw socket)");
        return;
    }
    let nodes = cluster(1, 1, &[]);
    let port = free_port();
    let publish = format!("{port}:80");
    nodes[0].create_echo("enc", "2", &["-p", &publish], &["--port", "80"]);
    wait_for("2 running", LONG, || running(&nodes[0], "enc") == 2);
    let ip = node_ip(&nodes[1]);
    let mut both = BTreeSet::new();
    wait_for("both replicas to answer through worker-1", LONG, || {
        if let Some(t) = get(&ip, port) {
            both.insert(t);
        }
        both.len() == 2
    });
    let secret = token("plaintext-marker");
    let mut tasks = BTreeSet::new();
    let payloads = udp_payloads_on_lo(|| {
        for _ in 0..8 {
            let mut s = TcpStream::connect((ip.as_str(), port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s.write_all(format!("GET /{secret} HTTP/1.0\r\n\r\n").as_bytes())
                .expect("write");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if let Some(t) = out.split_whitespace().find(|w| w.starts_with("task=")) {
                tasks.insert(t.to_string());
            }
        }
    });
    assert_eq!(
        tasks.len(),
        2,
        "half the requests crossed to the other node"
    );
    assert!(!payloads.is_empty(), "the nodes' QUIC traffic was captured");
    let hay = |p: &Vec<u8>, needle: &[u8]| p.windows(needle.len()).any(|w| w == needle);
    assert!(
        !payloads
            .iter()
            .any(|p| hay(p, secret.as_bytes()) || hay(p, b"shoal-echo")),
        "a request or an answer crossed between nodes in plaintext"
    );
}

/// Requests to every node's published port on a thread each until `stop`;
/// returns (answered, failed).
fn load(
    ips: Vec<String>,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let handles: Vec<_> = ips
            .into_iter()
            .map(|ip| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        match get(&ip, port) {
                            Some(_) => ok += 1,
                            None => failed.push(ip.clone()),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (ok, failed)
                })
            })
            .collect();
        let mut total = (0, Vec::new());
        for h in handles {
            if let Ok((ok, failed)) = h.join() {
                total.0 += ok;
                total.1.extend(failed);
            }
        }
        total
    })
}

#[test]
fn a_start_first_rolling_update_under_load_fails_no_request() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let nodes = cluster(1, 2, &[]);
    let port = free_port();
    let publish = format!("{port}:80");
    nodes[0].create_echo(
        "zd",
        "3",
        &[
            "-p",
            &publish,
            "--update-order",
            "start-first",
            "--update-parallelism",
            "1",
        ],
        &["--port", "80"],
    );
    wait_for("3 running", LONG, || running(&nodes[0], "zd") == 3);
    let ips: Vec<String> = nodes.iter().map(node_ip).collect();
    for ip in &ips {
        wait_for("the mesh to answer", LONG, || get(ip, port).is_some());
    }
    let before = running_ids(&nodes[0], "zd");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = load(ips, port, stop.clone());
    nodes[0].ok(&["service", "update", "-d", "--force", "zd"]);
    // Until the updater's first write the service has no UpdateStatus, and
    // the template fails on it (as docker's does on a nil UpdateStatus).
    wait_for("the update to complete", LONG, || {
        let out = nodes[0].shoal(&[
            "service",
            "inspect",
            "--format",
            "{{.UpdateStatus.State}}",
            "zd",
        ]);
        String::from_utf8_lossy(&out.stdout).trim() == "completed"
    });
    wait_for("3 new tasks running", LONG, || {
        let now = running_ids(&nodes[0], "zd");
        now.len() == 3 && now.is_disjoint(&before)
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = load.join().expect("load");
    assert!(ok > 50, "the load ran: {ok} answers");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
}

#[test]
fn a_health_check_probes_the_task_s_own_network() {
    if !root() {
        eprintln!("skipped: task sandboxes need root");
        return;
    }
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    // `localhost:80` is the task's own port only inside its namespace.
    let probe = "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 80), 1)\"";
    d.create_echo(
        "hc",
        "1",
        &[
            "--health-cmd",
            probe,
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
        &["--port", "80"],
    );
    wait_for("the task to be healthy", LONG, || {
        d.tasks("hc")
            .iter()
            .any(|t| t["Status"]["State"] == "running" && t["Status"]["Health"] == "healthy")
    });
}
