//! Object stores that cold extents are tiered to, behind one trait.
//!
//! Nothing above [`ObjectStore`] knows which cloud it talks to: `fs` (a local
//! directory, the embedded default), `s3` (`aws-sdk-s3`), `azure`
//! (`azure_storage_blobs`) and [`MemoryStore`] (in memory, for tests and
//! tools) implement it. [`build`] wraps each configured backend in a stack of
//! layers, each an [`ObjectStore`] itself with one job (see [`layered`]):
//!
//! ```text
//! RetryStore          retries Throttled/Transient, backoff with full jitter, deadline
//!  └ InstrumentedStore counts and times every attempt
//!     └ LimitStore      concurrency slots, per-attempt timeout
//!        └ fs | s3 | azure | memory
//! ```
//!
//! Time (deadlines, backoff sleeps, attempt timeouts) comes from an injected
//! [`clock::Clock`], and a shutdown ends backoff sleeps through a
//! [`CancellationToken`]; both travel in [`BuildEnv`]. With the `testing`
//! feature the crate also offers `conformance` (the behaviour every backend
//! must show) and `faulty` (a wrapper that injects failures). This crate
//! never depends on the heat map or the tiering engine.

mod azure;
mod body;
mod config;
#[cfg(feature = "testing")]
pub mod conformance;
mod error;
pub mod failpoint;
#[cfg(feature = "testing")]
pub mod faulty;
mod fs;
pub mod instrumented;
pub mod limit;
mod memory;
mod metrics;
pub mod retry;
mod s3;
#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use clock::{Clock, SystemClock};
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

pub use body::Body;
pub use config::{
    AzureConfig, BackendConfig, FsConfig, RequestLimits, S3Config, Secret, AZURE_ACCESS_TIERS,
    S3_STORAGE_CLASSES,
};
pub use error::{BackendError, ErrorContext, ErrorKind, Result};
pub use instrumented::InstrumentedStore;
pub use limit::LimitStore;
pub use memory::MemoryStore;
pub use metrics::{BackendMetrics, REQUEST_RESULTS};
pub use retry::RetryStore;

/// Size and version tag of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key as the caller named it (without the backend's prefix).
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// Per-upload choices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// S3 storage class or Azure access tier; `None` uses the backend's setting.
    pub tier: Option<String>,
    /// Store only if no object has the key (S3 and Azure `If-None-Match: *`,
    /// a hard link on the fs backend); an existing one fails the put with
    /// [`BackendError::PreconditionFailed`] and stays as it was. Manifests use
    /// it so that nothing is ever overwritten. A retried put whose first
    /// attempt did land also fails so: callers compare what is there.
    pub if_absent: bool,
}

impl PutOptions {
    /// A put that never replaces an existing object.
    pub fn if_absent() -> Self {
        Self {
            tier: None,
            if_absent: true,
        }
    }
}

/// The operations of [`ObjectStore`], for metrics labels, error contexts and
/// fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Get,
    GetRange,
    Head,
    Delete,
    List,
    CreateContainer,
    /// A put with `if_absent` (manifests, fencing claims): counted apart so
    /// that data uploads stay what `put` counts.
    PutIfAbsent,
    /// Removing what unfinished uploads left (see `reclaim_partial`).
    ReclaimPartial,
}

impl Op {
    /// Every operation, in a fixed order.
    pub const ALL: [Op; 9] = [
        Op::Put,
        Op::Get,
        Op::GetRange,
        Op::Head,
        Op::Delete,
        Op::List,
        Op::CreateContainer,
        Op::PutIfAbsent,
        Op::ReclaimPartial,
    ];

    /// The name used in error contexts and as the `op` metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::GetRange => "get_range",
            Op::Head => "head",
            Op::Delete => "delete",
            Op::List => "list",
            Op::CreateContainer => "create_container",
            Op::PutIfAbsent => "put_if_absent",
            Op::ReclaimPartial => "reclaim_partial",
        }
    }

    /// The operation a put with `opts` is.
    pub fn put(opts: &PutOptions) -> Op {
        if opts.if_absent {
            Op::PutIfAbsent
        } else {
            Op::Put
        }
    }

    /// Position in [`Op::ALL`], for per-operation tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The operations the tiering engine needs from an object store.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// The configured name of this backend, for errors and metrics.
    fn name(&self) -> &str;
    /// Stores `data` under `key`, replacing any object there unless
    /// `opts.if_absent`. The service verifies a content checksum where it can.
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta>;
    /// The whole object, in the pieces it arrived in (see [`Body`]).
    async fn get(&self, key: &str) -> Result<Body>;
    /// Bytes `range` of the object; a range running past the end is cut at the
    /// end, and one starting at or after a non-empty object's end is an error.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    async fn head(&self, key: &str) -> Result<ObjectMeta>;
    /// Deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every object whose key starts with `prefix`, in key order, fetched page by page.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>>;
    /// Creates the bucket or container if it is missing.
    async fn create_container(&self) -> Result<()>;
    /// Removes what uploads started before `before_ms` (Unix time) and never
    /// finished left behind (a process killed mid-upload): temporary files,
    /// multipart uploads, uncommitted blocks. Returns how many it removed.
    /// Completed objects are never touched.
    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        let _ = before_ms;
        Ok(0)
    }
}

/// What the layers around every backend share in a process: where metrics
/// go, what time it is, and when to stop retrying.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    /// Where every layer counts (see [`BackendMetrics`]).
    pub metrics: BackendMetrics,
    /// The clock of deadlines, backoff sleeps and attempt timeouts; the
    /// daemon's (scaled by `server.clock_speed`), or a `ManualClock` in tests.
    /// Attempt latencies in the metrics are always real time.
    pub clock: Arc<dyn Clock>,
    /// Cancelled at shutdown: backoff sleeps end at once with a Permanent
    /// "retry cancelled: shutting down" error and no retry starts. Attempts
    /// in flight run to their end (uploads in flight may finish).
    pub cancel: CancellationToken,
}

impl BuildEnv {
    /// Real time, never cancelled, counting into `metrics`.
    pub fn new(metrics: BackendMetrics) -> Self {
        Self {
            metrics,
            clock: Arc::new(SystemClock),
            cancel: CancellationToken::new(),
        }
    }

    /// The same, on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same, stopping retries when `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
}

/// Wraps `inner` in the layers [`build`] puts around every backend, outermost
/// first: [`RetryStore`] (backoff and deadline from `limits`, sleeping on
/// `env.clock`, stopped by `env.cancel`, counting retries), then
/// [`InstrumentedStore`] (every attempt counted and timed), then
/// [`LimitStore`] (`limits.max_concurrency` slots, `limits.attempt_timeout`
/// per attempt on `env.clock`). Every metric series of the backend exists,
/// at 0, once this returns.
pub fn layered(
    inner: Arc<dyn ObjectStore>,
    limits: &RequestLimits,
    env: &BuildEnv,
) -> Arc<dyn ObjectStore> {
    let limited = Arc::new(LimitStore::new(inner, limits, env.clock.clone()));
    let instrumented = Arc::new(InstrumentedStore::new(limited, &env.metrics));
    Arc::new(
        RetryStore::new(instrumented, limits, env.clock.clone(), env.cancel.clone())
            .with_metrics(&env.metrics),
    )
}

/// Builds the backend `name` from its configuration, wrapped in the layers of
/// [`layered`], on real time and never cancelled. `default_root` is where an
/// fs backend without `root` keeps its objects. Same as [`build_with`] with
/// `BuildEnv::new(metrics)`.
pub async fn build(
    name: &str,
    config: &BackendConfig,
    default_root: &Path,
    metrics: BackendMetrics,
) -> Result<Arc<dyn ObjectStore>> {
    build_with(name, config, default_root, &BuildEnv::new(metrics)).await
}

/// Builds the backend `name` from its configuration, wrapped in the layers of
/// [`layered`] with `env`'s metrics, clock and cancellation; creates the
/// bucket or container first when the configuration asks for it.
pub async fn build_with(
    name: &str,
    config: &BackendConfig,
    default_root: &Path,
    env: &BuildEnv,
) -> Result<Arc<dyn ObjectStore>> {
    config
        .validate()
        .map_err(|m| BackendError::Permanent(error::ctx(name, "configure", "", m)))?;
    let inner: Arc<dyn ObjectStore> = match config {
        BackendConfig::Fs(c) => {
            let root = c.root.clone().unwrap_or_else(|| default_root.to_path_buf());
            Arc::new(fs::FsStore::new(name, &root)?)
        }
        BackendConfig::S3(c) => Arc::new(s3::S3Store::new(name, c).await?),
        BackendConfig::Azure(c) => Arc::new(azure::AzureStore::new(name, c)?),
    };
    let store = layered(inner, config.limits(), env);
    let wants_create = match config {
        BackendConfig::S3(c) => c.create_bucket,
        BackendConfig::Azure(c) => c.create_container,
        BackendConfig::Fs(_) => false,
    };
    if wants_create {
        store.create_container().await?;
    }
    Ok(store)
}
