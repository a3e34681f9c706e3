//! `Runtime` as the cluster protocol's handler sees it (`cluster::node`).

use std::sync::Arc;

use shoal_actors::context::ManagerCtx;
use shoal_actors::driver::BoxFuture;
use shoal_actors::supervision::Directory;
use shoal_core::command::Command;
use shoal_core::model::{Availability, DriverInfo};

use super::{NodeError, Runtime};
use crate::cluster::members::{PeerView, PushTerm};
use crate::cluster::net::RaftNet;
use crate::cluster::node::ClusterNode;
use crate::cluster::wire::{Response, RoleChange, ToDispatcher};
use crate::transport::Transport;

impl ClusterNode for Runtime {
    fn manager(&self) -> Result<Arc<ManagerCtx>, NodeError> {
        Runtime::manager(self)
    }

    fn peers(&self) -> &PeerView {
        &self.peers
    }

    fn push_term(&self) -> &PushTerm {
        &self.push_term
    }

    fn directory(&self) -> &Directory {
        &self.directory
    }

    fn raft_net(&self) -> Option<Arc<RaftNet>> {
        Runtime::raft_net(self)
    }

    fn transport(&self) -> Option<Arc<Transport>> {
        Runtime::transport(self)
    }

    fn join(
        self: Arc<Self>,
        token: String,
        hostname: String,
        addr: String,
        drivers: Vec<DriverInfo>,
        availability: Availability,
        max_format: u32,
    ) -> BoxFuture<Response> {
        Box::pin(async move {
            self.handle_join(&token, hostname, addr, drivers, availability, max_format)
                .await
        })
    }

    fn renew_for(&self, node_id: &str) -> Result<Response, NodeError> {
        Runtime::renew_for(self, node_id)
    }

    fn propose_here_at(self: Arc<Self>, cmd: Command) -> BoxFuture<Result<u64, NodeError>> {
        Box::pin(async move { Runtime::propose_here_at(&self, cmd).await })
    }

    fn propose_many_here(
        self: Arc<Self>,
        cmds: Vec<Command>,
        request_bytes: usize,
    ) -> BoxFuture<Response> {
        Box::pin(async move { Runtime::propose_many_here(&self, cmds, request_bytes).await })
    }

    fn add_voter_here(self: Arc<Self>, raft_id: u64) -> BoxFuture<Result<(), NodeError>> {
        Box::pin(async move { Runtime::add_voter_here(&self, raft_id).await })
    }

    fn remove_voter_here(self: Arc<Self>, raft_id: u64) -> BoxFuture<Result<(), NodeError>> {
        Box::pin(async move { Runtime::remove_voter_here(&self, raft_id).await })
    }

    fn change_role(self: Arc<Self>, change: RoleChange) -> BoxFuture<Result<(), NodeError>> {
        Box::pin(async move { Runtime::change_role(&self, change).await })
    }

    fn local_task_log(self: Arc<Self>, task_id: String, offset: u64) -> BoxFuture<Vec<u8>> {
        Box::pin(async move { Runtime::local_task_log(&self, &task_id, offset).await })
    }

    fn to_dispatcher(self: Arc<Self>, m: ToDispatcher) -> BoxFuture<Response> {
        Box::pin(async move { Runtime::to_dispatcher(&self, m).await })
    }
}
