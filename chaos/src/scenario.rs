//! Scenario files: TOML read into a checked [`Scenario`]. Every error names
//! the line and column it is about, so a typo costs one look.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A scenario that parsed and passed every check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub cluster: ClusterShape,
    /// Overlay networks created before the services (`[cluster] netns`).
    #[serde(default)]
    pub networks: Vec<NetworkSetup>,
    /// Services created before the steady state is first checked.
    pub services: Vec<ServiceSetup>,
    pub hypothesis: Vec<ProbeSpec>,
    pub load: Option<Load>,
    pub method: Vec<Step>,
    pub rollbacks: Vec<Step>,
    /// How long the cluster gets to return to its steady state after the
    /// method (and, before it, to reach it at all).
    pub settle: Duration,
    pub observe_every: Duration,
    /// A steady request load on a published port while the method runs.
    #[serde(default)]
    pub traffic: Option<Traffic>,
    /// Writes and reads of one register through different managers, for
    /// the linearizability checker.
    #[serde(default)]
    pub register: Option<Register>,
}

/// A steady request load against a service's published port, through
/// every live node, from the start of the method until the cluster has
/// settled; every request's outcome and latency go into the journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    pub service: String,
    /// Requests a second in all, spread over the protocols and live nodes in turn.
    pub rate: f64,
    pub protocols: Vec<Proto>,
    /// A request not answered within this is failed.
    pub timeout: Duration,
    /// Failed requests the run tolerates (0 for zero-downtime scenarios).
    pub max_failed: u64,
    /// Bounds on the 99th latency percentile of the answered requests,
    /// while faults last (until the cluster is steady again after the last
    /// one is undone) and from then on.
    pub p99_during: Option<Duration>,
    pub p99_after: Option<Duration>,
    /// Where the requests come from and go to.
    #[serde(default)]
    pub via: Via,
}

/// How the traffic load reaches the service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Via {
    /// From the harness to the service's published port on every live node.
    #[default]
    Published,
    /// From inside client tasks on this overlay network (one per node,
    /// the service `chaos-overlay-client`) to the service's NAME, resolved
    /// by the node's embedded DNS to its VIP, for every request.
    Overlay { network: String },
}

/// An overlay network the harness creates before the services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkSetup {
    pub name: String,
    /// The IPAM subnet ("10.0.9.0/24"); the leader's IPAM picks one if None.
    pub subnet: Option<String>,
    /// The encrypted data plane (the default) or the kernel VXLAN fast path.
    pub encrypted: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Clients that write a value to one register (the label of the service
/// `chaos-register`) through one manager and read it back through others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Register {
    /// Operations a second per client (one at a time each).
    pub rate: f64,
    pub clients: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterShape {
    pub managers: usize,
    pub workers: usize,
    /// Control sockets of an existing cluster; empty means "start my own".
    pub hosts: Vec<String>,
    /// `swarm update --rebalance on` once the cluster is formed (own clusters only).
    pub rebalance: bool,
    /// `swarm init --snapshot-interval N` (own clusters only): Raft
    /// entries between snapshots, so that a manager down for a while
    /// comes back behind the others' compacted logs.
    pub snapshot_interval: Option<u64>,
    /// Each daemon's data directory on a filesystem of its own of this
    /// many bytes (a size-limited tmpfs), so that `fill` can fill it.
    #[serde(default)]
    pub disk: Option<u64>,
    /// Each daemon in a network namespace of its own, joined by a bridge
    /// the harness makes (`crate::netns`), as overlay networks need.
    #[serde(default)]
    pub netns: bool,
    /// Every daemon starts with `--max-format N`, the stand-in for the
    /// previous build (docs/upgrades.md); `upgrade` restarts one without it.
    #[serde(default)]
    pub max_format: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceSetup {
    pub name: String,
    pub replicas: u64,
    /// Published through the routing mesh on this port (the workload
    /// answers HTTP on 80 in its task's own network).
    pub publish: Option<u16>,
    /// Overlay networks its tasks join (listed under `[[network]]`).
    #[serde(default)]
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeSpec {
    pub probe: Probe,
    /// Also checked while the method runs, and must hold there too.
    pub during: bool,
    pub line: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Probe {
    /// Between `replicas - tolerance` and `replicas` tasks of the service
    /// are running (more than asked for is not steady either).
    Running { service: String, tolerance: u64 },
    /// Every manager that answers names the same leader, and one claims it.
    OneLeader,
    /// A write is acknowledged within the bound.
    Write { within: Duration },
    /// Every node is Ready.
    NodesReady,
    /// Every live manager answers an HTTP request on the service's
    /// published port, through the routing mesh.
    Mesh { service: String },
    /// The service's running tasks differ by at most one between any two
    /// ready, active nodes (what the rebalancer restores).
    Spread { service: String },
    /// Every live manager's control API answers `/_ping` within the bound.
    Api { within: Duration },
    /// The service's last rollout is over: completed, rolled back, or none
    /// (not updating, not paused).
    Rolled { service: String },
}

/// Background writes while the method runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Load {
    /// Writes per second (one client, one write at a time).
    pub rate: f64,
    /// How many services the writes spread over.
    pub services: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// Offset from the start of the method.
    pub at: Duration,
    pub action: Action,
    /// For a fault: undo it (start, resume, heal) this long after.
    pub duration: Option<Duration>,
    pub repeat: u32,
    pub every: Duration,
    /// A name later steps can use as a target for the node this step picked.
    pub bind: Option<String>,
    pub line: usize,
}

/// The faults that last until undone (by `duration`, a later step or a rollback).
pub const LASTING: &[&str] = &[
    "kill",
    "stop",
    "pause",
    "partition",
    "delay",
    "drop",
    "flood",
    "fill",
    "slow-disk",
    "clock",
];

/// Who an action is aimed at, resolved when the step runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Node(String),
    Leader,
    RandomManager,
    RandomFollower,
    RandomWorker,
    RandomNode,
    /// A node an earlier step bound with `bind`.
    Bound(String),
    /// In a partition or a delay: every node not named elsewhere.
    Rest,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Action {
    /// kill -9 the daemon (its tasks die with it).
    Kill(Target),
    /// SIGTERM, then wait for the daemon to exit.
    Stop(Target),
    /// Start a stopped or killed node again on its data.
    Start(Target),
    /// Stop (SIGTERM) and start again, waiting until it answers.
    Restart(Target),
    /// A restart as the next build: stop (SIGTERM) and start again on the
    /// same data dir without `[cluster] max_format`'s `--max-format`.
    Upgrade(Target),
    Pause(Target),
    Resume(Target),
    KillActor {
        target: Target,
        actor: String,
        /// Stop it normally instead of aborting it.
        stop: bool,
    },
    Partition(Vec<Vec<Target>>),
    Heal,
    Delay {
        from: Vec<Target>,
        to: Vec<Target>,
        ms: u64,
        direction: Direction,
    },
    Drop {
        from: Vec<Target>,
        to: Vec<Target>,
        direction: Direction,
    },
    Create {
        service: String,
        replicas: u64,
    },
    Scale {
        service: String,
        replicas: u64,
    },
    /// Changes the service's spec (a generation label) without touching replicas.
    Update {
        service: String,
    },
    /// Like `update`, and the generation also goes into the tasks'
    /// environment, so every task is replaced by a rolling update.
    Roll {
        service: String,
    },
    Remove {
        service: String,
    },
    /// Fill the node's data filesystem (`[cluster] disk`) until a write
    /// fails for want of space; undone by freeing it again.
    Fill(Target),
    /// Make the node's Raft log flushes take `ms` longer each (a daemon
    /// seam behind `--enable-chaos`); undone by setting it back to 0.
    SlowDisk {
        target: Target,
        ms: u64,
    },
    /// Move the node's wall clock by `offset_ms` (a daemon seam behind
    /// `--enable-chaos`); undone by putting it back.
    Clock {
        target: Target,
        offset_ms: i64,
    },
    /// A hostile client of the service's published port on the target
    /// node, until `duration` ends it: `connections` idle TCP connections
    /// held, and UDP datagrams each from a new source port.
    Flood {
        target: Target,
        service: String,
        connections: usize,
    },
}

impl Action {
    /// The word the scenario file uses for this action.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Kill(_) => "kill",
            Action::Stop(_) => "stop",
            Action::Start(_) => "start",
            Action::Restart(_) => "restart",
            Action::Upgrade(_) => "upgrade",
            Action::Pause(_) => "pause",
            Action::Resume(_) => "resume",
            Action::KillActor { .. } => "kill-actor",
            Action::Partition(_) => "partition",
            Action::Heal => "heal",
            Action::Delay { .. } => "delay",
            Action::Drop { .. } => "drop",
            Action::Create { .. } => "create",
            Action::Scale { .. } => "scale",
            Action::Update { .. } => "update",
            Action::Roll { .. } => "roll",
            Action::Remove { .. } => "remove",
            Action::Flood { .. } => "flood",
            Action::Fill(_) => "fill",
            Action::SlowDisk { .. } => "slow-disk",
            Action::Clock { .. } => "clock",
        }
    }

    /// The targets the action names.
    pub fn targets(&self) -> Vec<&Target> {
        match self {
            Action::Kill(t)
            | Action::Stop(t)
            | Action::Start(t)
            | Action::Restart(t)
            | Action::Upgrade(t)
            | Action::Pause(t)
            | Action::Resume(t)
            | Action::Fill(t)
            | Action::SlowDisk { target: t, .. }
            | Action::Clock { target: t, .. } => vec![t],
            Action::KillActor { target, .. } | Action::Flood { target, .. } => vec![target],
            Action::Partition(groups) => groups.iter().flatten().collect(),
            Action::Delay { from, to, .. } | Action::Drop { from, to, .. } => {
                from.iter().chain(to).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Faults that `duration` can undo.
    fn undoable(&self) -> bool {
        LASTING.contains(&self.verb())
    }
}

/// A scenario file that does not parse or check, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    network: Vec<Spanned<RawNetwork>>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
    #[serde(default)]
    hypothesis: Vec<Spanned<RawProbe>>,
    #[serde(default)]
    load: Option<Spanned<RawLoad>>,
    #[serde(default)]
    method: Vec<Spanned<RawStep>>,
    #[serde(default)]
    rollback: Vec<Spanned<RawStep>>,
    #[serde(default)]
    settle: Option<Spanned<String>>,
    #[serde(default)]
    observe_every: Option<Spanned<String>>,
    #[serde(default)]
    traffic: Option<Spanned<RawTraffic>>,
    #[serde(default)]
    register: Option<Spanned<RawRegister>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    service: Spanned<String>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    protocols: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    max_failed: Option<u64>,
    #[serde(default)]
    p99_during: Option<Spanned<String>>,
    #[serde(default)]
    p99_after: Option<Spanned<String>>,
    #[serde(default)]
    via: Option<Spanned<String>>,
    #[serde(default)]
    network: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: Spanned<String>,
    #[serde(default)]
    subnet: Option<Spanned<String>>,
    #[serde(default)]
    encrypted: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    clients: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default)]
    managers: Option<usize>,
    #[serde(default)]
    workers: Option<usize>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    rebalance: bool,
    #[serde(default)]
    snapshot_interval: Option<u64>,
    #[serde(default)]
    disk: Option<Spanned<String>>,
    #[serde(default)]
    netns: bool,
    #[serde(default)]
    max_format: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    replicas: u64,
    #[serde(default)]
    publish: Option<u16>,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    probe: Spanned<String>,
    #[serde(default)]
    service: Option<Spanned<String>>,
    #[serde(default)]
    tolerance: Option<u64>,
    #[serde(default)]
    within: Option<Spanned<String>>,
    #[serde(default)]
    during: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    rate: f64,
    #[serde(default)]
    services: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    at: Option<Spanned<String>>,
    action: Spanned<String>,
    #[serde(default)]
    target: Option<Spanned<String>>,
    #[serde(default)]
    bind: Option<Spanned<String>>,
    #[serde(default)]
    duration: Option<Spanned<String>>,
    #[serde(default)]
    repeat: Option<Spanned<u32>>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    actor: Option<Spanned<String>>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    groups: Option<Spanned<Vec<Vec<Spanned<String>>>>>,
    #[serde(default)]
    from: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    to: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    ms: Option<u64>,
    #[serde(default)]
    direction: Option<Spanned<String>>,
    #[serde(default)]
    service: Option<Spanned<String>>,
    #[serde(default)]
    replicas: Option<u64>,
    #[serde(default)]
    connections: Option<usize>,
    #[serde(default)]
    offset: Option<Spanned<String>>,
}

/// Line and column (1-based) of a byte offset.
fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

struct Checker<'a> {
    src: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ScenarioError {
        let (line, column) = position(self.src, span.start);
        ScenarioError {
            line,
            column,
            message: message.into(),
        }
    }

    fn line(&self, span: &std::ops::Range<usize>) -> usize {
        position(self.src, span.start).0
    }

    fn duration(&self, s: &Spanned<String>) -> Result<Duration, ScenarioError> {
        parse_duration(s.get_ref()).ok_or_else(|| {
            self.err(
                s.span(),
                format!(
                    "invalid duration {:?}: expected a number with ms, s or m, like \"500ms\" or \"2s\", at most a day",
                    s.get_ref()
                ),
            )
        })
    }
}

/// "64M", "1G", "512K" (binary units), or bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, scale) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(scale)
}

/// "500ms", "2s", "1.5s", "3m".
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    let secs = num.trim().parse::<f64>().ok()? * scale;
    // A day is longer than any scenario; the cap keeps the runner's sums finite.
    (secs.is_finite() && (0.0..=86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// A clock offset: a sign, then a number with ms, s, m, h or d (`+10m`,
/// `-1d`, `+1.5h`), at most a year either way; in milliseconds.
pub fn parse_offset(s: &str) -> Option<i64> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => return None,
    };
    let units = [
        ("ms", 0.001),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86_400.0),
    ];
    let (num, scale) = units
        .iter()
        .find_map(|(u, k)| rest.strip_suffix(u).map(|n| (n, *k)))?;
    let secs = num.trim().parse::<f64>().ok()? * scale;
    (secs.is_finite() && (0.0..=366.0 * 86_400.0).contains(&secs))
        .then(|| (sign * secs * 1000.0).round() as i64)
}

/// The node names a local cluster of this shape has.
pub fn node_names(shape: &ClusterShape) -> Vec<String> {
    (1..=shape.managers)
        .map(|i| format!("manager-{i}"))
        .chain((1..=shape.workers).map(|i| format!("worker-{i}")))
        .collect()
}

/// Parses and checks a scenario.
pub fn parse(src: &str) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = toml::from_str(src).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| position(src, s.start));
        ScenarioError {
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let c = Checker { src };

    let cluster = match &raw.cluster {
        None => ClusterShape {
            managers: 3,
            workers: 0,
            hosts: Vec::new(),
            rebalance: false,
            snapshot_interval: None,
            disk: None,
            netns: false,
            max_format: None,
        },
        Some(sp) => {
            let r = sp.get_ref();
            if !r.hosts.is_empty() && (r.managers.is_some() || r.workers.is_some()) {
                return Err(c.err(
                    sp.span(),
                    "give either hosts (an existing cluster) or managers/workers (a local one), not both",
                ));
            }
            let shape = ClusterShape {
                managers: r.managers.unwrap_or(if r.hosts.is_empty() { 3 } else { 0 }),
                workers: r.workers.unwrap_or(0),
                hosts: r.hosts.clone(),
                rebalance: r.rebalance,
                snapshot_interval: r.snapshot_interval,
                disk: match &r.disk {
                    None => None,
                    Some(d) => Some(parse_size(d.get_ref()).filter(|b| *b >= 8 << 20 && *b <= 4 << 30).ok_or_else(|| {
                        c.err(d.span(), format!("invalid disk size {:?}: expected a size like \"64M\" or \"1G\", from 8M to 4G", d.get_ref()))
                    })?),
                },
                netns: r.netns,
                max_format: match &r.max_format {
                    None => None,
                    Some(f) if *f.get_ref() >= 1 => Some(*f.get_ref()),
                    Some(f) => {
                        return Err(c.err(f.span(), "max_format is a record format: 1 or more"))
                    }
                },
            };
            if !shape.hosts.is_empty() && shape.netns {
                return Err(c.err(
                    sp.span(),
                    "netns puts the daemons the harness starts in namespaces of their own; an existing cluster (hosts) keeps its own network",
                ));
            }
            if shape.netns && shape.managers + shape.workers > 200 {
                return Err(c.err(
                    sp.span(),
                    "at most 200 nodes fit on one namespace bridge here",
                ));
            }
            if !shape.hosts.is_empty() && shape.disk.is_some() {
                return Err(c.err(
                    sp.span(),
                    "disk gives the daemons the harness starts a filesystem each; an existing cluster (hosts) keeps its own",
                ));
            }
            if !shape.hosts.is_empty() && shape.snapshot_interval.is_some() {
                return Err(c.err(
                    sp.span(),
                    "snapshot_interval sets up a cluster the harness starts; an existing one (hosts) keeps its own",
                ));
            }
            // The daemon refuses an interval over its own bound, in its words.
            if shape.snapshot_interval == Some(0) {
                return Err(c.err(sp.span(), "snapshot_interval must be at least 1"));
            }
            if shape.hosts.is_empty() && shape.managers == 0 {
                return Err(c.err(sp.span(), "a cluster needs at least one manager"));
            }
            if shape.managers + shape.workers > 200 {
                return Err(c.err(sp.span(), "at most 200 nodes fit on 127.0.0.0/8 here"));
            }
            shape
        }
    };
    let names: Option<BTreeSet<String>> = cluster
        .hosts
        .is_empty()
        .then(|| node_names(&cluster).into_iter().collect());

    let mut networks: Vec<NetworkSetup> = Vec::new();
    for n in &raw.network {
        let r = n.get_ref();
        check_service_name(&c, &r.name)?;
        if !cluster.netns {
            return Err(c.err(
                n.span(),
                "overlay networks need every node in a network namespace of its own: set netns = true under [cluster]",
            ));
        }
        if networks.iter().any(|x| x.name == *r.name.get_ref()) {
            return Err(c.err(
                r.name.span(),
                format!("network {:?} is already listed above", r.name.get_ref()),
            ));
        }
        let subnet = match &r.subnet {
            None => None,
            Some(sn) => {
                let ok = sn.get_ref().split_once('/').is_some_and(|(a, l)| {
                    a.parse::<std::net::Ipv4Addr>().is_ok()
                        && l.parse::<u8>().is_ok_and(|l| (8..=29).contains(&l))
                });
                if !ok {
                    return Err(c.err(
                        sn.span(),
                        format!(
                            "invalid subnet {:?}: expected an IPv4 CIDR like \"10.0.9.0/24\"",
                            sn.get_ref()
                        ),
                    ));
                }
                Some(sn.get_ref().clone())
            }
        };
        networks.push(NetworkSetup {
            name: r.name.get_ref().clone(),
            subnet,
            encrypted: r.encrypted.unwrap_or(true),
        });
    }

    let mut services = Vec::new();
    for s in &raw.service {
        let r = s.get_ref();
        check_service_name(&c, &r.name)?;
        if services
            .iter()
            .any(|x: &ServiceSetup| x.name == *r.name.get_ref())
        {
            return Err(c.err(
                r.name.span(),
                format!("service {:?} is already listed above", r.name.get_ref()),
            ));
        }
        for n in &r.networks {
            if !networks.iter().any(|x| x.name == *n.get_ref()) {
                return Err(c.err(
                    n.span(),
                    format!("network {:?} is not listed under [[network]]", n.get_ref()),
                ));
            }
        }
        services.push(ServiceSetup {
            name: r.name.get_ref().clone(),
            replicas: r.replicas,
            publish: r.publish,
            networks: r.networks.iter().map(|n| n.get_ref().clone()).collect(),
        });
    }

    let mut hypothesis = Vec::new();
    for p in &raw.hypothesis {
        hypothesis.push(probe(&c, p)?);
    }

    let load = match &raw.load {
        None => None,
        Some(l) => {
            let r = l.get_ref();
            if !(r.rate > 0.0 && r.rate <= 1000.0) {
                return Err(c.err(
                    l.span(),
                    "load rate must be between 0 and 1000 writes a second",
                ));
            }
            Some(Load {
                rate: r.rate,
                services: r.services.unwrap_or(3).max(1),
            })
        }
    };

    let mut bound = BTreeSet::new();
    let mut method = Vec::new();
    // Steps run in time order, not file order: a name must be bound by a
    // step that runs no later than the steps that use it.
    let mut bound_at: BTreeMap<String, Duration> = BTreeMap::new();
    for s in &raw.method {
        let st = step(&c, s, names.as_ref(), &mut bound, true)?;
        if matches!(st.action, Action::Fill(_)) && cluster.disk.is_none() {
            return Err(c.err(
                s.get_ref().action.span(),
                "fill needs the daemons on filesystems of their own: set disk = \"64M\" (say) under [cluster]",
            ));
        }
        for t in st.action.targets() {
            if let Target::Bound(b) = t {
                if let Some(at) = bound_at.get(b).filter(|at| **at > st.at) {
                    return Err(c.err(
                        s.get_ref().action.span(),
                        format!(
                            "{b:?} is bound by a step that runs at {at:?}, after this one ({:?})",
                            st.at
                        ),
                    ));
                }
            }
        }
        if let Some(b) = &st.bind {
            bound_at.insert(b.clone(), st.at);
        }
        method.push(st);
    }
    let mut rollbacks = Vec::new();
    for s in &raw.rollback {
        rollbacks.push(step(&c, s, names.as_ref(), &mut bound, false)?);
    }
    method.sort_by_key(|s| s.at);

    let settle = match &raw.settle {
        Some(s) => c.duration(s)?,
        None => Duration::from_secs(60),
    };
    let observe_every = match &raw.observe_every {
        Some(s) => {
            let d = c.duration(s)?;
            if d < Duration::from_millis(50) {
                return Err(c.err(s.span(), "observe_every must be at least 50ms"));
            }
            d
        }
        None => Duration::from_millis(250),
    };

    let traffic = match &raw.traffic {
        None => None,
        Some(t) => {
            let r = t.get_ref();
            let name = r.service.get_ref();
            let via = match r.via.as_ref().map(|v| v.get_ref().as_str()) {
                None | Some("published") => {
                    if let Some(n) = &r.network {
                        return Err(c.err(n.span(), "network goes with via = \"overlay\""));
                    }
                    if !services
                        .iter()
                        .any(|s| s.name == *name && s.publish.is_some())
                    {
                        return Err(c.err(
                            r.service.span(),
                            format!("traffic goes to a published port: {name:?} must be a [[service]] listed with publish = PORT"),
                        ));
                    }
                    Via::Published
                }
                Some("overlay") => {
                    let Some(svc) = services.iter().find(|s| s.name == *name) else {
                        return Err(c.err(
                            r.service.span(),
                            format!("{name:?} is not a [[service]] listed above"),
                        ));
                    };
                    let network = match &r.network {
                        Some(n) => {
                            if !svc.networks.contains(n.get_ref()) {
                                return Err(c.err(
                                    n.span(),
                                    format!("service {name:?} is not on network {:?}", n.get_ref()),
                                ));
                            }
                            n.get_ref().clone()
                        }
                        None => svc.networks.first().cloned().ok_or_else(|| {
                            c.err(
                                r.service.span(),
                                format!("overlay traffic goes to a service on an overlay network: give {name:?} networks = [\"NAME\"]"),
                            )
                        })?,
                    };
                    Via::Overlay { network }
                }
                Some(other) => {
                    let span = r.via.as_ref().map(|v| v.span()).unwrap_or(t.span());
                    return Err(c.err(
                        span,
                        format!("unknown via {other:?}: expected published or overlay"),
                    ));
                }
            };
            let rate = r.rate.unwrap_or(200.0);
            if !(rate > 0.0 && rate <= 2000.0) {
                return Err(c.err(
                    t.span(),
                    "traffic rate must be between 0 and 2000 requests a second",
                ));
            }
            let protocols = match &r.protocols {
                None => vec![Proto::Tcp, Proto::Udp],
                Some(list) => {
                    let mut out = Vec::new();
                    for p in list.get_ref() {
                        let p = match p.as_str() {
                            "tcp" => Proto::Tcp,
                            "udp" => Proto::Udp,
                            other => {
                                return Err(c.err(
                                    list.span(),
                                    format!("unknown protocol {other:?}: expected tcp or udp"),
                                ))
                            }
                        };
                        if !out.contains(&p) {
                            out.push(p);
                        }
                    }
                    if out.is_empty() {
                        return Err(c.err(list.span(), "traffic needs at least one protocol"));
                    }
                    out
                }
            };
            let opt = |d: &Option<Spanned<String>>| d.as_ref().map(|d| c.duration(d)).transpose();
            Some(Traffic {
                service: name.clone(),
                rate,
                protocols,
                timeout: opt(&r.timeout)?.unwrap_or(Duration::from_secs(5)),
                max_failed: r.max_failed.unwrap_or(0),
                p99_during: opt(&r.p99_during)?,
                p99_after: opt(&r.p99_after)?,
                via,
            })
        }
    };
    let register = match &raw.register {
        None => None,
        Some(reg) => {
            let r = reg.get_ref();
            let rate = r.rate.unwrap_or(5.0);
            let clients = r.clients.unwrap_or(3);
            if !(rate > 0.0 && rate <= 100.0 && (1..=16).contains(&clients)) {
                return Err(c.err(
                    reg.span(),
                    "register: rate must be between 0 and 100 operations a second, clients between 1 and 16",
                ));
            }
            Some(Register { rate, clients })
        }
    };

    Ok(Scenario {
        name: raw.name,
        description: raw.description,
        cluster,
        networks,
        services,
        hypothesis,
        load,
        method,
        rollbacks,
        settle,
        observe_every,
        traffic,
        register,
    })
}

fn check_service_name(c: &Checker, name: &Spanned<String>) -> Result<(), ScenarioError> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        && n.chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphanumeric());
    if !ok {
        return Err(c.err(
            name.span(),
            format!("invalid service name {n:?}: use letters, digits, - and _ (at most 63), starting with a letter or digit"),
        ));
    }
    if n.starts_with("chaos-") {
        return Err(c.err(
            name.span(),
            format!("service name {n:?} is reserved: names starting with chaos- belong to the harness's own writes"),
        ));
    }
    Ok(())
}

fn probe(c: &Checker, p: &Spanned<RawProbe>) -> Result<ProbeSpec, ScenarioError> {
    let r = p.get_ref();
    let kind = r.probe.get_ref().as_str();
    let probe = match kind {
        "running" => {
            let service = r.service.as_ref().ok_or_else(|| {
                c.err(r.probe.span(), "probe \"running\" needs service = \"NAME\"")
            })?;
            Probe::Running {
                service: service.get_ref().clone(),
                tolerance: r.tolerance.unwrap_or(0),
            }
        }
        "one-leader" => Probe::OneLeader,
        "write" => Probe::Write {
            within: match &r.within {
                Some(w) => c.duration(w)?,
                None => Duration::from_secs(2),
            },
        },
        "nodes-ready" => Probe::NodesReady,
        "mesh" => {
            let service = r
                .service
                .as_ref()
                .ok_or_else(|| c.err(r.probe.span(), "probe \"mesh\" needs service = \"NAME\""))?;
            Probe::Mesh {
                service: service.get_ref().clone(),
            }
        }
        "api" => Probe::Api {
            within: match &r.within {
                Some(w) => c.duration(w)?,
                None => Duration::from_secs(1),
            },
        },
        "spread" => {
            let service = r.service.as_ref().ok_or_else(|| {
                c.err(r.probe.span(), "probe \"spread\" needs service = \"NAME\"")
            })?;
            Probe::Spread {
                service: service.get_ref().clone(),
            }
        }
        "rolled" => {
            let service = r.service.as_ref().ok_or_else(|| {
                c.err(r.probe.span(), "probe \"rolled\" needs service = \"NAME\"")
            })?;
            Probe::Rolled {
                service: service.get_ref().clone(),
            }
        }
        other => {
            return Err(c.err(
                r.probe.span(),
                format!(
                    "unknown probe {other:?}: expected running, one-leader, write, nodes-ready, mesh, spread, api or rolled"
                ),
            ))
        }
    };
    let unused = |field: bool, name: &str| -> Result<(), ScenarioError> {
        if field {
            Err(c.err(r.probe.span(), format!("probe {kind:?} takes no {name}")))
        } else {
            Ok(())
        }
    };
    unused(
        r.service.is_some() && !matches!(kind, "running" | "mesh" | "spread" | "rolled"),
        "service",
    )?;
    unused(r.tolerance.is_some() && kind != "running", "tolerance")?;
    unused(
        r.within.is_some() && !matches!(kind, "write" | "api"),
        "within",
    )?;
    Ok(ProbeSpec {
        probe,
        during: r.during,
        line: c.line(&p.span()),
    })
}

fn target(
    c: &Checker,
    s: &Spanned<String>,
    names: Option<&BTreeSet<String>>,
    bound: &BTreeSet<String>,
    rest_ok: bool,
) -> Result<Target, ScenarioError> {
    let t = match s.get_ref().as_str() {
        "leader" => Target::Leader,
        "random-manager" => Target::RandomManager,
        "random-follower" => Target::RandomFollower,
        "random-worker" => Target::RandomWorker,
        "random-node" => Target::RandomNode,
        "rest" if rest_ok => Target::Rest,
        "rest" => {
            return Err(c.err(
                s.span(),
                "\"rest\" only means something in groups, from or to",
            ))
        }
        n if bound.contains(n) => Target::Bound(n.to_string()),
        n => {
            if let Some(names) = names {
                if !names.contains(n) {
                    let known: Vec<&str> = names.iter().map(String::as_str).collect();
                    return Err(c.err(
                        s.span(),
                        format!(
                            "unknown target {n:?}: expected leader, random-manager, random-follower, random-worker, random-node, a name bound earlier, or one of {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
            Target::Node(n.to_string())
        }
    };
    Ok(t)
}

fn step(
    c: &Checker,
    sp: &Spanned<RawStep>,
    names: Option<&BTreeSet<String>>,
    bound: &mut BTreeSet<String>,
    in_method: bool,
) -> Result<Step, ScenarioError> {
    let r = sp.get_ref();
    let verb = r.action.get_ref().as_str();
    let at_action = r.action.span();
    let need = |field: &str| c.err(at_action.clone(), format!("action {verb:?} needs {field}"));
    let one = |f: &Option<Spanned<String>>| -> Result<Target, ScenarioError> {
        let s = f.as_ref().ok_or_else(|| need("a target"))?;
        target(c, s, names, bound, false)
    };
    let many =
        |f: &Option<Vec<Spanned<String>>>, what: &str| -> Result<Vec<Target>, ScenarioError> {
            let list = f.as_ref().ok_or_else(|| need(what))?;
            if list.is_empty() {
                return Err(need(what));
            }
            list.iter()
                .map(|s| target(c, s, names, bound, true))
                .collect()
        };
    let service = || -> Result<String, ScenarioError> {
        let s = r
            .service
            .as_ref()
            .ok_or_else(|| need("service = \"NAME\""))?;
        check_service_name(c, s)?;
        Ok(s.get_ref().clone())
    };
    let direction = || -> Result<Direction, ScenarioError> {
        match r.direction.as_ref() {
            None => Ok(Direction::Both),
            Some(d) => match d.get_ref().as_str() {
                "in" => Ok(Direction::In),
                "out" => Ok(Direction::Out),
                "both" => Ok(Direction::Both),
                other => Err(c.err(
                    d.span(),
                    format!("invalid direction {other:?}: expected in, out or both"),
                )),
            },
        }
    };
    let action = match verb {
        "kill" => Action::Kill(one(&r.target)?),
        "stop" => Action::Stop(one(&r.target)?),
        "start" => Action::Start(one(&r.target)?),
        "restart" => Action::Restart(one(&r.target)?),
        "upgrade" => Action::Upgrade(one(&r.target)?),
        "pause" => Action::Pause(one(&r.target)?),
        "resume" => Action::Resume(one(&r.target)?),
        "kill-actor" => Action::KillActor {
            target: one(&r.target)?,
            actor: r
                .actor
                .as_ref()
                .ok_or_else(|| need("actor = \"NAME\" (raft, store, scheduler, dispatcher, orchestrator, agent, service/NAME, random-service, random-task, ...)"))?
                .get_ref()
                .clone(),
            stop: match r.mode.as_ref() {
                None => false,
                Some(m) => match m.get_ref().as_str() {
                    "kill" => false,
                    "stop" => true,
                    other => {
                        return Err(c.err(
                            m.span(),
                            format!("invalid mode {other:?}: expected kill (abort it, like a panic) or stop (ask it to stop)"),
                        ))
                    }
                },
            },
        },
        "partition" => {
            let groups = r.groups.as_ref().ok_or_else(|| need("groups = [[...], [...]]"))?;
            if groups.get_ref().len() < 2 {
                return Err(c.err(groups.span(), "a partition needs at least two groups"));
            }
            let mut out: Vec<Vec<Target>> = Vec::new();
            for g in groups.get_ref() {
                if g.is_empty() {
                    return Err(c.err(groups.span(), "a partition group cannot be empty"));
                }
                let mut group = Vec::new();
                for s in g {
                    let t = target(c, s, names, bound, true)?;
                    // Random picks are distinct anyway; anything else named twice is a mistake.
                    let random = matches!(
                        t,
                        Target::RandomManager | Target::RandomFollower | Target::RandomWorker | Target::RandomNode
                    );
                    if !random && (group.contains(&t) || out.iter().flatten().any(|o| *o == t)) {
                        return Err(c.err(s.span(), format!("{:?} is in more than one place in this partition", s.get_ref())));
                    }
                    group.push(t);
                }
                out.push(group);
            }
            Action::Partition(out)
        }
        "heal" => Action::Heal,
        "delay" => Action::Delay {
            from: many(&r.from, "from = [...]")?,
            to: many(&r.to, "to = [...]")?,
            ms: r.ms.ok_or_else(|| need("ms = MILLISECONDS"))?,
            direction: direction()?,
        },
        "drop" => Action::Drop {
            from: many(&r.from, "from = [...]")?,
            to: many(&r.to, "to = [...]")?,
            direction: direction()?,
        },
        "create" => Action::Create {
            service: service()?,
            replicas: r.replicas.unwrap_or(1),
        },
        "scale" => Action::Scale {
            service: service()?,
            replicas: r.replicas.ok_or_else(|| need("replicas = N"))?,
        },
        "update" => Action::Update { service: service()? },
        "roll" => Action::Roll { service: service()? },
        "remove" => Action::Remove { service: service()? },
        "flood" => Action::Flood {
            target: one(&r.target)?,
            service: service()?,
            connections: r.connections.unwrap_or(500),
        },
        "fill" => Action::Fill(one(&r.target)?),
        "slow-disk" => Action::SlowDisk {
            target: one(&r.target)?,
            ms: r.ms.ok_or_else(|| need("ms = MILLISECONDS (added to every Raft log flush)"))?,
        },
        "clock" => {
            let raw = r
                .offset
                .as_ref()
                .ok_or_else(|| need("offset = \"+10m\" or \"-1d\" (how far the node's clock moves)"))?;
            Action::Clock {
                target: one(&r.target)?,
                offset_ms: parse_offset(raw.get_ref()).ok_or_else(|| {
                    c.err(
                        raw.span(),
                        format!(
                            "invalid offset {:?}: expected a sign and a number with ms, s, m, h or d, like \"+10m\" or \"-1d\", at most a year",
                            raw.get_ref()
                        ),
                    )
                })?,
            }
        }
        other => {
            return Err(c.err(
                at_action,
                format!("unknown action {other:?}: expected kill, stop, start, restart, upgrade, pause, resume, kill-actor, partition, heal, delay, drop, create, scale, update, roll, remove, flood, fill, slow-disk or clock"),
            ))
        }
    };
    let at = match (&r.at, in_method) {
        (Some(a), true) => c.duration(a)?,
        (None, true) => {
            return Err(need(
                "at = \"DURATION\" (when, from the start of the method)",
            ))
        }
        (Some(a), false) => {
            return Err(c.err(
                a.span(),
                "rollbacks run in order after the method; they take no at",
            ))
        }
        (None, false) => Duration::ZERO,
    };
    if let (Some(m), false) = (&r.mode, verb == "kill-actor") {
        return Err(c.err(
            m.span(),
            format!("action {verb:?} takes no mode; only kill-actor does"),
        ));
    }
    if !in_method {
        let timed = [&r.duration, &r.every]
            .into_iter()
            .flatten()
            .map(|d| d.span())
            .chain(r.repeat.as_ref().map(|x| x.span()))
            .next();
        if let Some(span) = timed {
            return Err(c.err(
                span,
                "rollbacks run once each, in order: they take no duration, repeat or every",
            ));
        }
    }
    let duration = match &r.duration {
        None => None,
        Some(d) if action.undoable() => Some(c.duration(d)?),
        Some(d) => {
            return Err(c.err(
                d.span(),
                format!("action {verb:?} cannot be undone after a duration; only kill, stop, pause, partition, delay, drop, flood, fill, slow-disk and clock can"),
            ))
        }
    };
    if verb == "flood" && duration.is_none() {
        return Err(need("duration = \"DURATION\" (how long the flood lasts)"));
    }
    if r.connections.is_some() && verb != "flood" {
        return Err(c.err(
            at_action.clone(),
            format!("action {verb:?} takes no connections; only flood does"),
        ));
    }
    let repeat = r.repeat.as_ref().map_or(1, |x| *x.get_ref());
    if repeat == 0 {
        return Err(c.err(
            r.repeat.as_ref().map_or(at_action.clone(), |x| x.span()),
            "repeat must be at least 1",
        ));
    }
    let every = match (&r.every, repeat) {
        (Some(e), _) => c.duration(e)?,
        (None, 1) => Duration::ZERO,
        (None, _) => return Err(need("every = \"DURATION\" when it repeats")),
    };
    if let (Some(d), true) = (duration, repeat > 1) {
        if d >= every {
            return Err(c.err(
                at_action,
                "duration must be shorter than every, or the repeats overlap",
            ));
        }
    }
    let bind = match &r.bind {
        None => None,
        Some(b) => {
            let is_node_action = matches!(
                action,
                Action::Kill(_)
                    | Action::Stop(_)
                    | Action::Start(_)
                    | Action::Restart(_)
                    | Action::Upgrade(_)
                    | Action::Pause(_)
                    | Action::Resume(_)
                    | Action::KillActor { .. }
                    | Action::Fill(_)
                    | Action::SlowDisk { .. }
                    | Action::Clock { .. }
            );
            if !is_node_action {
                return Err(c.err(
                    b.span(),
                    format!("action {verb:?} picks no single node to bind"),
                ));
            }
            let n = b.get_ref();
            if names.is_some_and(|ns| ns.contains(n))
                || target(c, b, None, &BTreeSet::new(), true).ok() != Some(Target::Node(n.clone()))
            {
                return Err(c.err(
                    b.span(),
                    format!("{n:?} is already a node name or a selector; bind another name"),
                ));
            }
            bound.insert(n.clone());
            Some(n.clone())
        }
    };
    Ok(Step {
        at,
        action,
        duration,
        repeat,
        every,
        bind,
        line: c.line(&sp.span()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+10m"), Some(600_000));
        assert_eq!(parse_offset("-1d"), Some(-86_400_000));
        assert_eq!(parse_offset("+1.5h"), Some(5_400_000));
        assert_eq!(parse_offset("+250ms"), Some(250));
        assert_eq!(parse_offset("10m"), None);
        assert_eq!(parse_offset("+400d"), None);
        assert_eq!(parse_offset("+x"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn positions_are_one_based() {
        let src = "a\nbc\nd";
        assert_eq!(position(src, 0), (1, 1));
        assert_eq!(position(src, 3), (2, 2));
        assert_eq!(position(src, 5), (3, 1));
    }
}
