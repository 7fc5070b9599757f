//! The one RocksDB database of a tierd data directory and its column families.
//!
//! `volumes` maps a volume name to its metadata; `meta` holds counters such as
//! the next volume id; `extents` is the extent map (see `extent_map`);
//! `layers` describes the layers snapshots and clones are made of (see
//! `volume::layer`); `heat` belongs to the heatmap crate. Metadata writes are
//! synced: a volume that was reported created survives a crash.

use std::path::Path;
use std::sync::Arc;

use heatmap::{HeatConfig, HeatMap};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::error::{DbError, Result, TierError};

impl From<rocksdb::Error> for DbError {
    fn from(e: rocksdb::Error) -> Self {
        DbError(e.into_string())
    }
}

pub const CF_VOLUMES: &str = "volumes";
pub const CF_META: &str = "meta";
pub const CF_EXTENTS: &str = "extents";
pub const CF_LAYERS: &str = "layers";

/// Opens (creating if needed) the database under `dir`.
/// Table files RocksDB keeps open at most.
pub const MAX_OPEN_FILES: i32 = 256;

pub fn open(dir: &Path, heat: &HeatConfig) -> Result<Arc<DB>> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(4);
    // Bounded, so layer files can have the rest (see fd_limit).
    opts.set_max_open_files(MAX_OPEN_FILES);
    let cfs = vec![
        ColumnFamilyDescriptor::new(CF_VOLUMES, Options::default()),
        ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ColumnFamilyDescriptor::new(CF_EXTENTS, Options::default()),
        ColumnFamilyDescriptor::new(CF_LAYERS, Options::default()),
        HeatMap::column_family(heat),
    ];
    DB::open_cf_descriptors(&opts, dir, cfs)
        .map(Arc::new)
        .map_err(|source| TierError::Db {
            op: "open",
            source: source.into(),
        })
}

/// Writes a batch durably (WAL synced before returning).
pub fn write_synced(db: &DB, batch: WriteBatch) -> Result<()> {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(batch, &wo).map_err(|source| TierError::Db {
        op: "write",
        source: source.into(),
    })
}

pub fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| TierError::CorruptMetadata {
            key: name.into(),
            reason: "column family missing".into(),
        })
}
