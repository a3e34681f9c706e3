//! A request body read into its Engine API type (`wire`), with shoal's
//! words when it does not fit.
//!
//! serde says what it expected (`invalid type: string "x", expected i64`)
//! but not where: with `#[serde(flatten)]`, which the wire wrappers use, no
//! path survives. So when a body does not parse, [`read`] finds the first
//! value (in the body's order) that makes it fail, by building the body up
//! one leaf at a time, and names it by its dotted path in the words shoal
//! has always used (`RestartPolicy.Delay must be a non-negative integer,
//! not -1`, `invalid restart condition "x": …`). Paths are relative to
//! `TaskTemplate`, as the API's documentation says.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Keys whose values are the user's own string maps.
const STRING_MAPS: &[&str] = &["Labels", "Options", "DriverOpts", "Sysctls"];

/// Lists whose entries are objects (the others hold strings).
const OBJECT_LISTS: &[&str] = &[
    "Ports",
    "Mounts",
    "Networks",
    "Secrets",
    "Configs",
    "Preferences",
    "Ulimits",
    "Platforms",
    "Config",
    "GenericResources",
];

/// `v` as a `T`, or shoal's words for the first value that does not fit.
pub fn read<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    // Counts past what the swagger's int64 holds are past every bound of
    // `limits` too: they are read as the largest, and refused there.
    let mut v = v.clone();
    clamp(&mut v);
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => Ok(t),
        Err(e) => Err(match culprit::<T>(&v) {
            Some((path, _, _)) if dotted(&path).is_empty() => {
                "the request body must be a JSON object".to_string()
            }
            Some((path, value, why)) => words(&path, &value, &why),
            None => e.to_string(),
        }),
    }
}

fn clamp(v: &mut Value) {
    match v {
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_some() => {
            *v = Value::from(i64::MAX);
        }
        Value::Array(list) => list.iter_mut().for_each(clamp),
        Value::Object(map) => map.values_mut().for_each(clamp),
        _ => {}
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Every leaf of `v` (a scalar, or an empty list or object) with its path,
/// in the body's order.
fn leaves(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, Value)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, x) in map {
                path.push(Seg::Key(k.clone()));
                leaves(x, path, out);
                path.pop();
            }
        }
        Value::Array(list) if !list.is_empty() => {
            for (i, x) in list.iter().enumerate() {
                path.push(Seg::Index(i));
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), v.clone())),
    }
}

/// Puts `leaf` at `path` in `v`, making the objects and lists on the way.
fn insert(v: &mut Value, path: &[Seg], leaf: Value) {
    let Some((first, rest)) = path.split_first() else {
        *v = leaf;
        return;
    };
    let empty = |next: Option<&Seg>| match next {
        Some(Seg::Index(_)) => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    };
    let slot = match first {
        Seg::Key(k) => {
            if !v.is_object() {
                *v = Value::Object(Map::new());
            }
            let Value::Object(map) = v else { return };
            map.entry(k.clone()).or_insert_with(|| empty(rest.first()))
        }
        Seg::Index(i) => {
            if !v.is_array() {
                *v = Value::Array(Vec::new());
            }
            let Value::Array(list) = v else { return };
            while list.len() <= *i {
                list.push(empty(rest.first()));
            }
            &mut list[*i]
        }
    };
    insert(slot, rest, leaf);
}

/// The first leaf whose arrival makes the body stop parsing, with serde's
/// reason. A bad value stays bad as more arrive, so the shortest failing
/// prefix of the leaves is found by bisection: a few parses of the body,
/// however large it is.
fn culprit<T: DeserializeOwned>(v: &Value) -> Option<(Vec<Seg>, Value, String)> {
    let mut all = Vec::new();
    leaves(v, &mut Vec::new(), &mut all);
    let prefix = |n: usize| {
        let mut built = Value::Object(Map::new());
        for (path, leaf) in &all[..n] {
            insert(&mut built, path, leaf.clone());
        }
        serde_json::from_value::<T>(built).err()
    };
    // `lo` parses, `hi` does not. (A type with a required field refuses
    // the empty body already: serde's words say which field.)
    let (mut lo, mut hi) = (0, all.len());
    if prefix(0).is_some() {
        return None;
    }
    prefix(hi)?;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match prefix(mid) {
            Some(_) => hi = mid,
            None => lo = mid,
        }
    }
    let why = prefix(hi)?.to_string();
    let (mut path, mut leaf) = all.get(hi - 1)?.clone();
    // serde names the kind of value it refused: a list or an object where
    // something else belongs is the leaf's nearest ancestor of that kind.
    let kind: Option<fn(&Value) -> bool> = if why.starts_with("invalid type: map") {
        Some(Value::is_object)
    } else if why.starts_with("invalid type: sequence") {
        Some(Value::is_array)
    } else {
        None
    };
    if let Some(is_kind) = kind.filter(|is_kind| !is_kind(&leaf)) {
        while !path.is_empty() {
            path.pop();
            match at(v, &path) {
                Some(x) if is_kind(x) => {
                    leaf = x.clone();
                    break;
                }
                _ => {}
            }
        }
    }
    Some((path, leaf, why))
}

fn at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.get(k),
        Seg::Index(i) => v.get(i),
    })
}

fn dotted(path: &[Seg]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let keys = match keys.split_first() {
        Some((&"TaskTemplate", rest)) if !rest.is_empty() => rest,
        _ => &keys[..],
    };
    keys.join(".")
}

fn key_at(path: &[Seg], from_end: usize) -> &str {
    path.iter()
        .rev()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .nth(from_end)
        .unwrap_or("")
}

/// shoal's message for `value` at `path`, which serde refused with `why`.
fn words(path: &[Seg], value: &Value, why: &str) -> String {
    let text = value.as_str().unwrap_or_default();
    let last = key_at(path, 0);
    let parent = key_at(path, 1);
    let in_list = matches!(path.last(), Some(Seg::Index(_)));
    if why.starts_with("unknown variant") {
        let noun = if parent == "RollbackConfig" {
            "rollback"
        } else {
            "update"
        };
        match (parent, last) {
            ("RestartPolicy", "Condition") => {
                return format!(
                    "invalid restart condition {text:?}: expected one of none, on-failure, any"
                )
            }
            ("UpdateConfig" | "RollbackConfig", "FailureAction") => {
                return format!("unrecognized {noun} failure action {text}")
            }
            ("UpdateConfig" | "RollbackConfig", "Order") => {
                return format!("unrecognized {noun} order {text}")
            }
            ("Seccomp", "Mode") => {
                return format!(
                "invalid seccomp mode {text:?}: expected default or unconfined (custom profiles are not supported)"
            )
            }
            ("EndpointSpec", "Mode") => {
                return format!("invalid endpoint mode {text:?}: expected vip or dnsrr")
            }
            ("Ports", "Protocol") => {
                return format!("invalid protocol {text:?}: expected tcp or udp")
            }
            ("Ports", "PublishMode") => {
                return format!("invalid publish mode {text:?}: expected ingress or host")
            }
            ("Mounts", "Type") => {
                return format!("invalid mount config for type {text:?}: mount type unknown")
            }
            _ => {}
        }
    }
    let at = dotted(path);
    if STRING_MAPS.contains(&parent) && !in_list || STRING_MAPS.contains(&last) {
        let map = if STRING_MAPS.contains(&last) {
            at
        } else {
            dotted(&path[..path.len().saturating_sub(1)])
        };
        return format!("{map} must map strings to strings");
    }
    if why.contains("expected a sequence") {
        return match OBJECT_LISTS.contains(&last) {
            true => format!("{at} must be a list"),
            false => format!("{at} must be a list of strings"),
        };
    }
    if in_list && why.contains("expected a string") {
        return format!("{at} must be a list of strings");
    }
    if [
        "expected i64",
        "expected u64",
        "expected u32",
        "expected i32",
        "expected u16",
    ]
    .iter()
    .any(|t| why.contains(t))
    {
        return format!("{at} must be a non-negative integer, not {value}");
    }
    if why.contains("expected a string") {
        return format!("{at} must be a string");
    }
    if why.contains("expected a boolean") {
        return format!("{at} must be true or false");
    }
    if why.contains("expected f64") {
        return format!("{at} must be a number");
    }
    if why.contains("expected struct") || why.contains("expected a map") {
        return format!("{at} must be an object");
    }
    format!("{at}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::ServiceSpec;
    use serde_json::json;

    fn err(v: Value) -> String {
        read::<ServiceSpec>(&v).expect_err("refused")
    }

    #[test]
    fn a_value_that_does_not_fit_is_named_by_its_path() {
        assert_eq!(
            err(json!({"Name": "a", "TaskTemplate": {"RestartPolicy": {"Delay": "soon"}}})),
            "RestartPolicy.Delay must be a non-negative integer, not \"soon\""
        );
        assert_eq!(
            err(json!({"Mode": {"Replicated": {"Replicas": 1.5}}})),
            "Mode.Replicated.Replicas must be a non-negative integer, not 1.5"
        );
        assert_eq!(
            err(json!({"TaskTemplate": {"ContainerSpec": {"Args": "x"}}})),
            "ContainerSpec.Args must be a list of strings"
        );
        assert_eq!(
            err(json!({"TaskTemplate": {"ContainerSpec": {"Env": ["A=1", 2]}}})),
            "ContainerSpec.Env must be a list of strings"
        );
        assert_eq!(
            err(json!({"Labels": {"a": 1}})),
            "Labels must map strings to strings"
        );
        assert_eq!(
            err(json!({"TaskTemplate": {"ContainerSpec": {"Labels": ["a"]}}})),
            "ContainerSpec.Labels must map strings to strings"
        );
        assert_eq!(
            err(json!({"TaskTemplate": {"ContainerSpec": {"ReadOnly": "yes"}}})),
            "ContainerSpec.ReadOnly must be true or false"
        );
        assert_eq!(
            err(json!({"EndpointSpec": {"Ports": {"a": 1}}})),
            "EndpointSpec.Ports must be a list"
        );
        assert_eq!(
            err(json!({"UpdateConfig": {"MaxFailureRatio": "x"}})),
            "UpdateConfig.MaxFailureRatio must be a number"
        );
    }

    #[test]
    fn a_word_outside_an_enum_gets_the_words_of_its_field() {
        assert_eq!(
            err(json!({"TaskTemplate": {"RestartPolicy": {"Condition": "sometimes"}}})),
            "invalid restart condition \"sometimes\": expected one of none, on-failure, any"
        );
        assert_eq!(
            err(json!({"RollbackConfig": {"FailureAction": "rollback"}})),
            "unrecognized rollback failure action rollback"
        );
        assert_eq!(
            err(json!({"UpdateConfig": {"Order": "sideways"}})),
            "unrecognized update order sideways"
        );
        assert_eq!(
            err(json!({"EndpointSpec": {"Ports": [{"TargetPort": 80}, {"Protocol": "sctp2"}]}})),
            "invalid protocol \"sctp2\": expected tcp or udp"
        );
        assert_eq!(
            err(json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [{"Type": "nfs"}]}}})),
            "invalid mount config for type \"nfs\": mount type unknown"
        );
    }

    #[test]
    fn a_body_that_is_no_object_is_refused_as_such() {
        assert_eq!(err(json!(["x"])), "the request body must be a JSON object");
        assert_eq!(err(json!("x")), "the request body must be a JSON object");
    }

    #[test]
    fn counts_past_int64_are_read_as_the_largest() {
        let spec: ServiceSpec =
            read(&json!({"Mode": {"Replicated": {"Replicas": 9223372036854775808u64}}}))
                .expect("read");
        let replicas = spec
            .docker
            .mode
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas);
        assert_eq!(replicas, Some(i64::MAX));
    }
}
