//! The worker part of one node, owned: the task drivers (process, docker,
//! and the loop that follows the Docker engine), the node's volumes, the containers outside shoal connected to its
//! networks, the `dispatcher-proxy` and `worker` actor subtrees (the agent
//! and its task actors), and the host state its tasks stand on: the network
//! sandbox and the confiner's cgroups.
//!
//! It stops in two steps (`Runtime::shutdown`): its actors and loops first,
//! before the manager part (whose dispatcher the agent talks to) and the
//! network stack (which the agent feeds endpoint tables and the proxy
//! sends through); its host state last, after the network stack, whose
//! overlay and bridges live in the sandbox.
//!
//! On a daemon's stop, tasks are not stopped through their drivers:
//! stopping the agent stops its task actors, which leave their tasks
//! alone; closing the confiner then kills what is left of the process
//! tasks with their cgroups (as when the daemon dies, `PDEATHSIG`), and a
//! docker task's container keeps running, to be adopted at the next start.

use std::sync::Arc;
use std::time::Duration;

use shoal_actors::driver::Drivers;
use shoal_actors::supervision::ChildSpec;
use tokio_util::sync::CancellationToken;

use super::tasks::Tasks;
use super::tree::Tree;
use super::{NodeConfig, NodeError};
use crate::cluster::net::PROXY_NAME;
use crate::driver::docker_connect::Connections;
use crate::driver::{DockerDriver, ProcessDriver};
use crate::overlay::Overlay;
use crate::volumes::Volumes;

/// The root's children this part starts, and the actor whose exit says
/// they are gone.
const SUBTREES: [&str; 2] = ["worker", PROXY_NAME];
const LAST: &str = "agent";

/// How long a daemon's stop waits for the agent to be gone.
const STOP_WITHIN: Duration = Duration::from_secs(5);

pub struct WorkerPart {
    pub drivers: Arc<Drivers>,
    pub process: Arc<ProcessDriver>,
    /// The node's own volumes (its process tasks').
    pub volumes: Arc<Volumes>,
    pub docker: Option<Arc<DockerDriver>>,
    /// Containers outside shoal connected to attachable networks here.
    pub connections: Option<Arc<Connections>>,
    /// Why tasks cannot get a network of their own here, if they cannot.
    pub sandbox_unavailable: Option<String>,
    tree: Tree,
    tasks: Tasks,
}

impl WorkerPart {
    /// Opens the sandbox and the confiner (each probed on a blocking
    /// thread), the volumes and the drivers; the docker driver only if an
    /// engine answers. Tasks reach their overlay networks through `overlay`.
    pub(super) async fn open(
        config: &NodeConfig,
        overlay: Arc<Overlay>,
        tree: Tree,
        token: CancellationToken,
    ) -> Result<WorkerPart, NodeError> {
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
        let data_dir = config.data_dir.clone();
        let confiner =
            tokio::task::spawn_blocking(move || crate::confine::Confiner::open(&data_dir))
                .await
                .map_err(|e| NodeError::Actors(e.to_string()))?;
        if let Err(abilities) = &confiner {
            tracing::warn!(cannot = ?abilities.cannot, "this node cannot confine process tasks: none will start here");
        }
        let volumes = Arc::new(Volumes::new(config.data_dir.join("volumes")));
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
        let connections = docker
            .as_ref()
            .map(|d| Connections::new(d.engine(), overlay, process.sandbox()));
        let tasks = Tasks::new(token);
        if let Some(d) = &docker {
            tasks.spawn(d.follow_engine());
        }
        Ok(WorkerPart {
            drivers: Arc::new(drivers),
            process,
            volumes,
            docker,
            connections,
            sandbox_unavailable,
            tree,
            tasks,
        })
    }

    /// Node `node_id`'s worker side: the docker containers it already has
    /// taken back, then `proxy` (the agent's way to the dispatcher) and
    /// `worker` (the agent) started.
    pub(super) async fn start(
        &self,
        node_id: &str,
        proxy: ChildSpec,
        worker: ChildSpec,
    ) -> Result<(), NodeError> {
        if let Some(d) = &self.docker {
            d.adopt(node_id).await;
        }
        self.tree.start(proxy).await?;
        self.tree.start(worker).await
    }

    /// Tells the worker's subtrees to stop, without waiting.
    pub(super) fn stop_actors(&self) {
        for name in SUBTREES {
            self.tree.stop(name);
        }
    }

    /// The agent and its task actors, the dispatcher proxy, and this part's
    /// loops; the tasks themselves are left running (see the header).
    pub async fn shutdown(&self) {
        if !self
            .tree
            .stop_until_gone(&SUBTREES, LAST, STOP_WITHIN)
            .await
        {
            tracing::warn!("the agent did not stop in time");
        }
        self.tasks.shutdown().await;
    }

    /// Gives the host back: the sandbox's namespaces, links and tables,
    /// and the confiner's cgroups (killing the process tasks left in
    /// them). Blocking work, on blocking threads.
    pub async fn close(&self) {
        if let Some(sb) = self.process.sandbox() {
            let _ = tokio::task::spawn_blocking(move || sb.close()).await;
        }
        let process = self.process.clone();
        let _ = tokio::task::spawn_blocking(move || process.close()).await;
    }
}
