//! The node as the cluster protocol's handler (`inbound.rs`) sees it: what
//! it may read (the manager context, the members a worker knows, the actors
//! by name, the Raft network and the transport) and what it may be asked to
//! do for a peer. `Runtime` implements it; the handler holds it weakly, so a
//! node that is shutting down answers no more requests.

use std::sync::Arc;

use shoal_actors::context::ManagerCtx;
use shoal_actors::driver::BoxFuture;
use shoal_actors::supervision::Directory;
use shoal_core::command::Command;
use shoal_core::model::{Availability, DriverInfo};

use super::members::{PeerView, PushTerm};
use super::net::RaftNet;
use super::wire::{Response, RoleChange, ToDispatcher};
use crate::runtime::error::NodeError;
use crate::transport::Transport;

pub trait ClusterNode: Send + Sync + 'static {
    /// This node's manager context (`NotManager` on a worker).
    fn manager(&self) -> Result<Arc<ManagerCtx>, NodeError>;
    /// The members the leader's dispatcher sent last (a worker's view).
    fn peers(&self) -> &PeerView;
    /// The term of the leader whose pushes this node takes.
    fn push_term(&self) -> &PushTerm;
    /// The node's actors, by name.
    fn directory(&self) -> &Directory;
    fn raft_net(&self) -> Option<Arc<RaftNet>>;
    fn transport(&self) -> Option<Arc<Transport>>;

    /// A node without a certificate asks to join with `token`; it reads
    /// record formats up to `max_format`.
    fn join(
        self: Arc<Self>,
        token: String,
        hostname: String,
        addr: String,
        drivers: Vec<DriverInfo>,
        availability: Availability,
        max_format: u32,
    ) -> BoxFuture<Response>;
    /// A node asks for the certificate the state gives it now.
    fn renew_for(&self, node_id: &str) -> Result<Response, NodeError>;
    /// A write forwarded here (this node must lead): the index of its entry.
    fn propose_here_at(self: Arc<Self>, cmd: Command) -> BoxFuture<Result<u64, NodeError>>;
    /// Writes forwarded together (`request_bytes` long), a result each.
    fn propose_many_here(
        self: Arc<Self>,
        cmds: Vec<Command>,
        request_bytes: usize,
    ) -> BoxFuture<Response>;
    fn add_voter_here(self: Arc<Self>, raft_id: u64) -> BoxFuture<Result<(), NodeError>>;
    fn remove_voter_here(self: Arc<Self>, raft_id: u64) -> BoxFuture<Result<(), NodeError>>;
    /// A manager tells this node its role changed.
    fn change_role(self: Arc<Self>, change: RoleChange) -> BoxFuture<Result<(), NodeError>>;
    /// A task's log from `offset`, read on this node.
    fn local_task_log(self: Arc<Self>, task_id: String, offset: u64) -> BoxFuture<Vec<u8>>;
    /// An agent's message for the leader's dispatcher.
    fn to_dispatcher(self: Arc<Self>, m: ToDispatcher) -> BoxFuture<Response>;
}
