//! Network faults injected on purpose (`shoal daemon --enable-chaos` only):
//! drop or delay what this node sends to, or receives from, given peers.

use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Drop,
    Delay,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    /// Peers' cluster addresses (IP:PORT, as they advertise them).
    pub peers: Vec<SocketAddr>,
    pub direction: Direction,
    pub action: Action,
    #[serde(default)]
    pub delay_ms: u64,
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    Delay(Duration),
}

#[derive(Default)]
pub struct Faults {
    rules: RwLock<Vec<Rule>>,
}

impl Faults {
    pub fn add(&self, rule: Rule) {
        self.rules.write().push(rule);
    }

    pub fn clear(&self) {
        self.rules.write().clear();
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.rules.read().clone()
    }

    /// The first rule that matches wins; dropping beats delaying.
    pub fn verdict(&self, peer: SocketAddr, outbound: bool) -> Verdict {
        let rules = self.rules.read();
        let mut verdict = Verdict::Pass;
        for r in rules.iter() {
            let dir = match r.direction {
                Direction::Both => true,
                Direction::Out => outbound,
                Direction::In => !outbound,
            };
            if dir && r.peers.contains(&peer) {
                match r.action {
                    Action::Drop => return Verdict::Drop,
                    Action::Delay if verdict == Verdict::Pass => {
                        verdict = Verdict::Delay(Duration::from_millis(r.delay_ms))
                    }
                    Action::Delay => {}
                }
            }
        }
        verdict
    }
}
