//! Which task a new connection goes to: the running tasks of one service,
//! round robin or fewest connections first, each pick holding a count of
//! this node's open connections to that task until it is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use shoal_core::rules::port::Backend;

use shoal_core::model::port::Balance;

#[derive(Default)]
pub struct Pool {
    backends: Vec<Backend>,
    active: BTreeMap<String, Arc<AtomicUsize>>,
    next: usize,
}

/// A connection's hold on its backend: counted as open until dropped.
pub struct Held(Arc<AtomicUsize>);

impl Held {
    /// This node's open connections to the backend, this one included.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// New backends; the counts of those that stay are kept (connections in
    /// flight to them are still open).
    pub fn set(&mut self, backends: Vec<Backend>) {
        self.active
            .retain(|id, _| backends.iter().any(|b| b.task_id == *id));
        for b in &backends {
            self.active.entry(b.task_id.clone()).or_default();
        }
        self.backends = backends;
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The next backend for a new connection, skipping those in `tried`.
    pub fn pick(&mut self, balance: Balance, tried: &[String]) -> Option<(Backend, Held)> {
        let n = self.backends.len();
        let start = self.next;
        let order = (0..n).map(|i| (start + i) % n);
        let candidates: Vec<usize> = order
            .filter(|&i| !tried.contains(&self.backends[i].task_id))
            .collect();
        let count = |i: usize| {
            self.active
                .get(&self.backends[i].task_id)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        let chosen = match balance {
            Balance::RoundRobin => candidates.first().copied(),
            // Ties go in round-robin order: `min_by_key` keeps the first.
            Balance::LeastConn => candidates.iter().copied().min_by_key(|&i| count(i)),
        }?;
        self.next = (chosen + 1) % n;
        let b = self.backends[chosen].clone();
        let c = self.active.entry(b.task_id.clone()).or_default().clone();
        c.fetch_add(1, Ordering::Relaxed);
        Some((b, Held(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(ids: &[&str]) -> Vec<Backend> {
        ids.iter()
            .map(|id| Backend {
                task_id: id.to_string(),
                node_id: "n".into(),
                node_addr: "a".into(),
            })
            .collect()
    }

    #[test]
    fn round_robin_visits_every_backend_in_turn() {
        let mut p = Pool::default();
        p.set(backends(&["a", "b", "c"]));
        let picks: Vec<String> = (0..6)
            .map(|_| p.pick(Balance::RoundRobin, &[]).map(|(b, _)| b.task_id))
            .map(Option::unwrap_or_default)
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn least_conn_avoids_a_backend_holding_connections() {
        let mut p = Pool::default();
        p.set(backends(&["a", "b"]));
        let held: Vec<Held> = (0..3)
            .filter_map(|_| p.pick(Balance::LeastConn, &[]))
            .filter(|(b, _)| b.task_id == "a")
            .map(|(_, h)| h)
            .collect();
        assert!(!held.is_empty());
        for _ in 0..4 {
            let (b, _h) = p.pick(Balance::LeastConn, &[]).expect("pick");
            assert_eq!(b.task_id, "b", "a holds {} connections", held.len());
        }
        drop(held);
        assert!(p.pick(Balance::LeastConn, &["b".into()]).is_some());
    }

    #[test]
    fn tried_backends_are_skipped_and_counts_survive_a_change() {
        let mut p = Pool::default();
        p.set(backends(&["a", "b"]));
        let (first, h) = p.pick(Balance::RoundRobin, &[]).expect("pick");
        let (second, _) = p
            .pick(Balance::RoundRobin, std::slice::from_ref(&first.task_id))
            .expect("pick");
        assert_ne!(first.task_id, second.task_id);
        assert!(p
            .pick(Balance::RoundRobin, &["a".into(), "b".into()])
            .is_none());
        p.set(backends(&["a", "c"]));
        assert_eq!(p.active["a"].load(Ordering::Relaxed), 1);
        drop(h);
        assert_eq!(p.active["a"].load(Ordering::Relaxed), 0);
    }
}
