//! tierd's daemon crate: volumes served over NBD from a local tier, the heat
//! they generate, migration to and from object stores, and the admin API and
//! CLI around them. Pure decisions live in the `policy` crate and the
//! simulator in `sim`; this crate runs them against real I/O.
//!
//! Layers, each importing only those below it:
//! `cli` (client commands, `tierd simulate`), `daemon` (start-up, background
//! tasks, shutdown), `api` (HTTP routes, /ui, scrapes), `nbd` (the protocol
//! server), `gc` and `migrate`, `volume`, `engine` (fetches, cache,
//! breakers), `extent_map`/`codec`/`db`, and at the bottom `config`,
//! `metrics`, `fd_limit`, `error` (`failpoint` is the backends crate's,
//! shared so one `TIERD_FAILPOINTS` arms points in both).

pub mod api;
pub mod backup;
pub mod blocks;
pub mod check;
pub mod cli;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod db;
pub mod engine;
pub mod error;
pub mod extent_map;
pub mod fd_limit;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_targets;
pub mod gc;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod nbd;
pub mod object_header;
#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod snapshot_policy_tests;
pub mod tasks;
pub mod volume;
pub mod wire;

pub use backends::failpoint;
pub use error::{Result, TierError};
