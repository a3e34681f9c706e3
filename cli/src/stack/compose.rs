//! The compose file as `stack deploy` reads it: the swarm subset of the
//! 3.x format (docker/cli `cli/compose/types/types.go` and
//! `config_schema_v3.x.json`), as serde types. A key outside these types
//! is refused by name (`deny_unknown_fields`); `x-` keys are taken out
//! before decoding (`load.rs`), as docker's loader sets them aside.
//!
//! A scalar may come as a string after interpolation (`replicas: ${N}`):
//! numbers and booleans are read from either ([`Num`], [`Flag`]), as
//! docker's loader casts interpolated values by path.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    /// Accepted (files must agree, `load.rs`), not used otherwise.
    #[allow(dead_code)]
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<Network>>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<Volume>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(default)]
    pub configs: BTreeMap<String, FileObject>,
}

// The keys docker ignores are read only to be accepted.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub image: Option<String>,
    pub command: Option<Words>,
    pub entrypoint: Option<Words>,
    pub environment: Option<Dict>,
    pub env_file: Option<Words>,
    pub labels: Option<Dict>,
    #[serde(default)]
    pub ports: Vec<Port>,
    pub networks: Option<ServiceNetworks>,
    #[serde(default)]
    pub secrets: Vec<FileRef>,
    #[serde(default)]
    pub configs: Vec<FileRef>,
    pub healthcheck: Option<Healthcheck>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub stop_grace_period: Option<String>,
    pub stop_signal: Option<String>,
    pub deploy: Option<Deploy>,
    #[serde(default)]
    pub volumes: Vec<VolumeRef>,
    pub depends_on: Option<DependsOn>,
    pub extra_hosts: Option<Dict>,
    pub dns: Option<Words>,
    pub dns_search: Option<Words>,
    pub init: Option<Flag>,
    pub tty: Option<Flag>,
    pub stdin_open: Option<Flag>,
    pub read_only: Option<Flag>,
    pub sysctls: Option<Dict>,
    pub ulimits: Option<BTreeMap<String, Ulimit>>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Ignored with docker's warning, except that a service without
    /// `deploy.restart_policy` takes its policy from it, as docker's does.
    pub restart: Option<String>,
    // Ignored with docker's warnings (`load::UNSUPPORTED`, `DEPRECATED`).
    pub build: Option<serde_json::Value>,
    pub cgroupns_mode: Option<serde_json::Value>,
    pub cgroup_parent: Option<serde_json::Value>,
    pub devices: Option<serde_json::Value>,
    pub domainname: Option<serde_json::Value>,
    pub external_links: Option<serde_json::Value>,
    pub ipc: Option<serde_json::Value>,
    pub links: Option<serde_json::Value>,
    pub mac_address: Option<serde_json::Value>,
    pub network_mode: Option<serde_json::Value>,
    pub pid: Option<serde_json::Value>,
    pub privileged: Option<serde_json::Value>,
    pub security_opt: Option<serde_json::Value>,
    pub shm_size: Option<serde_json::Value>,
    pub userns_mode: Option<serde_json::Value>,
    pub container_name: Option<serde_json::Value>,
    pub expose: Option<serde_json::Value>,
}

/// A string or a list of strings (`command: a b` or `command: [a, b]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Words {
    One(String),
    Many(Vec<String>),
}

/// `KEY: value` pairs, as a mapping or a list of `KEY=value` (or `KEY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Dict {
    Map(BTreeMap<String, Option<Scalar>>),
    List(Vec<String>),
}

/// A mapping's value: a string, a number or a boolean, read as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Port {
    Short(Scalar),
    Long(PortLong),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortLong {
    pub target: Num,
    pub published: Option<Num>,
    pub protocol: Option<String>,
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetwork>>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A service's `secrets`/`configs` entry: a name, or the long form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileRef {
    Short(String),
    Long(FileRefLong),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRefLong {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    pub test: Option<Words>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<Num>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub disable: Option<Flag>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub mode: Option<String>,
    pub replicas: Option<Num>,
    pub endpoint_mode: Option<String>,
    pub labels: Option<Dict>,
    pub placement: Option<Placement>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<String>,
    #[serde(default)]
    pub preferences: Vec<Preference>,
    pub max_replicas_per_node: Option<Num>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub spread: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub limits: Option<Resource>,
    pub reservations: Option<Resource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub cpus: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub pids: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<String>,
    pub max_attempts: Option<Num>,
    pub window: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    pub parallelism: Option<Num>,
    pub delay: Option<String>,
    pub failure_action: Option<String>,
    pub monitor: Option<String>,
    pub max_failure_ratio: Option<Ratio>,
    pub order: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VolumeRef {
    Short(String),
    Long(VolumeLong),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeLong {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    pub read_only: Option<Flag>,
    pub volume: Option<VolumeOpts>,
    pub bind: Option<BindOpts>,
    pub tmpfs: Option<TmpfsOpts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOpts {
    pub nocopy: Option<Flag>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOpts {
    pub propagation: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOpts {
    pub size: Option<Scalar>,
}

/// `depends_on: [a, b]` or `depends_on: {a: {condition: service_healthy}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, Dependency>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub condition: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Ulimit {
    Single(Num),
    Pair { soft: Num, hard: Num },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
    pub external: Option<External>,
    pub internal: Option<Flag>,
    pub attachable: Option<Flag>,
    pub labels: Option<Dict>,
    pub ipam: Option<Ipam>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    pub driver: Option<String>,
    #[serde(default)]
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamConfig {
    pub subnet: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
    pub external: Option<External>,
    pub labels: Option<Dict>,
}

/// A top-level secret or config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileObject {
    pub name: Option<String>,
    pub file: Option<String>,
    pub external: Option<External>,
    pub labels: Option<Dict>,
}

/// `external: true`, or the old `external: {name: x}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum External {
    Flag(Flag),
    Named { name: String },
}

impl External {
    pub fn is_external(e: &Option<External>) -> bool {
        match e {
            Some(External::Flag(f)) => f.0,
            Some(External::Named { .. }) => true,
            None => false,
        }
    }
    pub fn name(e: &Option<External>) -> Option<&str> {
        match e {
            Some(External::Named { name }) => Some(name),
            _ => None,
        }
    }
}

/// A non-negative integer, written as a number or (after interpolation) a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub u64);

/// A boolean, written as one or as `"true"`/`"false"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Flag(pub bool);

/// A ratio between 0 and 1, as a number or a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

struct NumVisitor;
impl Visitor<'_> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a non-negative integer")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        u64::try_from(v)
            .map(Num)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
        v.trim()
            .parse()
            .map(Num)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}
impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct FlagVisitor;
impl Visitor<'_> for FlagVisitor {
    type Value = Flag;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
        Ok(Flag(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
        match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(Flag(true)),
            "false" | "no" | "off" => Ok(Flag(false)),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}
impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FlagVisitor)
    }
}

struct RatioVisitor;
impl Visitor<'_> for RatioVisitor {
    type Value = Ratio;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number between 0 and 1")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ratio, E> {
        if (0.0..=1.0).contains(&v) {
            Ok(Ratio(v))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ratio, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ratio, E> {
        self.visit_f64(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ratio, E> {
        match v.trim().parse::<f64>() {
            Ok(f) => self.visit_f64(f),
            Err(_) => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}
impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RatioVisitor)
    }
}

impl Words {
    pub fn list(&self) -> Vec<String> {
        match self {
            Words::One(s) => shlex::split(s).unwrap_or_else(|| vec![s.clone()]),
            Words::Many(v) => v.clone(),
        }
    }
    /// A single string kept whole (`env_file: a.env`), a list as it is.
    pub fn items(&self) -> Vec<String> {
        match self {
            Words::One(s) => vec![s.clone()],
            Words::Many(v) => v.clone(),
        }
    }
}

impl Dict {
    /// `KEY -> Some(value)`, or `None` for a bare `KEY` (no value).
    pub fn pairs(&self, sep: char) -> BTreeMap<String, Option<String>> {
        match self {
            Dict::Map(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(Scalar::text)))
                .collect(),
            Dict::List(l) => l
                .iter()
                .map(|item| match item.split_once(sep) {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item.clone(), None),
                })
                .collect(),
        }
    }
    /// Labels: a bare key's value is empty.
    pub fn labels(d: &Option<Dict>) -> BTreeMap<String, String> {
        d.as_ref()
            .map(|d| {
                d.pairs('=')
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl DependsOn {
    /// Each dependency, and whether it must be healthy (not only running).
    pub fn each(&self) -> Vec<(String, bool)> {
        match self {
            DependsOn::List(l) => l.iter().map(|s| (s.clone(), false)).collect(),
            DependsOn::Map(m) => m
                .iter()
                .map(|(k, d)| (k.clone(), d.condition.as_deref() == Some("service_healthy")))
                .collect(),
        }
    }
}
