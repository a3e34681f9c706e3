//! The updater in the in-process harness (real store, Raft and leader
//! actors, fake drivers, a paused clock): the rollout's invariants checked
//! at every step, which the end-to-end tests in cli/tests/update.rs can
//! only sample.

use std::time::Duration;

use shoal_actors::harness::{running_in, Behaviour, Harness};
use shoal_core::command::Command;
use shoal_core::model::{ServiceSpec, TaskState, UpdateConfig, UpdateOrder, UpdateState};
use shoal_core::state::ClusterState;

const LIMIT: Duration = Duration::from_secs(120);

fn spec(replicas: u64, image: &str, config: UpdateConfig) -> ServiceSpec {
    let mut spec = Harness::spec("web", replicas, image);
    spec.update_config = config;
    spec
}

fn update_to(h: &mut Harness, image: &str) {
    let mut spec = h.state(|s| s.service_by_name("web").map(|s| s.spec.clone()));
    let spec = spec.as_mut().expect("service");
    spec.task_template.image = image.into();
    let at = h.now();
    h.propose(Command::UpdateService {
        service: "web".into(),
        spec: spec.clone(),
        expected_version: None,
        at,
    })
    .expect("update");
}

fn state_of(s: &ClusterState) -> Option<UpdateState> {
    s.service_by_name("web")?
        .update_status
        .as_ref()
        .map(|u| u.state)
}

/// Per slot, the tasks observed running (whatever they are meant to do).
fn running_per_slot(s: &ClusterState, replicas: u64) -> Vec<usize> {
    (1..=replicas)
        .map(|slot| {
            s.tasks
                .values()
                .filter(|t| t.slot == slot && t.status.state == TaskState::Running)
                .count()
        })
        .collect()
}

fn all_on(s: &ClusterState, image: &str, n: usize) -> bool {
    s.tasks
        .values()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .filter(|t| t.spec.image == image)
        .count()
        == n
}

#[test]
fn stop_first_never_runs_a_slot_twice_nor_more_than_parallelism_slots_down() {
    let config = UpdateConfig {
        parallelism: 2,
        monitor_ns: 0,
        ..UpdateConfig::default()
    };
    let mut h = Harness::new(7, 2).expect("harness");
    h.create_service(spec(5, "v1", config)).expect("create");
    h.drive_until("5 running", LIMIT, |s| running_in(s, "web") == 5)
        .expect("converges");
    update_to(&mut h, "v2");
    h.drive_until("the rollout to complete", LIMIT, |s| {
        let per_slot = running_per_slot(s, 5);
        assert!(
            per_slot.iter().all(|n| *n <= 1),
            "a slot ran twice: {per_slot:?}"
        );
        let up: usize = per_slot.iter().sum();
        assert!(up >= 3, "more than 2 slots down at once: {per_slot:?}");
        state_of(s) == Some(UpdateState::Completed)
    })
    .expect("completes");
    assert!(h.state(|s| all_on(s, "v2", 5)));
}

#[test]
fn start_first_never_leaves_a_slot_empty() {
    let config = UpdateConfig {
        order: UpdateOrder::StartFirst,
        monitor_ns: 0,
        ..UpdateConfig::default()
    };
    let mut h = Harness::new(8, 1).expect("harness");
    h.create_service(spec(3, "v1", config)).expect("create");
    h.drive_until("3 running", LIMIT, |s| running_in(s, "web") == 3)
        .expect("converges");
    update_to(&mut h, "v2");
    h.drive_until("the rollout to complete", LIMIT, |s| {
        let per_slot = running_per_slot(s, 3);
        assert!(
            per_slot.iter().all(|n| *n >= 1),
            "a slot ran nothing: {per_slot:?}"
        );
        state_of(s) == Some(UpdateState::Completed)
    })
    .expect("completes");
    h.drive_until("one task per slot", LIMIT, |s| {
        running_per_slot(s, 3) == [1, 1, 1] && all_on(s, "v2", 3)
    })
    .expect("settles");
}

#[test]
fn a_new_leader_s_updater_finishes_the_rollout() {
    let config = UpdateConfig {
        delay_ns: 2_000_000_000,
        monitor_ns: 0,
        ..UpdateConfig::default()
    };
    let mut h = Harness::new(9, 2).expect("harness");
    h.create_service(spec(4, "v1", config)).expect("create");
    h.drive_until("4 running", LIMIT, |s| running_in(s, "web") == 4)
        .expect("converges");
    update_to(&mut h, "v2");
    h.drive_until("one slot on v2", LIMIT, |s| all_on(s, "v2", 1))
        .expect("first slot");
    h.restart_leader().expect("restart the leader actors");
    h.drive_until("the rollout to complete", LIMIT, |s| {
        let per_slot = running_per_slot(s, 4);
        assert!(
            per_slot.iter().all(|n| *n <= 1),
            "a slot ran twice: {per_slot:?}"
        );
        state_of(s) == Some(UpdateState::Completed)
    })
    .expect("completes under the new leader actors");
    assert!(h.state(|s| all_on(s, "v2", 4)));
}

#[test]
fn a_rejected_image_pauses_after_the_first_slot() {
    let mut h = Harness::new(10, 1).expect("harness");
    for n in 0..2 {
        h.nodes[n]
            .driver
            .behave("bad", Behaviour::Reject("no such image".into()));
    }
    h.create_service(spec(3, "v1", UpdateConfig::default()))
        .expect("create");
    h.drive_until("3 running", LIMIT, |s| running_in(s, "web") == 3)
        .expect("converges");
    update_to(&mut h, "bad");
    h.drive_until("the rollout to pause", LIMIT, |s| {
        state_of(s) == Some(UpdateState::Paused)
    })
    .expect("pauses");
    h.advance(Duration::from_secs(10));
    assert!(
        h.state(|s| all_on(s, "v1", 2)),
        "two old tasks keep running"
    );
    assert_eq!(h.state(state_of), Some(UpdateState::Paused));
}

/// A rollout with a delay and a monitor that goes well, then one to an
/// image that is rejected and rolls back, under one seed: the Raft log.
fn rollouts(seed: u64) -> Vec<Vec<u8>> {
    let config = UpdateConfig {
        parallelism: 1,
        delay_ns: 2_000_000_000,
        monitor_ns: 3_000_000_000,
        failure_action: shoal_core::model::FailureAction::Rollback,
        ..UpdateConfig::default()
    };
    let mut h = Harness::new(seed, 2).expect("harness");
    for n in 0..h.nodes.len() {
        h.nodes[n]
            .driver
            .behave("bad", Behaviour::Reject("no such image".into()));
    }
    h.create_service(spec(4, "v1", config)).expect("create");
    h.drive_until("4 running", LIMIT, |s| running_in(s, "web") == 4)
        .expect("converges");
    update_to(&mut h, "v2");
    h.drive_until("the rollout to complete", LIMIT, |s| {
        state_of(s) == Some(UpdateState::Completed)
    })
    .expect("completes");
    update_to(&mut h, "bad");
    h.drive_until("the rollback to complete", LIMIT, |s| {
        state_of(s) == Some(UpdateState::RollbackCompleted)
    })
    .expect("rolls back");
    assert!(h.state(|s| all_on(s, "v2", 4)));
    h.log()
}

#[test]
fn a_seed_replays_rollouts_entry_for_entry() {
    let a = rollouts(21);
    let b = rollouts(21);
    assert!(a.len() > 20, "only {} entries", a.len());
    assert_eq!(a.len(), b.len(), "as many entries");
    assert!(a == b, "the same entries, byte for byte");
}
