//! The lifecycle of background work: every task the daemon starts (heat
//! flush, policy scans, GC, trace rotation, read-ahead fetches, passes the
//! API starts) is spawned through [`Tasks`], so shutdown can cancel them all
//! with one token and wait for exactly the ones still running.
//!
//! Invariant: no background work is fire-and-forget. A task is either
//! tracked here, or owned by a caller that awaits it. Loops watch
//! [`Tasks::cancelled`] in their waits; passes check [`Tasks::is_cancelled`]
//! between extents (each extent is safe to stop after).

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The daemon's tracked tasks and the token that stops them.
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
    rt: Handle,
}

impl Tasks {
    /// Tasks spawned on `rt`, none cancelled yet.
    pub fn new(rt: Handle) -> Self {
        Self {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            rt,
        }
    }

    /// A token cancelled when shutdown begins (for code that selects on it).
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Ends once shutdown has begun.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Asks every task to stop at its next safe point.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Runs `f` as a tracked task (callable from any thread).
    pub fn spawn<F>(&self, f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn_on(f, &self.rt)
    }

    /// Runs blocking `f` on the runtime's blocking pool as a tracked task.
    pub fn spawn_blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking_on(f, &self.rt)
    }

    /// The runtime tasks run on (also where blocking code awaits futures).
    pub fn runtime(&self) -> &Handle {
        &self.rt
    }

    /// Tracked tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Waits until every tracked task has ended, including tasks spawned
    /// while waiting (a pass the scan loop starts before it sees the token).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn wait_covers_blocking_and_async_tasks_and_cancel_reaches_loops() {
        let t = Tasks::new(Handle::current());
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        t.spawn_blocking(move || d.store(true, Ordering::SeqCst));
        let looping = {
            let t2 = t.clone();
            t.spawn(async move {
                t2.cancelled().await;
                "stopped"
            })
        };
        assert!(!t.is_cancelled());
        t.cancel();
        t.wait().await;
        assert!(
            done.load(Ordering::SeqCst),
            "wait returned before a blocking task ended"
        );
        assert_eq!(looping.await.expect("loop task"), "stopped");
        assert_eq!(t.running(), 0);
    }
}
