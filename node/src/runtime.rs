//! One node: its data directory, its actor tree, and the swarm roles it runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parking_lot::RwLock;
use ractor::ActorRef;
use shoal_actors::command::Command;
use shoal_actors::dispatcher::NodeDescription;
use shoal_actors::driver::Drivers;
use shoal_actors::leader::{manager_spec, worker_spec, ManagerCtx, Timings};
use shoal_actors::model::{
    new_id, Availability, Cluster, ClusterSpec, JoinTokens, Node, NodeRole, NodeState,
};
use shoal_actors::proposer::ProposeError;
use shoal_actors::raft::NoPeers;
use shoal_actors::supervision::{Directory, Intensity, Supervisor, SupervisorArgs, SupervisorMsg};

use crate::ca::RootCa;
use crate::driver::ProcessDriver;
use crate::identity::{self, Identity};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub hostname: String,
    pub advertise_addr: String,
    pub enable_chaos: bool,
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.")]
    AlreadyInSwarm,
    #[error("This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this node to swarm and try again.")]
    NotManager,
    #[error("{0}")]
    Propose(#[from] ProposeError),
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
    #[error("the node's actor tree is not running: {0}")]
    Actors(String),
}

pub struct Runtime {
    pub config: NodeConfig,
    pub db: sled::Db,
    pub directory: Arc<Directory>,
    pub drivers: Arc<Drivers>,
    pub process: Arc<ProcessDriver>,
    identity: RwLock<Option<Identity>>,
    manager: RwLock<Option<Arc<ManagerCtx>>>,
    root: ActorRef<SupervisorMsg>,
    /// Serialises `swarm init` against itself.
    init_lock: tokio::sync::Mutex<()>,
}

impl Runtime {
    pub async fn start(config: NodeConfig) -> Result<Arc<Self>, NodeError> {
        std::fs::create_dir_all(config.data_dir.join("logs")).map_err(|source| {
            identity::IdentityError::Io {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let db = sled::Config::new()
            .path(config.data_dir.join("state.db"))
            .open()?;
        let directory = Directory::new();
        let process = ProcessDriver::new(config.data_dir.join("logs"));
        let mut drivers = Drivers::new();
        drivers.insert("process".into(), process.clone());
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
            identity: RwLock::new(identity.clone()),
            manager: RwLock::new(None),
            root,
            init_lock: tokio::sync::Mutex::new(()),
        });
        if let Some(id) = identity {
            tracing::info!(node = %id.node_id, "rejoining the swarm from the data directory");
            rt.start_roles(&id).await?;
        }
        Ok(rt)
    }

    pub fn identity(&self) -> Option<Identity> {
        self.identity.read().clone()
    }

    pub fn manager(&self) -> Result<Arc<ManagerCtx>, NodeError> {
        match (&*self.identity.read(), &*self.manager.read()) {
            (None, _) => Err(NodeError::NotManager),
            (Some(_), Some(m)) => Ok(m.clone()),
            (Some(_), None) => Err(NodeError::NotManager),
        }
    }

    pub fn node_description(&self, node_id: &str) -> NodeDescription {
        NodeDescription {
            node_id: node_id.to_string(),
            hostname: self.config.hostname.clone(),
            addr: self.config.advertise_addr.clone(),
            drivers: self.drivers.values().map(|d| d.info()).collect(),
        }
    }

    async fn start_child(
        &self,
        spec: shoal_actors::supervision::ChildSpec,
    ) -> Result<(), NodeError> {
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

    async fn start_roles(&self, id: &Identity) -> Result<(), NodeError> {
        self.start_manager(id).await?;
        self.start_worker(id).await
    }

    async fn start_manager(&self, id: &Identity) -> Result<(), NodeError> {
        if id.manager {
            let ctx = ManagerCtx::new(
                id.node_id.clone(),
                id.raft_id,
                &self.db,
                self.directory.clone(),
                self.config.timings,
            )?;
            if !ctx.log.is_initialized() {
                ctx.log.bootstrap(vec![id.raft_id])?;
            }
            *self.manager.write() = Some(ctx.clone());
            self.start_child(manager_spec(&ctx, Arc::new(NoPeers)))
                .await?;
        }
        Ok(())
    }

    async fn start_worker(&self, id: &Identity) -> Result<(), NodeError> {
        self.start_child(worker_spec(
            self.node_description(&id.node_id),
            self.drivers.clone(),
            self.directory.clone(),
            self.directory.clone(),
            self.config.timings.dispatcher_heartbeat,
        ))
        .await
    }

    /// `swarm init`: a new cluster with this node as its only manager.
    pub async fn init_swarm(&self, spec: ClusterSpec) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        if self.identity.read().is_some() {
            return Err(NodeError::AlreadyInSwarm);
        }
        let ca = RootCa::generate()?;
        ca.save(&self.config.data_dir.join("ca"))?;
        let id = Identity {
            node_id: new_id(),
            raft_id: rand::random::<u64>().max(1),
            manager: true,
        };
        let now = Utc::now();
        let cluster = Cluster {
            id: new_id(),
            spec,
            join_tokens: JoinTokens {
                worker: ca.join_token(),
                manager: ca.join_token(),
            },
            ca_cert_pem: ca.cert_pem.clone(),
            created_at: now,
            updated_at: now,
            version: 0,
        };
        let desc = self.node_description(&id.node_id);
        let node = Node {
            id: id.node_id.clone(),
            raft_id: id.raft_id,
            hostname: desc.hostname,
            role: NodeRole::Manager,
            availability: Availability::Active,
            labels: Default::default(),
            state: NodeState::Unknown,
            status_message: String::new(),
            addr: desc.addr,
            drivers: desc.drivers,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        // The identity is written first, so that a restart finds the Raft log
        // this node is about to create. (A crash before InitCluster commits
        // leaves a manager without a cluster: remove the data dir and init again.)
        identity::save(&self.config.data_dir, &id)?;
        *self.identity.write() = Some(id.clone());
        self.start_manager(&id).await?;
        self.manager()?
            .proposer
            .propose(Command::InitCluster { cluster, node })
            .await?;
        self.start_worker(&id).await?;
        tracing::info!(node = %id.node_id, "swarm initialised");
        Ok(id.node_id)
    }
}
