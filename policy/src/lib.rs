//! tierd's pure decisions, shared by the daemon and the simulator so the two
//! cannot drift: what a class's policies are, which extents a pass tiers,
//! what a read of a cold extent fetches, reads ahead and brings back, what a
//! month of a policy costs, and the units all of these are written in.
//!
//! Invariant: nothing here does I/O, reads a clock or awaits. Time, sizes,
//! heat and fullness come in as arguments; decisions go out as values. The
//! crate depends only on `heatmap`'s pure record code (no RocksDB), `serde`
//! and `thiserror`, which `cargo tree -p policy` shows.

pub mod access;
pub mod class;
pub mod cooling;
pub mod cost;
pub mod extent;
pub mod overlay;
pub mod select;
pub mod snapshots;
pub mod streams;
pub mod trace;
pub mod units;

pub use access::{
    plan_cold_read, ColdRead, ColdReadPlan, Fetch, ReadPattern, ReadTracker, Readahead,
};
pub use class::{
    brings_back, ClassConfig, Compression, CoolingPeriod, RetrievalPolicy, ThrashFraction,
    TieringPolicy,
};
pub use cooling::{Economics, Limits, Tuner};
pub use extent::ExtentState;
pub use overlay::PartialWrite;
pub use select::{inactive, select, ExtentView, Fullness, Hold};
pub use snapshots::{select_held, HeldView};
pub use streams::{Neighbours, Streams};
pub use units::{HumanDuration, HumanSize};
