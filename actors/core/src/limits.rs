//! Bounds on everything a user or a peer can ask the cluster to hold, and on
//! how much work one pass of a control loop may do.
//!
//! The control API checks a spec against these before anything is proposed
//! (a 400 for the user); the state machine checks them again when an entry
//! applies, so a spec that reached the log some other way (a peer's forwarded
//! write) is refused on every replica alike. docs/security.md lists them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{ClusterSpec, FailureAction, HealthConfig, Node, ServiceSpec, UpdateConfig};

/// Replicas of one service. Docker sets none; a service this size is far past
/// what one swarm runs, and the orchestrator creates its tasks in batches.
pub const MAX_REPLICAS: u64 = 100_000;
/// Old tasks kept per slot (`TaskHistoryRetentionLimit`).
pub const MAX_TASK_HISTORY: u64 = 100;
/// Raft entries between snapshots.
pub const MAX_SNAPSHOT_INTERVAL: u64 = 10_000_000;
/// Restart delay, restart window and stop grace period.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest idle timeout a published port may set.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Restart attempts counted per slot.
pub const MAX_RESTART_ATTEMPTS: u64 = 10_000;
/// Memory sizes travel to Docker as signed 64-bit numbers.
pub const MAX_BYTES: u64 = i64::MAX as u64;
/// CPUs, in billionths of a CPU.
pub const MAX_NANO_CPUS: u64 = 10_000 * 1_000_000_000;
/// Labels per object, and the size of one key and one value.
pub const MAX_LABELS: usize = 256;
pub const MAX_LABEL_KEY: usize = 256;
pub const MAX_LABEL_VALUE: usize = 4096;
/// Arguments and environment variables of a task, and the size of one.
pub const MAX_ARGS: usize = 1024;
pub const MAX_ENV: usize = 1024;
pub const MAX_STRING: usize = 64 * 1024;
/// Image reference, working directory, user, driver name.
pub const MAX_SHORT_STRING: usize = 4096;
/// Task drivers one node may offer.
pub const MAX_DRIVERS: usize = 16;
/// A whole service spec, as encoded in the log (swarmkit caps specs too).
pub const MAX_SPEC_BYTES: usize = 512 * 1024;

/// `MaxFailureRatio` is a fraction of the slots: at most 1, in millionths.
pub const MAX_FAILURE_RATIO_PPM: u32 = 1_000_000;
/// Words of a health check's `Test`.
pub const MAX_HEALTH_TEST: usize = 1024;
/// The shortest health check interval, timeout and start period docker takes.
pub const MIN_HEALTH_DURATION: Duration = Duration::from_millis(1);
/// A status message the updater records (it names a task, so it is short).
pub const MAX_MESSAGE: usize = 4096;

/// Placement constraints and spread preferences of one service.
pub const MAX_CONSTRAINTS: usize = 64;
pub const MAX_PREFERENCES: usize = 8;

/// Tasks one orchestrator pass creates, updates or deletes; the rest wait for
/// the next pass, so a huge service cannot hold a lock or a proposal for long
/// (2,000 new tasks are an entry of about 650 KB). Each pass looks at all of
/// the service's tasks, so the passes a 100k-replica service needs to start
/// (50 here; 200 at 500 a pass) multiply that scan.
pub const MAX_TASKS_PER_PASS: usize = 2000;
/// Task updates in one proposal (status reports, placements).
pub const MAX_UPDATES_PER_PROPOSAL: usize = 1000;

/// Writes that share one Raft entry: the Proposer packs the writes queued on
/// a manager at one moment into one entry of at most this many commands and
/// (except for a single command, which always goes alone) this many encoded
/// bytes. Each is applied and answered alone (`Command::Packed`).
pub const MAX_COMMANDS_PER_ENTRY: usize = 512;
pub const MAX_ENTRY_BYTES: usize = 512 * 1024;
/// Writes a follower forwards to the leader in one request
/// (`Request::ProposeMany`), and the request's encoded size. The leader
/// refuses a request past either bound; a forwarded batch within them fits
/// one entry.
pub const MAX_FORWARDED_COMMANDS: usize = MAX_COMMANDS_PER_ENTRY;
pub const MAX_FORWARDED_BYTES: usize = MAX_ENTRY_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(pub String);

fn too(what: &str, max: impl std::fmt::Display) -> LimitError {
    LimitError(format!("{what} must be at most {max}"))
}

fn check_len(what: &str, s: &str, max: usize) -> Result<(), LimitError> {
    if s.len() > max {
        return Err(LimitError(format!(
            "{what} is {} bytes long; the limit is {max}",
            s.len()
        )));
    }
    Ok(())
}

fn check_duration(what: &str, ns: u64) -> Result<(), LimitError> {
    if ns > MAX_DURATION.as_nanos() as u64 {
        return Err(too(what, "365 days"));
    }
    Ok(())
}

/// A DNS name a service answers to (an alias): labels of letters, digits,
/// `-` and `_`, as docker accepts them.
pub fn check_dns_name(name: &str) -> Result<(), LimitError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    match ok {
        true => Ok(()),
        false => Err(LimitError(format!(
            "invalid alias {name:?}: not a DNS name"
        ))),
    }
}

pub fn check_labels(what: &str, labels: &BTreeMap<String, String>) -> Result<(), LimitError> {
    check_label_pairs(what, labels.iter())
}

pub fn check_label_pairs<'a>(
    what: &str,
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), LimitError> {
    if labels.len() > MAX_LABELS {
        return Err(too(&format!("the number of {what}"), MAX_LABELS));
    }
    for (k, v) in labels {
        if k.is_empty() {
            return Err(LimitError(format!("{what}: a label key must not be empty")));
        }
        check_len(&format!("{what} key"), k, MAX_LABEL_KEY)?;
        check_len(&format!("{what} value of {k:?}"), v, MAX_LABEL_VALUE)?;
    }
    Ok(())
}

fn check_strings(what: &str, list: &[String], max_items: usize) -> Result<(), LimitError> {
    if list.len() > max_items {
        return Err(too(&format!("the number of {what}"), max_items));
    }
    for s in list {
        check_len(&format!("an entry of {what}"), s, MAX_STRING)?;
    }
    Ok(())
}

pub fn check_message(message: &str) -> Result<(), LimitError> {
    check_len("UpdateStatus.Message", message, MAX_MESSAGE)
}

fn check_update_config(what: &str, c: &UpdateConfig) -> Result<(), LimitError> {
    if c.parallelism > MAX_REPLICAS {
        return Err(too(&format!("{what}.Parallelism"), MAX_REPLICAS));
    }
    check_duration(&format!("{what}.Delay"), c.delay_ns)?;
    check_duration(&format!("{what}.Monitor"), c.monitor_ns)?;
    if c.max_failure_ratio_ppm > MAX_FAILURE_RATIO_PPM {
        return Err(LimitError(format!(
            "{what}.MaxFailureRatio must be between 0 and 1"
        )));
    }
    Ok(())
}

fn check_healthcheck(h: &HealthConfig) -> Result<(), LimitError> {
    check_strings("Healthcheck.Test", &h.test, MAX_HEALTH_TEST)?;
    for (what, ns) in [
        ("Interval", h.interval_ns),
        ("Timeout", h.timeout_ns),
        ("StartPeriod", h.start_period_ns),
    ] {
        check_duration(&format!("Healthcheck.{what}"), ns)?;
        if ns != 0 && ns < MIN_HEALTH_DURATION.as_nanos() as u64 {
            return Err(LimitError(format!(
                "{what} in Healthcheck cannot be less than {MIN_HEALTH_DURATION:?}"
            )));
        }
    }
    if h.retries > MAX_RESTART_ATTEMPTS {
        return Err(too("Healthcheck.Retries", MAX_RESTART_ATTEMPTS));
    }
    match h.test.first().map(String::as_str) {
        None | Some("NONE") => Ok(()),
        Some("CMD") if h.test.len() > 1 => Ok(()),
        Some("CMD-SHELL") if h.test.len() == 2 => Ok(()),
        Some(other) => Err(LimitError(format!(
            "Healthcheck.Test must be [\"NONE\"], [\"CMD\", program, args...] or [\"CMD-SHELL\", command], not one starting with {other:?}"
        ))),
    }
}

/// Every bound a service spec must keep.
pub fn check_service_spec(spec: &ServiceSpec) -> Result<(), LimitError> {
    if spec.replicas() > MAX_REPLICAS {
        return Err(too("Replicas", MAX_REPLICAS));
    }
    if let crate::model::ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions,
    } = spec.mode
    {
        if total_completions > MAX_REPLICAS {
            return Err(too("ReplicatedJob.TotalCompletions", MAX_REPLICAS));
        }
        if max_concurrent > MAX_REPLICAS {
            return Err(too("ReplicatedJob.MaxConcurrent", MAX_REPLICAS));
        }
    }
    check_labels("Labels", &spec.labels)?;
    let t = &spec.task_template;
    check_len("Image", &t.image, MAX_SHORT_STRING)?;
    check_len("Driver", &t.driver, 64)?;
    check_len("Dir", &t.workdir, MAX_SHORT_STRING)?;
    check_len("User", &t.user, MAX_SHORT_STRING)?;
    check_strings("Args", &t.args, MAX_ARGS)?;
    check_strings("Env", &t.env, MAX_ENV)?;
    check_labels("ContainerSpec.Labels", &t.container_labels)?;
    let p = &t.restart_policy;
    check_duration("RestartPolicy.Delay", p.delay_ns)?;
    check_duration("RestartPolicy.Window", p.window_ns)?;
    check_duration("StopGracePeriod", t.stop_grace_period_ns)?;
    if p.max_attempts > MAX_RESTART_ATTEMPTS {
        return Err(too("RestartPolicy.MaxAttempts", MAX_RESTART_ATTEMPTS));
    }
    if let Some(h) = &t.healthcheck {
        check_healthcheck(h)?;
    }
    crate::model::mount::check(&t.mounts).map_err(|e| LimitError(e.0))?;
    let placement = &t.placement;
    check_strings(
        "Placement.Constraints",
        &placement.constraints,
        MAX_CONSTRAINTS,
    )?;
    check_strings(
        "Placement.Preferences",
        &placement.preferences,
        MAX_PREFERENCES,
    )?;
    if placement.max_replicas > MAX_REPLICAS {
        return Err(too("Placement.MaxReplicas", MAX_REPLICAS));
    }
    crate::rules::placement::check(placement).map_err(|e| LimitError(e.to_string()))?;
    check_update_config("UpdateConfig", &spec.update_config)?;
    check_update_config("RollbackConfig", &spec.rollback_config)?;
    // A rollback is never rolled back (swarmkit refuses the action too).
    if spec.rollback_config.failure_action == FailureAction::Rollback {
        return Err(LimitError(
            "unrecognized rollback failure action rollback: expected pause or continue".into(),
        ));
    }
    let r = &t.resources;
    for (what, v) in [
        ("Resources.Limits.MemoryBytes", r.limit_memory_bytes),
        ("Resources.Reservations.MemoryBytes", r.reserve_memory_bytes),
    ] {
        if v > MAX_BYTES {
            return Err(too(what, MAX_BYTES));
        }
    }
    for (what, v) in [
        ("Resources.Limits.NanoCPUs", r.limit_nano_cpus),
        ("Resources.Reservations.NanoCPUs", r.reserve_nano_cpus),
    ] {
        if v > MAX_NANO_CPUS {
            return Err(too(what, MAX_NANO_CPUS));
        }
    }
    if r.reserve_generic.len() > crate::model::container::MAX_ENTRIES {
        return Err(too(
            "the number of generic resources",
            crate::model::container::MAX_ENTRIES,
        ));
    }
    for g in &r.reserve_generic {
        if let crate::model::placement::GenericResource::Named { kind, value } = g {
            return Err(LimitError(format!(
                "invalid generic resource request '{kind}={value}': a task reserves a count of a kind, not a named unit"
            )));
        }
    }
    crate::model::container::check(&t.options, t.host_network()).map_err(LimitError)?;
    let size = crate::codec::encode(spec)
        .map_err(|e| LimitError(e.to_string()))?
        .len();
    if size > MAX_SPEC_BYTES {
        return Err(LimitError(format!(
            "the service spec is {size} bytes; the limit is {MAX_SPEC_BYTES}"
        )));
    }
    Ok(())
}

/// What a node says about itself (hostname, address, drivers) and its labels.
pub fn check_node(node: &Node) -> Result<(), LimitError> {
    check_len("Hostname", &node.hostname, 255)?;
    check_len("Addr", &node.addr, 255)?;
    check_len("Platform.OS", &node.machine.os, 64)?;
    check_len("Platform.Architecture", &node.machine.arch, 64)?;
    check_labels("Engine.Labels", &node.machine.engine_labels)?;
    if node.machine.generic_resources.len() > crate::model::container::MAX_ENTRIES {
        return Err(too(
            "the number of generic resources",
            crate::model::container::MAX_ENTRIES,
        ));
    }
    for g in &node.machine.generic_resources {
        check_len("a generic resource", g.kind(), 64)?;
        if let crate::model::placement::GenericResource::Named { value, .. } = g {
            check_len("a generic resource", value, 256)?;
        }
    }
    if node.drivers.len() > MAX_DRIVERS {
        return Err(too("the number of drivers", MAX_DRIVERS));
    }
    for d in &node.drivers {
        check_len("a driver name", &d.name, 64)?;
        check_len("a driver version", &d.version, 256)?;
    }
    check_labels("node labels", &node.labels)
}

pub fn check_cluster_spec(spec: &ClusterSpec) -> Result<(), LimitError> {
    if spec.task_history_limit > MAX_TASK_HISTORY {
        return Err(too("TaskHistoryRetentionLimit", MAX_TASK_HISTORY));
    }
    if spec.snapshot_interval == 0 || spec.snapshot_interval > MAX_SNAPSHOT_INTERVAL {
        return Err(LimitError(format!(
            "SnapshotInterval must be between 1 and {MAX_SNAPSHOT_INTERVAL}"
        )));
    }
    if spec.default_addr_pool.is_empty() || spec.default_addr_pool.len() > 16 {
        return Err(LimitError(
            "the default address pool takes between 1 and 16 subnets".into(),
        ));
    }
    let size = spec.subnet_size;
    if !(crate::model::network::MIN_PREFIX..=crate::model::network::MAX_PREFIX).contains(&size) {
        return Err(LimitError(format!(
            "invalid default address pool mask length {size}: expected {} to {}",
            crate::model::network::MIN_PREFIX,
            crate::model::network::MAX_PREFIX
        )));
    }
    for (i, p) in spec.default_addr_pool.iter().enumerate() {
        if p.prefix > size {
            return Err(LimitError(format!(
                "invalid default address pool {p}: its mask is longer than the subnet size /{size}"
            )));
        }
        if spec.default_addr_pool[..i].iter().any(|o| o.overlaps(*p)) {
            return Err(LimitError(format!(
                "invalid default address pool {p}: it overlaps another pool"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServiceMode, TaskTemplate};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            labels: BTreeMap::new(),
            mode: ServiceMode::Replicated { replicas: 3 },
            task_template: TaskTemplate {
                image: "x".into(),
                ..TaskTemplate::default()
            },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        }
    }

    #[test]
    fn a_plain_spec_passes() {
        assert_eq!(check_service_spec(&spec()), Ok(()));
    }

    #[test]
    fn every_bound_is_enforced() {
        type Change = Box<dyn Fn(&mut ServiceSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "Replicas",
                Box::new(|s| s.mode = ServiceMode::Replicated { replicas: 1 << 63 }),
            ),
            (
                "Labels",
                Box::new(|s| {
                    for i in 0..=MAX_LABELS {
                        s.labels.insert(format!("k{i}"), String::new());
                    }
                }),
            ),
            (
                "Args",
                Box::new(|s| s.task_template.args = vec!["a".into(); MAX_ARGS + 1]),
            ),
            (
                "Env",
                Box::new(|s| s.task_template.env = vec!["x".repeat(MAX_STRING + 1)]),
            ),
            (
                "Delay",
                Box::new(|s| s.task_template.restart_policy.delay_ns = u64::MAX),
            ),
            (
                "MaxAttempts",
                Box::new(|s| s.task_template.restart_policy.max_attempts = u64::MAX),
            ),
            (
                "MemoryBytes",
                Box::new(|s| s.task_template.resources.limit_memory_bytes = u64::MAX),
            ),
            (
                "spec",
                Box::new(|s| s.task_template.args = vec!["a".repeat(MAX_STRING); 10]),
            ),
            (
                "UpdateConfig.Parallelism",
                Box::new(|s| s.update_config.parallelism = u64::MAX),
            ),
            (
                "RollbackConfig.Monitor",
                Box::new(|s| s.rollback_config.monitor_ns = u64::MAX),
            ),
            (
                "UpdateConfig.MaxFailureRatio",
                Box::new(|s| s.update_config.max_failure_ratio_ppm = u32::MAX),
            ),
            (
                "rollback failure action",
                Box::new(|s| s.rollback_config.failure_action = FailureAction::Rollback),
            ),
            (
                "Interval in Healthcheck",
                Box::new(|s| {
                    s.task_template.healthcheck = Some(HealthConfig {
                        test: vec!["CMD".into(), "true".into()],
                        interval_ns: 10,
                        timeout_ns: 0,
                        retries: 0,
                        start_period_ns: 0,
                    })
                }),
            ),
        ];
        for (what, change) in cases {
            let mut s = spec();
            change(&mut s);
            let err = check_service_spec(&s).expect_err(what);
            assert!(err.0.contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn cluster_spec_bounds() {
        let mut c = ClusterSpec::default();
        assert_eq!(check_cluster_spec(&c), Ok(()));
        c.task_history_limit = u64::MAX;
        assert!(check_cluster_spec(&c).is_err());
    }
}
