//! The node's actor tree as its parts see it: the root supervisor, under
//! which each part starts its subtrees by name and stops them again.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use shoal_actors::supervision::{ChildSpec, Directory, SupervisorMsg};

use super::NodeError;

#[derive(Clone)]
pub struct Tree {
    root: ActorRef<SupervisorMsg>,
    pub directory: Arc<Directory>,
}

impl Tree {
    pub fn new(root: ActorRef<SupervisorMsg>, directory: Arc<Directory>) -> Tree {
        Tree { root, directory }
    }

    /// Starts `spec` under the root; returns once it runs.
    pub async fn start(&self, spec: ChildSpec) -> Result<(), NodeError> {
        let r = self
            .root
            .call(
                |reply| SupervisorMsg::StartChild(spec, Some(reply)),
                Some(Duration::from_secs(10)),
            )
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        match r {
            ractor::rpc::CallResult::Success(Ok(())) => Ok(()),
            ractor::rpc::CallResult::Success(Err(e)) => Err(NodeError::Actors(e)),
            _ => Err(NodeError::Actors("timed out starting actors".into())),
        }
    }

    /// Tells the root to stop its child `name` (on purpose: not restarted).
    pub fn stop(&self, name: &str) {
        let _ = self
            .root
            .send_message(SupervisorMsg::StopChild(name.into()));
    }

    /// Stops the root's children `names`, then waits, at most `within`,
    /// until the actor `gone` (one of their subtree's) has left the
    /// directory. Whether it has.
    pub async fn stop_until_gone(&self, names: &[&str], gone: &str, within: Duration) -> bool {
        for name in names {
            self.stop(name);
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.directory.cell(gone).is_some() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}
