//! The instrumentation layer: every call that passes is counted and timed.
//!
//! [`InstrumentedStore`] wraps any [`ObjectStore`] and records, for each call,
//! its result (`tierd_backend_requests_total`, `ok` or the error kind) and its
//! latency (`tierd_backend_request_duration_seconds`), and the payload bytes
//! of successful puts and gets. Placed under the retry layer it sees every
//! attempt; placed over the limit layer it counts attempt timeouts too, and
//! its latency includes any wait for a concurrency slot.
//!
//! Invariant: the metric handles are resolved once, when the layer is built
//! (which creates every known series at 0); a request touches atomics only.
//! Latency is real elapsed time ([`clock::Stopwatch`]), never the injected
//! clock, so a scaled clock does not inflate it.
//! A listing counts `ok` once when its stream ends without error, and each
//! error it yields; a listing dropped before its end counts nothing.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use clock::Stopwatch;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::Result;
use crate::metrics::{AttemptSeries, BackendMetrics};
use crate::{Body, ObjectMeta, ObjectStore, Op, PutOptions};

/// Counts and times every call into the wrapped [`ObjectStore`].
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    series: Arc<AttemptSeries>,
}

impl InstrumentedStore {
    /// Resolves (and so creates at 0) the series of `inner.name()` in `metrics`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: &BackendMetrics) -> Self {
        let series = Arc::new(metrics.attempt_series(inner.name()));
        Self { inner, series }
    }

    async fn measure<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        let watch = Stopwatch::start();
        let r = call.await;
        let series = self.series.op(op);
        series.observe(watch.elapsed().as_secs_f64());
        series.count(r.as_ref().map(|_| ()).map_err(|e| e.error_kind()));
        r
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        let len = data.len() as u64;
        let meta = self
            .measure(Op::put(opts), self.inner.put(key, data, opts))
            .await?;
        self.series.upload_bytes.inc_by(len);
        Ok(meta)
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let b = self.measure(Op::Get, self.inner.get(key)).await?;
        self.series.download_bytes.inc_by(b.len() as u64);
        Ok(b)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let b = self
            .measure(Op::GetRange, self.inner.get_range(key, range))
            .await?;
        self.series.download_bytes.inc_by(b.len() as u64);
        Ok(b)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.measure(Op::Head, self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.measure(Op::Delete, self.inner.delete(key)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let series = self.series.clone();
        let mut failed = false;
        // A `None` appended after the inner stream marks its end; the
        // `filter_map` drops it after counting.
        self.inner
            .list(prefix)
            .map(Some)
            .chain(futures::stream::iter([None]))
            .filter_map(move |item| {
                let list = series.op(Op::List);
                match &item {
                    Some(Err(e)) => {
                        failed = true;
                        list.count(Err(e.error_kind()));
                    }
                    None if !failed => list.count(Ok(())),
                    _ => {}
                }
                futures::future::ready(item)
            })
            .boxed()
    }

    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        self.measure(Op::ReclaimPartial, self.inner.reclaim_partial(before_ms))
            .await
    }

    async fn create_container(&self) -> Result<()> {
        self.measure(Op::CreateContainer, self.inner.create_container())
            .await
    }
}
