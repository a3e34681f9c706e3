//! Fields of a spec that shoal would not act on.
//!
//! SDKs send whole specs, with fields shoal has no use for (`DNSConfig`,
//! `Sysctls`, `LogDriver`, …). Dropping them silently would tell the client
//! its service runs as asked when it does not; so a field that is set in
//! the request but has no counterpart in the spec as shoal shows it back is
//! refused with a 400 naming it. Empty values (null, false, 0, "", {}, [])
//! ask for nothing and pass, and so do the few fields whose only meaning
//! is the default shoal always gives (`ACCEPTED_AS_DEFAULT`).

use serde_json::Value;

/// Fields a client may send with the one value shoal always has.
const ACCEPTED_AS_DEFAULT: &[(&str, &str)] = &[
    ("TaskTemplate.Runtime", "container"),
    ("TaskTemplate.ContainerSpec.Isolation", "default"),
];

/// The field names of the specs shoal reads, as the Engine API spells them.
const FIELDS: &[&str] = &[
    "Command",
    "TTY",
    "Init",
    "Groups",
    "Sysctls",
    "Ulimits",
    "Soft",
    "Hard",
    "DNSConfig",
    "Nameservers",
    "Search",
    "Options",
    "Hosts",
    "GenericResources",
    "DiscreteResourceSpec",
    "NamedResourceSpec",
    "Kind",
    "Value",
    "StopSignal",
    "VolumeOptions",
    "Type",
    "TmpfsOptions",
    "Source",
    "SizeBytes",
    "Propagation",
    "NonRecursive",
    "NoCopy",
    "Mounts",
    "DriverConfig",
    "Consistency",
    "BindOptions",
    "Aliases",
    "Args",
    "Balance",
    "CapabilityAdd",
    "CapabilityDrop",
    "Condition",
    "ConfigID",
    "ConfigName",
    "Configs",
    "Constraints",
    "ContainerSpec",
    "Delay",
    "Dir",
    "Driver",
    "EndpointSpec",
    "Env",
    "FailureAction",
    "File",
    "ForceUpdate",
    "GID",
    "Global",
    "GlobalJob",
    "Healthcheck",
    "Hostname",
    "IdleTimeout",
    "Image",
    "Interval",
    "Isolation",
    "Labels",
    "Limits",
    "MaxAttempts",
    "MaxConcurrent",
    "MaxFailureRatio",
    "MaxReplicas",
    "MemoryBytes",
    "Mode",
    "Monitor",
    "Name",
    "NanoCPUs",
    "Networks",
    "Order",
    "Parallelism",
    "Pids",
    "Placement",
    "Ports",
    "Preferences",
    "Privileges",
    "Protocol",
    "ProxyProtocol",
    "PublishMode",
    "PublishedPort",
    "ReadOnly",
    "Replicas",
    "Replicated",
    "ReplicatedJob",
    "Reservations",
    "Resources",
    "RestartPolicy",
    "Retries",
    "RollbackConfig",
    "Runtime",
    "Seccomp",
    "SecretID",
    "SecretName",
    "Secrets",
    "Spread",
    "SpreadDescriptor",
    "StartPeriod",
    "StopGracePeriod",
    "Target",
    "TargetPort",
    "TaskTemplate",
    "Test",
    "Timeout",
    "TotalCompletions",
    "UID",
    "UpdateConfig",
    "User",
    "Window",
];

/// Fields whose keys are the user's own (label names, options).
const FREE_FORM: &[&str] = &["Labels", "Options", "DriverOpts", "Sysctls"];

/// Spells every field name of a spec as the Engine API does: dockerd reads
/// JSON keys without regard to case (Go's `encoding/json`), and clients
/// rely on it (docker-py writes `{"replicated": {"Replicas": 2}}`).
pub fn canonical_case(v: &mut Value) {
    let Value::Object(map) = v else {
        if let Value::Array(list) = v {
            list.iter_mut().for_each(canonical_case);
        }
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let canonical = FIELDS
            .iter()
            .find(|f| f.eq_ignore_ascii_case(&key) && **f != key)
            .filter(|f| !map.contains_key(**f));
        if let Some(name) = canonical {
            if let Some(value) = map.remove(&key) {
                map.insert(name.to_string(), value);
            }
        }
    }
    for (key, value) in map.iter_mut() {
        if !FREE_FORM.contains(&key.as_str()) {
            canonical_case(value);
        }
    }
}

/// Whether a JSON value says nothing: null, false, 0, "", [], or an object of such.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

/// The dotted paths of `asked` that are set but absent (or empty) in
/// `shown`, the spec as shoal stored it. Lists count as one value.
pub fn fields(asked: &Value, shown: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(asked, Some(shown), &mut String::new(), &mut out);
    out
}

fn walk(asked: &Value, shown: Option<&Value>, path: &mut String, out: &mut Vec<String>) {
    if is_empty(asked) {
        return;
    }
    if let Some((_, value)) = ACCEPTED_AS_DEFAULT.iter().find(|(p, _)| p == path) {
        if asked.as_str() == Some(value) {
            return;
        }
    }
    match asked {
        Value::Object(map) => {
            for (key, value) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(value, shown.and_then(|s| s.get(key)), path, out);
                path.truncate(len);
            }
        }
        _ => {
            if shown.is_none_or(is_empty) {
                out.push(path.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_names_take_the_engine_api_spelling_but_labels_keep_theirs() {
        let mut v = json!({"mode": {"replicated": {"replicas": 2}},
                           "Labels": {"mode": "x"}, "TaskTemplate": {"containerspec": {"Image": "i"}}});
        canonical_case(&mut v);
        assert_eq!(
            v,
            json!({"Mode": {"Replicated": {"Replicas": 2}}, "Labels": {"mode": "x"},
                   "TaskTemplate": {"ContainerSpec": {"Image": "i"}}})
        );
    }

    #[test]
    fn set_fields_without_a_counterpart_are_named() {
        let asked = json!({
            "Name": "web",
            "TaskTemplate": {
                "Runtime": "container",
                "ContainerSpec": {"Image": "x", "Isolation": "default", "Init": false,
                                  "DNSConfig": {}, "Mounts": [{"Type": "volume"}],
                                  "Sysctls": {"net.core.somaxconn": "1024"}},
                "LogDriver": {"Name": "json-file"}
            }
        });
        let shown = json!({"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "x"}}});
        assert_eq!(
            fields(&asked, &shown),
            vec![
                "TaskTemplate.ContainerSpec.Mounts",
                "TaskTemplate.ContainerSpec.Sysctls.net.core.somaxconn",
                "TaskTemplate.LogDriver.Name",
            ]
        );
        let other_runtime = json!({"TaskTemplate": {"Runtime": "plugin"}});
        assert_eq!(
            fields(&other_runtime, &json!({})),
            vec!["TaskTemplate.Runtime"]
        );
    }
}
