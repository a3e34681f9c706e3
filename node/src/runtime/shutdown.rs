//! The order a node stops in, as data: `Runtime::shutdown` walks `ORDER`,
//! and a test checks it against what each step depends on. The rule: a
//! step stops only once every step that depends on it has stopped, so no
//! part outlives what it uses (no Raft message after the transport is
//! closed, no mesh listener reopened by a table after the mesh is cleared,
//! no overlay interface after its sandbox is gone).

/// One step of a node's stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// What answers from outside or acts on its own: the control API, the
    /// metrics listener, certificate renewal.
    Front,
    /// The worker part's actors (agent, task actors, dispatcher proxy) and
    /// loops; the tasks themselves stay (see `worker.rs`).
    Worker,
    /// The manager part: its actors (Raft, store, leader actors), loops and
    /// the Raft log's last flush.
    Manager,
    /// The network stack: mesh, DNS, overlay data plane, transport.
    Network,
    /// The host state the tasks and the network stand on: the sandbox and
    /// the confiner's cgroups (the worker part's `close`).
    Host,
    /// The node's sled store, flushed.
    Store,
}

/// The order `Runtime::shutdown` stops a node in.
pub const ORDER: [Step; 6] = [
    Step::Front,
    Step::Worker,
    Step::Manager,
    Step::Network,
    Step::Host,
    Step::Store,
];

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Front => "front",
            Step::Worker => "worker",
            Step::Manager => "manager",
            Step::Network => "network",
            Step::Host => "host",
            Step::Store => "store",
        }
    }

    /// What this step uses while it runs, and so must outlive it.
    pub fn depends_on(self) -> &'static [Step] {
        match self {
            // Handlers reach every part and read the store.
            Step::Front => &[
                Step::Worker,
                Step::Manager,
                Step::Network,
                Step::Host,
                Step::Store,
            ],
            // The agent talks to this node's dispatcher when it leads, the
            // proxy sends through the transport, the agent feeds the mesh,
            // tasks sit in the sandbox.
            Step::Worker => &[Step::Manager, Step::Network, Step::Host],
            // Raft sends through the transport and writes to the store.
            Step::Manager => &[Step::Network, Step::Store],
            // The overlay's interfaces and the mesh's backends are in the
            // sandbox.
            Step::Network => &[Step::Host],
            Step::Host => &[],
            Step::Store => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(step: Step) -> usize {
        ORDER
            .iter()
            .position(|s| *s == step)
            .unwrap_or_else(|| panic!("{step:?} is not in ORDER"))
    }

    #[test]
    fn no_step_stops_before_a_step_that_depends_on_it() {
        for step in ORDER {
            for used in step.depends_on() {
                assert!(
                    position(step) < position(*used),
                    "{step:?} uses {used:?}, which would stop first"
                );
            }
        }
    }

    #[test]
    fn every_step_stops_once() {
        let all = [
            Step::Front,
            Step::Worker,
            Step::Manager,
            Step::Network,
            Step::Host,
            Step::Store,
        ];
        for step in all {
            assert_eq!(ORDER.iter().filter(|s| **s == step).count(), 1, "{step:?}");
        }
        assert_eq!(ORDER.len(), all.len());
    }
}
