//! The daemon crate's one error type, and [`ErrorKind`]: the one mapping from
//! an error to what each interface says about it (the admin API's status and
//! code, the NBD error reply, the CLI's exit code).
//!
//! Each variant carries the context an operator needs: the volume, the
//! extent, the path or the key. RocksDB's error type stays inside `db`
//! ([`DbError`] is opaque), and a failed fetch keeps its backend error kind.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::config::ConfigError;

/// A metadata-store failure, opaque so RocksDB's types stay private to `db`.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct DbError(pub(crate) String);

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
    #[error("volume {volume:?} would need {needed} more open file(s), but the daemon holds {open} layer files and its open-file limit (RLIMIT_NOFILE {limit}, {reserved} of it kept for RocksDB and connections) allows {allowed}; raise the limit (ulimit -n, systemd LimitNOFILE, the container's nofile) and restart")]
    TooManyFiles {
        volume: String,
        needed: u64,
        open: u64,
        limit: u64,
        reserved: u64,
        allowed: u64,
    },
    #[error("unknown storage class {class:?} (configured classes: {known})")]
    UnknownClass { class: String, known: String },
    #[error("volume {volume:?} has no snapshot {snapshot:?}{}", known_list(.known))]
    SnapshotNotFound {
        volume: String,
        snapshot: String,
        known: Vec<String>,
    },
    #[error("volume {volume:?} already has a snapshot {snapshot:?}")]
    SnapshotExists { volume: String, snapshot: String },
    #[error("export {export:?} is a snapshot: it is read-only")]
    ReadOnly { export: String },
    #[error("volume {volume:?} has clones ({}) that read data its snapshots share; delete them first, or pass keep_clones (CLI: --keep-clones) to delete it and its snapshots while the clones keep that data", .clones.join(", "))]
    HasClones { volume: String, clones: Vec<String> },
    #[error("volume {volume:?} is fenced: generation {newer} in backend {backend:?} was taken by another node (this node holds {ours}); it no longer writes the volume or its objects")]
    Fenced {
        volume: String,
        backend: String,
        ours: u64,
        newer: u64,
    },
    #[error("backup {backup:?} of volume {volume:?} not found in backend {backend:?}{}", backup_list(.known))]
    BackupNotFound {
        volume: String,
        backup: String,
        backend: String,
        known: Vec<String>,
    },
    #[error("backup {key:?} in backend {backend:?} cannot be used: {reason}")]
    BadBackup {
        backend: String,
        key: String,
        reason: String,
    },
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
        source: DbError,
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
    #[error("volume {volume:?} extent {extent}: cannot fetch object {key:?}: {source}")]
    Fetch {
        volume: String,
        extent: u64,
        key: String,
        #[source]
        source: Arc<backends::BackendError>,
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
    Sim(#[from] sim::SimError),
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

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (it has none)".into()
    } else {
        format!(" (snapshots: {})", known.join(", "))
    }
}

fn backup_list(known: &[String]) -> String {
    if known.is_empty() {
        " (the backend holds no backup of it)".into()
    } else {
        format!(" (backups: {})", known.join(", "))
    }
}

/// What kind of failure an error is, for every interface alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request named something that does not exist.
    NotFound,
    /// The request conflicts with the state (exists already, in use, busy).
    Conflict,
    /// The request itself is wrong (bad argument, name or class).
    InvalidInput,
    /// The admin API wants its bearer token.
    Unauthorized,
    /// The configuration cannot be used.
    InvalidConfig,
    /// The object store failed or is unreachable; retrying later may work.
    Unavailable,
    /// Stored data failed verification: never served.
    Corrupt,
    /// The local disk is full.
    NoSpace,
    /// The local filesystem refused (read-only, permissions).
    PermissionDenied,
    /// Anything else: a bug or a local I/O failure.
    Internal,
}

impl ErrorKind {
    const ALL: [ErrorKind; 10] = [
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::InvalidInput,
        ErrorKind::Unauthorized,
        ErrorKind::InvalidConfig,
        ErrorKind::Unavailable,
        ErrorKind::Corrupt,
        ErrorKind::NoSpace,
        ErrorKind::PermissionDenied,
        ErrorKind::Internal,
    ];

    /// The admin API's HTTP status.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::InvalidInput => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::InvalidConfig => 422,
            ErrorKind::Unavailable => 502,
            ErrorKind::NoSpace => 507,
            ErrorKind::Corrupt | ErrorKind::PermissionDenied | ErrorKind::Internal => 500,
        }
    }

    /// The NBD error reply (NBD's values are Linux's errno numbers).
    pub fn nbd_errno(self) -> u32 {
        let errno = match self {
            ErrorKind::InvalidInput => libc::EINVAL,
            ErrorKind::NoSpace => libc::ENOSPC,
            ErrorKind::PermissionDenied | ErrorKind::Unauthorized => libc::EPERM,
            _ => libc::EIO,
        };
        errno as u32
    }

    /// The CLI's exit code: 2 for configuration, as `tierd serve` and
    /// `tierd check` have always used it; distinct codes for the rest so
    /// scripts can tell "not found" from "try again" (1 for anything local:
    /// corrupt data, a full or read-only disk, a bug).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidConfig => 2,
            ErrorKind::InvalidInput => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::Conflict => 5,
            ErrorKind::Unavailable => 6,
            ErrorKind::Unauthorized => 7,
            ErrorKind::Corrupt | ErrorKind::NoSpace | ErrorKind::PermissionDenied => 1,
            ErrorKind::Internal => 1,
        }
    }

    /// The name the API's error body carries in `error.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind an API error body names (the CLI reads it back).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl TierError {
    /// What kind of failure this is: the one mapping every interface uses.
    pub fn kind(&self) -> ErrorKind {
        use backends::BackendError as B;
        match self {
            TierError::VolumeNotFound(_) | TierError::SnapshotNotFound { .. } => {
                ErrorKind::NotFound
            }
            TierError::VolumeExists(_)
            | TierError::VolumeBusy { .. }
            | TierError::Busy { .. }
            | TierError::SnapshotExists { .. }
            | TierError::HasClones { .. } => ErrorKind::Conflict,
            TierError::ReadOnly { .. } | TierError::Fenced { .. } => ErrorKind::PermissionDenied,
            TierError::TooManyFiles { .. } => ErrorKind::NoSpace,
            TierError::BackupNotFound { .. } => ErrorKind::NotFound,
            TierError::BadBackup { .. } => ErrorKind::Corrupt,
            TierError::InvalidName { .. }
            | TierError::InvalidArgument(_)
            | TierError::UnknownClass { .. } => ErrorKind::InvalidInput,
            TierError::Config(_) => ErrorKind::InvalidConfig,
            TierError::Sim(sim::SimError::Cost(_)) => ErrorKind::InvalidConfig,
            TierError::Sim(_) => ErrorKind::InvalidInput,
            TierError::Integrity { .. } | TierError::CorruptMetadata { .. } => ErrorKind::Corrupt,
            // A missing object is lost data, not an outage.
            TierError::Fetch { source, .. } => match source.as_ref() {
                B::NotFound(_) => ErrorKind::Corrupt,
                _ => ErrorKind::Unavailable,
            },
            TierError::Backend(B::NotFound(_)) => ErrorKind::NotFound,
            TierError::Backend(_) => ErrorKind::Unavailable,
            TierError::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
                Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::EROFS) => {
                    ErrorKind::PermissionDenied
                }
                _ => ErrorKind::Internal,
            },
            TierError::Db { .. }
            | TierError::Heat(_)
            | TierError::Bind { .. }
            | TierError::Metrics(_)
            | TierError::Startup { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name_and_map_to_distinct_exit_codes() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(ErrorKind::InvalidConfig.exit_code(), 2);
        let e = TierError::VolumeNotFound("v".into());
        assert_eq!(
            (
                e.kind().http_status(),
                e.kind().nbd_errno(),
                e.kind().exit_code()
            ),
            (404, libc::EIO as u32, 4)
        );
        let full = TierError::Io {
            volume: "v".into(),
            op: "write",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(full.kind().nbd_errno(), libc::ENOSPC as u32);
        let missing = TierError::Fetch {
            volume: "v".into(),
            extent: 1,
            key: "k".into(),
            source: Arc::new(backends::BackendError::NotFound(backends::ErrorContext {
                backend: "b".into(),
                op: "get",
                key: "k".into(),
                message: "gone".into(),
            })),
        };
        assert_eq!(missing.kind(), ErrorKind::Corrupt);
        assert!(missing.to_string().contains("gone"), "{missing}");
    }
}
