//! Placement's control loops on the in-process harness (real leader
//! actors, fake agents, a paused clock): global mode node by node, its
//! rolling update, and the scheduler's dynamic filters.

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_actors::harness::{running_in, Harness};
use shoal_core::command::Command;
use shoal_core::model::{Availability, ServiceMode, TaskState};
use shoal_core::state::ClusterState;

const LIMIT: Duration = Duration::from_secs(60);

/// Hostnames running a task of `service` that is meant to run.
fn hosts(s: &ClusterState, service: &str) -> Vec<String> {
    let mut out: Vec<String> = s
        .tasks
        .values()
        .filter(|t| t.service_name == service)
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .filter_map(|t| t.node_id.as_ref().and_then(|n| s.nodes.get(n)))
        .map(|n| n.hostname.clone())
        .collect();
    out.sort();
    out
}

fn availability(h: &mut Harness, i: usize, availability: Availability) {
    let id = h.nodes[i].id.clone();
    h.propose(Command::UpdateNode {
        id,
        role: None,
        availability: Some(availability),
        labels_add: vec![],
        labels_rm: vec![],
        at: h.now(),
    })
    .expect("node update");
}

#[test]
fn global_mode_keeps_one_task_per_eligible_node() {
    let mut h = Harness::new(1, 2).expect("harness");
    let mut spec = Harness::spec("agent", 0, "img");
    spec.mode = ServiceMode::Global;
    h.create_service(spec.clone()).expect("create");
    let mut workers = Harness::spec("workers", 0, "img");
    workers.mode = ServiceMode::Global;
    workers.task_template.placement.constraints = vec!["node.role==worker".into()];
    h.create_service(workers).expect("create");
    h.drive_until("one agent per node", LIMIT, |s| {
        hosts(s, "agent") == ["manager-1", "worker-1", "worker-2"]
            && hosts(s, "workers") == ["worker-1", "worker-2"]
    })
    .expect("converges");
    availability(&mut h, 1, Availability::Drain);
    h.drive_until("worker-1's agent gone, not replaced", LIMIT, |s| {
        hosts(s, "agent") == ["manager-1", "worker-2"]
    })
    .expect("drained");
    // Nothing else happens while it stays drained.
    h.advance(Duration::from_secs(30));
    assert_eq!(h.state(|s| hosts(s, "agent")), ["manager-1", "worker-2"]);
    availability(&mut h, 1, Availability::Active);
    h.drive_until("back on worker-1", LIMIT, |s| {
        hosts(s, "agent") == ["manager-1", "worker-1", "worker-2"]
    })
    .expect("reactivated");
    // A task that fails on its node is restarted there (the node is its slot).
    let on_w2 = h.state(|s| {
        s.tasks
            .values()
            .find(|t| {
                t.service_name == "agent"
                    && t.desired_state == TaskState::Running
                    && t.node_id.as_deref() == Some(h.nodes[2].id.as_str())
            })
            .map(|t| t.id.clone())
    });
    assert!(h.fail(&on_w2.expect("a task on worker-2")));
    let w2 = h.nodes[2].id.clone();
    h.drive_until("restarted on worker-2", LIMIT, |s| {
        hosts(s, "agent") == ["manager-1", "worker-1", "worker-2"]
            && s.tasks
                .values()
                .filter(|t| t.service_name == "agent" && t.node_id.as_deref() == Some(w2.as_str()))
                .count()
                == 2
    })
    .expect("restarted");
}

#[test]
fn a_global_update_rolls_node_by_node() {
    let mut h = Harness::new(2, 3).expect("harness");
    let mut spec = Harness::spec("agent", 0, "v1");
    spec.mode = ServiceMode::Global;
    h.create_service(spec.clone()).expect("create");
    h.drive_until("4 agents", LIMIT, |s| running_in(s, "agent") == 4)
        .expect("converges");
    spec.task_template.image = "v2".into();
    h.propose(Command::UpdateService {
        service: "agent".into(),
        spec,
        expected_version: None,
        at: h.now(),
    })
    .expect("update");
    let mut fewest = usize::MAX;
    let mut nodes_seen = BTreeSet::new();
    h.drive_until("every node on v2", LIMIT, |s| {
        fewest = fewest.min(running_in(s, "agent"));
        for t in s.tasks.values() {
            if t.spec.image == "v2" && t.status.state == TaskState::Running {
                nodes_seen.insert(t.node_id.clone());
            }
        }
        s.tasks
            .values()
            .filter(|t| t.service_name == "agent" && t.status.state == TaskState::Running)
            .filter(|t| t.desired_state == TaskState::Running)
            .all(|t| t.spec.image == "v2")
            && running_in(s, "agent") == 4
    })
    .expect("rolled out");
    assert_eq!(nodes_seen.len(), 4);
    // Parallelism 1: never more than one node without its task.
    assert!(fewest >= 3, "fewest running during the rollout: {fewest}");
}

#[test]
fn reservations_add_up_and_replicas_per_node_cap_a_node() {
    // Each fake node has 4 CPUs: one 3-CPU task fits a node, two do not.
    let mut h = Harness::new(3, 2).expect("harness");
    let mut big = Harness::spec("big", 4, "img");
    big.task_template.resources.reserve_nano_cpus = 3_000_000_000;
    h.create_service(big).expect("create");
    let mut capped = Harness::spec("capped", 4, "img");
    capped.task_template.placement.max_replicas = 1;
    h.create_service(capped).expect("create");
    let reasons = |s: &ClusterState, service: &str| -> Vec<String> {
        s.tasks
            .values()
            .filter(|t| t.service_name == service && t.status.state == TaskState::Pending)
            .filter_map(|t| t.status.err.clone())
            .collect()
    };
    h.drive_until("3 of each running, 1 of each pending", LIMIT, |s| {
        hosts(s, "big") == ["manager-1", "worker-1", "worker-2"]
            && hosts(s, "capped") == ["manager-1", "worker-1", "worker-2"]
            && reasons(s, "big") == ["no suitable node (insufficient resources on 3 nodes)"]
            && reasons(s, "capped") == ["no suitable node (max replicas per node limit exceed)"]
    })
    .expect("placed");
}

/// Running tasks of `service` per hostname (every node listed, 0 if none).
fn per_node(h: &Harness, s: &ClusterState, service: &str) -> Vec<usize> {
    let on = hosts(s, service);
    h.nodes
        .iter()
        .map(|n| {
            let host = s
                .nodes
                .get(&n.id)
                .map(|n| n.hostname.clone())
                .unwrap_or_default();
            on.iter().filter(|h| **h == host).count()
        })
        .collect()
}

fn set_rebalance(h: &mut Harness, on: bool) {
    let mut spec = h
        .state(|s| s.cluster.as_ref().map(|c| c.spec.clone()))
        .expect("cluster");
    spec.rebalance = on;
    let at = h.now();
    h.propose(Command::UpdateClusterSpec { spec, at })
        .expect("swarm update");
}

/// 6 replicas over 3 nodes; the third is drained and comes back.
fn drained_and_back(on: bool) -> (Harness, usize) {
    let mut h = Harness::new(4, 2).expect("harness");
    set_rebalance(&mut h, on);
    let mut spec = Harness::spec("web", 6, "img");
    spec.update_config.delay_ns = 0;
    h.create_service(spec).expect("create");
    h.drive_until("6 running", LIMIT, |s| running_in(s, "web") == 6)
        .expect("converges");
    availability(&mut h, 2, Availability::Drain);
    h.drive_until("moved off worker-2", LIMIT, |s| {
        running_in(s, "web") == 6 && !hosts(s, "web").contains(&"worker-2".to_string())
    })
    .expect("drained");
    availability(&mut h, 2, Availability::Active);
    let mut fewest = usize::MAX;
    if on {
        let nodes: Vec<String> = h.nodes.iter().map(|n| n.id.clone()).collect();
        h.drive_until("2/2/2", LIMIT, |s| {
            fewest = fewest.min(running_in(s, "web"));
            let on = hosts(s, "web");
            nodes.len() == 3
                && ["manager-1", "worker-1", "worker-2"]
                    .iter()
                    .all(|n| on.iter().filter(|h| h == n).count() == 2)
        })
        .expect("rebalanced");
    } else {
        h.advance(Duration::from_secs(60));
        fewest = h.state(|s| running_in(s, "web"));
    }
    (h, fewest)
}

#[test]
fn rebalancing_on_moves_replicas_back_without_going_below_the_replica_count() {
    let (h, fewest) = drained_and_back(true);
    assert_eq!(fewest, 6, "never fewer than 6 running");
    assert_eq!(h.state(|s| per_node(&h, s, "web")), [2, 2, 2]);
}

#[test]
fn rebalancing_off_moves_nothing_as_in_swarm() {
    let (h, fewest) = drained_and_back(false);
    assert_eq!(fewest, 6);
    assert_eq!(h.state(|s| per_node(&h, s, "web"))[2], 0);
}
