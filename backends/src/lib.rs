//! Object stores that cold extents are tiered to, behind one trait.
//!
//! Nothing above [`ObjectStore`] knows which cloud it talks to: `fs` (a local
//! directory, the embedded default), `s3` (`aws-sdk-s3`) and `azure`
//! (`azure_storage_blobs`) implement it, and [`build`] wraps each in
//! [`Managed`], the one place that limits, times out, retries and counts
//! requests. This crate never depends on the heat map or the tiering engine.

mod azure;
mod config;
pub mod conformance;
mod error;
mod fs;
mod managed;
mod metrics;
mod s3;

use std::fmt::Debug;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use config::{
    AzureConfig, BackendConfig, FsConfig, RequestLimits, S3Config, Secret, AZURE_ACCESS_TIERS,
    S3_STORAGE_CLASSES,
};
pub use error::{BackendError, ErrorContext, Result};
pub use managed::Managed;
pub use metrics::BackendMetrics;

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
}

/// The operations the tiering engine needs from an object store.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// The configured name of this backend, for errors and metrics.
    fn name(&self) -> &str;
    /// Stores `data` under `key`, replacing any object there. The service
    /// verifies a content checksum where it can.
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta>;
    async fn get(&self, key: &str) -> Result<Bytes>;
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
}

/// Builds the backend `name` from its configuration, wrapped in [`Managed`].
/// `default_root` is where an fs backend without `root` keeps its objects.
pub async fn build(
    name: &str,
    config: &BackendConfig,
    default_root: &Path,
    metrics: BackendMetrics,
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
    let store: Arc<dyn ObjectStore> =
        Arc::new(Managed::new(inner, config.limits().clone(), metrics));
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
