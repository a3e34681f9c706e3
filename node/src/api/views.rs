//! The Engine API objects the control API speaks ([`super::wire`]), built
//! from the domain model, and Docker-shaped request bodies parsed into it.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use shoal_core::model::{
    Cluster, FailureAction, HealthConfig, Node, RestartCondition, RestartPolicy, Service,
    ServiceMode, ServiceSpec, Task, TaskTemplate, UpdateConfig, UpdateOrder, UpdateStatus,
};
use shoal_core::state::ClusterState;

use super::wire::{self, int, time, version, word};
use crate::runtime::Runtime;

/// A manager's Raft status, in the Engine API's casing.
pub fn raft_status(r: &shoal_actors::raft::RaftStatus) -> wire::RaftStatus {
    wire::RaftStatus {
        id: r.id,
        term: r.term,
        leader_id: r.leader_id,
        is_leader: r.is_leader,
        commit: r.commit,
        applied: r.applied,
        first_index: r.first_index,
        last_index: r.last_index,
        snapshot_index: r.snapshot_index,
        voters: r.voters.clone(),
    }
}

/// `GET /info`: docker's `Info`, with the swarm part as far as this node knows it.
pub fn info(rt: &Runtime, raft: Option<&shoal_actors::raft::RaftStatus>) -> wire::Info {
    let drivers = rt
        .worker_part
        .drivers
        .values()
        .map(|d| {
            let i = d.info();
            wire::DriverInfo {
                name: i.name,
                version: i.version,
            }
        })
        .collect();
    let mut swarm = wire::SwarmInfo {
        docker: bollard::models::SwarmInfo {
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            local_node_state: Some(wire::LocalNodeState::INACTIVE),
            control_available: Some(false),
            error: Some(String::new()),
            ..Default::default()
        },
        ..Default::default()
    };
    let identity = rt.identity();
    if let Some(id) = &identity {
        let d = &mut swarm.docker;
        d.node_id = Some(id.node_id.clone());
        d.node_addr = Some(rt.advertise());
        d.local_node_state = Some(if rt.is_locked() {
            wire::LocalNodeState::LOCKED
        } else {
            wire::LocalNodeState::ACTIVE
        });
        d.control_available = Some(id.manager);
        if let Ok(m) = rt.manager() {
            let guard = m.sm.read();
            let state = &guard.0;
            let c = state.cluster.as_ref();
            swarm.cluster = Some(wire::ClusterInfo {
                docker: bollard::models::ClusterInfo {
                    id: Some(c.map(|c| c.id.clone()).unwrap_or_default()),
                    created_at: c.map(|c| time(&c.created_at)),
                    version: version(c.map_or(0, |c| c.version)),
                    ..Default::default()
                },
                spec: c.map(|c| cluster_spec(&c.spec, c.unlock_key.is_some())),
            });
            let managers = || {
                state
                    .nodes
                    .values()
                    .filter(|n| n.role == shoal_core::model::NodeRole::Manager)
            };
            d.nodes = Some(int(state.nodes.len() as u64));
            d.managers = Some(int(managers().count() as u64));
            d.remote_managers = Some(
                managers()
                    .map(|n| wire::PeerNode {
                        node_id: Some(n.id.clone()),
                        addr: Some(n.addr.clone()),
                    })
                    .collect(),
            );
            swarm.raft_status = raft.map(raft_status);
        }
    }
    wire::Info {
        docker: bollard::models::SystemInfo {
            id: Some(identity.map(|i| i.node_id).unwrap_or_default()),
            name: Some(rt.config.hostname.clone()),
            server_version: Some(env!("CARGO_PKG_VERSION").into()),
            os_type: Some("linux".into()),
            operating_system: Some("shoal".into()),
            architecture: Some(std::env::consts::ARCH.into()),
            kernel_version: Some(
                nix::sys::utsname::uname()
                    .map(|u| u.release().to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            ncpu: Some(int(
                std::thread::available_parallelism().map_or(1, |n| n.get()) as u64,
            )),
            ..Default::default()
        },
        swarm: Some(swarm),
        data_dir: Some(rt.config.data_dir.display().to_string()),
        drivers: Some(drivers),
        chaos_enabled: Some(rt.config.enable_chaos),
        pid: Some(std::process::id()),
    }
}

/// Settings shoal has but does not let change, as docker names them: a
/// client reads them back and may send them with an update unchanged.
const FIXED_SWARM_SETTINGS: &[(&str, u64)] = &[
    ("/Raft/ElectionTick", ELECTION_TICK),
    ("/Raft/HeartbeatTick", HEARTBEAT_TICK),
    ("/Dispatcher/HeartbeatPeriod", HEARTBEAT_PERIOD_NS),
    ("/CAConfig/NodeCertExpiry", NODE_CERT_EXPIRY_NS),
];
const ELECTION_TICK: u64 = 10;
const HEARTBEAT_TICK: u64 = 1;
const HEARTBEAT_PERIOD_NS: u64 = 1_000_000_000;
const NODE_CERT_EXPIRY_NS: u64 = 90 * 24 * 3600 * 1_000_000_000;

/// docker's `SwarmSpec`, with shoal's `Orchestration.Rebalance`.
pub fn cluster_spec(spec: &shoal_core::model::ClusterSpec, autolock: bool) -> wire::SwarmSpec {
    wire::SwarmSpec {
        docker: bollard::models::SwarmSpec {
            name: Some("default".into()),
            raft: Some(wire::SwarmSpecRaft {
                snapshot_interval: Some(spec.snapshot_interval),
                election_tick: Some(int(ELECTION_TICK)),
                heartbeat_tick: Some(int(HEARTBEAT_TICK)),
                ..Default::default()
            }),
            dispatcher: Some(wire::SwarmSpecDispatcher {
                heartbeat_period: Some(int(HEARTBEAT_PERIOD_NS)),
            }),
            ca_config: Some(wire::SwarmSpecCaConfig {
                node_cert_expiry: Some(int(NODE_CERT_EXPIRY_NS)),
                ..Default::default()
            }),
            encryption_config: Some(wire::SwarmSpecEncryptionConfig {
                auto_lock_managers: Some(autolock),
            }),
            ..Default::default()
        },
        orchestration: Some(wire::Orchestration {
            docker: bollard::models::SwarmSpecOrchestration {
                task_history_retention_limit: Some(int(spec.task_history_limit)),
            },
            rebalance: Some(spec.rebalance),
        }),
    }
}

/// [`cluster_spec`] as JSON, for the checks that compare a request body
/// with what shoal shows back (`unhonoured`).
pub fn cluster_spec_json(spec: &shoal_core::model::ClusterSpec, autolock: bool) -> Value {
    serde_json::to_value(cluster_spec(spec, autolock)).unwrap_or(Value::Null)
}

/// The fixed settings `asked` sets to another value than shoal's.
pub fn fixed_swarm_settings_changed(asked: &Value) -> Vec<String> {
    FIXED_SWARM_SETTINGS
        .iter()
        .filter(|(path, value)| {
            asked
                .pointer(path)
                .and_then(Value::as_u64)
                .is_some_and(|v| v != 0 && v != *value)
        })
        .map(|(path, _)| path.trim_start_matches('/').replace('/', "."))
        .collect()
}

/// `GET /swarm`: docker's `Swarm` object.
pub fn swarm(c: &Cluster) -> wire::Swarm {
    let autolock = c.unlock_key.is_some();
    wire::Swarm {
        docker: bollard::models::Swarm {
            id: Some(c.id.clone()),
            version: version(c.version),
            created_at: Some(time(&c.created_at)),
            updated_at: Some(time(&c.updated_at)),
            default_addr_pool: Some(
                c.spec
                    .default_addr_pool
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
            ),
            subnet_size: Some(u32::from(c.spec.subnet_size)),
            root_rotation_in_progress: Some(false),
            join_tokens: Some(wire::JoinTokens {
                worker: Some(c.join_tokens.worker.clone()),
                manager: Some(c.join_tokens.manager.clone()),
            }),
            tls_info: Some(wire::TlsInfo {
                trust_root: Some(c.ca_cert_pem.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        spec: Some(cluster_spec(&c.spec, autolock)),
        format: Some(c.cluster_format()),
    }
}

fn labels(l: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    Some(l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

pub fn service_spec(spec: &ServiceSpec) -> wire::ServiceSpec {
    let mode = match spec.mode {
        ServiceMode::Replicated { replicas } => wire::ServiceSpecMode {
            replicated: Some(wire::ServiceSpecModeReplicated {
                replicas: Some(int(replicas)),
            }),
            ..Default::default()
        },
        ServiceMode::Global => wire::ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => wire::ServiceSpecMode {
            replicated_job: Some(wire::ServiceSpecModeReplicatedJob {
                max_concurrent: Some(int(max_concurrent)),
                total_completions: Some(int(total_completions)),
            }),
            ..Default::default()
        },
        ServiceMode::GlobalJob => wire::ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
    };
    let u = &spec.update_config;
    let r = &spec.rollback_config;
    wire::ServiceSpec {
        docker: bollard::models::ServiceSpec {
            name: Some(spec.name.clone()),
            labels: labels(&spec.labels),
            mode: Some(mode),
            update_config: Some(wire::ServiceSpecUpdateConfig {
                parallelism: Some(int(u.parallelism)),
                delay: Some(int(u.delay_ns)),
                failure_action: word(u.failure_action.as_str()),
                monitor: Some(int(u.monitor_ns)),
                max_failure_ratio: Some(f64::from(u.max_failure_ratio_ppm) / 1e6),
                order: word(u.order.as_str()),
            }),
            rollback_config: Some(wire::ServiceSpecRollbackConfig {
                parallelism: Some(int(r.parallelism)),
                delay: Some(int(r.delay_ns)),
                failure_action: word(r.failure_action.as_str()),
                monitor: Some(int(r.monitor_ns)),
                max_failure_ratio: Some(f64::from(r.max_failure_ratio_ppm) / 1e6),
                order: word(r.order.as_str()),
            }),
            ..Default::default()
        },
        task_template: Some(task_template(&spec.task_template)),
        endpoint_spec: Some(super::ports::spec(&spec.endpoint)),
        extra: Default::default(),
    }
}

/// [`service_spec`] as JSON, for the checks that compare a request body
/// with what shoal shows back (`unhonoured`).
pub fn service_spec_json(spec: &ServiceSpec) -> Value {
    serde_json::to_value(service_spec(spec)).unwrap_or(Value::Null)
}

fn update_status(s: &UpdateStatus) -> wire::ServiceUpdateStatus {
    wire::ServiceUpdateStatus {
        state: word(s.state.as_str()),
        started_at: s.started_at.as_ref().map(time),
        completed_at: s.completed_at.as_ref().map(time),
        message: Some(s.message.clone()),
    }
}

fn healthcheck(h: &HealthConfig) -> wire::HealthConfig {
    wire::HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(int(h.interval_ns)),
        timeout: Some(int(h.timeout_ns)),
        retries: Some(int(h.retries)),
        start_period: Some(int(h.start_period_ns)),
        start_interval: None,
    }
}

fn task_template(t: &TaskTemplate) -> wire::TaskSpec {
    let seccomp = if t.isolation.seccomp_unconfined {
        "unconfined"
    } else {
        "default"
    };
    let mut container = wire::ContainerSpec {
        docker: bollard::models::TaskSpecContainerSpec {
            image: Some(t.image.clone()),
            args: Some(t.args.clone()),
            env: Some(t.env.clone()),
            stop_grace_period: Some(int(t.stop_grace_period_ns)),
            dir: Some(t.workdir.clone()),
            user: Some(t.user.clone()),
            labels: labels(&t.container_labels),
            secrets: Some(super::secrets::render_secret_refs(t)),
            configs: Some(super::secrets::render_config_refs(t)),
            mounts: (!t.mounts.is_empty())
                .then(|| t.mounts.iter().map(super::mounts::to_wire).collect()),
            hostname: Some(t.isolation.hostname.clone()),
            read_only: Some(t.isolation.read_only),
            capability_add: Some(t.isolation.cap_add.clone()),
            capability_drop: Some(t.isolation.cap_drop.clone()),
            stop_signal: (!t.isolation.stop_signal.is_empty())
                .then(|| t.isolation.stop_signal.clone()),
            privileges: Some(wire::TaskSpecContainerSpecPrivileges {
                seccomp: Some(wire::TaskSpecContainerSpecPrivilegesSeccomp {
                    mode: word(seccomp),
                    profile: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        healthcheck: t.healthcheck.as_ref().map(healthcheck),
        extra: Default::default(),
    };
    super::container_opts::to_wire(&t.options, &mut container.docker);
    let res = &t.resources;
    wire::TaskSpec {
        docker: bollard::models::TaskSpec {
            force_update: Some(t.force_update),
            resources: Some(wire::TaskSpecResources {
                limits: Some(wire::Limit {
                    nano_cpus: Some(int(res.limit_nano_cpus)),
                    memory_bytes: Some(int(res.limit_memory_bytes)),
                    pids: Some(int(res.limit_pids)),
                }),
                reservations: Some(wire::ResourceObject {
                    nano_cpus: Some(int(res.reserve_nano_cpus)),
                    memory_bytes: Some(int(res.reserve_memory_bytes)),
                    generic_resources: super::container_opts::generic_to_wire(&res.reserve_generic),
                }),
                ..Default::default()
            }),
            restart_policy: Some(wire::TaskSpecRestartPolicy {
                condition: word(t.restart_policy.condition.as_str()),
                delay: Some(int(t.restart_policy.delay_ns)),
                max_attempts: Some(int(t.restart_policy.max_attempts)),
                window: Some(int(t.restart_policy.window_ns)),
            }),
            networks: Some(super::networks::refs(&t.networks)),
            placement: Some(super::placement::spec(&t.placement)),
            ..Default::default()
        },
        driver: Some(t.driver.clone()),
        container_spec: Some(container),
        extra: Default::default(),
    }
}

/// The `mode` filter's word for a service mode.
pub fn mode_name(mode: &ServiceMode) -> &'static str {
    match mode {
        ServiceMode::Replicated { .. } => "replicated",
        ServiceMode::Global => "global",
        ServiceMode::ReplicatedJob { .. } => "replicated-job",
        ServiceMode::GlobalJob => "global-job",
    }
}

/// A task's name as docker shows it: `SERVICE.SLOT`, or `SERVICE.NODE` for a
/// global task.
pub fn task_name(t: &Task) -> String {
    match (t.slot, &t.node_id) {
        (0, Some(node)) => format!("{}.{node}", t.service_name),
        (slot, _) => format!("{}.{slot}", t.service_name),
    }
}

pub fn service(svc: &Service, state: &ClusterState) -> wire::Service {
    let mut running = 0u64;
    let mut completed = 0u64;
    for t in state.tasks_of_service(&svc.id) {
        if t.desired_state <= shoal_core::model::TaskState::Running {
            match t.status.state {
                shoal_core::model::TaskState::Running => running += 1,
                shoal_core::model::TaskState::Complete => completed += 1,
                _ => {}
            }
        }
    }
    wire::Service {
        docker: bollard::models::Service {
            id: Some(svc.id.clone()),
            version: version(svc.version),
            created_at: Some(time(&svc.created_at)),
            updated_at: Some(time(&svc.updated_at)),
            update_status: svc.update_status.as_ref().map(update_status),
            service_status: Some(wire::ServiceServiceStatus {
                running_tasks: Some(running),
                desired_tasks: Some(desired_tasks(svc, state)),
                completed_tasks: Some(completed),
            }),
            job_status: svc.spec.is_job().then(|| wire::ServiceJobStatus {
                job_iteration: version(svc.version),
                last_execution: None,
            }),
            ..Default::default()
        },
        spec: Some(service_spec(&svc.spec)),
        previous_spec: svc.previous_spec.as_ref().map(service_spec),
        endpoint: Some(wire::ServiceEndpoint {
            docker: bollard::models::ServiceEndpoint {
                virtual_ips: Some(super::networks::virtual_ips(svc, state)),
                ..Default::default()
            },
            spec: Some(super::ports::spec(&svc.spec.endpoint)),
            ports: Some(super::ports::published(&svc.spec.endpoint)),
        }),
    }
}

/// Replicas, or for a global service the nodes it is eligible on.
fn desired_tasks(svc: &Service, state: &ClusterState) -> u64 {
    // A job's: the tasks meant to be running now.
    let done = || {
        state
            .tasks_of_service(&svc.id)
            .filter(|t| {
                t.status.state == shoal_core::model::TaskState::Complete
                    && t.spec == svc.spec.task_template
            })
            .count() as u64
    };
    if let ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions,
    } = svc.spec.mode
    {
        return max_concurrent.min(total_completions.saturating_sub(done()));
    }
    if !svc.spec.is_global() {
        return svc.spec.replicas();
    }
    let constraints = shoal_core::rules::placement::Constraint::parse_all(
        &svc.spec.task_template.placement.constraints,
    )
    .unwrap_or_default();
    let eligible = state
        .nodes
        .values()
        .filter(|n| shoal_core::plan::global::eligible(svc, &constraints, n))
        .count() as u64;
    if svc.spec.mode == ServiceMode::GlobalJob {
        return eligible.saturating_sub(done());
    }
    eligible
}

pub fn task(t: &Task, state: &ClusterState) -> wire::Task {
    // A running task binds its service's host-mode ports on its node.
    let host_ports: Vec<&shoal_core::model::port::PortConfig> =
        match (t.status.state, state.services.get(&t.service_id)) {
            (shoal_core::model::TaskState::Running, Some(svc)) => svc
                .spec
                .endpoint
                .ports
                .iter()
                .filter(|p| p.publish_mode == shoal_core::model::port::PublishMode::Host)
                .collect(),
            _ => Vec::new(),
        };
    wire::Task {
        docker: bollard::models::Task {
            id: Some(t.id.clone()),
            version: version(t.version),
            created_at: Some(time(&t.created_at)),
            updated_at: Some(time(&t.updated_at)),
            service_id: Some(t.service_id.clone()),
            slot: Some(int(t.slot)),
            node_id: Some(t.node_id.clone().unwrap_or_default()),
            desired_state: word(t.desired_state.as_str()),
            ..Default::default()
        },
        service_name: Some(t.service_name.clone()),
        spec: Some(task_template(&t.spec)),
        status: Some(wire::TaskStatus {
            docker: bollard::models::TaskStatus {
                timestamp: Some(time(&t.status.timestamp)),
                state: word(t.status.state.as_str()),
                message: Some(t.status.message.clone()),
                err: Some(t.status.err.clone().unwrap_or_default()),
                container_status: Some(wire::ContainerStatus {
                    pid: Some(i64::from(t.status.pid.unwrap_or(0))),
                    exit_code: Some(i64::from(t.status.exit_code.unwrap_or(0))),
                    container_id: None,
                }),
                ..Default::default()
            },
            health: t.status.health.map(|h| h.as_str().to_string()),
            port_status: Some(wire::PortStatus {
                ports: Some(super::ports::published_ports(&host_ports)),
            }),
        }),
        networks_attachments: Some(super::networks::attachments(t, state)),
    }
}

pub fn node(n: &Node, leader: Option<&str>) -> wire::Node {
    let skew = n.clock_skew_ms.map(shoal_core::clock::describe);
    let manager_status =
        (n.role == shoal_core::model::NodeRole::Manager).then(|| wire::ManagerStatus {
            leader: Some(leader == Some(n.id.as_str())),
            reachability: word(if n.state == shoal_core::model::NodeState::Down {
                "unreachable"
            } else {
                "reachable"
            }),
            addr: Some(n.addr.clone()),
        });
    let confinement = &n.machine.confinement;
    wire::Node {
        docker: bollard::models::Node {
            id: Some(n.id.clone()),
            version: version(n.version),
            created_at: Some(time(&n.created_at)),
            updated_at: Some(time(&n.updated_at)),
            spec: Some(wire::NodeSpec {
                labels: labels(&n.labels),
                role: word(n.role.as_str()),
                availability: word(n.availability.as_str()),
                name: None,
            }),
            status: Some(wire::NodeStatus {
                state: word(n.state.as_str()),
                message: Some(match (n.status_message.as_str(), skew.as_deref()) {
                    ("", Some(skew)) => format!("clock {skew} off the cluster's"),
                    (message, _) => message.to_string(),
                }),
                addr: Some(n.addr.clone()),
            }),
            manager_status,
            ..Default::default()
        },
        description: Some(wire::NodeDescription {
            docker: wire::DockerNodeDescription {
                hostname: Some(n.hostname.clone()),
                platform: Some(wire::Platform {
                    architecture: Some(n.machine.arch.clone()),
                    os: Some(n.machine.os.clone()),
                }),
                resources: Some(wire::ResourceObject {
                    nano_cpus: Some(int(n.machine.nano_cpus)),
                    memory_bytes: Some(int(n.machine.memory_bytes)),
                    generic_resources: super::container_opts::generic_to_wire(
                        &n.machine.generic_resources,
                    ),
                }),
                ..Default::default()
            },
            engine: Some(wire::NodeEngine {
                docker: wire::EngineDescription {
                    engine_version: Some(
                        n.drivers
                            .iter()
                            .find(|d| d.name == "docker")
                            .map_or(env!("CARGO_PKG_VERSION"), |d| d.version.as_str())
                            .to_string(),
                    ),
                    labels: labels(&n.machine.engine_labels),
                    plugins: None,
                },
                drivers: Some(
                    n.drivers
                        .iter()
                        .map(|d| wire::DriverInfo {
                            name: d.name.clone(),
                            version: d.version.clone(),
                        })
                        .collect(),
                ),
            }),
            // shoal's own: whether process tasks can get a network of their own.
            network_sandbox: Some(wire::NetworkSandbox {
                available: n.sandbox_error.is_none(),
                reason: n.sandbox_error.clone(),
                max_sandboxes: n.machine.max_sandboxes,
            }),
            // shoal's own: how process tasks are confined there (docs/confinement.md).
            confinement: Some(wire::Confinement {
                available: confinement.cannot.is_empty(),
                can: confinement.can.clone(),
                cannot: confinement.cannot.clone(),
                missing_limits: confinement.missing_limits.clone(),
            }),
            format: Some(n.format()),
        }),
        clock_skew: skew,
    }
}

/// A service name as docker accepts it.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid service name {name:?}: a name must be 1 to 63 characters from [a-zA-Z0-9_.-], starting with a letter or digit"
        ))
    }
}

/// A count of the spec: absent is `default`, negative is refused.
fn count(v: Option<i64>, path: &str, default: u64) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(n) => {
            u64::try_from(n).map_err(|_| format!("{path} must be a non-negative integer, not {n}"))
        }
    }
}

fn parse_update_config(
    c: Option<&wire::ServiceSpecUpdateConfig>,
    what: &str,
    rollback: bool,
) -> Result<UpdateConfig, String> {
    let d = UpdateConfig::default();
    let Some(c) = c else {
        return Ok(d);
    };
    let noun = if rollback { "rollback" } else { "update" };
    let failure_action = match c.failure_action.map(|a| a.to_string()).as_deref() {
        None | Some("") => d.failure_action,
        Some(a) => FailureAction::parse(a)
            .filter(|a| !rollback || *a != FailureAction::Rollback)
            .ok_or_else(|| format!("unrecognized {noun} failure action {a}"))?,
    };
    let order = match c.order.map(|o| o.to_string()).as_deref() {
        None | Some("") => d.order,
        Some(o) => UpdateOrder::parse(o).ok_or_else(|| format!("unrecognized {noun} order {o}"))?,
    };
    let ratio = c.max_failure_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!(
            "{what}.MaxFailureRatio must be between 0 and 1, not {ratio}"
        ));
    }
    Ok(UpdateConfig {
        parallelism: count(c.parallelism, &format!("{what}.Parallelism"), d.parallelism)?,
        delay_ns: count(c.delay, &format!("{what}.Delay"), d.delay_ns)?,
        failure_action,
        monitor_ns: count(c.monitor, &format!("{what}.Monitor"), d.monitor_ns)?,
        max_failure_ratio_ppm: (ratio * 1e6).round() as u32,
        order,
    })
}

fn parse_healthcheck(h: Option<&wire::HealthConfig>) -> Result<Option<HealthConfig>, String> {
    let Some(h) = h else {
        return Ok(None);
    };
    let at = |v: Option<i64>, k: &str| count(v, &format!("Healthcheck.{k}"), 0);
    Ok(Some(HealthConfig {
        test: h.test.clone().unwrap_or_default(),
        interval_ns: at(h.interval, "Interval")?,
        timeout_ns: at(h.timeout, "Timeout")?,
        retries: at(h.retries, "Retries")?,
        start_period_ns: at(h.start_period, "StartPeriod")?,
    }))
}

fn parse_mode(m: Option<&wire::ServiceSpecMode>) -> Result<ServiceMode, String> {
    let Some(m) = m else {
        return Ok(ServiceMode::Replicated { replicas: 1 });
    };
    let set = [
        m.replicated.is_some(),
        m.global.is_some(),
        m.replicated_job.is_some(),
        m.global_job.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(
            "Mode: only one of Replicated, Global, ReplicatedJob and GlobalJob may be set".into(),
        );
    }
    Ok(if m.global.is_some() {
        ServiceMode::Global
    } else if m.global_job.is_some() {
        ServiceMode::GlobalJob
    } else if let Some(job) = &m.replicated_job {
        let total_completions = count(
            job.total_completions,
            "Mode.ReplicatedJob.TotalCompletions",
            1,
        )?;
        ServiceMode::ReplicatedJob {
            // docker: as many at once as there are completions, unless told.
            max_concurrent: count(
                job.max_concurrent,
                "Mode.ReplicatedJob.MaxConcurrent",
                total_completions,
            )?,
            total_completions,
        }
    } else {
        ServiceMode::Replicated {
            replicas: count(
                m.replicated.as_ref().and_then(|r| r.replicas),
                "Mode.Replicated.Replicas",
                1,
            )?,
        }
    })
}

fn map(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    labels
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Parses a Docker-shaped ServiceSpec, filling docker's defaults: read into
/// the Engine API's type (`typed::read`, shoal's words for a value that
/// does not fit), then mapped onto the domain's spec.
pub fn parse_service_spec(v: &Value) -> Result<ServiceSpec, String> {
    let w: wire::ServiceSpec = super::typed::read(v)?;
    service_spec_from_wire(&w)
}

/// The domain's spec for a typed Engine API spec, with shoal's checks.
pub fn service_spec_from_wire(w: &wire::ServiceSpec) -> Result<ServiceSpec, String> {
    let name = w.docker.name.clone().unwrap_or_default();
    validate_name(&name)?;
    let mode = parse_mode(w.docker.mode.as_ref())?;
    let tt = w.task_template.clone().unwrap_or_default();
    let c = tt.container_spec.clone().unwrap_or_default();
    let image = c.docker.image.clone().unwrap_or_default();
    if image.is_empty() {
        return Err("ContainerSpec: image reference must be provided".into());
    }
    let driver = tt.driver.clone().unwrap_or_else(|| "docker".into());
    let defaults = TaskTemplate::default();
    let rp = tt.docker.restart_policy.clone().unwrap_or_default();
    let condition = match rp.condition.map(|c| c.to_string()).as_deref() {
        None => RestartCondition::Any,
        Some(c) => RestartCondition::parse(c).ok_or_else(|| {
            format!("invalid restart condition {c:?}: expected one of none, on-failure, any")
        })?,
    };
    let env = c.docker.env.clone().unwrap_or_default();
    if let Some(bad) = env
        .iter()
        .find(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty()))
    {
        return Err(format!(
            "invalid environment variable {bad:?}: expected KEY=VALUE"
        ));
    }
    let res = tt.docker.resources.clone().unwrap_or_default();
    let limits = res.limits.unwrap_or_default();
    let reservations = res.reservations.unwrap_or_default();
    let spec = ServiceSpec {
        name,
        labels: map(w.docker.labels.as_ref()),
        mode,
        task_template: TaskTemplate {
            driver,
            image,
            args: c.docker.args.clone().unwrap_or_default(),
            env,
            restart_policy: RestartPolicy {
                condition,
                delay_ns: count(
                    rp.delay,
                    "RestartPolicy.Delay",
                    defaults.restart_policy.delay_ns,
                )?,
                max_attempts: count(rp.max_attempts, "RestartPolicy.MaxAttempts", 0)?,
                window_ns: count(rp.window, "RestartPolicy.Window", 0)?,
            },
            stop_grace_period_ns: count(
                c.docker.stop_grace_period,
                "ContainerSpec.StopGracePeriod",
                defaults.stop_grace_period_ns,
            )?,
            workdir: c.docker.dir.clone().unwrap_or_default(),
            user: c.docker.user.clone().unwrap_or_default(),
            container_labels: map(c.docker.labels.as_ref()),
            resources: shoal_core::model::Resources {
                limit_nano_cpus: count(limits.nano_cpus, "Resources.Limits.NanoCPUs", 0)?,
                limit_memory_bytes: count(limits.memory_bytes, "Resources.Limits.MemoryBytes", 0)?,
                reserve_nano_cpus: count(
                    reservations.nano_cpus,
                    "Resources.Reservations.NanoCPUs",
                    0,
                )?,
                reserve_memory_bytes: count(
                    reservations.memory_bytes,
                    "Resources.Reservations.MemoryBytes",
                    0,
                )?,
                limit_pids: count(limits.pids, "Resources.Limits.Pids", 0)?,
                reserve_generic: super::container_opts::parse_generic(
                    reservations.generic_resources.as_deref(),
                )?,
            },
            healthcheck: parse_healthcheck(c.healthcheck.as_ref())?,
            force_update: tt.docker.force_update.unwrap_or(0),
            networks: super::networks::parse_refs(tt.docker.networks.as_deref())?,
            secrets: super::secrets::parse_refs(Some(&c), shoal_core::model::secret::Kind::Secret)?,
            configs: super::secrets::parse_refs(Some(&c), shoal_core::model::secret::Kind::Config)?,
            placement: super::placement::parse(tt.docker.placement.as_ref())?,
            mounts: super::mounts::parse(c.docker.mounts.as_deref())?,
            isolation: Box::new(parse_isolation(&c)?),
            options: Box::new(super::container_opts::parse(&c.docker)?),
        },
        update_config: parse_update_config(w.docker.update_config.as_ref(), "UpdateConfig", false)?,
        rollback_config: parse_update_config(
            w.docker
                .rollback_config
                .as_ref()
                .map(rollback_as_update)
                .as_ref(),
            "RollbackConfig",
            true,
        )?,
        endpoint: super::ports::parse(w.endpoint_spec.as_ref())?,
    };
    shoal_core::limits::check_service_spec(&spec).map_err(|e| e.0)?;
    crate::driver::support::check(&spec.task_template)?;
    crate::templates::check(&spec.name, &spec.labels, &spec.task_template)?;
    Ok(spec)
}

/// `RollbackConfig` has the fields of `UpdateConfig` (its enums lack
/// `rollback`, which the typed read already refused).
fn rollback_as_update(r: &wire::ServiceSpecRollbackConfig) -> wire::ServiceSpecUpdateConfig {
    wire::ServiceSpecUpdateConfig {
        parallelism: r.parallelism,
        delay: r.delay,
        failure_action: r.failure_action.and_then(|a| word(a.as_ref())),
        monitor: r.monitor,
        max_failure_ratio: r.max_failure_ratio,
        order: r.order.and_then(|o| word(o.as_ref())),
    }
}

/// `ContainerSpec.Hostname`, `ReadOnly`, `CapabilityAdd`, `CapabilityDrop`
/// and `Privileges.Seccomp.Mode` (`default` or `unconfined`).
fn parse_isolation(c: &wire::ContainerSpec) -> Result<shoal_core::model::Isolation, String> {
    let c = &c.docker;
    let seccomp = c
        .privileges
        .as_ref()
        .and_then(|p| p.seccomp.as_ref())
        .and_then(|s| s.mode)
        .map(|m| m.to_string())
        .unwrap_or_default();
    let seccomp_unconfined = match seccomp.as_str() {
        "" | "default" => false,
        "unconfined" => true,
        other => {
            return Err(format!(
                "invalid seccomp mode {other:?}: expected default or unconfined (custom profiles are not supported)"
            ))
        }
    };
    let iso = shoal_core::model::Isolation {
        hostname: c.hostname.clone().unwrap_or_default(),
        read_only: c.read_only.unwrap_or(false),
        cap_add: c.capability_add.clone().unwrap_or_default(),
        cap_drop: c.capability_drop.clone().unwrap_or_default(),
        seccomp_unconfined,
        stop_signal: match c.stop_signal.as_deref().unwrap_or_default() {
            "" => String::new(),
            s => crate::driver::support::stop_signal(s)?.as_str().to_string(),
        },
    };
    crate::confine::caps::effective(&iso.cap_add, &iso.cap_drop).map_err(|e| e.to_string())?;
    // The hostname is checked once its templates are expanded (`templates`).
    Ok(iso)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_round_trips_through_docker_json() {
        let v = json!({
            "Name": "web",
            "Mode": {"Replicated": {"Replicas": 3}},
            "TaskTemplate": {"Driver": "process", "ContainerSpec": {"Image": "/bin/sleep", "Args": ["100"], "Env": ["A=1"]},
                              "RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 2}}
        });
        let spec = parse_service_spec(&v).unwrap();
        assert_eq!(spec.replicas(), 3);
        assert_eq!(
            spec.task_template.restart_policy.condition,
            RestartCondition::OnFailure
        );
        assert_eq!(parse_service_spec(&service_spec_json(&spec)).unwrap(), spec);
    }

    #[test]
    fn update_configs_and_health_checks_round_trip() {
        let v = json!({
            "Name": "web",
            "TaskTemplate": {"ContainerSpec": {"Image": "x",
                "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000u64, "Retries": 2}},
                "ForceUpdate": 3},
            "UpdateConfig": {"Parallelism": 2, "Delay": 10, "FailureAction": "rollback",
                             "MaxFailureRatio": 0.25, "Order": "start-first"},
            "RollbackConfig": {"FailureAction": "continue", "Monitor": 0}
        });
        let spec = parse_service_spec(&v).unwrap();
        assert_eq!(spec.update_config.parallelism, 2);
        assert_eq!(spec.update_config.failure_action, FailureAction::Rollback);
        assert_eq!(spec.update_config.max_failure_ratio_ppm, 250_000);
        assert_eq!(spec.update_config.order, UpdateOrder::StartFirst);
        assert_eq!(spec.update_config.monitor_ns, 5_000_000_000);
        assert_eq!(spec.rollback_config.monitor_ns, 0);
        assert_eq!(spec.task_template.force_update, 3);
        assert_eq!(
            spec.task_template.healthcheck.as_ref().map(|h| h.retries),
            Some(2)
        );
        assert_eq!(parse_service_spec(&service_spec_json(&spec)).unwrap(), spec);
        let bad = json!({"Name": "a", "TaskTemplate": {"ContainerSpec": {"Image": "x"}},
                         "RollbackConfig": {"FailureAction": "rollback"}});
        assert_eq!(
            parse_service_spec(&bad).unwrap_err(),
            "unrecognized rollback failure action rollback"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let no_name = json!({"TaskTemplate": {"ContainerSpec": {"Image": "x"}}});
        assert!(parse_service_spec(&no_name)
            .unwrap_err()
            .contains("invalid service name"));
        let neg = json!({"Name": "a", "Mode": {"Replicated": {"Replicas": -1}}, "TaskTemplate": {"ContainerSpec": {"Image": "x"}}});
        assert!(parse_service_spec(&neg)
            .unwrap_err()
            .contains("non-negative"));
        let no_image = json!({"Name": "a"});
        assert!(parse_service_spec(&no_image)
            .unwrap_err()
            .contains("image reference"));
        let huge = json!({"Name": "a", "Mode": {"Replicated": {"Replicas": 9223372036854775808u64}}, "TaskTemplate": {"ContainerSpec": {"Image": "x"}}});
        assert!(parse_service_spec(&huge)
            .unwrap_err()
            .contains("Replicas must be at most"));
    }
}
