//! Actor-facing ends of the transport: Raft messages to peers, dispatcher
//! messages to remote agents, and the agent's way to the leader's dispatcher.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use shoal_actors::codec;
use shoal_actors::dispatcher::{AgentLink, DispatcherLink, DispatcherMsg};
use shoal_actors::raft::RaftTransport;
use shoal_actors::store::StateMachine;
use shoal_actors::supervision::Directory;
use shoal_actors::worker::AgentMsg;

use super::wire::{OneWay, ToAgent, ToDispatcher};
use crate::transport::Transport;

/// The node's transport, once it is bound (it is not before `swarm init`/`join`).
pub type TransportSlot = Arc<RwLock<Option<Arc<Transport>>>>;

fn send_to(slot: &TransportSlot, addr: &str, msg: &OneWay) {
    let Some(t) = slot.read().clone() else {
        return;
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        tracing::warn!(%addr, "not a socket address");
        return;
    };
    let Ok(bytes) = codec::encode(msg) else {
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = t.send(addr, &bytes).await {
            tracing::debug!(%addr, error = %e, "send failed");
        }
    });
}

/// Raft's outbound messages, to the address of each peer manager.
pub struct RaftNet {
    pub raft_id: u64,
    pub own_addr: String,
    pub transport: TransportSlot,
    pub sm: Arc<StateMachine>,
    /// Learned from inbound messages: a new manager answers a leader it has
    /// not yet read about in the log.
    pub book: RwLock<HashMap<u64, String>>,
}

impl RaftNet {
    pub fn learn(&self, raft_id: u64, addr: &str) {
        if self.book.read().get(&raft_id).map(String::as_str) != Some(addr) {
            self.book.write().insert(raft_id, addr.to_string());
        }
    }

    fn addr_of(&self, raft_id: u64) -> Option<String> {
        let known = self
            .sm
            .read()
            .0
            .nodes
            .values()
            .find(|n| n.raft_id == raft_id)
            .map(|n| n.addr.clone());
        known.or_else(|| self.book.read().get(&raft_id).cloned())
    }
}

impl RaftTransport for RaftNet {
    fn send(&self, msgs: Vec<raft::prelude::Message>) {
        for m in msgs {
            let Some(addr) = self.addr_of(m.to) else {
                tracing::debug!(to = m.to, "no address for raft peer");
                continue;
            };
            let Ok(bytes) = m.write_to_bytes() else {
                continue;
            };
            let msg = OneWay::Raft {
                from: self.raft_id,
                from_addr: self.own_addr.clone(),
                msg: bytes,
            };
            send_to(&self.transport, &addr, &msg);
        }
    }
}

/// The dispatcher's handle on an agent of another node.
pub struct RemoteAgent {
    pub transport: TransportSlot,
    pub addr: String,
}

impl AgentLink for RemoteAgent {
    fn send(&self, msg: AgentMsg) {
        let wire = match msg {
            AgentMsg::Assignments(tasks) => ToAgent::Assignments(tasks),
            AgentMsg::SessionRejected => ToAgent::SessionRejected,
            AgentMsg::Tick | AgentMsg::Status(..) | AgentMsg::Recheck => return,
        };
        send_to(&self.transport, &self.addr, &OneWay::ToAgent(wire));
    }
}

/// The agent reaches the dispatcher in this process when this node leads,
/// and the proxy (which forwards to the managers) otherwise.
pub struct ClusterLink(pub Arc<Directory>);

impl DispatcherLink for ClusterLink {
    fn current(&self) -> Option<ActorRef<DispatcherMsg>> {
        self.0.get("dispatcher").or_else(|| self.0.get(PROXY_NAME))
    }
}

pub const PROXY_NAME: &str = "dispatcher-proxy";

/// Forwards an agent's dispatcher messages to a manager, which hands them to
/// the leader's dispatcher (relaying if it does not lead).
#[derive(Clone)]
pub struct DispatcherProxy;

#[derive(Clone)]
pub struct ProxyArgs {
    pub transport: TransportSlot,
    pub own_addr: String,
    /// Where to find managers (this node first, if it is one); the proxy
    /// moves on when one does not answer.
    pub managers: Arc<RwLock<Vec<String>>>,
    /// How long to wait for a manager before trying the next one.
    pub patience: std::time::Duration,
}

pub struct ProxyState {
    args: ProxyArgs,
    /// Index of the manager that answered last.
    current: usize,
}

impl ProxyState {
    /// Sends to the manager that answered last, moving on through the list
    /// until one answers; a manager that does not lead relays to the leader.
    async fn deliver(&mut self, wire: ToDispatcher) {
        let Some(t) = self.args.transport.read().clone() else {
            return;
        };
        let Ok(bytes) = codec::encode(&super::wire::Request::Dispatcher(wire)) else {
            return;
        };
        let managers = self.args.managers.read().clone();
        let targets: Vec<String> = (0..managers.len())
            .map(|i| managers[(self.current + i) % managers.len()].clone())
            .collect();
        for (i, addr) in targets.iter().enumerate() {
            let Ok(sock) = addr.parse::<SocketAddr>() else {
                continue;
            };
            // A manager that does not answer within half a heartbeat is
            // skipped, so a dead one cannot make this node miss heartbeats.
            let answer = tokio::time::timeout(self.args.patience, t.request(sock, &bytes)).await;
            match answer.unwrap_or_else(|_| {
                Err(crate::transport::TransportError::Stream(
                    sock,
                    "no answer in time".into(),
                ))
            }) {
                Ok(answer) => {
                    if let Some(pos) = managers.iter().position(|m| m == addr) {
                        self.current = pos;
                    }
                    if !matches!(codec::decode(&answer), Ok(super::wire::Response::Done)) {
                        tracing::debug!(%addr, "dispatcher message not accepted");
                    }
                    return;
                }
                Err(e) => tracing::debug!(%addr, attempt = i, error = %e, "manager unreachable"),
            }
        }
    }
}

impl Actor for DispatcherProxy {
    type Msg = DispatcherMsg;
    type State = ProxyState;
    type Arguments = ProxyArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<DispatcherMsg>,
        args: ProxyArgs,
    ) -> Result<ProxyState, ActorProcessingErr> {
        Ok(ProxyState { args, current: 0 })
    }

    async fn handle(
        &self,
        _myself: ActorRef<DispatcherMsg>,
        msg: DispatcherMsg,
        st: &mut ProxyState,
    ) -> Result<(), ActorProcessingErr> {
        let wire = match msg {
            DispatcherMsg::Register { node, .. } => ToDispatcher::Register {
                node_id: node.node_id,
                hostname: node.hostname,
                addr: st.args.own_addr.clone(),
                drivers: node.drivers,
            },
            DispatcherMsg::Heartbeat { node_id, .. } => ToDispatcher::Heartbeat {
                node_id,
                addr: st.args.own_addr.clone(),
            },
            DispatcherMsg::Status { node_id, updates } => ToDispatcher::Status { node_id, updates },
            DispatcherMsg::Store(_) | DispatcherMsg::Tick => return Ok(()),
        };
        st.deliver(wire).await;
        Ok(())
    }
}
