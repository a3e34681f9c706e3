//! The background loops of one part of the node, owned: each runs until
//! the part's cancellation token fires, and the part's `shutdown` waits
//! for them to end (pingora's `ShutdownWatch`, mini-redis's drop guard).
//! A loop spawned here needs no shutdown logic of its own: it is dropped
//! at its next `.await` once the token is cancelled.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a part's `shutdown` waits for its loops before aborting the
/// ones still running (a loop blocked outside an `.await`).
const GRACE: Duration = Duration::from_secs(5);

/// One part's loops and the token that ends them.
pub struct Tasks {
    token: CancellationToken,
    set: parking_lot::Mutex<JoinSet<()>>,
}

impl Tasks {
    /// Loops ended by `token` (a child of the node's root token).
    pub fn new(token: CancellationToken) -> Tasks {
        Tasks {
            token,
            set: parking_lot::Mutex::new(JoinSet::new()),
        }
    }

    /// Runs `work` until it ends or the token is cancelled. After
    /// cancellation nothing new starts.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if self.token.is_cancelled() {
            return;
        }
        let token = self.token.clone();
        let mut set = self.set.lock();
        // Loops that ended on their own are collected here, so a part that
        // spawns short ones (a forwarding burst) holds no list of them.
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = work => {}
            }
        });
    }

    /// How many loops are still running.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let mut set = self.set.lock();
        while set.try_join_next().is_some() {}
        set.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancels the token and waits for every loop to end (aborting, after
    /// a grace period, one that does not).
    pub async fn shutdown(&self) {
        self.token.cancel();
        let mut set = std::mem::take(&mut *self.set.lock());
        let drained =
            tokio::time::timeout(GRACE, async { while set.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                left = set.len(),
                "loops still running after the grace period; aborted"
            );
            set.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn shutdown_ends_a_loop_that_never_ends_by_itself() {
        let tasks = Tasks::new(CancellationToken::new());
        let ended = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Flag(ended.clone());
        tasks.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        assert_eq!(tasks.len(), 1);
        tasks.shutdown().await;
        assert!(ended.load(Ordering::SeqCst), "the loop was dropped");
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn nothing_starts_after_shutdown() {
        let tasks = Tasks::new(CancellationToken::new());
        tasks.shutdown().await;
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        tasks.spawn(async move { r.store(true, Ordering::SeqCst) });
        tokio::task::yield_now().await;
        assert!(!ran.load(Ordering::SeqCst));
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn a_parent_token_ends_a_childs_loops() {
        let root = CancellationToken::new();
        let tasks = Tasks::new(root.child_token());
        tasks.spawn(std::future::pending());
        root.cancel();
        tasks.shutdown().await;
        assert!(tasks.is_empty());
    }
}
