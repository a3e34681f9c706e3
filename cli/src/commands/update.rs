//! `service update` and `service rollback`, and the flags `service create`
//! shares with them (`--update-*`, `--rollback-*`, `--health-*`).

use anyhow::anyhow;
use clap::Args;
use serde_json::{json, Map, Value};

use super::update_progress::wait_rollout;
use crate::client::{enc, Client};
use crate::output::{parse_duration, s, u, InvalidValue};

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

fn object<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    if !v[key].is_object() {
        v[key] = json!({});
    }
    match v[key].as_object_mut() {
        Some(m) => m,
        None => unreachable!("just made an object"),
    }
}

impl RolloutFlags {
    /// Writes the given flags into a Docker-shaped ServiceSpec.
    pub fn apply(&self, spec: &mut Value) {
        let sets = [
            (
                "UpdateConfig",
                self.update_parallelism,
                self.update_delay,
                &self.update_failure_action,
                self.update_monitor,
                self.update_max_failure_ratio,
                &self.update_order,
            ),
            (
                "RollbackConfig",
                self.rollback_parallelism,
                self.rollback_delay,
                &self.rollback_failure_action,
                self.rollback_monitor,
                self.rollback_max_failure_ratio,
                &self.rollback_order,
            ),
        ];
        for (key, par, delay, action, monitor, ratio, order) in sets {
            let c = object(spec, key);
            if let Some(v) = par {
                c.insert("Parallelism".into(), json!(v));
            }
            if let Some(v) = delay {
                c.insert("Delay".into(), json!(v));
            }
            if let Some(v) = action {
                c.insert("FailureAction".into(), json!(v));
            }
            if let Some(v) = monitor {
                c.insert("Monitor".into(), json!(v));
            }
            if let Some(v) = ratio {
                c.insert("MaxFailureRatio".into(), json!(v));
            }
            if let Some(v) = order {
                c.insert("Order".into(), json!(v));
            }
        }
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

    /// Writes the given flags into a Docker-shaped TaskTemplate.
    pub fn apply(&self, task_template: &mut Value) -> anyhow::Result<()> {
        if self.no_healthcheck && self.any() {
            return Err(anyhow!(
                "--no-healthcheck conflicts with --health-* options"
            ));
        }
        let container = object(task_template, "ContainerSpec");
        if self.no_healthcheck {
            container.insert("Healthcheck".into(), json!({ "Test": ["NONE"] }));
            return Ok(());
        }
        if !self.any() {
            return Ok(());
        }
        let mut h = match container.get("Healthcheck") {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            _ => json!({}),
        };
        if h["Test"].get(0).and_then(Value::as_str) == Some("NONE") {
            h["Test"] = json!([]);
        }
        if let Some(cmd) = &self.health_cmd {
            h["Test"] = json!(["CMD-SHELL", cmd]);
        }
        for (key, v) in [
            ("Interval", self.health_interval),
            ("Timeout", self.health_timeout),
            ("Retries", self.health_retries),
            ("StartPeriod", self.health_start_period),
        ] {
            if let Some(v) = v {
                h[key] = json!(v);
            }
        }
        container.insert("Healthcheck".into(), h);
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
    #[arg(long, value_parser = super::service::publish_value)]
    publish_add: Vec<String>,
    /// Remove a published port by its target port ([PUBLISHED:]TARGET[/PROTO])
    #[arg(long, value_parser = super::service::publish_value)]
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
    #[arg(long, value_parser = super::service::replicas, allow_hyphen_values = true)]
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
    #[arg(long, value_parser = super::service::cpus)]
    limit_cpu: Option<u64>,
    /// Limit Memory
    #[arg(long, value_parser = super::service::bytes)]
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
    #[arg(long, value_parser = super::service::cpus)]
    reserve_cpu: Option<u64>,
    /// Reserve Memory
    #[arg(long, value_parser = super::service::bytes)]
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
fn edit_env(list: &mut Vec<Value>, add: &[String], rm: &[String]) -> anyhow::Result<()> {
    let key = |e: &Value| {
        e.as_str()
            .map(|e| e.split_once('=').map_or(e, |(k, _)| k).to_string())
            .unwrap_or_default()
    };
    list.retain(|e| !rm.contains(&key(e)));
    for a in add {
        let Some((k, _)) = a.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(anyhow!(
                "invalid environment variable {a:?}: expected KEY=VALUE"
            ));
        };
        match list.iter_mut().find(|e| key(e) == k) {
            Some(e) => *e = json!(a),
            None => list.push(json!(a)),
        }
    }
    Ok(())
}

fn edit_labels(map: &mut Map<String, Value>, add: &[String], rm: &[String]) -> anyhow::Result<()> {
    for k in rm {
        map.remove(k);
    }
    for (k, v) in super::service::labels(add)? {
        map.insert(k, json!(v));
    }
    Ok(())
}

/// `--network-add/-rm`, with each name resolved to the network's id (the
/// spec names networks by id).
struct NetworkEdits {
    add: Vec<(String, Value)>,
    rm: Vec<(String, String)>,
}

impl NetworkEdits {
    async fn resolve(client: &Client, add: &[String], rm: &[String]) -> anyhow::Result<Self> {
        let id_of = |n: String| async move {
            if n == "host" {
                return Ok(n);
            }
            client
                .get(&format!("/networks/{}", enc(&n)))
                .await
                .map(|v| s(&v, "/Id").to_string())
        };
        let mut out = NetworkEdits {
            add: Vec::new(),
            rm: Vec::new(),
        };
        for a in add {
            let mut v = crate::attach::parse(a).map_err(InvalidValue)?;
            let id = id_of(s(&v, "/Target").to_string()).await?;
            v["Target"] = json!(id);
            out.add.push((a.clone(), v));
        }
        for r in rm {
            let id = id_of(r.clone()).await.unwrap_or_else(|_| r.clone());
            out.rm.push((r.clone(), id));
        }
        Ok(out)
    }

    fn apply(&self, spec: &mut Value) -> anyhow::Result<()> {
        if self.add.is_empty() && self.rm.is_empty() {
            return Ok(());
        }
        let tt = object(spec, "TaskTemplate");
        let mut list = tt
            .get("Networks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (name, id) in &self.rm {
            let before = list.len();
            list.retain(|n| n["Target"] != id.as_str() && n["Target"] != name.as_str());
            if list.len() == before {
                return Err(anyhow!("network {name} is not attached to the service"));
            }
        }
        for (name, v) in &self.add {
            if list.iter().any(|n| n["Target"] == v["Target"]) {
                return Err(anyhow!("service is already attached to network {name}"));
            }
            list.push(v.clone());
        }
        tt.insert("Networks".into(), json!(list));
        Ok(())
    }
}

impl UpdateArgs {
    /// The service's spec with these flags applied.
    fn edit(&self, spec: &mut Value, nets: &NetworkEdits) -> anyhow::Result<()> {
        if let Some(n) = self.replicas {
            if spec.pointer("/Mode/Global").is_some() {
                return Err(anyhow!(
                    "replicas can only be used with replicated or replicated-job mode"
                ));
            }
            spec["Mode"] = json!({ "Replicated": { "Replicas": n } });
        }
        edit_labels(object(spec, "Labels"), &self.label_add, &self.label_rm)?;
        if !self.publish_add.is_empty() || !self.publish_rm.is_empty() {
            let es = object(spec, "EndpointSpec");
            let mut ports = es
                .get("Ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            crate::publish::edit(&mut ports, &self.publish_add, &self.publish_rm)
                .map_err(InvalidValue)?;
            es.insert("Ports".into(), json!(ports));
        }
        if let Some(m) = &self.endpoint_mode {
            object(spec, "EndpointSpec").insert("Mode".into(), json!(m));
        }
        nets.apply(spec)?;
        self.rollout.apply(spec);
        let tt = &mut spec["TaskTemplate"];
        if !tt.is_object() {
            *tt = json!({});
        }
        self.health.apply(tt)?;
        self.placement.apply(tt);
        self.container.apply(tt)?;
        {
            let cv = &mut tt["ContainerSpec"];
            edit_labels(
                object(cv, "Labels"),
                &self.container_label_add,
                &self.container_label_rm,
            )?;
            let c = object(tt, "ContainerSpec");
            if let Some(i) = &self.image {
                c.insert("Image".into(), json!(i));
            }
            if let Some(a) = &self.args {
                c.insert(
                    "Args".into(),
                    json!(a.split_whitespace().collect::<Vec<_>>()),
                );
            }
            let mut env = c
                .get("Env")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            edit_env(&mut env, &self.env_add, &self.env_rm)?;
            c.insert("Env".into(), json!(env));
            self.files.apply(c)?;
            if let Some(g) = self.stop_grace_period {
                c.insert("StopGracePeriod".into(), json!(g));
            }
            if let Some(w) = &self.workdir {
                c.insert("Dir".into(), json!(w));
            }
            if let Some(user) = &self.user {
                c.insert("User".into(), json!(user));
            }
            if let Some(h) = &self.hostname {
                c.insert("Hostname".into(), json!(h));
            }
            if let Some(r) = self.read_only {
                c.insert("ReadOnly".into(), json!(r));
            }
            if let Some(s) = &self.stop_signal {
                c.insert("StopSignal".into(), json!(s));
            }
            if !self.mount_add.is_empty() || !self.mount_rm.is_empty() {
                let mounts = c.get("Mounts").cloned().unwrap_or(Value::Null);
                c.insert(
                    "Mounts".into(),
                    update_mounts(mounts, &self.mount_add, &self.mount_rm)?,
                );
            }
            // As docker: an added capability leaves the drop list, a dropped
            // one the add list.
            let list = |c: &Map<String, Value>, key: &str| -> Vec<String> {
                c.get(key)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if !self.cap_add.is_empty() || !self.cap_drop.is_empty() {
                let same = |a: &str, b: &str| {
                    a.trim_start_matches("CAP_")
                        .eq_ignore_ascii_case(b.trim_start_matches("CAP_"))
                };
                let mut add = list(c, "CapabilityAdd");
                let mut drop = list(c, "CapabilityDrop");
                add.retain(|a| !self.cap_drop.iter().any(|d| same(a, d)));
                drop.retain(|d| !self.cap_add.iter().any(|a| same(a, d)));
                for a in &self.cap_add {
                    if !add.iter().any(|x| same(x, a)) {
                        add.push(a.clone());
                    }
                }
                for d in &self.cap_drop {
                    if !drop.iter().any(|x| same(x, d)) {
                        drop.push(d.clone());
                    }
                }
                c.insert("CapabilityAdd".into(), json!(add));
                c.insert("CapabilityDrop".into(), json!(drop));
            }
        }
        {
            let r = object(tt, "RestartPolicy");
            if let Some(v) = &self.restart_condition {
                r.insert("Condition".into(), json!(v));
            }
            if let Some(v) = self.restart_delay {
                r.insert("Delay".into(), json!(v));
            }
            if let Some(v) = self.restart_max_attempts {
                r.insert("MaxAttempts".into(), json!(v));
            }
            if let Some(v) = self.restart_window {
                r.insert("Window".into(), json!(v));
            }
        }
        {
            let res = object(tt, "Resources");
            for (group, key, v) in [
                ("Limits", "NanoCPUs", self.limit_cpu),
                ("Limits", "MemoryBytes", self.limit_memory),
                ("Limits", "Pids", self.limit_pids),
                ("Reservations", "NanoCPUs", self.reserve_cpu),
                ("Reservations", "MemoryBytes", self.reserve_memory),
            ] {
                if let Some(v) = v {
                    if !res.get(group).is_some_and(Value::is_object) {
                        res.insert(group.into(), json!({}));
                    }
                    res[group][key] = json!(v);
                }
            }
        }
        if self.force {
            tt["ForceUpdate"] = json!(u(tt, "/ForceUpdate") + 1);
        }
        Ok(())
    }
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
    let (svc, id) = loop {
        let svc = client
            .get(&format!("/services/{}", enc(&a.service)))
            .await?;
        let id = s(&svc, "/ID").to_string();
        let mut spec = svc["Spec"].clone();
        if !spec.is_object() {
            return Err(anyhow!("the daemon sent no spec for service {}", a.service));
        }
        a.edit(&mut spec, &nets)?;
        let sent = client
            .post(
                &format!(
                    "/services/{}/update?version={}",
                    enc(&id),
                    u(&svc, "/Version/Index")
                ),
                spec,
            )
            .await;
        match sent {
            Ok(_) => break (svc, id),
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
        let after = client.get(&format!("/services/{}", enc(&id))).await?;
        let unchanged = u(&after, "/Version/Index") == u(&svc, "/Version/Index");
        wait_rollout(client, &id, a.quiet, unchanged).await?;
    }
    Ok(())
}

pub async fn rollback(client: &Client, a: RollbackArgs) -> anyhow::Result<()> {
    let mut attempts = 0;
    let id = loop {
        let svc = client
            .get(&format!("/services/{}", enc(&a.service)))
            .await?;
        let id = s(&svc, "/ID").to_string();
        let sent = client
            .post(
                &format!(
                    "/services/{}/update?rollback=previous&version={}",
                    enc(&id),
                    u(&svc, "/Version/Index")
                ),
                svc["Spec"].clone(),
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
    old: Value,
    add: &[bollard::models::Mount],
    rm: &[String],
) -> anyhow::Result<Value> {
    let mut by_target: std::collections::BTreeMap<String, Value> = Default::default();
    for m in add {
        let target = m.target.clone().unwrap_or_default();
        if by_target.contains_key(&target) {
            anyhow::bail!("duplicate mount target");
        }
        by_target.insert(target, serde_json::to_value(m)?);
    }
    if let Value::Array(list) = old {
        for m in list {
            let target = m["Target"].as_str().unwrap_or_default().to_string();
            by_target.entry(target).or_insert(m);
        }
    }
    let mut mounts: Vec<Value> = by_target
        .into_iter()
        .filter(|(target, _)| !rm.contains(target))
        .map(|(_, m)| m)
        .collect();
    let key = |m: &Value| {
        (
            m["Source"].as_str().unwrap_or_default().to_string(),
            m["Target"].as_str().unwrap_or_default().to_string(),
        )
    };
    mounts.sort_by_key(key);
    Ok(Value::Array(mounts))
}
