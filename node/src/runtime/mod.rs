//! One node: its data directory, its actor tree, the swarm roles it runs,
//! and its owned parts (`manager.rs`, `worker.rs`, `network.rs`), stopped in
//! the order of `shutdown.rs`.

pub mod addrs;
mod backup;
mod cluster_node;
mod disk;
pub mod error;
mod lock;
pub mod manager;
mod membership;
pub mod network;
mod renewal;
pub mod shutdown;
mod store;
mod swarm;
mod tasks;
mod tree;
pub mod worker;
mod writes;

pub use error::NodeError;
pub use store::store_config;
pub use swarm::AddrRequest;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use shoal_actors::context::{ManagerCtx, Timings};
use shoal_actors::leader::worker_spec;
use shoal_actors::proposer::ProposeError;
use shoal_actors::raft::{ProposeRefused, RaftMsg};
use shoal_actors::session::{DispatcherMsg, NodeDescription};
use shoal_actors::supervision::{
    ChildSpec, Directory, Intensity, Restart, Supervisor, SupervisorArgs,
};
use shoal_actors::world::new_id;
use shoal_core::codec;
use shoal_core::command::Command;
use shoal_core::model::{
    Availability, Cluster, ClusterSpec, JoinTokens, Node, NodeRole, NodeState,
};
use tokio_util::sync::CancellationToken;

use crate::ca::RootCa;
use crate::certs::NodeCert;
use crate::cluster::inbound::ClusterInbound;
use crate::cluster::net::{
    ClusterLink, DispatcherProxy, ProxyArgs, RaftNet, RemoteAgent, PROXY_NAME,
};
use crate::cluster::wire::{Joined, Refusal, Request, Response, RoleChange, ToDispatcher};
use crate::identity::{self, Identity};
use crate::transport::tls::TlsIdentity;
use crate::transport::Transport;
use manager::ManagerPart;
use network::NetworkStack;
use shutdown::Step;
use tasks::Tasks;
use tree::Tree;
use worker::WorkerPart;

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

/// One node: what it is in the swarm (its configuration, identity,
/// addresses and the members it knows), its store, its actor tree, and
/// three owned parts — the manager part, the worker part and the network
/// stack — each with its own loops and cancellation token (a child of
/// `token`), stopped in order by `shutdown`.
pub struct Runtime {
    pub config: NodeConfig,
    /// The sled store, closed and opened again in place after a full disk.
    pub store: store::Store,
    pub directory: Arc<Directory>,
    pub manager_part: Arc<ManagerPart>,
    pub worker_part: Arc<WorkerPart>,
    pub network_stack: Arc<NetworkStack>,
    /// The swarm's members as the leader last sent them: how this node
    /// judges its peers when it holds no state (a worker).
    pub peers: crate::cluster::members::PeerView,
    /// The term of the leader whose dispatcher holds this node's session.
    pub push_term: crate::cluster::members::PushTerm,
    identity: RwLock<Option<Identity>>,
    managers: Arc<RwLock<Vec<String>>>,
    /// Where the transport listens and what peers are told to dial: the
    /// daemon's flags until `swarm init`/`join` choose, then node.json's.
    listen: RwLock<SocketAddr>,
    advertise: RwLock<String>,
    /// Serialises `swarm init` and `swarm join`.
    init_lock: tokio::sync::Mutex<()>,
    /// A manager refused this node's certificate as superseded: renew now.
    superseded: Arc<tokio::sync::Notify>,
    /// Every Prometheus series of this node (`--metrics-addr`).
    pub metrics: Arc<crate::metrics::NodeMetrics>,
    /// The node's front: the control API, the metrics listener and
    /// certificate renewal, the first to stop.
    front: Tasks,
    /// The root of every part's token.
    token: CancellationToken,
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
        for path in crate::private::secure_tree(&config.data_dir)
            .map_err(|e| io_err(&config.data_dir, e))?
        {
            tracing::warn!(path = %path.display(), "data dir: mode was wider than the owner's; repaired");
        }
        let store = store::Store::open(config.data_dir.join("state.db"))?;
        let directory = Directory::new();
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
        let tree = Tree::new(root, directory.clone());
        let token = CancellationToken::new();
        let networks = crate::overlay::NetworkWatch::default();
        let overlay = crate::overlay::Overlay::new(networks.clone());
        let worker_part = Arc::new(
            WorkerPart::open(&config, overlay.clone(), tree.clone(), token.child_token()).await?,
        );
        let network_stack = Arc::new(NetworkStack::new(
            networks,
            overlay,
            worker_part.drivers.clone(),
            token.child_token(),
        ));
        let manager_part = Arc::new(ManagerPart::new(tree.clone(), token.child_token()));
        let identity = identity::load(&config.data_dir)?;
        let listen = identity
            .as_ref()
            .and_then(|i| i.listen_addr)
            .unwrap_or(config.listen_addr);
        let advertise = identity
            .as_ref()
            .and_then(|i| i.advertise_addr.clone())
            .or_else(|| config.advertise_addr.clone())
            .unwrap_or_else(|| listen.to_string());
        let metrics = crate::metrics::NodeMetrics::new(
            directory.metrics.clone(),
            network_stack.mesh.counts.clone(),
        );
        let rt = Arc::new(Runtime {
            metrics,
            config,
            store,
            directory,
            manager_part,
            worker_part,
            network_stack,
            peers: crate::cluster::members::PeerView::default(),
            push_term: crate::cluster::members::PushTerm::default(),
            identity: RwLock::new(identity.clone()),
            managers: Arc::new(RwLock::new(Vec::new())),
            listen: RwLock::new(listen),
            advertise: RwLock::new(advertise),
            init_lock: tokio::sync::Mutex::new(()),
            superseded: Arc::new(tokio::sync::Notify::new()),
            front: Tasks::new(token.child_token()),
            token,
        });
        rt.front.spawn(renewal::renewal_loop(&rt));
        rt.manager_part.spawn(disk::watch(Arc::downgrade(&rt)));
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

    /// Runs `work` among the node's front (the control API, the metrics
    /// listener): it is the first thing `shutdown` stops.
    pub fn serve(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.front.spawn(work);
    }

    /// Stops the node, part by part in `shutdown::ORDER`: nothing that
    /// answers from outside, then the worker part's actors, the manager
    /// part, the network stack, the host state under the tasks, and last
    /// the store, flushed. Each step is logged as it starts.
    pub async fn shutdown(&self) {
        for step in shutdown::ORDER {
            tracing::info!(part = %step.name(), "shutting down");
            match step {
                Step::Front => self.front.shutdown().await,
                Step::Worker => self.worker_part.shutdown().await,
                Step::Manager => self.manager_part.shutdown().await,
                Step::Network => self.network_stack.shutdown().await,
                Step::Host => self.worker_part.close().await,
                Step::Store => {
                    if let Err(e) = self.store.flush().await {
                        tracing::warn!(error = %e, "cannot flush the store");
                    }
                }
            }
        }
        self.token.cancel();
        tracing::info!("node stopped");
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
        let ctx = self.manager_part.ctx();
        if ctx.is_none()
            && self.identity.read().as_ref().is_some_and(|i| i.manager)
            && self.is_locked()
        {
            return Err(NodeError::Locked);
        }
        match (&*self.identity.read(), ctx) {
            (Some(_), Some(m)) => Ok(m),
            (Some(_), None) => Err(NodeError::WorkerNode),
            _ => Err(NodeError::NotManager),
        }
    }

    /// The cluster transport, once this node is in a swarm.
    pub fn transport(&self) -> Option<Arc<Transport>> {
        self.network_stack.transport()
    }

    pub fn raft_net(&self) -> Option<Arc<RaftNet>> {
        self.manager_part.raft_net()
    }

    pub fn node_description(&self, node_id: &str) -> NodeDescription {
        NodeDescription {
            node_id: node_id.to_string(),
            hostname: self.config.hostname.clone(),
            addr: self.advertise(),
            drivers: self
                .worker_part
                .drivers
                .values()
                .filter(|d| d.available())
                .map(|d| d.info())
                .collect(),
            sandbox_error: self.worker_part.sandbox_unavailable.clone(),
            machine: shoal_core::model::placement::Machine {
                confinement: Box::new(self.worker_part.process.confinement()),
                generic_resources: self.config.generic_resources.clone(),
                max_sandboxes: self
                    .worker_part
                    .process
                    .sandbox()
                    .map(|sb| sb.capacity() as u64),
                ..crate::machine::describe()
            },
            max_format: self.config.max_format,
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
        let tls = self.tls_identity(&cert)?;
        let node: Arc<dyn crate::cluster::node::ClusterNode> = self.clone();
        let inbound = Arc::new(ClusterInbound(Arc::downgrade(&node)));
        self.network_stack.bind(self.listen_addr(), &tls, inbound)?;
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
            &self.store.db()?,
            self.directory.clone(),
            self.config.timings,
        )?;
        let net = Arc::new(RaftNet {
            raft_id: id.raft_id,
            own_addr: self.advertise(),
            transport: self.network_stack.slot(),
            sm: ctx.sm.clone(),
            book: RwLock::new(Default::default()),
            chunks: Default::default(),
            next_snapshot: Default::default(),
        });
        self.load_keyring(&ctx);
        self.manager_part
            .start(
                ctx,
                net,
                self.config.data_dir.clone(),
                self.network_stack.slot(),
            )
            .await
    }

    async fn start_worker(&self, id: &Identity) -> Result<(), NodeError> {
        let bind_ip = self
            .advertise()
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(self.listen_addr().ip());
        let worker = &self.worker_part;
        self.network_stack
            .start(
                &id.node_id,
                bind_ip,
                worker.process.sandbox(),
                self.metrics.dns.clone(),
            )
            .await;
        let proxy = ChildSpec::new(
            PROXY_NAME,
            Restart::Permanent,
            DispatcherProxy,
            ProxyArgs {
                transport: self.network_stack.slot(),
                own_addr: self.advertise(),
                managers: self.managers.clone(),
                patience: self.config.timings.dispatcher_heartbeat / 2,
                superseded: self.superseded.clone(),
            },
        );
        let agent = worker_spec(
            self.node_description(&id.node_id),
            worker.drivers.clone(),
            self.directory.clone(),
            Arc::new(ClusterLink(self.directory.clone())),
            self.config.timings.dispatcher_heartbeat,
            Arc::new(self.network_stack.mesh_sink()),
            Arc::new(self.network_stack.networks.clone()),
        );
        worker.start(&id.node_id, proxy, agent).await
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
