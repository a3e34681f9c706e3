//! Wiring of the manager, leader and worker subtrees of one node (design's
//! actor tree), independent of how the node talks to the outside world.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::dispatcher::{Dispatcher, DispatcherLink, NodeDescription};
use crate::driver::Drivers;
use crate::orchestrator::Orchestrator;
use crate::proposer::Proposer;
use crate::raft::{LogStore, RaftActor, RaftArgs, RaftTimings, RaftTransport};
use crate::scheduler::Scheduler;
use crate::store::{StateMachine, StoreActor, StoreArgs, StoreEvent};
use crate::supervision::{
    ChildSpec, Directory, Intensity, Restart, Supervisor, SupervisorArgs, SupervisorMsg,
};
use crate::worker::{Agent, AgentArgs};

#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub raft: RaftTimings,
    pub dispatcher_heartbeat: Duration,
    /// How long a write may wait for its commit before the user hears an error.
    pub propose_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            raft: RaftTimings::default(),
            dispatcher_heartbeat: crate::dispatcher::DEFAULT_HEARTBEAT,
            propose_timeout: Duration::from_secs(5),
        }
    }
}

/// What the leader actors share: the state, the way to change it, and its events.
pub struct ManagerCtx {
    pub node_id: String,
    pub raft_id: u64,
    pub sm: Arc<StateMachine>,
    pub log: Arc<LogStore>,
    pub events: broadcast::Sender<StoreEvent>,
    pub proposer: Proposer,
    pub directory: Arc<Directory>,
    pub timings: Timings,
}

impl ManagerCtx {
    pub fn new(
        node_id: String,
        raft_id: u64,
        db: &sled::Db,
        directory: Arc<Directory>,
        timings: Timings,
    ) -> Result<Arc<Self>, ManagerOpenError> {
        Ok(Arc::new(ManagerCtx {
            node_id,
            raft_id,
            sm: StateMachine::open(db)?,
            log: LogStore::open(db)?,
            events: broadcast::channel(4096).0,
            proposer: Proposer::new(directory.clone(), timings.propose_timeout),
            directory,
            timings,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerOpenError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Log(#[from] crate::raft::LogError),
}

/// The leader subtree: started when this node's Raft actor leads, stopped when it no longer does.
pub fn leader_spec(ctx: &Arc<ManagerCtx>) -> ChildSpec {
    ChildSpec::new(
        "leader",
        Restart::Permanent,
        Supervisor,
        SupervisorArgs {
            directory: ctx.directory.clone(),
            intensity: Intensity::default(),
            children: vec![
                ChildSpec::new("dispatcher", Restart::Permanent, Dispatcher, ctx.clone()),
                ChildSpec::new("scheduler", Restart::Permanent, Scheduler, ctx.clone()),
                ChildSpec::new(
                    "orchestrator",
                    Restart::Permanent,
                    Orchestrator,
                    ctx.clone(),
                ),
            ],
        },
    )
}

/// The manager subtree: the Store, the Raft actor, and (while leading) the leader subtree.
pub fn manager_spec(ctx: &Arc<ManagerCtx>, transport: Arc<dyn RaftTransport>) -> ChildSpec {
    let leader = leader_spec(ctx);
    let on_leadership = Arc::new(
        move |l: crate::raft::Leadership, manager: ractor::ActorCell| {
            let manager: ractor::ActorRef<SupervisorMsg> = manager.into();
            let msg = if l.is_leader {
                SupervisorMsg::StartChild(leader.clone(), None)
            } else {
                SupervisorMsg::StopChild("leader".into())
            };
            let _ = manager.send_message(msg);
        },
    );
    ChildSpec::new(
        "manager",
        Restart::Permanent,
        Supervisor,
        SupervisorArgs {
            directory: ctx.directory.clone(),
            intensity: Intensity::default(),
            children: vec![
                ChildSpec::new(
                    "store",
                    Restart::Permanent,
                    StoreActor,
                    StoreArgs {
                        sm: ctx.sm.clone(),
                        log: ctx.log.clone(),
                        events: ctx.events.clone(),
                    },
                ),
                ChildSpec::new(
                    "raft",
                    Restart::Permanent,
                    RaftActor,
                    RaftArgs {
                        id: ctx.raft_id,
                        log: ctx.log.clone(),
                        sm: ctx.sm.clone(),
                        timings: ctx.timings.raft,
                        directory: ctx.directory.clone(),
                        transport,
                        on_leadership,
                    },
                ),
            ],
        },
    )
}

/// The worker subtree: the agent (which supervises its task actors).
pub fn worker_spec(
    node: NodeDescription,
    drivers: Arc<Drivers>,
    directory: Arc<Directory>,
    dispatcher: Arc<dyn DispatcherLink>,
    heartbeat: Duration,
) -> ChildSpec {
    ChildSpec::new(
        "worker",
        Restart::Permanent,
        Supervisor,
        SupervisorArgs {
            directory: directory.clone(),
            intensity: Intensity::default(),
            children: vec![ChildSpec::new(
                "agent",
                Restart::Permanent,
                Agent,
                AgentArgs {
                    node,
                    drivers,
                    directory,
                    dispatcher,
                    heartbeat,
                },
            )],
        },
    )
}
