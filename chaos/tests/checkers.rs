//! Each checker, fed a hand-made history that breaks it, reports the
//! violation; fed a healthy one, it passes. So none can be a no-op.

use std::collections::BTreeMap;

use shoal_chaos::checkers::Verdict;
use shoal_chaos::history::*;
use shoal_chaos::{report, scenario};

const SCENARIO: &str = r#"
name = "unit"
description = "hand-made histories"
settle = "10s"
[cluster]
managers = 3
workers = 1
[[hypothesis]]
probe = "one-leader"
[[method]]
at = "1s"
action = "kill"
target = "worker-1"
duration = "2s"
"#;

fn managers(leader: u64, term: u64) -> Vec<ManagerView> {
    (1..=3)
        .map(|id| ManagerView {
            node: format!("manager-{id}"),
            answered: true,
            raft_id: id,
            term,
            leader_id: leader,
            is_leader: id == leader,
        })
        .collect()
}

fn obs(at: Millis, leader: u64, term: u64, web_running: u64) -> Observation {
    let mut services = BTreeMap::new();
    services.insert(
        "web".to_string(),
        ServiceView {
            desired: 2,
            running: web_running,
            processes: None,
        },
    );
    let running = (1..=web_running)
        .map(|slot| ("web".to_string(), slot, "manager-2".to_string()))
        .collect();
    let processes = (1..=web_running)
        .map(|slot| TaskProcess {
            pid: 1000 + slot as i32,
            service: "web".into(),
            slot,
            task_id: format!("t{slot}"),
            node: "manager-2".into(),
        })
        .collect();
    Observation {
        at,
        managers: managers(leader, term),
        state_read: true,
        services,
        running,
        processes,
        clock_flags: BTreeMap::new(),
        format: None,
    }
}

fn op(sent: Millis, kind: &str, replicas: u64, outcome: Outcome) -> Op {
    Op {
        client: "load".into(),
        kind: kind.into(),
        service: "web".into(),
        value: ServiceValue::Present {
            replicas,
            generation: 0,
        },
        via: "manager-1".into(),
        sent,
        done: sent + 5,
        outcome,
        status: None,
        error: String::new(),
    }
}

fn fault(at: Millis, action: &str, node: &str, undoes: Option<usize>) -> Fault {
    Fault {
        at,
        done: at + 10,
        action: action.into(),
        nodes: vec![node.into()],
        detail: String::new(),
        line: 10,
        ok: true,
        undoes,
        healed_in_ms: None,
    }
}

/// A run where everything went right: worker-1 killed at 1 s and started
/// at 3 s, web scaled 1 -> 2, steady again at 3.5 s, leader 1 in term 2.
fn healthy() -> Journal {
    let nodes = (1..=4)
        .map(|i| NodeInfo {
            name: if i < 4 {
                format!("manager-{i}")
            } else {
                "worker-1".into()
            },
            manager: i < 4,
            node_id: format!("n{i}"),
            raft_id: if i < 4 { i } else { 0 },
            addr: format!("127.0.0.{i}:1"),
        })
        .collect();
    let mut observations = Vec::new();
    for t in (0..=8000).step_by(250) {
        let running = if (1000..3500).contains(&t) { 1 } else { 2 };
        observations.push(obs(t, 1, 2, running));
    }
    let mut services = BTreeMap::new();
    services.insert(
        "web".to_string(),
        ServiceValue::Present {
            replicas: 2,
            generation: 0,
        },
    );
    Journal {
        scenario: scenario::parse(SCENARIO).expect("scenario"),
        seed: 1,
        started_at: "2026-11-25T00:00:00Z".into(),
        nodes,
        method_start: 500,
        method_end: 3100,
        faults: vec![
            fault(1000, "kill", "worker-1", None),
            fault(3000, "start", "worker-1", Some(0)),
        ],
        ops: vec![
            op(100, "create", 1, Outcome::Ok),
            op(2000, "scale", 2, Outcome::Ok),
        ],
        probes: vec![
            ProbeResult {
                phase: "before".into(),
                at: 400,
                probe: "one leader".into(),
                ok: true,
                detail: String::new(),
                counts: true,
            },
            ProbeResult {
                phase: "after".into(),
                at: 4000,
                probe: "one leader".into(),
                ok: true,
                detail: String::new(),
                counts: true,
            },
        ],
        observations,
        final_state: Some(FinalState {
            at: 7900,
            via: "manager-1".into(),
            services,
        }),
        end: 8000,
        requests: Vec::new(),
        requests_skipped: 0,
        register: Vec::new(),
        errors: Vec::new(),
    }
}

fn verdict(j: &Journal, name: &str) -> Verdict {
    report::verdicts(j)
        .into_iter()
        .find(|v| v.checker == name)
        .unwrap_or_else(|| panic!("no checker {name}"))
}

/// `name` fails on `j` with a violation mentioning `mentions`, and every other checker passes.
fn only_fails(j: &Journal, name: &str, mentions: &str) {
    let v = verdict(j, name);
    assert!(
        !v.ok,
        "{name} passed a history that breaks it: {}",
        v.summary
    );
    assert!(
        v.violations.iter().any(|l| l.contains(mentions)),
        "{name}: {:?} should mention {mentions:?}",
        v.violations
    );
    for other in report::verdicts(j) {
        if other.checker != name {
            assert!(other.ok, "{} failed too: {}", other.checker, other.summary);
        }
    }
}

#[test]
fn a_healthy_history_passes_every_checker() {
    let j = healthy();
    for v in report::verdicts(&j) {
        assert!(v.ok, "{}: {:?}", v.checker, v.violations);
    }
}

#[test]
fn a_lost_acknowledged_write_is_caught() {
    let mut j = healthy();
    // The cluster says 1 replica, but scaling to 2 was acknowledged.
    j.final_state.as_mut().expect("final").services.insert(
        "web".into(),
        ServiceValue::Present {
            replicas: 1,
            generation: 0,
        },
    );
    for o in &mut j.observations {
        o.services.get_mut("web").expect("web").desired = 1;
        o.services.get_mut("web").expect("web").running = 1;
        o.running.truncate(1);
        o.processes.truncate(1);
    }
    only_fails(
        &j,
        "acknowledged-writes",
        "the last acknowledged write was scale to replicas=2",
    );
}

#[test]
fn an_unknown_write_may_land_either_way_but_a_refused_one_may_not() {
    let mut j = healthy();
    j.ops.push(op(2500, "scale", 7, Outcome::Unknown));
    j.final_state.as_mut().expect("final").services.insert(
        "web".into(),
        ServiceValue::Present {
            replicas: 7,
            generation: 0,
        },
    );
    assert!(
        verdict(&j, "acknowledged-writes").ok,
        "an unknown write may have happened"
    );
    j.ops.last_mut().expect("op").outcome = Outcome::Refused;
    assert!(
        !verdict(&j, "acknowledged-writes").ok,
        "a refused write must not have happened"
    );
}

#[test]
fn a_created_service_that_vanished_is_caught() {
    let mut j = healthy();
    j.final_state.as_mut().expect("final").services.clear();
    assert!(!verdict(&j, "acknowledged-writes").ok);
    j.final_state = None;
    let v = verdict(&j, "acknowledged-writes");
    assert!(
        !v.ok && v.summary.contains("no final read"),
        "{}",
        v.summary
    );
}

#[test]
fn two_leaders_in_one_term_are_caught() {
    let mut j = healthy();
    // manager-3 claims term 2 as well, and manager-2 follows it.
    let o = &mut j.observations[10];
    o.managers[2].is_leader = true;
    o.managers[2].leader_id = 3;
    o.managers[1].leader_id = 3;
    o.managers[0].leader_id = 1;
    let v = verdict(&j, "one-leader-per-term");
    assert!(!v.ok);
    assert!(
        v.violations[0].contains("term 2 had 2 leaders"),
        "{:?}",
        v.violations
    );
    assert!(
        v.violations[0].contains("manager-1") && v.violations[0].contains("manager-3"),
        "{:?}",
        v.violations
    );
}

#[test]
fn replicas_that_never_come_back_are_caught() {
    let mut j = healthy();
    for o in j.observations.iter_mut().filter(|o| o.at >= 1000) {
        o.services.get_mut("web").expect("web").running = 1;
        o.running.truncate(1);
        o.processes.truncate(1);
    }
    only_fails(&j, "replicas-recover", "never back to spec");
}

#[test]
fn replicas_back_too_late_are_caught() {
    let mut j = healthy();
    j.scenario.settle = std::time::Duration::from_millis(200);
    let v = verdict(&j, "replicas-recover");
    assert!(
        !v.ok && v.violations[0].contains("over the 0s bound"),
        "{:?}",
        v.violations
    );
}

#[test]
fn an_observation_that_read_no_state_is_not_steady() {
    let mut j = healthy();
    // From 3.5 s on no manager answered for services: an empty list is no proof of health.
    for o in j.observations.iter_mut().filter(|o| o.at >= 3500) {
        o.state_read = false;
        o.services.clear();
        o.running.clear();
    }
    only_fails(&j, "replicas-recover", "never back to spec");
}

#[test]
fn processes_off_spec_keep_the_cluster_from_counting_as_healed() {
    let mut j = healthy();
    // The state says 2/2, but three processes of web really run to the end.
    for o in j.observations.iter_mut().filter(|o| o.at >= 3500) {
        o.services.get_mut("web").expect("web").processes = Some(3);
    }
    only_fails(&j, "replicas-recover", "(3 processes)");
}

#[test]
fn a_slot_running_twice_is_caught_in_processes_and_in_state() {
    let mut j = healthy();
    let last = j.observations.last_mut().expect("obs");
    last.processes.push(TaskProcess {
        pid: 4242,
        service: "web".into(),
        slot: 1,
        task_id: "old".into(),
        node: "worker-1".into(),
    });
    only_fails(&j, "no-duplicate-slot", "web.1 runs twice");

    let mut j = healthy();
    let last = j.observations.last_mut().expect("obs");
    last.running.push(("web".into(), 2, "worker-1".into()));
    only_fails(&j, "no-duplicate-slot", "(cluster state)");
}

#[test]
fn a_task_outliving_its_killed_node_is_caught() {
    let mut j = healthy();
    // worker-1 was killed at 1 s; one of its tasks is still there at 2.5 s.
    for o in j
        .observations
        .iter_mut()
        .filter(|o| (2500..3000).contains(&o.at))
    {
        o.processes.push(TaskProcess {
            pid: 777,
            service: "web".into(),
            slot: 2,
            task_id: "orphan".into(),
            node: "worker-1".into(),
        });
    }
    only_fails(&j, "killed-node-tasks", "worker-1 was killed");
}

#[test]
fn a_task_dying_within_the_grace_is_fine() {
    let mut j = healthy();
    let o = j
        .observations
        .iter_mut()
        .find(|o| o.at == 1250)
        .expect("obs");
    o.processes.push(TaskProcess {
        pid: 777,
        service: "web".into(),
        slot: 2,
        task_id: "dying".into(),
        node: "worker-1".into(),
    });
    assert!(verdict(&j, "killed-node-tasks").ok);
}

#[test]
fn a_failed_hypothesis_is_caught() {
    let mut j = healthy();
    j.probes[1].ok = false;
    j.probes[1].detail = "manager-3 did not answer".into();
    only_fails(&j, "steady-state-hypothesis", "after: one leader failed");
    let mut j = healthy();
    j.probes.retain(|p| p.phase != "after");
    only_fails(&j, "steady-state-hypothesis", "never checked after");
}

fn with_traffic(requests: Vec<Request>) -> Journal {
    let mut j = healthy();
    j.scenario.traffic = Some(scenario::Traffic {
        service: "web".into(),
        rate: 10.0,
        protocols: vec![scenario::Proto::Tcp, scenario::Proto::Udp],
        timeout: std::time::Duration::from_secs(5),
        max_failed: 0,
        p99_during: Some(std::time::Duration::from_millis(500)),
        p99_after: Some(std::time::Duration::from_millis(50)),
        via: scenario::Via::Published,
    });
    j.requests = requests;
    j
}

fn req(at: Millis, node: &str, ok: bool, micros: u64) -> Request {
    Request {
        at,
        node: node.into(),
        proto: if at.is_multiple_of(2) { "tcp" } else { "udp" }.into(),
        ok,
        micros,
        tries: u32::from(ok),
        error: if ok {
            String::new()
        } else {
            "no answer".into()
        },
    }
}

/// Requests every 100 ms through manager-1 and worker-1, all answered in 2 ms.
fn steady_traffic() -> Vec<Request> {
    (500..8000)
        .step_by(100)
        .flat_map(|t| {
            [
                req(t, "manager-1", true, 2000),
                req(t + 1, "worker-1", true, 2000),
            ]
        })
        .collect()
}

#[test]
fn traffic_that_all_got_answers_passes() {
    let j = with_traffic(steady_traffic());
    let v = verdict(&j, "traffic");
    assert!(v.ok, "{}", v.summary);
    assert!(
        v.summary.contains("150 requests, 0 failed (0 failures"),
        "{}",
        v.summary
    );
}

#[test]
fn a_failed_request_through_a_live_node_fails_traffic() {
    let mut rs = steady_traffic();
    rs.push(req(2000, "manager-1", false, 5_000_000));
    only_fails(&with_traffic(rs), "traffic", "1 requests failed");
}

#[test]
fn requests_through_a_node_while_it_was_killed_are_not_counted() {
    // worker-1 is killed at 1 s and started at 3 s: a request sent to it
    // just before the kill, still in flight, fails with it.
    let mut rs = steady_traffic();
    rs.push(req(990, "worker-1", false, 30_000));
    rs.push(req(2500, "worker-1", false, 1000));
    let j = with_traffic(rs);
    let v = verdict(&j, "traffic");
    assert!(v.ok, "{}", v.summary);
    assert!(
        v.summary
            .contains("2 failures through a node that was down"),
        "{}",
        v.summary
    );
}

#[test]
fn slow_answers_after_the_faults_fail_the_latency_bound() {
    let rs: Vec<Request> = steady_traffic()
        .into_iter()
        .map(|mut r| {
            if r.at > 5000 {
                r.micros = 80_000;
            }
            r
        })
        .collect();
    only_fails(
        &with_traffic(rs),
        "traffic",
        "once steady again was 80.0 ms",
    );
}

fn with_register(ops: Vec<RegOp>) -> Journal {
    let mut j = healthy();
    j.scenario.register = Some(scenario::Register {
        rate: 5.0,
        clients: 2,
    });
    j.register = ops;
    j
}

fn reg(kind: RegKind, value: u64, via: &str, invoke: Millis, complete: Millis) -> RegOp {
    RegOp {
        client: 0,
        kind,
        value: Some(value),
        via: via.into(),
        invoke,
        complete,
        outcome: Outcome::Ok,
        error: String::new(),
    }
}

#[test]
fn a_stale_barrier_read_fails_linearizable() {
    let ops = vec![
        reg(RegKind::Write, 1, "manager-1", 1000, 1100),
        reg(RegKind::Write, 2, "manager-2", 1200, 1300),
        reg(RegKind::BarrierRead, 1, "manager-3", 1400, 1500),
    ];
    only_fails(
        &with_register(ops),
        "linearizable",
        "could not order read -> 1",
    );
}

#[test]
fn a_stale_local_read_elsewhere_is_allowed_but_not_through_the_writer() {
    let mut ops = vec![
        reg(RegKind::Write, 1, "manager-1", 1000, 1100),
        reg(RegKind::Write, 2, "manager-2", 1200, 1300),
        // manager-3 has not applied 2 yet: a local read may say so.
        reg(RegKind::LocalRead, 1, "manager-3", 1400, 1500),
        reg(RegKind::BarrierRead, 2, "manager-3", 1600, 1700),
    ];
    let j = with_register(ops.clone());
    for name in ["linearizable", "local-reads"] {
        let v = verdict(&j, name);
        assert!(v.ok, "{name}: {:?}", v.violations);
    }
    // manager-2 acknowledged 2: a later read there returning 1 breaks read-your-writes.
    ops.push(reg(RegKind::LocalRead, 1, "manager-2", 1800, 1850));
    only_fails(
        &with_register(ops),
        "local-reads",
        "older than the write of 2",
    );
}

#[test]
fn local_reads_that_go_backwards_fail() {
    let ops = vec![
        reg(RegKind::Write, 1, "manager-1", 1000, 1100),
        reg(RegKind::Write, 2, "manager-1", 1200, 1300),
        reg(RegKind::LocalRead, 2, "manager-3", 1400, 1500),
        reg(RegKind::LocalRead, 1, "manager-3", 1600, 1700),
    ];
    only_fails(&with_register(ops), "local-reads", "reads went backwards");
}

/// manager-2's clock moved at 4 s and put back at 6 s; it is flagged from
/// `flag_from` until `flag_to` (observations every 250 ms).
fn with_clock_move(node_flagged: &str, flag_from: Millis, flag_to: Millis) -> Journal {
    let mut j = healthy();
    j.faults.push(fault(4000, "clock", "manager-2", None));
    j.faults
        .push(fault(6000, "clock-back", "manager-2", Some(2)));
    for o in &mut j.observations {
        if (flag_from..flag_to).contains(&o.at) {
            o.clock_flags
                .insert(node_flagged.to_string(), "+10m0s".to_string());
        }
    }
    j
}

#[test]
fn a_moved_clock_flagged_while_moved_passes() {
    let j = with_clock_move("manager-2", 4500, 7000);
    let v = verdict(&j, "clock-flags");
    assert!(v.ok, "{:?}", v.violations);
    assert!(
        v.summary.contains("manager-2 flagged +10m0s 0.49s after"),
        "{}",
        v.summary
    );
    assert!(v.summary.contains("cleared 0.99s after"), "{}", v.summary);
}

#[test]
fn a_moved_clock_never_flagged_is_caught() {
    let j = with_clock_move("manager-2", 0, 0);
    only_fails(&j, "clock-flags", "never flagged");
}

#[test]
fn a_flag_that_stays_is_caught() {
    let j = with_clock_move("manager-2", 4500, 9000);
    only_fails(&j, "clock-flags", "stayed flagged");
}

#[test]
fn the_wrong_node_flagged_is_caught() {
    let mut j = with_clock_move("manager-2", 4500, 7000);
    j.observations[2]
        .clock_flags
        .insert("manager-1".into(), "-10m0s".into());
    only_fails(&j, "clock-flags", "manager-1 flagged -10m0s");
}

/// Two nodes upgraded at 2 s and 4 s; every observation gives the cluster
/// version `before` until `rises_at`, `after` from then on.
fn with_upgrades(rises_at: Millis, before: u64, after: u64) -> Journal {
    let mut j = healthy();
    j.faults.push(fault(2000, "upgrade", "manager-3", None));
    j.faults.push(fault(4000, "upgrade", "worker-1", None));
    for o in &mut j.observations {
        o.format = Some(if o.at < rises_at { before } else { after });
    }
    j
}

#[test]
fn a_cluster_version_that_rises_after_the_last_upgrade_passes() {
    let j = with_upgrades(4500, 1, 2);
    let v = verdict(&j, "format-rises-last");
    assert!(v.ok, "{:?}", v.violations);
    assert!(
        v.summary.contains("format 1 through 2 upgrades; 2 "),
        "{}",
        v.summary
    );
}

#[test]
fn a_cluster_version_that_rises_before_the_last_upgrade_is_caught() {
    let j = with_upgrades(3000, 1, 2);
    only_fails(&j, "format-rises-last", "before the last upgrade");
}

#[test]
fn a_cluster_version_that_never_rises_is_caught() {
    let j = with_upgrades(u64::MAX, 1, 2);
    only_fails(&j, "format-rises-last", "stayed 1 after the last upgrade");
}
