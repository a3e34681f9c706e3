//! Swarm's service templates (`{{.Task.Slot}}`, `{{.Node.Hostname}}`, …)
//! in a task's env values, hostname and mounts' sources, targets, volume
//! labels and driver options, expanded with Go's text/template (gtmpl) on
//! the node that runs the task, as swarmkit's `ExpandContainerSpec` does.
//! A spec is tried against a made-up task when it is created or updated,
//! as swarmkit tries it, so an unknown field is a 400, not a failing task.

use std::collections::{BTreeMap, HashMap};

use gtmpl::Value;
use shoal_core::model::{Task, TaskTemplate};

/// The node a task runs on, as templates see it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub hostname: String,
    pub os: String,
    pub arch: String,
}

/// The task a template is expanded for.
struct Named<'a> {
    id: &'a str,
    service_id: &'a str,
    service_name: &'a str,
    service_labels: &'a BTreeMap<String, String>,
    slot: u64,
}

impl<'a> From<&'a Task> for Named<'a> {
    fn from(t: &'a Task) -> Self {
        Named {
            id: &t.id,
            service_id: &t.service_id,
            service_name: &t.service_name,
            service_labels: &t.service_labels,
            slot: t.slot,
        }
    }
}

/// What a template may name (swarmkit's `template.Context`).
fn context(task: &Named, node_id: &str, node: &NodeInfo) -> gtmpl::Context {
    let s = |v: &str| Value::String(v.to_string());
    let object = |fields: Vec<(&str, Value)>| {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<HashMap<_, _>>(),
        )
    };
    // swarmkit's `naming.Task`: the slot, or the node for a global task.
    let slot = if task.slot == 0 {
        node_id.to_string()
    } else {
        task.slot.to_string()
    };
    let data = object(vec![
        (
            "Service",
            object(vec![
                ("ID", s(task.service_id)),
                ("Name", s(task.service_name)),
                (
                    "Labels",
                    Value::Object(
                        task.service_labels
                            .iter()
                            .map(|(k, v)| (k.clone(), s(v)))
                            .collect(),
                    ),
                ),
            ]),
        ),
        (
            "Node",
            object(vec![
                ("ID", s(node_id)),
                ("Hostname", s(&node.hostname)),
                (
                    "Platform",
                    object(vec![("Architecture", s(&node.arch)), ("OS", s(&node.os))]),
                ),
            ]),
        ),
        (
            "Task",
            object(vec![
                ("ID", s(task.id)),
                (
                    "Name",
                    s(&format!("{}.{slot}.{}", task.service_name, task.id)),
                ),
                ("Slot", s(&slot)),
            ]),
        ),
    ]);
    gtmpl::Context::from(data)
}

/// One string expanded; text without `{{` is returned as it is.
fn expand(ctx: &gtmpl::Context, text: &str) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut t = gtmpl::Template::default();
    t.parse(text)
        .map_err(|e| format!("template: expansion: {e}"))?;
    t.render(ctx).map_err(|e| {
        let e = e.to_string();
        // gtmpl says "no field Nope for {...}"; Go names the field alone.
        match e
            .split("no field ")
            .nth(1)
            .and_then(|r| r.split(" for ").next())
        {
            Some(field) => format!("template: expansion: can't evaluate field {field}"),
            None => format!("template: expansion: {e}"),
        }
    })
}

fn expand_map(
    ctx: &gtmpl::Context,
    what: &str,
    map: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    map.iter()
        .map(|(k, v)| {
            expand(ctx, v)
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("expanding {what}: expanding map entry {k:?}={v:?}: {e}"))
        })
        .collect()
}

fn expand_with(ctx: &gtmpl::Context, spec: &TaskTemplate) -> Result<TaskTemplate, String> {
    let mut out = spec.clone();
    out.env = spec
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => expand(ctx, v)
                .map(|v| format!("{k}={v}"))
                .map_err(|err| format!("expanding env failed: expanding env {e:?}: {err}")),
            None => Ok(e.clone()),
        })
        .collect::<Result<_, _>>()?;
    for m in &mut out.mounts {
        let failed = |e: String| format!("expanding mounts failed: {e}");
        m.source = expand(ctx, &m.source)
            .map_err(|e| failed(format!("expanding mount source {:?}: {e}", m.source)))?;
        m.target = expand(ctx, &m.target)
            .map_err(|e| failed(format!("expanding mount target {:?}: {e}", m.target)))?;
        if let Some(v) = &mut m.volume {
            v.labels = expand_map(ctx, "volume labels", &v.labels).map_err(failed)?;
            v.driver_options =
                expand_map(ctx, "volume driver config", &v.driver_options).map_err(failed)?;
        }
    }
    out.isolation.hostname = expand(ctx, &spec.isolation.hostname)
        .map_err(|e| format!("expanding hostname failed: {e}"))?;
    check_hostname(&out.isolation.hostname)?;
    Ok(out)
}

/// A task's hostname: what a UTS namespace and docker take.
pub fn check_hostname(h: &str) -> Result<(), String> {
    let valid = h.len() <= 63
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid hostname {h:?}: at most 63 letters, digits, '-' and '.'"
        ))
    }
}

/// `task`'s spec with its templates expanded for `node`.
pub fn expand_task(task: &Task, node_id: &str, node: &NodeInfo) -> Result<Task, String> {
    let ctx = context(&Named::from(task), node_id, node);
    let mut out = task.clone();
    out.spec = expand_with(&ctx, &task.spec)?;
    // What templates made must keep the rules too (a target is absolute…).
    shoal_core::model::mount::check(&out.spec.mounts).map_err(|e| e.0)?;
    Ok(out)
}

/// Tries a spec's templates on a made-up task, as swarmkit does when a
/// service is created or updated; an error is the user's to fix.
pub fn check(
    service_name: &str,
    service_labels: &BTreeMap<String, String>,
    spec: &TaskTemplate,
) -> Result<(), String> {
    let task = Named {
        id: "taskid",
        service_id: "serviceid",
        service_name,
        service_labels,
        slot: 1,
    };
    let node = NodeInfo {
        hostname: "nodeHostname".into(),
        os: "os".into(),
        arch: "architecture".into(),
    };
    expand_with(&context(&task, "nodeid", &node), spec).map(|_| ())
}

#[cfg(test)]
mod tests {
    use shoal_core::model::mount::{Mount, MountKind};
    use shoal_core::model::{TaskState, TaskStatus};

    use super::*;

    fn task() -> Task {
        let mut spec = TaskTemplate {
            env: vec![
                "SLOT={{.Task.Slot}}".into(),
                "WHERE={{.Node.Hostname}}-{{.Node.Platform.OS}}".into(),
                "PLAIN=a{b}".into(),
                "TIER={{index .Service.Labels \"tier\"}}".into(),
            ],
            mounts: vec![Mount {
                kind: Some(MountKind::Volume),
                source: "data-{{.Task.Slot}}".into(),
                target: "/data".into(),
                ..Mount::default()
            }],
            ..TaskTemplate::default()
        };
        spec.isolation.hostname = "{{.Service.Name}}-{{.Task.Slot}}".into();
        Task {
            id: "t1".into(),
            service_id: "s1".into(),
            service_name: "db".into(),
            service_labels: [("tier".to_string(), "data".to_string())].into(),
            slot: 3,
            node_id: Some("n1".into()),
            spec_version: 1,
            spec,
            desired_state: TaskState::Running,
            status: TaskStatus::new(TaskState::Assigned, "assigned", shoal_actors::world::now()),
            restart_history: Vec::new(),
            node_faults: 0,
            started_at: None,
            attachments: Vec::new(),
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            version: 1,
        }
    }

    #[test]
    fn swarms_fields_expand_and_unknown_ones_are_refused() {
        let node = NodeInfo {
            hostname: "h1".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
        };
        let t = expand_task(&task(), "n1", &node).expect("expands");
        assert_eq!(
            t.spec.env,
            ["SLOT=3", "WHERE=h1-linux", "PLAIN=a{b}", "TIER=data"]
        );
        assert_eq!(t.spec.mounts[0].source, "data-3");
        assert_eq!(t.spec.isolation.hostname, "db-3");
        let mut global = task();
        global.slot = 0;
        let g = expand_task(&global, "n1", &node).expect("expands");
        assert_eq!(g.spec.mounts[0].source, "data-n1");

        assert!(check("db", &task().service_labels, &task().spec).is_ok());
        let mut bad = task().spec;
        bad.env.push("X={{.Task.Nope}}".into());
        let e = check("db", &task().service_labels, &bad).expect_err("unknown field");
        assert!(
            e.starts_with("expanding env failed: expanding env \"X={{.Task.Nope}}\": template: expansion: can't evaluate field Nope"),
            "{e}"
        );
        let mut unparsable = task().spec;
        unparsable.isolation.hostname = "{{.Task.Slot".into();
        assert!(check("db", &task().service_labels, &unparsable)
            .expect_err("unclosed action")
            .starts_with("expanding hostname failed: template: expansion:"));
    }
}
