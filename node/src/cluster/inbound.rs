//! What a node does with what arrives from its peers.

use std::sync::{Arc, Weak};

use protobuf::Message as _;
use shoal_actors::driver::BoxFuture;
use shoal_actors::raft::RaftMsg;
use shoal_actors::session::AgentMsg;
use shoal_core::codec;

use super::members::Standing;
use super::node::ClusterNode;
use super::wire::{OneWay, Refusal, Request, Response, ToAgent};
use crate::certs::role_unit;
use crate::transport::{Inbound, InboundError, PeerId};
use shoal_core::model::{is_valid_id, NodeRole};

pub struct ClusterInbound(pub Weak<dyn ClusterNode>);

/// A node without the cluster state (a worker) goes by the members the
/// leader's dispatcher sent it last (`members::PeerView`), and by the
/// certificate's role for a node they do not name; a manager reads the
/// state, and falls back on the certificate only for a node its replica
/// does not know yet (it is still catching up with the log).
pub fn standing(rt: &dyn ClusterNode, peer: &PeerId) -> Standing {
    let from_cert = if peer.role == role_unit(NodeRole::Manager) {
        Standing::Manager
    } else {
        Standing::Worker
    };
    let Ok(m) = rt.manager() else {
        return rt.peers().standing(peer, from_cert);
    };
    let guard = m.sm.read();
    let state = &guard.0;
    if state
        .cluster
        .as_ref()
        .is_some_and(|c| c.removed_nodes.contains(&peer.node_id))
    {
        return Standing::Removed;
    }
    match state.nodes.get(&peer.node_id) {
        None => from_cert,
        Some(n) if peer.generation < n.cert_generation => Standing::Stale,
        Some(n) if n.role == NodeRole::Manager => Standing::Manager,
        Some(_) => Standing::Worker,
    }
}

impl ClusterInbound {
    fn is_manager(&self, rt: &dyn ClusterNode, peer: &PeerId) -> bool {
        standing(rt, peer) == Standing::Manager
    }
}

impl Inbound for ClusterInbound {
    fn admits(&self, peer: &PeerId) -> Result<(), &'static str> {
        let Some(rt) = self.0.upgrade() else {
            return Err("node is shutting down");
        };
        match standing(rt.as_ref(), peer) {
            Standing::Removed => Err("node removed from the swarm"),
            _ => Ok(()),
        }
    }

    fn message(&self, peer: &PeerId, bytes: Vec<u8>) -> Result<(), InboundError> {
        let Some(rt) = self.0.upgrade() else {
            return Ok(());
        };
        let msg: OneWay = codec::decode(&bytes).map_err(InboundError::Decode)?;
        if !self.is_manager(rt.as_ref(), peer) {
            // Well-formed but not allowed: dropped, the connection stays (a
            // node mid-promotion may still speak with its old certificate).
            static QUIET: std::sync::OnceLock<crate::transport::quiet::Quiet> =
                std::sync::OnceLock::new();
            let quiet = QUIET.get_or_init(|| {
                crate::transport::quiet::Quiet::new(std::time::Duration::from_secs(10))
            });
            match quiet.admit() {
                Some(suppressed) => {
                    tracing::warn!(node = %peer.node_id, suppressed, "a manager's message from a node that is not a manager now; dropped")
                }
                None => {
                    tracing::debug!(node = %peer.node_id, "a manager's message from a node that is not one; dropped")
                }
            }
            return Ok(());
        }
        match msg {
            OneWay::Raft {
                from,
                from_addr,
                msg,
            } => {
                let m = raft_message(from, &msg)?;
                if let Some(net) = rt.raft_net() {
                    net.learn(from, &from_addr);
                }
                if let Some(raft) = rt.directory().get::<RaftMsg>("raft") {
                    let _ = raft.send_message(RaftMsg::Step(Box::new(m)));
                }
            }
            OneWay::RaftChunk {
                from,
                from_addr,
                snapshot,
                index,
                total,
                data,
            } => {
                let Some(net) = rt.raft_net() else {
                    return Ok(());
                };
                let whole = match net.chunks.add(from, snapshot, index, total, data) {
                    Ok(Some(whole)) => whole,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        tracing::debug!(from, error = %e, "snapshot chunk dropped");
                        return Ok(());
                    }
                };
                let m = raft_message(from, &whole)?;
                net.learn(from, &from_addr);
                if let Some(raft) = rt.directory().get::<RaftMsg>("raft") {
                    let _ = raft.send_message(RaftMsg::Step(Box::new(m)));
                }
            }
            OneWay::ToAgent { term, .. } if !rt.push_term().admit(term) => {
                tracing::info!(from = %peer.node_id, term, "a push of a deposed leader's term; dropped");
            }
            OneWay::ToAgent {
                msg: ToAgent::Members(members),
                ..
            } => {
                let managers: Vec<&str> = members
                    .nodes
                    .iter()
                    .filter(|n| n.role == NodeRole::Manager)
                    .map(|n| n.id.as_str())
                    .collect();
                tracing::info!(from = %peer.node_id, nodes = members.nodes.len(), managers = %managers.join(","), removed = %members.removed.join(","), "learned the swarm's members");
                let removed = rt.peers().update(members);
                if let Some(t) = rt.transport() {
                    for id in removed {
                        t.recheck(&id);
                    }
                }
            }
            OneWay::ToAgent { msg: m, .. } => {
                if let Some(agent) = rt.directory().get::<AgentMsg>("agent") {
                    let _ = agent.send_message(match m {
                        ToAgent::Assignments(tasks, files) => AgentMsg::Assignments(tasks, files),
                        ToAgent::SessionRejected => AgentMsg::SessionRejected,
                        ToAgent::Endpoints(table) => AgentMsg::Endpoints(table),
                        ToAgent::Networks(table) => AgentMsg::Networks(std::sync::Arc::new(table)),
                        ToAgent::Members(members) => {
                            AgentMsg::Members(std::sync::Arc::new(members))
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn request(
        &self,
        peer: Option<&PeerId>,
        bytes: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, InboundError>> {
        let rt = self.0.upgrade();
        let peer = peer.cloned();
        Box::pin(async move {
            let Some(rt) = rt else {
                return Err(InboundError::Refused("node is shutting down"));
            };
            let req: Request = codec::decode(&bytes).map_err(InboundError::Decode)?;
            let standing = peer.as_ref().map(|p| standing(rt.as_ref(), p));
            let answer = match standing {
                // A node whose role change did not reach it may still fetch
                // the certificate the state gives it now; nothing else.
                Some(Standing::Stale) if !matches!(req, Request::RenewCert) => {
                    Response::Refused(Refusal::Superseded)
                }
                _ => {
                    let manager = standing == Some(Standing::Manager);
                    match req {
                        Request::ProposeMany(cmds) if manager => {
                            rt.clone().propose_many_here(cmds, bytes.len()).await
                        }
                        req => handle(&rt, peer, manager, req).await?,
                    }
                }
            };
            codec::encode(&answer).map_err(InboundError::Encode)
        })
    }
}

/// The Raft message inside a `OneWay::Raft` envelope: raft-rs's protobuf,
/// refused unless it comes from the sender the envelope names.
pub fn raft_message(from: u64, msg: &[u8]) -> Result<raft::prelude::Message, InboundError> {
    let m = raft::prelude::Message::parse_from_bytes(msg).map_err(InboundError::Raft)?;
    if m.from != from {
        return Err(InboundError::Refused(
            "raft message sender does not match its envelope",
        ));
    }
    Ok(m)
}

fn refused(message: &str) -> Response {
    Response::Refused(Refusal::Forbidden(message.into()))
}

/// `manager`: whether the replicated state makes the peer a manager now.
async fn handle(
    rt: &Arc<dyn ClusterNode>,
    peer: Option<PeerId>,
    manager: bool,
    req: Request,
) -> Result<Response, InboundError> {
    let Some(peer) = peer else {
        // A node without a certificate may only join.
        return match req {
            Request::Join {
                token,
                hostname,
                addr,
                drivers,
                availability,
                max_format,
            } => Ok(rt
                .clone()
                .join(token, hostname, addr, drivers, availability, max_format)
                .await),
            _ => Err(InboundError::Refused(
                "a request without a certificate that is not a join",
            )),
        };
    };
    Ok(match req {
        Request::Join { .. } => refused("this node is already part of the swarm"),
        Request::Propose(cmd) if manager => match rt.clone().propose_here_at(*cmd).await {
            Ok(index) => Response::Applied(index),
            Err(e) => Response::from(Err(e)),
        },
        Request::AddVoter(id) if manager => rt.clone().add_voter_here(id).await.into(),
        Request::RemoveVoter(id) if manager => rt.clone().remove_voter_here(id).await.into(),
        Request::RoleChange(change) if manager => rt.clone().change_role(*change).await.into(),
        Request::TransferLeader(to) if manager => {
            if let Some(raft) = rt.directory().get::<shoal_actors::raft::RaftMsg>("raft") {
                let _ = raft.send_message(shoal_actors::raft::RaftMsg::TransferLeader(to));
            }
            Response::Done
        }
        Request::TaskLog { task_id, .. } if !is_valid_id(&task_id) => {
            Response::Refused(Refusal::BadRequest(format!("invalid task id {task_id:?}")))
        }
        Request::TaskLog { task_id, offset } if manager => {
            Response::Log(rt.clone().local_task_log(task_id, offset).await)
        }
        Request::RenewCert => rt
            .renew_for(&peer.node_id)
            .unwrap_or_else(|e| Response::from(Err(e))),
        Request::Dispatcher(m) => {
            let own = match &m {
                super::wire::ToDispatcher::Register { node_id, .. }
                | super::wire::ToDispatcher::Heartbeat { node_id, .. }
                | super::wire::ToDispatcher::Status { node_id, .. } => *node_id == peer.node_id,
            };
            if !own && !manager {
                refused("a node may only speak for itself")
            } else {
                rt.clone().to_dispatcher(m).await
            }
        }
        Request::Propose(_)
        | Request::ProposeMany(_)
        | Request::AddVoter(_)
        | Request::RemoveVoter(_)
        | Request::RoleChange(_)
        | Request::TransferLeader(_)
        | Request::TaskLog { .. } => refused("only managers may do that"),
    })
}
