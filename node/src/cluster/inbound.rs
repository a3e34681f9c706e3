//! What a node does with what arrives from its peers.

use std::sync::{Arc, Weak};

use protobuf::Message as _;
use shoal_actors::codec;
use shoal_actors::driver::BoxFuture;
use shoal_actors::raft::RaftMsg;
use shoal_actors::worker::AgentMsg;

use super::wire::{OneWay, Request, Response, ToAgent};
use crate::certs::role_unit;
use crate::runtime::Runtime;
use crate::transport::{Inbound, PeerId};

pub struct ClusterInbound(pub Weak<Runtime>);

fn is_manager(peer: &PeerId) -> bool {
    peer.role == role_unit(shoal_actors::model::NodeRole::Manager)
}

impl Inbound for ClusterInbound {
    fn admits(&self, peer: &PeerId) -> bool {
        let Some(rt) = self.0.upgrade() else {
            return false;
        };
        let Ok(m) = rt.manager() else {
            return true;
        };
        let guard = m.sm.read();
        !guard
            .0
            .cluster
            .as_ref()
            .is_some_and(|c| c.removed_nodes.contains(&peer.node_id))
    }

    fn message(&self, peer: &PeerId, bytes: Vec<u8>) -> Result<(), String> {
        let Some(rt) = self.0.upgrade() else {
            return Ok(());
        };
        let msg: OneWay = codec::decode(&bytes).map_err(|e| e.to_string())?;
        if !is_manager(peer) {
            return Err(format!("worker {} sent a manager's message", peer.node_id));
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
                if let Some(raft) = rt.directory.get::<RaftMsg>("raft") {
                    let _ = raft.send_message(RaftMsg::Step(Box::new(m)));
                }
            }
            OneWay::ToAgent(m) => {
                if let Some(agent) = rt.directory.get::<AgentMsg>("agent") {
                    let _ = agent.send_message(match m {
                        ToAgent::Assignments(tasks) => AgentMsg::Assignments(tasks),
                        ToAgent::SessionRejected => AgentMsg::SessionRejected,
                    });
                }
            }
        }
        Ok(())
    }

    fn request(&self, peer: Option<&PeerId>, bytes: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let rt = self.0.upgrade();
        let peer = peer.cloned();
        Box::pin(async move {
            let Some(rt) = rt else {
                return Err("node is shutting down".into());
            };
            let req: Request = codec::decode(&bytes).map_err(|e| e.to_string())?;
            let answer = handle(&rt, peer, req).await?;
            codec::encode(&answer).map_err(|e| e.to_string())
        })
    }
}

/// The Raft message inside a `OneWay::Raft` envelope: raft-rs's protobuf,
/// refused unless it comes from the sender the envelope names.
pub fn raft_message(from: u64, msg: &[u8]) -> Result<raft::prelude::Message, String> {
    let m = raft::prelude::Message::parse_from_bytes(msg).map_err(|e| e.to_string())?;
    if m.from != from {
        return Err("raft message sender does not match its envelope".into());
    }
    Ok(m)
}

fn refused(message: &str) -> Response {
    Response::Error {
        status: 403,
        message: message.into(),
    }
}

async fn handle(rt: &Arc<Runtime>, peer: Option<PeerId>, req: Request) -> Result<Response, String> {
    let Some(peer) = peer else {
        // A node without a certificate may only join.
        return match req {
            Request::Join {
                token,
                hostname,
                addr,
                drivers,
            } => Ok(rt.handle_join(&token, hostname, addr, drivers).await),
            _ => Err("a request without a certificate that is not a join".into()),
        };
    };
    Ok(match req {
        Request::Join { .. } => refused("this node is already part of the swarm"),
        Request::Propose(cmd) if is_manager(&peer) => rt.propose_here(*cmd).await.into(),
        Request::AddVoter(id) if is_manager(&peer) => rt.add_voter_here(id).await.into(),
        Request::RemoveVoter(id) if is_manager(&peer) => rt.remove_voter_here(id).await.into(),
        Request::RoleChange(change) if is_manager(&peer) => rt.change_role(*change).await.into(),
        Request::TransferLeader(to) if is_manager(&peer) => {
            if let Some(raft) = rt.directory.get::<shoal_actors::raft::RaftMsg>("raft") {
                let _ = raft.send_message(shoal_actors::raft::RaftMsg::TransferLeader(to));
            }
            Response::Done
        }
        Request::TaskLog { task_id, offset } if is_manager(&peer) => {
            Response::Log(rt.local_task_log(&task_id, offset).await)
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
            if !own && !is_manager(&peer) {
                refused("a node may only speak for itself")
            } else {
                rt.to_dispatcher(m).await
            }
        }
        Request::Propose(_)
        | Request::AddVoter(_)
        | Request::RemoveVoter(_)
        | Request::RoleChange(_)
        | Request::TransferLeader(_)
        | Request::TaskLog { .. } => refused("only managers may do that"),
    })
}
