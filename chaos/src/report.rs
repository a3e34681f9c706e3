//! The human report: what was done, how the cluster took it, and each
//! checker's verdict.

use std::fmt::Write as _;

use crate::checkers::{self, first_steady, Verdict};
use crate::history::{Journal, Millis, Outcome};

fn secs(ms: Millis) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// Every verdict the run is judged on: the hypothesis, then the checkers.
pub fn verdicts(j: &Journal) -> Vec<Verdict> {
    let mut v = vec![checkers::hypothesis_held(j)];
    v.extend(checkers::all(j));
    v
}

/// Whether the run passed: every verdict ok and the harness itself did all it was asked.
pub fn passed(j: &Journal, verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.ok) && j.errors.is_empty()
}

/// The leader as most answering managers see it at `o`, with its term.
fn leading(j: &Journal, o: &crate::history::Observation) -> Option<(u64, String)> {
    let claim = o
        .managers
        .iter()
        .filter(|m| m.answered && m.is_leader)
        .max_by_key(|m| m.term)?;
    Some((claim.term, j.node_name(claim.raft_id)?.to_string()))
}

pub fn leader_at(j: &Journal, o: &crate::history::Observation) -> Option<String> {
    leading(j, o).map(|(_, name)| name)
}

/// For a fault that hit the leader: how long until a leader was elected
/// in a later term (another node, or the same one back), and which.
pub fn failover(j: &Journal, idx: usize) -> Option<(Millis, String)> {
    let f = &j.faults[idx];
    let before = j.observations.iter().rev().find(|o| o.at <= f.at)?;
    let (old_term, old) = leading(j, before)?;
    if f.undoes.is_some()
        || matches!(f.action.as_str(), "heal" | "start" | "resume")
        || !f.nodes.contains(&old)
    {
        return None;
    }
    // Only an election while the fault lasts (or, for one that does not,
    // before the next fault) is its doing.
    let next = j.faults.iter().map(|g| g.at).filter(|&at| at > f.at).min();
    let until = j
        .faults
        .iter()
        .find(|g| g.undoes == Some(idx))
        .map_or_else(|| next.unwrap_or(u64::MAX).min(f.done + 15_000), |g| g.done);
    j.observations
        .iter()
        .filter(|o| o.at >= f.at && o.at <= until)
        .find_map(|o| {
            let (term, name) = leading(j, o)?;
            (term > old_term).then(|| (o.at - f.at, name))
        })
}

/// For a disk fault (`fill`, `slow-disk`) on a manager: how long until a
/// write through it was first not acknowledged, with its answer, and how
/// long after the fault was undone until one was acknowledged again.
pub fn disk_figures(j: &Journal, idx: usize) -> Option<String> {
    let f = &j.faults[idx];
    if !matches!(f.action.as_str(), "fill" | "slow-disk") {
        return None;
    }
    let node = f.nodes.first()?;
    let undone = j
        .faults
        .iter()
        .find(|g| g.undoes == Some(idx))
        .map(|g| g.done);
    let through: Vec<&crate::history::Op> = j
        .ops
        .iter()
        .filter(|o| &o.via == node && o.sent >= f.done)
        .collect();
    let mut out = Vec::new();
    if let Some(o) = through
        .iter()
        .filter(|o| undone.is_none_or(|u| o.sent < u))
        .find(|o| o.outcome != Outcome::Ok)
    {
        let error: String = o.error.chars().take(110).collect();
        out.push(format!(
            "first write through it not acknowledged {} after (answered in {} ms: {error})",
            secs(o.sent - f.done),
            o.done.saturating_sub(o.sent)
        ));
    } else if through.iter().any(|o| undone.is_none_or(|u| o.sent < u)) {
        out.push("every write through it acknowledged meanwhile".into());
    }
    if let Some(u) = undone {
        if let Some(o) = through
            .iter()
            .filter(|o| o.sent >= u)
            .find(|o| o.outcome == Outcome::Ok)
        {
            out.push(format!(
                "writes through it acknowledged again {} after its undo",
                secs(o.done.saturating_sub(u))
            ));
        }
    }
    let mut lat: Vec<u64> = j
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && o.sent >= f.done)
        .filter(|o| undone.is_none_or(|u| o.sent < u))
        .map(|o| o.done.saturating_sub(o.sent))
        .collect();
    lat.sort_unstable();
    if let (Some(p50), Some(p99)) = (
        checkers::percentile(&lat, 0.5),
        checkers::percentile(&lat, 0.99),
    ) {
        out.push(format!(
            "{} writes acknowledged meanwhile (through any manager), latency p50 {p50} ms, p99 {p99} ms",
            lat.len()
        ));
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// When the steady state held again after a fault: from its undo if it
/// has one, else from when it was done.
pub fn recovery(j: &Journal, idx: usize) -> Option<(Millis, Millis)> {
    let f = &j.faults[idx];
    let from = j
        .faults
        .iter()
        .find(|g| g.undoes == Some(idx))
        .map_or(f.done, |g| g.done);
    first_steady(&j.observations, from).map(|t| (from, t.saturating_sub(from)))
}

pub fn render(j: &Journal, verdicts: &[Verdict]) -> String {
    let mut s = String::new();
    let sc = &j.scenario;
    let _ = writeln!(
        s,
        "shoal-chaos report: scenario {} (seed {}), started {}",
        sc.name, j.seed, j.started_at
    );
    if !sc.description.is_empty() {
        for line in sc.description.trim().lines() {
            let _ = writeln!(s, "  {}", line.trim());
        }
    }
    let _ = writeln!(s, "replay: shoal-chaos run {} --seed {}", sc.name, j.seed);
    let _ = writeln!(s, "\nCluster");
    for n in &j.nodes {
        let _ = writeln!(
            s,
            "  {:<10} {:<7} {:<20} raft {:<20} node {}",
            n.name,
            if n.manager { "manager" } else { "worker" },
            n.addr,
            n.raft_id,
            n.node_id
        );
    }

    let _ = writeln!(s, "\nSteady-state hypothesis");
    for phase in ["before", "during", "after"] {
        let results: Vec<_> = j.probes.iter().filter(|p| p.phase == phase).collect();
        if phase == "during" {
            for p in &sc.hypothesis {
                let name = crate::probe::describe(&p.probe);
                let mine: Vec<_> = results.iter().filter(|r| r.probe == name).collect();
                if mine.is_empty() {
                    continue;
                }
                let held = mine.iter().filter(|r| r.ok).count();
                let _ = writeln!(
                    s,
                    "  during  {held}/{} checks held  {name}{}",
                    mine.len(),
                    if p.during {
                        "  (required)"
                    } else {
                        "  (informational)"
                    }
                );
            }
        } else {
            for r in results {
                let _ = writeln!(
                    s,
                    "  {:<7} {}  {}: {}",
                    phase,
                    if r.ok { "held  " } else { "FAILED" },
                    r.probe,
                    r.detail
                );
            }
        }
    }

    let _ = writeln!(
        s,
        "\nFault timeline (method from {} to {})",
        secs(j.method_start),
        secs(j.method_end)
    );
    // Faults and the method's own writes, in time order.
    let mut timeline: Vec<(Millis, String)> = j
        .ops
        .iter()
        .filter(|o| o.client == "method")
        .map(|o| {
            (
                o.sent,
                format!(
                    "  {:>8}  {:<10} {:<24} {:?} via {} in {} ms {}",
                    secs(o.sent),
                    o.kind,
                    o.service,
                    o.outcome,
                    o.via,
                    o.done.saturating_sub(o.sent),
                    o.error
                ),
            )
        })
        .collect();
    for (i, f) in j.faults.iter().enumerate() {
        let mut extra = String::new();
        if let Some(ms) = f.healed_in_ms {
            let _ = write!(extra, "; actor replaced in {ms:.2} ms");
        }
        if let Some((took, who)) = failover(j, i) {
            let _ = write!(extra, "; {who} leads after {}", secs(took));
        }
        if let Some(d) = disk_figures(j, i) {
            let _ = write!(extra, "; {d}");
        }
        if f.undoes.is_none() {
            match recovery(j, i) {
                Some((from, took)) => {
                    let _ = write!(
                        extra,
                        "; steady again {} after {}",
                        secs(took),
                        if from == f.done { "it" } else { "its undo" }
                    );
                }
                None => extra.push_str("; steady state not seen again"),
            }
        }
        let who = if f.nodes.len() <= 2 {
            f.nodes.join(",")
        } else {
            format!("{} nodes", f.nodes.len())
        };
        timeline.push((
            f.at,
            format!(
                "  {:>8}  {:<10} {:<24} line {:<3} {}{}{}",
                secs(f.at),
                f.action,
                who,
                f.line,
                if f.ok { "" } else { "FAILED: " },
                f.detail,
                extra
            ),
        ));
    }
    timeline.sort_by_key(|(at, _)| *at);
    for (_, line) in timeline {
        let _ = writeln!(s, "{}", line.trim_end());
    }

    let count = |o: Outcome| j.ops.iter().filter(|op| op.outcome == o).count();
    let _ = writeln!(
        s,
        "\nWrites: {} issued, {} acknowledged, {} refused, {} unknown outcome",
        j.ops.len(),
        count(Outcome::Ok),
        count(Outcome::Refused),
        count(Outcome::Unknown)
    );
    let mut lat: Vec<Millis> = j
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .map(|o| o.done.saturating_sub(o.sent))
        .collect();
    lat.sort_unstable();
    if !lat.is_empty() {
        let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
        let _ = writeln!(
            s,
            "  acknowledged latency p50 {} ms, p99 {} ms, max {} ms",
            q(0.5),
            q(0.99),
            lat[lat.len() - 1]
        );
    }
    if !j.requests.is_empty() {
        let (during, after, excluded) = checkers::traffic_figures(j);
        let ms = |m: Option<u64>| m.map_or("-".into(), |m| format!("{:.1} ms", m as f64 / 1000.0));
        let _ = writeln!(
            s,
            "Traffic: {} requests ({excluded} failures through a node while it was down, not counted; {} sends skipped by the client)",
            j.requests.len(),
            j.requests_skipped
        );
        for (phase, f) in [("faults", during), ("steady again", after)] {
            let _ = writeln!(
                s,
                "  {phase:<13} {:>6} sent, {:>3} failed, {:>3} answered only on a retry (UDP), latency p50 {}, p99 {}, max {}",
                f.sent,
                f.failed,
                f.retried,
                ms(f.p50),
                ms(f.p99),
                ms(f.max)
            );
        }
    }
    if !j.register.is_empty() {
        use crate::history::RegKind;
        let n = |k: RegKind| j.register.iter().filter(|o| o.kind == k).count();
        let _ = writeln!(
            s,
            "Register: {} writes, {} local reads, {} barrier reads ({} with an unknown outcome)",
            n(RegKind::Write),
            n(RegKind::LocalRead),
            n(RegKind::BarrierRead),
            j.register
                .iter()
                .filter(|o| o.outcome == Outcome::Unknown)
                .count()
        );
    }
    let _ = writeln!(
        s,
        "Observations: {} (every {:?})",
        j.observations.len(),
        sc.observe_every
    );

    let _ = writeln!(s, "\nVerdicts");
    for v in verdicts {
        let _ = writeln!(
            s,
            "  {}  {:<24} {}",
            if v.ok { "PASS" } else { "FAIL" },
            v.checker,
            v.summary
        );
        for line in v.violations.iter().take(10) {
            let _ = writeln!(s, "        - {line}");
        }
        if v.violations.len() > 10 {
            let _ = writeln!(s, "        ... and {} more", v.violations.len() - 10);
        }
    }
    if !j.errors.is_empty() {
        let _ = writeln!(s, "\nHarness errors");
        for e in &j.errors {
            let _ = writeln!(s, "  - {e}");
        }
    }
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.ok)
        .map(|v| v.checker.as_str())
        .collect();
    if passed(j, verdicts) {
        let _ = writeln!(s, "\nRESULT: PASS");
    } else {
        let _ = writeln!(
            s,
            "\nRESULT: FAIL ({}{})",
            if failed.is_empty() {
                "no checker failed".to_string()
            } else {
                format!("failed: {}", failed.join(", "))
            },
            if j.errors.is_empty() {
                String::new()
            } else {
                format!("; {} harness error(s)", j.errors.len())
            }
        );
    }
    s
}
