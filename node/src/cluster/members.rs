//! What a node without the cluster state (a worker) knows of the swarm's
//! members, from the leader's dispatcher (`session::Members`): every node's
//! role and certificate generation, and the removed ids. With it, a worker
//! judges its peers as a manager does from the state: a removed node is
//! refused, a certificate older than its node's generation is superseded,
//! and only a node that is a manager now may send what managers send.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use shoal_actors::session::Members;
use shoal_core::model::NodeRole;

use crate::transport::PeerId;

/// What a peer may do, decided per request. The certificate proves who the
/// peer is; its role comes from the replicated state as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Manager,
    Worker,
    /// Its certificate is of an older generation than the state's (the
    /// node's role changed since it was issued): every request is refused.
    /// Its connections stay open, so that answers already on their way (the
    /// write that demoted it) still arrive.
    Stale,
    /// Removed from the swarm: its connections are closed.
    Removed,
}

#[derive(Default)]
pub struct PeerView(RwLock<Option<Members>>);

impl PeerView {
    /// The peer's standing by the members last learned; `from_cert` for a
    /// node they do not name (or name with an older generation than its
    /// certificate's: it changed role since), or before any arrived.
    pub fn standing(&self, peer: &PeerId, from_cert: Standing) -> Standing {
        let guard = self.0.read();
        let Some(members) = guard.as_ref() else {
            return from_cert;
        };
        if members.removed.contains(&peer.node_id) {
            return Standing::Removed;
        }
        match members.nodes.iter().find(|m| m.id == peer.node_id) {
            None => from_cert,
            Some(m) if peer.generation < m.cert_generation => Standing::Stale,
            Some(m) if peer.generation > m.cert_generation => from_cert,
            Some(m) if m.role == NodeRole::Manager => Standing::Manager,
            Some(_) => Standing::Worker,
        }
    }

    /// Takes newer members; the ids removed since the last ones.
    pub fn update(&self, members: Members) -> Vec<String> {
        let mut guard = self.0.write();
        let newly_removed = members
            .removed
            .iter()
            .filter(|id| !guard.as_ref().is_some_and(|old| old.removed.contains(id)))
            .cloned()
            .collect();
        *guard = Some(members);
        newly_removed
    }

    /// Forgets them (the node left the swarm).
    pub fn clear(&self) {
        *self.0.write() = None;
    }
}

/// The newest Raft term a leader's push (`OneWay::ToAgent`) came with. The
/// leader of the newest term holds this node's session; what a deposed
/// leader still sends (stamped with its older term) is dropped, and the
/// ordered pipe keeps one leader's pushes in the order they were made.
#[derive(Default)]
pub struct PushTerm(AtomicU64);

impl PushTerm {
    /// Whether a push of `term` comes from the leader of the newest term
    /// seen; a newer term becomes the one pushes are judged by.
    pub fn admit(&self, term: u64) -> bool {
        self.0.fetch_max(term, Ordering::AcqRel) <= term
    }

    /// Forgets the term (the node left the swarm: another swarm counts
    /// its terms from the start).
    pub fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use shoal_actors::session::Member;

    use super::*;

    fn peer(id: &str, generation: u64) -> PeerId {
        PeerId {
            node_id: id.into(),
            role: String::new(),
            cluster_id: String::new(),
            generation,
        }
    }

    #[test]
    fn removed_nodes_and_old_generations_are_judged_as_a_manager_would() {
        let view = PeerView::default();
        assert_eq!(
            view.standing(&peer("m2", 0), Standing::Manager),
            Standing::Manager
        );
        let members = Members {
            nodes: vec![
                Member {
                    id: "m1".into(),
                    role: NodeRole::Manager,
                    cert_generation: 0,
                },
                Member {
                    id: "m2".into(),
                    role: NodeRole::Worker,
                    cert_generation: 1,
                },
            ],
            removed: vec!["w9".into()],
        };
        assert_eq!(view.update(members.clone()), vec!["w9".to_string()]);
        assert!(view.update(members).is_empty());
        // A demoted manager's old certificate, and its new one.
        assert_eq!(
            view.standing(&peer("m2", 0), Standing::Manager),
            Standing::Stale
        );
        assert_eq!(
            view.standing(&peer("m2", 1), Standing::Worker),
            Standing::Worker
        );
        // Promoted since: its newer certificate is believed.
        assert_eq!(
            view.standing(&peer("m2", 2), Standing::Manager),
            Standing::Manager
        );
        assert_eq!(
            view.standing(&peer("m1", 0), Standing::Manager),
            Standing::Manager
        );
        assert_eq!(
            view.standing(&peer("w9", 0), Standing::Worker),
            Standing::Removed
        );
        assert_eq!(
            view.standing(&peer("new", 0), Standing::Worker),
            Standing::Worker
        );
    }

    #[test]
    fn pushes_of_an_older_term_are_dropped() {
        let terms = PushTerm::default();
        assert!(terms.admit(3), "the first push sets the term");
        assert!(terms.admit(3), "the same leader again");
        assert!(!terms.admit(2), "a deposed leader's late push");
        assert!(terms.admit(5), "a new leader");
        assert!(!terms.admit(3));
        terms.clear();
        assert!(terms.admit(1), "another swarm after leaving");
    }
}
