//! The harness's network between an agent and the managers: a node's wire
//! is open or cut in both directions at once, and through it the agent
//! finds the dispatcher of whichever reachable manager leads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ractor::ActorRef;

use super::managers::Managers;
use crate::session::{AgentLink, AgentMsg, DispatcherLink, DispatcherMsg};

/// One node's connection to the managers.
pub struct Wire {
    cut: AtomicBool,
    managers: Arc<Managers>,
}

impl Wire {
    pub fn new(managers: Arc<Managers>) -> Arc<Self> {
        Arc::new(Wire {
            cut: AtomicBool::new(false),
            managers,
        })
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

/// The agent's way to the dispatcher, through its node's wire.
pub struct WireLink(pub Arc<Wire>);

impl DispatcherLink for WireLink {
    fn current(&self) -> Option<ActorRef<DispatcherMsg>> {
        if self.0.is_cut() {
            return None;
        }
        self.0.managers.dispatcher().map(|(_, d)| d)
    }

    fn agent_link(&self, agent: &ActorRef<AgentMsg>) -> Arc<dyn AgentLink> {
        Arc::new(WiredAgent {
            wire: self.0.clone(),
            manager: self.0.managers.dispatcher().map(|(i, _)| i),
            agent: agent.clone(),
        })
    }
}

/// A dispatcher's way to an agent: what it sends while the wire is cut, or
/// while its own manager is down or cut off, is lost.
struct WiredAgent {
    wire: Arc<Wire>,
    /// The manager whose dispatcher the agent was talking to.
    manager: Option<usize>,
    agent: ActorRef<AgentMsg>,
}

impl AgentLink for WiredAgent {
    fn send(&self, msg: AgentMsg) {
        let reachable = self.manager.is_none_or(|i| self.wire.managers.reachable(i));
        if !self.wire.is_cut() && reachable {
            let _ = self.agent.send_message(msg);
        }
    }
}
