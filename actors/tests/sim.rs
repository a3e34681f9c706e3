//! The large-cluster simulation as a test, small enough for a debug build:
//! 3 managers and 47 workers, 2,000 tasks of one service, seeded, on a
//! managers' network that delays every message by a millisecond and loses
//! one in a thousand. In the middle: a partition (five workers cut off)
//! and the loss of the leader (cut off from everyone); a new leader takes
//! over. Then the partition heals, a follower is killed and restarted, and
//! a fourth manager joins late and catches up from a snapshot.
//!
//! Asserted: one leader per term, as the managers' network saw who sent
//! leader-only messages; every task id is started on one node only, over
//! the whole run; once the cluster has converged after the heal, every
//! slot has exactly one RUNNING task in the state and exactly one task
//! running in the fake drivers, at every point observed; the late manager
//! was sent a snapshot and holds the same state; all of it within the
//! harness's clock limit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shoal_actors::harness::{running_in, DriverCall, Harness, NetConfig, Setup};
use shoal_core::model::TaskState;
use shoal_core::state::ClusterState;

const SEED: u64 = 17;
const MANAGERS: usize = 3;
const NODES: usize = 50;
const TASKS: u64 = 2_000;
const SERVICE: &str = "sim";
/// Each phase's limit on the harness's clock.
const LIMIT: Duration = Duration::from_secs(60);
/// The whole run's.
const TOTAL: Duration = Duration::from_secs(180);
/// Workers cut off the manager in the middle of the run.
const CUT: [usize; 5] = [3, 11, 19, 27, 41];

/// Whether a task of the service is running, and meant to, on one of `nodes`.
fn runs_on(s: &ClusterState, nodes: &BTreeSet<String>) -> bool {
    s.tasks.values().any(|t| {
        t.status.state == TaskState::Running
            && t.desired_state == TaskState::Running
            && t.node_id.as_ref().is_some_and(|n| nodes.contains(n))
    })
}

/// The tasks running in the fake drivers, with the nodes that run them.
fn running_in_drivers(h: &Harness) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in h.nodes.iter().enumerate() {
        for id in n.driver.running() {
            out.entry(id).or_default().push(i);
        }
    }
    out
}

/// Every slot has exactly one RUNNING task in the state and exactly one
/// task running in the drivers, and no task runs on two nodes.
fn assert_one_per_slot(h: &Harness, when: &str) {
    let tasks = h.tasks(SERVICE);
    let slot_of: BTreeMap<&str, u64> = tasks.iter().map(|t| (t.id.as_str(), t.slot)).collect();
    let mut in_state: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &tasks {
        if t.status.state == TaskState::Running && t.desired_state == TaskState::Running {
            *in_state.entry(t.slot).or_default() += 1;
        }
    }
    assert_eq!(
        in_state.len() as u64,
        TASKS,
        "{when}: slots running in the state"
    );
    let doubled: Vec<_> = in_state.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "{when}: slots with two running tasks: {doubled:?}"
    );
    let mut in_drivers: BTreeMap<u64, usize> = BTreeMap::new();
    for (id, nodes) in running_in_drivers(h) {
        assert_eq!(nodes.len(), 1, "{when}: task {id} runs on nodes {nodes:?}");
        let slot = slot_of.get(id.as_str()).copied();
        let slot = slot.unwrap_or_else(|| panic!("{when}: task {id} runs but is not in the state"));
        *in_drivers.entry(slot).or_default() += 1;
    }
    assert_eq!(
        in_drivers.len() as u64,
        TASKS,
        "{when}: slots running in the drivers"
    );
    let doubled: Vec<_> = in_drivers.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "{when}: slots run twice by the drivers: {doubled:?}"
    );
}

#[test]
fn two_thousand_tasks_on_fifty_nodes_and_three_managers_survive_a_partition_a_leader_loss_and_a_late_manager_with_each_slot_running_once(
) {
    let wall = std::time::Instant::now();
    let mut h = Harness::build(Setup {
        managers: MANAGERS,
        net: NetConfig {
            delay: Duration::from_millis(1),
            loss_per_million: 1_000,
        },
        ..Setup::new(SEED, NODES - MANAGERS)
    })
    .expect("harness");
    h.create_service(Harness::spec(SERVICE, TASKS, "run"))
        .expect("create");
    let half = TASKS as usize / 2;
    h.drive_until("half the tasks running", LIMIT, |s| {
        running_in(s, SERVICE) >= half
    })
    .expect("half running");

    // The partition, and the leader lost while it lasts: cut off from the
    // other managers and from every agent, its own node's included.
    let old_leader = h.leader().expect("a leader");
    let mut cut: BTreeSet<String> = CUT.iter().map(|&i| h.nodes[i].id.clone()).collect();
    cut.insert(h.nodes[h.manager_node(old_leader)].id.clone());
    for i in CUT {
        h.cut(i);
    }
    h.isolate(old_leader);
    h.drive_until("every slot running off the cut nodes", LIMIT, |s| {
        running_in(s, SERVICE) == TASKS as usize && !runs_on(s, &cut)
    })
    .expect("converges without the cut nodes and the old leader");
    let new_leader = h.leader().expect("a new leader");
    assert_ne!(new_leader, old_leader, "the cut-off leader was replaced");

    // Healed: the cut nodes stop what was replaced elsewhere, and the old
    // leader follows the new one.
    for i in CUT {
        h.heal(i);
    }
    h.rejoin(old_leader);
    let drivers: Vec<_> = h.nodes.iter().map(|n| n.driver.clone()).collect();
    h.drive_until("the drivers run one task per slot", LIMIT, |s| {
        let in_drivers: usize = drivers.iter().map(|d| d.running().len()).sum();
        running_in(s, SERVICE) == TASKS as usize && in_drivers == TASKS as usize
    })
    .expect("converges after the heal");

    // A follower killed and restarted catches up from its own store and
    // the leader.
    let follower = (0..MANAGERS)
        .find(|&i| Some(i) != h.leader())
        .expect("a follower");
    h.crash(follower).expect("crash");
    h.advance(Duration::from_secs(2));
    h.restart(follower).expect("restart");
    h.caught_up(follower, LIMIT)
        .expect("the restarted follower catches up");

    // A manager that joins late gets a snapshot: the others have dropped
    // their logs behind one.
    assert!(h.compact() > 0, "the leader took a snapshot");
    let late = h.add_manager().expect("a late manager");
    h.caught_up(late, LIMIT)
        .expect("the late manager catches up");
    let late_raft_id = late as u64 + 1;
    let sent = h.snapshots();
    assert!(
        sent.iter().any(|c| c.to == late_raft_id && c.chunks >= 1),
        "a snapshot crossed to the late manager: {sent:?}"
    );
    let leader_tasks = h.state(|s| s.tasks.len());
    let late_tasks = h.manager_state(late, |s, _| s.tasks.len());
    assert_eq!(late_tasks, leader_tasks, "the late manager holds the state");

    // Converged: it stays so at every point observed.
    for step in 0..30 {
        assert_one_per_slot(&h, &format!("{}00 ms after convergence", step));
        h.advance(Duration::from_millis(100));
    }

    // One leader per term, as the managers' network saw it.
    let leaders = h.leaders_by_term();
    let two: Vec<_> = leaders.iter().filter(|(_, l)| l.len() > 1).collect();
    assert!(two.is_empty(), "terms with two leaders: {two:?}");
    assert!(
        leaders.len() >= 2,
        "an election after the leader's loss: {leaders:?}"
    );
    let (delivered, lost) = h.net_counts();
    assert!(
        lost > 0,
        "the network lost messages ({lost} of {delivered})"
    );

    // No task id was ever started on two nodes.
    let mut started_on: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, n) in h.nodes.iter().enumerate() {
        for call in n.driver.calls() {
            if let DriverCall::Start(id) = call {
                started_on.entry(id).or_default().insert(i);
            }
        }
    }
    let twice: Vec<_> = started_on.iter().filter(|(_, n)| n.len() > 1).collect();
    assert!(twice.is_empty(), "tasks started on two nodes: {twice:?}");
    assert!(
        started_on.len() as u64 > TASKS,
        "the cut nodes' tasks were replaced: {} tasks started",
        started_on.len()
    );
    assert!(
        h.elapsed() < TOTAL,
        "took {:?} of the harness's clock",
        h.elapsed()
    );
    eprintln!(
        "{NODES} nodes ({MANAGERS} managers, and a late one), {TASKS} tasks: {:.1?} on the harness's clock, {:.1?} wall; leaders by term {leaders:?}; {delivered} messages delivered, {lost} lost",
        h.elapsed(),
        wall.elapsed()
    );
}
