//! The retry layer: the one place requests are tried again.
//!
//! [`RetryStore`] wraps any [`ObjectStore`]. A Throttled or Transient failure
//! is retried after a backoff drawn with full jitter from an exponentially
//! growing cap (`initial_backoff` doubling per retry, at most `max_backoff`),
//! while attempts remain (`max_attempts`) and the request's `deadline`
//! allows. Every other error is returned at once.
//!
//! Invariants: a request never outlives its deadline on the injected clock:
//! no backoff is started that would end past it, and an attempt still running
//! when it passes is abandoned (Transient, "deadline reached"). Once the
//! cancellation token is cancelled no retry starts and a backoff sleep in
//! progress ends at once, with a Permanent error saying so; attempts already
//! running are left to finish. Listing is not retried here: a failed page
//! ends the stream with its error, and the caller lists again (listing is
//! idempotent).

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use clock::Clock;
use futures::stream::BoxStream;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config::RequestLimits;
use crate::error::{ctx, BackendError, Result};
use crate::metrics::{BackendMetrics, RetrySeries};
use crate::{Body, ObjectMeta, ObjectStore, Op, PutOptions};

/// Retries with backoff around an [`ObjectStore`].
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    limits: RequestLimits,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
    retries: Option<RetrySeries>,
}

/// The backoff before retry number `retry` (1-based): full jitter over an
/// exponentially growing cap, `initial_backoff * 2^(retry-1)` at most
/// `max_backoff`.
pub fn backoff(limits: &RequestLimits, retry: u32) -> Duration {
    let cap = limits
        .initial_backoff
        .saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        )
        .min(limits.max_backoff);
    let nanos = cap.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

impl RetryStore {
    /// Retries by `limits` (`max_attempts`, `deadline`, `initial_backoff`,
    /// `max_backoff`), measuring and sleeping on `clock`, stopped by `cancel`.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        limits: &RequestLimits,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            inner,
            limits: limits.clone(),
            clock,
            cancel,
            retries: None,
        }
    }

    /// Counts retries in `metrics.retries` (series resolved, at 0, now).
    pub fn with_metrics(mut self, metrics: &BackendMetrics) -> Self {
        self.retries = Some(metrics.retry_series(self.inner.name()));
        self
    }

    async fn run<T, F, Fut>(&self, op: Op, key: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let name = self.inner.name();
        let deadline = self.limits.deadline;
        let started_ms = self.clock.now_ms();
        let mut tries = 0u32;
        let mut last: Option<BackendError> = None;
        loop {
            let remaining = deadline.saturating_sub(self.clock.since(started_ms));
            if let Some(e) = last.take() {
                // A backoff may end a little late (a coarse clock); no attempt
                // starts at or past the deadline.
                if remaining.is_zero() {
                    return Err(give_up(e, tries, "deadline reached"));
                }
                if let Some(r) = &self.retries {
                    r.inc(op);
                }
            }
            tries += 1;
            let result = tokio::select! {
                biased;
                r = attempt() => r,
                () = self.clock.sleep(remaining) => {
                    let e = BackendError::Transient(ctx(
                        name,
                        op.as_str(),
                        key,
                        format!("request deadline of {deadline:?} passed during an attempt"),
                    ));
                    return Err(give_up(e, tries, "deadline reached"));
                }
            };
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) if tries >= self.limits.max_attempts => {
                    return Err(give_up(e, tries, "attempts exhausted"))
                }
                Err(e) => e,
            };
            if self.cancel.is_cancelled() {
                return Err(cancelled(e, tries));
            }
            let delay = backoff(&self.limits, tries);
            let after_sleep = self.clock.since(started_ms) + delay + Duration::from_millis(1);
            if after_sleep >= deadline {
                return Err(give_up(e, tries, "deadline reached"));
            }
            tracing::debug!(backend = %name, op = op.as_str(), key, attempt = tries, ?delay, error = %e, "retrying");
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(cancelled(e, tries)),
                () = self.clock.sleep(delay) => {}
            }
            last = Some(e);
        }
    }
}

/// Notes in the final error how many attempts were made and why no more.
fn give_up(mut e: BackendError, tries: u32, why: &str) -> BackendError {
    if e.is_retryable() {
        e.context_mut()
            .message
            .push_str(&format!(" (gave up after {tries} attempt(s): {why})"));
    }
    e
}

/// The error that ends a request whose retries a shutdown cancelled:
/// Permanent, so nothing above retries it, naming the last failure.
fn cancelled(e: BackendError, tries: u32) -> BackendError {
    let mut c = e.context().clone();
    c.message = format!(
        "{} ({}; retry cancelled: shutting down after {tries} attempt(s))",
        c.message,
        e.kind()
    );
    BackendError::Permanent(c)
}

#[async_trait]
impl ObjectStore for RetryStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        self.run(Op::put(opts), key, || {
            self.inner.put(key, data.clone(), opts)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.run(Op::Get, key, || self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.run(Op::GetRange, key, || {
            self.inner.get_range(key, range.clone())
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.run(Op::Head, key, || self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run(Op::Delete, key, || self.inner.delete(key)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        self.run(Op::ReclaimPartial, "", || {
            self.inner.reclaim_partial(before_ms)
        })
        .await
    }

    async fn create_container(&self) -> Result<()> {
        self.run(Op::CreateContainer, "", || self.inner.create_container())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let l = RequestLimits {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            ..Default::default()
        };
        for retry in 1..30 {
            let d = backoff(&l, retry);
            let cap = Duration::from_millis(100 * (1u64 << (retry - 1).min(3)));
            assert!(
                d <= cap.min(Duration::from_millis(800)),
                "retry {retry}: {d:?}"
            );
        }
    }
}
