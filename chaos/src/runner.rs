//! Runs a scenario: brings up (or attaches to) the cluster, checks the
//! steady state, runs the method with its background load, rolls back,
//! waits for the cluster to heal and writes everything into a [`Journal`].
//! It judges nothing: that is the checkers' job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::api;
use crate::checkers::first_steady;
use crate::cluster::{Cluster, Liveness};
use crate::history::{Fault, FinalState, Journal, Observation, ProbeResult};
use crate::observe::Observer;
use crate::probe::{self, ProbeCtx};
use crate::register;
use crate::requests::LiveNodes;
use crate::scenario::{Action, Direction, Scenario, Step, Target, Via};
use crate::traffic;
use crate::workload::{self, value_of, LiveManagers, Recorder, WRITE_TIMEOUT};

pub struct Options {
    pub seed: u64,
    /// The `shoal` binary that runs the daemons.
    pub shoal: PathBuf,
    /// The program the harness's services run.
    pub workload: PathBuf,
    /// Where node data and logs go.
    pub run_dir: PathBuf,
}

/// Observations keep going this long once the cluster has healed, so the
/// checkers see it stay healed.
const LINGER: Duration = Duration::from_secs(3);

/// A fault to undo later.
#[derive(Debug, Clone)]
enum Undo {
    Start(String),
    Resume(String),
    Heal(Vec<String>),
    /// Stop the flood of this number (`Runner::floods`).
    EndFlood(usize),
    /// Free what `fill` wrote on the node's filesystem.
    Unfill(String),
    /// Take the flush delay off the node again.
    FastDisk(String),
    /// Put the node's wall clock back.
    ClockBack(String),
}

struct Scheduled {
    at: Duration,
    seq: usize,
    what: Pending,
}

enum Pending {
    Step(usize),
    Undo {
        undo: Undo,
        fault: usize,
        line: usize,
    },
}

/// What one action did.
struct Done {
    nodes: Vec<String>,
    detail: String,
    healed_in_ms: Option<f64>,
    undo: Option<Undo>,
}

impl Done {
    fn on(nodes: Vec<String>, detail: impl Into<String>) -> Done {
        Done {
            nodes,
            detail: detail.into(),
            healed_in_ms: None,
            undo: None,
        }
    }
}

struct Run {
    sc: Scenario,
    seed: u64,
    cluster: Cluster,
    rng: StdRng,
    rec: Arc<Recorder>,
    ctx: ProbeCtx,
    live: LiveManagers,
    faults: Vec<Fault>,
    probes: Arc<Mutex<Vec<ProbeResult>>>,
    observations: Arc<Mutex<Vec<Observation>>>,
    errors: Vec<String>,
    bindings: BTreeMap<String, String>,
    /// The replicas the method's own writes gave each service (None: removed).
    replicas: BTreeMap<String, Option<u64>>,
    /// Floods the method started, by the node they aim at; `None` once
    /// ended (a flood still running when the run ends stops when dropped).
    floods: Vec<(String, Option<crate::flood::Flood>)>,
    /// Nodes the traffic load sends through (up, not about to be hit).
    traffic_nodes: LiveNodes,
    traffic: Option<traffic::Load>,
    /// The overlay clients the load sends from (`via = "overlay"`).
    overlay_clients: Option<crate::overlay::Clients>,
    requests: Vec<crate::history::Request>,
    requests_skipped: u64,
    register: Option<register::Clients>,
    reg_ops: Vec<crate::history::RegOp>,
    /// How long a node started again took to answer on the traffic's
    /// published port (`port_ready`), for the fault's detail.
    port_wait: Option<String>,
}

pub fn run(sc: Scenario, opts: &Options) -> Result<Journal> {
    let started_at = chrono::Utc::now().to_rfc3339();
    std::fs::create_dir_all(&opts.run_dir)?;
    let rec = Arc::new(Recorder {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
        workload: opts.workload.clone(),
        generations: AtomicU64::new(0),
        published: sc
            .services
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.publish?)))
            .collect(),
        networks: sc
            .services
            .iter()
            .filter(|s| !s.networks.is_empty())
            .map(|s| (s.name.clone(), s.networks.clone()))
            .chain(overlay_network(&sc).map(|n| (crate::requests::CLIENT.to_string(), vec![n])))
            .collect(),
    });
    eprintln!(
        "shoal-chaos: scenario {} with seed {} (replay with --seed {})",
        sc.name, opts.seed, opts.seed
    );
    let cluster = if sc.cluster.hosts.is_empty() {
        eprintln!(
            "shoal-chaos: starting {} managers and {} workers under {}",
            sc.cluster.managers,
            sc.cluster.workers,
            opts.run_dir.display()
        );
        Cluster::start_local(&sc.cluster, &opts.shoal, &opts.run_dir)?
    } else {
        Cluster::attach(&sc.cluster.hosts, &opts.run_dir)?
    };
    let live: LiveManagers = Arc::new(Mutex::new(cluster.live_managers()));
    let ctx = ProbeCtx {
        rec: rec.clone(),
        live: live.clone(),
        node_count: cluster.nodes.len(),
        writes: Arc::new(AtomicU64::new(0)),
    };
    let mut r = Run {
        seed: opts.seed,
        rng: StdRng::seed_from_u64(opts.seed),
        cluster,
        rec,
        ctx,
        live,
        faults: Vec::new(),
        probes: Arc::new(Mutex::new(Vec::new())),
        observations: Arc::new(Mutex::new(Vec::new())),
        errors: Vec::new(),
        bindings: BTreeMap::new(),
        replicas: BTreeMap::new(),
        floods: Vec::new(),
        traffic_nodes: Arc::new(Mutex::new(Vec::new())),
        traffic: None,
        overlay_clients: None,
        requests: Vec::new(),
        requests_skipped: 0,
        register: None,
        reg_ops: Vec::new(),
        port_wait: None,
        sc,
    };
    r.refresh_live();
    r.execute(started_at)
}

impl Run {
    fn execute(&mut self, started_at: String) -> Result<Journal> {
        let stop_observing = Arc::new(AtomicBool::new(false));
        let observer = {
            let obs = Observer {
                managers: self
                    .cluster
                    .nodes
                    .iter()
                    .filter(|n| n.info.manager)
                    .map(|n| (n.info.name.clone(), n.socket.clone()))
                    .collect(),
                nodes: self.cluster.infos(),
                workload: self.rec.workload.clone(),
            };
            let (rec, out, stop, every) = (
                self.rec.clone(),
                self.observations.clone(),
                stop_observing.clone(),
                self.sc.observe_every,
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let o = obs.observe(&rec);
                    if let Ok(mut v) = out.lock() {
                        v.push(o);
                    }
                    if let Some(rest) = every.checked_sub(began.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })
        };

        for n in self.sc.networks.clone() {
            self.create_network(&n);
        }
        for s in self.sc.services.clone() {
            self.method_write("setup", "create", &s.name, Some(s.replicas));
        }
        if let Some(network) = overlay_network(&self.sc) {
            // One client task per node (the scheduler spreads them).
            let n = self.cluster.nodes.len() as u64;
            self.method_write("setup", "create", crate::requests::CLIENT, Some(n));
            if let Some(t) = &self.sc.traffic {
                self.overlay_clients = Some(crate::overlay::Clients::start(
                    self.cluster.infos(),
                    self.traffic_nodes.clone(),
                    t.service.clone(),
                    self.rec.start,
                ));
                eprintln!(
                    "shoal-chaos: overlay clients of {} on {network}: {n} tasks",
                    t.service
                );
            }
        }
        if self.sc.register.is_some() {
            for name in [register::SERVICE, register::BARRIER] {
                self.method_write("setup", "create", name, Some(0));
            }
        }
        let held = self.hypothesis("before", self.sc.settle);
        let (method_start, method_end) = if held {
            self.method()
        } else {
            self.errors.push(
                "the steady state did not hold before the method: nothing was injected".into(),
            );
            (self.rec.now(), self.rec.now())
        };
        for step in self.sc.rollbacks.clone() {
            self.act(&step, "rollback");
        }
        self.settle();
        if let Some(load) = self.traffic.take() {
            let timeout = self
                .sc
                .traffic
                .as_ref()
                .map_or(Duration::ZERO, |t| t.timeout);
            (self.requests, self.requests_skipped) = load.stop(timeout);
            let failed = self.requests.iter().filter(|r| !r.ok).count();
            eprintln!(
                "shoal-chaos: traffic: {} requests, {failed} failed, {} skipped",
                self.requests.len(),
                self.requests_skipped
            );
        }
        self.overlay_clients = None;
        if let Some(clients) = self.register.take() {
            self.reg_ops = clients.stop();
            eprintln!("shoal-chaos: register: {} operations", self.reg_ops.len());
        }
        let final_state = self.final_state();
        std::thread::sleep(Duration::from_millis(300));
        stop_observing.store(true, Ordering::Relaxed);
        let _ = observer.join();
        let ops = self.rec.ops.lock().map(|o| o.clone()).unwrap_or_default();
        let probes = self.probes.lock().map(|p| p.clone()).unwrap_or_default();
        let observations = self
            .observations
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default();
        Ok(Journal {
            scenario: self.sc.clone(),
            seed: self.seed,
            started_at,
            nodes: self.cluster.infos(),
            method_start,
            method_end,
            faults: self.faults.clone(),
            ops,
            probes,
            observations,
            final_state,
            end: self.rec.now(),
            requests: std::mem::take(&mut self.requests),
            requests_skipped: self.requests_skipped,
            register: std::mem::take(&mut self.reg_ops),
            errors: self.errors.clone(),
        })
    }

    fn refresh_live(&self) {
        if let Ok(mut l) = self.live.lock() {
            *l = self.cluster.live_managers();
        }
        if let Ok(mut l) = self.traffic_nodes.lock() {
            *l = self
                .cluster
                .nodes
                .iter()
                .filter(|n| n.liveness == Liveness::Up)
                .filter_map(|n| {
                    let ip = n.info.addr.parse::<std::net::SocketAddr>().ok()?.ip();
                    Some((n.info.name.clone(), ip))
                })
                .collect();
        }
    }

    /// Takes a node out of the traffic load before a fault stops it
    /// answering (it comes back with the next `refresh_live` that finds it up).
    fn spare(&self, node: &str) {
        if let Ok(mut l) = self.traffic_nodes.lock() {
            l.retain(|(n, _)| n != node);
        }
        if let Some(c) = &self.overlay_clients {
            crate::overlay::Clients::spare(&c.admitted, node);
        }
        // Probes and clients too: a restart takes its time.
        if let Ok(mut l) = self.live.lock() {
            l.retain(|(n, _)| n != node);
        }
    }

    fn record_probe(
        &self,
        phase: &str,
        probe: &crate::scenario::ProbeSpec,
        ok: bool,
        detail: String,
    ) {
        let counts = phase != "during" || probe.during;
        eprintln!(
            "shoal-chaos: [{phase}] {} {}: {detail}",
            if ok { "held" } else { "FAILED" },
            probe::describe(&probe.probe)
        );
        if let Ok(mut p) = self.probes.lock() {
            p.push(ProbeResult {
                phase: phase.into(),
                at: self.rec.now(),
                probe: probe::describe(&probe.probe),
                ok,
                detail,
                counts,
            });
        }
    }

    /// Polls every probe until each has held once, or `bound` passes;
    /// records how each ended. Whether all held.
    fn hypothesis(&self, phase: &str, bound: Duration) -> bool {
        let start = Instant::now();
        let mut pending: Vec<usize> = (0..self.sc.hypothesis.len()).collect();
        let mut last: BTreeMap<usize, String> = BTreeMap::new();
        while !pending.is_empty() {
            pending.retain(|&i| {
                let p = &self.sc.hypothesis[i];
                let (ok, detail) = self.ctx.check(&p.probe);
                if ok {
                    self.record_probe(phase, p, true, detail);
                } else {
                    last.insert(i, detail);
                }
                !ok
            });
            if pending.is_empty() || start.elapsed() > bound {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for i in &pending {
            let detail = last.remove(i).unwrap_or_default();
            self.record_probe(
                phase,
                &self.sc.hypothesis[*i],
                false,
                format!("still failing after {bound:?}: {detail}"),
            );
        }
        pending.is_empty()
    }

    fn method(&mut self) -> (u64, u64) {
        let method_start = self.rec.now();
        let origin = Instant::now();
        eprintln!(
            "shoal-chaos: method starts ({} steps)",
            self.sc.method.len()
        );
        if let Some(t) = &self.sc.traffic {
            let protocols = t
                .protocols
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            match (&t.via, &self.overlay_clients) {
                (Via::Published, _) => {
                    if let Some(port) = self.rec.published.get(&t.service).copied() {
                        eprintln!(
                            "shoal-chaos: traffic: {} requests a second ({protocols}) to port {port} through every live node",
                            t.rate,
                        );
                        let route = traffic::Route::Published {
                            port,
                            nodes: self.traffic_nodes.clone(),
                        };
                        self.traffic = Some(traffic::Load::start(t, route, self.rec.clone()));
                    }
                }
                (Via::Overlay { network }, Some(clients)) => {
                    // Every node's client first (or as many as answer within the bound).
                    let want = self.cluster.nodes.len();
                    let began = Instant::now();
                    let count = || clients.admitted.lock().map_or(0, |a| a.len());
                    while count() < want && began.elapsed() < CLIENTS_READY {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    eprintln!(
                        "shoal-chaos: traffic: {} requests a second ({protocols}) to {} by name on {network}, from {} client tasks in turn",
                        t.rate,
                        t.service,
                        count()
                    );
                    let route = traffic::Route::Overlay {
                        service: t.service.clone(),
                        clients: clients.admitted.clone(),
                    };
                    self.traffic = Some(traffic::Load::start(t, route, self.rec.clone()));
                }
                (Via::Overlay { .. }, None) => {}
            }
        }
        if let Some(r) = &self.sc.register {
            self.register = Some(register::Clients::start(
                r,
                self.rec.clone(),
                self.live.clone(),
                self.seed ^ 0x4e6,
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let load = self.sc.load.clone().map(|l| {
            let (rec, live, stop, seed) = (
                self.rec.clone(),
                self.live.clone(),
                stop.clone(),
                self.seed ^ 0x5eed,
            );
            std::thread::spawn(move || {
                workload::run_load(rec, live, l.rate, l.services, seed, stop)
            })
        });
        let during = {
            let (ctx, probes, stop, sc_probes, rec) = (
                self.ctx.clone(),
                self.probes.clone(),
                stop.clone(),
                self.sc.hypothesis.clone(),
                self.rec.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for p in &sc_probes {
                        let (ok, detail) = ctx.check(&p.probe);
                        if let Ok(mut v) = probes.lock() {
                            v.push(ProbeResult {
                                phase: "during".into(),
                                at: rec.now(),
                                probe: probe::describe(&p.probe),
                                ok,
                                detail,
                                counts: p.during,
                            });
                        }
                    }
                    for _ in 0..20 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        };

        let mut queue: Vec<Scheduled> = Vec::new();
        let mut seq = 0;
        for (i, s) in self.sc.method.iter().enumerate() {
            for k in 0..s.repeat {
                queue.push(Scheduled {
                    at: s.at + s.every * k,
                    seq,
                    what: Pending::Step(i),
                });
                seq += 1;
            }
        }
        while let Some(pos) = (0..queue.len()).min_by_key(|&i| (queue[i].at, queue[i].seq)) {
            let item = queue.remove(pos);
            if let Some(wait) = item.at.checked_sub(origin.elapsed()) {
                std::thread::sleep(wait);
            }
            match item.what {
                Pending::Step(i) => {
                    let step = self.sc.method[i].clone();
                    if let Some((fault, undo)) = self.act(&step, "method") {
                        if let Some(d) = step.duration {
                            // From when it ran, which may be later than planned.
                            queue.push(Scheduled {
                                at: origin.elapsed() + d,
                                seq,
                                what: Pending::Undo {
                                    undo,
                                    fault,
                                    line: step.line,
                                },
                            });
                        }
                    }
                }
                Pending::Undo { undo, fault, line } => self.undo(undo, fault, line),
            }
            seq += 1;
        }
        let method_end = self.rec.now();
        stop.store(true, Ordering::Relaxed);
        if let Some(l) = load {
            let _ = l.join();
        }
        let _ = during.join();
        eprintln!("shoal-chaos: method done");
        (method_start, method_end)
    }

    /// Runs one step; for a fault, returns its index and how to undo it.
    fn act(&mut self, step: &Step, phase: &str) -> Option<(usize, Undo)> {
        if let Some(service) = workload_service(&step.action) {
            self.workload_step(&step.action, service);
            return None;
        }
        let at = self.rec.now();
        let result = self.inject(&step.action);
        self.refresh_live();
        let done = self.rec.now();
        let (ok, nodes, detail, healed, undo) = match result {
            Ok(d) => (true, d.nodes, d.detail, d.healed_in_ms, d.undo),
            Err(e) => {
                let msg = format!(
                    "{phase} step at line {} ({}) failed: {e:#}",
                    step.line,
                    step.action.verb()
                );
                self.errors.push(msg.clone());
                (false, Vec::new(), msg, None, None)
            }
        };
        if let (Some(name), Some(node)) = (&step.bind, nodes.first()) {
            self.bindings.insert(name.clone(), node.clone());
        }
        eprintln!(
            "shoal-chaos: {:>7.2}s {} {} {detail}",
            at as f64 / 1000.0,
            step.action.verb(),
            nodes.join(",")
        );
        self.faults.push(Fault {
            at,
            done,
            action: step.action.verb().into(),
            nodes,
            detail,
            line: step.line,
            ok,
            undoes: None,
            healed_in_ms: healed,
        });
        let idx = self.faults.len() - 1;
        undo.map(|u| (idx, u))
    }

    fn undo(&mut self, undo: Undo, fault: usize, line: usize) {
        let at = self.rec.now();
        let (verb, result) = match &undo {
            Undo::Start(n) => ("start", self.start_node(n)),
            Undo::Resume(n) => (
                "resume",
                self.cluster
                    .by_name(n)
                    .and_then(|x| x.resume())
                    .map(|_| vec![n.clone()]),
            ),
            Undo::Heal(ns) => ("heal", self.heal(ns).map(|_| ns.clone())),
            Undo::EndFlood(i) => ("end-flood", Ok(self.end_flood(*i))),
            Undo::Unfill(n) => (
                "unfill",
                self.data_dir(n)
                    .and_then(|d| crate::cluster::unfill(&d))
                    .map(|()| vec![n.clone()]),
            ),
            Undo::FastDisk(n) => (
                "fast-disk",
                self.flush_delay(n, 0).map(|()| vec![n.clone()]),
            ),
            Undo::ClockBack(n) => (
                "clock-back",
                self.clock_offset(n, 0).map(|()| vec![n.clone()]),
            ),
        };
        self.refresh_live();
        let (ok, nodes, detail) = match result {
            Ok(nodes) => (
                true,
                nodes,
                format!(
                    "undoes the {} at line {line}{}",
                    self.faults[fault].action,
                    self.port_wait.take().unwrap_or_default()
                ),
            ),
            Err(e) => {
                let msg = format!(
                    "undoing the {} at line {line} failed: {e:#}",
                    self.faults[fault].action
                );
                self.errors.push(msg.clone());
                (false, Vec::new(), msg)
            }
        };
        eprintln!(
            "shoal-chaos: {:>7.2}s {verb} {} {detail}",
            at as f64 / 1000.0,
            nodes.join(",")
        );
        self.faults.push(Fault {
            at,
            done: self.rec.now(),
            action: verb.into(),
            nodes,
            detail,
            line,
            ok,
            undoes: Some(fault),
            healed_in_ms: None,
        });
    }

    /// Ends a flood and says what it did.
    fn end_flood(&mut self, i: usize) -> Vec<String> {
        let Some((node, flood)) = self.floods.get_mut(i) else {
            return Vec::new();
        };
        if let Some(f) = flood.take() {
            let t = f.stop();
            eprintln!(
                "shoal-chaos: flood on {node} ended: {} datagrams sent, {} TCP connections held at the end, {} closed or refused by the node",
                t.datagrams, t.held, t.closed
            );
        }
        vec![node.clone()]
    }

    fn data_dir(&mut self, name: &str) -> Result<PathBuf> {
        self.cluster
            .by_name(name)?
            .data_dir
            .clone()
            .filter(|_| self.sc.cluster.disk.is_some())
            .ok_or_else(|| anyhow!("{name} has no filesystem of its own to fill ([cluster] disk)"))
    }

    /// Sets the node's added Raft log flush delay (`POST /debug/chaos/disk`).
    fn flush_delay(&mut self, name: &str, ms: u64) -> Result<()> {
        self.hook(name, "/debug/chaos/disk", json!({ "FlushDelayMs": ms }))
    }

    /// Moves the node's wall clock (`POST /debug/chaos/clock`).
    fn clock_offset(&mut self, name: &str, ms: i64) -> Result<()> {
        self.hook(name, "/debug/chaos/clock", json!({ "OffsetMs": ms }))
    }

    /// Sets one of the node's fault hooks.
    fn hook(&mut self, name: &str, path: &str, body: serde_json::Value) -> Result<()> {
        let socket = self.cluster.by_name(name)?.socket.clone();
        api::post(&socket, path, &body, Duration::from_secs(5))?;
        Ok(())
    }

    fn start_node(&mut self, name: &str) -> Result<Vec<String>> {
        let own = self.cluster.owned();
        self.cluster.by_name(name)?.start(own)?;
        self.port_ready(name);
        Ok(vec![name.to_string()])
    }

    /// With a traffic load: waits (at most `PORT_READY`) until the started
    /// node's published port answers an HTTP request, as a load balancer's
    /// health check would before it sends the node traffic again; how long
    /// it took goes into the next fault's detail. A daemon answers its
    /// control API before it has the endpoint table, and until then it
    /// refuses connections to published ports.
    fn port_ready(&mut self, name: &str) {
        const PORT_READY: Duration = Duration::from_secs(15);
        let Some(port) = self
            .sc
            .traffic
            .as_ref()
            .and_then(|t| self.rec.published.get(&t.service).copied())
        else {
            return;
        };
        let Ok(ip) = self
            .addr(name)
            .and_then(|a| Ok(a.parse::<std::net::SocketAddr>()?.ip()))
        else {
            return;
        };
        let began = Instant::now();
        while began.elapsed() < PORT_READY {
            let to = std::net::SocketAddr::new(ip, port);
            if crate::requests::request(crate::scenario::Proto::Tcp, to, Duration::from_secs(1))
                .is_ok()
            {
                self.port_wait = Some(format!(
                    "; its published port answered {:.2}s after it was started",
                    began.elapsed().as_secs_f64()
                ));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.port_wait = Some(format!(
            "; its published port did not answer within {PORT_READY:?} of its start"
        ));
    }

    /// Picks the node a target means right now.
    fn resolve(&mut self, t: &Target, want: Liveness) -> Result<String> {
        self.resolve_except(t, want, &[])
    }

    /// Like `resolve`, but random picks avoid `taken` (nodes already chosen
    /// for the same partition or link fault).
    fn resolve_except(&mut self, t: &Target, want: Liveness, taken: &[String]) -> Result<String> {
        let pick = |rng: &mut StdRng, names: Vec<String>, what: &str| -> Result<String> {
            pick(rng, names, taken).ok_or_else(|| anyhow!("no {what} to pick from"))
        };
        let with = |c: &Cluster, manager: Option<bool>| -> Vec<String> {
            c.nodes
                .iter()
                .filter(|n| n.liveness == want && manager.is_none_or(|m| n.info.manager == m))
                .map(|n| n.info.name.clone())
                .collect()
        };
        let named = |this: &mut Self, n: &str| -> Result<String> {
            let liveness = this.cluster.by_name(n)?.liveness;
            if liveness != want {
                bail!("{n} is {liveness:?}, and this step needs it {want:?}");
            }
            Ok(n.to_string())
        };
        match t {
            Target::Node(n) => named(self, n),
            Target::Bound(b) => {
                let n = self
                    .bindings
                    .get(b)
                    .cloned()
                    .ok_or_else(|| anyhow!("{b:?} is not bound yet (its step has not run)"))?;
                named(self, &n)
            }
            Target::Leader => self.leader_name(),
            Target::RandomManager => {
                pick(&mut self.rng, with(&self.cluster, Some(true)), "manager")
            }
            Target::RandomWorker => pick(&mut self.rng, with(&self.cluster, Some(false)), "worker"),
            Target::RandomNode => pick(&mut self.rng, with(&self.cluster, None), "node"),
            Target::RandomFollower => {
                let leader = self.leader_name()?;
                let followers = with(&self.cluster, Some(true))
                    .into_iter()
                    .filter(|n| *n != leader)
                    .collect();
                pick(&mut self.rng, followers, "follower")
            }
            Target::Rest => bail!("\"rest\" names no single node"),
        }
    }

    fn leader_name(&self) -> Result<String> {
        let start = Instant::now();
        loop {
            if let Some((name, _)) = self.ctx.leader() {
                return Ok(name);
            }
            if start.elapsed() > Duration::from_secs(15) {
                bail!("no leader for 15s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resolves groups of targets; "rest" is every node in no other group.
    fn resolve_groups(&mut self, groups: &[Vec<Target>]) -> Result<Vec<Vec<String>>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for g in groups {
            let mut names = Vec::new();
            for t in g.iter().filter(|t| **t != Target::Rest) {
                let taken: Vec<String> =
                    out.iter().flatten().chain(names.iter()).cloned().collect();
                names.push(self.resolve_except(t, Liveness::Up, &taken)?);
            }
            out.push(names);
        }
        let named: Vec<String> = out.iter().flatten().cloned().collect();
        for (g, names) in groups.iter().zip(out.iter_mut()) {
            if g.contains(&Target::Rest) {
                // Only nodes that are up can take a rule.
                names.extend(
                    self.cluster
                        .nodes
                        .iter()
                        .filter(|n| n.liveness == Liveness::Up)
                        .map(|n| n.info.name.clone())
                        .filter(|n| !named.contains(n)),
                );
            }
        }
        Ok(out)
    }

    fn addr(&mut self, name: &str) -> Result<String> {
        Ok(self.cluster.by_name(name)?.info.addr.clone())
    }

    fn add_rule(
        &mut self,
        node: &str,
        peers: Vec<String>,
        direction: Direction,
        delay: Option<u64>,
    ) -> Result<()> {
        let socket = self.cluster.by_name(node)?.socket.clone();
        let rule = json!({
            "Peers": peers,
            "Direction": direction.as_str(),
            "Action": if delay.is_some() { "delay" } else { "drop" },
            "DelayMs": delay.unwrap_or(0),
        });
        api::post(
            &socket,
            "/debug/chaos/network",
            &rule,
            Duration::from_secs(5),
        )
        .with_context(|| format!("network rule on {node}"))?;
        Ok(())
    }

    /// Adds each (node, peers) rule; if one fails, takes back those added,
    /// so a fault is all there or not at all.
    fn add_rules(
        &mut self,
        rules: Vec<(String, Vec<String>)>,
        direction: Direction,
        delay: Option<u64>,
    ) -> Result<()> {
        let mut done = Vec::new();
        for (node, peers) in rules {
            let result = peers
                .iter()
                .map(|p| self.addr(p))
                .collect::<Result<Vec<_>>>()
                .and_then(|addrs| self.add_rule(&node, addrs, direction, delay));
            if let Err(e) = result {
                let _ = self.heal(&done);
                return Err(e);
            }
            done.push(node);
        }
        Ok(())
    }

    fn heal(&mut self, nodes: &[String]) -> Result<()> {
        let mut failed = Vec::new();
        for n in nodes {
            let node = self.cluster.by_name(n)?;
            match node.liveness {
                // A stopped daemon forgets its rules; it starts without any.
                Liveness::Down => continue,
                Liveness::Paused => {
                    failed.push(format!(
                        "{n}: paused, so its rules stay until it is resumed and healed"
                    ));
                    continue;
                }
                Liveness::Up => {}
            }
            if let Err(e) = api::request(
                &node.socket,
                "DELETE",
                "/debug/chaos/network",
                None,
                Duration::from_secs(5),
            ) {
                failed.push(format!("{n}: {e}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("could not heal {}", failed.join("; "))
        }
    }

    fn inject(&mut self, action: &Action) -> Result<Done> {
        match action {
            Action::Kill(t) => {
                let n = self.resolve(t, Liveness::Up)?;
                self.spare(&n);
                self.cluster.by_name(&n)?.kill9()?;
                Ok(Done {
                    undo: Some(Undo::Start(n.clone())),
                    ..Done::on(vec![n], "SIGKILL")
                })
            }
            Action::Stop(t) => {
                let n = self.resolve(t, Liveness::Up)?;
                self.spare(&n);
                self.cluster.by_name(&n)?.stop()?;
                Ok(Done {
                    undo: Some(Undo::Start(n.clone())),
                    ..Done::on(vec![n], "SIGTERM, exited")
                })
            }
            Action::Start(t) => {
                let n = self.resolve(t, Liveness::Down)?;
                self.start_node(&n)?;
                let wait = self.port_wait.take().unwrap_or_default();
                Ok(Done::on(vec![n], format!("started, answering{wait}")))
            }
            Action::Restart(t) | Action::Upgrade(t) => {
                let upgrade = matches!(action, Action::Upgrade(_));
                let n = self.resolve(t, Liveness::Up)?;
                if upgrade && !self.cluster.by_name(&n)?.is_previous() {
                    bail!("{n} runs as the newest build already: nothing to upgrade");
                }
                self.spare(&n);
                let began = Instant::now();
                self.cluster.by_name(&n)?.stop()?;
                if upgrade {
                    self.cluster.by_name(&n)?.upgrade()?;
                }
                self.start_node(&n)?;
                let how = match upgrade {
                    true => "SIGTERM, started as the next build",
                    false => "SIGTERM and start",
                };
                Ok(Done::on(
                    vec![n],
                    format!(
                        "{how}: answering again after {:.2}s{}",
                        began.elapsed().as_secs_f64(),
                        self.port_wait.take().unwrap_or_default()
                    ),
                ))
            }
            Action::Pause(t) => {
                let n = self.resolve(t, Liveness::Up)?;
                self.spare(&n);
                self.cluster.by_name(&n)?.pause()?;
                Ok(Done {
                    undo: Some(Undo::Resume(n.clone())),
                    ..Done::on(vec![n], "SIGSTOP")
                })
            }
            Action::Resume(t) => {
                let n = self.resolve(t, Liveness::Paused)?;
                self.cluster.by_name(&n)?.resume()?;
                Ok(Done::on(vec![n], "SIGCONT"))
            }
            Action::KillActor {
                target,
                actor,
                stop,
            } => {
                let n = self.resolve(target, Liveness::Up)?;
                let socket = self.cluster.by_name(&n)?.socket.clone();
                let actor = match actor.as_str() {
                    "random-task" | "random-service" => {
                        let prefix = if actor == "random-task" {
                            "task/"
                        } else {
                            "service/"
                        };
                        let list = api::get(&socket, "/debug/actors", Duration::from_secs(5))?;
                        let names: Vec<String> = list["Actors"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a["Name"].as_str())
                            .filter(|a| a.starts_with(prefix))
                            // The harness's own probe services run nothing.
                            .filter(|a| !a.starts_with("service/chaos-"))
                            .map(str::to_string)
                            .collect();
                        pick(&mut self.rng, names, &[])
                            .ok_or_else(|| anyhow!("{n} runs no {prefix}* actor"))?
                    }
                    other => other.to_string(),
                };
                let mode = if *stop { "stop" } else { "kill" };
                let v = api::post(
                    &socket,
                    "/debug/chaos/kill",
                    &json!({"Actor": actor, "Mode": mode}),
                    Duration::from_secs(15),
                )?;
                let healed = v["HealedInNanos"].as_f64().map(|ns| ns / 1e6);
                Ok(Done {
                    healed_in_ms: healed,
                    ..Done::on(
                        vec![n],
                        match (stop, v["Replaced"] == json!(false)) {
                            (false, _) => format!("actor {actor}"),
                            (true, false) => format!("actor {actor} (stopped)"),
                            (true, true) => format!("actor {actor} (stopped; not replaced)"),
                        },
                    )
                })
            }
            Action::Partition(groups) => {
                let groups = self.resolve_groups(groups)?;
                let mut rules = Vec::new();
                for (i, g) in groups.iter().enumerate() {
                    let others: Vec<String> = groups
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .flat_map(|(_, o)| o.clone())
                        .collect();
                    for n in g {
                        rules.push((n.clone(), others.clone()));
                    }
                }
                self.add_rules(rules, Direction::Both, None)?;
                let all: Vec<String> = groups.iter().flatten().cloned().collect();
                let detail = groups
                    .iter()
                    .map(|g| format!("[{}]", g.join(" ")))
                    .collect::<Vec<_>>()
                    .join(" | ");
                Ok(Done {
                    undo: Some(Undo::Heal(all.clone())),
                    ..Done::on(all, detail)
                })
            }
            Action::Heal => {
                let all: Vec<String> = self
                    .cluster
                    .nodes
                    .iter()
                    .map(|n| n.info.name.clone())
                    .collect();
                self.heal(&all)?;
                Ok(Done::on(all, "network faults cleared"))
            }
            Action::Delay {
                from,
                to,
                ms,
                direction,
            } => self.link_fault(from, to, *direction, Some(*ms)),
            Action::Drop {
                from,
                to,
                direction,
            } => self.link_fault(from, to, *direction, None),
            Action::Flood {
                target,
                service,
                connections,
            } => {
                let n = self.resolve(target, Liveness::Up)?;
                let port = self
                    .rec
                    .published
                    .get(service)
                    .copied()
                    .ok_or_else(|| anyhow::anyhow!("service {service} publishes no port"))?;
                let ip = self
                    .addr(&n)?
                    .parse::<std::net::SocketAddr>()
                    .map_err(|e| anyhow::anyhow!("the node's address: {e}"))?
                    .ip();
                self.floods.push((
                    n.clone(),
                    Some(crate::flood::Flood::start(ip, port, *connections)),
                ));
                Ok(Done {
                    undo: Some(Undo::EndFlood(self.floods.len() - 1)),
                    ..Done::on(
                        vec![n],
                        format!(
                            "{connections} idle TCP connections and new UDP flows on {ip}:{port}"
                        ),
                    )
                })
            }
            Action::Fill(t) => {
                let n = self.resolve(t, Liveness::Up)?;
                let dir = self.data_dir(&n)?;
                let bytes = crate::cluster::fill(&dir)?;
                Ok(Done {
                    undo: Some(Undo::Unfill(n.clone())),
                    ..Done::on(
                        vec![n],
                        format!("its data filesystem filled ({} MiB written)", bytes >> 20),
                    )
                })
            }
            Action::SlowDisk { target, ms } => {
                let n = self.resolve(target, Liveness::Up)?;
                self.flush_delay(&n, *ms)?;
                Ok(Done {
                    undo: Some(Undo::FastDisk(n.clone())),
                    ..Done::on(vec![n], format!("every Raft log flush {ms} ms slower"))
                })
            }
            Action::Clock { target, offset_ms } => {
                let n = self.resolve(target, Liveness::Up)?;
                self.clock_offset(&n, *offset_ms)?;
                Ok(Done {
                    undo: Some(Undo::ClockBack(n.clone())),
                    ..Done::on(
                        vec![n],
                        format!("its wall clock moved {:+} s", *offset_ms as f64 / 1000.0),
                    )
                })
            }
            Action::Create { .. }
            | Action::Scale { .. }
            | Action::Update { .. }
            | Action::Roll { .. }
            | Action::Remove { .. } => {
                bail!("workload steps are writes, not faults")
            }
        }
    }

    fn link_fault(
        &mut self,
        from: &[Target],
        to: &[Target],
        direction: Direction,
        delay: Option<u64>,
    ) -> Result<Done> {
        let groups = self.resolve_groups(&[from.to_vec(), to.to_vec()])?;
        let rules = groups[0]
            .iter()
            .map(|n| (n.clone(), groups[1].clone()))
            .collect();
        self.add_rules(rules, direction, delay)?;
        let what = delay.map_or("drop".to_string(), |ms| format!("delay {ms} ms"));
        let detail = format!(
            "{what} ({}) [{}] -> [{}]",
            direction.as_str(),
            groups[0].join(" "),
            groups[1].join(" ")
        );
        Ok(Done {
            undo: Some(Undo::Heal(groups[0].clone())),
            ..Done::on(groups[0].clone(), detail)
        })
    }

    /// Creates an overlay network through the leader (setup); a failure
    /// is the run's error, and its services will not start.
    fn create_network(&mut self, n: &crate::scenario::NetworkSetup) {
        let mut body = json!({
            "Name": n.name,
            "Driver": "overlay",
            "Options": { "encrypted": n.encrypted.to_string() },
        });
        if let Some(subnet) = &n.subnet {
            body["IPAM"] = json!({ "Config": [{ "Subnet": subnet }] });
        }
        let via = self
            .ctx
            .leader()
            .or_else(|| self.cluster.live_managers().into_iter().next());
        let result = match &via {
            Some((_, socket)) => api::post(socket, "/networks/create", &body, WRITE_TIMEOUT)
                .map_err(|e| e.to_string()),
            None => Err("no manager is up".into()),
        };
        match result {
            Ok(_) => eprintln!(
                "shoal-chaos: setup network {} ({}): created",
                n.name,
                if n.encrypted { "encrypted" } else { "vxlan" }
            ),
            Err(e) => self
                .errors
                .push(format!("setup: network create {}: {e}", n.name)),
        }
    }

    /// A write from the method (or setup) through the leader, if there is one.
    fn method_write(&mut self, client: &str, kind: &str, service: &str, replicas: Option<u64>) {
        let via = self
            .ctx
            .leader()
            .or_else(|| self.cluster.live_managers().into_iter().next());
        let Some((name, socket)) = via else {
            self.errors
                .push(format!("{client} {kind} {service}: no manager is up"));
            return;
        };
        let op = workload::write(
            &self.rec,
            client,
            kind,
            service,
            replicas,
            (&name, &socket),
            WRITE_TIMEOUT,
        );
        eprintln!(
            "shoal-chaos: {:>7.2}s {client} {kind} {service} via {name}: {:?} {}",
            op.sent as f64 / 1000.0,
            op.outcome,
            op.error
        );
        self.replicas.insert(service.to_string(), replicas);
    }

    fn workload_step(&mut self, action: &Action, service: &str) {
        let current = self.replicas.get(service).copied().flatten();
        let (kind, replicas) = match action {
            Action::Create { replicas, .. } => ("create", Some(*replicas)),
            Action::Scale { replicas, .. } => ("scale", Some(*replicas)),
            // A new generation, the same replicas.
            Action::Update { .. } => ("update", Some(current.unwrap_or(1))),
            // The same, and every task is replaced (a rolling update).
            Action::Roll { .. } => ("roll", Some(current.unwrap_or(1))),
            _ => ("remove", None),
        };
        self.method_write("method", kind, service, replicas);
    }

    /// Waits, within `settle` in all, until every probe has held and an
    /// observation taken after the last fault shows the steady state; then
    /// lingers so the checkers see whether it stays.
    fn settle(&mut self) {
        eprintln!(
            "shoal-chaos: waiting up to {:?} for the cluster to heal",
            self.sc.settle
        );
        let deadline = Instant::now() + self.sc.settle;
        let since = self.faults.iter().map(|f| f.done).max().unwrap_or(0);
        if !self.hypothesis("after", self.sc.settle) {
            self.errors
                .push("the steady state did not return after the method".into());
        }
        while Instant::now() < deadline {
            let healed = self
                .observations
                .lock()
                .ok()
                .is_some_and(|o| first_steady(&o, since).is_some());
            if healed {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(LINGER);
    }

    /// A write barrier (through the first live manager, which forwards it),
    /// then the leader's services: everything acknowledged before the
    /// barrier is in the leader's state by then.
    fn final_state(&mut self) -> Option<FinalState> {
        let (ok, detail) = self.ctx.harness_write("barrier", WRITE_TIMEOUT);
        if !ok {
            self.errors
                .push(format!("final write barrier failed: {detail}"));
            return None;
        }
        let (name, socket) = self.ctx.leader()?;
        let at = self.rec.now();
        match api::get(&socket, "/services", Duration::from_secs(5)) {
            Ok(list) => Some(FinalState {
                at,
                via: name,
                services: list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        (
                            s.pointer("/Spec/Name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            value_of(s),
                        )
                    })
                    .collect(),
            }),
            Err(e) => {
                self.errors
                    .push(format!("final read from {name} failed: {e}"));
                None
            }
        }
    }
}

/// The overlay network of the scenario's overlay traffic, if it has one.
fn overlay_network(sc: &Scenario) -> Option<String> {
    match &sc.traffic.as_ref()?.via {
        Via::Overlay { network } => Some(network.clone()),
        Via::Published => None,
    }
}

/// How long the method waits for a client task on every node to answer.
const CLIENTS_READY: Duration = Duration::from_secs(30);

/// One of `candidates` not in `taken`, chosen by `rng` from the sorted
/// list, so a seed picks the same one whatever order they were listed in.
pub fn pick(rng: &mut StdRng, mut candidates: Vec<String>, taken: &[String]) -> Option<String> {
    candidates.retain(|n| !taken.contains(n));
    candidates.sort();
    candidates.dedup();
    if candidates.is_empty() {
        return None;
    }
    Some(candidates.swap_remove(rng.random_range(0..candidates.len())))
}

fn workload_service(a: &Action) -> Option<&str> {
    match a {
        Action::Create { service, .. }
        | Action::Scale { service, .. }
        | Action::Update { service }
        | Action::Roll { service }
        | Action::Remove { service } => Some(service),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_same_seed_picks_the_same_nodes_whatever_their_order() {
        let a = names(&["manager-1", "manager-2", "manager-3", "worker-1"]);
        let mut b = a.clone();
        b.reverse();
        let run = |seed: u64, list: &[String]| -> Vec<String> {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .filter_map(|_| pick(&mut rng, list.to_vec(), &[]))
                .collect()
        };
        assert_eq!(run(42, &a), run(42, &a));
        assert_eq!(run(42, &a), run(42, &b));
        assert_ne!(run(42, &a), run(43, &a), "another seed, other choices");
    }

    #[test]
    fn picks_avoid_taken_nodes_and_say_when_none_is_left() {
        let mut rng = StdRng::seed_from_u64(1);
        let all = names(&["manager-1", "manager-2"]);
        for _ in 0..10 {
            assert_eq!(
                pick(&mut rng, all.clone(), &names(&["manager-1"])).as_deref(),
                Some("manager-2")
            );
        }
        assert_eq!(pick(&mut rng, all.clone(), &all), None);
        assert_eq!(pick(&mut rng, Vec::new(), &[]), None);
    }
}
