//! `shoal daemon --metrics-addr`: three managers, each scraped while a
//! service is created, scaled, updated and has a task killed, and while
//! the leader is killed; the series move as the cluster does, and the text
//! passes `promtool check metrics`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One scrape of `addr` (Prometheus's classic text, as curl gets it).
fn scrape(addr: &str) -> Option<String> {
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    if !resp.starts_with("HTTP/1.1 200") {
        return None;
    }
    let (_, body) = resp.split_once("\r\n\r\n")?;
    // axum answers a whole body with a length, never chunked, for a String.
    Some(body.to_string())
}

/// `name{labels}` → value, for every sample of a scrape.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(addr: &str, key: &str) -> f64 {
    let text = scrape(addr).unwrap_or_default();
    samples(&text).get(key).copied().unwrap_or(f64::NAN)
}

/// `promtool check metrics` on the text: its exit status and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Three managers on 127.0.0.2-4, each serving metrics on a port of its own.
fn metered_cluster() -> (Vec<Daemon>, Vec<String>) {
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_tcp_port()))
        .collect();
    let start = |i: usize| {
        Daemon::start_on(
            &format!("127.0.0.{}", 2 + i),
            &format!("manager-{}", i + 1),
            &["--metrics-addr", &addrs[i]],
        )
    };
    let first = start(0);
    first.ok(&["swarm", "init"]);
    let token = first
        .ok(&["swarm", "join-token", "-q", "manager"])
        .trim()
        .to_string();
    let mut nodes = vec![first];
    for i in 1..3 {
        let d = start(i);
        assert!(join(&d, &token, &nodes[0]).contains("joined a swarm as a manager"));
        nodes.push(d);
    }
    wait_for("every node ready", LONG, || {
        let rows = nodes[0].rows(&["node", "ls"]);
        rows.len() == 3 && rows.iter().all(|r| r["Status"] == "Ready")
    });
    (nodes, addrs)
}

/// Tasks `node ps` shows running (and desired running) on the node `d` is.
fn node_ps_running(d: &Daemon) -> usize {
    d.rows(&["node", "ps"])
        .iter()
        .filter(|r| {
            r["DesiredState"] == "Running"
                && r["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
        })
        .count()
}

const RUNNING: &str = "swarm_node_tasks{state=\"running\"}";

/// Every node's running-tasks gauge equals its `node ps`, and they add up to `total`.
fn gauges_match_node_ps(nodes: &[Daemon], addrs: &[String], total: usize) {
    wait_for(
        &format!("each node's running gauge to equal its node ps ({total} in all)"),
        LONG,
        || {
            let mut sum = 0;
            for (d, addr) in nodes.iter().zip(addrs) {
                let ps = node_ps_running(d);
                if value(addr, RUNNING) != ps as f64 {
                    return false;
                }
                sum += ps;
            }
            sum == total
        },
    );
}

fn sum(addrs: &[String], key: &str) -> f64 {
    addrs
        .iter()
        .map(|a| value(a, key))
        .filter(|v| !v.is_nan())
        .sum()
}

#[test]
fn series_follow_a_service_and_a_leader_kill_on_three_managers() {
    let (mut nodes, addrs) = metered_cluster();
    let text = scrape(&addrs[0]).expect("scrape");
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics: {said}\n{text}");

    // Raft: one leader, one term, every manager with its commit index.
    let leaders: f64 = sum(&addrs, "swarm_raft_is_leader");
    assert_eq!(leaders, 1.0);
    assert!(value(&addrs[1], "swarm_raft_commit_index") > 0.0);
    assert_eq!(value(&addrs[2], "swarm_raft_voters"), 3.0);
    // The overlay data plane is up on each node, its counters served.
    assert!(addrs.iter().all(|a| {
        value(a, "swarm_overlay_packets_total{direction=\"sent\"}") >= 0.0
            && value(a, "swarm_overlay_drops_total{reason=\"no_route\"}") >= 0.0
    }));
    // Each manager holds connections to the two others.
    assert!(addrs
        .iter()
        .all(|a| value(a, "swarm_transport_connections") >= 2.0));

    let tok = token("metrics");
    let port = free_tcp_port();
    let publish = format!("{port}:80");
    nodes[0].create_echo(
        "web",
        "3",
        &["-p", &publish, "--restart-delay", "0s"],
        &["--print", &tok, "--port", "80"],
    );
    wait_for("3 running", LONG, || running(&nodes[0], "web") == 3);
    gauges_match_node_ps(&nodes, &addrs, 3);
    assert!(sum(&addrs, "swarm_orchestrator_tasks_created_total") >= 3.0);
    assert!(sum(&addrs, "swarm_node_task_start_latency_seconds_count") >= 3.0);
    assert_eq!(
        value(
            &addrs[0],
            "swarm_api_requests_total{route=\"/services/create\",method=\"POST\",status=\"201\"}"
        ),
        1.0
    );

    // The routing mesh counts what its published port admits, per port.
    let published = format!("swarm_mesh_connections_total{{port=\"{port}\",protocol=\"tcp\"}}");
    let mut answered = 0;
    wait_for("five answers through the published port", LONG, || {
        if echo_task_at(&format!("127.0.0.2:{port}")).is_some() {
            answered += 1;
        }
        answered == 5
    });
    assert!(value(&addrs[0], &published) >= 5.0, "{published}");
    // Where they went: one task per node, round robin, so some stayed on
    // this node and some crossed to another; nothing names a task.
    let picks = |backend: &str| {
        value(
            &addrs[0],
            &format!(
                "swarm_mesh_backend_picks_total{{port=\"{port}\",protocol=\"tcp\",backend=\"{backend}\"}}"
            ),
        )
    };
    assert!(picks("local") >= 1.0, "a connection to this node's task");
    assert!(
        picks("remote") >= 1.0,
        "a connection to another node's task"
    );
    assert!(picks("local") + picks("remote") >= 5.0);
    // The transport's bytes: every manager sent and received, and they grow.
    let bytes = |a: &str, direction: &str| {
        value(
            a,
            &format!("swarm_transport_bytes_total{{direction=\"{direction}\"}}"),
        )
    };
    let sent_before: Vec<f64> = addrs.iter().map(|a| bytes(a, "sent")).collect();
    assert!(addrs.iter().all(|a| bytes(a, "received") > 0.0));

    nodes[0].ok(&["service", "scale", "-d", "web=5"]);
    wait_for("5 running", LONG, || running(&nodes[0], "web") == 5);
    gauges_match_node_ps(&nodes, &addrs, 5);
    assert!(sum(&addrs, "swarm_orchestrator_tasks_created_total") >= 5.0);
    for (a, before) in addrs.iter().zip(sent_before) {
        assert!(
            bytes(a, "sent") > before,
            "{a} sent more bytes after a scale"
        );
    }

    // A rollout: every manager reads it from its own copy of the state.
    nodes[0].ok(&[
        "service",
        "update",
        "-d",
        "--update-parallelism",
        "5",
        "--update-monitor",
        "1s",
        "--env-add",
        "ROUND=2",
        "web",
    ]);
    wait_for("the rollout completed on every manager", LONG, || {
        addrs
            .iter()
            .all(|a| value(a, "swarm_updater_rollouts{state=\"completed\"}") == 1.0)
    });
    gauges_match_node_ps(&nodes, &addrs, 5);

    // A killed task: counted failed where it ran, and replaced.
    let failed_before = sum(&addrs, "swarm_node_tasks_failed_total");
    let pid = pids_with(&tok)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill a task");
    wait_for("the kill counted as a failed task", LONG, || {
        sum(&addrs, "swarm_node_tasks_failed_total") >= failed_before + 1.0
    });
    wait_for("the task replaced", LONG, || running(&nodes[0], "web") == 5);
    gauges_match_node_ps(&nodes, &addrs, 5);

    // The leader killed: the survivors learn of a new leader in a newer term.
    let leader = leader_of(&nodes, 0).expect("a leader");
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let before: Vec<(f64, f64)> = survivors
        .iter()
        .map(|i| {
            (
                value(&addrs[*i], "swarm_raft_leader_changes_total"),
                value(&addrs[*i], "swarm_raft_term"),
            )
        })
        .collect();
    nodes[leader].kill9();
    wait_for("a new leader among the survivors", LONG, || {
        survivors
            .iter()
            .map(|i| value(&addrs[*i], "swarm_raft_is_leader"))
            .sum::<f64>()
            == 1.0
    });
    for (i, (changes, term)) in survivors.iter().zip(before) {
        wait_for("the leader change counted", LONG, || {
            value(&addrs[*i], "swarm_raft_leader_changes_total") > changes
        });
        assert!(value(&addrs[*i], "swarm_raft_term") > term);
    }
    let text = scrape(&addrs[survivors[0]]).expect("scrape");
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics: {said}\n{text}");
    assert!(!text.contains(&tok), "no task's name in a label");
}

#[test]
fn openmetrics_on_request_and_refused_handshakes_counted() {
    let addr = format!("127.0.0.1:{}", free_tcp_port());
    let d = Daemon::start(&["--metrics-addr", &addr]);
    d.ok(&["swarm", "init"]);
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: shoal\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(
        resp.contains("content-type: application/openmetrics-text"),
        "{resp}"
    );
    assert!(resp.contains("# TYPE swarm_raft_proposals counter"));
    assert!(resp.ends_with("# EOF\n"));

    // A peer with another swarm's certificate: refused at the handshake, counted.
    let other = shoal_node::ca::RootCa::generate().expect("ca");
    let peer = Peer::new(&minted_identity(&other, "elsewhere", "intruder"));
    let target = d.listen.parse().expect("addr");
    peer.rt.block_on(async {
        for _ in 0..5 {
            let _ = peer.transport.request(target, b"hello").await;
        }
    });
    let refused = "swarm_transport_refused_total{stage=\"handshake\"}";
    wait_for("five refused handshakes counted", LONG, || {
        value(&addr, refused) >= 5.0
    });
}

#[test]
fn a_metrics_address_beyond_loopback_needs_the_operators_word() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let out = Command::new(shoal_bin())
        .args(["-H", &format!("unix://{}", socket.display()), "daemon"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "0.0.0.0:9323"])
        .stdin(Stdio::null())
        .output()
        .expect("run shoal daemon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--metrics-allow-remote"), "{err}");
    assert!(!socket.exists(), "refused before serving anything");
}

/// The control API's latency (`GET /services`) with nobody scraping, then
/// while the metrics are scraped 100 times a second. Figures printed for
/// docs/benchmarks.md; the test asserts only that every request and
/// scrape succeeded.
#[test]
fn scraping_a_hundred_times_a_second_leaves_the_control_api_answering() {
    let addr = format!("127.0.0.1:{}", free_tcp_port());
    let d = Daemon::start(&["--metrics-addr", &addr]);
    d.ok(&["swarm", "init"]);
    d.create_echo("web", "3", &[], &["--print", &token("scrape")]);
    wait_for("3 running", LONG, || running(&d, "web") == 3);

    let measure = |d: &Daemon| -> Vec<Duration> {
        (0..300)
            .map(|_| {
                let t = Instant::now();
                let (code, _) = d.api("GET", "/services", None).expect("GET /services");
                assert_eq!(code, 200);
                let took = t.elapsed();
                std::thread::sleep(Duration::from_millis(5));
                took
            })
            .collect()
    };
    let quiet = measure(&d);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut took) = (0u32, 0u32, Vec::new());
            let mut next = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                match scrape(&addr) {
                    Some(_) => ok += 1,
                    None => failed += 1,
                }
                took.push(t.elapsed());
                next += Duration::from_millis(10);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            (ok, failed, took)
        })
    };
    let started = Instant::now();
    let busy = measure(&d);
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, mut scrapes) = scraper.join().expect("scraper");
    assert_eq!(failed, 0, "every scrape answered");

    let pct = |v: &[Duration], p: f64| -> Duration {
        let mut v = v.to_vec();
        v.sort();
        v[((v.len() - 1) as f64 * p) as usize]
    };
    scrapes.sort();
    eprintln!(
        "control API GET /services, 300 requests: quiet p50 {:?} p99 {:?}; \
         while scraping p50 {:?} p99 {:?}; scrapes {ok} in {elapsed:?} ({:.0}/s), \
         scrape p50 {:?} p99 {:?}",
        pct(&quiet, 0.5),
        pct(&quiet, 0.99),
        pct(&busy, 0.5),
        pct(&busy, 0.99),
        f64::from(ok) / elapsed.as_secs_f64(),
        pct(&scrapes, 0.5),
        pct(&scrapes, 0.99),
    );
}
