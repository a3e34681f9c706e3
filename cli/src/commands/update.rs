//! `service update` and `service rollback`, and the flags `service create`
//! shares with them (`--update-*`, `--rollback-*`, `--health-*`).

use std::collections::{BTreeMap, HashMap};

use anyhow::anyhow;
use clap::Args;
use shoal_node::api::wire::{self, word, HealthConfig, NetworkAttachmentConfig};

use super::update_progress::wait_rollout;
use crate::client::{enc, Client};
use crate::output::{parse_duration, InvalidValue};

fn duration_ns(s: &str) -> Result<u64, String> {
    parse_duration(s)
}

/// docker's `--update-parallelism` is an unsigned integer flag.
fn parallelism(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {s:?}: invalid syntax (expected a non-negative integer)"
        )
    })
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
    }
}

fn retries(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| {
        format!("strconv.ParseInt: parsing {s:?}: invalid syntax (expected a non-negative integer)")
    })
}

/// The `--update-*` and `--rollback-*` flags: only those given change the spec.
#[derive(Args, Default)]
pub struct RolloutFlags {
    /// Maximum number of tasks updated simultaneously (0 to update all at once)
    #[arg(long, value_parser = parallelism, allow_hyphen_values = true)]
    update_parallelism: Option<u64>,
    /// Delay between updates (ns|us|ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    update_delay: Option<u64>,
    /// Action on update failure ("pause", "continue", "rollback")
    #[arg(long)]
    update_failure_action: Option<String>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    update_monitor: Option<u64>,
    /// Failure rate to tolerate during an update
    #[arg(long, value_parser = ratio, allow_hyphen_values = true)]
    update_max_failure_ratio: Option<f64>,
    /// Update order ("start-first", "stop-first")
    #[arg(long)]
    update_order: Option<String>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once)
    #[arg(long, value_parser = parallelism, allow_hyphen_values = true)]
    rollback_parallelism: Option<u64>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    rollback_delay: Option<u64>,
    /// Action on rollback failure ("pause", "continue")
    #[arg(long)]
    rollback_failure_action: Option<String>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    rollback_monitor: Option<u64>,
    /// Failure rate to tolerate during a rollback
    #[arg(long, value_parser = ratio, allow_hyphen_values = true)]
    rollback_max_failure_ratio: Option<f64>,
    /// Rollback order ("start-first", "stop-first")
    #[arg(long)]
    rollback_order: Option<String>,
}

/// One of docker's words for an enum of the spec, or the daemon's refusal
/// in its words (the typed spec cannot carry another word).
fn enum_word<E: std::str::FromStr>(v: &str, refusal: &str) -> anyhow::Result<E> {
    word(v).ok_or_else(|| anyhow!("{refusal} {v}"))
}

impl RolloutFlags {
    /// Writes the given flags into a ServiceSpec.
    pub fn apply(&self, spec: &mut wire::ServiceSpec) -> anyhow::Result<()> {
        let d = &mut spec.docker;
        if self.update_parallelism.is_some()
            || self.update_delay.is_some()
            || self.update_failure_action.is_some()
            || self.update_monitor.is_some()
            || self.update_max_failure_ratio.is_some()
            || self.update_order.is_some()
        {
            let c = d.update_config.get_or_insert_with(Default::default);
            if let Some(v) = self.update_parallelism {
                c.parallelism = Some(wire::int(v));
            }
            if let Some(v) = self.update_delay {
                c.delay = Some(wire::int(v));
            }
            if let Some(v) = &self.update_failure_action {
                c.failure_action = Some(enum_word(v, "unrecognized update failure action")?);
            }
            if let Some(v) = self.update_monitor {
                c.monitor = Some(wire::int(v));
            }
            if let Some(v) = self.update_max_failure_ratio {
                c.max_failure_ratio = Some(v);
            }
            if let Some(v) = &self.update_order {
                c.order = Some(enum_word(v, "unrecognized update order")?);
            }
        }
        if self.rollback_parallelism.is_some()
            || self.rollback_delay.is_some()
            || self.rollback_failure_action.is_some()
            || self.rollback_monitor.is_some()
            || self.rollback_max_failure_ratio.is_some()
            || self.rollback_order.is_some()
        {
            let c = d.rollback_config.get_or_insert_with(Default::default);
            if let Some(v) = self.rollback_parallelism {
                c.parallelism = Some(wire::int(v));
            }
            if let Some(v) = self.rollback_delay {
                c.delay = Some(wire::int(v));
            }
            if let Some(v) = &self.rollback_failure_action {
                c.failure_action = Some(enum_word(v, "unrecognized rollback failure action")?);
            }
            if let Some(v) = self.rollback_monitor {
                c.monitor = Some(wire::int(v));
            }
            if let Some(v) = self.rollback_max_failure_ratio {
                c.max_failure_ratio = Some(v);
            }
            if let Some(v) = &self.rollback_order {
                c.order = Some(enum_word(v, "unrecognized rollback order")?);
            }
        }
        Ok(())
    }
}

/// The `--health-*` flags.
#[derive(Args, Default)]
pub struct HealthFlags {
    /// Command to run to check health
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    health_interval: Option<u64>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    health_timeout: Option<u64>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_parser = retries, allow_hyphen_values = true)]
    health_retries: Option<u64>,
    /// Start period for the container to initialize before counting retries towards unstable (ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    health_start_period: Option<u64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    no_healthcheck: bool,
}

impl HealthFlags {
    fn any(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
    }

    /// Writes the given flags into a ContainerSpec.
    pub fn apply(&self, container: &mut wire::ContainerSpec) -> anyhow::Result<()> {
        if self.no_healthcheck && self.any() {
            return Err(anyhow!(
                "--no-healthcheck conflicts with --health-* options"
            ));
        }
        if self.no_healthcheck {
            container.healthcheck = Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            });
            return Ok(());
        }
        if !self.any() {
            return Ok(());
        }
        let h = container.healthcheck.get_or_insert_with(Default::default);
        if h.test.as_ref().and_then(|t| t.first()).map(String::as_str) == Some("NONE") {
            h.test = Some(Vec::new());
        }
        if let Some(cmd) = &self.health_cmd {
            h.test = Some(vec!["CMD-SHELL".into(), cmd.clone()]);
        }
        for (field, v) in [
            (&mut h.interval, self.health_interval),
            (&mut h.timeout, self.health_timeout),
            (&mut h.retries, self.health_retries),
            (&mut h.start_period, self.health_start_period),
        ] {
            if let Some(v) = v {
                *field = Some(wire::int(v));
            }
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Service image tag (or, with the process driver, executable)
    #[arg(long)]
    image: Option<String>,
    /// Service command args
    #[arg(long, allow_hyphen_values = true)]
    args: Option<String>,
    /// Add or update an environment variable
    #[arg(long)]
    env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long)]
    env_rm: Vec<String>,
    #[command(flatten)]
    files: super::file_flags::UpdateFileFlags,
    /// Add or update a service label
    #[arg(long)]
    label_add: Vec<String>,
    /// Remove a label by its key
    #[arg(long)]
    label_rm: Vec<String>,
    /// Add or update a container label
    #[arg(long)]
    container_label_add: Vec<String>,
    /// Remove a container label by its key
    #[arg(long)]
    container_label_rm: Vec<String>,
    /// Add or update a published port ([PUBLISHED:]TARGET[/PROTO] or published=,target=,...)
    #[arg(long, value_parser = super::values::publish_value)]
    publish_add: Vec<String>,
    /// Remove a published port by its target port ([PUBLISHED:]TARGET[/PROTO])
    #[arg(long, value_parser = super::values::publish_value)]
    publish_rm: Vec<String>,
    /// Add a network (NAME or name=NAME,alias=A)
    #[arg(long, value_parser = crate::attach::value)]
    network_add: Vec<String>,
    /// Remove a network (by name or id)
    #[arg(long)]
    network_rm: Vec<String>,
    /// Endpoint mode (vip or dnsrr)
    #[arg(long, value_parser = ["vip", "dnsrr"])]
    endpoint_mode: Option<String>,
    /// Number of tasks
    #[arg(long, value_parser = super::values::replicas, allow_hyphen_values = true)]
    replicas: Option<u64>,
    /// Restart when condition is met ("none", "on-failure", "any")
    #[arg(long, value_parser = ["none", "on-failure", "any"])]
    restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    restart_delay: Option<u64>,
    /// Maximum number of restarts before giving up
    #[arg(long)]
    restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    restart_window: Option<u64>,
    /// Time to wait before force killing a task (ns|us|ms|s|m|h)
    #[arg(long, value_parser = duration_ns, allow_hyphen_values = true)]
    stop_grace_period: Option<u64>,
    /// Limit CPUs
    #[arg(long, value_parser = super::values::cpus)]
    limit_cpu: Option<u64>,
    /// Limit Memory
    #[arg(long, value_parser = super::values::bytes)]
    limit_memory: Option<u64>,
    /// Limit the number of processes (0: unlimited)
    #[arg(long)]
    limit_pids: Option<u64>,
    /// Container hostname
    #[arg(long)]
    hostname: Option<String>,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Add or update a mount on a service
    #[arg(long = "mount-add", value_parser = crate::mount::parse)]
    mount_add: Vec<bollard::models::Mount>,
    /// Remove a mount by its target path
    #[arg(long = "mount-rm")]
    mount_rm: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    read_only: Option<bool>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Reserve CPUs
    #[arg(long, value_parser = super::values::cpus)]
    reserve_cpu: Option<u64>,
    /// Reserve Memory
    #[arg(long, value_parser = super::values::bytes)]
    reserve_memory: Option<u64>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    #[command(flatten)]
    rollout: RolloutFlags,
    #[command(flatten)]
    health: HealthFlags,
    #[command(flatten)]
    placement: super::placement::UpdateFlags,
    #[command(flatten)]
    container: crate::container_opts::ContainerUpdateFlags,
    /// Force update even if no changes require it
    #[arg(long)]
    force: bool,
    /// Rollback to previous specification
    #[arg(long)]
    rollback: bool,
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
    service: String,
}

#[derive(Args)]
pub struct RollbackArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
    service: String,
}

/// `KEY=VALUE` entries: `add` replaces those of the same key or is appended,
/// `rm` removes by key.
fn edit_env(list: &mut Vec<String>, add: &[String], rm: &[String]) -> anyhow::Result<()> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    list.retain(|e| !rm.contains(&key(e)));
    for a in add {
        let Some((k, _)) = a.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(anyhow!(
                "invalid environment variable {a:?}: expected KEY=VALUE"
            ));
        };
        match list.iter_mut().find(|e| key(e) == k) {
            Some(e) => *e = a.clone(),
            None => list.push(a.clone()),
        }
    }
    Ok(())
}

fn edit_labels(
    labels: &mut Option<HashMap<String, String>>,
    add: &[String],
    rm: &[String],
) -> anyhow::Result<()> {
    let map = labels.get_or_insert_with(Default::default);
    for k in rm {
        map.remove(k);
    }
    map.extend(super::values::labels(add)?);
    Ok(())
}

/// `--network-add/-rm`, with each name resolved to the network's id (the
/// spec names networks by id).
struct NetworkEdits {
    add: Vec<(String, NetworkAttachmentConfig)>,
    rm: Vec<(String, String)>,
}

impl NetworkEdits {
    async fn resolve(client: &Client, add: &[String], rm: &[String]) -> anyhow::Result<Self> {
        let id_of = |n: String| async move {
            if n == "host" {
                return Ok(n);
            }
            client
                .get_as::<wire::Network>(&format!("/networks/{}", enc(&n)))
                .await
                .map(|v| v.docker.id.unwrap_or_default())
        };
        let mut out = NetworkEdits {
            add: Vec::new(),
            rm: Vec::new(),
        };
        for a in add {
            let mut v = crate::attach::parse(a).map_err(InvalidValue)?;
            let id = id_of(v.target.clone().unwrap_or_default()).await?;
            v.target = Some(id);
            out.add.push((a.clone(), v));
        }
        for r in rm {
            let id = id_of(r.clone()).await.unwrap_or_else(|_| r.clone());
            out.rm.push((r.clone(), id));
        }
        Ok(out)
    }

    fn apply(&self, tt: &mut wire::TaskSpec) -> anyhow::Result<()> {
        if self.add.is_empty() && self.rm.is_empty() {
            return Ok(());
        }
        let mut list = tt.docker.networks.take().unwrap_or_default();
        for (name, id) in &self.rm {
            let before = list.len();
            list.retain(|n| n.target.as_ref() != Some(id) && n.target.as_ref() != Some(name));
            if list.len() == before {
                return Err(anyhow!("network {name} is not attached to the service"));
            }
        }
        for (name, v) in &self.add {
            if list.iter().any(|n| n.target == v.target) {
                return Err(anyhow!("service is already attached to network {name}"));
            }
            list.push(v.clone());
        }
        tt.docker.networks = Some(list);
        Ok(())
    }
}

/// As docker: an added capability leaves the drop list, a dropped one the
/// add list.
fn edit_capabilities(c: &mut wire::ContainerSpec, cap_add: &[String], cap_drop: &[String]) {
    if cap_add.is_empty() && cap_drop.is_empty() {
        return;
    }
    let same = |a: &str, b: &str| {
        a.trim_start_matches("CAP_")
            .eq_ignore_ascii_case(b.trim_start_matches("CAP_"))
    };
    let mut add = c.docker.capability_add.take().unwrap_or_default();
    let mut drop = c.docker.capability_drop.take().unwrap_or_default();
    add.retain(|a| !cap_drop.iter().any(|d| same(a, d)));
    drop.retain(|d| !cap_add.iter().any(|a| same(a, d)));
    for a in cap_add {
        if !add.iter().any(|x| same(x, a)) {
            add.push(a.clone());
        }
    }
    for d in cap_drop {
        if !drop.iter().any(|x| same(x, d)) {
            drop.push(d.clone());
        }
    }
    c.docker.capability_add = Some(add);
    c.docker.capability_drop = Some(drop);
}

impl UpdateArgs {
    /// The service's spec with these flags applied.
    fn edit(&self, spec: &mut wire::ServiceSpec, nets: &NetworkEdits) -> anyhow::Result<()> {
        if let Some(n) = self.replicas {
            if spec
                .docker
                .mode
                .as_ref()
                .is_some_and(|m| m.global.is_some())
            {
                return Err(anyhow!(
                    "replicas can only be used with replicated or replicated-job mode"
                ));
            }
            spec.docker.mode = Some(super::placement::replicated(n));
        }
        edit_labels(&mut spec.docker.labels, &self.label_add, &self.label_rm)?;
        if !self.publish_add.is_empty() || !self.publish_rm.is_empty() {
            let es = spec.endpoint_spec.get_or_insert_with(Default::default);
            let mut ports = es.ports.take().unwrap_or_default();
            crate::publish::edit(&mut ports, &self.publish_add, &self.publish_rm)
                .map_err(InvalidValue)?;
            es.ports = Some(ports);
        }
        if let Some(m) = &self.endpoint_mode {
            spec.endpoint_spec
                .get_or_insert_with(Default::default)
                .docker
                .mode = Some(crate::publish::endpoint_mode(m).map_err(InvalidValue)?);
        }
        self.rollout.apply(spec)?;
        let tt = spec.task_template.get_or_insert_with(Default::default);
        nets.apply(tt)?;
        self.placement.apply(tt);
        self.container.apply(tt)?;
        let c = tt.container_spec.get_or_insert_with(Default::default);
        self.health.apply(c)?;
        edit_labels(
            &mut c.docker.labels,
            &self.container_label_add,
            &self.container_label_rm,
        )?;
        let d = &mut c.docker;
        if let Some(i) = &self.image {
            d.image = Some(i.clone());
        }
        if let Some(a) = &self.args {
            d.args = Some(a.split_whitespace().map(str::to_string).collect());
        }
        let mut env = d.env.take().unwrap_or_default();
        edit_env(&mut env, &self.env_add, &self.env_rm)?;
        d.env = Some(env);
        if let Some(g) = self.stop_grace_period {
            d.stop_grace_period = Some(wire::int(g));
        }
        if let Some(w) = &self.workdir {
            d.dir = Some(w.clone());
        }
        if let Some(user) = &self.user {
            d.user = Some(user.clone());
        }
        if let Some(h) = &self.hostname {
            d.hostname = Some(h.clone());
        }
        if let Some(r) = self.read_only {
            d.read_only = Some(r);
        }
        if let Some(s) = &self.stop_signal {
            d.stop_signal = Some(s.clone());
        }
        if !self.mount_add.is_empty() || !self.mount_rm.is_empty() {
            let mounts = d.mounts.take().unwrap_or_default();
            d.mounts = Some(update_mounts(mounts, &self.mount_add, &self.mount_rm)?);
        }
        self.files.apply(c)?;
        edit_capabilities(c, &self.cap_add, &self.cap_drop);
        {
            let r = tt
                .docker
                .restart_policy
                .get_or_insert_with(Default::default);
            if let Some(v) = &self.restart_condition {
                r.condition = Some(enum_word(v, "invalid restart condition")?);
            }
            if let Some(v) = self.restart_delay {
                r.delay = Some(wire::int(v));
            }
            if let Some(v) = self.restart_max_attempts {
                r.max_attempts = Some(wire::int(v));
            }
            if let Some(v) = self.restart_window {
                r.window = Some(wire::int(v));
            }
        }
        if self.limit_cpu.is_some() || self.limit_memory.is_some() || self.limit_pids.is_some() {
            let res = tt.docker.resources.get_or_insert_with(Default::default);
            let l = res.limits.get_or_insert_with(Default::default);
            for (field, v) in [
                (&mut l.nano_cpus, self.limit_cpu),
                (&mut l.memory_bytes, self.limit_memory),
                (&mut l.pids, self.limit_pids),
            ] {
                if let Some(v) = v {
                    *field = Some(wire::int(v));
                }
            }
        }
        if self.reserve_cpu.is_some() || self.reserve_memory.is_some() {
            let res = tt.docker.resources.get_or_insert_with(Default::default);
            let r = res.reservations.get_or_insert_with(Default::default);
            for (field, v) in [
                (&mut r.nano_cpus, self.reserve_cpu),
                (&mut r.memory_bytes, self.reserve_memory),
            ] {
                if let Some(v) = v {
                    *field = Some(wire::int(v));
                }
            }
        }
        if self.force {
            tt.docker.force_update = Some(tt.docker.force_update.unwrap_or(0).saturating_add(1));
        }
        Ok(())
    }
}

/// A service's id and version, as `GET /services/{id}` gave them.
pub(crate) fn id_and_version(svc: &wire::Service) -> (String, i64) {
    let id = svc.docker.id.clone().unwrap_or_default();
    let version = svc
        .docker
        .version
        .as_ref()
        .and_then(|v| v.index)
        .unwrap_or(0);
    (id, i64::try_from(version).unwrap_or(i64::MAX))
}

pub async fn update(client: &Client, a: UpdateArgs) -> anyhow::Result<()> {
    if a.rollback {
        return rollback(
            client,
            RollbackArgs {
                detach: a.detach,
                quiet: a.quiet,
                service: a.service,
            },
        )
        .await;
    }
    // The updater records its progress in the service, which bumps its
    // version: a write that lost that race is made again from a fresh read
    // (the whole edit is redone, so `--force` still bumps once).
    let nets = NetworkEdits::resolve(client, &a.network_add, &a.network_rm).await?;
    let mut attempts = 0;
    let (version, id) = loop {
        let svc: wire::Service = client
            .get_as(&format!("/services/{}", enc(&a.service)))
            .await?;
        let (id, version) = id_and_version(&svc);
        let Some(mut spec) = svc.spec else {
            return Err(anyhow!("the daemon sent no spec for service {}", a.service));
        };
        a.edit(&mut spec, &nets)?;
        let sent: anyhow::Result<wire::ServiceUpdateResponse> = client
            .post_as(
                &format!("/services/{}/update?version={version}", enc(&id)),
                &spec,
            )
            .await;
        match sent {
            Ok(_) => break (version, id),
            Err(e) if attempts < 5 && e.to_string().contains("update out of sequence") => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    };
    println!("{}", a.service);
    if !a.detach {
        // An update that changed nothing leaves the last rollout's status
        // in place, a finished rollback included: that is no failure.
        let after: wire::Service = client.get_as(&format!("/services/{}", enc(&id))).await?;
        let unchanged = id_and_version(&after).1 == version;
        wait_rollout(client, &id, a.quiet, unchanged).await?;
    }
    Ok(())
}

pub async fn rollback(client: &Client, a: RollbackArgs) -> anyhow::Result<()> {
    let mut attempts = 0;
    let id = loop {
        let svc: wire::Service = client
            .get_as(&format!("/services/{}", enc(&a.service)))
            .await?;
        let (id, version) = id_and_version(&svc);
        let sent: anyhow::Result<wire::ServiceUpdateResponse> = client
            .post_as(
                &format!(
                    "/services/{}/update?rollback=previous&version={version}",
                    enc(&id)
                ),
                &svc.spec,
            )
            .await;
        match sent {
            Ok(_) => break id,
            // The updater wrote its progress meanwhile: read again.
            Err(e) if attempts < 5 && e.to_string().contains("update out of sequence") => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    };
    println!("{}", a.service);
    if !a.detach {
        wait_rollout(client, &id, a.quiet, true).await?;
    }
    Ok(())
}

/// docker's `updateMounts`: an added mount replaces the one with its
/// target, `--mount-rm` removes by target, and the list is sorted by
/// source, then target.
fn update_mounts(
    old: Vec<bollard::models::Mount>,
    add: &[bollard::models::Mount],
    rm: &[String],
) -> anyhow::Result<Vec<bollard::models::Mount>> {
    let mut by_target: BTreeMap<String, bollard::models::Mount> = Default::default();
    for m in add {
        let target = m.target.clone().unwrap_or_default();
        if by_target.contains_key(&target) {
            anyhow::bail!("duplicate mount target");
        }
        by_target.insert(target, m.clone());
    }
    for m in old {
        let target = m.target.clone().unwrap_or_default();
        by_target.entry(target).or_insert(m);
    }
    let mut mounts: Vec<bollard::models::Mount> = by_target
        .into_iter()
        .filter(|(target, _)| !rm.contains(target))
        .map(|(_, m)| m)
        .collect();
    mounts.sort_by_key(|m| {
        (
            m.source.clone().unwrap_or_default(),
            m.target.clone().unwrap_or_default(),
        )
    });
    Ok(mounts)
}
