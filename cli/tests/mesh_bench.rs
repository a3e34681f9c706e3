//! Figures for docs/benchmarks.md, not a CI test (`--ignored`): requests
//! through the mesh to a local and to a remote backend, beside a direct
//! connection to the task and a plain userspace proxy (socat, if installed).
//! Swarm's own mesh needs IPVS, which this kernel lacks, so it cannot run here.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn request(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).is_ok() && out.starts_with(b"HTTP/1.0 200")
}

/// p50 and p99 of one-connection-per-request latency, and requests/s with 8 clients.
fn measure(addr: &str) -> (Duration, Duration, f64) {
    for _ in 0..50 {
        request(addr);
    }
    let mut lat: Vec<Duration> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            assert!(request(addr), "request to {addr}");
            t.elapsed()
        })
        .collect();
    lat.sort();
    let window = Duration::from_secs(3);
    let start = Instant::now();
    let counts: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while start.elapsed() < window {
                        if request(addr) {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let rps = counts.iter().sum::<usize>() as f64 / start.elapsed().as_secs_f64();
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100], rps)
}

fn task_addr(d: &Daemon) -> String {
    let tag = std::fs::read_to_string(d.data_dir().join("net.json"))
        .ok()
        .and_then(|s| s.split('"').nth(3).map(str::to_string))
        .expect("net.json");
    let ns = std::fs::read_dir("/run/netns")
        .expect("netns")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("shn{tag}-")))
        .expect("the task's namespace");
    let out = std::process::Command::new("ip")
        .args(["-n", &ns, "-4", "-o", "addr", "show", "eth0"])
        .output()
        .expect("ip");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let cidr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .expect("inet");
    format!("{}:80", cidr.split('/').next().unwrap_or_default())
}

#[test]
#[ignore = "a benchmark: cargo nextest run -p shoal-cli --test mesh_bench --run-ignored only --no-capture"]
fn mesh_throughput_and_latency() {
    let nodes = cluster(1, 1, &[]);
    let port = free_tcp_port();
    let publish = format!("{port}:80");
    nodes[0].create_echo("bench", "1", &["-p", &publish], &["--port", "80"]);
    wait_for("1 running", LONG, || running(&nodes[0], "bench") == 1);
    let on = nodes[0]
        .tasks("bench")
        .into_iter()
        .find(|t| t["Status"]["State"] == "running")
        .and_then(|t| t["NodeID"].as_str().map(str::to_string))
        .expect("node");
    let ids: Vec<String> = nodes
        .iter()
        .map(|d| {
            d.ok(&["info", "--format", "{{.Swarm.NodeID}}"])
                .trim()
                .to_string()
        })
        .collect();
    let local = ids.iter().position(|i| *i == on).expect("the task's node");
    let remote = 1 - local;
    let ip = |d: &Daemon| d.listen.split(':').next().unwrap_or_default().to_string();
    let through_local = format!("{}:{port}", ip(&nodes[local]));
    let through_remote = format!("{}:{port}", ip(&nodes[remote]));
    let direct = task_addr(&nodes[local]);
    wait_for("the mesh", LONG, || {
        request(&through_local) && request(&through_remote)
    });

    let mut rows = vec![
        ("direct to the task", measure(&direct)),
        ("mesh, local backend", measure(&through_local)),
        ("mesh, remote backend (QUIC)", measure(&through_remote)),
    ];
    let socat_port = port.wrapping_add(1);
    if let Ok(mut socat) = std::process::Command::new("socat")
        .args([
            &format!("TCP-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr"),
            &format!("TCP:{direct}"),
        ])
        .spawn()
    {
        let addr = format!("127.0.0.1:{socat_port}");
        wait_for("socat", LONG, || request(&addr));
        rows.push(("socat (userspace proxy), local", measure(&addr)));
        let _ = socat.kill();
        let _ = socat.wait();
    }
    println!("| path | p50 | p99 | requests/s (8 clients) |");
    println!("|---|---|---|---|");
    for (name, (p50, p99, rps)) in &rows {
        println!("| {name} | {p50:.2?} | {p99:.2?} | {rps:.0} |");
    }

    // From RUNNING to the first answer through a node without the task, and
    // from a scale-down to the last answer from the removed task.
    nodes[0].ok(&["service", "scale", "-d", "bench=2"]);
    let t = Instant::now();
    wait_for("2 running", LONG, || running(&nodes[0], "bench") == 2);
    let running_at = t.elapsed();
    let mut seen = std::collections::BTreeSet::new();
    let answer = echo_task_at;
    wait_for("the new task answers", LONG, || {
        if let Some(a) = answer(&through_remote) {
            seen.insert(a);
        }
        seen.len() == 2
    });
    println!(
        "new task: RUNNING in the state after {running_at:.2?}, first proxied answer after {:.2?}",
        t.elapsed()
    );
    nodes[0].ok(&["service", "scale", "-d", "bench=1"]);
    let t = Instant::now();
    let mut last_two = t;
    while t.elapsed() < Duration::from_secs(10) {
        let mut round = std::collections::BTreeSet::new();
        for _ in 0..4 {
            if let Some(a) = answer(&through_remote) {
                round.insert(a);
            }
        }
        if round.len() > 1 {
            last_two = Instant::now();
        }
    }
    println!(
        "scale-down: the removed task's last proxied answer {:.2?} after the command",
        last_two - t
    );
}
