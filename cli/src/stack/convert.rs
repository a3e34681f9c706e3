//! The compose model to Engine API objects, as docker/cli's
//! `cli/compose/convert` builds them: names scoped `STACK_name`, the
//! `com.docker.stack.namespace` label on everything, `com.docker.stack.image`
//! on services, the short service name as an alias on its networks.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    Mount, MountBindOptions, MountTmpfsOptions, MountType, MountVolumeOptions, ResourcesUlimits,
    TaskSpecContainerSpecDnsConfig,
};
use shoal_node::api::wire;

use super::compose::{
    Dict, External, FileObject, FileRef, Port, Service, UpdateConfig, VolumeRef, Words,
};
use super::load::{LoadError, Loaded};
use crate::output::parse_duration;

pub const LABEL_NAMESPACE: &str = "com.docker.stack.namespace";
pub const LABEL_IMAGE: &str = "com.docker.stack.image";

/// A secret or config the stack makes from a file.
pub struct FileObjectSpec {
    pub name: String,
    pub data: Vec<u8>,
    pub labels: BTreeMap<String, String>,
}

/// Everything a deploy needs, converted.
pub struct Plan {
    /// Networks to make, by full name, with their create bodies.
    pub networks: BTreeMap<String, serde_json::Value>,
    /// External networks, each with the refusal to give if it is missing.
    pub external_networks: Vec<(String, LoadError)>,
    pub secrets: Vec<FileObjectSpec>,
    pub configs: Vec<FileObjectSpec>,
    /// Secrets and configs that must already exist (external), each with
    /// the refusal to give if it does not.
    pub external_secrets: Vec<(String, LoadError)>,
    pub external_configs: Vec<(String, LoadError)>,
    /// Services by short name.
    pub services: BTreeMap<String, wire::ServiceSpec>,
    /// Each service's dependencies, and whether each must be healthy.
    pub depends_on: BTreeMap<String, Vec<(String, bool)>>,
    /// The services in creation order: each after those it depends on.
    pub order: Vec<String>,
}

pub fn scope(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

fn stack_labels(stack: &str, labels: &Option<Dict>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = Dict::labels(labels).into_iter().collect();
    out.insert(LABEL_NAMESPACE.into(), stack.into());
    out
}

fn p(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn duration(l: &Loaded, at: &[&str], v: &Option<String>) -> Result<Option<i64>, LoadError> {
    v.as_deref()
        .map(|s| {
            parse_duration(s)
                .map(wire::int)
                .map_err(|e| l.error_at(&p(at), format!("{}: {e}", at.join("."))))
        })
        .transpose()
}

/// Converts the loaded compose model for stack `stack`.
pub fn plan(l: &Loaded, stack: &str) -> Result<Plan, LoadError> {
    let c = &l.compose;
    let mut plan = Plan {
        networks: BTreeMap::new(),
        external_networks: Vec::new(),
        secrets: Vec::new(),
        configs: Vec::new(),
        external_secrets: Vec::new(),
        external_configs: Vec::new(),
        services: BTreeMap::new(),
        depends_on: BTreeMap::new(),
        order: Vec::new(),
    };
    // Networks the services use.
    let mut used = std::collections::BTreeSet::new();
    for s in c.services.values() {
        let nets = service_networks(s);
        if nets.is_empty() {
            used.insert("default".to_string());
        }
        used.extend(nets.into_keys());
    }
    for name in &used {
        let cfg = c.networks.get(name).cloned().flatten().unwrap_or_default();
        if External::is_external(&cfg.external) {
            let real = External::name(&cfg.external)
                .or(cfg.name.as_deref())
                .unwrap_or(name);
            let why = format!("network {real:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed");
            plan.external_networks.push((
                real.to_string(),
                l.error_at(&p(&["networks", name]), format!("networks.{name}: {why}")),
            ));
            continue;
        }
        let full = cfg.name.clone().unwrap_or_else(|| scope(stack, name));
        let mut body = serde_json::json!({
            "Name": full,
            "Driver": cfg.driver.clone().unwrap_or_else(|| "overlay".into()),
            "Labels": stack_labels(stack, &cfg.labels),
        });
        if let Some(opts) = &cfg.driver_opts {
            let o: BTreeMap<_, _> = opts.iter().map(|(k, v)| (k.clone(), v.text())).collect();
            body["Options"] = serde_json::json!(o);
        }
        if cfg.internal.is_some_and(|f| f.0) {
            body["Internal"] = true.into();
        }
        if cfg.attachable.is_some_and(|f| f.0) {
            body["Attachable"] = true.into();
        }
        if let Some(ipam) = &cfg.ipam {
            let configs: Vec<_> = ipam
                .config
                .iter()
                .map(|c| serde_json::json!({"Subnet": c.subnet}))
                .collect();
            body["IPAM"] = serde_json::json!({"Driver": ipam.driver, "Config": configs});
        }
        plan.networks.insert(full, body);
    }
    for (kind, objects, out, external) in [
        (
            "secrets",
            &c.secrets,
            &mut plan.secrets,
            &mut plan.external_secrets,
        ),
        (
            "configs",
            &c.configs,
            &mut plan.configs,
            &mut plan.external_configs,
        ),
    ] {
        for (name, o) in objects {
            if External::is_external(&o.external) {
                let real = object_name(stack, name, o);
                let why = format!(
                    "{kind}.{name}: {} not found: {real}",
                    kind.trim_end_matches('s')
                );
                external.push((real, l.error_at(&p(&[kind, name]), why)));
                continue;
            }
            let Some(file) = &o.file else {
                return Err(l.error_at(
                    &p(&[kind, name]),
                    format!("{kind}.{name}: neither file nor external is set"),
                ));
            };
            let path = l.dir.join(file);
            let data = read_object(&path).map_err(|e| {
                l.error_at(
                    &p(&[kind, name, "file"]),
                    format!("{kind}.{name}.file: {e}"),
                )
            })?;
            out.push(FileObjectSpec {
                name: object_name(stack, name, o),
                data,
                labels: stack_labels(stack, &o.labels).into_iter().collect(),
            });
        }
    }
    let mut published: BTreeMap<(i64, String), String> = BTreeMap::new();
    for (name, s) in &c.services {
        let spec = service(l, stack, name, s)?;
        for (i, port) in spec
            .endpoint_spec
            .iter()
            .flat_map(|e| e.ports.iter().flatten())
            .enumerate()
        {
            let number = port.docker.published_port.unwrap_or(0);
            if number == 0 {
                continue;
            }
            let proto = port
                .docker
                .protocol
                .map(|p| p.to_string())
                .unwrap_or_else(|| "tcp".into());
            if let Some(other) = published.insert((number, proto.clone()), name.clone()) {
                return Err(l.error_at(
                    &p(&["services", name, "ports", &i.to_string()]),
                    format!(
                        "services.{name}.ports: port {number}/{proto} is already published by service {other}"
                    ),
                ));
            }
        }
        let deps = s.depends_on.as_ref().map(|d| d.each()).unwrap_or_default();
        for (dep, _) in &deps {
            if !c.services.contains_key(dep) {
                return Err(l.error_at(
                    &p(&["services", name, "depends_on"]),
                    format!("services.{name}.depends_on: undefined service {dep:?}"),
                ));
            }
        }
        plan.depends_on.insert(name.clone(), deps);
        plan.services.insert(name.clone(), spec);
    }
    plan.order = order(&plan.depends_on).map_err(|left| {
        let first = left.first().cloned().unwrap_or_default();
        l.error_at(
            &p(&["services", &first, "depends_on"]),
            format!("services.{first}.depends_on: a cycle among services {left:?}"),
        )
    })?;
    Ok(plan)
}

/// The services in creation order, each after those it depends on; or
/// the services caught in a cycle.
fn order(depends_on: &BTreeMap<String, Vec<(String, bool)>>) -> Result<Vec<String>, Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    while out.len() < depends_on.len() {
        let ready: Vec<String> = depends_on
            .iter()
            .filter(|(n, _)| !out.contains(n))
            .filter(|(_, deps)| deps.iter().all(|(d, _)| out.contains(d)))
            .map(|(n, _)| n.clone())
            .collect();
        if ready.is_empty() {
            return Err(depends_on
                .keys()
                .filter(|n| !out.contains(n))
                .cloned()
                .collect());
        }
        out.extend(ready);
    }
    Ok(out)
}

fn read_object(path: &std::path::Path) -> Result<Vec<u8>, String> {
    // The daemon's bound on a secret's or config's value.
    const MAX: u64 = 500 * 1024;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX {
        return Err(format!(
            "{}: larger than {MAX} bytes, the most a secret or config may hold",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn object_name(stack: &str, name: &str, o: &FileObject) -> String {
    External::name(&o.external)
        .map(str::to_string)
        .or_else(|| o.name.clone())
        .unwrap_or_else(|| {
            if External::is_external(&o.external) {
                name.to_string()
            } else {
                scope(stack, name)
            }
        })
}

fn service_networks(s: &Service) -> BTreeMap<String, Vec<String>> {
    use super::compose::ServiceNetworks;
    match &s.networks {
        None => BTreeMap::new(),
        Some(ServiceNetworks::List(l)) => l.iter().map(|n| (n.clone(), Vec::new())).collect(),
        Some(ServiceNetworks::Map(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default().aliases))
            .collect(),
    }
}

fn env(l: &Loaded, name: &str, s: &Service) -> Result<Vec<String>, LoadError> {
    let mut vars: BTreeMap<String, Option<String>> = BTreeMap::new();
    for file in s.env_file.as_ref().map(Words::items).unwrap_or_default() {
        let path = l.dir.join(&file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            l.error_at(
                &p(&["services", name, "env_file"]),
                format!("services.{name}.env_file: {}: {e}", path.display()),
            )
        })?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) => vars.insert(k.to_string(), Some(v.to_string())),
                None => vars.insert(line.to_string(), None),
            };
        }
    }
    if let Some(e) = &s.environment {
        vars.extend(e.pairs('='));
    }
    let mut out: Vec<String> = vars
        .into_iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some(format!("{k}={v}")),
            // A bare name takes its value from the environment, or is left out.
            None => std::env::var(&k).ok().map(|v| format!("{k}={v}")),
        })
        .collect();
    out.sort();
    Ok(out)
}

fn update_config(
    l: &Loaded,
    at: &[&str],
    u: &Option<UpdateConfig>,
) -> Result<Option<wire::ServiceSpecUpdateConfig>, LoadError> {
    let Some(u) = u else { return Ok(None) };
    let path = |k: &str| {
        let mut v: Vec<&str> = at.to_vec();
        v.push(k);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let bad = |k: &str, v: &str| {
        l.error_at(
            &path(k),
            format!("{}.{k}: invalid value {v:?}", at.join(".")),
        )
    };
    let failure_action = match u.failure_action.as_deref() {
        None => None,
        Some(a) => Some(wire::word(a).ok_or_else(|| bad("failure_action", a))?),
    };
    let order = match u.order.as_deref() {
        None => None,
        Some(o) => Some(wire::word(o).ok_or_else(|| bad("order", o))?),
    };
    let mut with = at.to_vec();
    with.push("delay");
    let delay = duration(l, &with, &u.delay)?;
    with.pop();
    with.push("monitor");
    let monitor = duration(l, &with, &u.monitor)?;
    Ok(Some(wire::ServiceSpecUpdateConfig {
        parallelism: Some(wire::int(u.parallelism.map_or(1, |n| n.0))),
        // Left out when unset, as Go's `omitempty` leaves a zero out:
        // the daemon's defaults apply (a 5 s monitor), as for docker's client.
        delay: delay.filter(|d| *d != 0),
        failure_action,
        monitor: monitor.filter(|m| *m != 0),
        max_failure_ratio: Some(u.max_failure_ratio.map_or(0.0, |r| r.0)),
        order,
    }))
}

fn mounts(l: &Loaded, stack: &str, name: &str, s: &Service) -> Result<Vec<Mount>, LoadError> {
    let mut out = Vec::new();
    for (i, v) in s.volumes.iter().enumerate() {
        let at = p(&["services", name, "volumes", &i.to_string()]);
        let bad = |why: String| l.error_at(&at, format!("services.{name}.volumes.{i}: {why}"));
        let long = match v {
            VolumeRef::Long(long) => long.clone(),
            VolumeRef::Short(spec) => {
                let parts: Vec<&str> = spec.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [t] => (None, *t, None),
                    [s, t] => (Some(*s), *t, None),
                    [s, t, m] => (Some(*s), *t, Some(*m)),
                    _ => return Err(bad(format!("invalid volume specification {spec:?}"))),
                };
                let kind = match source {
                    Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
                        "bind"
                    }
                    _ => "volume",
                };
                super::compose::VolumeLong {
                    kind: kind.into(),
                    source: source.map(str::to_string),
                    target: target.into(),
                    read_only: Some(super::compose::Flag(mode == Some("ro"))),
                    ..Default::default()
                }
            }
        };
        let mut m = Mount {
            target: Some(long.target.clone()),
            read_only: long.read_only.map(|f| f.0).filter(|r| *r),
            ..Default::default()
        };
        match long.kind.as_str() {
            "volume" => {
                m.typ = Some(MountType::VOLUME);
                if let Some(src) = &long.source {
                    let Some(vol) = l.compose.volumes.get(src) else {
                        return Err(bad(format!("undefined volume {src:?}")));
                    };
                    let vol = vol.clone().unwrap_or_default();
                    let mut opts = MountVolumeOptions {
                        no_copy: long.volume.as_ref().and_then(|v| v.nocopy).map(|f| f.0),
                        ..Default::default()
                    };
                    m.source = Some(vol.name.clone().unwrap_or_else(|| scope(stack, src)));
                    if External::is_external(&vol.external) {
                        m.source = Some(
                            External::name(&vol.external)
                                .map(str::to_string)
                                .or(vol.name.clone())
                                .unwrap_or_else(|| src.clone()),
                        );
                    } else {
                        opts.labels = Some(stack_labels(stack, &vol.labels));
                        if vol.driver.is_some() || vol.driver_opts.is_some() {
                            opts.driver_config =
                                Some(bollard::models::MountVolumeOptionsDriverConfig {
                                    name: vol.driver.clone(),
                                    options: vol.driver_opts.as_ref().map(|o| {
                                        o.iter().map(|(k, v)| (k.clone(), v.text())).collect()
                                    }),
                                });
                        }
                    }
                    m.volume_options = Some(opts);
                }
            }
            "bind" => {
                m.typ = Some(MountType::BIND);
                let src = long
                    .source
                    .clone()
                    .ok_or_else(|| bad("a bind mount needs a source".into()))?;
                let path = if let Some(rest) = src.strip_prefix("~/") {
                    std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
                } else {
                    l.dir.join(&src)
                };
                let path = std::path::absolute(&path).unwrap_or(path);
                m.source = Some(path.display().to_string());
                if let Some(b) = &long.bind {
                    m.bind_options = Some(MountBindOptions {
                        propagation: b.propagation.as_deref().and_then(wire::word),
                        ..Default::default()
                    });
                }
            }
            "tmpfs" => {
                m.typ = Some(MountType::TMPFS);
                if let Some(size) = long.tmpfs.as_ref().and_then(|t| t.size.as_ref()) {
                    let bytes = crate::commands::values::bytes(&size.text()).map_err(bad)?;
                    m.tmpfs_options = Some(MountTmpfsOptions {
                        size_bytes: Some(wire::int(bytes)),
                        ..Default::default()
                    });
                }
            }
            other => return Err(bad(format!("unsupported volume type {other:?}"))),
        }
        out.push(m);
    }
    Ok(out)
}

fn file_refs(
    stack: &str,
    objects: &BTreeMap<String, FileObject>,
    refs: &[FileRef],
) -> Result<Vec<(String, wire::TaskSpecContainerSpecFile)>, String> {
    let mut out = Vec::new();
    for r in refs {
        let (source, target, uid, gid, mode) = match r {
            FileRef::Short(s) => (s.clone(), None, None, None, None),
            FileRef::Long(l) => (
                l.source.clone(),
                l.target.clone(),
                l.uid.clone(),
                l.gid.clone(),
                l.mode.map(|m| m.0),
            ),
        };
        let Some(o) = objects.get(&source) else {
            return Err(source);
        };
        out.push((
            object_name(stack, &source, o),
            wire::TaskSpecContainerSpecFile {
                name: Some(target.unwrap_or_else(|| source.clone())),
                uid: Some(uid.unwrap_or_else(|| "0".into())),
                gid: Some(gid.unwrap_or_else(|| "0".into())),
                mode: Some(u32::try_from(mode.unwrap_or(0o444)).unwrap_or(0o444)),
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One service's spec, as docker's `convert.Service` makes it.
fn service(
    l: &Loaded,
    stack: &str,
    name: &str,
    s: &Service,
) -> Result<wire::ServiceSpec, LoadError> {
    let at = |k: &[&str]| {
        let mut v = p(&["services", name]);
        v.extend(p(k));
        v
    };
    let err = |k: &[&str], why: String| l.error_at(&at(k), format!("services.{name}: {why}"));
    let image = s.image.clone().filter(|i| !i.is_empty()).ok_or_else(|| {
        err(
            &[],
            "invalid image reference for service: no image specified".into(),
        )
    })?;
    let driver = l.drivers.get(name).cloned();
    let run_image = if driver.as_deref() == Some("process") {
        crate::commands::executable::resolve(&image).map_err(|e| err(&["image"], e.to_string()))?
    } else {
        image.clone()
    };
    let deploy = s.deploy.clone().unwrap_or_default();
    let replicas = deploy.replicas.map(|n| n.0);
    let mode = match deploy.mode.as_deref().unwrap_or("replicated") {
        "global" | "global-job" if replicas.is_some() => {
            return Err(err(
                &["deploy", "replicas"],
                "replicas can only be used with replicated or replicated-job mode".into(),
            ))
        }
        "global" => wire::ServiceSpecMode {
            global: Some(Default::default()),
            ..Default::default()
        },
        "global-job" => wire::ServiceSpecMode {
            global_job: Some(Default::default()),
            ..Default::default()
        },
        "replicated-job" => wire::ServiceSpecMode {
            replicated_job: Some(wire::ServiceSpecModeReplicatedJob {
                max_concurrent: replicas.map(wire::int),
                total_completions: replicas.map(wire::int),
            }),
            ..Default::default()
        },
        "replicated" => wire::ServiceSpecMode {
            replicated: Some(wire::ServiceSpecModeReplicated {
                replicas: replicas.map(wire::int),
            }),
            ..Default::default()
        },
        other => return Err(err(&["deploy", "mode"], format!("unknown mode: {other}"))),
    };
    let secrets = file_refs(stack, &l.compose.secrets, &s.secrets)
        .map_err(|n| err(&["secrets"], format!("undefined secret {n:?}")))?
        .into_iter()
        .map(|(name, file)| wire::TaskSpecContainerSpecSecrets {
            file: Some(file),
            secret_id: None,
            secret_name: Some(name),
        })
        .collect();
    let configs = file_refs(stack, &l.compose.configs, &s.configs)
        .map_err(|n| err(&["configs"], format!("undefined config {n:?}")))?
        .into_iter()
        .map(|(name, f)| wire::TaskSpecContainerSpecConfigs {
            file: Some(wire::TaskSpecContainerSpecFile1 {
                name: f.name,
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            }),
            runtime: None,
            config_id: None,
            config_name: Some(name),
        })
        .collect();
    let healthcheck = match &s.healthcheck {
        None => None,
        Some(h) if h.disable.is_some_and(|f| f.0) => {
            if h.test.is_some() {
                return Err(err(
                    &["healthcheck"],
                    "test and disable can't be set at the same time".into(),
                ));
            }
            Some(wire::HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            })
        }
        Some(h) => {
            let d =
                |k: &str, v: &Option<String>| duration(l, &["services", name, "healthcheck", k], v);
            Some(wire::HealthConfig {
                test: h.test.as_ref().map(|t| match t {
                    Words::One(s) => vec!["CMD-SHELL".into(), s.clone()],
                    Words::Many(v) => v.clone(),
                }),
                interval: Some(d("interval", &h.interval)?.unwrap_or(0)),
                timeout: Some(d("timeout", &h.timeout)?.unwrap_or(0)),
                retries: Some(wire::int(h.retries.map_or(0, |n| n.0))),
                start_period: Some(d("start_period", &h.start_period)?.unwrap_or(0)),
                start_interval: Some(d("start_interval", &h.start_interval)?.unwrap_or(0)),
            })
        }
    };
    let restart_policy = match (&deploy.restart_policy, s.restart.as_deref()) {
        (Some(r), _) => {
            let d = |k: &str, v: &Option<String>| {
                duration(l, &["services", name, "deploy", "restart_policy", k], v)
            };
            Some(wire::TaskSpecRestartPolicy {
                condition: match r.condition.as_deref() {
                    None => None,
                    Some(c) => Some(wire::word(c).ok_or_else(|| {
                        err(
                            &["deploy", "restart_policy", "condition"],
                            format!("invalid restart policy condition {c:?}"),
                        )
                    })?),
                },
                delay: d("delay", &r.delay)?,
                max_attempts: r.max_attempts.map(|n| wire::int(n.0)),
                window: d("window", &r.window)?,
            })
        }
        (None, None | Some("no") | Some("")) => None,
        (None, Some(policy)) => {
            let (word, max) = policy.split_once(':').unwrap_or((policy, ""));
            let max = max.parse::<u64>().ok().filter(|n| *n > 0).map(wire::int);
            let condition = match word {
                "always" | "unless-stopped" => "any",
                "on-failure" => "on-failure",
                other => {
                    return Err(err(
                        &["restart"],
                        format!("invalid restart policy: unknown policy '{other}' (must be one of 'no', 'always', 'on-failure', or 'unless-stopped')"),
                    ))
                }
            };
            Some(wire::TaskSpecRestartPolicy {
                condition: wire::word(condition),
                max_attempts: max,
                ..Default::default()
            })
        }
    };
    let resources = deploy.resources.clone().unwrap_or_default();
    let cpus = |k: &str, r: &Option<super::compose::Resource>| -> Result<Option<i64>, LoadError> {
        r.as_ref()
            .and_then(|r| r.cpus.as_ref())
            .map(|c| {
                crate::commands::values::cpus(&c.text())
                    .map(wire::int)
                    .map_err(|e| err(&["deploy", "resources", k, "cpus"], e))
            })
            .transpose()
    };
    let memory =
        |k: &str, r: &Option<super::compose::Resource>| -> Result<Option<i64>, LoadError> {
            r.as_ref()
                .and_then(|r| r.memory.as_ref())
                .map(|m| {
                    crate::commands::values::bytes(&m.text())
                        .map(wire::int)
                        .map_err(|e| err(&["deploy", "resources", k, "memory"], e))
                })
                .transpose()
        };
    let limits = match &resources.limits {
        None => None,
        Some(r) => Some(wire::Limit {
            nano_cpus: cpus("limits", &resources.limits)?,
            memory_bytes: memory("limits", &resources.limits)?,
            pids: r.pids.map(|n| wire::int(n.0)),
        }),
    };
    let reservations = match &resources.reservations {
        None => None,
        Some(_) => Some(wire::ResourceObject {
            nano_cpus: cpus("reservations", &resources.reservations)?,
            memory_bytes: memory("reservations", &resources.reservations)?,
            generic_resources: None,
        }),
    };
    let mut networks: Vec<wire::NetworkAttachmentConfig> = {
        let mut nets = service_networks(s);
        if nets.is_empty() {
            nets.insert("default".into(), Vec::new());
        }
        let mut out = Vec::new();
        for (net, mut aliases) in nets {
            let cfg = l.compose.networks.get(&net);
            if cfg.is_none() && net != "default" {
                return Err(err(&["networks"], format!("undefined network {net:?}")));
            }
            let cfg = cfg.cloned().flatten().unwrap_or_default();
            let target = if External::is_external(&cfg.external) {
                External::name(&cfg.external)
                    .map(str::to_string)
                    .or(cfg.name.clone())
                    .unwrap_or_else(|| net.clone())
            } else {
                cfg.name.clone().unwrap_or_else(|| scope(stack, &net))
            };
            if !matches!(target.as_str(), "host" | "bridge" | "none" | "default") {
                aliases.push(name.to_string());
            }
            out.push(wire::NetworkAttachmentConfig {
                target: Some(target),
                aliases: Some(aliases),
                driver_opts: None,
            });
        }
        out
    };
    networks.sort_by(|a, b| a.target.cmp(&b.target));
    let mut ports = Vec::new();
    for (i, port) in s.ports.iter().enumerate() {
        let bad = |why: String| err(&["ports", &i.to_string()], why);
        let entry = match port {
            Port::Short(v) => crate::publish::parse(&v.text()).map_err(bad)?,
            Port::Long(pl) => {
                let mut text = format!(
                    "target={},published={}",
                    pl.target.0,
                    pl.published.map_or(0, |n| n.0)
                );
                if let Some(proto) = &pl.protocol {
                    text.push_str(&format!(",protocol={proto}"));
                }
                if let Some(mode) = &pl.mode {
                    text.push_str(&format!(",mode={mode}"));
                }
                crate::publish::parse(&text).map_err(bad)?
            }
        };
        ports.push(entry);
    }
    ports.sort_by_key(|p| {
        (
            p.docker.protocol.map(|p| p.to_string()),
            p.docker.target_port,
            p.docker.published_port,
        )
    });
    let endpoint_mode = match deploy.endpoint_mode.as_deref() {
        None => None,
        Some(m) => Some(
            crate::publish::endpoint_mode(&m.to_ascii_lowercase())
                .map_err(|e| err(&["deploy", "endpoint_mode"], e))?,
        ),
    };
    let placement = deploy.placement.clone().unwrap_or_default();
    let mut labels = stack_labels(stack, &deploy.labels);
    labels.insert(LABEL_IMAGE.into(), image.clone());
    let hosts = s
        .extra_hosts
        .as_ref()
        .map(|h| {
            h.pairs(':')
                .into_iter()
                .filter_map(|(host, ip)| ip.map(|ip| format!("{ip} {host}")))
                .collect()
        })
        .unwrap_or_default();
    let dns_config = if s.dns.is_some() || s.dns_search.is_some() {
        Some(TaskSpecContainerSpecDnsConfig {
            nameservers: s.dns.as_ref().map(Words::items),
            search: s.dns_search.as_ref().map(Words::items),
            options: None,
        })
    } else {
        None
    };
    let ulimits = s.ulimits.as_ref().map(|u| {
        u.iter()
            .map(|(n, l)| {
                let (soft, hard) = match l {
                    super::compose::Ulimit::Single(v) => (v.0, v.0),
                    super::compose::Ulimit::Pair { soft, hard } => (soft.0, hard.0),
                };
                ResourcesUlimits {
                    name: Some(n.clone()),
                    soft: Some(wire::int(soft)),
                    hard: Some(wire::int(hard)),
                }
            })
            .collect()
    });
    let container = wire::ContainerSpec {
        docker: wire::docker::TaskSpecContainerSpec {
            image: Some(run_image),
            command: s.entrypoint.as_ref().map(Words::list),
            args: s.command.as_ref().map(Words::list),
            hostname: s.hostname.clone(),
            hosts: Some(hosts),
            dns_config,
            env: Some(env(l, name, s)?),
            // The process driver has no container labels (and refuses
            // them): the stack's label stays on the service.
            labels: if l.drivers.get(name).is_some_and(|d| d == "process") {
                None
            } else {
                Some(stack_labels(stack, &s.labels))
            },
            dir: s.working_dir.clone(),
            user: s.user.clone(),
            mounts: Some(mounts(l, stack, name, s)?),
            stop_grace_period: duration(
                l,
                &["services", name, "stop_grace_period"],
                &s.stop_grace_period,
            )?,
            stop_signal: s.stop_signal.clone(),
            tty: s.tty.map(|f| f.0),
            open_stdin: s.stdin_open.map(|f| f.0),
            secrets: Some(secrets),
            configs: Some(configs),
            read_only: s.read_only.map(|f| f.0),
            init: s.init.map(|f| f.0),
            sysctls: s.sysctls.as_ref().map(|d| {
                d.pairs('=')
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect()
            }),
            capability_add: Some(s.cap_add.clone()).filter(|c| !c.is_empty()),
            capability_drop: Some(s.cap_drop.clone()).filter(|c| !c.is_empty()),
            ulimits,
            ..Default::default()
        },
        healthcheck,
        ..Default::default()
    };
    Ok(wire::ServiceSpec {
        docker: wire::docker::ServiceSpec {
            name: Some(scope(stack, name)),
            labels: Some(labels),
            mode: Some(mode),
            update_config: update_config(
                l,
                &["services", name, "deploy", "update_config"],
                &deploy.update_config,
            )?,
            rollback_config: update_config(
                l,
                &["services", name, "deploy", "rollback_config"],
                &deploy.rollback_config,
            )?
            .map(|u| wire::ServiceSpecRollbackConfig {
                parallelism: u.parallelism,
                delay: u.delay,
                failure_action: u.failure_action.and_then(|a| wire::word(a.as_ref())),
                monitor: u.monitor,
                max_failure_ratio: u.max_failure_ratio,
                order: u.order.and_then(|o| wire::word(o.as_ref())),
            }),
            ..Default::default()
        },
        task_template: Some(wire::TaskSpec {
            docker: wire::docker::TaskSpec {
                resources: Some(wire::TaskSpecResources {
                    limits,
                    reservations,
                    ..Default::default()
                }),
                restart_policy,
                placement: Some(wire::TaskSpecPlacement {
                    constraints: Some(placement.constraints.clone()),
                    preferences: Some(
                        placement
                            .preferences
                            .iter()
                            .map(|pr| wire::TaskSpecPlacementPreferences {
                                spread: Some(wire::TaskSpecPlacementSpread {
                                    spread_descriptor: Some(pr.spread.clone()),
                                }),
                            })
                            .collect(),
                    ),
                    max_replicas: placement.max_replicas_per_node.map(|n| wire::int(n.0)),
                    platforms: None,
                }),
                networks: Some(networks),
                ..Default::default()
            },
            driver,
            container_spec: Some(container),
            ..Default::default()
        }),
        endpoint_spec: Some(wire::EndpointSpec {
            docker: wire::docker::EndpointSpec {
                mode: endpoint_mode,
                ..Default::default()
            },
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    })
}
