//! Checkers: pure functions from a journal to a verdict. They never talk to
//! the cluster, so a journal can be judged again later and each checker can
//! be fed a history that breaks it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::history::{Journal, Millis, Observation, Outcome, ServiceValue};

/// Kill faults get this long for the node's task processes to die with it.
pub const KILL_GRACE: Millis = 1500;
/// After the cluster heals, a replaced task gets this long to stop.
pub const STOP_GRACE: Millis = 2000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub checker: String,
    pub ok: bool,
    pub summary: String,
    /// What broke, one line each (empty when ok).
    pub violations: Vec<String>,
}

impl Verdict {
    fn new(checker: &str, violations: Vec<String>, ok_summary: String) -> Verdict {
        Verdict {
            checker: checker.into(),
            ok: violations.is_empty(),
            summary: if violations.is_empty() {
                ok_summary
            } else {
                format!(
                    "{} violation(s); first: {}",
                    violations.len(),
                    violations[0]
                )
            },
            violations,
        }
    }
}

/// The steady state as one observation shows it: every service has exactly
/// its replicas running (in the cluster state and, where the harness can see
/// them, as processes), and the managers that answer agree on one leader.
pub fn steady(o: &Observation) -> bool {
    let answered: Vec<_> = o.managers.iter().filter(|m| m.answered).collect();
    let leaders: BTreeSet<u64> = answered.iter().map(|m| m.leader_id).collect();
    o.state_read
        && !answered.is_empty()
        && leaders.len() == 1
        && !leaders.contains(&0)
        && answered.iter().filter(|m| m.is_leader).count() == 1
        && o.services.values().all(|s| s.at_spec())
}

/// The first steady observation at or after `since`.
pub fn first_steady(observations: &[Observation], since: Millis) -> Option<Millis> {
    observations
        .iter()
        .find(|o| o.at >= since && steady(o))
        .map(|o| o.at)
}

/// When the last fault (or its undo, or a rollback) was done; the method's
/// end if there was none.
pub fn healing_starts(j: &Journal) -> Millis {
    j.last_fault_end().unwrap_or(j.method_end)
}

pub fn all(j: &Journal) -> Vec<Verdict> {
    vec![
        acknowledged_writes(j),
        one_leader_per_term(j),
        replicas_recover(j),
        no_duplicate_slots(j),
        killed_node_tasks(j),
    ]
}

/// Every acknowledged write is reflected at the end. Writes set whole
/// values, so each service is a register: its final value must be the last
/// acknowledged one, or one of a write whose outcome is unknown (it may
/// take effect at any time after it was sent).
pub fn acknowledged_writes(j: &Journal) -> Verdict {
    let name = "acknowledged-writes";
    let Some(fin) = &j.final_state else {
        return Verdict::new(
            name,
            vec!["no final read: the write barrier or the read from the leader failed, so nothing can be checked".into()],
            String::new(),
        );
    };
    let mut by_service: BTreeMap<&str, Vec<&crate::history::Op>> = BTreeMap::new();
    for op in &j.ops {
        if op.outcome != Outcome::Refused {
            by_service.entry(op.service.as_str()).or_default().push(op);
        }
    }
    let mut violations = Vec::new();
    let (mut acked, mut unknown) = (0, 0);
    for (service, mut ops) in by_service {
        ops.sort_by_key(|o| o.sent);
        let last_ok = ops.iter().rev().find(|o| o.outcome == Outcome::Ok);
        let mut allowed: BTreeSet<&ServiceValue> = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Unknown)
            .map(|o| &o.value)
            .collect();
        acked += ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
        unknown += ops.len() - ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
        let absent = ServiceValue::Absent;
        allowed.insert(last_ok.map_or(&absent, |o| &o.value));
        let actual = fin.services.get(service).unwrap_or(&absent);
        if !allowed.contains(actual) {
            let what = last_ok.map_or("no write was acknowledged".to_string(), |o| {
                format!(
                    "the last acknowledged write was {} to {} at {:.2}s via {}",
                    o.kind,
                    show(&o.value),
                    o.done as f64 / 1000.0,
                    o.via
                )
            });
            violations.push(format!(
                "service {service}: {what}, but the cluster has it {}",
                show(actual)
            ));
        }
    }
    Verdict::new(
        name,
        violations,
        format!("{acked} acknowledged writes all reflected ({unknown} with unknown outcome allowed either way)"),
    )
}

fn show(v: &ServiceValue) -> String {
    match v {
        ServiceValue::Absent => "absent".into(),
        ServiceValue::Present {
            replicas,
            generation,
        } => format!("replicas={replicas} generation={generation}"),
    }
}

/// No two nodes lead in the same term, counting both what managers claim
/// and whom their peers follow.
pub fn one_leader_per_term(j: &Journal) -> Verdict {
    let mut leaders: BTreeMap<u64, BTreeMap<u64, (Millis, String)>> = BTreeMap::new();
    for o in &j.observations {
        for m in o.managers.iter().filter(|m| m.answered) {
            if m.is_leader {
                leaders
                    .entry(m.term)
                    .or_default()
                    .entry(m.raft_id)
                    .or_insert((o.at, format!("{} claims it", m.node)));
            }
            if m.leader_id != 0 {
                leaders
                    .entry(m.term)
                    .or_default()
                    .entry(m.leader_id)
                    .or_insert((o.at, format!("{} follows it", m.node)));
            }
        }
    }
    let violations = leaders
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(term, ids)| {
            let who: Vec<String> = ids
                .iter()
                .map(|(id, (at, why))| {
                    format!(
                        "{} ({why} at {:.2}s)",
                        j.node_name(*id).unwrap_or("?"),
                        *at as f64 / 1000.0
                    )
                })
                .collect();
            format!("term {term} had {} leaders: {}", ids.len(), who.join(", "))
        })
        .collect();
    Verdict::new(
        "one-leader-per-term",
        violations,
        format!("{} terms observed, one leader each", leaders.len()),
    )
}

/// After the last fault, every service is back to its replica count (and
/// the managers agree on a leader) within the scenario's settle bound, and
/// the last observation still shows it.
pub fn replicas_recover(j: &Journal) -> Verdict {
    let name = "replicas-recover";
    let since = healing_starts(j);
    let bound = j.scenario.settle.as_millis() as Millis;
    let mut violations = Vec::new();
    let mut took = None;
    match first_steady(&j.observations, since) {
        None => {
            let last = j.observations.last().map(|o| {
                o.services
                    .iter()
                    .filter(|(_, s)| !s.at_spec())
                    .map(|(n, s)| {
                        format!(
                            "{n} {}/{} ({} processes)",
                            s.running,
                            s.desired,
                            s.processes.map_or("?".into(), |p| p.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            violations.push(format!(
                "never back to spec after the last fault ended at {:.2}s; last seen off spec: {}",
                since as f64 / 1000.0,
                last.filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "no leader agreed".into())
            ));
        }
        Some(at) => {
            took = Some(at - since);
            if at - since > bound {
                violations.push(format!(
                    "back to spec {:.2}s after the last fault, over the {:.0}s bound",
                    (at - since) as f64 / 1000.0,
                    bound as f64 / 1000.0
                ));
            }
            if let Some(o) = j.observations.iter().rev().find(|o| !o.managers.is_empty()) {
                if o.at > at && !steady(o) {
                    violations.push(format!(
                        "back to spec at {:.2}s but off again at the end ({:.2}s)",
                        at as f64 / 1000.0,
                        o.at as f64 / 1000.0
                    ));
                }
            }
        }
    }
    Verdict::new(
        name,
        violations,
        format!(
            "back to spec {:.2}s after the last fault (bound {:.0}s)",
            took.unwrap_or(0) as f64 / 1000.0,
            bound as f64 / 1000.0
        ),
    )
}

/// Once healed, no slot of any service has two running tasks: neither in
/// the cluster state nor as processes on the machine.
pub fn no_duplicate_slots(j: &Journal) -> Verdict {
    let end = j.observations.last().map_or(0, |o| o.at);
    let from = first_steady(&j.observations, healing_starts(j))
        .map_or(end.saturating_sub(3000), |t| t + STOP_GRACE);
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut violations = Vec::new();
    let mut looked = 0;
    for o in j.observations.iter().filter(|o| o.at >= from) {
        looked += 1;
        let mut procs: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
        for p in &o.processes {
            procs
                .entry((p.service.clone(), p.slot))
                .or_default()
                .push(format!("pid {} on {}", p.pid, p.node));
        }
        let mut state: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
        for (service, slot, node) in &o.running {
            state
                .entry((service.clone(), *slot))
                .or_default()
                .push(format!("a task on {node}"));
        }
        for (source, map) in [("processes", procs), ("cluster state", state)] {
            for (key, who) in map {
                if who.len() > 1 && seen.insert(key.clone()) {
                    violations.push(format!(
                        "{}.{} runs twice at {:.2}s ({source}): {}",
                        key.0,
                        key.1,
                        o.at as f64 / 1000.0,
                        who.join(", ")
                    ));
                }
            }
        }
    }
    Verdict::new(
        "no-duplicate-slot",
        violations,
        format!("{looked} observations after healing, every slot running at most once"),
    )
}

/// A node killed (or stopped) leaves no task process behind while it is down.
pub fn killed_node_tasks(j: &Journal) -> Verdict {
    let mut violations = Vec::new();
    let mut windows = 0;
    for (i, f) in j.faults.iter().enumerate() {
        if !f.ok || !matches!(f.action.as_str(), "kill" | "stop") {
            continue;
        }
        for node in &f.nodes {
            let back = j
                .faults
                .iter()
                .filter(|g| g.at >= f.done && g.nodes.contains(node))
                .filter(|g| g.undoes == Some(i) || matches!(g.action.as_str(), "start" | "restart"))
                .map(|g| g.at)
                .min()
                .unwrap_or(j.end);
            windows += 1;
            let survivors: BTreeSet<String> = j
                .observations
                .iter()
                .filter(|o| o.at >= f.done + KILL_GRACE && o.at < back)
                .flat_map(|o| {
                    o.processes
                        .iter()
                        .filter(|p| &p.node == node)
                        .map(move |p| (o.at, p))
                })
                .map(|(at, p)| {
                    format!(
                        "pid {} ({}.{}) seen {:.2}s after",
                        p.pid,
                        p.service,
                        p.slot,
                        (at - f.done) as f64 / 1000.0
                    )
                })
                .collect();
            if let Some(first) = survivors.iter().next() {
                violations.push(format!(
                    "{node} was {} at {:.2}s but {} task process(es) lived on: {first}",
                    if f.action == "kill" {
                        "killed"
                    } else {
                        "stopped"
                    },
                    f.at as f64 / 1000.0,
                    survivors.len()
                ));
            }
        }
    }
    Verdict::new(
        "killed-node-tasks",
        violations,
        format!("{windows} node kills/stops, no task outlived its node"),
    )
}

/// Whether the hypothesis held before and after (every probe's last word
/// in that phase), and during for probes marked so.
pub fn hypothesis_held(j: &Journal) -> Verdict {
    let mut last: BTreeMap<(&str, &str), (bool, &str)> = BTreeMap::new();
    let mut violations = Vec::new();
    for p in j.probes.iter().filter(|p| p.counts) {
        if p.phase == "during" {
            if !p.ok {
                violations.push(format!(
                    "during, at {:.2}s: {} failed: {}",
                    p.at as f64 / 1000.0,
                    p.probe,
                    p.detail
                ));
            }
        } else {
            last.insert(
                (p.phase.as_str(), p.probe.as_str()),
                (p.ok, p.detail.as_str()),
            );
        }
    }
    for phase in ["before", "after"] {
        let seen = last.keys().any(|(ph, _)| *ph == phase);
        if !seen && !j.scenario.hypothesis.is_empty() {
            violations.push(format!(
                "the hypothesis was never checked {phase} the method"
            ));
        }
    }
    for ((phase, probe), (ok, detail)) in &last {
        if !ok {
            violations.push(format!("{phase}: {probe} failed: {detail}"));
        }
    }
    Verdict::new(
        "steady-state-hypothesis",
        violations,
        format!(
            "{} probes held before and after",
            j.scenario.hypothesis.len()
        ),
    )
}
