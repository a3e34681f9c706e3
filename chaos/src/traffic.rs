//! The traffic load (`[traffic]`): a steady stream of requests to a
//! service's published port through every live node, each recorded with
//! its outcome and latency. TCP requests are HTTP/1.0 GETs answered with a
//! 200 by the workload's port 80; UDP requests are one datagram, answered
//! with one by its echo on 81, sent again after a second without an answer
//! (as a resolver does; UDP may drop). Every request (and every UDP try) is
//! a new connection or a new source port, so each is routed afresh by the
//! node's mesh.
//!
//! Requests come from 127.0.0.1, like the `mesh` probe's and unlike a
//! `flood`'s (127.3.0.x), so the mesh's per-port caps see them as one more
//! client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::history::Request;
use crate::requests::{request, LiveNodes};
use crate::scenario::Traffic;
use crate::workload::Recorder;

/// Requests outstanding at once; past that a send is skipped (and counted):
/// the client, not the cluster, would be the limit.
const MAX_OUTSTANDING: usize = 2048;

/// A running traffic load; `stop` ends it and hands back what it recorded.
pub struct Load {
    stop: Arc<AtomicBool>,
    pacer: Option<std::thread::JoinHandle<()>>,
    requests: Arc<Mutex<Vec<Request>>>,
    outstanding: Arc<AtomicUsize>,
    skipped: Arc<AtomicU64>,
}

/// Where a load's requests go.
#[derive(Clone)]
pub enum Route {
    /// To this published port of every live node.
    Published { port: u16, nodes: LiveNodes },
    /// To the service by name, from every admitted overlay client task.
    Overlay {
        service: String,
        clients: crate::overlay::Admitted,
    },
}

#[derive(Clone)]
enum Dest {
    Addr(SocketAddr),
    Task(i32),
}

impl Route {
    /// The senders in turn: (the node a request goes through, where to).
    fn senders(&self) -> Vec<(String, Dest)> {
        match self {
            Route::Published { port, nodes } => nodes
                .lock()
                .map(|l| {
                    l.iter()
                        .map(|(n, ip)| (n.clone(), Dest::Addr(SocketAddr::new(*ip, *port))))
                        .collect()
                })
                .unwrap_or_default(),
            Route::Overlay { clients, .. } => clients
                .lock()
                .map(|l| {
                    l.iter()
                        .map(|(n, pid)| (n.clone(), Dest::Task(*pid)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl Load {
    pub fn start(t: &Traffic, route: Route, rec: Arc<Recorder>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let outstanding = Arc::new(AtomicUsize::new(0));
        let skipped = Arc::new(AtomicU64::new(0));
        let pacer = {
            let (t, stop, requests, outstanding, skipped, route) = (
                t.clone(),
                stop.clone(),
                requests.clone(),
                outstanding.clone(),
                skipped.clone(),
                route,
            );
            std::thread::spawn(move || {
                let gap = Duration::from_secs_f64(1.0 / t.rate);
                let origin = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    // On a fixed schedule: a slow send does not lower the rate.
                    let due = origin + gap.mul_f64(n as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let live = route.senders();
                    let proto = t.protocols[n as usize % t.protocols.len()];
                    let pick = (n as usize / t.protocols.len()) % live.len().max(1);
                    n += 1;
                    let Some((node, dest)) = live.get(pick).cloned() else {
                        continue;
                    };
                    if outstanding.load(Ordering::Relaxed) >= MAX_OUTSTANDING {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    outstanding.fetch_add(1, Ordering::Relaxed);
                    let (rec, requests, mine, timeout, route) = (
                        rec.clone(),
                        requests.clone(),
                        outstanding.clone(),
                        t.timeout,
                        route.clone(),
                    );
                    let spawned = std::thread::Builder::new().spawn(move || {
                        let at = rec.now();
                        let began = Instant::now();
                        let result = match (dest, &route) {
                            (Dest::Addr(to), _) => request(proto, to, timeout),
                            (Dest::Task(pid), Route::Overlay { service, .. }) => {
                                crate::overlay::request(pid, service, proto, timeout)
                            }
                            (Dest::Task(_), Route::Published { .. }) => {
                                Err("no task to send from".into())
                            }
                        };
                        let micros = began.elapsed().as_micros() as u64;
                        let r = Request {
                            at,
                            node,
                            proto: proto.as_str().into(),
                            ok: result.is_ok(),
                            micros,
                            tries: *result.as_ref().unwrap_or(&0),
                            error: result.err().unwrap_or_default(),
                        };
                        if let Ok(mut v) = requests.lock() {
                            v.push(r);
                        }
                        mine.fetch_sub(1, Ordering::Relaxed);
                    });
                    if spawned.is_err() {
                        outstanding.fetch_sub(1, Ordering::Relaxed);
                        skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Load {
            stop,
            pacer: Some(pacer),
            requests,
            outstanding,
            skipped,
        }
    }

    /// Stops sending, waits for the requests in flight (each ends within
    /// its timeout), and returns every request, in the order sent, and how
    /// many sends were skipped.
    pub fn stop(mut self, timeout: Duration) -> (Vec<Request>, u64) {
        self.halt();
        let deadline = Instant::now() + timeout + Duration::from_secs(1);
        while self.outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = self.requests.lock().map(|v| v.clone()).unwrap_or_default();
        out.sort_by_key(|r| r.at);
        (out, self.skipped.load(Ordering::Relaxed))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.pacer.take() {
            let _ = p.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}
