//! Reading `-c FILE…` into one [`Compose`]: each file bounded in size,
//! parsed as YAML (anchors and merge keys included), checked for the keys
//! docker forbids, warned about for those it ignores, interpolated from the
//! environment and `.env`, merged in order, then decoded into the typed
//! compose model. Every refusal names the file and line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::compose::Compose;
use super::interpolate::{self, Vars};
use super::locate::line_of;

/// The largest compose file read: far above any real one (a few KiB),
/// far below what would make parsing slow.
pub const MAX_COMPOSE_BYTES: u64 = 1 << 20;

/// Keys docker's client ignores with a warning (types.UnsupportedProperties).
const UNSUPPORTED: &[&str] = &[
    "build",
    "cgroupns_mode",
    "cgroup_parent",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
];

/// Keys docker's client ignores as deprecated, with its reasons.
const DEPRECATED: &[(&str, &str)] = &[
    ("container_name", "Setting the container name is not supported."),
    ("expose", "Exposing ports is unnecessary - services on the same network can access each other's containers on any port."),
];

/// Keys docker's client refuses, with its reasons.
const FORBIDDEN: &[(&str, &str)] = &[
    ("extends", "Support for `extends` is not implemented yet."),
    ("volume_driver", "Instead of setting the volume driver on the service, define a volume using the top-level `volumes` option and specify the driver there."),
    ("volumes_from", "To share a volume between services, define it using the top-level `volumes` option and reference it from each service that shares it using the service-level `volumes` option."),
    ("cpu_quota", "Set resource limits using deploy.resources"),
    ("cpu_shares", "Set resource limits using deploy.resources"),
    ("cpuset", "Set resource limits using deploy.resources"),
    ("mem_limit", "Set resource limits using deploy.resources"),
    ("memswap_limit", "Set resource limits using deploy.resources"),
];

/// A refusal of a compose file: where, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}{}", where_(.file, .line), .reason)]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

fn where_(file: &str, line: &Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}: "),
        None if file.is_empty() => String::new(),
        None => format!("{file}: "),
    }
}

/// One file as read.
struct Source {
    name: String,
    text: String,
}

/// The loaded stack: the model, the directory relative paths start from,
/// shoal's own per-service extensions, and the warnings to print.
pub struct Loaded {
    pub compose: Compose,
    pub dir: PathBuf,
    /// `x-shoal-driver` per service (`process` or `docker`).
    pub drivers: BTreeMap<String, String>,
    pub warnings: Vec<String>,
    sources: Vec<Source>,
}

impl Loaded {
    /// The file and line where `path` was last set, for a later refusal.
    pub fn error_at(&self, path: &[String], reason: String) -> LoadError {
        locate(&self.sources, path, reason)
    }
}

fn locate(sources: &[Source], path: &[String], reason: String) -> LoadError {
    for s in sources.iter().rev() {
        if let Some(line) = line_of(&s.text, path) {
            return LoadError {
                file: s.name.clone(),
                line: Some(line),
                reason,
            };
        }
    }
    LoadError {
        file: sources.last().map(|s| s.name.clone()).unwrap_or_default(),
        line: None,
        reason,
    }
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

fn read_bounded(path: &Path) -> Result<String, LoadError> {
    let name = path.display().to_string();
    let fail = |reason: String| LoadError {
        file: name.clone(),
        line: None,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let too_big = || {
        fail(format!(
            "file is larger than {MAX_COMPOSE_BYTES} bytes, the most a compose file may hold"
        ))
    };
    if file.metadata().is_ok_and(|m| m.len() > MAX_COMPOSE_BYTES) {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_COMPOSE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_COMPOSE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))
}

/// The variables: `.env` beside the first file, overridden by the shell's.
fn vars(dir: &Path) -> Result<Vars, LoadError> {
    let dotenv = dir.join(".env");
    let mut env = BTreeMap::new();
    if dotenv.is_file() {
        let text = read_bounded(&dotenv)?;
        env = interpolate::parse_dotenv(&text).map_err(|reason| LoadError {
            file: dotenv.display().to_string(),
            line: None,
            reason,
        })?;
    }
    env.extend(std::env::vars());
    Ok(Vars { env })
}

/// Reads, checks, interpolates and merges `files`.
pub fn load(files: &[PathBuf]) -> Result<Loaded, LoadError> {
    let first = files.first().ok_or_else(|| LoadError {
        file: String::new(),
        line: None,
        reason: "Please specify a Compose file (with --compose-file).".into(),
    })?;
    let dir = first
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let vars = vars(&dir)?;
    let mut sources = Vec::new();
    let mut merged = Value::Mapping(Mapping::new());
    let mut version: Option<String> = None;
    let mut unsupported = std::collections::BTreeSet::new();
    let mut deprecated = BTreeMap::new();
    let mut drivers = BTreeMap::new();
    for path in files {
        let text = read_bounded(path)?;
        let name = path.display().to_string();
        let mut doc: Value = serde_norway::from_str(&text).map_err(|e| LoadError {
            file: name.clone(),
            line: e.location().map(|l| l.line()),
            reason: e.to_string(),
        })?;
        doc.apply_merge().map_err(|e| LoadError {
            file: name.clone(),
            line: e.location().map(|l| l.line()),
            reason: e.to_string(),
        })?;
        sources.push(Source {
            name: name.clone(),
            text,
        });
        let Value::Mapping(top) = &doc else {
            return Err(LoadError {
                file: name,
                line: None,
                reason: "top-level object must be a mapping".into(),
            });
        };
        let this_version = top.get("version").map(scalar_text);
        if let (Some(a), Some(b)) = (&version, &this_version) {
            if a != b {
                return Err(LoadError {
                    file: name,
                    line: None,
                    reason: format!("version mismatched between two composefiles : {a} and {b}"),
                });
            }
        }
        version = version.or(this_version);
        if let Some(Value::Mapping(services)) = top.get("services") {
            for (svc, body) in services {
                let Value::Mapping(body) = body else { continue };
                let svc = scalar_text(svc);
                for (key, reason) in FORBIDDEN {
                    if body.contains_key(*key) {
                        let at = vec!["services".into(), svc.clone(), key.to_string()];
                        return Err(locate(
                            &sources,
                            &at,
                            format!(
                                "compose file contains unsupported options:\n\n{key}: {reason}\n"
                            ),
                        ));
                    }
                }
                unsupported.extend(
                    UNSUPPORTED
                        .iter()
                        .filter(|k| body.contains_key(**k))
                        .copied(),
                );
                for (key, reason) in DEPRECATED {
                    if body.contains_key(*key) {
                        deprecated.insert(*key, *reason);
                    }
                }
                if let Some(d) = body.get("x-shoal-driver") {
                    drivers.insert(svc.clone(), scalar_text(d));
                }
            }
        }
        octal_modes(&mut doc, &sources[sources.len() - 1].text);
        let mut path = Vec::new();
        interpolate_value(&mut doc, &vars, &mut path)
            .map_err(|(path, reason)| locate(&sources, &path, reason))?;
        strip_extensions(&mut doc);
        merge(&mut merged, doc);
    }
    let compose: Compose = serde_path_to_error::deserialize(merged).map_err(|e| {
        let path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let reason = format!("{}: {}", dotted(&path), e.inner());
        locate(&sources, &path, reason)
    })?;
    let mut warnings = Vec::new();
    if !unsupported.is_empty() {
        let list: Vec<&str> = unsupported.into_iter().collect();
        warnings.push(format!(
            "Ignoring unsupported options: {}\n",
            list.join(", ")
        ));
    }
    if !deprecated.is_empty() {
        let lines: Vec<String> = deprecated
            .iter()
            .map(|(k, why)| format!("{k}: {why}"))
            .collect();
        warnings.push(format!(
            "Ignoring deprecated options:\n\n{}\n",
            lines.join("\n\n")
        ));
    }
    Ok(Loaded {
        compose,
        dir,
        drivers,
        warnings,
        sources,
    })
}

/// A secret's or config's `mode: 0440` is octal, as YAML 1.1 (docker's
/// reader) has it; a YAML 1.2 reader takes it as decimal 440. The number
/// is read again from its line when it was written with a leading zero.
fn octal_modes(doc: &mut Value, text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let Some(Value::Mapping(services)) = doc.get_mut("services") else {
        return;
    };
    for (svc, body) in services.iter_mut() {
        let svc = scalar_text(svc);
        for kind in ["secrets", "configs"] {
            let Some(Value::Sequence(refs)) = body.get_mut(kind) else {
                continue;
            };
            for (i, r) in refs.iter_mut().enumerate() {
                // serde_norway reads `0400` as the string "0400", `400` as a number.
                let Some(mode @ (Value::Number(_) | Value::String(_))) = r.get_mut("mode") else {
                    continue;
                };
                let path = [svc.clone(), kind.into(), i.to_string(), "mode".into()];
                let path: Vec<String> = std::iter::once("services".to_string())
                    .chain(path)
                    .collect();
                let Some(line) = line_of(text, &path).and_then(|l| lines.get(l - 1)) else {
                    continue;
                };
                let Some((_, written)) = line.split_once("mode:") else {
                    continue;
                };
                let written = written.split('#').next().unwrap_or("").trim();
                let digits = written
                    .strip_prefix("0o")
                    .or_else(|| written.strip_prefix('0'));
                if let Some(n) = digits
                    .filter(|d| !d.is_empty())
                    .and_then(|d| u64::from_str_radix(d, 8).ok())
                {
                    *mode = Value::from(n);
                }
            }
        }
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Substitutes variables in every string value (keys are left alone, as
/// docker does); an error carries the path of its value.
fn interpolate_value(
    v: &mut Value,
    vars: &Vars,
    path: &mut Vec<String>,
) -> Result<(), (Vec<String>, String)> {
    match v {
        Value::String(s) => {
            *s = interpolate::substitute(s, vars).map_err(|e| {
                let reason = format!("{}: {e}", dotted(path));
                (path.clone(), reason)
            })?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate_value(item, vars, path)?;
                path.pop();
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                path.push(scalar_text(k));
                interpolate_value(item, vars, path)?;
                path.pop();
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, vars, path)?,
        _ => {}
    }
    Ok(())
}

/// Drops `x-` keys everywhere: extension fields, free for anchors.
fn strip_extensions(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|k, _| !matches!(k, Value::String(s) if s.starts_with("x-")));
            for (_, item) in m.iter_mut() {
                strip_extensions(item);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(strip_extensions),
        _ => {}
    }
}

/// A later file over an earlier one, as docker's client merges them
/// (docker/cli `compose/loader/merge.go`): mappings merge key by key; in a
/// service, `ports` are joined (an identical entry once), `secrets` and
/// `configs` merged by source, `volumes` by target, `environment` and
/// `labels` by key in either form, the string lists docker appends to
/// (`dns`, `cap_add`, `extra_hosts`, placement constraints, ...) joined;
/// any other list or value is replaced.
fn merge(base: &mut Value, over: Value) {
    merge_at(base, over, &mut Vec::new());
}

fn merge_at(base: &mut Value, over: Value, path: &mut Vec<String>) {
    let rule = list_rule(path);
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => {
                        path.push(scalar_text(&k));
                        merge_at(existing, v, path);
                        path.pop();
                    }
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) if rule == ListRule::Dict => {
            let mut merged = as_dict(b);
            merged.extend(as_dict(&o));
            *b = Value::Mapping(merged);
        }
        (Value::Sequence(b), Value::Sequence(o)) if rule != ListRule::Replace => {
            for item in o {
                let key = list_key(rule, &item);
                match b.iter_mut().find(|x| list_key(rule, x) == key) {
                    Some(existing) => *existing = item,
                    None => b.push(item),
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ListRule {
    Replace,
    /// Joined, an identical entry once.
    Join,
    /// Merged by the entry's `source`.
    BySource,
    /// Merged by the entry's `target`.
    ByTarget,
    /// `KEY=VALUE` lists or mappings, merged by key.
    Dict,
}

fn list_rule(path: &[String]) -> ListRule {
    let in_service: Vec<&str> = match path {
        [services, _, rest @ ..] if services == "services" => {
            rest.iter().map(String::as_str).collect()
        }
        _ => return ListRule::Replace,
    };
    match in_service.as_slice() {
        ["ports"]
        | ["dns"]
        | ["dns_search"]
        | ["cap_add"]
        | ["cap_drop"]
        | ["extra_hosts"]
        | ["security_opt"]
        | ["group_add"]
        | ["depends_on"]
        | ["deploy", "placement", "constraints"]
        | ["deploy", "placement", "preferences"] => ListRule::Join,
        ["secrets"] | ["configs"] => ListRule::BySource,
        ["volumes"] => ListRule::ByTarget,
        ["environment"] | ["labels"] | ["deploy", "labels"] => ListRule::Dict,
        _ => ListRule::Replace,
    }
}

/// What identifies a list entry under `rule`.
fn list_key(rule: ListRule, item: &Value) -> Value {
    let field = match rule {
        ListRule::BySource => "source",
        ListRule::ByTarget => "target",
        _ => return item.clone(),
    };
    match item {
        // `SOURCE` for a secret; `[SOURCE:]TARGET[:MODE]` for a volume.
        Value::String(s) if rule == ListRule::ByTarget => {
            let parts: Vec<&str> = s.split(':').collect();
            Value::from(if parts.len() >= 2 { parts[1] } else { parts[0] })
        }
        Value::Mapping(m) => m.get(field).cloned().unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// `environment` or `labels` as a mapping, from either form (a bare `KEY`
/// in a list has no value).
fn as_dict(v: &Value) -> serde_norway::Mapping {
    match v {
        Value::Mapping(m) => m.clone(),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                let text = scalar_text(item);
                match text.split_once('=') {
                    Some((k, v)) => (Value::from(k), Value::from(v)),
                    None => (Value::from(text.as_str()), Value::Null),
                }
            })
            .collect(),
        _ => serde_norway::Mapping::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).expect("yaml")
    }

    #[test]
    fn merges_as_dockers_client_merges() {
        let mut a = yaml(
            "services: {web: {image: a, command: [x, y], ports: ['80:80', '81:81'],
              secrets: [pw, {source: key, target: k1}], volumes: ['data:/data', '/tmp:/t:ro'],
              environment: [A=1, B=2], deploy: {replicas: 1, placement: {constraints: [c1]}}}}",
        );
        let b = yaml(
            "services: {web: {image: b, command: [z], ports: ['81:81', '82:82'],
              secrets: [{source: key, target: k2}, tls], volumes: ['other:/data'],
              environment: {B: '3', C: '4'}, deploy: {placement: {constraints: [c2]}}},
              db: {image: c}}",
        );
        merge(&mut a, b);
        let web = &a["services"]["web"];
        assert_eq!(web["image"], Value::from("b"));
        assert_eq!(web["command"], yaml("[z]"), "a command is replaced");
        assert_eq!(web["ports"], yaml("['80:80', '81:81', '82:82']"));
        assert_eq!(web["secrets"], yaml("[pw, {source: key, target: k2}, tls]"));
        assert_eq!(web["volumes"], yaml("['other:/data', '/tmp:/t:ro']"));
        assert_eq!(web["environment"], yaml("{A: '1', B: '3', C: '4'}"));
        assert_eq!(web["deploy"]["placement"]["constraints"], yaml("[c1, c2]"));
        assert_eq!(web["deploy"]["replicas"], Value::from(1));
        assert_eq!(a["services"]["db"]["image"], Value::from("c"));
    }
}
