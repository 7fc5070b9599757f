//! Heat tracking for tierd: how often, how recently and how sequentially each
//! extent of each volume is accessed, persisted in RocksDB so it survives restarts.
//!
//! The crate owns one column family. Its invariant: the I/O path never waits on
//! RocksDB. [`HeatMap::record`] folds an access into an in-memory delta; deltas
//! reach RocksDB only through [`HeatMap::flush`], as merge operands that the
//! column family's associative merge operator combines. A record read back is
//! always the fold of every flushed delta, so a flush can never lose counts that
//! another flush already wrote.
//!
//! Time comes from an injected [`clock::Clock`], so tests and the policy
//! simulator can drive it.
//!
//! Without the default `store` feature the crate is only [`record`]'s pure
//! code (no RocksDB, no clock, no I/O): what the policy crate and the
//! simulator fold accesses with, so they decay heat exactly as the daemon does.

#[cfg(feature = "store")]
mod error;
mod record;
#[cfg(feature = "store")]
mod store;

#[cfg(feature = "store")]
pub use clock::{Clock, ManualClock, ScaledClock, SystemClock};
#[cfg(feature = "store")]
pub use error::HeatError;
pub use record::{
    histogram_of, Access, AccessKind, ExtentHeat, HeatRecord, HistogramBucket, TEMPERATURE_BUCKETS,
};
#[cfg(feature = "store")]
pub use store::{HeatConfig, HeatMap, CF_HEAT};
