//! One node: its data directory, its actor tree, its transport, and the
//! swarm roles it runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::RwLock;
use ractor::ActorRef;
use shoal_actors::codec;
use shoal_actors::command::Command;
use shoal_actors::dispatcher::{DispatcherMsg, NodeDescription};
use shoal_actors::driver::Drivers;
use shoal_actors::leader::{manager_spec, worker_spec, ManagerCtx, Timings};
use shoal_actors::model::{
    new_id, Availability, Cluster, ClusterSpec, JoinTokens, Node, NodeRole, NodeState,
};
use shoal_actors::proposer::ProposeError;
use shoal_actors::raft::{ProposeRefused, RaftMsg};
use shoal_actors::supervision::{
    ChildSpec, Directory, Intensity, Restart, Supervisor, SupervisorArgs, SupervisorMsg,
};

use crate::ca::RootCa;
use crate::certs::NodeCert;
use crate::cluster::inbound::ClusterInbound;
use crate::cluster::net::{
    ClusterLink, DispatcherProxy, ProxyArgs, RaftNet, RemoteAgent, TransportSlot, PROXY_NAME,
};
use crate::cluster::wire::{Joined, Request, Response, RoleChange, ToDispatcher};
use crate::driver::{DockerDriver, ProcessDriver};
use crate::identity::{self, Identity};
use crate::transport::tls::TlsIdentity;
use crate::transport::{Transport, TransportConfig};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub hostname: String,
    pub listen_addr: SocketAddr,
    /// What peers dial; the listen address when not given.
    pub advertise_addr: Option<String>,
    pub enable_chaos: bool,
    pub timings: Timings,
    pub cert_validity: Duration,
}

impl NodeConfig {
    pub fn advertise(&self) -> String {
        self.advertise_addr
            .clone()
            .unwrap_or_else(|| self.listen_addr.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.")]
    AlreadyInSwarm,
    #[error("This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this node to swarm and try again.")]
    NotManager,
    #[error("{0}")]
    Propose(#[from] ProposeError),
    #[error("invalid join token: {0}")]
    BadToken(String),
    #[error("{message}")]
    Remote { status: u16, message: String },
    #[error("This node is not part of a swarm")]
    NotInSwarm,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    #[error("cannot open the data directory: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    #[error(transparent)]
    Log(#[from] shoal_actors::raft::LogError),
    #[error(transparent)]
    Open(#[from] shoal_actors::leader::ManagerOpenError),
    #[error("cluster transport: {0}")]
    Transport(#[from] crate::transport::TransportError),
    #[error("the node's actor tree is not running: {0}")]
    Actors(String),
}

impl From<Result<(), NodeError>> for Response {
    fn from(r: Result<(), NodeError>) -> Self {
        match r {
            Ok(()) => Response::Done,
            Err(e) => {
                let api = crate::api::ApiError::from(e);
                Response::Error {
                    status: api.status.as_u16(),
                    message: api.message,
                }
            }
        }
    }
}

pub struct Runtime {
    pub config: NodeConfig,
    pub db: sled::Db,
    pub directory: Arc<Directory>,
    pub drivers: Arc<Drivers>,
    pub process: Arc<ProcessDriver>,
    pub docker: Option<Arc<DockerDriver>>,
    identity: RwLock<Option<Identity>>,
    manager: RwLock<Option<Arc<ManagerCtx>>>,
    raft_net: RwLock<Option<Arc<RaftNet>>>,
    transport: TransportSlot,
    managers: Arc<RwLock<Vec<String>>>,
    root: ActorRef<SupervisorMsg>,
    /// Serialises `swarm init` and `swarm join`.
    init_lock: tokio::sync::Mutex<()>,
}

fn io_err(path: &std::path::Path, source: std::io::Error) -> NodeError {
    identity::IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

impl Runtime {
    pub async fn start(config: NodeConfig) -> Result<Arc<Self>, NodeError> {
        std::fs::create_dir_all(config.data_dir.join("logs"))
            .map_err(|e| io_err(&config.data_dir, e))?;
        let db = sled::Config::new()
            .path(config.data_dir.join("state.db"))
            .open()?;
        let directory = Directory::new();
        let process = ProcessDriver::new(config.data_dir.join("logs"));
        let mut drivers = Drivers::new();
        drivers.insert("process".into(), process.clone());
        let docker = DockerDriver::connect(config.data_dir.join("logs")).await;
        if let Some(d) = &docker {
            drivers.insert("docker".into(), d.clone());
        }
        let (root, _) = ractor::Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                directory: directory.clone(),
                intensity: Intensity::default(),
                children: Vec::new(),
            },
        )
        .await
        .map_err(|e| NodeError::Actors(e.to_string()))?;
        let identity = identity::load(&config.data_dir)?;
        let rt = Arc::new(Runtime {
            config,
            db,
            directory,
            drivers: Arc::new(drivers),
            process,
            docker,
            identity: RwLock::new(identity.clone()),
            manager: RwLock::new(None),
            raft_net: RwLock::new(None),
            transport: Arc::new(RwLock::new(None)),
            managers: Arc::new(RwLock::new(Vec::new())),
            root,
            init_lock: tokio::sync::Mutex::new(()),
        });
        rt.spawn_renewal();
        if let Some(id) = identity {
            tracing::info!(node = %id.node_id, "rejoining the swarm from the data directory");
            rt.start_transport(&id)?;
            rt.start_manager(&id).await?;
            rt.start_worker(&id).await?;
        }
        Ok(rt)
    }

    pub fn identity(&self) -> Option<Identity> {
        self.identity.read().clone()
    }

    pub fn manager(&self) -> Result<Arc<ManagerCtx>, NodeError> {
        match (&*self.identity.read(), &*self.manager.read()) {
            (Some(_), Some(m)) => Ok(m.clone()),
            _ => Err(NodeError::NotManager),
        }
    }

    pub fn raft_net(&self) -> Option<Arc<RaftNet>> {
        self.raft_net.read().clone()
    }

    pub fn node_description(&self, node_id: &str) -> NodeDescription {
        NodeDescription {
            node_id: node_id.to_string(),
            hostname: self.config.hostname.clone(),
            addr: self.config.advertise(),
            drivers: self
                .drivers
                .values()
                .filter(|d| d.available())
                .map(|d| d.info())
                .collect(),
        }
    }

    async fn start_child(&self, spec: ChildSpec) -> Result<(), NodeError> {
        let r = self
            .root
            .call(
                |reply| SupervisorMsg::StartChild(spec, Some(reply)),
                Some(Duration::from_secs(10)),
            )
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        match r {
            ractor::rpc::CallResult::Success(Ok(())) => Ok(()),
            ractor::rpc::CallResult::Success(Err(e)) => Err(NodeError::Actors(e)),
            _ => Err(NodeError::Actors("timed out starting actors".into())),
        }
    }

    fn certs_dir(&self) -> PathBuf {
        self.config.data_dir.join("certs")
    }

    fn ca_dir(&self) -> PathBuf {
        self.config.data_dir.join("ca")
    }

    /// Binds the QUIC endpoint with this node's certificate.
    fn start_transport(self: &Arc<Self>, id: &Identity) -> Result<(), NodeError> {
        let cert = NodeCert::load(&self.certs_dir())?;
        let ca_pem = std::fs::read_to_string(self.ca_dir().join("ca.crt"))
            .map_err(|e| io_err(&self.ca_dir(), e))?;
        let tls = TlsIdentity {
            ca_pem,
            chain_pem: cert.cert_pem,
            key_pem: cert.key_pem,
        };
        let inbound = Arc::new(ClusterInbound(Arc::downgrade(self)));
        let t = Transport::bind(
            self.config.listen_addr,
            &tls,
            TransportConfig::default(),
            inbound,
        )?;
        tracing::info!(addr = %self.config.listen_addr, "cluster transport listening");
        *self.transport.write() = Some(t);
        let mut managers = id.managers.clone();
        if id.manager {
            let own = self.config.advertise();
            managers.retain(|m| *m != own);
            managers.insert(0, own);
        }
        *self.managers.write() = managers;
        Ok(())
    }

    async fn start_manager(&self, id: &Identity) -> Result<(), NodeError> {
        if !id.manager {
            return Ok(());
        }
        let ctx = ManagerCtx::new(
            id.node_id.clone(),
            id.raft_id,
            &self.db,
            self.directory.clone(),
            self.config.timings,
        )?;
        let net = Arc::new(RaftNet {
            raft_id: id.raft_id,
            own_addr: self.config.advertise(),
            transport: self.transport.clone(),
            sm: ctx.sm.clone(),
            book: RwLock::new(Default::default()),
        });
        *self.raft_net.write() = Some(net.clone());
        *self.manager.write() = Some(ctx.clone());
        self.start_child(manager_spec(&ctx, net)).await
    }

    async fn start_worker(&self, id: &Identity) -> Result<(), NodeError> {
        if let Some(d) = &self.docker {
            d.adopt(&id.node_id).await;
        }
        self.start_child(ChildSpec::new(
            PROXY_NAME,
            Restart::Permanent,
            DispatcherProxy,
            ProxyArgs {
                transport: self.transport.clone(),
                own_addr: self.config.advertise(),
                managers: self.managers.clone(),
                patience: self.config.timings.dispatcher_heartbeat / 2,
            },
        ))
        .await?;
        self.start_child(worker_spec(
            self.node_description(&id.node_id),
            self.drivers.clone(),
            self.directory.clone(),
            Arc::new(ClusterLink(self.directory.clone())),
            self.config.timings.dispatcher_heartbeat,
        ))
        .await
    }

    fn save_identity(&self, id: &Identity) -> Result<(), NodeError> {
        identity::save(&self.config.data_dir, id)?;
        *self.identity.write() = Some(id.clone());
        Ok(())
    }

    /// `swarm init`: a new cluster with this node as its only manager.
    pub async fn init_swarm(self: &Arc<Self>, spec: ClusterSpec) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        if self.identity.read().is_some() {
            return Err(NodeError::AlreadyInSwarm);
        }
        let ca = RootCa::generate()?;
        ca.save(&self.ca_dir())?;
        let cluster_id = new_id();
        let id = Identity {
            node_id: new_id(),
            raft_id: rand::random::<u64>().max(1),
            manager: true,
            cluster_id: cluster_id.clone(),
            managers: vec![self.config.advertise()],
        };
        ca.issue(
            &cluster_id,
            &id.node_id,
            NodeRole::Manager,
            self.config.cert_validity,
        )?
        .save(&self.certs_dir())?;
        let now = Utc::now();
        let cluster = Cluster {
            id: cluster_id,
            spec,
            join_tokens: JoinTokens {
                worker: ca.join_token(),
                manager: ca.join_token(),
            },
            ca_cert_pem: ca.cert_pem.clone(),
            removed_nodes: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        };
        let node = self.new_node(&id, NodeRole::Manager, self.node_description(&id.node_id));
        // The identity is written first, so that a restart finds the Raft log
        // this node is about to create. (A crash before InitCluster commits
        // leaves a manager without a cluster: remove the data dir and init again.)
        self.save_identity(&id)?;
        self.start_transport(&id)?;
        let ctx_log = shoal_actors::raft::LogStore::open(&self.db)?;
        ctx_log.bootstrap(vec![id.raft_id])?;
        self.start_manager(&id).await?;
        self.manager()?
            .proposer
            .propose(Command::InitCluster { cluster, node })
            .await?;
        self.start_worker(&id).await?;
        tracing::info!(node = %id.node_id, "swarm initialised");
        Ok(id.node_id)
    }

    fn new_node(&self, id: &Identity, role: NodeRole, desc: NodeDescription) -> Node {
        let now = Utc::now();
        Node {
            id: id.node_id.clone(),
            raft_id: id.raft_id,
            hostname: desc.hostname,
            role,
            availability: Availability::Active,
            labels: Default::default(),
            state: NodeState::Unknown,
            status_message: String::new(),
            addr: desc.addr,
            drivers: desc.drivers,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// `swarm join`: ask a manager for a place in its swarm.
    pub async fn join_swarm(
        self: &Arc<Self>,
        token: &str,
        remote: &str,
    ) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        if self.identity.read().is_some() {
            return Err(NodeError::AlreadyInSwarm);
        }
        let digest = token_digest(token)?;
        let remote_addr: SocketAddr = remote
            .parse()
            .map_err(|_| NodeError::Unreachable(remote.into(), "not an IP:PORT address".into()))?;
        let desc = self.node_description("");
        let req = Request::Join {
            token: token.to_string(),
            hostname: desc.hostname,
            addr: desc.addr,
            drivers: desc.drivers,
        };
        let bytes = codec::encode(&req).map_err(|e| NodeError::Actors(e.to_string()))?;
        let bind = SocketAddr::new(self.config.listen_addr.ip(), 0);
        let answer = crate::transport::anonymous_request(bind, remote_addr, &digest, &bytes)
            .await
            .map_err(|e| NodeError::Unreachable(remote.into(), e.to_string()))?;
        let joined = match codec::decode::<Response>(&answer) {
            Ok(Response::Joined(j)) => *j,
            Ok(Response::Error { status, message }) => {
                return Err(NodeError::Remote { status, message })
            }
            _ => {
                return Err(NodeError::Unreachable(
                    remote.into(),
                    "unexpected answer".into(),
                ))
            }
        };
        let ca_dir = self.ca_dir();
        std::fs::create_dir_all(&ca_dir).map_err(|e| io_err(&ca_dir, e))?;
        std::fs::write(ca_dir.join("ca.crt"), &joined.ca_cert_pem)
            .map_err(|e| io_err(&ca_dir, e))?;
        if let Some(key) = &joined.ca_key_pem {
            let ca = RootCa {
                cert_pem: joined.ca_cert_pem.clone(),
                cert_der: Vec::new(),
                key_pem: key.clone(),
            };
            ca.save(&ca_dir)?;
        }
        NodeCert {
            cert_pem: joined.cert_pem.clone(),
            key_pem: joined.key_pem.clone(),
        }
        .save(&self.certs_dir())?;
        let id = Identity {
            node_id: joined.node_id.clone(),
            raft_id: joined.raft_id,
            manager: joined.role == NodeRole::Manager,
            cluster_id: joined.cluster_id.clone(),
            managers: joined.managers.clone(),
        };
        self.save_identity(&id)?;
        self.start_transport(&id)?;
        self.start_manager(&id).await?;
        self.start_worker(&id).await?;
        tracing::info!(node = %id.node_id, role = ?joined.role, "joined the swarm");
        Ok(id.node_id)
    }

    /// On a manager: admit a node that presented a join token.
    pub async fn handle_join(
        &self,
        token: &str,
        hostname: String,
        addr: String,
        drivers: Vec<shoal_actors::model::DriverInfo>,
    ) -> Response {
        self.admit(token, hostname, addr, drivers)
            .await
            .unwrap_or_else(|e| match Response::from(Err(e)) {
                Response::Error { status, message } => Response::Error { status, message },
                other => other,
            })
    }

    async fn admit(
        &self,
        token: &str,
        hostname: String,
        addr: String,
        drivers: Vec<shoal_actors::model::DriverInfo>,
    ) -> Result<Response, NodeError> {
        let m = self.manager()?;
        let (cluster, managers) = {
            let guard = m.sm.read();
            let cluster = guard.0.cluster.clone().ok_or(NodeError::NotManager)?;
            let managers: Vec<String> = guard
                .0
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .map(|n| n.addr.clone())
                .collect();
            (cluster, managers)
        };
        let role = if token == cluster.join_tokens.manager {
            NodeRole::Manager
        } else if token == cluster.join_tokens.worker {
            NodeRole::Worker
        } else {
            return Err(NodeError::BadToken(
                "the token is not this swarm's (it may have been rotated); ask a manager for `shoal swarm join-token`".into(),
            ));
        };
        let ca = RootCa::load(&self.ca_dir())?;
        let id = Identity {
            node_id: new_id(),
            raft_id: rand::random::<u64>().max(1),
            manager: role == NodeRole::Manager,
            cluster_id: cluster.id.clone(),
            managers: managers.clone(),
        };
        let cert = ca.issue(&cluster.id, &id.node_id, role, self.config.cert_validity)?;
        let node = self.new_node(
            &id,
            role,
            NodeDescription {
                node_id: id.node_id.clone(),
                hostname,
                addr,
                drivers,
            },
        );
        self.propose(Command::UpsertNode(node)).await?;
        if role == NodeRole::Manager {
            self.add_voter(id.raft_id).await?;
        }
        Ok(Response::Joined(Box::new(Joined {
            node_id: id.node_id,
            raft_id: id.raft_id,
            role,
            cluster_id: cluster.id,
            ca_cert_pem: ca.cert_pem.clone(),
            ca_key_pem: (role == NodeRole::Manager).then(|| ca.key_pem.clone()),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            managers,
        })))
    }

    /// The address of the node with this Raft id, from the replicated state.
    fn addr_of_raft(&self, raft_id: u64) -> Option<String> {
        let m = self.manager().ok()?;
        let guard = m.sm.read();
        guard
            .0
            .nodes
            .values()
            .find(|n| n.raft_id == raft_id)
            .map(|n| n.addr.clone())
    }

    async fn forward(&self, leader: u64, req: &Request) -> Result<(), NodeError> {
        let addr = self
            .addr_of_raft(leader)
            .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
        let t = self
            .transport
            .read()
            .clone()
            .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| NodeError::Unreachable(addr.clone(), "bad address".into()))?;
        let bytes = codec::encode(req).map_err(|e| NodeError::Actors(e.to_string()))?;
        let answer = t
            .request(sock, &bytes)
            .await
            .map_err(|e| NodeError::Unreachable(addr.clone(), e.to_string()))?;
        match codec::decode::<Response>(&answer) {
            Ok(Response::Done) => Ok(()),
            Ok(Response::Error { status, message }) => Err(NodeError::Remote { status, message }),
            _ => Err(NodeError::Unreachable(addr, "unexpected answer".into())),
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
                Err(NodeError::Unreachable(..)) | Err(NodeError::Remote { status: 503, .. })
                    if Instant::now() < deadline =>
                {
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

    async fn add_voter(&self, raft_id: u64) -> Result<(), NodeError> {
        match self.add_voter_here(raft_id).await {
            Err(NodeError::Propose(ProposeError::NotLeader { leader: Some(l) })) => {
                self.forward(l, &Request::AddVoter(raft_id)).await
            }
            other => other,
        }
    }

    async fn remove_voter(&self, raft_id: u64) -> Result<(), NodeError> {
        match self.remove_voter_here(raft_id).await {
            Err(NodeError::Propose(ProposeError::NotLeader { leader: Some(l) })) => {
                self.forward(l, &Request::RemoveVoter(raft_id)).await
            }
            other => other,
        }
    }

    /// Makes `raft_id` a voter; returns once the change is applied here.
    pub async fn add_voter_here(&self, raft_id: u64) -> Result<(), NodeError> {
        self.change_voters(raft_id, raft::prelude::ConfChangeType::AddNode)
            .await
    }

    /// Takes `raft_id` out of the voters; returns once the change is applied here.
    pub async fn remove_voter_here(&self, raft_id: u64) -> Result<(), NodeError> {
        self.change_voters(raft_id, raft::prelude::ConfChangeType::RemoveNode)
            .await
    }

    async fn change_voters(
        &self,
        raft_id: u64,
        change_type: raft::prelude::ConfChangeType,
    ) -> Result<(), NodeError> {
        let m = self.manager()?;
        let change = raft::prelude::ConfChange {
            change_type,
            node_id: raft_id,
            ..Default::default()
        };
        let deadline = Instant::now() + m.timings.propose_timeout;
        let index = loop {
            let raft = self
                .directory
                .get::<RaftMsg>("raft")
                .ok_or(NodeError::Propose(ProposeError::NoLeader))?;
            let answer = raft
                .call(
                    |reply| RaftMsg::ProposeConfChange {
                        change: change.clone(),
                        reply,
                    },
                    Some(m.timings.propose_timeout),
                )
                .await;
            match answer {
                Ok(ractor::rpc::CallResult::Success(Ok(index))) => break index,
                Ok(ractor::rpc::CallResult::Success(Err(ProposeRefused::NotLeader { leader }))) => {
                    return Err(ProposeError::NotLeader { leader }.into())
                }
                Ok(ractor::rpc::CallResult::Success(Err(ProposeRefused::Busy)))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return Err(ProposeError::Timeout.into()),
            }
        };
        while m.sm.applied().index < index {
            if Instant::now() > deadline {
                return Err(ProposeError::Timeout.into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// An agent's message for the dispatcher: delivered here if this node
    /// leads, relayed to the leader otherwise.
    pub async fn to_dispatcher(&self, m: ToDispatcher) -> Response {
        if let Some(d) = self.directory.get::<DispatcherMsg>("dispatcher") {
            let agent = |addr: &str| -> Arc<dyn shoal_actors::dispatcher::AgentLink> {
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
                } => DispatcherMsg::Register {
                    agent: agent(&addr),
                    node: NodeDescription {
                        node_id,
                        hostname,
                        addr,
                        drivers,
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
                return Response::Error {
                    status: 503,
                    message: ProposeError::NoLeader.to_string(),
                }
            }
        };
        self.forward(leader, &Request::Dispatcher(m)).await.into()
    }

    /// The Raft id of the leader this manager knows of.
    pub async fn raft_leader(&self) -> Option<u64> {
        let raft = self.directory.get::<RaftMsg>("raft")?;
        match raft
            .call(RaftMsg::Status, Some(Duration::from_secs(2)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(s)) if s.leader_id != 0 => Some(s.leader_id),
            _ => None,
        }
    }
}

impl Runtime {
    /// `swarm join-token --rotate`: new secrets; the old tokens stop working.
    pub async fn rotate_tokens(&self, worker: bool, manager: bool) -> Result<(), NodeError> {
        let ca = RootCa::load(&self.ca_dir())?;
        self.propose(Command::RotateJoinTokens {
            worker: worker.then(|| ca.join_token()),
            manager: manager.then(|| ca.join_token()),
            at: Utc::now(),
        })
        .await
    }

    /// `node rm`: refused for a manager, and for a node that is not down
    /// unless forced. The node's certificate is refused from then on.
    pub async fn remove_node(&self, key: &str, force: bool) -> Result<(), NodeError> {
        let m = self.manager()?;
        let node =
            m.sm.read()
                .0
                .find_node(key)
                .cloned()
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
        if node.role == NodeRole::Manager {
            return Err(NodeError::Precondition(format!(
                "node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                node.id
            )));
        }
        if node.state != NodeState::Down && !force {
            return Err(NodeError::Precondition(format!(
                "node {} is not down and can't be removed; use --force to remove it anyway",
                node.id
            )));
        }
        self.propose(Command::RemoveNode { id: node.id }).await
    }

    /// `node update`: availability and labels.
    pub async fn update_node(
        &self,
        key: &str,
        availability: Option<Availability>,
        labels_add: Vec<(String, String)>,
        labels_rm: Vec<String>,
    ) -> Result<(), NodeError> {
        let m = self.manager()?;
        let id =
            m.sm.read()
                .0
                .find_node(key)
                .map(|n| n.id.clone())
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
        self.propose(Command::UpdateNode {
            id,
            role: None,
            availability,
            labels_add,
            labels_rm,
            at: Utc::now(),
        })
        .await
    }

    /// `swarm leave`: stop this node's tasks and actors and forget the swarm.
    /// A manager must be forced, since its leaving may cost the swarm its quorum.
    pub async fn leave_swarm(&self, force: bool) -> Result<(), NodeError> {
        let _guard = self.init_lock.lock().await;
        let Some(id) = self.identity() else {
            return Err(NodeError::NotInSwarm);
        };
        if id.manager && !force {
            let managers = self.manager().map_or(1, |m| {
                m.sm.read()
                    .0
                    .nodes
                    .values()
                    .filter(|n| n.role == NodeRole::Manager)
                    .count()
            });
            return Err(NodeError::Precondition(format!(
                "You are attempting to leave the swarm on a node that is participating as a manager. \
                 Removing this node leaves {} managers out of {managers}. Without a Raft quorum your swarm will be inaccessible. \
                 The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. \
                 Use `--force` to suppress this message.",
                managers.saturating_sub(1)
            )));
        }
        for child in ["worker", PROXY_NAME, "manager"] {
            let _ = self
                .root
                .send_message(SupervisorMsg::StopChild(child.into()));
        }
        self.process.stop_all(Duration::from_secs(10)).await;
        if let Some(t) = self.transport.write().take() {
            t.close();
        }
        *self.manager.write() = None;
        *self.raft_net.write() = None;
        for tree in ["raft_log", "raft_meta", "state"] {
            self.db.drop_tree(tree)?;
        }
        self.db.flush_async().await?;
        for dir in [self.certs_dir(), self.ca_dir()] {
            let _ = std::fs::remove_dir_all(dir);
        }
        identity::remove(&self.config.data_dir)?;
        *self.identity.write() = None;
        tracing::info!(node = %id.node_id, "left the swarm");
        Ok(())
    }

    /// `swarm init --force-new-cluster`: this manager alone becomes the Raft
    /// group, keeping all the state it has.
    pub async fn force_new_cluster(&self) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        let id = self.identity().ok_or(NodeError::NotManager)?;
        if !id.manager {
            return Err(NodeError::NotManager);
        }
        let _ = self
            .root
            .send_message(SupervisorMsg::StopChild("manager".into()));
        // Wait until the old Raft actor is gone before rewriting its membership.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.directory.cell("raft").is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = shoal_actors::raft::LogStore::open(&self.db)?;
        let cs = raft::prelude::ConfState {
            voters: vec![id.raft_id],
            ..Default::default()
        };
        log.set_conf_state(&cs)?;
        log.flush().await?;
        self.start_manager(&id).await?;
        // Other managers are no longer part of the Raft group.
        let others: Vec<String> = {
            let m = self.manager()?;
            let guard = m.sm.read();
            guard
                .0
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager && n.id != id.node_id)
                .map(|n| n.id.clone())
                .collect()
        };
        for other in others {
            self.propose(Command::UpdateNode {
                id: other,
                role: Some(NodeRole::Worker),
                availability: None,
                labels_add: Vec::new(),
                labels_rm: Vec::new(),
                at: Utc::now(),
            })
            .await?;
        }
        tracing::warn!(node = %id.node_id, "forced a new cluster with this manager alone");
        Ok(id.node_id)
    }
}

impl Runtime {
    fn tls_identity(&self, cert: &NodeCert) -> Result<TlsIdentity, NodeError> {
        let ca_pem = std::fs::read_to_string(self.ca_dir().join("ca.crt"))
            .map_err(|e| io_err(&self.ca_dir(), e))?;
        Ok(TlsIdentity {
            ca_pem,
            chain_pem: cert.cert_pem.clone(),
            key_pem: cert.key_pem.clone(),
        })
    }

    async fn send_role_change(&self, node: &Node, change: RoleChange) -> Result<(), NodeError> {
        if self.identity().is_some_and(|i| i.node_id == node.id) {
            return self.change_role(change).await;
        }
        let t = self.transport.read().clone().ok_or(NodeError::NotManager)?;
        let sock: SocketAddr = node
            .addr
            .parse()
            .map_err(|_| NodeError::Unreachable(node.addr.clone(), "bad address".into()))?;
        let bytes = codec::encode(&Request::RoleChange(Box::new(change)))
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        let answer = t
            .request(sock, &bytes)
            .await
            .map_err(|e| NodeError::Unreachable(node.addr.clone(), e.to_string()))?;
        match codec::decode::<Response>(&answer) {
            Ok(Response::Done) => Ok(()),
            Ok(Response::Error { status, message }) => Err(NodeError::Remote { status, message }),
            _ => Err(NodeError::Unreachable(
                node.addr.clone(),
                "unexpected answer".into(),
            )),
        }
    }

    fn managers_addrs(&self) -> Result<Vec<String>, NodeError> {
        let m = self.manager()?;
        let guard = m.sm.read();
        Ok(guard
            .0
            .nodes
            .values()
            .filter(|n| n.role == NodeRole::Manager)
            .map(|n| n.addr.clone())
            .collect())
    }

    fn set_role(&self, id: String, role: NodeRole) -> Command {
        Command::UpdateNode {
            id,
            role: Some(role),
            availability: None,
            labels_add: Vec::new(),
            labels_rm: Vec::new(),
            at: Utc::now(),
        }
    }

    /// `node promote`: the worker gets a manager certificate and the CA,
    /// starts its manager actors, and becomes a Raft voter.
    pub async fn promote(&self, key: &str) -> Result<(), NodeError> {
        let m = self.manager()?;
        let (node, cluster_id) = {
            let guard = m.sm.read();
            let node = guard
                .0
                .find_node(key)
                .cloned()
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
            let cluster_id = guard
                .0
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            (node, cluster_id)
        };
        if node.role == NodeRole::Manager {
            return Ok(());
        }
        if node.state != NodeState::Ready {
            return Err(NodeError::Precondition(format!(
                "node {} is not ready and can't be promoted",
                node.id
            )));
        }
        let ca = RootCa::load(&self.ca_dir())?;
        let cert = ca.issue(
            &cluster_id,
            &node.id,
            NodeRole::Manager,
            self.config.cert_validity,
        )?;
        self.propose(self.set_role(node.id.clone(), NodeRole::Manager))
            .await?;
        let mut managers = self.managers_addrs()?;
        managers.retain(|a| *a != node.addr);
        self.send_role_change(
            &node,
            RoleChange {
                role: NodeRole::Manager,
                cert_pem: cert.cert_pem,
                key_pem: cert.key_pem,
                ca_key_pem: Some(ca.key_pem.clone()),
                managers,
            },
        )
        .await?;
        self.add_voter(node.raft_id).await
    }

    /// `node demote`: refused for the last manager, and when the managers
    /// left reachable would be no majority of the new group.
    pub async fn demote(&self, key: &str) -> Result<(), NodeError> {
        let m = self.manager()?;
        let (node, cluster_id, managers, reachable) = {
            let guard = m.sm.read();
            let node = guard
                .0
                .find_node(key)
                .cloned()
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
            let managers: Vec<&Node> = guard
                .0
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .collect();
            let reachable = managers
                .iter()
                .filter(|n| n.id != node.id && n.state == NodeState::Ready)
                .count();
            let cluster_id = guard
                .0
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            (node, cluster_id, managers.len(), reachable)
        };
        if node.role == NodeRole::Worker {
            return Ok(());
        }
        if managers == 1 {
            return Err(NodeError::Precondition(
                "attempting to demote the last manager of the swarm".into(),
            ));
        }
        let left = managers - 1;
        if reachable <= left / 2 {
            return Err(NodeError::Precondition(format!(
                "can't remove node: removing this node leaves {reachable} reachable managers out of {left}, which is below quorum"
            )));
        }
        let ca = RootCa::load(&self.ca_dir())?;
        let cert = ca.issue(
            &cluster_id,
            &node.id,
            NodeRole::Worker,
            self.config.cert_validity,
        )?;
        self.remove_voter(node.raft_id).await?;
        self.propose(self.set_role(node.id.clone(), NodeRole::Worker))
            .await?;
        let mut managers = self.managers_addrs()?;
        managers.retain(|a| *a != node.addr);
        self.send_role_change(
            &node,
            RoleChange {
                role: NodeRole::Worker,
                cert_pem: cert.cert_pem,
                key_pem: cert.key_pem,
                ca_key_pem: None,
                managers,
            },
        )
        .await
    }

    /// On the node whose role changed: switch certificates, then start or
    /// stop the manager actors. Raft state from an earlier membership is
    /// dropped: a promoted node catches up from the leader.
    pub async fn change_role(&self, change: RoleChange) -> Result<(), NodeError> {
        let Some(mut id) = self.identity() else {
            return Err(NodeError::NotInSwarm);
        };
        let cert = NodeCert {
            cert_pem: change.cert_pem,
            key_pem: change.key_pem,
        };
        cert.save(&self.certs_dir())?;
        let manager = change.role == NodeRole::Manager;
        match &change.ca_key_pem {
            Some(key) => RootCa {
                cert_pem: std::fs::read_to_string(self.ca_dir().join("ca.crt"))
                    .map_err(|e| io_err(&self.ca_dir(), e))?,
                cert_der: Vec::new(),
                key_pem: key.clone(),
            }
            .save(&self.ca_dir())?,
            None => {
                let _ = std::fs::remove_file(self.ca_dir().join("ca.key"));
            }
        }
        if let Some(t) = self.transport.read().clone() {
            t.reload(&self.tls_identity(&cert)?)?;
        }
        if id.manager && !manager {
            let _ = self
                .root
                .send_message(SupervisorMsg::StopChild("manager".into()));
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.directory.cell("raft").is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            *self.manager.write() = None;
            *self.raft_net.write() = None;
        }
        if id.manager != manager {
            for tree in ["raft_log", "raft_meta", "state"] {
                self.db.drop_tree(tree)?;
            }
        }
        let was_manager = id.manager;
        id.manager = manager;
        id.managers = change.managers;
        self.save_identity(&id)?;
        let mut managers = id.managers.clone();
        if manager {
            managers.insert(0, self.config.advertise());
        }
        *self.managers.write() = managers;
        if manager && !was_manager {
            self.start_manager(&id).await?;
        }
        tracing::info!(node = %id.node_id, role = ?change.role, "role changed");
        Ok(())
    }
}

impl Runtime {
    /// On a manager: a fresh certificate for a node of the swarm, in the role
    /// the replicated state gives it.
    pub fn renew_for(&self, node_id: &str) -> Result<Response, NodeError> {
        let m = self.manager()?;
        let (role, cluster_id) = {
            let guard = m.sm.read();
            let node = guard
                .0
                .nodes
                .get(node_id)
                .ok_or_else(|| NodeError::NotFound(format!("node {node_id} not found")))?;
            let cluster_id = guard
                .0
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            (node.role, cluster_id)
        };
        let cert = RootCa::load(&self.ca_dir())?.issue(
            &cluster_id,
            node_id,
            role,
            self.config.cert_validity,
        )?;
        Ok(Response::Renewed {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
        })
    }

    /// Renews this node's certificate when less than a third of its
    /// validity is left: from its own CA as a manager, else from a manager.
    async fn renew_if_due(&self) -> Result<bool, NodeError> {
        let Some(id) = self.identity() else {
            return Ok(false);
        };
        let current = NodeCert::load(&self.certs_dir())?;
        let Some(expiry) = current.not_after() else {
            return Ok(false);
        };
        let left = expiry
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        if left > self.config.cert_validity / 3 {
            return Ok(false);
        }
        let renewed = if let Ok(Response::Renewed { cert_pem, key_pem }) =
            self.renew_for(&id.node_id)
        {
            NodeCert { cert_pem, key_pem }
        } else {
            let t = self.transport.read().clone().ok_or(NodeError::NotInSwarm)?;
            let bytes =
                codec::encode(&Request::RenewCert).map_err(|e| NodeError::Actors(e.to_string()))?;
            let managers = self.managers.read().clone();
            let mut got = None;
            for addr in managers {
                let Ok(sock) = addr.parse::<SocketAddr>() else {
                    continue;
                };
                if let Ok(answer) = t.request(sock, &bytes).await {
                    if let Ok(Response::Renewed { cert_pem, key_pem }) = codec::decode(&answer) {
                        got = Some(NodeCert { cert_pem, key_pem });
                        break;
                    }
                }
            }
            got.ok_or_else(|| {
                NodeError::Unreachable(
                    "managers".into(),
                    "no manager renewed the certificate".into(),
                )
            })?
        };
        renewed.save(&self.certs_dir())?;
        if let Some(t) = self.transport.read().clone() {
            t.reload(&self.tls_identity(&renewed)?)?;
        }
        tracing::info!(node = %id.node_id, "node certificate renewed");
        Ok(true)
    }

    /// Checks the certificate now and then for as long as the node runs.
    fn spawn_renewal(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = (self.config.cert_validity / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(rt) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = rt.renew_if_due().await {
                    tracing::warn!(error = %e, "certificate renewal failed; will retry");
                }
            }
        });
    }
}

/// Largest piece of a task log one request returns.
const LOG_CHUNK: usize = 1024 * 1024;

impl Runtime {
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

/// The CA digest inside a `SWMTKN-1-<digest>-<secret>` token.
fn token_digest(token: &str) -> Result<String, NodeError> {
    let parts: Vec<&str> = token.split('-').collect();
    match parts.as_slice() {
        ["SWMTKN", "1", digest, secret] if digest.len() == 50 && secret.len() == 25 => {
            Ok(digest.to_string())
        }
        _ => Err(NodeError::BadToken(
            "expected SWMTKN-1-<digest>-<secret>, as `shoal swarm join-token` prints it".into(),
        )),
    }
}
