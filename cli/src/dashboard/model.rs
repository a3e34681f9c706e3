//! What the dashboard knows of the swarm: nodes, services, their current
//! tasks, the Raft leader and term, recent events; built from the control
//! API's answers (the Engine API's JSON) and rendered as the one JSON
//! snapshot the page draws (`View`). Pure: no IO, so every rule is a unit
//! test.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

/// Current tasks kept per service (the page draws a box for each).
pub const MAX_TASKS_PER_SERVICE: usize = 512;
/// Services the model keeps (beyond, the newest are left out and counted).
pub const MAX_SERVICES: usize = 1_000;
/// Nodes the model keeps.
pub const MAX_NODES: usize = 1_000;
/// Recent events kept for the page.
pub const MAX_EVENTS: usize = 50;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub state: String,
    pub availability: String,
    pub leader: bool,
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpdateView {
    pub state: String,
    pub message: String,
    /// Running tasks of the current spec, of `total` desired.
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub mode: String,
    /// Replicas asked for (replicated services and jobs).
    pub replicas: Option<u64>,
    pub running: u64,
    pub desired: u64,
    pub ports: Vec<String>,
    pub version: u64,
    pub update: Option<UpdateView>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskView {
    pub id: String,
    pub service_id: String,
    /// `web.2`, or `web.<node id>` for a global task.
    pub name: String,
    pub node_id: String,
    pub state: String,
    pub desired: String,
    pub err: String,
    /// When the task reached its current state (RFC 3339).
    pub since: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    pub time_nano: i64,
    pub kind: String,
    pub action: String,
    pub id: String,
    pub name: String,
}

/// The snapshot the page draws.
#[derive(Debug, Clone, Serialize)]
pub struct View<'a> {
    pub version: u64,
    pub term: u64,
    pub leader: Option<&'a str>,
    pub nodes: Vec<&'a NodeView>,
    pub services: Vec<&'a ServiceView>,
    pub tasks: Vec<&'a TaskView>,
    pub events: Vec<&'a EventView>,
}

/// Where the counts of a service came from, to tell whether its tasks must
/// be read again (`Model::stale_services`).
#[derive(Debug, Default)]
pub struct Model {
    pub version: u64,
    pub term: u64,
    pub leader_raft_id: u64,
    pub applied: u64,
    nodes: BTreeMap<String, NodeView>,
    services: BTreeMap<String, ServiceView>,
    tasks: BTreeMap<String, Vec<TaskView>>,
    events: VecDeque<EventView>,
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn num(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// A node of `GET /nodes`.
pub fn node_view(n: &Value) -> Option<NodeView> {
    let id = n.get("ID")?.as_str()?.to_string();
    Some(NodeView {
        hostname: text(n, "/Description/Hostname"),
        role: text(n, "/Spec/Role"),
        state: text(n, "/Status/State"),
        availability: text(n, "/Spec/Availability"),
        leader: n
            .pointer("/ManagerStatus/Leader")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        addr: text(n, "/Status/Addr"),
        id,
    })
}

/// A service of `GET /services?status=true`.
pub fn service_view(s: &Value) -> Option<ServiceView> {
    let id = s.get("ID")?.as_str()?.to_string();
    let mode = s.pointer("/Spec/Mode").and_then(Value::as_object);
    let (mode_name, replicas) = match mode.and_then(|m| m.iter().next()) {
        Some((k, v)) => (
            k.to_lowercase(),
            v.get("Replicas")
                .or_else(|| v.get("TotalCompletions"))
                .and_then(Value::as_u64),
        ),
        None => ("replicated".to_string(), None),
    };
    let ports = s
        .pointer("/Endpoint/Ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .take(16)
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        num(p, "/PublishedPort").unwrap_or(0),
                        num(p, "/TargetPort").unwrap_or(0),
                        p.get("Protocol").and_then(Value::as_str).unwrap_or("tcp")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let update = s.get("UpdateStatus").filter(|u| !u.is_null()).map(|u| {
        let state = text(u, "/State");
        UpdateView {
            message: text(u, "/Message"),
            done: 0,
            total: 0,
            state,
        }
    });
    Some(ServiceView {
        name: text(s, "/Spec/Name"),
        mode: mode_name,
        replicas,
        running: num(s, "/ServiceStatus/RunningTasks").unwrap_or(0),
        desired: num(s, "/ServiceStatus/DesiredTasks").unwrap_or(0),
        ports,
        version: num(s, "/Version/Index").unwrap_or(0),
        update,
        id,
    })
}

/// Whether a rollout of this state is going on (its progress is worth reading).
pub fn rolling(update: Option<&UpdateView>) -> bool {
    update.is_some_and(|u| matches!(u.state.as_str(), "updating" | "rollback_started"))
}

/// A task still worth a box: desired to run (or ready to), or not yet
/// ended.
fn current(t: &Value) -> bool {
    let desired = t.get("DesiredState").and_then(Value::as_str).unwrap_or("");
    let state = t
        .pointer("/Status/State")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ended = matches!(
        state,
        "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned"
    );
    matches!(desired, "running" | "ready" | "accepted") || !ended
}

/// A task of `GET /tasks`, named as `service ps` names it.
pub fn task_view(t: &Value, service_name: &str) -> Option<TaskView> {
    let id = t.get("ID")?.as_str()?.to_string();
    let node_id = text(t, "/NodeID");
    let name = match num(t, "/Slot") {
        Some(slot) if slot > 0 => format!("{service_name}.{slot}"),
        _ => format!("{service_name}.{node_id}"),
    };
    Some(TaskView {
        service_id: text(t, "/ServiceID"),
        name,
        node_id,
        state: text(t, "/Status/State"),
        desired: text(t, "/DesiredState"),
        err: text(t, "/Status/Err"),
        since: text(t, "/Status/Timestamp"),
        id,
    })
}

impl Model {
    fn changed(&mut self) {
        self.version += 1;
    }

    pub fn set_nodes(&mut self, nodes: &[Value]) {
        let fresh: BTreeMap<String, NodeView> = nodes
            .iter()
            .filter_map(node_view)
            .take(MAX_NODES)
            .map(|n| (n.id.clone(), n))
            .collect();
        if fresh != self.nodes {
            self.nodes = fresh;
            self.changed();
        }
    }

    pub fn set_node(&mut self, node: &Value) {
        let Some(n) = node_view(node) else {
            return;
        };
        if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(&n.id) {
            return;
        }
        if self.nodes.get(&n.id) != Some(&n) {
            self.nodes.insert(n.id.clone(), n);
            self.changed();
        }
    }

    pub fn remove_node(&mut self, id: &str) {
        if self.nodes.remove(id).is_some() {
            self.changed();
        }
    }

    /// Every service, from one list; those gone are dropped with their tasks.
    pub fn set_services(&mut self, services: &[Value]) {
        let fresh: Vec<ServiceView> = services
            .iter()
            .filter_map(service_view)
            .take(MAX_SERVICES)
            .collect();
        let before = self.services.len();
        self.services
            .retain(|id, _| fresh.iter().any(|s| s.id == *id));
        self.tasks.retain(|id, _| fresh.iter().any(|s| s.id == *id));
        let mut changed = before != self.services.len();
        for s in fresh {
            changed |= self.put_service(s);
        }
        if changed {
            self.changed();
        }
    }

    /// One service; its rollout progress is kept until its tasks are read.
    fn put_service(&mut self, mut s: ServiceView) -> bool {
        if self.services.len() >= MAX_SERVICES && !self.services.contains_key(&s.id) {
            return false;
        }
        if let (Some(new), Some(old)) = (
            s.update.as_mut(),
            self.services.get(&s.id).and_then(|o| o.update.as_ref()),
        ) {
            new.done = old.done;
            new.total = old.total;
        }
        if self.services.get(&s.id) == Some(&s) {
            return false;
        }
        self.services.insert(s.id.clone(), s);
        true
    }

    pub fn set_service(&mut self, service: &Value) {
        if let Some(s) = service_view(service) {
            if self.put_service(s) {
                self.changed();
            }
        }
    }

    pub fn remove_service(&mut self, id: &str) {
        let gone = self.services.remove(id).is_some();
        if self.tasks.remove(id).is_some() || gone {
            self.changed();
        }
    }

    pub fn service(&self, id: &str) -> Option<&ServiceView> {
        self.services.get(id)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceView> {
        self.services.values()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeView> {
        self.nodes.values()
    }

    /// The current tasks of one service, from `GET /tasks` filtered by it.
    pub fn set_service_tasks(&mut self, service_id: &str, tasks: &[Value]) {
        let Some(name) = self.services.get(service_id).map(|s| s.name.clone()) else {
            return;
        };
        let mut fresh: Vec<TaskView> = tasks
            .iter()
            .filter(|t| current(t))
            .filter_map(|t| task_view(t, &name))
            .filter(|t| t.service_id == service_id)
            .collect();
        fresh.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        fresh.truncate(MAX_TASKS_PER_SERVICE);
        if self.tasks.get(service_id) != Some(&fresh) {
            self.tasks.insert(service_id.to_string(), fresh);
            self.changed();
        }
    }

    /// Every task, from one unfiltered `GET /tasks`.
    pub fn set_all_tasks(&mut self, tasks: &[Value]) {
        let mut by_service: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for t in tasks {
            let service = text(t, "/ServiceID");
            if self.services.contains_key(&service) {
                by_service.entry(service).or_default().push(t.clone());
            }
        }
        let ids: Vec<String> = self.services.keys().cloned().collect();
        for id in ids {
            let list = by_service.remove(&id).unwrap_or_default();
            self.set_service_tasks(&id, &list);
        }
    }

    /// A rollout's progress: running tasks of the current spec.
    pub fn set_progress(&mut self, service_id: &str, done: u64) {
        let Some(s) = self.services.get_mut(service_id) else {
            return;
        };
        let total = s.replicas.unwrap_or(s.desired);
        if let Some(u) = s.update.as_mut() {
            if (u.done, u.total) != (done, total) {
                u.done = done;
                u.total = total;
                self.version += 1;
            }
        }
    }

    /// The Raft status of `GET /info`: true if the leader or the term
    /// changed (the nodes' leader flags are then read again).
    pub fn set_raft(&mut self, term: u64, leader_raft_id: u64, applied: u64) -> bool {
        let leadership = (term, leader_raft_id) != (self.term, self.leader_raft_id);
        self.applied = applied;
        if leadership {
            self.term = term;
            self.leader_raft_id = leader_raft_id;
            self.changed();
        }
        leadership
    }

    /// One event of `GET /events`, newest first.
    pub fn push_event(&mut self, e: &Value) {
        let view = EventView {
            time_nano: e.get("timeNano").and_then(Value::as_i64).unwrap_or(0),
            kind: text(e, "/Type"),
            action: text(e, "/Action"),
            id: text(e, "/Actor/ID"),
            name: text(e, "/Actor/Attributes/name"),
        };
        self.events.push_front(view);
        self.events.truncate(MAX_EVENTS);
        self.changed();
    }

    pub fn leader(&self) -> Option<&NodeView> {
        self.nodes.values().find(|n| n.leader)
    }

    pub fn view(&self) -> View<'_> {
        let mut nodes: Vec<&NodeView> = self.nodes.values().collect();
        // Managers first, then by name, as the visualizer lays them out.
        nodes.sort_by(|a, b| {
            (a.role != "manager", &a.hostname, &a.id).cmp(&(
                b.role != "manager",
                &b.hostname,
                &b.id,
            ))
        });
        let mut services: Vec<&ServiceView> = self.services.values().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        View {
            version: self.version,
            term: self.term,
            leader: self.leader().map(|n| n.id.as_str()),
            nodes,
            services,
            tasks: self.tasks.values().flatten().collect(),
            events: self.events.iter().collect(),
        }
    }
}

/// A service's history for the page's side panel: every task the state
/// still keeps (the reaper's history limit bounds them), newest first
/// within a slot.
pub fn history(tasks: &[Value], service_name: &str, nodes: &BTreeMap<String, String>) -> Value {
    let mut rows: Vec<(String, u64, String, Value)> = tasks
        .iter()
        .take(2 * MAX_TASKS_PER_SERVICE)
        .filter_map(|t| {
            let v = task_view(t, service_name)?;
            let slot = num(t, "/Slot").unwrap_or(0);
            let created = text(t, "/CreatedAt");
            let node = nodes.get(&v.node_id).cloned().unwrap_or(v.node_id.clone());
            let row = serde_json::json!({
                "id": v.id,
                "name": v.name,
                "node": node,
                "desired": v.desired,
                "state": v.state,
                "message": text(t, "/Status/Message"),
                "err": v.err,
                "since": v.since,
                "created": created,
            });
            Some((v.name.clone(), slot, created, row))
        })
        .collect();
    rows.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)).then(b.2.cmp(&a.2)));
    Value::Array(rows.into_iter().map(|r| r.3).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(id: &str, name: &str, running: u64, desired: u64) -> Value {
        json!({
            "ID": id, "Version": {"Index": 7},
            "Spec": {"Name": name, "Mode": {"Replicated": {"Replicas": desired}}},
            "Endpoint": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]},
            "ServiceStatus": {"RunningTasks": running, "DesiredTasks": desired},
        })
    }

    fn task(id: &str, service: &str, slot: u64, state: &str, desired: &str) -> Value {
        json!({
            "ID": id, "ServiceID": service, "NodeID": "n1", "Slot": slot,
            "DesiredState": desired,
            "Status": {"State": state, "Timestamp": "2026-01-01T00:00:00Z", "Err": ""},
        })
    }

    #[test]
    fn a_service_reads_as_the_page_shows_it() {
        let s = service_view(&service("s1", "web", 2, 3)).expect("view");
        assert_eq!(s.name, "web");
        assert_eq!(s.mode, "replicated");
        assert_eq!(s.replicas, Some(3));
        assert_eq!((s.running, s.desired), (2, 3));
        assert_eq!(s.ports, ["8080:80/tcp"]);
        assert!(s.update.is_none());
        let global = json!({"ID": "g", "Spec": {"Name": "g", "Mode": {"Global": {}}}});
        let g = service_view(&global).expect("view");
        assert_eq!((g.mode.as_str(), g.replicas), ("global", None));
    }

    #[test]
    fn only_current_tasks_get_a_box_and_changes_bump_the_version() {
        let mut m = Model::default();
        m.set_services(&[service("s1", "web", 1, 1)]);
        let v0 = m.version;
        m.set_service_tasks(
            "s1",
            &[
                task("old", "s1", 1, "failed", "shutdown"),
                task("new", "s1", 1, "running", "running"),
                task("stopping", "s1", 2, "running", "shutdown"),
            ],
        );
        let ids: Vec<&str> = m.view().tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["new", "stopping"]);
        assert_eq!(m.view().tasks[0].name, "web.1");
        assert!(m.version > v0);
        let v1 = m.version;
        m.set_service_tasks(
            "s1",
            &[
                task("new", "s1", 1, "running", "running"),
                task("stopping", "s1", 2, "running", "shutdown"),
            ],
        );
        assert_eq!(m.version, v1, "the same tasks change nothing");
        m.set_services(&[]);
        assert!(
            m.view().tasks.is_empty(),
            "a removed service takes its tasks"
        );
    }

    #[test]
    fn a_rollout_keeps_its_progress_until_tasks_are_read_again() {
        let mut m = Model::default();
        let mut s = service("s1", "web", 3, 3);
        s["UpdateStatus"] = json!({"State": "updating", "Message": "update in progress"});
        m.set_service(&s);
        assert!(rolling(m.service("s1").and_then(|s| s.update.as_ref())));
        m.set_progress("s1", 2);
        m.set_service(&s);
        let u = m
            .service("s1")
            .and_then(|s| s.update.clone())
            .expect("update");
        assert_eq!((u.done, u.total), (2, 3));
    }

    #[test]
    fn events_are_bounded_newest_first() {
        let mut m = Model::default();
        for i in 0..(MAX_EVENTS + 10) {
            m.push_event(&json!({"Type": "service", "Action": "update", "timeNano": i, "Actor": {"ID": "x", "Attributes": {"name": "web"}}}));
        }
        let v = m.view();
        assert_eq!(v.events.len(), MAX_EVENTS);
        assert_eq!(v.events[0].time_nano, (MAX_EVENTS + 9) as i64);
        assert_eq!(v.events[0].name, "web");
    }

    #[test]
    fn leadership_changes_are_told_apart_from_progress() {
        let mut m = Model::default();
        assert!(m.set_raft(2, 1, 10));
        assert!(!m.set_raft(2, 1, 11));
        assert!(m.set_raft(3, 2, 12));
        m.set_nodes(&[
            json!({"ID": "b", "Description": {"Hostname": "w"}, "Spec": {"Role": "worker"}}),
            json!({"ID": "a", "Description": {"Hostname": "m"}, "Spec": {"Role": "manager"}, "ManagerStatus": {"Leader": true}}),
        ]);
        let v = m.view();
        assert_eq!(v.leader, Some("a"));
        assert_eq!(v.nodes[0].role, "manager", "managers first");
    }
}
