//! What a run recorded: the journal. Injection writes it; checkers and
//! reports only read it, so a journal can be checked again later
//! (`shoal-chaos report`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

/// Milliseconds since the run started.
pub type Millis = u64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub scenario: Scenario,
    pub seed: u64,
    /// Wall clock at the start, RFC 3339.
    pub started_at: String,
    pub nodes: Vec<NodeInfo>,
    /// When the method started and ended (after its last step and undo).
    pub method_start: Millis,
    pub method_end: Millis,
    pub faults: Vec<Fault>,
    pub ops: Vec<Op>,
    pub probes: Vec<ProbeResult>,
    pub observations: Vec<Observation>,
    /// The leader's view after everything settled, behind a write barrier.
    pub final_state: Option<FinalState>,
    pub end: Millis,
    /// Every request of the traffic load (`[traffic]`), in the order sent.
    #[serde(default)]
    pub requests: Vec<Request>,
    /// Sends the traffic load skipped because too many requests were
    /// still outstanding (the client, not the cluster, was the limit).
    #[serde(default)]
    pub requests_skipped: u64,
    /// Writes and reads of the register (`[register]`).
    #[serde(default)]
    pub register: Vec<RegOp>,
    /// Things that went wrong in the harness itself (a step that could not run).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub manager: bool,
    pub node_id: String,
    pub raft_id: u64,
    pub addr: String,
}

/// A fault the runner injected (or undid: undoing is its own entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    pub at: Millis,
    pub done: Millis,
    /// The scenario verb: kill, pause, partition, ... ("start" for an undo of kill).
    pub action: String,
    /// The nodes it touched, by name.
    pub nodes: Vec<String>,
    pub detail: String,
    /// The step's line in the scenario file.
    pub line: usize,
    pub ok: bool,
    /// Index of the fault this one undoes.
    pub undoes: Option<usize>,
    /// For an actor kill: how long the node's supervisor took to replace it.
    pub healed_in_ms: Option<f64>,
}

impl Fault {
    /// Faults that leave the cluster hurt until undone.
    pub fn lasting(&self) -> bool {
        crate::scenario::LASTING.contains(&self.action.as_str())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: it happened.
    Ok,
    /// Refused with a definite answer (4xx): it did not happen.
    Refused,
    /// No answer or a 5xx: it may or may not have happened.
    Unknown,
}

/// What a write sets a service to: writes carry whole values, so the
/// service is a register and the last write wins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServiceValue {
    Absent,
    Present { replicas: u64, generation: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Op {
    /// load, method or probe.
    pub client: String,
    pub kind: String,
    pub service: String,
    pub value: ServiceValue,
    pub via: String,
    pub sent: Millis,
    pub done: Millis,
    pub outcome: Outcome,
    /// The HTTP status of a refusal or an error, if there was an answer.
    #[serde(default)]
    pub status: Option<u16>,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    /// before, during or after.
    pub phase: String,
    pub at: Millis,
    pub probe: String,
    pub ok: bool,
    pub detail: String,
    /// Whether a failure here fails the run.
    pub counts: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Observation {
    /// When the task processes were listed (the other parts are read just before).
    pub at: Millis,
    pub managers: Vec<ManagerView>,
    /// Whether a manager answered for services and tasks at all: without
    /// that, empty `services` says nothing.
    #[serde(default)]
    pub state_read: bool,
    /// Per service, as the most authoritative manager that answered sees it.
    pub services: BTreeMap<String, ServiceView>,
    /// Tasks the cluster state says are running: (service, slot, node name).
    pub running: Vec<(String, u64, String)>,
    /// Task processes alive on this machine that belong to this cluster.
    pub processes: Vec<TaskProcess>,
    /// The nodes whose clocks the cluster flags as off its own, by name,
    /// with the skew it gives (`+10m0s`).
    #[serde(default)]
    pub clock_flags: BTreeMap<String, String>,
    /// The cluster version (`GET /swarm`'s `Format`) as that manager has
    /// it, when it answered.
    #[serde(default)]
    pub format: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManagerView {
    pub node: String,
    pub answered: bool,
    pub raft_id: u64,
    pub term: u64,
    pub leader_id: u64,
    pub is_leader: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ServiceView {
    pub desired: u64,
    /// Running tasks as the cluster state has them.
    pub running: u64,
    /// Task processes really alive on this machine, for services whose
    /// tasks run the harness's workload here (None for others).
    #[serde(default)]
    pub processes: Option<u64>,
}

impl ServiceView {
    /// At spec in the cluster state and, where visible, on the machine.
    pub fn at_spec(&self) -> bool {
        self.running == self.desired && self.processes.is_none_or(|p| p == self.desired)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskProcess {
    pub pid: i32,
    pub service: String,
    pub slot: u64,
    pub task_id: String,
    pub node: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FinalState {
    pub at: Millis,
    pub via: String,
    pub services: BTreeMap<String, ServiceValue>,
}

impl Journal {
    pub fn node_name(&self, raft_id: u64) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.raft_id == raft_id && raft_id != 0)
            .map(|n| n.name.as_str())
    }

    /// When the last fault, undo or rollback was done.
    pub fn last_fault_end(&self) -> Option<Millis> {
        self.faults.iter().map(|f| f.done).max()
    }
}

/// One request of the traffic load through a node's published port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// When it was sent.
    pub at: Millis,
    /// The node whose published port it went to.
    pub node: String,
    /// tcp or udp.
    pub proto: String,
    pub ok: bool,
    /// From sending to the whole answer (or to giving up), microseconds.
    pub micros: u64,
    /// Datagrams it took to get an answer (UDP tries again after a second
    /// without one); 0 when it failed, 1 for TCP.
    #[serde(default)]
    pub tries: u32,
    /// Why it failed (empty when ok).
    #[serde(default)]
    pub error: String,
}

/// What a register operation did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum RegKind {
    /// Set the register to `value`.
    Write,
    /// A local read from the manager's applied state (docs/api.md: not linearizable).
    LocalRead,
    /// A write through the manager first (a barrier: it returns once
    /// committed and applied there), then a local read from that manager:
    /// the read sees everything committed before the barrier was.
    BarrierRead,
}

/// One operation on the register, with the interval it took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegOp {
    /// The client (one at a time each).
    pub client: usize,
    pub kind: RegKind,
    /// Written, or read (None: the read found no value).
    pub value: Option<u64>,
    /// The manager it went through.
    pub via: String,
    pub invoke: Millis,
    pub complete: Millis,
    pub outcome: Outcome,
    #[serde(default)]
    pub error: String,
}
