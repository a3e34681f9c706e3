//! The harness's network between an agent and the manager: open, or cut in
//! both directions at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ractor::ActorRef;

use crate::session::{AgentLink, AgentMsg, DispatcherLink, DispatcherMsg};
use crate::supervision::Directory;

/// One node's connection to the manager.
pub struct Wire {
    cut: AtomicBool,
    /// The manager's actors, where the dispatcher is found while it leads.
    manager: Arc<Directory>,
}

impl Wire {
    pub fn new(manager: Arc<Directory>) -> Arc<Self> {
        Arc::new(Wire {
            cut: AtomicBool::new(false),
            manager,
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
        self.0.manager.get("dispatcher")
    }

    fn agent_link(&self, agent: &ActorRef<AgentMsg>) -> Arc<dyn AgentLink> {
        Arc::new(WiredAgent {
            wire: self.0.clone(),
            agent: agent.clone(),
        })
    }
}

/// The dispatcher's way to an agent: what it sends while the wire is cut is lost.
struct WiredAgent {
    wire: Arc<Wire>,
    agent: ActorRef<AgentMsg>,
}

impl AgentLink for WiredAgent {
    fn send(&self, msg: AgentMsg) {
        if !self.wire.is_cut() {
            let _ = self.agent.send_message(msg);
        }
    }
}
