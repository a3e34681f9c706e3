//! The dispatcher's sessions as data: which nodes have one, when each was
//! last heard from, what each was last sent, and each node's clock against
//! the leader's. Every transition is a method taking the time as an
//! argument (a `Moment` on the dispatcher's monotonic clock, and the wall
//! time for what is written), so a table can be driven by hand in a test.
//! The dispatcher actor (`shoal_actors::dispatcher`) keeps one table, feeds
//! it its messages and timer ticks, and carries out what comes back: sends,
//! probes and proposals.
//!
//! The rules: a node is down once `MISSED_FOR_DOWN` heartbeat periods pass
//! without one (strictly more: a heartbeat exactly at the deadline is in
//! time), or as soon as a heartbeat is a quarter period late and a probe
//! finds the node certainly gone. A new leader expects every node that was
//! ready and gives it `GRACE_PERIODS` more periods to register with it.

use std::collections::BTreeMap;
use std::ops::Add;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::{Judge, Offsets};
use crate::command::Command;
use crate::model::secret::{Keyring, Payload};
use crate::model::{Node, NodeDescription, NodeState, Task};
use crate::plan::assignments::{Assignments, Sent, TaskIndex};
use crate::state::ClusterState;

/// A time on the dispatcher's monotonic clock: the shell's `Instant`, or a
/// `Duration` from any origin in a test. Only compared and moved forward.
pub trait Moment: Copy + Ord + Add<Duration, Output = Self> {}

impl<T: Copy + Ord + Add<Duration, Output = T>> Moment for T {}

/// Heartbeat periods without one after which a node is down.
pub const MISSED_FOR_DOWN: u32 = 3;

/// Heartbeat periods a new leader adds for the nodes it expects: agents may
/// first try a manager that died with the old leader.
pub const GRACE_PERIODS: u32 = 3;

/// Ticks a heartbeat period: a silent node is noticed at most a quarter
/// period after its deadline.
pub const TICKS_PER_PERIOD: u32 = 4;

/// Ticks between two unconditional pushes of every node's assignments and
/// tables (they travel one way and may be lost with a connection).
pub const RESEND_EVERY_TICKS: u64 = 40;

/// Ticks between two looks at the nodes' clocks (one a heartbeat).
pub const CLOCK_CHECK_EVERY_TICKS: u64 = 4;

/// What the status message of a node declared down says.
pub const DOWN_MESSAGE: &str = "heartbeat failure";

/// One node's session; `L` is how the dispatcher reaches its agent.
#[derive(Debug, Clone)]
struct Session<L, I> {
    /// `None` until the node registers with this dispatcher.
    link: Option<L>,
    /// Which registration this is (`Sessions::register`); 0 until then.
    id: u64,
    last_seen: I,
    /// What the node was last sent; `None` sends the next list whatever it is.
    sent: Option<Sent>,
    /// A probe of the node (its heartbeat is late) is under way.
    probing: bool,
    /// The node's clock against this manager's, from its heartbeats.
    clock: Offsets,
}

impl<L, I> Session<L, I> {
    fn new(link: Option<L>, id: u64, last_seen: I) -> Self {
        Session {
            link,
            id,
            last_seen,
            sent: None,
            probing: false,
            clock: Offsets::default(),
        }
    }
}

/// Every node's session with this dispatcher.
#[derive(Debug)]
pub struct Sessions<L, I> {
    /// The heartbeat period the nodes were given.
    period: Duration,
    table: BTreeMap<String, Session<L, I>>,
    /// The last registration's number.
    registered: u64,
    ticks: u64,
    /// When the last tick was counted.
    last_tick: Option<I>,
    /// Whose clocks are off, as the last look judged them.
    clocks: Judge,
}

/// What a tick is due for besides the deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Send every node its assignments and tables again.
    pub resend: bool,
    /// Look at the nodes' clocks (`Sessions::clock_writes`).
    pub clocks: bool,
    /// This tick came more than a period after the last one: the
    /// dispatcher itself was not listening (its process starved or its
    /// mailbox full), and every deadline was moved past the gap.
    pub stalled: bool,
}

/// A node's assignments to send, and where.
pub struct Push<L> {
    pub link: L,
    pub tasks: Vec<Task>,
    pub payloads: Vec<Payload>,
}

/// The write that declares `node_id` down, stamped `at`.
pub fn down(node_id: String, at: DateTime<Utc>) -> Command {
    Command::SetNodeState {
        node_id,
        state: NodeState::Down,
        message: DOWN_MESSAGE.into(),
        at,
    }
}

/// The write a registration makes, stamped `at`: the node's record
/// (`stored`) brought in line with what the node says of itself and set
/// ready; `None` when the record already says all that.
pub fn registration(
    stored: &Node,
    description: &NodeDescription,
    at: DateTime<Utc>,
) -> Option<Command> {
    let same = stored.state == NodeState::Ready
        && stored.drivers == description.drivers
        && stored.hostname == description.hostname
        && stored.addr == description.addr
        && stored.sandbox_error == description.sandbox_error
        && stored.machine == description.machine
        && stored.max_format == description.max_format;
    if same {
        return None;
    }
    let mut node = stored.clone();
    node.state = NodeState::Ready;
    node.status_message = String::new();
    node.drivers = description.drivers.clone();
    node.hostname = description.hostname.clone();
    node.addr = description.addr.clone();
    node.sandbox_error = description.sandbox_error.clone();
    node.machine = description.machine.clone();
    node.max_format = description.max_format;
    node.updated_at = at;
    Some(Command::UpsertNode(node))
}

impl<L: Clone, I: Moment> Sessions<L, I> {
    /// A new leader's table: a session for each node of `expected` (those
    /// the state says are ready), waiting for it to register, as if it had
    /// been heard from `GRACE_PERIODS` after `now`.
    pub fn new(period: Duration, expected: impl IntoIterator<Item = String>, now: I) -> Self {
        let grace = now + period * GRACE_PERIODS;
        Sessions {
            period,
            table: expected
                .into_iter()
                .map(|node_id| (node_id, Session::new(None, 0, grace)))
                .collect(),
            registered: 0,
            ticks: 0,
            last_tick: None,
            clocks: Judge::default(),
        }
    }

    /// The number of sessions, registered or expected.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The nodes with a session, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        self.table.keys()
    }

    /// The links of the registered sessions, in node id order.
    pub fn links(&self) -> impl Iterator<Item = &L> {
        self.table.values().filter_map(|s| s.link.as_ref())
    }

    /// The link of `node_id`'s session, once it registered.
    pub fn link(&self, node_id: &str) -> Option<&L> {
        self.table.get(node_id)?.link.as_ref()
    }

    /// The number of `node_id`'s registration (`None`: it has not
    /// registered with this dispatcher).
    pub fn session_id(&self, node_id: &str) -> Option<u64> {
        self.table
            .get(node_id)
            .filter(|s| s.link.is_some())
            .map(|s| s.id)
    }

    /// `node_id`'s clock against this manager's, once it sent a heartbeat.
    pub fn clock(&self, node_id: &str) -> Option<&Offsets> {
        self.table.get(node_id).map(|s| &s.clock)
    }

    /// `node_id` registers through `link` at `now`: a new session replaces
    /// any it had (nothing it was sent is assumed known, its clock is
    /// measured afresh). Returns the new session's number.
    pub fn register(&mut self, node_id: &str, link: L, now: I) -> u64 {
        self.registered += 1;
        let session = Session::new(Some(link), self.registered, now);
        self.table.insert(node_id.to_string(), session);
        self.registered
    }

    /// A heartbeat of `node_id` sent at `sent` on its clock, received at
    /// `received` on this manager's wall clock and at `now` on the
    /// dispatcher's. False if the node has no registered session (it was
    /// declared down, or this dispatcher is new): it must register again.
    pub fn heartbeat(
        &mut self,
        node_id: &str,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
        now: I,
    ) -> bool {
        match self.table.get_mut(node_id) {
            Some(s) if s.link.is_some() => {
                s.last_seen = now;
                s.clock.record(sent, received);
                true
            }
            _ => false,
        }
    }

    /// Counts a timer tick at `now`; what it is due for besides the
    /// deadlines. Ticks come `TICKS_PER_PERIOD` times a period; one that
    /// comes more than a whole period after the last means this dispatcher
    /// heard nothing meanwhile, whoever sent what: a node is not blamed for
    /// the time its manager could not listen (a manager starting thousands
    /// of tasks on its own node stalled for seconds and declared that node
    /// down, issue 30), so every session counts as heard from `now`. A
    /// node that died meanwhile is still down `MISSED_FOR_DOWN` periods
    /// after the dispatcher listens again.
    pub fn tick(&mut self, now: I) -> Due {
        self.ticks += 1;
        let stalled = self.last_tick.is_some_and(|last| now > last + self.period);
        self.last_tick = Some(now);
        if stalled {
            for s in self.table.values_mut() {
                s.last_seen = s.last_seen.max(now);
            }
        }
        Due {
            resend: self.ticks.is_multiple_of(RESEND_EVERY_TICKS),
            clocks: self.ticks.is_multiple_of(CLOCK_CHECK_EVERY_TICKS),
            stalled,
        }
    }

    /// Forgets what every node was sent: the next push sends each its list.
    pub fn forget_sent(&mut self) {
        for s in self.table.values_mut() {
            s.sent = None;
        }
    }

    /// The registered sessions whose heartbeat is more than a quarter
    /// period late at `now` (none for `1.25 × period`) and not yet probed, each with its link; each is
    /// marked as probed until `probed` says what was found. A node that is
    /// only slow, or a lost packet, gives no answer and waits for `expire`.
    pub fn late(&mut self, now: I) -> Vec<(String, L)> {
        let late_after = self.period + self.period / 4;
        let mut out = Vec::new();
        for (node_id, s) in self.table.iter_mut() {
            if s.probing || now <= s.last_seen + late_after {
                continue;
            }
            let Some(link) = s.link.clone() else {
                continue;
            };
            s.probing = true;
            out.push((node_id.clone(), link));
        }
        out
    }

    /// What a probe of `node_id` asked at `asked` found: true if the node
    /// is down (its session ends), which needs it `gone` and no heartbeat
    /// since the probe left.
    pub fn probed(&mut self, node_id: &str, gone: bool, asked: I) -> bool {
        let Some(s) = self.table.get_mut(node_id) else {
            return false;
        };
        s.probing = false;
        if gone && s.last_seen < asked {
            self.table.remove(node_id);
            return true;
        }
        false
    }

    /// Ends the sessions of the nodes not heard from for more than
    /// `MISSED_FOR_DOWN` periods at `now`, and returns those nodes in id
    /// order (each to be written down with `down`).
    pub fn expire(&mut self, now: I) -> Vec<String> {
        let limit = self.period * MISSED_FOR_DOWN;
        let down: Vec<String> = self
            .table
            .iter()
            .filter(|(_, s)| now > s.last_seen + limit)
            .map(|(n, _)| n.clone())
            .collect();
        for node_id in &down {
            self.table.remove(node_id);
        }
        down
    }

    /// `node_id`'s assignments as they stand in `state`, if it has a
    /// registered session and they are not what it was last sent (`force`
    /// sends anyway: a node that registers knows nothing yet). What is
    /// returned is recorded as sent.
    pub fn push(
        &mut self,
        node_id: &str,
        state: &ClusterState,
        index: &TaskIndex,
        keyring: Option<&dyn Keyring>,
        force: bool,
    ) -> Option<Push<L>> {
        let session = self.table.get_mut(node_id)?;
        let link = session.link.clone()?;
        let assignments = Assignments::of(state, index, node_id, keyring);
        let sent = assignments.sent();
        if !force && session.sent.as_ref() == Some(&sent) {
            return None;
        }
        session.sent = Some(sent);
        // Copied only when they go out: most pushes (a task's status moved
        // on) change nothing the node is told.
        Some(Push {
            link,
            tasks: assignments.tasks.into_iter().cloned().collect(),
            payloads: assignments.payloads,
        })
    }

    /// The clock-skew flags to write (`crate::clock`): each registered
    /// node's offset judged against the others', written when two looks in
    /// a row agree and `state` records otherwise.
    pub fn clock_writes(&mut self, state: &ClusterState) -> Vec<Command> {
        let offsets: BTreeMap<String, TimeDelta> = self
            .table
            .iter()
            .filter(|(_, s)| s.link.is_some())
            .filter_map(|(n, s)| Some((n.clone(), s.clock.offset()?)))
            .collect();
        self.clocks
            .look(&offsets, |n| Some(state.nodes.get(n)?.clock_skew_ms))
            .into_iter()
            .map(|(node_id, skew_ms)| Command::SetNodeClockSkew { node_id, skew_ms })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{sample_node, sample_task, NodeRole, TaskState};
    use crate::state::Change;

    const PERIOD: Duration = Duration::from_millis(1000);

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn wall(v: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(v)
    }

    /// A table with no expected node; times are milliseconds from 0.
    fn table() -> Sessions<&'static str, Duration> {
        Sessions::new(PERIOD, [], ms(0))
    }

    #[test]
    fn a_session_expires_after_the_deadline_not_at_it() {
        let mut s = table();
        s.register("n", "link", ms(0));
        assert!(s.heartbeat("n", wall(500), wall(500), ms(500)));
        // Heard at 500: down after 500 + 3 periods, not at that instant.
        assert!(s.expire(ms(3_500)).is_empty());
        assert_eq!(s.session_id("n"), Some(1));
        assert_eq!(s.expire(ms(3_501)), vec!["n".to_string()]);
        assert!(s.is_empty());
        assert_eq!(
            down("n".into(), wall(3_501)),
            Command::SetNodeState {
                node_id: "n".into(),
                state: NodeState::Down,
                message: "heartbeat failure".into(),
                at: wall(3_501),
            }
        );
    }

    #[test]
    fn the_time_the_dispatcher_could_not_listen_is_not_held_against_a_node() {
        let mut s = table();
        s.register("alive", "a", ms(0));
        s.register("dead", "d", ms(0));
        for t in (250..=1_000).step_by(250) {
            assert!(!s.tick(ms(t)).stalled);
        }
        // "dead" is heard from no more. The dispatcher then hears nothing
        // for 4 s (its process starved): "alive"'s heartbeats of that time
        // were never read, so neither node is down at the next tick...
        let due = s.tick(ms(5_000));
        assert!(due.stalled);
        assert!(s.late(ms(5_000)).is_empty());
        assert!(s.expire(ms(5_000)).is_empty());
        // ...and a node that stays silent once it listens again is down
        // three periods later, as ever.
        for t in (5_250..=8_000).step_by(250) {
            assert!(!s.tick(ms(t)).stalled);
            if t <= 7_750 {
                assert!(s.heartbeat("alive", wall(t as i64), wall(t as i64), ms(t)));
            }
        }
        assert!(s.expire(ms(8_000)).is_empty());
        assert_eq!(s.expire(ms(8_001)), vec!["dead".to_string()]);
        // A tick at most a period after the last is no stall.
        assert!(!s.tick(ms(9_000)).stalled);
    }

    #[test]
    fn a_heartbeat_after_expiry_is_refused_until_the_node_registers_again() {
        let mut s = table();
        s.register("n", "old", ms(0));
        assert_eq!(s.expire(ms(3_001)), vec!["n".to_string()]);
        // Its session is gone: the agent is told to register again.
        assert!(!s.heartbeat("n", wall(3_100), wall(3_100), ms(3_100)));
        assert!(s.expire(ms(10_000)).is_empty(), "declared down once");
        let id = s.register("n", "new", ms(3_200));
        assert_eq!(id, 2);
        assert!(s.heartbeat("n", wall(3_300), wall(3_300), ms(3_300)));
        assert_eq!(s.link("n"), Some(&"new"));
    }

    #[test]
    fn an_expected_node_has_the_grace_to_register_and_no_heartbeat_before() {
        let mut s: Sessions<&str, Duration> = Sessions::new(PERIOD, ["a".to_string()], ms(0));
        assert_eq!(s.len(), 1);
        // Not registered: a heartbeat is refused, no link, no probe.
        assert!(!s.heartbeat("a", wall(10), wall(10), ms(10)));
        assert_eq!(s.session_id("a"), None);
        assert!(s.late(ms(5_000)).is_empty());
        // Grace of 3 periods, then 3 missed: down after 6 s.
        assert!(s.expire(ms(6_000)).is_empty());
        assert_eq!(s.expire(ms(6_001)), vec!["a".to_string()]);
    }

    #[test]
    fn a_new_registration_is_a_new_session_with_nothing_assumed() {
        let mut state = ClusterState::default();
        state
            .nodes
            .insert("n".into(), sample_node("n", "host", NodeRole::Worker));
        let mut t = sample_task(TaskState::Assigned, wall(0));
        t.node_id = Some("n".into());
        state.tasks.insert(t.id.clone(), t.clone());
        let index = TaskIndex::build(&state);
        let mut s = table();
        assert_eq!(s.register("n", "first", ms(0)), 1);
        s.heartbeat("n", wall(600_000), wall(0), ms(100));
        assert!(s.clock("n").and_then(|c| c.offset()).is_some());
        let first = s
            .push("n", &state, &index, None, false)
            .expect("first push");
        assert_eq!((first.link, first.tasks.len()), ("first", 1));
        // The same list again is not sent, unless forced.
        assert!(s.push("n", &state, &index, None, false).is_none());
        assert!(s.push("n", &state, &index, None, true).is_some());
        // Late, and probed.
        assert_eq!(s.late(ms(1_400)), vec![("n".to_string(), "first")]);
        // The agent comes back with a new link: a new session number, its
        // late probe and clock forgotten, and its list sent again.
        assert_eq!(s.register("n", "second", ms(1_500)), 2);
        assert_eq!(s.session_id("n"), Some(2));
        assert_eq!(s.clock("n").and_then(|c| c.offset()), None);
        let again = s
            .push("n", &state, &index, None, false)
            .expect("sent again");
        assert_eq!(again.link, "second");
        // The old probe's answer does not end the new session.
        assert!(!s.probed("n", true, ms(1_450)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_late_node_is_probed_once_and_down_if_gone_and_still_silent() {
        let mut s = table();
        s.register("n", "link", ms(0));
        // A quarter period late, not more: no probe yet.
        assert!(s.late(ms(1_250)).is_empty());
        assert_eq!(s.late(ms(1_251)), vec![("n".to_string(), "link")]);
        assert!(s.late(ms(1_300)).is_empty(), "one probe at a time");
        // Not gone: the probe ends and it may be asked again.
        assert!(!s.probed("n", false, ms(1_251)));
        assert_eq!(s.late(ms(1_400)).len(), 1);
        // A heartbeat since the probe left beats what it found.
        s.heartbeat("n", wall(1_450), wall(1_450), ms(1_450));
        assert!(!s.probed("n", true, ms(1_400)));
        // Gone and silent since: down at once.
        assert_eq!(s.late(ms(2_701)).len(), 1);
        assert!(s.probed("n", true, ms(2_701)));
        assert!(s.is_empty());
        assert!(!s.probed("n", true, ms(2_702)), "already down");
    }

    #[test]
    fn a_push_follows_the_tasks_a_node_is_given() {
        let mut state = ClusterState::default();
        let mut index = TaskIndex::default();
        let mut s = table();
        s.register("n", "link", ms(0));
        assert_eq!(
            s.push("n", &state, &index, None, false)
                .map(|p| p.tasks.len()),
            Some(0)
        );
        // A task given to the node, not yet assigned (a global task): not sent.
        let mut t = sample_task(TaskState::Pending, wall(0));
        t.node_id = Some("n".into());
        state.tasks.insert(t.id.clone(), t.clone());
        let change = [Change::Task {
            id: t.id.clone(),
            service_id: t.service_id.clone(),
        }];
        assert_eq!(
            index.note(&state, &change).into_iter().collect::<Vec<_>>(),
            ["n"]
        );
        assert!(s.push("n", &state, &index, None, false).is_none());
        // Assigned: sent; running: a status only, not sent again.
        state.tasks.get_mut("t").expect("task").status.state = TaskState::Assigned;
        assert_eq!(
            s.push("n", &state, &index, None, false)
                .map(|p| p.tasks.len()),
            Some(1)
        );
        state.tasks.get_mut("t").expect("task").status.state = TaskState::Running;
        assert!(s.push("n", &state, &index, None, false).is_none());
        // Desired to shut down: sent.
        state.tasks.get_mut("t").expect("task").desired_state = TaskState::Shutdown;
        assert!(s.push("n", &state, &index, None, false).is_some());
        // Deleted: the index remembers its node, and the node hears it is gone.
        state.tasks.remove("t");
        let removed = [Change::TaskRemoved {
            id: "t".into(),
            service_id: "s".into(),
        }];
        assert_eq!(
            index.note(&state, &removed).into_iter().collect::<Vec<_>>(),
            ["n"]
        );
        assert_eq!(
            s.push("n", &state, &index, None, false)
                .map(|p| p.tasks.len()),
            Some(0)
        );
        // A node without a session is sent nothing.
        assert!(s.push("other", &state, &index, None, true).is_none());
    }

    #[test]
    fn a_registration_writes_only_what_changed_and_makes_the_node_ready() {
        let mut stored = sample_node("n", "host", NodeRole::Worker);
        stored.state = NodeState::Ready;
        let description = NodeDescription {
            node_id: "n".into(),
            hostname: stored.hostname.clone(),
            addr: stored.addr.clone(),
            drivers: stored.drivers.clone(),
            sandbox_error: None,
            machine: stored.machine.clone(),
            max_format: stored.max_format,
        };
        assert_eq!(registration(&stored, &description, wall(5)), None);
        // Down (its heartbeats stopped), then back: ready again.
        stored.state = NodeState::Down;
        stored.status_message = DOWN_MESSAGE.into();
        let Some(Command::UpsertNode(node)) = registration(&stored, &description, wall(5)) else {
            panic!("a write");
        };
        assert_eq!(
            (node.state, node.status_message.as_str(), node.updated_at),
            (NodeState::Ready, "", wall(5))
        );
        // A new address is written, the rest of the record kept.
        stored.state = NodeState::Ready;
        let moved = NodeDescription {
            addr: "10.0.0.9:2377".into(),
            ..description
        };
        let Some(Command::UpsertNode(node)) = registration(&stored, &moved, wall(6)) else {
            panic!("a write");
        };
        assert_eq!(node.addr, "10.0.0.9:2377");
        assert_eq!((&node.id, node.role), (&stored.id, stored.role));
        // A node started again on another build claims another format.
        let upgraded = NodeDescription {
            max_format: stored.max_format + 1,
            ..moved.clone()
        };
        let Some(Command::UpsertNode(node)) = registration(&stored, &upgraded, wall(7)) else {
            panic!("a write");
        };
        assert_eq!(node.max_format, stored.max_format + 1);
    }

    #[test]
    fn ticks_are_due_for_resends_and_clock_looks() {
        let mut s = table();
        let due: Vec<Due> = (0..RESEND_EVERY_TICKS)
            .map(|i| s.tick(ms(i * 250)))
            .collect();
        assert!(due.iter().all(|d| !d.stalled));
        assert_eq!(due.iter().filter(|d| d.clocks).count(), 10);
        assert_eq!(due.iter().filter(|d| d.resend).count(), 1);
        assert!(due[RESEND_EVERY_TICKS as usize - 1].resend);
    }

    #[test]
    fn only_registered_nodes_clocks_are_judged() {
        let mut state = ClusterState::default();
        let mut s: Sessions<&str, Duration> = Sessions::new(PERIOD, ["x".to_string()], ms(0));
        for n in ["a", "b", "c"] {
            state
                .nodes
                .insert(n.into(), sample_node(n, n, NodeRole::Worker));
            s.register(n, "link", ms(0));
        }
        // c is ten minutes ahead.
        s.heartbeat("a", wall(0), wall(0), ms(1));
        s.heartbeat("b", wall(0), wall(0), ms(1));
        s.heartbeat("c", wall(600_000), wall(0), ms(1));
        assert!(s.clock_writes(&state).is_empty(), "one look is not enough");
        assert_eq!(
            s.clock_writes(&state),
            vec![Command::SetNodeClockSkew {
                node_id: "c".into(),
                skew_ms: Some(600_000)
            }]
        );
    }
}
