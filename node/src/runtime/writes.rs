//! Writes from any manager (forwarded to the leader), agents' messages for the
//! leader's dispatcher, and task logs read from the node that has them.
//!
//! Forwarded writes travel together: a write that finds nothing on its way
//! to the leader goes at once, alone (`Request::Propose`); those that come
//! while `FORWARDS_IN_FLIGHT` requests are on their way wait and leave
//! together as one `Request::ProposeMany` (bounded by
//! `limits::MAX_FORWARDED_COMMANDS` and `MAX_FORWARDED_BYTES`), which the
//! leader proposes as one entry and answers with a result per write.

use std::collections::HashMap;

use shoal_actors::packing::PackQueue;
use shoal_core::limits::{MAX_FORWARDED_BYTES, MAX_FORWARDED_COMMANDS};
use tokio::sync::oneshot;

use super::*;
use crate::cluster::net::TransportSlot;

/// How long a request waits before, and between, probes of whether its
/// peer is gone.
const PROBE_AFTER: Duration = Duration::from_millis(100);

/// Largest piece of a task log one request returns.
const LOG_CHUNK: usize = 1024 * 1024;

/// Requests of forwarded writes on their way to one leader at a time: two,
/// so that one batch is committed while the next is sent.
const FORWARDS_IN_FLIGHT: usize = 2;

/// What `Request::ProposeMany` adds to its commands' encodings: the
/// variant's tag and the count (varints of at most 5 and 9 bytes).
const PROPOSE_MANY_ENVELOPE: usize = 16;

/// A write waiting to be forwarded.
struct Forward {
    /// The leader's address (the same for every write of one queue, unless
    /// the leader moved meanwhile).
    addr: String,
    command: Command,
    /// The command's encoding, for the request.
    bytes: Vec<u8>,
    /// The index of the entry the write was committed in, once the leader applied it (0 from
    /// a leader that does not say).
    reply: oneshot::Sender<Result<u64, NodeError>>,
}

/// The forwarding queues, one per leader (by Raft id).
#[derive(Default)]
pub(super) struct Forwards(parking_lot::Mutex<HashMap<u64, Arc<PackQueue<Forward>>>>);

impl Forwards {
    fn queue(&self, leader: u64) -> Arc<PackQueue<Forward>> {
        self.0
            .lock()
            .entry(leader)
            .or_insert_with(|| {
                Arc::new(PackQueue::new(
                    MAX_FORWARDED_COMMANDS,
                    MAX_FORWARDED_BYTES - PROPOSE_MANY_ENVELOPE,
                    FORWARDS_IN_FLIGHT,
                ))
            })
            .clone()
    }
}

/// One request to the node at `addr`, its answer.
async fn exchange(slot: &TransportSlot, addr: &str, bytes: &[u8]) -> Result<Response, NodeError> {
    let t = slot
        .read()
        .clone()
        .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
    let sock: SocketAddr = addr
        .parse()
        .map_err(|_| NodeError::Unreachable(addr.to_string(), "bad address".into()))?;
    // A peer killed while we wait would be noticed only when the
    // connection times out (a second); a refused probe of its cluster
    // port says at once that nobody is there to answer.
    let dead = async {
        tokio::time::sleep(PROBE_AFTER).await;
        while !crate::cluster::net::port_closed(sock, PROBE_AFTER).await {
            tokio::time::sleep(PROBE_AFTER).await;
        }
    };
    let answer = tokio::select! {
        answer = t.request(sock, bytes) => {
            answer.map_err(|e| NodeError::Unreachable(addr.to_string(), e.to_string()))?
        }
        () = dead => {
            return Err(NodeError::Unreachable(
                addr.to_string(),
                "its cluster port is closed".into(),
            ))
        }
    };
    codec::decode::<Response>(&answer)
        .map_err(|_| NodeError::Unreachable(addr.to_string(), "unexpected answer".into()))
}

fn done_or_refused(addr: &str, answer: Response) -> Result<(), NodeError> {
    match answer {
        Response::Done => Ok(()),
        Response::Refused(r) => Err(NodeError::Remote(r)),
        _ => Err(NodeError::Unreachable(
            addr.to_string(),
            "unexpected answer".into(),
        )),
    }
}

/// A forwarded write's answer: the index of its entry, applied on the leader (0 from
/// a leader that answers only `Done`), or why not.
fn applied_or_refused(addr: &str, answer: Response) -> Result<u64, NodeError> {
    match answer {
        Response::Applied(index) => Ok(index),
        other => done_or_refused(addr, other).map(|()| 0),
    }
}

/// The same error again, for every write of a request that failed whole.
fn same(e: &NodeError) -> NodeError {
    match e {
        NodeError::Unreachable(addr, why) => NodeError::Unreachable(addr.clone(), why.clone()),
        NodeError::Propose(p) => NodeError::Propose(p.clone()),
        NodeError::Remote(r) => NodeError::Remote(r.clone()),
        other => NodeError::Actors(other.to_string()),
    }
}

/// Sends the queued writes to the leader, one request per pack, until none
/// waits. Below the cluster version that reads `ProposeMany`
/// (`ClusterState::packs_writes`), one request per write.
async fn send_forwards(
    slot: TransportSlot,
    queue: Arc<PackQueue<Forward>>,
    sm: Arc<shoal_actors::store::StateMachine>,
) {
    while let Some(pack) = queue.take() {
        // A writer that gave up (its deadline passed) is not sent for.
        let pack: Vec<Forward> = pack.into_iter().filter(|f| !f.reply.is_closed()).collect();
        if sm.read().0.packs_writes() {
            send_forward_pack(&slot, pack).await;
        } else {
            for one in pack {
                send_forward_pack(&slot, vec![one]).await;
            }
        }
    }
}

/// One request to the leader for these writes.
async fn send_forward_pack(slot: &TransportSlot, pack: Vec<Forward>) {
    let Some(addr) = pack.first().map(|f| f.addr.clone()) else {
        return;
    };
    if let [_] = pack.as_slice() {
        // Alone: the request a leader of any version understands.
        let mut pack = pack;
        let Some(f) = pack.pop() else { return };
        let r = match codec::encode(&Request::Propose(Box::new(f.command))) {
            Ok(bytes) => exchange(slot, &addr, &bytes)
                .await
                .and_then(|a| applied_or_refused(&addr, a)),
            Err(e) => Err(NodeError::Actors(e.to_string())),
        };
        let _ = f.reply.send(r);
        return;
    }
    let parts: Vec<&[u8]> = pack.iter().map(|f| f.bytes.as_slice()).collect();
    let request = codec::encode(&Request::ProposeMany(Vec::new()))
        .and_then(|empty| codec::splice_seq(&empty, &parts));
    let n = pack.len();
    let all = |e: NodeError| (0..n).map(|_| Err(same(&e))).collect();
    let answers: Vec<Result<u64, NodeError>> = match request {
        Err(e) => all(NodeError::Actors(e.to_string())),
        Ok(bytes) => match exchange(slot, &addr, &bytes).await {
            Ok(Response::Each(each)) if each.len() == n => each
                .into_iter()
                .map(|r| r.map(|()| 0).map_err(NodeError::Remote))
                .collect(),
            Ok(Response::EachApplied(each, index)) if each.len() == n => each
                .into_iter()
                .map(|r| r.map(|()| index).map_err(NodeError::Remote))
                .collect(),
            // One refusal for the whole request (not a manager, say).
            Ok(Response::Refused(r)) => all(NodeError::Remote(r)),
            Ok(_) => all(NodeError::Unreachable(
                addr.clone(),
                "unexpected answer".into(),
            )),
            Err(e) => all(e),
        },
    };
    for (f, r) in pack.into_iter().zip(answers) {
        let _ = f.reply.send(r);
    }
}

impl Runtime {
    pub(super) async fn forward(&self, leader: u64, req: &Request) -> Result<(), NodeError> {
        let addr = self
            .addr_of_raft(leader)
            .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
        self.ask(&addr, req).await
    }

    /// One request to the node at `addr` that answers `Done` or an error.
    pub(super) async fn ask(&self, addr: &str, req: &Request) -> Result<(), NodeError> {
        let bytes = codec::encode(req).map_err(|e| NodeError::Actors(e.to_string()))?;
        let answer = exchange(&self.network_stack.slot(), addr, &bytes).await?;
        done_or_refused(addr, answer)
    }

    /// A write forwarded to the leader, together with the others waiting
    /// to be forwarded to it at that moment; the index of the entry it was
    /// committed in, once the leader applied it.
    async fn forward_write(&self, leader: u64, command: &Command) -> Result<u64, NodeError> {
        let addr = self
            .addr_of_raft(leader)
            .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
        let sm = self.manager()?.sm.clone();
        let bytes = codec::encode(command).map_err(|e| NodeError::Actors(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        let size = bytes.len();
        let queue = self.manager_part.forwards.queue(leader);
        let forward = Forward {
            addr: addr.clone(),
            command: command.clone(),
            bytes,
            reply,
        };
        if queue.push(vec![forward], size) {
            self.manager_part
                .spawn(send_forwards(self.network_stack.slot(), queue, sm));
        }
        answer.await.unwrap_or_else(|_| {
            Err(NodeError::Unreachable(
                addr,
                "the forwarding task ended".into(),
            ))
        })
    }

    /// A write, proposed here or forwarded to the leader. While leadership
    /// moves (a leader that died is still named until the election ends),
    /// it retries until the propose timeout: one deadline, set here, bounds
    /// every try, forward and wait of the write.
    pub async fn propose(&self, cmd: Command) -> Result<(), NodeError> {
        let m = self.manager()?;
        // A full or failing disk: refused at once, in words that say so,
        // rather than after the propose timeout as if quorum were lost.
        if let Some(e) = m.log.failed().or_else(|| m.sm.failed()) {
            return Err(NodeError::CannotPersist(e));
        }
        // An entry of a newer format stopped its state (docs/upgrades.md).
        if let Some(why) = m.sm.stuck() {
            return Err(NodeError::Outdated(why));
        }
        let deadline = Instant::now() + m.timings.propose_timeout;
        // A leader we could not reach is not tried again until Raft names
        // another: it is most likely dead and an election is under way.
        let mut unreachable: Option<u64> = None;
        loop {
            let by = tokio::time::Instant::from_std(deadline);
            let result = match m.proposer.propose_by(cmd.clone(), by).await.map(|_| ()) {
                Err(ProposeError::NotLeader { leader: Some(l) }) if unreachable == Some(l) => Err(
                    NodeError::Unreachable(format!("leader {l:x}"), "no answer".into()),
                ),
                Err(ProposeError::NotLeader { leader: Some(l) }) => {
                    let forwarded = tokio::time::timeout_at(by, self.forward_write(l, &cmd));
                    match forwarded.await.unwrap_or(Err(ProposeError::Timeout.into())) {
                        // Applied on the leader: answer once applied here too.
                        Ok(index) => return self.applied_here(index, deadline).await,
                        Err(e) => {
                            if matches!(e, NodeError::Unreachable(..)) {
                                unreachable = Some(l);
                            }
                            Err(e)
                        }
                    }
                }
                other => other.map_err(NodeError::from),
            };
            match result {
                Err(
                    NodeError::Unreachable(..)
                    | NodeError::Remote(
                        Refusal::NotLeader { .. } | Refusal::NoLeader(_) | Refusal::Unavailable(_),
                    ),
                ) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(NodeError::Unreachable(..)) => return Err(ProposeError::NoLeader.into()),
                other => return other,
            }
        }
    }

    /// Waits until this manager has applied the log as far as `index` (the
    /// entry a write it forwarded was committed in, as the leader says): a write
    /// returns only once applied on the manager it went through, so a read
    /// there after it sees it. Found by the chaos harness's local-reads
    /// checker: a follower answered the write when the leader had applied
    /// it and a read 1 ms later still returned the value before.
    async fn applied_here(&self, index: u64, deadline: Instant) -> Result<(), NodeError> {
        let m = self.manager()?;
        while m.sm.applied().index < index {
            if let Some(e) = m.log.failed().or_else(|| m.sm.failed()) {
                return Err(NodeError::CannotPersist(e));
            }
            if let Some(why) = m.sm.stuck() {
                return Err(NodeError::Outdated(why));
            }
            // Out of the Raft group (a manager demoting itself removes it
            // from the voters before it writes its new role): it applies
            // nothing more, and serves no reads of the state either.
            let cs = m.log.conf_state();
            if !cs.voters.contains(&m.raft_id) && !cs.learners.contains(&m.raft_id) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ProposeError::Timeout.into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// A write forwarded to this node: it must lead. The index of the entry
    /// it was committed in.
    pub async fn propose_here_at(&self, cmd: Command) -> Result<u64, NodeError> {
        Ok(self.manager()?.proposer.propose_at(cmd).await?)
    }

    /// Writes forwarded together (`Request::ProposeMany`, `request_bytes`
    /// long): proposed as one entry, a result each. A request past the
    /// bounds is refused whole: a peer's request is untrusted input.
    pub async fn propose_many_here(&self, cmds: Vec<Command>, request_bytes: usize) -> Response {
        if cmds.len() > MAX_FORWARDED_COMMANDS || request_bytes > MAX_FORWARDED_BYTES {
            return Response::Refused(Refusal::BadRequest(format!(
                "a forwarded batch of {} writes in {request_bytes} bytes; the limits are \
                 {MAX_FORWARDED_COMMANDS} writes and {MAX_FORWARDED_BYTES} bytes",
                cmds.len()
            )));
        }
        let m = match self.manager() {
            Ok(m) => m,
            Err(e) => return Response::from(Err(e)),
        };
        let results = m.proposer.propose_all_at(cmds).await;
        // The latest entry any of them went into (a retry may take a later one).
        let index = results.iter().flatten().copied().max().unwrap_or(0);
        Response::EachApplied(
            results
                .into_iter()
                .map(|r| r.map(|_| ()).map_err(|e| Refusal::from(NodeError::from(e))))
                .collect(),
            index,
        )
    }

    /// An agent's message for the dispatcher: delivered here if this node
    /// leads, relayed to the leader otherwise.
    pub async fn to_dispatcher(&self, m: ToDispatcher) -> Response {
        let leading = self.manager().ok().and_then(|m| m.leading_term());
        if let (Some(d), Some(term)) = (self.directory.get::<DispatcherMsg>("dispatcher"), leading)
        {
            let agent = |addr: &str| -> Arc<dyn shoal_actors::session::AgentLink> {
                Arc::new(RemoteAgent {
                    transport: self.network_stack.slot(),
                    addr: addr.to_string(),
                    term,
                })
            };
            if let ToDispatcher::Register { addr, .. } = &m {
                // A node registers when its agent starts: what this node
                // holds open to it may lead to its previous process.
                if let (Some(t), Ok(a)) = (self.transport(), addr.parse()) {
                    t.forget(a);
                }
            }
            let msg = match m {
                ToDispatcher::Register {
                    node_id,
                    hostname,
                    addr,
                    drivers,
                    sandbox_error,
                    machine,
                    max_format,
                } => DispatcherMsg::Register {
                    agent: agent(&addr),
                    node: Box::new(NodeDescription {
                        node_id,
                        hostname,
                        addr,
                        drivers,
                        sandbox_error,
                        machine: *machine,
                        max_format,
                    }),
                },
                ToDispatcher::Heartbeat { node_id, addr, at } => DispatcherMsg::Heartbeat {
                    node_id,
                    agent: agent(&addr),
                    at,
                },
                ToDispatcher::Status { node_id, updates } => {
                    DispatcherMsg::Status { node_id, updates }
                }
            };
            let _ = d.send_message(msg);
            return Response::Done;
        }
        let leader = match self.raft_leader().await {
            Some(l) => l,
            None => {
                return Response::Refused(Refusal::NoLeader(ProposeError::NoLeader.to_string()))
            }
        };
        self.forward(leader, &Request::Dispatcher(m)).await.into()
    }

    pub async fn local_task_log(&self, task_id: &str, offset: u64) -> Vec<u8> {
        crate::logs::read_from(
            &self.config.data_dir.join("logs"),
            task_id,
            offset,
            LOG_CHUNK,
        )
        .await
    }

    /// A task's log from `offset`, read here or from the node that runs it.
    pub async fn task_log(&self, task_id: &str, offset: u64) -> Vec<u8> {
        let own = self.identity().map(|i| i.node_id);
        let remote = self.manager().ok().and_then(|m| {
            let guard = m.sm.read();
            let node_id = guard.0.tasks.get(task_id)?.node_id.clone()?;
            if Some(&node_id) == own.as_ref() {
                return None;
            }
            guard.0.nodes.get(&node_id).map(|n| n.addr.clone())
        });
        let Some(addr) = remote else {
            return self.local_task_log(task_id, offset).await;
        };
        let (Some(t), Ok(sock)) = (self.transport(), addr.parse::<SocketAddr>()) else {
            return Vec::new();
        };
        let Ok(bytes) = codec::encode(&Request::TaskLog {
            task_id: task_id.to_string(),
            offset,
        }) else {
            return Vec::new();
        };
        match t
            .request(sock, &bytes)
            .await
            .map(|a| codec::decode::<Response>(&a))
        {
            Ok(Ok(Response::Log(data))) => data,
            _ => Vec::new(),
        }
    }
}
