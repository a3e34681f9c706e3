//! Writes from any manager (forwarded to the leader), agents' messages for the
//! leader's dispatcher, and task logs read from the node that has them.

use super::*;

/// How long a request waits before, and between, probes of whether its
/// peer is gone.
const PROBE_AFTER: Duration = Duration::from_millis(100);

/// Largest piece of a task log one request returns.
const LOG_CHUNK: usize = 1024 * 1024;

impl Runtime {
    pub(super) async fn forward(&self, leader: u64, req: &Request) -> Result<(), NodeError> {
        let addr = self
            .addr_of_raft(leader)
            .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
        self.ask(&addr, req).await
    }

    /// One request to the node at `addr` that answers `Done` or an error.
    pub(super) async fn ask(&self, addr: &str, req: &Request) -> Result<(), NodeError> {
        let t = self
            .transport
            .read()
            .clone()
            .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| NodeError::Unreachable(addr.to_string(), "bad address".into()))?;
        let bytes = codec::encode(req).map_err(|e| NodeError::Actors(e.to_string()))?;
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
            answer = t.request(sock, &bytes) => {
                answer.map_err(|e| NodeError::Unreachable(addr.to_string(), e.to_string()))?
            }
            () = dead => {
                return Err(NodeError::Unreachable(
                    addr.to_string(),
                    "its cluster port is closed".into(),
                ))
            }
        };
        match codec::decode::<Response>(&answer) {
            Ok(Response::Done) => Ok(()),
            Ok(Response::Refused(r)) => Err(NodeError::Remote(r)),
            _ => Err(NodeError::Unreachable(
                addr.to_string(),
                "unexpected answer".into(),
            )),
        }
    }

    /// A write, proposed here or forwarded to the leader. While leadership
    /// moves (a leader that died is still named until the election ends),
    /// it retries until the propose timeout.
    pub async fn propose(&self, cmd: Command) -> Result<(), NodeError> {
        let m = self.manager()?;
        let deadline = Instant::now() + m.timings.propose_timeout;
        // A leader we could not reach is not tried again until Raft names
        // another: it is most likely dead and an election is under way.
        let mut unreachable: Option<u64> = None;
        loop {
            let result = match m.proposer.propose(cmd.clone()).await {
                Err(ProposeError::NotLeader { leader: Some(l) }) if unreachable == Some(l) => Err(
                    NodeError::Unreachable(format!("leader {l:x}"), "no answer".into()),
                ),
                Err(ProposeError::NotLeader { leader: Some(l) }) => {
                    let r = self
                        .forward(l, &Request::Propose(Box::new(cmd.clone())))
                        .await;
                    if matches!(r, Err(NodeError::Unreachable(..))) {
                        unreachable = Some(l);
                    }
                    r
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

    /// A write forwarded to this node: it must lead.
    pub async fn propose_here(&self, cmd: Command) -> Result<(), NodeError> {
        Ok(self.manager()?.proposer.propose(cmd).await?)
    }

    /// An agent's message for the dispatcher: delivered here if this node
    /// leads, relayed to the leader otherwise.
    pub async fn to_dispatcher(&self, m: ToDispatcher) -> Response {
        if let Some(d) = self.directory.get::<DispatcherMsg>("dispatcher") {
            let agent = |addr: &str| -> Arc<dyn shoal_actors::session::AgentLink> {
                Arc::new(RemoteAgent {
                    transport: self.transport.clone(),
                    addr: addr.to_string(),
                })
            };
            let msg = match m {
                ToDispatcher::Register {
                    node_id,
                    hostname,
                    addr,
                    drivers,
                    sandbox_error,
                    machine,
                } => DispatcherMsg::Register {
                    agent: agent(&addr),
                    node: NodeDescription {
                        node_id,
                        hostname,
                        addr,
                        drivers,
                        sandbox_error,
                        machine,
                    },
                },
                ToDispatcher::Heartbeat { node_id, addr } => DispatcherMsg::Heartbeat {
                    node_id,
                    agent: agent(&addr),
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
        let (Some(t), Ok(sock)) = (self.transport.read().clone(), addr.parse::<SocketAddr>())
        else {
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
