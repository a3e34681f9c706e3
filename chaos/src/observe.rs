//! Periodic observations: what each manager says about Raft, what the
//! cluster state says about services and tasks, and which task processes
//! really run on this machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::api;
use crate::history::{ManagerView, NodeInfo, Observation, ServiceView, TaskProcess};
use crate::workload::Recorder;

/// Short: a paused node must not stall the observer for long.
const ANSWER: Duration = Duration::from_millis(800);

pub struct Observer {
    /// Every manager, by name, whether it is up or not.
    pub managers: Vec<(String, PathBuf)>,
    pub nodes: Vec<NodeInfo>,
    /// The harness's workload: services running it have their processes counted.
    pub workload: PathBuf,
}

impl Observer {
    fn node_name(&self, node_id: &str) -> String {
        self.nodes
            .iter()
            .find(|n| n.node_id == node_id)
            .map_or_else(|| node_id.to_string(), |n| n.name.clone())
    }

    pub fn observe(&self, rec: &Recorder) -> Observation {
        // In parallel: a paused manager costs one timeout, not one per manager.
        let managers: Vec<ManagerView> = std::thread::scope(|scope| {
            let asks: Vec<_> = self
                .managers
                .iter()
                .map(|(name, socket)| {
                    scope.spawn(move || manager_view(name, api::get(socket, "/info", ANSWER).ok()))
                })
                .collect();
            asks.into_iter()
                .zip(&self.managers)
                .map(|(h, (name, _))| h.join().unwrap_or_else(|_| manager_view(name, None)))
                .collect()
        });
        // The freshest view: a manager that leads in the highest term.
        let mut order: Vec<usize> = (0..managers.len())
            .filter(|i| managers[*i].answered)
            .collect();
        order.sort_by_key(|i| {
            (
                !managers[*i].is_leader,
                std::cmp::Reverse(managers[*i].term),
            )
        });
        let mut state = None;
        let mut clock_flags = BTreeMap::new();
        let mut format = None;
        for i in order {
            let socket = &self.managers[i].1;
            if let (Ok(svcs), Ok(tasks)) = (
                api::get(socket, "/services", ANSWER),
                api::get(socket, "/tasks", ANSWER),
            ) {
                state = Some((svcs, tasks));
                if let Ok(nodes) = api::get(socket, "/nodes", ANSWER) {
                    clock_flags = clock_flags_of(&nodes);
                }
                format = api::get(socket, "/swarm", ANSWER)
                    .ok()
                    .and_then(|s| s["Format"].as_u64());
                break;
            }
        }
        // Stamped with the process scan, the part whose timing the
        // killed-node checker depends on.
        let at = rec.now();
        let processes = task_processes(&self.nodes);
        let workload = self.workload.display().to_string();
        let mut services = BTreeMap::new();
        let mut running = Vec::new();
        if let Some((svcs, tasks)) = &state {
            for s in svcs.as_array().into_iter().flatten() {
                let name = s
                    .pointer("/Spec/Name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let local = s
                    .pointer("/Spec/TaskTemplate/ContainerSpec/Image")
                    .and_then(Value::as_str)
                    == Some(workload.as_str())
                    && s.pointer("/Spec/TaskTemplate/Driver")
                        .and_then(Value::as_str)
                        == Some("process");
                let alive = processes.iter().filter(|p| p.service == name).count() as u64;
                services.insert(
                    name,
                    ServiceView {
                        processes: local.then_some(alive),
                        desired: s
                            .pointer("/ServiceStatus/DesiredTasks")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                        running: s
                            .pointer("/ServiceStatus/RunningTasks")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                    },
                );
            }
            for t in tasks.as_array().into_iter().flatten() {
                if t.pointer("/Status/State").and_then(Value::as_str) == Some("running") {
                    running.push((
                        t["ServiceName"].as_str().unwrap_or("").to_string(),
                        t["Slot"].as_u64().unwrap_or(0),
                        self.node_name(t["NodeID"].as_str().unwrap_or("")),
                    ));
                }
            }
        }
        Observation {
            at,
            managers,
            state_read: state.is_some(),
            services,
            running,
            processes,
            clock_flags,
            format,
        }
    }
}

/// The nodes whose clocks the cluster flags (`ClockSkew`), by hostname.
fn clock_flags_of(nodes: &Value) -> BTreeMap<String, String> {
    nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let skew = n["ClockSkew"].as_str()?;
            let host = n.pointer("/Description/Hostname")?.as_str()?;
            Some((host.to_string(), skew.to_string()))
        })
        .collect()
}

pub fn manager_view(name: &str, info: Option<Value>) -> ManagerView {
    let raft = info
        .as_ref()
        .and_then(|i| i.pointer("/Swarm/RaftStatus"))
        .cloned();
    let num = |k: &str| raft.as_ref().and_then(|r| r[k].as_u64()).unwrap_or(0);
    ManagerView {
        node: name.to_string(),
        answered: raft.as_ref().is_some_and(|r| r.is_object()),
        raft_id: num("ID"),
        term: num("Term"),
        leader_id: num("LeaderID"),
        is_leader: raft
            .as_ref()
            .is_some_and(|r| r["IsLeader"] == Value::Bool(true)),
    }
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
pub fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && !stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
}

/// Task processes on this machine that belong to one of `nodes`, told apart
/// by the SHOAL_* variables every task is started with.
pub fn task_processes(nodes: &[NodeInfo]) -> Vec<TaskProcess> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut vars: BTreeMap<&str, String> = BTreeMap::new();
        for kv in env.split(|b| *b == 0) {
            let kv = String::from_utf8_lossy(kv);
            if let Some((k, v)) = kv.split_once('=') {
                for want in [
                    "SHOAL_NODE_ID",
                    "SHOAL_TASK_ID",
                    "SHOAL_TASK_SLOT",
                    "SHOAL_SERVICE_NAME",
                ] {
                    if k == want {
                        vars.insert(want, v.to_string());
                    }
                }
            }
        }
        let Some(node) = vars
            .get("SHOAL_NODE_ID")
            .and_then(|id| nodes.iter().find(|n| &n.node_id == id))
        else {
            continue;
        };
        if !alive(pid) {
            continue;
        }
        out.push(TaskProcess {
            pid,
            service: vars.get("SHOAL_SERVICE_NAME").cloned().unwrap_or_default(),
            slot: vars
                .get("SHOAL_TASK_SLOT")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            task_id: vars.get("SHOAL_TASK_ID").cloned().unwrap_or_default(),
            node: node.name.clone(),
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}
