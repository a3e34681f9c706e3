//! The overlay traffic probe (`[traffic] via = "overlay"`): requests to a
//! service by NAME from inside tasks on an overlay network, as another
//! service of the swarm would make them.
//!
//! The harness creates a client service, [`CLIENT`], with one task per
//! node on the network (an idle `shoal-echo`). Each request is sent from a
//! thread of the harness that has entered the network namespace of one
//! client task (`setns(2)` on that thread only): it reads the task's own
//! `/etc/resolv.conf` (through `/proc/PID/root`, so the task's mount
//! namespace's file), asks that nameserver (the node's embedded DNS, at the
//! network's gateway) for the service's name, and sends the request to the
//! address it answers (the VIP), TCP to port 80 or UDP to 81 — the whole
//! exchange timed by the harness's own clock, as one request. So a request
//! fails if the name does not resolve, the VIP has no way to a serving
//! task, or the answer does not come; it leaves through the task's own
//! interface and crosses the encrypted overlay like the task's traffic.
//!
//! Why the harness enters the namespace rather than having the client task
//! send and report: the harness keeps one clock for every request and
//! every fault (the checkers compare them), nothing has to be parsed out
//! of task logs, and a client task that dies with its node loses no
//! records. Requests go round the live clients in turn (like the
//! published-port load goes round the live nodes) and are journaled under
//! the client's node.
//!
//! A client task is taken into the load once one request from it has been
//! answered (a readiness check, as a load balancer's health check admits a
//! node's port), and left out once its node is spared for a fault or its
//! process is gone.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dns_wire::{answer, nameserver, query};
use crate::history::NodeInfo;
use crate::requests::{request_from, LiveNodes, CLIENT};
use crate::scenario::Proto;

/// A DNS query not answered within this is sent again (a resolver's
/// default timeout is 5 s; ours is shorter so that one lost datagram does
/// not eat a request's whole budget).
const DNS_RETRY: Duration = Duration::from_secs(1);

/// Client tasks admitted to the load: (their node, their pid).
pub type Admitted = Arc<Mutex<Vec<(String, i32)>>>;

/// Keeps [`Admitted`] current: every half second, the live processes of
/// [`CLIENT`] on nodes that take traffic; a new one is admitted once a
/// request from it has been answered.
pub struct Clients {
    pub admitted: Admitted,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clients {
    pub fn start(
        nodes: Vec<NodeInfo>,
        live: LiveNodes,
        service: String,
        started: Instant,
    ) -> Clients {
        let admitted: Admitted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (admitted, stop) = (admitted.clone(), stop.clone());
            std::thread::spawn(move || {
                // pid -> when it was first seen (not yet admitted).
                let mut seen: BTreeMap<i32, Instant> = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let up: Vec<String> = live
                        .lock()
                        .map(|l| l.iter().map(|(n, _)| n.clone()).collect())
                        .unwrap_or_default();
                    let procs: Vec<(String, i32)> = crate::observe::task_processes(&nodes)
                        .into_iter()
                        .filter(|p| p.service == CLIENT && up.contains(&p.node))
                        .map(|p| (p.node, p.pid))
                        .collect();
                    let mut now: Vec<(String, i32)> = admitted
                        .lock()
                        .map(|a| a.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| procs.contains(c))
                        .collect();
                    seen.retain(|pid, _| procs.iter().any(|(_, p)| p == pid));
                    for (node, pid) in &procs {
                        if now.iter().any(|(_, p)| p == pid) {
                            continue;
                        }
                        let first = *seen.entry(*pid).or_insert_with(Instant::now);
                        if request(*pid, &service, Proto::Tcp, Duration::from_secs(1)).is_ok() {
                            eprintln!(
                                "shoal-chaos: {:>7.2}s overlay client on {node} (pid {pid}) answered {:.2}s after it was first seen: it takes traffic",
                                started.elapsed().as_secs_f64(),
                                first.elapsed().as_secs_f64()
                            );
                            seen.remove(pid);
                            now.push((node.clone(), *pid));
                        }
                    }
                    now.sort();
                    if let Ok(mut a) = admitted.lock() {
                        *a = now;
                    }
                    for _ in 0..5 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        };
        Clients {
            admitted,
            stop,
            thread: Some(thread),
        }
    }

    /// Takes a node's clients out at once (before a fault hits it).
    pub fn spare(admitted: &Admitted, node: &str) {
        if let Ok(mut a) = admitted.lock() {
            a.retain(|(n, _)| n != node);
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request from inside the network namespace of task process `pid`
/// to `service` by name: how many datagrams it took (DNS queries and UDP
/// requests sent again after a second without an answer), or why it
/// failed. Runs on a thread of its own: it moves this thread into the
/// task's network namespace (and leaves it there).
pub fn request(pid: i32, service: &str, proto: Proto, timeout: Duration) -> Result<u32, String> {
    let began = Instant::now();
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("the client task's namespace: {e}"))?;
    let conf = std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf"))
        .map_err(|e| format!("the client task's resolv.conf: {e}"))?;
    let server = nameserver(&conf)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let service = service.to_string();
    // A thread of its own: setns moves only the calling thread, and this
    // one is thrown away after.
    let spawned = std::thread::Builder::new()
        .name("overlay-request".into())
        .spawn(move || {
            let r = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns into the client task's network: {e}"))
                .and_then(|()| in_task(server, &service, proto, timeout, began));
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(format!("a thread for the request: {e}"));
    }
    rx.recv()
        .unwrap_or_else(|_| Err("the request thread died".into()))
}

fn in_task(
    server: Ipv4Addr,
    service: &str,
    proto: Proto,
    timeout: Duration,
    began: Instant,
) -> Result<u32, String> {
    let (vip, dns_tries) = resolve(server, service, timeout, began)?;
    let left = timeout.saturating_sub(began.elapsed());
    if left.is_zero() {
        return Err(format!("resolved to {vip} only after the timeout"));
    }
    let port = match proto {
        Proto::Tcp => 80,
        Proto::Udp => 81,
    };
    let bind = std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    request_from(proto, SocketAddr::from((vip, port)), left, bind)
        .map(|tries| tries + dns_tries - 1)
        .map_err(|e| format!("{service} -> {vip}: {e}"))
}

/// The first A record for `name` from `server`, asking again from a new
/// port after a second without an answer; and how many queries it took.
fn resolve(
    server: Ipv4Addr,
    name: &str,
    timeout: Duration,
    began: Instant,
) -> Result<(Ipv4Addr, u32), String> {
    let mut tries = 0;
    let mut last = String::new();
    while began.elapsed() < timeout {
        tries += 1;
        let left = timeout.saturating_sub(began.elapsed()).min(DNS_RETRY);
        let id = (began.elapsed().subsec_nanos() as u16) ^ (tries as u16).rotate_left(8);
        let q = query(name, id)?;
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("resolve: bind: {e}"))?;
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        if let Err(e) = sock.send_to(&q, (server, 53)) {
            last = format!("resolve {name}: send to {server}: {e}");
            std::thread::sleep(left);
            continue;
        }
        let mut buf = [0u8; 1500];
        match sock.recv(&mut buf) {
            Ok(n) => match answer(&buf[..n], id) {
                Ok(a) => return Ok((a, tries)),
                // An authoritative "no" is not lost: no point asking again.
                Err(e) => return Err(format!("resolve {name} at {server}: {e}")),
            },
            Err(e) => last = format!("resolve {name} at {server}: no answer: {e}"),
        }
    }
    Err(format!("{last} ({tries} queries)"))
}
