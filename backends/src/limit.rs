//! The limit layer: how much one backend is asked at once, and for how long.
//!
//! [`LimitStore`] wraps any [`ObjectStore`]. Invariant: at most
//! `max_concurrency` calls are inside the wrapped store at once, and none
//! stays longer than `attempt_timeout` of the injected clock; one that would
//! is abandoned (its future dropped) and fails as Transient, which the retry
//! layer above may retry. Time spent waiting for a slot does not count
//! against the attempt (the retry layer's deadline bounds it). Listing passes
//! through unlimited: its pages are fetched as the caller consumes them, and
//! a slot held across the caller's work would starve other requests.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use clock::Clock;
use futures::stream::BoxStream;
use tokio::sync::Semaphore;

use crate::config::RequestLimits;
use crate::error::{ctx, BackendError, Result};
use crate::{Body, ObjectMeta, ObjectStore, Op, PutOptions};

/// Concurrency slots and a per-attempt timeout around an [`ObjectStore`].
#[derive(Debug)]
pub struct LimitStore {
    inner: Arc<dyn ObjectStore>,
    slots: Semaphore,
    attempt_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl LimitStore {
    /// `limits.max_concurrency` slots (at least 1) and `limits.attempt_timeout`
    /// per call, measured on `clock`.
    pub fn new(inner: Arc<dyn ObjectStore>, limits: &RequestLimits, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            slots: Semaphore::new(limits.max_concurrency.max(1)),
            attempt_timeout: limits.attempt_timeout,
            clock,
        }
    }

    /// Slots free right now.
    pub fn available_slots(&self) -> usize {
        self.slots.available_permits()
    }

    async fn limit<T>(
        &self,
        op: Op,
        key: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let name = self.inner.name();
        // The semaphore is never closed; the error path is for completeness.
        let _slot = self.slots.acquire().await.map_err(|_| {
            BackendError::Permanent(ctx(name, op.as_str(), key, "backend is shutting down"))
        })?;
        tokio::select! {
            r = call => r,
            () = self.clock.sleep(self.attempt_timeout) => Err(BackendError::Transient(ctx(
                name,
                op.as_str(),
                key,
                format!("attempt timed out after {:?}", self.attempt_timeout),
            ))),
        }
    }
}

#[async_trait]
impl ObjectStore for LimitStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        self.limit(Op::put(opts), key, self.inner.put(key, data, opts))
            .await
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.limit(Op::Get, key, self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.limit(Op::GetRange, key, self.inner.get_range(key, range))
            .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.limit(Op::Head, key, self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.limit(Op::Delete, key, self.inner.delete(key)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        self.limit(
            Op::ReclaimPartial,
            "",
            self.inner.reclaim_partial(before_ms),
        )
        .await
    }

    async fn create_container(&self) -> Result<()> {
        self.limit(Op::CreateContainer, "", self.inner.create_container())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faulty::FaultyStore;
    use crate::tests::drive;
    use crate::MemoryStore;
    use clock::ManualClock;
    use std::task::Poll;

    fn limits(max_concurrency: usize) -> RequestLimits {
        RequestLimits {
            max_concurrency,
            attempt_timeout: Duration::from_secs(30),
            ..Default::default()
        }
    }

    fn delayed(clock: &Arc<ManualClock>, op: Op, delay: Duration) -> Arc<FaultyStore> {
        let faulty = Arc::new(FaultyStore::with_clock(
            Arc::new(MemoryStore::new("mem")),
            clock.clone(),
        ));
        faulty.delay(op, delay);
        faulty
    }

    #[tokio::test]
    async fn an_attempt_past_its_timeout_is_transient() {
        let clock = Arc::new(ManualClock::new(0));
        let faulty = delayed(&clock, Op::Get, Duration::from_secs(3600));
        let store = LimitStore::new(faulty.clone(), &limits(4), clock.clone());
        let mut get = std::pin::pin!(store.get("k"));
        assert!(futures::poll!(get.as_mut()).is_pending());
        assert_eq!(faulty.calls(Op::Get), 1);
        assert_eq!(store.available_slots(), 3, "the attempt holds a slot");
        clock.advance(Duration::from_secs(29));
        assert!(
            futures::poll!(get.as_mut()).is_pending(),
            "29 s of a 30 s timeout"
        );
        clock.advance(Duration::from_secs(1));
        let Poll::Ready(r) = futures::poll!(get.as_mut()) else {
            panic!("the timeout ends the attempt once the clock passes it");
        };
        let e = r.expect_err("timed out");
        assert!(matches!(e, BackendError::Transient(_)), "{e}");
        assert!(e.to_string().contains("timed out after 30s"), "{e}");
        assert_eq!(store.available_slots(), 4, "the slot is given back");
    }

    #[tokio::test]
    async fn no_more_than_max_concurrency_calls_are_inside() {
        let clock = Arc::new(ManualClock::new(0));
        let faulty = delayed(&clock, Op::Head, Duration::from_secs(1));
        let store = LimitStore::new(faulty.clone(), &limits(2), clock.clone());
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let mut heads = std::pin::pin!(futures::future::join_all(
            keys.iter().map(|k| store.head(k))
        ));
        assert!(futures::poll!(heads.as_mut()).is_pending());
        assert_eq!(faulty.calls(Op::Head), 2, "two slots, two calls inside");
        assert_eq!(store.available_slots(), 0);
        let results = drive(&clock, Duration::from_secs(1), heads).await;
        assert!(results
            .iter()
            .all(|r| matches!(r, Err(e) if e.is_not_found())));
        assert_eq!(faulty.calls(Op::Head), 5);
        assert_eq!(clock.now_ms(), 3_000, "two by two: three rounds of 1 s");
        assert_eq!(store.available_slots(), 2);
    }
}
