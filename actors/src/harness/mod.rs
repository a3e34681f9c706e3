//! An in-process cluster for tests and simulations. Each manager runs its
//! real store, Raft actor and (while it leads) leader actors (dispatcher,
//! scheduler, orchestrator, updater) on their real code paths, on a store
//! of its own; the managers' Raft actors talk over an in-memory network
//! (`raft_net`) that can delay and lose messages, cut a manager off and
//! carry snapshots in chunks; every node (managers included) runs a real
//! agent whose tasks go to a `FakeDriver`, over a `Wire` that can be cut.
//! Everything runs on the calling thread, in a current-thread tokio
//! runtime whose clock is paused: time moves only when the test drives it
//! (`step`, `advance`, `drive_until`), timers fire in order as it does, the
//! world's randomness is seeded (`crate::world`) and each manager's
//! election timeout is fixed and drawn from the seed, so a seed replays a
//! run, elections included.
//!
//! Not simulated: the QUIC transport, real processes, durability (the
//! stores are temporary: a crashed manager restarts from everything it
//! wrote, flushed or not).

mod fake_driver;
mod link;
mod managers;
mod raft_net;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::ActorRef;
use rand::seq::SliceRandom;

pub use fake_driver::{Behaviour, DriverCall, FakeDriver, FAKE_DRIVER};
use link::{Wire, WireLink};
use managers::Managers;
use raft_net::RaftNet;
pub use raft_net::{NetConfig, SnapshotCrossing};

use crate::context::{ManagerCtx, ManagerOpenError, Timings};
use crate::driver::{Driver, Drivers, Exit};
use crate::leader::{manager_spec, worker_spec};
use crate::proposer::ProposeError;
use crate::raft::{RaftMsg, RaftStatus};
use crate::session::{DispatcherMsg, NodeDescription};
use crate::supervision::{
    ChildSpec, Directory, Intensity, Supervisor, SupervisorArgs, SupervisorMsg,
};
use crate::world::new_id;
use shoal_core::command::{Command, Proposal};
use shoal_core::model::{
    Cluster, ClusterSpec, JoinTokens, Node, NodeRole, NodeState, Service, ServiceMode, ServiceSpec,
    Task, TaskState, TaskTemplate,
};
use shoal_core::state::ClusterState;

/// How far one `step` moves the clock.
pub const STEP: Duration = Duration::from_millis(10);

/// How long the harness waits for what it does itself (an election, a
/// write, a manager's actors), on its clock.
const OWN_LIMIT: Duration = Duration::from_secs(30);

/// The wall-clock time a harness starts at, whatever the seed.
fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::days(20_000)
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("manager: {0}")]
    Open(#[from] ManagerOpenError),
    #[error("raft log: {0}")]
    Log(#[from] crate::raft::LogError),
    #[error("actors: {0}")]
    Actors(String),
    #[error("write: {0}")]
    Propose(#[from] ProposeError),
    #[error("not within {limit:?} of the harness's clock: {what}")]
    Timeout { what: String, limit: Duration },
}

/// What a harness is built with.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub seed: u64,
    /// Voters from the start; each is also a node that runs tasks.
    pub managers: usize,
    pub workers: usize,
    pub timings: Timings,
    pub net: NetConfig,
}

impl Setup {
    /// One manager and `workers` workers, default timings, a perfect network.
    pub fn new(seed: u64, workers: usize) -> Setup {
        Setup {
            seed,
            managers: 1,
            workers,
            timings: Timings::default(),
            net: NetConfig::default(),
        }
    }
}

/// One node of the harness: its agent, its driver and its wire to the managers.
pub struct SimNode {
    pub id: String,
    pub hostname: String,
    pub driver: Arc<FakeDriver>,
    wire: Arc<Wire>,
    root: ActorRef<SupervisorMsg>,
    /// The node's actors by name (`task/<id>`...).
    dir: Arc<Directory>,
}

/// What the harness keeps of a manager to crash and restart it.
struct SimManager {
    node_id: String,
    raft_id: u64,
    timings: Timings,
    /// Its node in `Harness::nodes`.
    node: usize,
    db: sled::Db,
    root: Option<ActorRef<SupervisorMsg>>,
}

pub struct Harness {
    rt: tokio::runtime::Runtime,
    managers: Arc<Managers>,
    sims: Vec<SimManager>,
    net: Arc<RaftNet>,
    /// Each manager's election timeout is `election_ticks` plus the
    /// offset of its place in this (seeded) order.
    election_offsets: Vec<usize>,
    base: Timings,
    pub nodes: Vec<SimNode>,
    started: tokio::time::Instant,
}

async fn spawn_root(directory: Arc<Directory>) -> Result<ActorRef<SupervisorMsg>, HarnessError> {
    let (root, _) = ractor::Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            directory,
            intensity: Intensity::default(),
            children: Vec::new(),
        },
    )
    .await
    .map_err(|e| HarnessError::Actors(e.to_string()))?;
    Ok(root)
}

async fn start_child(root: &ActorRef<SupervisorMsg>, spec: ChildSpec) -> Result<(), HarnessError> {
    let r = root
        .call(|reply| SupervisorMsg::StartChild(spec, Some(reply)), None)
        .await
        .map_err(|e| HarnessError::Actors(e.to_string()))?;
    match r {
        ractor::rpc::CallResult::Success(Ok(())) => Ok(()),
        ractor::rpc::CallResult::Success(Err(e)) => Err(HarnessError::Actors(e)),
        _ => Err(HarnessError::Actors("no answer starting actors".into())),
    }
}

/// A manager's context on its store, which holds nothing to flush.
fn open_manager(m: &SimManager) -> Result<Arc<ManagerCtx>, HarnessError> {
    let ctx = ManagerCtx::new(
        m.node_id.clone(),
        m.raft_id,
        &m.db,
        Directory::new(),
        m.timings,
    )?;
    ctx.log.in_memory();
    Ok(ctx)
}

/// Starts a manager's subtree (store, Raft actor) on the harness's network.
async fn spawn_manager(
    ctx: &Arc<ManagerCtx>,
    net: &Arc<RaftNet>,
) -> Result<ActorRef<SupervisorMsg>, HarnessError> {
    let root = spawn_root(ctx.directory.clone()).await?;
    start_child(&root, manager_spec(ctx, net.endpoint(ctx.raft_id))).await?;
    Ok(root)
}

/// Starts a node's agent on a fresh fake driver, wired to the managers.
async fn spawn_agent(
    n: &Node,
    managers: &Arc<Managers>,
    heartbeat: Duration,
) -> Result<SimNode, HarnessError> {
    let driver = FakeDriver::new();
    let mut drivers = Drivers::new();
    drivers.insert(FAKE_DRIVER.into(), driver.clone() as Arc<dyn Driver>);
    let wire = Wire::new(managers.clone());
    let node_dir = Directory::new();
    let root = spawn_root(node_dir.clone()).await?;
    let dir = node_dir.clone();
    let desc = NodeDescription {
        node_id: n.id.clone(),
        hostname: n.hostname.clone(),
        addr: n.addr.clone(),
        drivers: vec![driver.info()],
        sandbox_error: None,
        machine: fake_machine(),
        max_format: n.max_format,
    };
    start_child(
        &root,
        worker_spec(
            desc,
            Arc::new(drivers),
            node_dir,
            Arc::new(WireLink(wire.clone())),
            heartbeat,
            Arc::new(crate::session::NoProxy),
            Arc::new(crate::session::NoProxy),
        ),
    )
    .await?;
    Ok(SimNode {
        id: n.id.clone(),
        hostname: n.hostname.clone(),
        driver,
        wire,
        root,
        dir,
    })
}

/// Runs `attempt` on whichever reachable manager leads, again every step
/// while there is none or it answers `None` (it no longer leads, or is
/// between two incarnations), for at most `OWN_LIMIT`.
async fn on_leader<T, Fut>(
    managers: &Managers,
    what: &str,
    mut attempt: impl FnMut(Arc<ManagerCtx>) -> Fut,
) -> Result<T, HarnessError>
where
    Fut: std::future::Future<Output = Result<Option<T>, HarnessError>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(ctx) = managers.dispatcher().and_then(|(i, _)| managers.ctx(i)) {
            if let Some(done) = attempt(ctx).await? {
                return Ok(done);
            }
        }
        if start.elapsed() > OWN_LIMIT {
            return Err(HarnessError::Timeout {
                what: what.into(),
                limit: OWN_LIMIT,
            });
        }
        tokio::time::sleep(STEP).await;
    }
}

/// Proposes through the leader, waiting out an election; returns once the
/// leader has applied the command.
async fn propose_on_leader(managers: &Managers, cmd: Command) -> Result<(), HarnessError> {
    on_leader(managers, "a leader to take the write", |ctx| {
        let cmd = cmd.clone();
        async move {
            match ctx.proposer.propose(cmd).await {
                Ok(()) => Ok(Some(())),
                Err(ProposeError::NotLeader { .. } | ProposeError::NoLeader) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
}

/// A node record as the harness (and unit tests) make them: ready to register, 4 CPUs, 8 GiB.
pub fn node_record(id: &str, hostname: &str, role: NodeRole) -> Node {
    Node {
        created_at: epoch(),
        updated_at: epoch(),
        ..shoal_core::model::sample_node(id, hostname, role)
    }
}

/// Waits on the paused clock until `done`, for at most `limit`.
async fn until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, HarnessError> {
    let start = tokio::time::Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                limit,
            });
        }
        tokio::time::sleep(STEP).await;
    }
    Ok(start.elapsed())
}

impl Harness {
    /// A swarm of one manager and `workers` workers, every node ready.
    pub fn new(seed: u64, workers: usize) -> Result<Harness, HarnessError> {
        Self::build(Setup::new(seed, workers))
    }

    pub fn with_timings(
        seed: u64,
        workers: usize,
        timings: Timings,
    ) -> Result<Harness, HarnessError> {
        Self::build(Setup {
            timings,
            ..Setup::new(seed, workers)
        })
    }

    /// A swarm of `setup.managers` voters and `setup.workers` workers,
    /// once a leader is elected and every node is ready.
    pub fn build(setup: Setup) -> Result<Harness, HarnessError> {
        if setup.managers == 0 {
            return Err(HarnessError::Actors("a harness needs a manager".into()));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()?;
        let (started, offsets) = rt.block_on(async {
            crate::world::install(setup.seed, epoch());
            let mut offsets: Vec<usize> = (0..setup.timings.raft.election_ticks.max(1)).collect();
            crate::world::with_rng(|r| offsets.shuffle(r));
            (tokio::time::Instant::now(), offsets)
        });
        let managers = Arc::new(Managers::default());
        let mut h = Harness {
            rt,
            net: RaftNet::new(managers.clone(), setup.net),
            managers,
            sims: Vec::new(),
            election_offsets: offsets,
            base: setup.timings,
            nodes: Vec::new(),
            started,
        };
        let voters: Vec<u64> = (1..=setup.managers as u64).collect();
        let mut members = Vec::new();
        for i in 0..setup.managers {
            let ctx = h.new_manager(i, i, Some(&voters))?;
            let mut node = node_record(
                &ctx.node_id,
                &format!("manager-{}", i + 1),
                NodeRole::Manager,
            );
            node.raft_id = ctx.raft_id;
            members.push(node);
        }
        let managers = h.managers.clone();
        h.rt.block_on(until("a manager to lead", OWN_LIMIT, || {
            managers.dispatcher().is_some()
        }))?;
        for i in 1..=setup.workers {
            members.push(node_record(
                &new_id(),
                &format!("worker-{i}"),
                NodeRole::Worker,
            ));
        }
        let cluster = Cluster {
            id: new_id(),
            spec: ClusterSpec::default(),
            join_tokens: JoinTokens {
                worker: new_id(),
                manager: new_id(),
            },
            ca_cert_pem: String::new(),
            removed_nodes: Vec::new(),
            unlock_key: None,
            created_at: epoch(),
            updated_at: epoch(),
            version: 0,
            format: 0,
        };
        h.propose(Command::InitCluster {
            cluster,
            node: members[0].clone(),
        })?;
        for n in &members[1..] {
            h.propose(Command::UpsertNode(n.clone()))?;
        }
        let heartbeat = setup.timings.dispatcher_heartbeat;
        for n in &members {
            let node = h.rt.block_on(spawn_agent(n, &h.managers, heartbeat))?;
            h.nodes.push(node);
        }
        let want = members.len();
        h.drive_until("every node to be ready", OWN_LIMIT, |s| {
            s.nodes.len() == want && s.nodes.values().all(|n| n.state == NodeState::Ready)
        })?;
        Ok(h)
    }

    /// Opens manager `i` (raft id `i + 1`) on a store of its own and starts
    /// its actors; `node` is where its node is, or will be, in `nodes`.
    /// Bootstrapped with `voters`, or else an empty log that waits to be
    /// added (`add_manager`).
    fn new_manager(
        &mut self,
        i: usize,
        node: usize,
        voters: Option<&[u64]>,
    ) -> Result<Arc<ManagerCtx>, HarnessError> {
        let mut timings = self.base;
        let offset = self.election_offsets[i % self.election_offsets.len()];
        timings.raft.election_ticks += offset;
        timings.raft.randomized_election = false;
        let sim = SimManager {
            node_id: self.rt.block_on(async { new_id() }),
            raft_id: i as u64 + 1,
            timings,
            node,
            db: sled::Config::new().temporary(true).open()?,
            root: None,
        };
        let ctx = open_manager(&sim)?;
        if let Some(voters) = voters {
            ctx.log.bootstrap(voters.to_vec())?;
        }
        self.managers.push(ctx.clone());
        self.sims.push(sim);
        let root = self.rt.block_on(spawn_manager(&ctx, &self.net))?;
        self.sims[i].root = Some(root);
        Ok(ctx)
    }

    /// Moves the clock one `STEP`, running everything that falls due.
    pub fn step(&mut self) {
        self.advance(STEP);
    }

    /// Moves the clock by `d`, firing every timer on the way in order.
    pub fn advance(&mut self, d: Duration) {
        self.rt.block_on(async move { tokio::time::sleep(d).await });
    }

    /// Steps until `done` holds for the state, for at most `limit` of the
    /// harness's clock; returns how long it took.
    pub fn drive_until(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&ClusterState) -> bool,
    ) -> Result<Duration, HarnessError> {
        let managers = self.managers.clone();
        self.rt.block_on(until(what, limit, || {
            managers.view().is_some_and(|m| done(&m.sm.read().0))
        }))
    }

    /// The wall-clock time on the harness's clock.
    pub fn now(&self) -> DateTime<Utc> {
        let _in = self.rt.enter();
        crate::world::now()
    }

    /// How long the harness's clock has run.
    pub fn elapsed(&self) -> Duration {
        self.rt.block_on(async { self.started.elapsed() })
    }

    /// The harness's clock now, as its actors read it (`tokio::time::Instant`
    /// outside the runtime is the real clock).
    pub fn clock(&self) -> tokio::time::Instant {
        self.rt.block_on(async { tokio::time::Instant::now() })
    }

    /// Proposes `cmd` through the leader and waits (on the harness's
    /// clock) until the leader has applied it.
    pub fn propose(&mut self, cmd: Command) -> Result<(), HarnessError> {
        let managers = self.managers.clone();
        self.rt.block_on(propose_on_leader(&managers, cmd))
    }

    /// The manager a test reads from: the leader whose actors run, or
    /// else the first manager that can be reached.
    fn view(&self) -> Arc<ManagerCtx> {
        // `build` refuses a harness without managers.
        self.managers.view().expect("a harness has a manager")
    }

    /// Reads the state, as the leader has it.
    pub fn state<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.view().sm.read().0)
    }

    /// A replicated service on the fake driver, restarting at once.
    pub fn spec(name: &str, replicas: u64, image: &str) -> ServiceSpec {
        let mut task_template = TaskTemplate {
            driver: FAKE_DRIVER.into(),
            image: image.into(),
            ..TaskTemplate::default()
        };
        task_template.restart_policy.delay_ns = 0;
        ServiceSpec {
            name: name.into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas },
            task_template,
            endpoint: Default::default(),
            update_config: Default::default(),
            rollback_config: Default::default(),
        }
    }

    /// Creates the service as the API does; returns its id.
    pub fn create_service(&mut self, spec: ServiceSpec) -> Result<String, HarnessError> {
        let svc = Service::new(new_id(), spec, self.now());
        let id = svc.id.clone();
        self.propose(Command::CreateService(Box::new(svc)))?;
        Ok(id)
    }

    /// `service scale NAME=N`.
    pub fn scale(&mut self, name: &str, replicas: u64) -> Result<(), HarnessError> {
        let spec = self.state(|s| s.service_by_name(name).map(|s| s.spec.clone()));
        let Some(mut spec) = spec else {
            return Err(HarnessError::Actors(format!("no service {name}")));
        };
        spec.mode = ServiceMode::Replicated { replicas };
        self.propose(Command::UpdateService {
            service: name.into(),
            spec,
            expected_version: None,
            at: self.now(),
        })
    }

    /// The service's tasks, by slot then creation.
    pub fn tasks(&self, service: &str) -> Vec<Task> {
        self.state(|s| {
            let Some(svc) = s.service_by_name(service) else {
                return Vec::new();
            };
            let mut tasks: Vec<Task> = s.tasks_of_service(&svc.id).cloned().collect();
            tasks.sort_by(|a, b| (a.slot, a.created_at, &a.id).cmp(&(b.slot, b.created_at, &b.id)));
            tasks
        })
    }

    /// Tasks of the service observed running and meant to run.
    pub fn running(&self, service: &str) -> usize {
        self.state(|s| running_in(s, service))
    }

    /// The index of the node with this id.
    pub fn node_index(&self, node_id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == node_id)
    }

    /// Cuts node `i` off the manager, both ways.
    pub fn cut(&mut self, i: usize) {
        self.nodes[i].wire.set_cut(true);
    }

    pub fn heal(&mut self, i: usize) {
        self.nodes[i].wire.set_cut(false);
    }

    /// Ends a running task's process with exit code 1 on whichever node runs
    /// it; false if none does.
    pub fn fail(&mut self, task_id: &str) -> bool {
        self.end(task_id, Exit::Code(1))
    }

    /// Ends a running task's process with exit code 0.
    /// Kills the actor of task `task_id` wherever it runs (its agent
    /// restarts it); false if no node has one.
    pub fn kill_task_actor(&mut self, task_id: &str) -> bool {
        let name = format!("task/{task_id}");
        let killed = self.nodes.iter().any(|n| match n.dir.cell(&name) {
            Some(cell) => {
                cell.kill();
                true
            }
            None => false,
        });
        self.step();
        killed
    }

    pub fn finish(&mut self, task_id: &str) -> bool {
        self.end(task_id, Exit::Code(0))
    }

    fn end(&mut self, task_id: &str, exit: Exit) -> bool {
        self.nodes.iter().any(|n| n.driver.end(task_id, exit))
    }

    /// Kills the leader subtree (dispatcher, scheduler, orchestrator) as a
    /// crash would; its supervisor starts new ones, which know only the state.
    pub fn restart_leader(&mut self) -> Result<(), HarnessError> {
        let directory = self.view().directory.clone();
        let Some(old) = directory.get::<DispatcherMsg>("dispatcher") else {
            return Err(HarnessError::Actors("no leader actors running".into()));
        };
        if let Some(leader) = directory.cell("leader") {
            leader.kill();
        }
        self.rt
            .block_on(until("new leader actors", Duration::from_secs(30), || {
                directory
                    .get::<DispatcherMsg>("dispatcher")
                    .is_some_and(|d| d.get_id() != old.get_id())
            }))?;
        Ok(())
    }

    /// How many managers the harness has started (raft ids 1 to this).
    pub fn managers(&self) -> usize {
        self.sims.len()
    }

    /// Manager `i`'s node in `nodes`.
    pub fn manager_node(&self, i: usize) -> usize {
        self.sims[i].node
    }

    /// Manager `i`'s Raft status, if it is up.
    pub fn raft_status(&self, i: usize) -> Option<RaftStatus> {
        if !self.managers.is_up(i) {
            return None;
        }
        let raft = self.managers.ctx(i)?.directory.get::<RaftMsg>("raft")?;
        self.rt.block_on(async move {
            match raft.call(RaftMsg::Status, Some(OWN_LIMIT)).await {
                Ok(ractor::rpc::CallResult::Success(s)) => Some(s),
                _ => None,
            }
        })
    }

    /// The reachable manager that leads in the highest term, by Raft's own word.
    pub fn leader(&self) -> Option<usize> {
        (0..self.sims.len())
            .filter(|&i| self.managers.reachable(i))
            .filter_map(|i| self.raft_status(i).map(|s| (i, s)))
            .filter(|(_, s)| s.is_leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, _)| i)
    }

    /// Reads manager `i`'s own copy of the state (what it has applied).
    pub fn manager_state<R>(&self, i: usize, f: impl FnOnce(&ClusterState, u64) -> R) -> R {
        let ctx = self.managers.ctx(i).unwrap_or_else(|| self.view());
        let guard = ctx.sm.read();
        f(&guard.0, guard.1.index)
    }

    /// Cuts manager `i` off from the other managers and from every agent
    /// (its own node's included), as a network partition would.
    pub fn isolate(&mut self, i: usize) {
        self.managers.set_isolated(i, true);
        self.nodes[self.sims[i].node].wire.set_cut(true);
    }

    pub fn rejoin(&mut self, i: usize) {
        self.managers.set_isolated(i, false);
        self.nodes[self.sims[i].node].wire.set_cut(false);
    }

    /// Stops manager `i`'s actors at once, as kill -9 would stop its
    /// process (its node's agent and tasks stay, cut off until `restart`).
    pub fn crash(&mut self, i: usize) -> Result<(), HarnessError> {
        let Some(root) = self.sims[i].root.take() else {
            return Err(HarnessError::Actors(format!("manager {i} is not running")));
        };
        self.managers.set_up(i, false);
        self.nodes[self.sims[i].node].wire.set_cut(true);
        self.rt.block_on(async move {
            let _ = root.stop_and_wait(None, Some(OWN_LIMIT)).await;
        });
        Ok(())
    }

    /// Starts manager `i` again from what its store holds.
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        if self.sims[i].root.is_some() {
            return Err(HarnessError::Actors(format!("manager {i} is running")));
        }
        let ctx = open_manager(&self.sims[i])?;
        self.managers.replace(i, ctx.clone());
        let root = self.rt.block_on(spawn_manager(&ctx, &self.net))?;
        self.sims[i].root = Some(root);
        self.managers.set_up(i, true);
        self.nodes[self.sims[i].node].wire.set_cut(false);
        Ok(())
    }

    /// Has every manager that is up take a snapshot of what it has applied
    /// and drop its log behind it, so that a peer that needs older entries
    /// is sent a snapshot; returns the leader's snapshot index after.
    pub fn compact(&mut self) -> u64 {
        for i in 0..self.sims.len() {
            if let Some(ctx) = self.managers.ctx(i).filter(|_| self.managers.is_up(i)) {
                ctx.log.want_snapshot();
            }
        }
        self.advance(self.base.raft.tick * 2);
        self.view().log.snapshot_index()
    }

    /// A manager that joins late, as `swarm join --token <manager>` does:
    /// its node is written to the state, it becomes a voter, and it
    /// catches up from the leader (from a snapshot, if the leader's log no
    /// longer has the entries it needs). Returns its index; `caught_up`
    /// waits for it.
    pub fn add_manager(&mut self) -> Result<usize, HarnessError> {
        let i = self.sims.len();
        let ctx = self.new_manager(i, self.nodes.len(), None)?;
        let mut node = node_record(
            &ctx.node_id,
            &format!("manager-{}", i + 1),
            NodeRole::Manager,
        );
        node.raft_id = ctx.raft_id;
        self.propose(Command::UpsertNode(node.clone()))?;
        let heartbeat = self.base.dispatcher_heartbeat;
        let agent = self
            .rt
            .block_on(spawn_agent(&node, &self.managers, heartbeat))?;
        self.nodes.push(agent);
        let change = raft::prelude::ConfChange {
            change_type: raft::prelude::ConfChangeType::AddNode,
            node_id: ctx.raft_id,
            ..Default::default()
        };
        let managers = self.managers.clone();
        self.rt.block_on(on_leader(
            &managers,
            "a leader to add the manager",
            |leader| {
                let change = change.clone();
                async move {
                    let Some(raft) = leader.directory.get::<RaftMsg>("raft") else {
                        return Ok(None);
                    };
                    let answer = raft
                        .call(
                            |reply| RaftMsg::ProposeConfChange { change, reply },
                            Some(OWN_LIMIT),
                        )
                        .await;
                    // Refused (busy, or no longer the leader) or unanswered: again.
                    let Ok(ractor::rpc::CallResult::Success(Ok(index))) = answer else {
                        return Ok(None);
                    };
                    until("the new voter applied", OWN_LIMIT, || {
                        leader.sm.applied().index >= index
                    })
                    .await?;
                    Ok(Some(()))
                }
            },
        ))?;
        Ok(i)
    }

    /// Steps until manager `i` has applied everything the leader had
    /// applied when this was called; returns how long it took.
    pub fn caught_up(&mut self, i: usize, limit: Duration) -> Result<Duration, HarnessError> {
        let target = self.view().sm.applied().index;
        let managers = self.managers.clone();
        self.rt
            .block_on(until("the manager to catch up", limit, || {
                managers
                    .ctx(i)
                    .is_some_and(|c| c.sm.applied().index >= target)
            }))
    }

    /// Who acted as leader (sent appends, heartbeats or snapshots) in each
    /// term so far, as the managers' network saw it.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        self.net.leaders_by_term()
    }

    /// Snapshots that crossed the managers' network whole.
    pub fn snapshots(&self) -> Vec<SnapshotCrossing> {
        self.net.snapshots()
    }

    /// The leader's state as a Raft snapshot carries it.
    pub fn snapshot_data(&self) -> Vec<u8> {
        self.view().sm.snapshot_data().1
    }

    /// The next snapshot a manager sends is lost on the way, every chunk of it.
    pub fn lose_next_snapshot(&mut self) {
        self.net.lose_next_snapshot();
    }

    /// Messages the managers' network delivered and lost so far.
    pub fn net_counts(&self) -> (u64, u64) {
        self.net.counts()
    }

    /// Calls `f` on the harness's runtime with the state after each store
    /// event, as the event is published (`None`: events were missed, look
    /// at the whole state), so a run's progress can be timed while it runs.
    pub fn on_event(
        &self,
        mut f: impl FnMut(&ClusterState, Option<&crate::store::StoreEvent>) + Send + 'static,
    ) {
        let view = self.view();
        let mut rx = view.events.subscribe();
        let sm = view.sm.clone();
        self.rt.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => f(&sm.read().0, Some(&ev)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        f(&sm.read().0, None)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Raft entries appended to the manager's log since the harness
    /// started, and their encoded bytes (compaction does not lower them).
    pub fn raft_appended(&self) -> (u64, u64) {
        self.view().log.appended()
    }

    /// How many tasks the state holds, how many a node has been given
    /// (ASSIGNED or later, not ended) and how many run as they should.
    pub fn task_counts(&self) -> TaskCounts {
        let view = self.view();
        let guard = view.sm.read();
        let mut counts = TaskCounts::default();
        for t in guard.0.tasks.values() {
            counts.total += 1;
            let state = t.status.state;
            if state >= TaskState::Assigned && !state.is_terminal() {
                counts.placed += 1;
            }
            if state == TaskState::Running && t.desired_state == TaskState::Running {
                counts.running += 1;
            }
        }
        counts
    }

    /// Every entry of the Raft log, in order: what a run wrote.
    pub fn log(&self) -> Vec<Vec<u8>> {
        let view = self.view();
        let log = &view.log;
        log.entries_between(log.first_index(), log.last_index() + 1)
            .into_iter()
            .map(|e| e.data.to_vec())
            .collect()
    }

    /// The commands of the log's entries, a packed entry's one by one
    /// (configuration entries left out).
    pub fn commands(&self) -> Vec<Command> {
        self.log()
            .iter()
            .filter_map(|d| shoal_core::codec::decode::<Proposal>(d).ok())
            .flat_map(Proposal::into_commands)
            .collect()
    }
}

/// A census of the state's tasks (`Harness::task_counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub total: usize,
    /// ASSIGNED or later, and not ended.
    pub placed: usize,
    /// RUNNING and desired RUNNING.
    pub running: usize,
}

/// Tasks of `service` observed running and meant to run, in `state`.
pub fn running_in(state: &ClusterState, service: &str) -> usize {
    let Some(svc) = state.service_by_name(service) else {
        return 0;
    };
    state
        .tasks_of_service(&svc.id)
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .count()
}

impl Drop for Harness {
    fn drop(&mut self) {
        let roots: Vec<_> = self
            .nodes
            .iter()
            .map(|n| n.root.clone())
            .chain(self.sims.iter().filter_map(|m| m.root.clone()))
            .collect();
        self.rt.block_on(async {
            for r in roots {
                r.stop(None);
            }
            tokio::time::sleep(STEP).await;
            crate::world::uninstall();
        });
    }
}

/// What every fake node reports: 4 CPUs and 8 GiB.
pub fn fake_machine() -> shoal_core::model::placement::Machine {
    shoal_core::model::sample_machine()
}
