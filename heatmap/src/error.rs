use thiserror::Error;

/// A RocksDB failure, kept opaque so RocksDB's types stay this crate's own.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct DbError(#[from] rocksdb::Error);

/// Everything that can go wrong in the heat map.
#[derive(Debug, Error)]
pub enum HeatError {
    #[error("heat map: RocksDB {op} failed: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: DbError,
    },
    #[error("heat map: column family {0:?} is missing from the database")]
    MissingColumnFamily(&'static str),
    #[error("heat map: corrupt record for volume {volume} extent {extent}: {reason}")]
    Corrupt {
        volume: u64,
        extent: u64,
        reason: String,
    },
}
