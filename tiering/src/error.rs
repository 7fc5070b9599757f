//! The tiering crate's one error type. Each variant carries the context an
//! operator needs: the volume, the extent, the path or the key.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::ConfigError;

#[derive(Debug, Error)]
pub enum TierError {
    #[error("volume {0:?} not found")]
    VolumeNotFound(String),
    #[error("volume {0:?} already exists")]
    VolumeExists(String),
    #[error("invalid volume name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unknown storage class {class:?} (configured classes: {known})")]
    UnknownClass { class: String, known: String },
    #[error("volume {volume:?} is in use by {connections} NBD connection(s); disconnect them or pass force")]
    VolumeBusy { volume: String, connections: usize },
    #[error("volume {volume:?}: {op} on {path}: {source}")]
    Io {
        volume: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store: {op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    #[error("metadata store: corrupt record {key:?}: {reason}")]
    CorruptMetadata { key: String, reason: String },
    #[error("volume {volume:?} extent {extent}: object {key:?} failed verification: {reason}")]
    Integrity {
        volume: String,
        extent: u64,
        key: String,
        reason: String,
    },
    #[error("volume {volume:?} extent {extent}: cannot fetch object {key:?}: {reason}")]
    Fetch {
        volume: String,
        extent: u64,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Backend(#[from] backends::BackendError),
    #[error("volume {volume:?}: {reason}")]
    Busy { volume: String, reason: String },
    #[error(transparent)]
    Heat(#[from] heatmap::HeatError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Trace(#[from] crate::sim::trace::TraceError),
    #[error("pricing: {0}")]
    Cost(#[from] crate::sim::cost::CostError),
    #[error(transparent)]
    Chart(#[from] crate::sim::chart::ChartError),
    #[error("cannot render metrics: {0}")]
    Metrics(String),
    #[error("{context}: {source}")]
    Startup {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = TierError> = std::result::Result<T, E>;
