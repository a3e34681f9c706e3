//! One node: its data directory, its actor tree, its transport, and the
//! swarm roles it runs.

pub mod addrs;
mod backup;
mod cluster_node;
pub mod error;
mod lock;
mod membership;
mod renewal;
mod standing;
mod swarm;

pub use error::NodeError;
pub use swarm::AddrRequest;
mod writes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use ractor::ActorRef;
use shoal_actors::context::{ManagerCtx, Timings};
use shoal_actors::driver::Drivers;
use shoal_actors::leader::{manager_spec, worker_spec};
use shoal_actors::proposer::ProposeError;
use shoal_actors::raft::{ProposeRefused, RaftMsg};
use shoal_actors::session::{DispatcherMsg, NodeDescription};
use shoal_actors::supervision::{
    ChildSpec, Directory, Intensity, Restart, Supervisor, SupervisorArgs, SupervisorMsg,
};
use shoal_actors::world::new_id;
use shoal_core::codec;
use shoal_core::command::Command;
use shoal_core::model::{
    Availability, Cluster, ClusterSpec, JoinTokens, Node, NodeRole, NodeState,
};

use crate::ca::RootCa;
use crate::certs::NodeCert;
use crate::cluster::inbound::ClusterInbound;
use crate::cluster::net::{
    ClusterLink, DispatcherProxy, ProxyArgs, RaftNet, RemoteAgent, TransportSlot, PROXY_NAME,
};
use crate::cluster::wire::{Joined, Refusal, Request, Response, RoleChange, ToDispatcher};
use crate::driver::{DockerDriver, ProcessDriver};
use crate::identity::{self, Identity};
use crate::transport::tls::TlsIdentity;
use crate::transport::{Transport, TransportConfig};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub hostname: String,
    pub listen_addr: SocketAddr,
    /// What peers dial (an IP or interface, with an optional port); when
    /// not given, the listen address or the machine's one usable address.
    pub advertise_addr: Option<String>,
    pub enable_chaos: bool,
    pub timings: Timings,
    pub cert_validity: Duration,
    /// Named resources this node offers tasks (`--node-generic-resource`).
    pub generic_resources: Vec<shoal_core::model::placement::GenericResource>,
    /// At most this many tasks with a network sandbox at once
    /// (`--max-sandboxes`; `None`: as many as its addresses).
    pub max_sandboxes: Option<usize>,
    /// Addresses of a block tasks take (`--sandbox-block-hosts`, for
    /// tests; `None`: all 1,021).
    pub sandbox_block_hosts: Option<usize>,
    /// The newest record format this node claims when it joins and
    /// registers: `codec::FORMAT`, or lower with the hidden `--max-format`
    /// (the tests' stand-in for an older build; docs/upgrades.md).
    pub max_format: u32,
}

pub struct Runtime {
    pub config: NodeConfig,
    pub db: sled::Db,
    pub directory: Arc<Directory>,
    pub drivers: Arc<Drivers>,
    pub process: Arc<ProcessDriver>,
    /// The node's own volumes (its process tasks').
    pub volumes: Arc<crate::volumes::Volumes>,
    pub docker: Option<Arc<DockerDriver>>,
    /// Containers outside shoal connected to attachable networks here.
    pub connections: Option<Arc<crate::driver::docker_connect::Connections>>,
    /// Why tasks cannot get a network of their own here, if they cannot.
    pub sandbox_unavailable: Option<String>,
    pub mesh: Arc<crate::mesh::Mesh>,
    /// The swarm's members as the leader last sent them: how this node
    /// judges its peers when it holds no state (a worker).
    pub peers: crate::cluster::members::PeerView,
    /// The term of the leader whose dispatcher holds this node's session.
    pub push_term: crate::cluster::members::PushTerm,
    /// The network table the leader sent last, for the data plane and DNS.
    pub networks: crate::overlay::NetworkWatch,
    /// The embedded DNS server, while this node is in a swarm.
    dns: parking_lot::Mutex<Option<crate::dns::DnsServer>>,
    /// The overlay data plane, once this node is in a swarm.
    pub overlay: Arc<crate::overlay::Overlay>,
    identity: RwLock<Option<Identity>>,
    manager: RwLock<Option<Arc<ManagerCtx>>>,
    raft_net: RwLock<Option<Arc<RaftNet>>>,
    transport: TransportSlot,
    managers: Arc<RwLock<Vec<String>>>,
    /// Where the transport listens and what peers are told to dial: the
    /// daemon's flags until `swarm init`/`join` choose, then node.json's.
    listen: RwLock<SocketAddr>,
    advertise: RwLock<String>,
    root: ActorRef<SupervisorMsg>,
    /// Serialises `swarm init` and `swarm join`.
    init_lock: tokio::sync::Mutex<()>,
    /// A manager refused this node's certificate as superseded: renew now.
    superseded: Arc<tokio::sync::Notify>,
    /// Writes waiting to be forwarded to the leader, per leader.
    forwards: writes::Forwards,
    /// The swarm events this node applied as a manager (`GET /events`).
    pub events: Arc<crate::events::Journal>,
    /// Every Prometheus series of this node (`--metrics-addr`).
    pub metrics: Arc<crate::metrics::NodeMetrics>,
}

fn io_err(path: &std::path::Path, source: std::io::Error) -> NodeError {
    identity::IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// How a node opens its sled store (the Raft log and the state).
pub fn store_config(path: &std::path::Path) -> sled::Config {
    sled::Config::new().path(path)
}

impl Runtime {
    pub async fn start(config: NodeConfig) -> Result<Arc<Self>, NodeError> {
        std::fs::create_dir_all(config.data_dir.join("logs"))
            .map_err(|e| io_err(&config.data_dir, e))?;
        for path in crate::private::secure_tree(&config.data_dir)
            .map_err(|e| io_err(&config.data_dir, e))?
        {
            tracing::warn!(path = %path.display(), "data dir: mode was wider than the owner's; repaired");
        }
        let db = store_config(&config.data_dir.join("state.db")).open()?;
        let directory = Directory::new();
        let data_dir = config.data_dir.clone();
        let max_sandboxes = config.max_sandboxes;
        let block_hosts = config.sandbox_block_hosts;
        let sandbox = tokio::task::spawn_blocking(move || {
            crate::sandbox::Sandbox::open(&data_dir, max_sandboxes, block_hosts)
        })
        .await
        .map_err(|e| NodeError::Actors(e.to_string()))?;
        let sandbox_unavailable = sandbox.as_ref().err().map(|e| e.to_string());
        if let Some(why) = &sandbox_unavailable {
            tracing::warn!(reason = %why, "tasks cannot get a network of their own on this node: only --network host tasks run here");
        }
        let networks = crate::overlay::NetworkWatch::default();
        let overlay = crate::overlay::Overlay::new(networks.clone());
        let data_dir = config.data_dir.clone();
        let confiner =
            tokio::task::spawn_blocking(move || crate::confine::Confiner::open(&data_dir))
                .await
                .map_err(|e| NodeError::Actors(e.to_string()))?;
        if let Err(abilities) = &confiner {
            tracing::warn!(cannot = ?abilities.cannot, "this node cannot confine process tasks: none will start here");
        }
        let volumes = Arc::new(crate::volumes::Volumes::new(
            config.data_dir.join("volumes"),
        ));
        let machine = crate::machine::describe();
        let node_info = Arc::new(crate::templates::NodeInfo {
            hostname: config.hostname.clone(),
            os: machine.os,
            arch: machine.arch,
        });
        let process = ProcessDriver::new(
            config.data_dir.join("logs"),
            volumes.clone(),
            node_info.clone(),
            sandbox.ok(),
            confiner,
            overlay.clone(),
        );
        let mut drivers = Drivers::new();
        drivers.insert("process".into(), process.clone());
        let docker = DockerDriver::connect(
            config.data_dir.join("logs"),
            node_info,
            overlay.clone(),
            process.sandbox(),
        )
        .await;
        if let Some(d) = &docker {
            drivers.insert("docker".into(), d.clone());
        }
        let connections = docker.as_ref().map(|d| {
            crate::driver::docker_connect::Connections::new(
                d.engine(),
                overlay.clone(),
                process.sandbox(),
            )
        });
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
        let drivers = Arc::new(drivers);
        let transport: TransportSlot = Arc::new(RwLock::new(None));
        let mesh = crate::mesh::Mesh::new(drivers.clone(), transport.clone());
        let listen = identity
            .as_ref()
            .and_then(|i| i.listen_addr)
            .unwrap_or(config.listen_addr);
        let advertise = identity
            .as_ref()
            .and_then(|i| i.advertise_addr.clone())
            .or_else(|| config.advertise_addr.clone())
            .unwrap_or_else(|| listen.to_string());
        let metrics =
            crate::metrics::NodeMetrics::new(directory.metrics.clone(), mesh.counts.clone());
        let rt = Arc::new(Runtime {
            metrics,
            config,
            db,
            directory,
            drivers,
            process,
            volumes,
            docker,
            connections,
            sandbox_unavailable,
            mesh,
            peers: crate::cluster::members::PeerView::default(),
            push_term: crate::cluster::members::PushTerm::default(),
            dns: parking_lot::Mutex::new(None),
            networks,
            overlay,
            identity: RwLock::new(identity.clone()),
            manager: RwLock::new(None),
            raft_net: RwLock::new(None),
            transport,
            managers: Arc::new(RwLock::new(Vec::new())),
            listen: RwLock::new(listen),
            advertise: RwLock::new(advertise),
            root,
            init_lock: tokio::sync::Mutex::new(()),
            superseded: Arc::new(tokio::sync::Notify::new()),
            forwards: writes::Forwards::default(),
            events: Arc::default(),
        });
        rt.spawn_renewal();
        if let Some(id) = identity {
            tracing::info!(node = %id.node_id, "rejoining the swarm from the data directory");
            if id.manager && rt.is_locked() {
                // Its key is sealed under the KEK it does not have yet: it
                // takes part in nothing until `swarm unlock` (as in Swarm).
                tracing::warn!(
                    "This node is locked: run \"shoal swarm unlock\" with the unlock key"
                );
                return Ok(rt);
            }
            rt.start_node(&id).await?;
        }
        Ok(rt)
    }

    pub fn identity(&self) -> Option<Identity> {
        self.identity.read().clone()
    }

    /// Where the cluster transport listens (or will).
    pub fn listen_addr(&self) -> SocketAddr {
        *self.listen.read()
    }

    /// The address peers dial to reach this node.
    pub fn advertise(&self) -> String {
        self.advertise.read().clone()
    }

    /// Derives the secrets' data-encryption key from the CA key (unwrapped
    /// with the node's KEK) and hands it to the manager's actors.
    fn load_keyring(&self, ctx: &ManagerCtx) {
        match RootCa::load(&self.ca_dir()) {
            Ok(ca) => {
                let keys = crate::keys::ClusterKeyring::from_ca_key(&ca.key_pem);
                *ctx.keyring.write() = Some(Arc::new(keys));
            }
            Err(e) => tracing::warn!(error = %e, "no CA key: secrets cannot be sealed or opened"),
        }
    }

    /// The manager's keyring, loaded now if the CA key arrived since.
    pub fn keyring(&self) -> Result<Arc<dyn shoal_core::model::secret::Keyring>, NodeError> {
        let ctx = self.manager()?;
        if ctx.keyring().is_none() {
            self.load_keyring(&ctx);
        }
        ctx.keyring().ok_or(NodeError::Locked)
    }

    pub fn manager(&self) -> Result<Arc<ManagerCtx>, NodeError> {
        if self.manager.read().is_none()
            && self.identity.read().as_ref().is_some_and(|i| i.manager)
            && self.is_locked()
        {
            return Err(NodeError::Locked);
        }
        match (&*self.identity.read(), &*self.manager.read()) {
            (Some(_), Some(m)) => Ok(m.clone()),
            (Some(_), None) => Err(NodeError::WorkerNode),
            _ => Err(NodeError::NotManager),
        }
    }

    /// The cluster transport, once this node is in a swarm.
    pub fn transport(&self) -> Option<Arc<Transport>> {
        self.transport.read().clone()
    }

    pub fn raft_net(&self) -> Option<Arc<RaftNet>> {
        self.raft_net.read().clone()
    }

    pub fn node_description(&self, node_id: &str) -> NodeDescription {
        NodeDescription {
            node_id: node_id.to_string(),
            hostname: self.config.hostname.clone(),
            addr: self.advertise(),
            drivers: self
                .drivers
                .values()
                .filter(|d| d.available())
                .map(|d| d.info())
                .collect(),
            sandbox_error: self.sandbox_unavailable.clone(),
            machine: shoal_core::model::placement::Machine {
                confinement: Box::new(self.process.confinement()),
                generic_resources: self.config.generic_resources.clone(),
                max_sandboxes: self.process.sandbox().map(|sb| sb.capacity() as u64),
                ..crate::machine::describe()
            },
            max_format: self.config.max_format,
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

    /// The transport, the manager's actors and the worker's, for a node
    /// that is in a swarm.
    pub(crate) async fn start_node(self: &Arc<Self>, id: &Identity) -> Result<(), NodeError> {
        self.start_transport(id)?;
        self.start_manager(id).await?;
        self.start_worker(id).await
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
        let node: Arc<dyn crate::cluster::node::ClusterNode> = self.clone();
        let inbound = Arc::new(ClusterInbound(Arc::downgrade(&node)));
        let t = Transport::bind(
            self.listen_addr(),
            &tls,
            TransportConfig::default(),
            inbound,
        )?;
        t.serve_mesh(self.mesh.clone());
        t.serve_overlay(self.overlay.clone());
        tracing::info!(addr = %self.listen_addr(), "cluster transport listening");
        self.spawn_standing_watch(&t);
        *self.transport.write() = Some(t);
        let mut managers = id.managers.clone();
        if id.manager {
            let own = self.advertise();
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
        if self.is_locked() {
            // No KEK, so no CA key and no DEK: nothing to manage with until
            // `swarm unlock`.
            tracing::warn!("This node is locked: run \"shoal swarm unlock\" with the unlock key");
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
            own_addr: self.advertise(),
            transport: self.transport.clone(),
            sm: ctx.sm.clone(),
            book: RwLock::new(Default::default()),
            chunks: Default::default(),
            next_snapshot: Default::default(),
        });
        *self.raft_net.write() = Some(net.clone());
        self.load_keyring(&ctx);
        *self.manager.write() = Some(ctx.clone());
        lock::spawn_lock_follower(self.config.data_dir.clone(), &ctx);
        self.events.follow(&ctx);
        self.start_child(manager_spec(&ctx, net)).await
    }

    async fn start_worker(&self, id: &Identity) -> Result<(), NodeError> {
        let bind_ip = self
            .advertise()
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(self.listen_addr().ip());
        self.mesh.set_node(&id.node_id, bind_ip);
        let underlay = match bind_ip {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        };
        self.overlay
            .start(
                &id.node_id,
                underlay,
                self.process.sandbox(),
                self.transport(),
            )
            .await;
        if let Some(d) = &self.docker {
            d.adopt(&id.node_id).await;
        }
        self.start_dns(&id.node_id).await;
        self.start_child(ChildSpec::new(
            PROXY_NAME,
            Restart::Permanent,
            DispatcherProxy,
            ProxyArgs {
                transport: self.transport.clone(),
                own_addr: self.advertise(),
                managers: self.managers.clone(),
                patience: self.config.timings.dispatcher_heartbeat / 2,
                superseded: self.superseded.clone(),
            },
        ))
        .await?;
        self.start_child(worker_spec(
            self.node_description(&id.node_id),
            self.drivers.clone(),
            self.directory.clone(),
            Arc::new(ClusterLink(self.directory.clone())),
            self.config.timings.dispatcher_heartbeat,
            Arc::new(crate::mesh::MeshSink::new(self.mesh.clone())),
            Arc::new(self.networks.clone()),
        ))
        .await
    }

    /// Starts the embedded DNS server on the gateways of the network table
    /// (replacing one already running). One that cannot bind (not root)
    /// says so in the log and the node goes on without it.
    async fn start_dns(&self, node_id: &str) {
        self.stop_dns();
        let mut config = crate::dns::DnsConfig::new(Some(node_id.to_string()));
        config.counts = self.metrics.dns.clone();
        let server = crate::dns::DnsServer::start(config, self.networks.subscribe()).await;
        *self.dns.lock() = Some(server);
    }

    /// Stops the embedded DNS server, closing its sockets.
    pub fn stop_dns(&self) {
        if let Some(server) = self.dns.lock().take() {
            server.stop();
        }
    }

    fn save_identity(&self, id: &Identity) -> Result<(), NodeError> {
        identity::save(&self.config.data_dir, id)?;
        *self.identity.write() = Some(id.clone());
        Ok(())
    }

    fn new_node(&self, id: &Identity, role: NodeRole, desc: NodeDescription) -> Node {
        let now = shoal_actors::world::now();
        Node {
            id: id.node_id.clone(),
            raft_id: id.raft_id,
            hostname: desc.hostname,
            role,
            availability: Availability::Active,
            labels: Default::default(),
            state: NodeState::Unknown,
            status_message: String::new(),
            clock_skew_ms: None,
            addr: desc.addr,
            drivers: desc.drivers,
            sandbox_error: desc.sandbox_error,
            machine: desc.machine,
            cert_generation: 0,
            created_at: now,
            updated_at: now,
            version: 0,
            max_format: desc.max_format,
        }
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
    fn tls_identity(&self, cert: &NodeCert) -> Result<TlsIdentity, NodeError> {
        let ca_pem = std::fs::read_to_string(self.ca_dir().join("ca.crt"))
            .map_err(|e| io_err(&self.ca_dir(), e))?;
        Ok(TlsIdentity {
            ca_pem,
            chain_pem: cert.cert_pem.clone(),
            key_pem: cert.key_pem.clone(),
        })
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
}
