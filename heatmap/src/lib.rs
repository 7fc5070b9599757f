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
//! Time comes from an injected [`Clock`], so tests and the policy simulator can
//! drive it.

mod clock;
mod error;
mod record;
mod store;

pub use clock::{Clock, ManualClock, ScaledClock, SystemClock};
pub use error::HeatError;
pub use record::{Access, AccessKind, ExtentHeat, HeatRecord};
pub use store::{histogram_of, HeatConfig, HeatMap, HistogramBucket, CF_HEAT, TEMPERATURE_BUCKETS};
