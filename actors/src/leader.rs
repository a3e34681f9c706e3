//! Wiring of the manager, leader and worker subtrees of one node (design's
//! actor tree), independent of how the node talks to the outside world.

use std::sync::Arc;
use std::time::Duration;

use crate::context::ManagerCtx;
use crate::dispatcher::Dispatcher;
use crate::driver::Drivers;
use crate::orchestrator::Orchestrator;
use crate::raft::{RaftActor, RaftArgs, RaftTransport};
use crate::scheduler::Scheduler;
use crate::session::{DispatcherLink, EndpointSink, NetworkSink, NodeDescription};
use crate::store::{StoreActor, StoreArgs};
use crate::supervision::{
    ChildSpec, Directory, Intensity, Restart, Supervisor, SupervisorArgs, SupervisorMsg,
};
use crate::updater::{Updater, UpdaterArgs};
use crate::worker::{Agent, AgentArgs};

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
                ChildSpec::new(
                    "updater",
                    Restart::Permanent,
                    Updater,
                    UpdaterArgs {
                        ctx: ctx.loop_ctx(),
                        directory: ctx.directory.clone(),
                    },
                ),
            ],
        },
    )
}

/// The manager subtree: the Store, the Raft actor, and (while leading) the leader subtree.
pub fn manager_spec(ctx: &Arc<ManagerCtx>, transport: Arc<dyn RaftTransport>) -> ChildSpec {
    let leader = leader_spec(ctx);
    let leading = ctx.clone();
    let on_leadership = Arc::new(
        move |l: crate::raft::Leadership, manager: ractor::ActorCell| {
            let manager: ractor::ActorRef<SupervisorMsg> = manager.into();
            leading.leading_term.store(
                if l.is_leader { l.term } else { 0 },
                std::sync::atomic::Ordering::Release,
            );
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
                        metrics: ctx.directory.metrics.clone(),
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
    endpoints: Arc<dyn EndpointSink>,
    networks: Arc<dyn NetworkSink>,
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
                    endpoints,
                    networks,
                },
            )],
        },
    )
}
