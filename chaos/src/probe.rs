//! Steady-state probes: questions about the live cluster with a yes/no
//! answer and a sentence saying why.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::api;
use crate::history::Outcome;
use crate::observe::manager_view;
use crate::scenario::Probe;
use crate::workload::{self, LiveManagers, Recorder};

const ANSWER: Duration = Duration::from_secs(2);

/// What a probe needs, cheap to clone into the thread that probes during the method.
#[derive(Clone)]
pub struct ProbeCtx {
    pub rec: Arc<Recorder>,
    pub live: LiveManagers,
    pub node_count: usize,
    pub writes: Arc<AtomicU64>,
}

impl ProbeCtx {
    fn managers(&self) -> Vec<(String, PathBuf)> {
        self.live.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The live manager that leads in the highest term, if any answers so.
    pub fn leader(&self) -> Option<(String, PathBuf)> {
        self.managers()
            .into_iter()
            .filter_map(|(name, socket)| {
                let v = manager_view(&name, api::get(&socket, "/info", ANSWER).ok());
                v.is_leader.then_some((v.term, name, socket))
            })
            .max_by_key(|(term, ..)| *term)
            .map(|(_, name, socket)| (name, socket))
    }

    /// A harness write: creates chaos-<kind>-N with no replicas, through the
    /// first live manager (followers forward).
    pub fn harness_write(&self, client: &str, within: Duration) -> (bool, String) {
        let managers = self.managers();
        let Some((name, socket)) = managers.first() else {
            return (false, "no manager is up".into());
        };
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        let service = format!("chaos-{client}-{n}");
        let op = workload::write(
            &self.rec,
            client,
            "create",
            &service,
            Some(0),
            (name, socket),
            within,
        );
        match op.outcome {
            Outcome::Ok => (
                true,
                format!(
                    "{service} created via {name} in {} ms",
                    op.done.saturating_sub(op.sent)
                ),
            ),
            _ => (false, format!("{service} via {name}: {}", op.error)),
        }
    }

    pub fn check(&self, probe: &Probe) -> (bool, String) {
        match probe {
            Probe::Running { service, tolerance } => {
                let Some((_, socket)) = self.leader() else {
                    return (false, "no leader to ask".into());
                };
                match api::get(&socket, &format!("/services/{service}"), ANSWER) {
                    Ok(s) => {
                        let n = |p: &str| s.pointer(p).and_then(Value::as_u64).unwrap_or(0);
                        let (running, desired) = (
                            n("/ServiceStatus/RunningTasks"),
                            n("/ServiceStatus/DesiredTasks"),
                        );
                        (
                            running + tolerance >= desired && running <= desired,
                            format!(
                                "{service}: {running}/{desired} running (tolerance {tolerance})"
                            ),
                        )
                    }
                    Err(e) => (false, format!("{service}: {e}")),
                }
            }
            Probe::OneLeader => {
                let views: Vec<_> = self
                    .managers()
                    .into_iter()
                    .map(|(name, socket)| {
                        manager_view(&name, api::get(&socket, "/info", ANSWER).ok())
                    })
                    .collect();
                if let Some(silent) = views.iter().find(|v| !v.answered) {
                    return (false, format!("{} did not answer", silent.node));
                }
                let leaders: Vec<&str> = views
                    .iter()
                    .filter(|v| v.is_leader)
                    .map(|v| v.node.as_str())
                    .collect();
                let ids: std::collections::BTreeSet<u64> =
                    views.iter().map(|v| v.leader_id).collect();
                let ok = leaders.len() == 1 && ids.len() == 1 && !ids.contains(&0);
                (
                    ok,
                    format!("leaders claimed: {leaders:?}; leader ids seen: {ids:?}"),
                )
            }
            Probe::Write { within } => self.harness_write("probe", *within),
            Probe::Rolled { service } => {
                let Some((_, socket)) = self.leader() else {
                    return (false, "no leader to ask".into());
                };
                match api::get(&socket, &format!("/services/{service}"), ANSWER) {
                    Err(e) => (false, format!("{service}: {e}")),
                    Ok(s) => {
                        let state = s
                            .pointer("/UpdateStatus/State")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        match state {
                            "" | "completed" | "rollback_completed" => {
                                (true, format!("{service}: rollout {}", state_or_none(state)))
                            }
                            _ => {
                                let message = s
                                    .pointer("/UpdateStatus/Message")
                                    .and_then(Value::as_str)
                                    .unwrap_or("");
                                (false, format!("{service}: rollout {state} ({message})"))
                            }
                        }
                    }
                }
            }
            Probe::Spread { service } => {
                let Some((_, socket)) = self.leader() else {
                    return (false, "no leader to ask".into());
                };
                let (nodes, tasks) = match (
                    api::get(&socket, "/nodes", ANSWER),
                    api::get(&socket, &format!("/tasks?service={service}"), ANSWER),
                ) {
                    (Ok(n), Ok(t)) => (n, t),
                    (Err(e), _) | (_, Err(e)) => return (false, format!("{service}: {e}")),
                };
                let text = |v: &Value, p: &str| {
                    v.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let mut per_node: std::collections::BTreeMap<String, usize> = nodes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| {
                        text(n, "/Status/State") == "ready"
                            && text(n, "/Spec/Availability") == "active"
                    })
                    .map(|n| (text(n, "/Description/Hostname"), 0))
                    .collect();
                let names: std::collections::BTreeMap<String, String> = nodes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| (text(n, "/ID"), text(n, "/Description/Hostname")))
                    .collect();
                for t in tasks.as_array().into_iter().flatten() {
                    if text(t, "/Status/State") == "running"
                        && text(t, "/DesiredState") == "running"
                    {
                        let host = names.get(&text(t, "/NodeID")).cloned().unwrap_or_default();
                        if let Some(n) = per_node.get_mut(&host) {
                            *n += 1;
                        }
                    }
                }
                let (lo, hi) = per_node
                    .values()
                    .fold((usize::MAX, 0), |(lo, hi), &n| (lo.min(n), hi.max(n)));
                (
                    !per_node.is_empty() && hi <= lo + 1,
                    format!("{service} per node: {per_node:?}"),
                )
            }
            Probe::NodesReady => {
                let Some((_, socket)) = self.leader() else {
                    return (false, "no leader to ask".into());
                };
                match api::get(&socket, "/nodes", ANSWER) {
                    Ok(list) => {
                        let list = list.as_array().cloned().unwrap_or_default();
                        let ready = list
                            .iter()
                            .filter(|n| {
                                n.pointer("/Status/State").and_then(Value::as_str) == Some("ready")
                            })
                            .count();
                        (
                            ready == self.node_count && list.len() == self.node_count,
                            format!("{ready}/{} nodes ready", self.node_count),
                        )
                    }
                    Err(e) => (false, e.to_string()),
                }
            }
            Probe::Api { within } => {
                let managers = self.managers();
                if managers.is_empty() {
                    return (false, "no manager is up".into());
                }
                let mut slow = Vec::new();
                let mut worst = Duration::ZERO;
                for (name, socket) in &managers {
                    let start = std::time::Instant::now();
                    let answered = api::get(socket, "/_ping", *within).is_ok();
                    let took = start.elapsed();
                    worst = worst.max(took);
                    if !answered || took > *within {
                        slow.push(format!("{name} ({took:?})"));
                    }
                }
                (
                    slow.is_empty(),
                    if slow.is_empty() {
                        format!(
                            "{} control APIs answered, slowest in {worst:?}",
                            managers.len()
                        )
                    } else {
                        format!("no answer within {within:?} from {}", slow.join(", "))
                    },
                )
            }
            Probe::Mesh { service } => {
                let Some(port) = self.rec.published.get(service).copied() else {
                    return (false, format!("{service} publishes no port"));
                };
                let managers = self.managers();
                if managers.is_empty() {
                    return (false, "no manager is up".into());
                }
                let mut failed = Vec::new();
                for (name, socket) in &managers {
                    let addr = api::get(socket, "/info", ANSWER)
                        .ok()
                        .and_then(|i| i.pointer("/Swarm/NodeAddr")?.as_str().map(str::to_string))
                        .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
                    let answered = addr.is_some_and(|a| http_answers((a.ip(), port).into()));
                    if !answered {
                        failed.push(name.clone());
                    }
                }
                (
                    failed.is_empty(),
                    if failed.is_empty() {
                        format!("{} managers answered on port {port}", managers.len())
                    } else {
                        format!("no answer on port {port} through {}", failed.join(", "))
                    },
                )
            }
        }
    }
}

/// One HTTP request answered with a 200 within `MESH_ANSWER` (a proxy may
/// try a backend on a node that just died before it finds a live one).
fn http_answers(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    const MESH_ANSWER: Duration = Duration::from_secs(5);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, MESH_ANSWER) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(MESH_ANSWER));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).is_ok() && out.starts_with(b"HTTP/1.0 200")
}

/// How a probe reads in a report.
pub fn describe(p: &Probe) -> String {
    match p {
        Probe::Running { service, tolerance } => {
            format!("service {service} has all replicas running (tolerance {tolerance})")
        }
        Probe::OneLeader => "exactly one leader, agreed by every live manager".into(),
        Probe::Write { within } => format!("a write is acknowledged within {within:?}"),
        Probe::NodesReady => "every node is ready".into(),
        Probe::Mesh { service } => {
            format!("every live manager answers on {service}'s published port")
        }
        Probe::Spread { service } => {
            format!("service {service} is spread evenly (at most one task apart per node)")
        }
        Probe::Api { within } => {
            format!("every live manager's control API answers within {within:?}")
        }
        Probe::Rolled { service } => format!("service {service}'s last rollout is over"),
    }
}

fn state_or_none(state: &str) -> &str {
    if state.is_empty() {
        "none"
    } else {
        state
    }
}
