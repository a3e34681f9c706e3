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
    let mut v = vec![
        acknowledged_writes(j),
        one_leader_per_term(j),
        replicas_recover(j),
        no_duplicate_slots(j),
        killed_node_tasks(j),
    ];
    v.extend(traffic(j));
    v.extend(clock_flags(j));
    v.extend(format_rises_last(j));
    v.extend(linearizable(j));
    v.extend(local_reads(j));
    v
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

/// Per node, the intervals in which a fault had it down or frozen (a kill,
/// stop or pause until its undo or the next start, resume or restart; a
/// restart while it lasts). Requests through a node then say nothing about
/// the mesh: the harness takes the node out of the traffic before the
/// signal, but requests in flight through it fail.
pub fn down_windows(j: &Journal) -> BTreeMap<String, Vec<(Millis, Millis)>> {
    let mut out: BTreeMap<String, Vec<(Millis, Millis)>> = BTreeMap::new();
    for (i, f) in j.faults.iter().enumerate() {
        if !f.ok || f.undoes.is_some() {
            continue;
        }
        for node in &f.nodes {
            let end = match f.action.as_str() {
                "restart" => f.done,
                "kill" | "stop" | "pause" => j
                    .faults
                    .iter()
                    .filter(|g| g.at >= f.at && g.nodes.contains(node))
                    .filter(|g| {
                        g.undoes == Some(i)
                            || matches!(g.action.as_str(), "start" | "resume" | "restart")
                    })
                    .map(|g| g.done)
                    .min()
                    .unwrap_or(j.end),
                _ => continue,
            };
            out.entry(node.clone()).or_default().push((f.at, end));
        }
    }
    out
}

/// The p-th percentile (0..=1) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Figures for a set of requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficFigures {
    pub sent: usize,
    pub failed: usize,
    /// Latencies of the answered requests, microseconds: p50, p99, max.
    /// Answered UDP requests that took more than one datagram.
    pub retried: usize,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

fn figures<'a>(rs: impl Iterator<Item = &'a crate::history::Request>) -> TrafficFigures {
    let mut f = TrafficFigures::default();
    let mut lat = Vec::new();
    for r in rs {
        f.sent += 1;
        if r.tries > 1 {
            f.retried += 1;
        }
        if r.ok {
            lat.push(r.micros);
        } else {
            f.failed += 1;
        }
    }
    lat.sort_unstable();
    f.p50 = percentile(&lat, 0.5);
    f.p99 = percentile(&lat, 0.99);
    f.max = lat.last().copied();
    f
}

/// The traffic split by phase: (during the faults and until the cluster
/// was steady again after the last was undone, after that), and how many
/// failed requests went through a node that was down (not counted).
pub fn traffic_figures(j: &Journal) -> (TrafficFigures, TrafficFigures, usize) {
    let windows = down_windows(j);
    let since = healing_starts(j);
    let healed = first_steady(&j.observations, since).unwrap_or(since);
    let excused = |r: &crate::history::Request| {
        let end = r.at + r.micros.div_ceil(1000);
        windows
            .get(&r.node)
            .is_some_and(|ws| ws.iter().any(|&(a, b)| r.at <= b && end >= a))
    };
    // A request through a node that was down is counted if it was answered.
    let counted: Vec<&crate::history::Request> =
        j.requests.iter().filter(|r| r.ok || !excused(r)).collect();
    let excluded = j.requests.len() - counted.len();
    (
        figures(counted.iter().copied().filter(|r| r.at <= healed)),
        figures(counted.iter().copied().filter(|r| r.at > healed)),
        excluded,
    )
}

fn ms(micros: Option<u64>) -> String {
    micros.map_or("-".into(), |m| format!("{:.1} ms", m as f64 / 1000.0))
}

/// The traffic load (`[traffic]`): at most `max_failed` requests failed,
/// counting every request except those through a node a fault had down,
/// and the 99th latency percentile within its bounds during the faults and
/// after. None when the scenario sends no traffic.
pub fn traffic(j: &Journal) -> Option<Verdict> {
    let t = j.scenario.traffic.as_ref()?;
    let (during, after, excluded) = traffic_figures(j);
    let mut violations = Vec::new();
    if j.requests.is_empty() {
        violations.push("no request was sent".into());
    }
    let failed = during.failed + after.failed;
    if failed as u64 > t.max_failed {
        let windows = down_windows(j);
        let first: Vec<String> = j
            .requests
            .iter()
            .filter(|r| !r.ok)
            .filter(|r| {
                let end = r.at + r.micros.div_ceil(1000);
                !windows
                    .get(&r.node)
                    .is_some_and(|ws| ws.iter().any(|&(a, b)| r.at <= b && end >= a))
            })
            .take(5)
            .map(|r| {
                format!(
                    "{} via {} at {:.2}s: {}",
                    r.proto,
                    r.node,
                    r.at as f64 / 1000.0,
                    r.error
                )
            })
            .collect();
        violations.push(format!(
            "{failed} requests failed (at most {} allowed); first: {}",
            t.max_failed,
            first.join("; ")
        ));
    }
    for (phase, f, bound) in [
        ("during the faults", &during, t.p99_during),
        ("once steady again", &after, t.p99_after),
    ] {
        if let (Some(b), Some(p99)) = (bound, f.p99) {
            if p99 as u128 > b.as_micros() {
                violations.push(format!(
                    "latency p99 {phase} was {}, over the {b:?} bound",
                    ms(Some(p99))
                ));
            }
        }
    }
    Some(Verdict::new(
        "traffic",
        violations,
        format!(
            "{} requests, {failed} failed ({excluded} failures through a node that was down not counted, {} UDP answered only on a retry); during faults p50 {} p99 {} max {}; steady again p50 {} p99 {} max {}",
            during.sent + after.sent,
            during.retried + after.retried,
            ms(during.p50),
            ms(during.p99),
            ms(during.max),
            ms(after.p50),
            ms(after.p99),
            ms(after.max)
        ),
    ))
}

/// When each node was started again (a `start`, or an undo of a kill or stop).
fn starts(j: &Journal) -> BTreeMap<String, Vec<Millis>> {
    let mut out: BTreeMap<String, Vec<Millis>> = BTreeMap::new();
    for f in j
        .faults
        .iter()
        .filter(|f| matches!(f.action.as_str(), "start" | "restart"))
    {
        for n in &f.nodes {
            out.entry(n.clone()).or_default().push(f.at);
        }
    }
    out
}

/// The register's history as the linearizability checker takes it: the
/// harness's setup create and every write (unknown outcomes open-ended,
/// refused ones left out), and the barrier reads that were answered.
pub fn register_history(j: &Journal) -> Vec<crate::linearizable::Entry> {
    use crate::history::RegKind;
    use crate::linearizable::{Entry, RegisterOp};
    let setup = j
        .ops
        .iter()
        .filter(|o| o.service == crate::register::SERVICE && o.client == "setup")
        .filter(|o| o.outcome != Outcome::Refused)
        .filter_map(|o| match o.value {
            ServiceValue::Present { generation, .. } => Some(Entry {
                op: RegisterOp::Write(generation),
                invoke: o.sent,
                complete: (o.outcome == Outcome::Ok).then_some(o.done),
            }),
            ServiceValue::Absent => None,
        });
    let ops = j.register.iter().filter_map(|o| match (o.kind, o.outcome) {
        (_, Outcome::Refused) | (RegKind::LocalRead, _) => None,
        (RegKind::BarrierRead, Outcome::Unknown) => None,
        (RegKind::BarrierRead, Outcome::Ok) => Some(Entry {
            op: RegisterOp::Read(o.value),
            invoke: o.invoke,
            complete: Some(o.complete),
        }),
        (RegKind::Write, outcome) => Some(Entry {
            op: RegisterOp::Write(o.value?),
            invoke: o.invoke,
            complete: (outcome == Outcome::Ok).then_some(o.complete),
        }),
    });
    setup.chain(ops).collect()
}

fn describe_entry(e: &crate::linearizable::Entry) -> String {
    use crate::linearizable::RegisterOp;
    let what = match e.op {
        RegisterOp::Write(v) => format!("write {v}"),
        RegisterOp::Read(v) => format!("read -> {}", v.map_or("none".into(), |v| v.to_string())),
    };
    format!(
        "{what} [{:.2}s, {}]",
        e.invoke as f64 / 1000.0,
        e.complete
            .map_or("unknown".into(), |c| format!("{:.2}s", c as f64 / 1000.0))
    )
}

/// The register's writes and barrier reads are linearizable. None when
/// the scenario has no register clients.
pub fn linearizable(j: &Journal) -> Option<Verdict> {
    use crate::linearizable::{check, Verdict as V};
    j.scenario.register.as_ref()?;
    let h = register_history(j);
    let reads = h
        .iter()
        .filter(|e| matches!(e.op, crate::linearizable::RegisterOp::Read(_)))
        .count();
    let unknown: Vec<usize> = (0..h.len()).filter(|&i| h[i].complete.is_none()).collect();
    Some(match check(&h, None) {
        V::Linearizable { order } => {
            let left_out: Vec<String> = unknown
                .iter()
                .filter(|i| !order.contains(i))
                .map(|&i| describe_entry(&h[i]))
                .collect();
            Verdict::new(
                "linearizable",
                Vec::new(),
                format!(
                    "{} writes and {reads} barrier reads linearizable; {} writes of unknown outcome, {} of them not ordered (nothing observed them: {})",
                    h.len() - reads,
                    unknown.len(),
                    left_out.len(),
                    if left_out.is_empty() { "-".into() } else { left_out.join(", ") }
                ),
            )
        }
        V::NotLinearizable {
            placed,
            value,
            stuck,
        } => {
            let mut v = vec![format!(
                "not linearizable: {} of {} operations ordered, the register then held {}; none of these could come next:",
                placed.len(),
                h.len(),
                value.map_or("no value".into(), |v| v.to_string())
            )];
            v.extend(
                stuck
                    .iter()
                    .map(|&i| format!("could not order {}", describe_entry(&h[i]))),
            );
            Verdict::new("linearizable", v, String::new())
        }
        V::Undecided { visited } => Verdict::new(
            "linearizable",
            vec![format!(
                "undecided: the search gave up after {visited} configurations over {} operations",
                h.len()
            )],
            String::new(),
        ),
    })
}

/// The register's local reads by their own, weaker model
/// ([`crate::linearizable::local_reads`]). None without register clients.
pub fn local_reads(j: &Journal) -> Option<Verdict> {
    use crate::history::RegKind;
    use crate::linearizable::{Read, Write};
    j.scenario.register.as_ref()?;
    let writes: Vec<Write> = j
        .register
        .iter()
        .filter(|o| o.kind == RegKind::Write && o.outcome != Outcome::Refused)
        .filter_map(|o| {
            Some(Write {
                value: o.value?,
                via: o.via.clone(),
                invoke: o.invoke,
                complete: (o.outcome == Outcome::Ok).then_some(o.complete),
            })
        })
        .chain(
            j.ops
                .iter()
                .filter(|o| o.service == crate::register::SERVICE && o.client == "setup")
                .filter_map(|o| match o.value {
                    ServiceValue::Present { generation, .. } if o.outcome != Outcome::Refused => {
                        Some(Write {
                            value: generation,
                            via: o.via.clone(),
                            invoke: o.sent,
                            complete: (o.outcome == Outcome::Ok).then_some(o.done),
                        })
                    }
                    _ => None,
                }),
        )
        .collect();
    let reads: Vec<Read> = j
        .register
        .iter()
        .filter(|o| o.kind != RegKind::Write && o.outcome == Outcome::Ok)
        .map(|o| Read {
            value: o.value,
            via: o.via.clone(),
            invoke: o.invoke,
            complete: o.complete,
        })
        .collect();
    let violations = crate::linearizable::local_reads(&writes, &reads, &starts(j));
    Some(Verdict::new(
        "local-reads",
        violations,
        format!(
            "{} reads: no invented value, read-your-writes and monotonic reads per manager",
            reads.len()
        ),
    ))
}

/// A rolling upgrade (`upgrade` faults) moves the cluster version only at
/// its end: every observation before the last node's upgrade was done sees
/// the version the swarm started with, and one after it sees a higher one
/// (what gated features wait for: docs/upgrades.md). `None` when the
/// scenario upgrades nothing.
pub fn format_rises_last(j: &Journal) -> Option<Verdict> {
    let upgrades: Vec<&crate::history::Fault> = j
        .faults
        .iter()
        .filter(|f| f.action == "upgrade" && f.ok)
        .collect();
    let last = upgrades.iter().map(|f| f.done).max()?;
    let mut violations = Vec::new();
    let seen: Vec<(Millis, u64)> = j
        .observations
        .iter()
        .filter_map(|o| o.format.map(|f| (o.at, f)))
        .collect();
    let Some(&(_, start)) = seen.first() else {
        return Some(Verdict::new(
            "format-rises-last",
            vec!["no manager ever gave the cluster version (GET /swarm Format)".into()],
            String::new(),
        ));
    };
    for &(at, f) in seen.iter().filter(|(at, _)| *at < last) {
        if f != start {
            violations.push(format!(
                "the cluster version was {f} at {:.2}s, before the last upgrade ({:.2}s): it started at {start}",
                at as f64 / 1000.0,
                last as f64 / 1000.0
            ));
        }
    }
    let risen = seen.iter().find(|(at, f)| *at >= last && *f > start);
    let summary = match risen {
        Some((at, f)) => format!(
            "format {start} through {} upgrades; {f} {:.2}s after the last",
            upgrades.len(),
            (at - last) as f64 / 1000.0
        ),
        None => {
            violations.push(format!(
                "the cluster version stayed {start} after the last upgrade at {:.2}s",
                last as f64 / 1000.0
            ));
            String::new()
        }
    };
    violations.truncate(20);
    Some(Verdict::new("format-rises-last", violations, summary))
}

/// A node whose clock a `clock` fault moved is flagged while it is moved,
/// and only then: the flag shows up before the fault is undone and goes
/// after, and no node whose clock was not moved is ever flagged. `None`
/// when the scenario moves no clock.
pub fn clock_flags(j: &Journal) -> Option<Verdict> {
    let moves: Vec<(usize, &crate::history::Fault)> = j
        .faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.action == "clock" && f.ok)
        .collect();
    if moves.is_empty() {
        return None;
    }
    let mut violations = Vec::new();
    let mut figures = Vec::new();
    // When each node's clock was off: from the move to its undo, plus the
    // time the flag may take to go (a few heartbeats).
    let mut windows: Vec<(&str, Millis, Millis)> = Vec::new();
    for (i, f) in &moves {
        let Some(node) = f.nodes.first() else {
            continue;
        };
        let undo = j.faults.iter().find(|u| u.undoes == Some(*i));
        let end = undo.map_or(Millis::MAX, |u| u.done);
        windows.push((node, f.at, end.saturating_add(CLOCK_FLAG_GRACE)));
        let flagged = j
            .observations
            .iter()
            .find(|o| o.at >= f.done && o.at <= end && o.clock_flags.contains_key(node));
        let Some(seen) = flagged else {
            violations.push(format!(
                "{node}'s clock moved at {:.2}s ({}) but it was never flagged before the undo",
                f.at as f64 / 1000.0,
                f.detail
            ));
            continue;
        };
        let mut figure = format!(
            "{node} flagged {} {:.2}s after its clock moved",
            seen.clock_flags[node.as_str()],
            (seen.at - f.done) as f64 / 1000.0
        );
        if let Some(u) = undo {
            match j
                .observations
                .iter()
                .find(|o| o.at >= u.done && o.state_read && !o.clock_flags.contains_key(node))
            {
                Some(clear) => figure.push_str(&format!(
                    ", cleared {:.2}s after it was put back",
                    (clear.at - u.done) as f64 / 1000.0
                )),
                None => violations.push(format!(
                    "{node}'s clock was put back at {:.2}s but it stayed flagged",
                    u.done as f64 / 1000.0
                )),
            }
        }
        figures.push(figure);
    }
    for o in &j.observations {
        for (node, skew) in &o.clock_flags {
            let moved = windows
                .iter()
                .any(|(n, from, to)| n == node && o.at >= *from && o.at <= *to);
            if !moved {
                violations.push(format!(
                    "{node} flagged {skew} at {:.2}s although its clock was not moved",
                    o.at as f64 / 1000.0
                ));
            }
        }
    }
    violations.dedup();
    violations.truncate(20);
    Some(Verdict::new("clock-flags", violations, figures.join("; ")))
}

/// How long after a clock is put back its flag may take to go: the leader
/// judges a node's clock over its last three heartbeats and looks once a
/// heartbeat, and the state must carry the change.
const CLOCK_FLAG_GRACE: Millis = 10_000;
