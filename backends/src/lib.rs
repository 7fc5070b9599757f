//! Object stores that cold extents are tiered to, behind one trait.
//!
//! Nothing above [`ObjectStore`] knows which cloud it talks to. The S3, Azure
//! Blob and local-filesystem implementations land with the backends issue; this
//! crate never depends on the heat map or the tiering engine.

use std::fmt::Debug;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

/// What went wrong talking to an object store, classified so callers can tell
/// whether a retry may help.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("{backend}: {op} {key}: object not found")]
    NotFound {
        backend: String,
        op: &'static str,
        key: String,
    },
    #[error("{backend}: {op} {key}: permanent error: {message}")]
    Permanent {
        backend: String,
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("{backend}: {op} {key}: transient error: {message}")]
    Transient {
        backend: String,
        op: &'static str,
        key: String,
        message: String,
    },
}

/// Size and version tag of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// The operations the tiering engine needs from an object store.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// The configured name of this backend, for errors and metrics.
    fn name(&self) -> &str;
    async fn put(&self, key: &str, data: Bytes) -> Result<ObjectMeta, BackendError>;
    async fn get(&self, key: &str) -> Result<Bytes, BackendError>;
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, BackendError>;
    async fn head(&self, key: &str) -> Result<ObjectMeta, BackendError>;
    /// Deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<(), BackendError>;
}
