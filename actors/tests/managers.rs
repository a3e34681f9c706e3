//! The harness with several managers: elections replay from a seed, a
//! crashed leader comes back as a follower, a snapshot lost on the way is
//! sent again.

use std::time::Duration;

use shoal_actors::harness::{running_in, Harness, NetConfig, Setup};

const LIMIT: Duration = Duration::from_secs(60);

fn three_managers(seed: u64, workers: usize) -> Harness {
    Harness::build(Setup {
        managers: 3,
        net: NetConfig {
            delay: Duration::from_millis(1),
            loss_per_million: 0,
        },
        ..Setup::new(seed, workers)
    })
    .expect("harness")
}

fn converge(h: &mut Harness, service: &str, n: usize) {
    h.drive_until(&format!("{n} running"), LIMIT, |s| {
        running_in(s, service) == n
    })
    .expect("converges");
}

/// Who led in each term.
type Leaders = Vec<(u64, Vec<u64>)>;

/// A leader cut off, a new one elected, the old one back: the command log
/// and who led which term.
fn failover(seed: u64) -> (Vec<Vec<u8>>, Leaders) {
    let mut h = three_managers(seed, 3);
    h.create_service(Harness::spec("web", 12, "run"))
        .expect("create");
    converge(&mut h, "web", 12);
    let old = h.leader().expect("a leader");
    h.isolate(old);
    h.drive_until("another leader", LIMIT, |_| true)
        .expect("step");
    h.scale("web", 15).expect("a write through the new leader");
    converge(&mut h, "web", 15);
    assert_ne!(h.leader(), Some(old), "a new leader");
    h.rejoin(old);
    h.caught_up(old, LIMIT).expect("the old leader catches up");
    let leaders = h
        .leaders_by_term()
        .into_iter()
        .map(|(t, l)| (t, l.into_iter().collect()))
        .collect();
    (h.log(), leaders)
}

#[test]
fn three_managers_replay_their_elections_and_writes_from_a_seed() {
    let (log_a, leaders_a) = failover(5);
    let (log_b, leaders_b) = failover(5);
    assert!(
        leaders_a.len() >= 2,
        "an election after the loss: {leaders_a:?}"
    );
    assert!(
        leaders_a.iter().all(|(_, l)| l.len() == 1),
        "one leader per term: {leaders_a:?}"
    );
    assert_eq!(leaders_a, leaders_b, "the same leaders in the same terms");
    assert_eq!(log_a.len(), log_b.len(), "as many entries");
    assert!(log_a == log_b, "the same entries");
}

#[test]
fn a_crashed_leader_restarts_as_a_follower_and_catches_up() {
    let mut h = three_managers(9, 2);
    h.create_service(Harness::spec("web", 10, "run"))
        .expect("create");
    converge(&mut h, "web", 10);
    let old = h.leader().expect("a leader");
    h.crash(old).expect("crash");
    h.scale("web", 14)
        .expect("the survivors elect a leader and take the write");
    converge(&mut h, "web", 14);
    h.restart(old).expect("restart");
    h.caught_up(old, LIMIT).expect("catches up");
    assert_ne!(h.leader(), Some(old), "it came back as a follower");
    let theirs = h.state(|s| (s.tasks.len(), s.services.len()));
    let its = h.manager_state(old, |s, _| (s.tasks.len(), s.services.len()));
    assert_eq!(
        its, theirs,
        "the restarted manager holds the leader's state"
    );
}

#[test]
fn a_snapshot_lost_on_the_way_is_sent_again() {
    let mut h = three_managers(3, 2);
    h.create_service(Harness::spec("web", 30, "run"))
        .expect("create");
    converge(&mut h, "web", 30);
    assert!(h.compact() > 0, "the logs were compacted");
    h.lose_next_snapshot();
    let late = h.add_manager().expect("a late manager");
    let took = h
        .caught_up(late, LIMIT)
        .expect("the late manager catches up from a second snapshot");
    // The leader waits 20 s for an answer to a snapshot before it sends
    // another one (raft-rs alone would wait for ever).
    assert!(took >= Duration::from_secs(15), "caught up after {took:?}");
    let to_late: Vec<_> = h
        .snapshots()
        .into_iter()
        .filter(|c| c.to == late as u64 + 1)
        .collect();
    assert_eq!(to_late.len(), 1, "one snapshot arrived: {to_late:?}");
    let (_, lost) = h.net_counts();
    assert!(lost >= 1, "the first one was lost");
    assert_eq!(
        h.manager_state(late, |s, _| s.tasks.len()),
        h.state(|s| s.tasks.len()),
        "the late manager holds the state"
    );
}
