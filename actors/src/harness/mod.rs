//! An in-process cluster for tests and simulations. One manager runs its
//! real store, Raft actor and leader actors (dispatcher, scheduler,
//! orchestrator) on their real code paths; every node (the manager included)
//! runs a real agent whose tasks go to a `FakeDriver`; a `Wire` between each
//! agent and the manager can be cut. Everything runs on the calling thread,
//! in a current-thread tokio runtime whose clock is paused: time moves only
//! when the test drives it (`step`, `advance`, `drive_until`), timers fire in
//! order as it does, and the world's randomness is seeded (`crate::world`),
//! so a seed replays a run entry for entry.
//!
//! Not simulated: several managers (Raft elections draw from raft-rs's own
//! random numbers), the QUIC transport, real processes.

mod fake_driver;
mod link;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::ActorRef;

pub use fake_driver::{Behaviour, DriverCall, FakeDriver, FAKE_DRIVER};
use link::{Wire, WireLink};

use crate::command::{Command, Proposal};
use crate::context::{ManagerCtx, ManagerOpenError, Timings};
use crate::driver::{Driver, Drivers, Exit};
use crate::leader::{manager_spec, worker_spec};
use crate::model::{
    new_id, Availability, Cluster, ClusterSpec, JoinTokens, Node, NodeRole, NodeState, Service,
    ServiceMode, ServiceSpec, Task, TaskState, TaskTemplate,
};
use crate::proposer::ProposeError;
use crate::raft::NoPeers;
use crate::session::{DispatcherMsg, NodeDescription};
use crate::state::ClusterState;
use crate::supervision::{
    ChildSpec, Directory, Intensity, Supervisor, SupervisorArgs, SupervisorMsg,
};

/// How far one `step` moves the clock.
pub const STEP: Duration = Duration::from_millis(10);

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

/// One node of the harness: its agent, its driver and its wire to the manager.
pub struct SimNode {
    pub id: String,
    pub hostname: String,
    pub driver: Arc<FakeDriver>,
    wire: Arc<Wire>,
    root: ActorRef<SupervisorMsg>,
}

pub struct Harness {
    rt: tokio::runtime::Runtime,
    ctx: Arc<ManagerCtx>,
    manager_root: ActorRef<SupervisorMsg>,
    pub nodes: Vec<SimNode>,
    started: tokio::time::Instant,
    _db: sled::Db,
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

/// A node record as the harness (and unit tests) make them: ready to register, 4 CPUs, 8 GiB.
pub fn node_record(id: &str, hostname: &str, role: NodeRole) -> Node {
    Node {
        id: id.to_string(),
        raft_id: u64::from(role == NodeRole::Manager),
        hostname: hostname.to_string(),
        role,
        availability: Availability::Active,
        labels: Default::default(),
        state: NodeState::Unknown,
        status_message: String::new(),
        addr: format!("{hostname}:2377"),
        drivers: Vec::new(),
        sandbox_error: None,
        machine: fake_machine(),
        cert_generation: 0,
        created_at: epoch(),
        updated_at: epoch(),
        version: 0,
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
        Self::with_timings(seed, workers, Timings::default())
    }

    pub fn with_timings(
        seed: u64,
        workers: usize,
        timings: Timings,
    ) -> Result<Harness, HarnessError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()?;
        let (ctx, manager_root, nodes, db, started) = rt.block_on(async {
            crate::world::install(seed, epoch());
            let started = tokio::time::Instant::now();
            let db = sled::Config::new().temporary(true).open()?;
            let directory = Directory::new();
            let ctx = ManagerCtx::new(new_id(), 1, &db, directory.clone(), timings)?;
            ctx.log.in_memory();
            ctx.log.bootstrap(vec![1])?;
            let manager_root = spawn_root(directory.clone()).await?;
            start_child(&manager_root, manager_spec(&ctx, Arc::new(NoPeers))).await?;
            until("the manager to lead", Duration::from_secs(30), || {
                directory.get::<DispatcherMsg>("dispatcher").is_some()
            })
            .await?;
            let mut members = vec![node_record(&ctx.node_id, "manager-1", NodeRole::Manager)];
            for i in 1..=workers {
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
            };
            ctx.proposer
                .propose(Command::InitCluster {
                    cluster,
                    node: members[0].clone(),
                })
                .await?;
            for n in &members[1..] {
                ctx.proposer.propose(Command::UpsertNode(n.clone())).await?;
            }
            let mut nodes = Vec::new();
            for n in &members {
                let driver = FakeDriver::new();
                let mut drivers = Drivers::new();
                drivers.insert(FAKE_DRIVER.into(), driver.clone() as Arc<dyn Driver>);
                let wire = Wire::new(directory.clone());
                let node_dir = Directory::new();
                let root = spawn_root(node_dir.clone()).await?;
                let desc = NodeDescription {
                    node_id: n.id.clone(),
                    hostname: n.hostname.clone(),
                    addr: n.addr.clone(),
                    drivers: vec![driver.info()],
                    sandbox_error: None,
                    machine: fake_machine(),
                };
                start_child(
                    &root,
                    worker_spec(
                        desc,
                        Arc::new(drivers),
                        node_dir,
                        Arc::new(WireLink(wire.clone())),
                        timings.dispatcher_heartbeat,
                        Arc::new(crate::session::NoProxy),
                        Arc::new(crate::session::NoProxy),
                    ),
                )
                .await?;
                nodes.push(SimNode {
                    id: n.id.clone(),
                    hostname: n.hostname.clone(),
                    driver,
                    wire,
                    root,
                });
            }
            let sm = ctx.sm.clone();
            until("every node to be ready", Duration::from_secs(30), || {
                let guard = sm.read();
                guard.0.nodes.len() == members.len()
                    && guard.0.nodes.values().all(|n| n.state == NodeState::Ready)
            })
            .await?;
            Ok::<_, HarnessError>((ctx, manager_root, nodes, db, started))
        })?;
        Ok(Harness {
            rt,
            ctx,
            manager_root,
            nodes,
            started,
            _db: db,
        })
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
        let sm = self.ctx.sm.clone();
        self.rt.block_on(until(what, limit, || done(&sm.read().0)))
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

    /// Proposes `cmd` and waits (on the harness's clock) until it is applied.
    pub fn propose(&mut self, cmd: Command) -> Result<(), HarnessError> {
        let proposer = self.ctx.proposer.clone();
        Ok(self.rt.block_on(proposer.propose(cmd))?)
    }

    /// Reads the manager's state.
    pub fn state<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.ctx.sm.read().0)
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
        let svc = Service::new(spec, self.now());
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
        running_in(&self.ctx.sm.read().0, service)
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
    pub fn finish(&mut self, task_id: &str) -> bool {
        self.end(task_id, Exit::Code(0))
    }

    fn end(&mut self, task_id: &str, exit: Exit) -> bool {
        self.nodes.iter().any(|n| n.driver.end(task_id, exit))
    }

    /// Kills the leader subtree (dispatcher, scheduler, orchestrator) as a
    /// crash would; its supervisor starts new ones, which know only the state.
    pub fn restart_leader(&mut self) -> Result<(), HarnessError> {
        let directory = self.ctx.directory.clone();
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

    /// Calls `f` on the harness's runtime with the state after each store
    /// event, as the event is published (`None`: events were missed, look
    /// at the whole state), so a run's progress can be timed while it runs.
    pub fn on_event(
        &self,
        mut f: impl FnMut(&ClusterState, Option<&crate::store::StoreEvent>) + Send + 'static,
    ) {
        let mut rx = self.ctx.events.subscribe();
        let sm = self.ctx.sm.clone();
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
        self.ctx.log.appended()
    }

    /// How many tasks the state holds, how many a node has been given
    /// (ASSIGNED or later, not ended) and how many run as they should.
    pub fn task_counts(&self) -> TaskCounts {
        let guard = self.ctx.sm.read();
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
        let log = &self.ctx.log;
        log.entries_between(log.first_index(), log.last_index() + 1)
            .into_iter()
            .map(|e| e.data.to_vec())
            .collect()
    }

    /// The commands of the log's entries (configuration entries left out).
    pub fn commands(&self) -> Vec<Command> {
        self.log()
            .iter()
            .filter_map(|d| crate::codec::decode::<Proposal>(d).ok())
            .map(|p| p.command)
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
            .chain([self.manager_root.clone()])
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
pub fn fake_machine() -> crate::constraints::Machine {
    crate::constraints::Machine {
        os: "linux".into(),
        arch: "x86_64".into(),
        nano_cpus: 4_000_000_000,
        memory_bytes: 8 << 30,
        engine_labels: Default::default(),
    }
}
