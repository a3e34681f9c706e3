//! Actor-facing ends of the transport: Raft messages to peers, dispatcher
//! messages to remote agents, and the agent's way to the leader's dispatcher.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use shoal_actors::raft::RaftTransport;
use shoal_actors::session::{AgentLink, AgentMsg, DispatcherLink, DispatcherMsg};
use shoal_actors::store::StateMachine;
use shoal_actors::supervision::Directory;
use shoal_core::codec;
use shoal_core::limits::MAX_UPDATES_PER_PROPOSAL;
use shoal_core::model::TaskStatus;
use shoal_core::rules::network::NetworkTable;

use super::wire::{OneWay, ToAgent, ToDispatcher};
use crate::transport::Transport;

/// The node's transport, once it is bound (it is not before `swarm init`/`join`).
pub type TransportSlot = Arc<RwLock<Option<Arc<Transport>>>>;

/// Raft's outbound messages, to the address of each peer manager.
pub struct RaftNet {
    pub raft_id: u64,
    pub own_addr: String,
    pub transport: TransportSlot,
    pub sm: Arc<StateMachine>,
    /// Learned from inbound messages: a new manager answers a leader it has
    /// not yet read about in the log.
    pub book: RwLock<HashMap<u64, String>>,
    /// Snapshots from peers being put back together.
    pub chunks: super::chunks::Reassembly,
    /// Numbers this node's outgoing chunked snapshots.
    pub next_snapshot: std::sync::atomic::AtomicU64,
}

impl RaftNet {
    pub fn learn(&self, raft_id: u64, addr: &str) {
        if self.book.read().get(&raft_id).map(String::as_str) != Some(addr) {
            self.book.write().insert(raft_id, addr.to_string());
        }
    }

    /// The address a peer's own messages came from, else the one the state
    /// names (looked up once, then kept): the state is not scanned per
    /// message.
    fn addr_of(&self, raft_id: u64) -> Option<String> {
        if let Some(a) = self.book.read().get(&raft_id) {
            return Some(a.clone());
        }
        let known = self
            .sm
            .read()
            .0
            .nodes
            .values()
            .find(|n| n.raft_id == raft_id)
            .map(|n| n.addr.clone())?;
        self.book.write().insert(raft_id, known.clone());
        Some(known)
    }
}

impl RaftNet {
    /// A snapshot too large for one frame, as chunks sent one after another
    /// (each waits for the last: the receiver takes them in order only).
    fn send_chunked(&self, t: &Arc<Transport>, addr: SocketAddr, msg: &[u8]) {
        let id = self.next_snapshot.fetch_add(1, Ordering::Relaxed);
        let Some(chunks) = super::chunks::split(self.raft_id, &self.own_addr, id, msg) else {
            tracing::error!(%addr, bytes = msg.len(), "a snapshot too large even for chunks: not sent");
            return;
        };
        let encoded: Vec<Vec<u8>> = chunks
            .iter()
            .filter_map(|c| codec::encode(c).ok())
            .collect();
        if encoded.len() != chunks.len() {
            return;
        }
        tracing::info!(%addr, bytes = msg.len(), chunks = encoded.len(), "sending a snapshot in chunks");
        let t = t.clone();
        tokio::spawn(async move {
            for bytes in encoded {
                if let Err(e) = t.send(addr, &bytes).await {
                    tracing::debug!(%addr, error = %e, "snapshot chunk not sent; the leader sends a new snapshot once the peer has waited too long");
                    return;
                }
            }
        });
    }
}

impl RaftTransport for RaftNet {
    /// Each peer's messages go down its ordered pipe, in Raft's order, so a
    /// follower sees appends in sequence (no gaps to reject and resend). A
    /// snapshot takes a stream of its own: megabytes must not hold up the
    /// appends and heartbeats behind them.
    fn send(&self, msgs: Vec<raft::prelude::Message>) {
        let Some(t) = self.transport.read().clone() else {
            return;
        };
        let mut addrs: HashMap<u64, Option<SocketAddr>> = HashMap::new();
        for m in msgs {
            let addr = *addrs.entry(m.to).or_insert_with(|| {
                self.addr_of(m.to)
                    .and_then(|a| a.parse::<SocketAddr>().ok())
            });
            let Some(addr) = addr else {
                tracing::debug!(to = m.to, "no address for raft peer");
                continue;
            };
            let snapshot = m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot;
            let Ok(bytes) = m.write_to_bytes() else {
                continue;
            };
            if snapshot && bytes.len() > super::chunks::CHUNK {
                self.send_chunked(&t, addr, &bytes);
                continue;
            }
            let msg = OneWay::Raft {
                from: self.raft_id,
                from_addr: self.own_addr.clone(),
                msg: bytes,
            };
            let Ok(bytes) = codec::encode(&msg) else {
                continue;
            };
            if snapshot {
                let t = t.clone();
                tokio::spawn(async move {
                    if let Err(e) = t.send(addr, &bytes).await {
                        tracing::debug!(%addr, error = %e, "send failed");
                    }
                });
            } else {
                t.send_ordered(addr, bytes);
            }
        }
    }
}

/// The dispatcher's handle on an agent of another node.
pub struct RemoteAgent {
    pub transport: TransportSlot,
    pub addr: String,
    /// The term the dispatcher's node leads in (see `OneWay::ToAgent`).
    pub term: u64,
}

impl AgentLink for RemoteAgent {
    fn send(&self, msg: AgentMsg) {
        let wire = match msg {
            AgentMsg::Assignments(tasks, files) => ToAgent::Assignments(tasks, files),
            AgentMsg::SessionRejected => ToAgent::SessionRejected,
            AgentMsg::Endpoints(table) => ToAgent::Endpoints(table),
            AgentMsg::Networks(table) => ToAgent::Networks(NetworkTable::clone(&table)),
            AgentMsg::Members(members) => {
                ToAgent::Members(shoal_actors::session::Members::clone(&members))
            }
            AgentMsg::Tick | AgentMsg::Status(..) | AgentMsg::Flush | AgentMsg::Recheck(_) => {
                return
            }
        };
        // On the peer's ordered pipe: pushes arrive in the order the
        // dispatcher made them (members before the assignments they vouch for).
        let Some(t) = self.transport.read().clone() else {
            return;
        };
        let Ok(addr) = self.addr.parse::<SocketAddr>() else {
            tracing::warn!(addr = %self.addr, "not a socket address");
            return;
        };
        let msg = OneWay::ToAgent {
            term: self.term,
            msg: wire,
        };
        if let Ok(bytes) = codec::encode(&msg) {
            t.send_ordered(addr, bytes);
        }
    }

    /// A datagram from a connected UDP socket to the node's cluster port:
    /// if no process listens there any more, the peer's kernel answers with
    /// ICMP port unreachable, which the socket reports as a refused
    /// connection. A living node's QUIC endpoint drops the stray byte; a
    /// lost packet or a firewall that eats ICMP gives no answer, which says
    /// nothing (`false`).
    fn gone(&self) -> shoal_actors::driver::BoxFuture<bool> {
        let addr = self.addr.clone();
        Box::pin(async move {
            let Ok(addr) = addr.parse::<SocketAddr>() else {
                return false;
            };
            port_closed(addr, PROBE_WAIT).await
        })
    }
}

/// How long a probe waits for a refusal.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether `addr`'s UDP port is certainly closed (see `RemoteAgent::gone`).
pub async fn port_closed(addr: SocketAddr, wait: std::time::Duration) -> bool {
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
        return false;
    };
    if sock.connect(addr).await.is_err() {
        return false;
    }
    let refused = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionRefused;
    match sock.send(&[0]).await {
        Ok(_) => {}
        Err(e) => return refused(&e),
    }
    let mut buf = [0u8; 16];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(Err(e)) => refused(&e),
        _ => false,
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
    /// Told when a manager refuses this node's certificate as superseded.
    pub superseded: Arc<tokio::sync::Notify>,
}

/// How long undelivered status reports wait before they are tried again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(200);

pub struct ProxyState {
    lane: Arc<Lane>,
    /// Status reports waiting to be delivered, newest per task.
    statuses: Arc<Mutex<HashMap<String, TaskStatus>>>,
    node_id: Arc<Mutex<String>>,
    statuses_busy: Arc<AtomicBool>,
    heartbeat_busy: Arc<AtomicBool>,
}

/// What every delivery needs: the transport, the managers and which of them
/// answered last.
struct Lane {
    args: ProxyArgs,
    current: AtomicUsize,
}

impl Lane {
    /// Sends to the manager that answered last, moving on through the list
    /// until one answers; a manager that does not lead relays to the leader.
    /// False if no manager took the message.
    async fn deliver(&self, wire: ToDispatcher) -> bool {
        let Some(t) = self.args.transport.read().clone() else {
            return false;
        };
        let Ok(bytes) = codec::encode(&super::wire::Request::Dispatcher(wire)) else {
            return false;
        };
        let managers = self.args.managers.read().clone();
        let current = self.current.load(Ordering::Relaxed);
        let targets: Vec<String> = (0..managers.len())
            .map(|i| managers[(current + i) % managers.len()].clone())
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
                        self.current.store(pos, Ordering::Relaxed);
                    }
                    return match codec::decode(&answer) {
                        Ok(super::wire::Response::Done) => true,
                        Ok(super::wire::Response::Refused(r)) => {
                            if r == super::wire::Refusal::Superseded {
                                // Our certificate is of an older generation
                                // than the state's: get the current one.
                                self.args.superseded.notify_one();
                            }
                            tracing::debug!(%addr, refusal = %r, "dispatcher message not accepted");
                            false
                        }
                        _ => false,
                    };
                }
                Err(e) => tracing::debug!(%addr, attempt = i, error = %e, "manager unreachable"),
            }
        }
        false
    }
}

impl ProxyState {
    /// Delivers queued status reports in batches, one at a time, until the
    /// queue is empty. At most one such loop runs; reports that arrive while
    /// it runs join the next batch.
    fn drain_statuses(&self) {
        if self.statuses_busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let (lane, queue, node_id, busy) = (
            self.lane.clone(),
            self.statuses.clone(),
            self.node_id.clone(),
            self.statuses_busy.clone(),
        );
        tokio::spawn(async move {
            loop {
                let batch: Vec<(String, TaskStatus)> = {
                    let mut q = queue.lock();
                    let ids: Vec<String> =
                        q.keys().take(MAX_UPDATES_PER_PROPOSAL).cloned().collect();
                    ids.into_iter()
                        .filter_map(|id| q.remove(&id).map(|s| (id, s)))
                        .collect()
                };
                if batch.is_empty() {
                    busy.store(false, Ordering::Release);
                    // A report queued between the take and the store above.
                    if queue.lock().is_empty() || busy.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    continue;
                }
                let node_id = node_id.lock().clone();
                let delivered = lane
                    .deliver(ToDispatcher::Status {
                        node_id,
                        updates: batch.clone(),
                    })
                    .await;
                if !delivered {
                    // Kept for the next try, unless a newer report came.
                    {
                        let mut q = queue.lock();
                        for (id, s) in batch {
                            q.entry(id).or_insert(s);
                        }
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        });
    }

    /// Heartbeats have their own lane: a status backlog never delays them,
    /// and at most one is in flight.
    fn heartbeat(&self, node_id: String, at: chrono::DateTime<chrono::Utc>) {
        if self.heartbeat_busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let (lane, busy) = (self.lane.clone(), self.heartbeat_busy.clone());
        tokio::spawn(async move {
            let addr = lane.args.own_addr.clone();
            let _ = lane
                .deliver(ToDispatcher::Heartbeat { node_id, addr, at })
                .await;
            busy.store(false, Ordering::Release);
        });
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
        Ok(ProxyState {
            lane: Arc::new(Lane {
                args,
                current: AtomicUsize::new(0),
            }),
            statuses: Arc::default(),
            node_id: Arc::default(),
            statuses_busy: Arc::default(),
            heartbeat_busy: Arc::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<DispatcherMsg>,
        msg: DispatcherMsg,
        st: &mut ProxyState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Awaited: the reports that follow a registration must not
            // overtake it.
            DispatcherMsg::Register { node, .. } => {
                *st.node_id.lock() = node.node_id.clone();
                let wire = ToDispatcher::Register {
                    node_id: node.node_id,
                    hostname: node.hostname,
                    addr: st.lane.args.own_addr.clone(),
                    drivers: node.drivers,
                    sandbox_error: node.sandbox_error,
                    machine: Box::new(node.machine),
                    max_format: node.max_format,
                };
                let _ = st.lane.deliver(wire).await;
            }
            DispatcherMsg::Heartbeat { node_id, at, .. } => st.heartbeat(node_id, at),
            DispatcherMsg::Status { node_id, updates } => {
                *st.node_id.lock() = node_id;
                st.statuses.lock().extend(updates);
                st.drain_statuses();
            }
            DispatcherMsg::Store(_)
            | DispatcherMsg::Tick
            | DispatcherMsg::StatusWritten(_)
            | DispatcherMsg::PushAssignments
            | DispatcherMsg::Probed { .. } => {}
        }
        Ok(())
    }
}
