//! The docker driver: a task is a container on the node's Docker engine,
//! reached through bollard (honouring `DOCKER_HOST`).
//!
//! Containers are named `<service>.<slot>.<task id>` and labelled with the
//! service, task, slot and node, so a restarted daemon finds (adopts) the
//! containers of its tasks instead of starting them again. Their output is
//! copied into the same per-task log files the process driver writes.
//!
//! A task on overlay networks runs in the namespace of a sandbox container
//! the node wires first (`docker_sandbox`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use shoal_actors::driver::{BoxFuture, Driver, DriverError, Exit, Launch, Lifecycle};
use shoal_core::model::{DriverInfo, Health};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::docker_sandbox::{self, engine_message, LABEL_SANDBOX};
use crate::logs;
use crate::overlay::Overlay;
use crate::sandbox::Sandbox;

pub const LABEL_NODE: &str = "com.shoal.node.id";
pub const LABEL_SERVICE_ID: &str = "com.shoal.service.id";
pub const LABEL_SERVICE_NAME: &str = "com.shoal.service.name";
pub const LABEL_TASK: &str = "com.shoal.task.id";
pub const LABEL_SLOT: &str = "com.shoal.task.slot";

struct Container {
    name: String,
    pid: Option<u32>,
    /// The container's address on its engine network, where the node's
    /// proxy reaches it.
    addr: Option<std::net::IpAddr>,
    exit: watch::Receiver<Option<Exit>>,
    /// The engine's health verdicts, for a container with a health check.
    health: Option<watch::Receiver<Health>>,
    /// The sandbox container whose namespace it shares (overlay tasks).
    sandbox: Option<String>,
}

/// How often the engine is asked for a container's health.
const HEALTH_POLL: Duration = Duration::from_millis(500);

fn engine_health(state: Option<&bollard::models::ContainerState>) -> Option<Health> {
    use bollard::models::HealthStatusEnum;
    match state?.health.as_ref()?.status? {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        _ => None,
    }
}

pub struct DockerDriver {
    me: Weak<DockerDriver>,
    docker: Docker,
    log_dir: PathBuf,
    /// The node as service templates name it.
    node: Arc<crate::templates::NodeInfo>,
    /// The engine's version while it answers; `None` when it does not.
    version: RwLock<Option<String>>,
    tasks: Mutex<HashMap<String, Container>>,
    /// Overlay attachments come from here, and the node's sandbox wires them.
    overlay: Arc<Overlay>,
    sandbox: Option<Arc<Sandbox>>,
    /// Containers being created and started at once (`ENGINE_STARTS`).
    starts: tokio::sync::Semaphore,
}

/// The most containers the driver creates and starts at once. The agent
/// starts up to 100 tasks at a time; 100 creates at once on a 2-core
/// engine (fuse-overlayfs) took longer than the client's 120 s timeout and
/// failed 279 of 1,000 tasks, where `docker run` 8 at a time failed none
/// (issue 30). The others wait their turn, started in the order they came.
const ENGINE_STARTS: usize = 8;

impl DockerDriver {
    /// Connects to the local engine. Without an engine the driver exists but
    /// is not available, and becomes available when one answers (the
    /// caller runs `follow_engine`).
    pub async fn connect(
        log_dir: PathBuf,
        node: Arc<crate::templates::NodeInfo>,
        overlay: Arc<Overlay>,
        sandbox: Option<Arc<Sandbox>>,
    ) -> Option<Arc<Self>> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| tracing::info!(error = %e, "no Docker engine: the docker driver is off"))
            .ok()?;
        let driver = Arc::new_cyclic(|me| DockerDriver {
            me: me.clone(),
            docker,
            log_dir,
            node,
            version: RwLock::new(None),
            tasks: Mutex::new(HashMap::new()),
            overlay,
            sandbox,
            starts: tokio::sync::Semaphore::new(ENGINE_STARTS),
        });
        driver.fingerprint().await;
        Some(driver)
    }

    /// A loop that asks the engine for its version every 2 s, for as long
    /// as the driver exists: the driver is available while it answers.
    pub fn follow_engine(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send {
        let weak = Arc::downgrade(self);
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let Some(d) = weak.upgrade() else { return };
                d.fingerprint().await;
            }
        }
    }

    async fn fingerprint(&self) {
        let v = self.docker.version().await.ok().and_then(|v| v.version);
        let was = self.version.read().clone();
        if v != was {
            match &v {
                Some(v) => tracing::info!(version = %v, "Docker engine available"),
                None => tracing::warn!("Docker engine unreachable: the docker driver is off"),
            }
            *self.version.write() = v;
        }
    }

    /// The engine's client.
    pub fn engine(&self) -> Docker {
        self.docker.clone()
    }

    /// Registers the containers labelled with this node (after a restart);
    /// the agent's first assignments then tell which of them to keep.
    pub async fn adopt(&self, node_id: &str) {
        let filters =
            HashMap::from([("label".to_string(), vec![format!("{LABEL_NODE}={node_id}")])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(list) = self.docker.list_containers(Some(opts)).await else {
            return;
        };
        // A task on overlays is not adopted: the node's sandbox removed its
        // overlay links when it opened, so it goes (with its sandbox
        // container) and its task starts again, wired anew.
        let sandboxed: HashSet<String> = list
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(LABEL_SANDBOX).cloned())
            .collect();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()));
            let on_overlay = labels.contains_key(LABEL_SANDBOX)
                || labels
                    .get(LABEL_TASK)
                    .is_some_and(|t| sandboxed.contains(t));
            if on_overlay {
                if let Some(name) = name {
                    tracing::info!(container = %name, "removing the container of an overlay task a previous daemon ran");
                    docker_sandbox::remove(&self.docker, &name).await;
                }
                continue;
            }
            let (Some(task), Some(name)) = (
                labels.get(LABEL_TASK).cloned(),
                c.names
                    .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string())),
            ) else {
                continue;
            };
            tracing::info!(task = %task, container = %name, "adopting container");
            self.track(&task, &name, false).await;
        }
        // Secrets tmpfs left by a killed daemon for tasks that are gone.
        let keep: HashSet<String> = self.tasks.lock().keys().cloned().collect();
        let root = super::docker_files::root(&self.log_dir);
        let _ = tokio::task::spawn_blocking(move || super::docker_files::sweep(&root, &keep)).await;
    }

    /// Starts watching a container: its exit, its pid, and (from now on) its output.
    async fn track(&self, task_id: &str, name: &str, new: bool) -> Lifecycle {
        let inspect = self.docker.inspect_container(name, None).await.ok();
        let on_host = inspect
            .as_ref()
            .and_then(|i| i.host_config.as_ref()?.network_mode.as_deref())
            == Some("host");
        let addr = if on_host {
            Some(std::net::Ipv4Addr::LOCALHOST.into())
        } else {
            inspect.as_ref().and_then(docker_sandbox::engine_address)
        };
        let state = inspect.and_then(|i| i.state);
        let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let pid = state
            .as_ref()
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0);
        let initial = if running {
            None
        } else {
            Some(Exit::Code(
                state.as_ref().and_then(|s| s.exit_code).unwrap_or(-1) as i32,
            ))
        };
        let (tx, rx) = watch::channel(initial);
        let health = match engine_health(state.as_ref()) {
            Some(first) if running => {
                let (health_tx, health_rx) = watch::channel(first);
                tokio::spawn(poll_health(
                    self.docker.clone(),
                    name.to_string(),
                    rx.clone(),
                    health_tx,
                ));
                Some(health_rx)
            }
            _ => None,
        };
        self.tasks.lock().insert(
            task_id.to_string(),
            Container {
                name: name.to_string(),
                pid,
                addr,
                exit: rx,
                health,
                sandbox: None,
            },
        );
        if running {
            let docker = self.docker.clone();
            let n = name.to_string();
            tokio::spawn(async move {
                let mut wait = docker.wait_container(&n, None);
                let code = match wait.next().await {
                    Some(Ok(r)) => r.status_code,
                    Some(Err(bollard::errors::Error::DockerContainerWaitError {
                        code, ..
                    })) => code,
                    _ => -1,
                };
                let _ = tx.send(Some(Exit::Code(code as i32)));
            });
            self.pump_logs(task_id, name, new);
        }
        match initial {
            Some(e) => Lifecycle::Exited(e),
            None => Lifecycle::Running { pid },
        }
    }

    /// Copies the container's output into the task's log file; an adopted
    /// container's older output is already there.
    fn pump_logs(&self, task_id: &str, name: &str, from_start: bool) {
        let since = if from_start {
            0
        } else {
            chrono::Utc::now().timestamp() as i32
        };
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .since(since)
            .build();
        let mut stream = self.docker.logs(name, Some(opts));
        let Some(path) = logs::log_path(&self.log_dir, task_id) else {
            return;
        };
        tokio::spawn(async move {
            let Ok(mut file) = logs::open_for_append(&path).await else {
                return;
            };
            let mut partial: HashMap<&'static str, String> = HashMap::new();
            while let Some(Ok(out)) = stream.next().await {
                let (kind, bytes) = match out {
                    bollard::container::LogOutput::StdErr { message } => ("stderr", message),
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message } => ("stdout", message),
                    bollard::container::LogOutput::StdIn { .. } => continue,
                };
                let buf = partial.entry(kind).or_default();
                buf.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(pos) = buf.find('\n') {
                    let line: String = buf.drain(..=pos).collect();
                    // A task with a terminal ends its lines with CR LF.
                    let text = logs::format_line(kind, line.trim_end_matches(['\n', '\r']));
                    if file.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }

    async fn create_and_start(&self, launch: Launch) -> Result<Lifecycle, DriverError> {
        if !shoal_core::model::is_valid_id(&launch.task.id) {
            return Err(DriverError::Rejected(format!(
                "invalid task id {:?}",
                launch.task.id
            )));
        }
        let expanded = crate::templates::expand_task(&launch.task, &launch.node_id, &self.node)
            .map_err(DriverError::Rejected)?;
        let launch = Launch {
            task: expanded,
            ..launch
        };
        let task = &launch.task;
        let spec = &task.spec;
        let name = format!("{}.{}.{}", task.service_name, task.slot, task.id);
        // The task's networks first: its program never starts without them.
        let nets = if spec.host_network() {
            Vec::new()
        } else {
            self.overlay
                .attachments(task)
                .await
                .map_err(DriverError::Failed)?
        };
        let mut env = spec.env.clone();
        env.extend([
            format!("SHOAL_TASK_ID={}", task.id),
            format!("SHOAL_TASK_SLOT={}", task.slot),
            format!("SHOAL_SERVICE_NAME={}", task.service_name),
            format!("SHOAL_NODE_ID={}", launch.node_id),
        ]);
        let mut labels: HashMap<String, String> =
            spec.container_labels.clone().into_iter().collect();
        labels.extend([
            (LABEL_NODE.to_string(), launch.node_id.clone()),
            (LABEL_SERVICE_ID.to_string(), task.service_id.clone()),
            (LABEL_SERVICE_NAME.to_string(), task.service_name.clone()),
            (LABEL_TASK.to_string(), task.id.clone()),
            (LABEL_SLOT.to_string(), task.slot.to_string()),
        ]);
        let nonzero = |v: u64| (v > 0).then_some(v as i64);
        // Secrets and configs: a tmpfs of this task's on the host, each file
        // bind-mounted read-only into the container.
        let binds = if launch.files.is_empty() {
            None
        } else {
            let dir = super::docker_files::root(&self.log_dir).join(&task.id);
            let files = launch.files.clone();
            let mounted = tokio::task::spawn_blocking(move || {
                super::docker_files::unmount(&dir);
                super::docker_files::mount(&dir, &files)
            })
            .await
            .map_err(|e| DriverError::Rejected(e.to_string()))?;
            Some(mounted.map_err(|e| {
                DriverError::rejected_by("cannot mount the task's secrets and configs", e)
            })?)
        };
        let iso = &spec.isolation;
        let body = ContainerCreateBody {
            hostname: (!iso.hostname.is_empty()).then(|| iso.hostname.clone()),
            stop_signal: (!iso.stop_signal.is_empty()).then(|| iso.stop_signal.clone()),
            image: Some(spec.image.clone()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            env: Some(env),
            labels: Some(labels),
            working_dir: (!spec.workdir.is_empty()).then(|| spec.workdir.clone()),
            user: (!spec.user.is_empty()).then(|| spec.user.clone()),
            host_config: Some(HostConfig {
                network_mode: spec.host_network().then(|| "host".into()),
                nano_cpus: nonzero(spec.resources.limit_nano_cpus),
                memory: nonzero(spec.resources.limit_memory_bytes),
                // As swarmkit does: a memory reservation is the container's soft limit.
                memory_reservation: nonzero(spec.resources.reserve_memory_bytes),
                init: Some(false),
                readonly_rootfs: iso.read_only.then_some(true),
                cap_add: (!iso.cap_add.is_empty()).then(|| iso.cap_add.clone()),
                cap_drop: (!iso.cap_drop.is_empty()).then(|| iso.cap_drop.clone()),
                security_opt: iso
                    .seccomp_unconfined
                    .then(|| vec!["seccomp=unconfined".to_string()]),
                binds,
                // Named volumes are made by the engine, with their labels and
                // driver options, as dockerd's swarm executor has them made.
                mounts: (!spec.mounts.is_empty()).then(|| {
                    spec.mounts
                        .iter()
                        .map(crate::api::mounts::to_wire)
                        .collect()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let healthcheck = spec
            .healthcheck
            .as_ref()
            .map(|h| bollard::models::HealthConfig {
                test: Some(h.test.clone()),
                interval: nonzero(h.interval_ns),
                timeout: nonzero(h.timeout_ns),
                retries: nonzero(h.retries),
                start_period: nonzero(h.start_period_ns),
                ..Default::default()
            });
        let mut body = ContainerCreateBody {
            healthcheck,
            ..body
        };
        super::docker_options::apply(&spec.options, &mut body, !nets.is_empty());
        let sandbox = if nets.is_empty() {
            None
        } else {
            Some(self.wire_sandbox(&name, &launch, &nets).await?)
        };
        let body = match &sandbox {
            Some(sb) => {
                // Made again whole: a container of an earlier try would
                // share the namespace of a sandbox that is gone.
                docker_sandbox::remove(&self.docker, &name).await;
                let host_config = body.host_config.map(|h| HostConfig {
                    network_mode: Some(format!("container:{}", sb.name)),
                    ..h
                });
                ContainerCreateBody {
                    host_config,
                    hostname: None,
                    ..body
                }
            }
            None => body,
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        let sandbox_name = sandbox.as_ref().map(|sb| sb.name.clone());
        let started = async {
            if let Err(e) = self.docker.create_container(Some(opts), body).await {
                let msg = engine_message(&e);
                // A container of this name exists: this task was started before.
                if !msg.contains("Conflict") && !msg.contains("already in use") {
                    return Err(DriverError::Rejected(msg));
                }
            }
            if let Err(e) = self.docker.start_container(&name, None).await {
                let msg = engine_message(&e);
                if !msg.contains("already started") {
                    return Err(DriverError::Failed(msg));
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = started {
            self.remove_containers(&task.id, name, sandbox_name).await;
            return Err(e);
        }
        let lifecycle = self.track(&task.id, &name, true).await;
        if let Some(sb) = sandbox {
            if let Some(c) = self.tasks.lock().get_mut(&task.id) {
                c.sandbox = Some(sb.name);
                // The mesh reaches the task where its namespace meets the engine.
                c.addr = c.addr.or(sb.addr);
            }
        }
        Ok(lifecycle)
    }

    /// Starts the task's sandbox container and gives its namespace the
    /// task's overlay interfaces.
    async fn wire_sandbox(
        &self,
        task_container: &str,
        launch: &Launch,
        nets: &[crate::sandbox::overlay::NetAttach],
    ) -> Result<docker_sandbox::SandboxContainer, DriverError> {
        let Some(node_sandbox) = self.sandbox.clone() else {
            return Err(DriverError::Rejected(
                "this node cannot give tasks a network of their own (see node inspect); use --network host".into(),
            ));
        };
        let task = &launch.task;
        let labels = HashMap::from([
            (LABEL_NODE.to_string(), launch.node_id.clone()),
            (LABEL_SERVICE_ID.to_string(), task.service_id.clone()),
            (LABEL_SERVICE_NAME.to_string(), task.service_name.clone()),
            (LABEL_SANDBOX.to_string(), task.id.clone()),
        ]);
        let name = docker_sandbox::name_for(task_container);
        let hostname = Some(task.spec.isolation.hostname.clone()).filter(|h| !h.is_empty());
        let sb = docker_sandbox::start(
            &self.docker,
            &name,
            labels,
            nets,
            hostname,
            &task.spec.options,
        )
        .await
        .map_err(DriverError::Failed)?;
        let (id, pid, nets) = (task.id.clone(), sb.pid, nets.to_vec());
        let wired =
            tokio::task::spawn_blocking(move || node_sandbox.attach_container(&id, pid, &nets, 1))
                .await
                .map_err(|e| DriverError::Failed(e.to_string()))
                .and_then(|r| {
                    r.map_err(|e| DriverError::failed_by("cannot set up the task's networks", e))
                });
        if let Err(e) = wired {
            docker_sandbox::remove(&self.docker, &name).await;
            return Err(e);
        }
        Ok(sb)
    }

    /// Removes the task's container, then its sandbox container and the
    /// interfaces and secrets the node made for it.
    async fn remove_containers(&self, task_id: &str, name: String, sandbox: Option<String>) {
        let docker = self.docker.clone();
        // A task id read back from a label is checked before it names a path.
        let files = shoal_core::model::is_valid_id(task_id)
            .then(|| super::docker_files::root(&self.log_dir).join(task_id));
        let node_sandbox = sandbox.is_some().then(|| self.sandbox.clone()).flatten();
        let id = task_id.to_string();
        let removing = tokio::spawn(async move {
            docker_sandbox::remove(&docker, &name).await;
            if let Some(sb) = sandbox {
                docker_sandbox::remove(&docker, &sb).await;
            }
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(files) = files {
                    super::docker_files::unmount(&files);
                }
                if let Some(ns) = node_sandbox {
                    ns.release(&id);
                }
            })
            .await;
        });
        let _ = removing.await;
    }

    /// `remove_containers` in the background.
    fn remove_later(&self, task_id: String, c: Container) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            me.remove_containers(&task_id, c.name, c.sandbox).await;
        });
    }
}

/// Follows the engine's health verdicts for a container until it exits.
async fn poll_health(
    docker: Docker,
    name: String,
    mut exit: watch::Receiver<Option<Exit>>,
    health: watch::Sender<Health>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_POLL) => {}
            _ = exit.wait_for(|e| e.is_some()) => return,
        }
        let Ok(inspect) = docker.inspect_container(&name, None).await else {
            continue;
        };
        if let Some(v) = engine_health(inspect.state.as_ref()) {
            health.send_if_modified(|h| std::mem::replace(h, v) != v);
        }
    }
}

impl Driver for DockerDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: "docker".into(),
            version: self.version.read().clone().unwrap_or_default(),
        }
    }

    fn available(&self) -> bool {
        self.version.read().is_some()
    }

    fn start(&self, launch: Launch) -> BoxFuture<Result<Lifecycle, DriverError>> {
        let known = self.inspect(&launch.task.id);
        let me = self.me.upgrade();
        Box::pin(async move {
            if let Some(l) = known {
                return Ok(l);
            }
            let Some(me) = me else {
                return Err(DriverError::Failed(
                    "the docker driver is shutting down".into(),
                ));
            };
            let _turn =
                me.starts.acquire().await.map_err(|_| {
                    DriverError::Failed("the docker driver is shutting down".into())
                })?;
            me.create_and_start(launch).await
        })
    }

    fn inspect(&self, task_id: &str) -> Option<Lifecycle> {
        self.tasks
            .lock()
            .get(task_id)
            .map(|c| match *c.exit.borrow() {
                Some(e) => Lifecycle::Exited(e),
                None => Lifecycle::Running { pid: c.pid },
            })
    }

    fn address(&self, task_id: &str) -> Option<std::net::IpAddr> {
        let tasks = self.tasks.lock();
        let c = tasks.get(task_id)?;
        if c.exit.borrow().is_some() {
            return None;
        }
        c.addr
    }

    fn wait(&self, task_id: &str) -> BoxFuture<Option<Exit>> {
        let rx = self.tasks.lock().get(task_id).map(|c| c.exit.clone());
        Box::pin(async move {
            let mut rx = rx?;
            let exit = rx.wait_for(|e| e.is_some()).await.ok()?;
            *exit
        })
    }

    fn stop(&self, task_id: &str, grace: Duration) -> BoxFuture<()> {
        let c = self
            .tasks
            .lock()
            .get(task_id)
            .map(|c| (c.name.clone(), c.exit.clone()));
        let docker = self.docker.clone();
        Box::pin(async move {
            let Some((name, mut exit)) = c else { return };
            let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
            let opts = StopContainerOptionsBuilder::default().t(secs).build();
            if let Err(e) = docker.stop_container(&name, Some(opts)).await {
                tracing::debug!(container = %name, error = %engine_message(&e), "stop failed");
            }
            let _ = tokio::time::timeout(
                grace + Duration::from_secs(5),
                exit.wait_for(|e| e.is_some()),
            )
            .await;
        })
    }

    fn remove(&self, task_id: &str) {
        if let Some(c) = self.tasks.lock().remove(task_id) {
            self.remove_later(task_id.to_string(), c);
        }
    }

    fn health(&self, task_id: &str) -> Option<watch::Receiver<Health>> {
        self.tasks
            .lock()
            .get(task_id)
            .and_then(|c| c.health.clone())
    }

    fn retain(&self, keep: &HashSet<String>) {
        let gone: Vec<String> = self
            .tasks
            .lock()
            .keys()
            .filter(|t| !keep.contains(*t))
            .cloned()
            .collect();
        for task in gone {
            let Some(c) = self.tasks.lock().remove(&task) else {
                continue;
            };
            tracing::info!(task = %task, container = %c.name, "removing the container of a task no longer assigned here");
            self.remove_later(task, c);
        }
    }
}
