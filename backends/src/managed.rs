//! The one place where requests are limited, timed out, retried and counted.
//!
//! [`Managed`] wraps any [`ObjectStore`]: at most `max_concurrency` attempts in
//! flight, each bounded by `attempt_timeout`; Throttled and Transient failures
//! are retried with exponential backoff and full jitter while attempts remain and
//! the request's `deadline` allows; every attempt is counted and timed.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use rand::Rng;
use tokio::sync::Semaphore;

use crate::config::RequestLimits;
use crate::error::{ctx, BackendError, Result};
use crate::metrics::BackendMetrics;
use crate::{ObjectMeta, ObjectStore, PutOptions};

#[derive(Debug)]
pub struct Managed {
    inner: Arc<dyn ObjectStore>,
    limits: RequestLimits,
    slots: Semaphore,
    metrics: BackendMetrics,
}

/// The backoff before retry number `retry` (1-based): full jitter over an
/// exponentially growing cap.
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

impl Managed {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        limits: RequestLimits,
        metrics: BackendMetrics,
    ) -> Self {
        Self {
            slots: Semaphore::new(limits.max_concurrency.max(1)),
            inner,
            limits,
            metrics,
        }
    }

    async fn run<T, F, Fut>(&self, op: &'static str, key: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let name = self.inner.name().to_string();
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            tries += 1;
            let result = {
                let _slot = self.slots.acquire().await.map_err(|_| {
                    BackendError::Permanent(ctx(&name, op, key, "backend is shutting down"))
                })?;
                let t0 = Instant::now();
                let r = match tokio::time::timeout(self.limits.attempt_timeout, attempt()).await {
                    Ok(r) => r,
                    Err(_) => Err(BackendError::Transient(ctx(
                        &name,
                        op,
                        key,
                        format!("attempt timed out after {:?}", self.limits.attempt_timeout),
                    ))),
                };
                self.metrics
                    .duration
                    .with_label_values(&[&name, op])
                    .observe(t0.elapsed().as_secs_f64());
                let label = match &r {
                    Ok(_) => "ok",
                    Err(e) => e.kind(),
                };
                self.metrics
                    .requests
                    .with_label_values(&[&name, op, label])
                    .inc();
                r
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && tries < self.limits.max_attempts => {
                    let delay = backoff(&self.limits, tries);
                    if started.elapsed() + delay + Duration::from_millis(1) >= self.limits.deadline
                    {
                        return Err(give_up(e, tries, "deadline reached"));
                    }
                    tracing::debug!(backend = %name, op, key, attempt = tries, ?delay, error = %e, "retrying");
                    self.metrics.retries.with_label_values(&[&name, op]).inc();
                    tokio::time::sleep(delay).await;
                }
                Err(e) if e.is_retryable() => return Err(give_up(e, tries, "attempts exhausted")),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Notes in the final error how many attempts were made.
fn give_up(e: BackendError, tries: u32, why: &str) -> BackendError {
    let note = format!(" (gave up after {tries} attempt(s): {why})");
    match e {
        BackendError::Throttled(mut c) => {
            c.message.push_str(&note);
            BackendError::Throttled(c)
        }
        BackendError::Transient(mut c) => {
            c.message.push_str(&note);
            BackendError::Transient(c)
        }
        other => other,
    }
}

#[async_trait]
impl ObjectStore for Managed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        let len = data.len() as u64;
        let meta = self
            .run("put", key, || self.inner.put(key, data.clone(), opts))
            .await?;
        self.metrics
            .bytes
            .with_label_values(&[self.name(), "upload"])
            .inc_by(len);
        Ok(meta)
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let b = self.run("get", key, || self.inner.get(key)).await?;
        self.metrics
            .bytes
            .with_label_values(&[self.name(), "download"])
            .inc_by(b.len() as u64);
        Ok(b)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let b = self
            .run("get_range", key, || {
                self.inner.get_range(key, range.clone())
            })
            .await?;
        self.metrics
            .bytes
            .with_label_values(&[self.name(), "download"])
            .inc_by(b.len() as u64);
        Ok(b)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.run("head", key, || self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run("delete", key, || self.inner.delete(key)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // Pages are fetched lazily by the inner stream; a failed page ends the
        // stream with its error, and the caller lists again (listing is idempotent).
        let name = self.inner.name().to_string();
        let metrics = self.metrics.clone();
        self.inner
            .list(prefix)
            .inspect(move |r| {
                let label = match r {
                    Ok(_) => "ok",
                    Err(e) => e.kind(),
                };
                if r.is_err() {
                    metrics
                        .requests
                        .with_label_values(&[&name, "list", label])
                        .inc();
                }
            })
            .boxed()
    }

    async fn create_container(&self) -> Result<()> {
        self.run("create_container", "", || self.inner.create_container())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails the first `fail` calls with the given kind, then succeeds.
    #[derive(Debug)]
    struct Flaky {
        fail: u32,
        calls: AtomicU32,
        permanent: bool,
    }

    #[async_trait]
    impl ObjectStore for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn put(&self, _: &str, _: Bytes, _: &PutOptions) -> Result<ObjectMeta> {
            unimplemented!()
        }
        async fn get(&self, key: &str) -> Result<Bytes> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                let c = ctx("flaky", "get", key, "injected");
                return Err(if self.permanent {
                    BackendError::Permanent(c)
                } else {
                    BackendError::Throttled(c)
                });
            }
            Ok(Bytes::from_static(b"ok"))
        }
        async fn get_range(&self, _: &str, _: Range<u64>) -> Result<Bytes> {
            unimplemented!()
        }
        async fn head(&self, _: &str) -> Result<ObjectMeta> {
            unimplemented!()
        }
        async fn delete(&self, _: &str) -> Result<()> {
            unimplemented!()
        }
        fn list<'a>(&'a self, _: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
            futures::stream::empty().boxed()
        }
        async fn create_container(&self) -> Result<()> {
            Ok(())
        }
    }

    fn limits(max_attempts: u32) -> RequestLimits {
        RequestLimits {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let inner = Arc::new(Flaky {
            fail: 3,
            calls: AtomicU32::new(0),
            permanent: false,
        });
        let m = Managed::new(inner.clone(), limits(5), BackendMetrics::unregistered());
        assert_eq!(&m.get("k").await.unwrap()[..], b"ok");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 4);
        assert_eq!(
            m.metrics.retries.with_label_values(&["flaky", "get"]).get(),
            3
        );
        assert_eq!(
            m.metrics
                .requests
                .with_label_values(&["flaky", "get", "throttled"])
                .get(),
            3
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_never_retries_permanent() {
        let inner = Arc::new(Flaky {
            fail: 100,
            calls: AtomicU32::new(0),
            permanent: false,
        });
        let m = Managed::new(inner.clone(), limits(3), BackendMetrics::unregistered());
        let e = m.get("k").await.unwrap_err();
        assert!(matches!(e, BackendError::Throttled(_)));
        assert!(e.to_string().contains("gave up after 3 attempt(s)"), "{e}");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);

        let inner = Arc::new(Flaky {
            fail: 100,
            calls: AtomicU32::new(0),
            permanent: true,
        });
        let m = Managed::new(inner.clone(), limits(3), BackendMetrics::unregistered());
        assert!(matches!(m.get("k").await, Err(BackendError::Permanent(_))));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

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
