//! tierd's tiering crate: volumes served over NBD from a local tier, the heat
//! they generate, and the admin API and CLI around them.

pub mod access;
pub mod api;
pub mod check;
pub mod cli;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod db;
pub mod engine;
pub mod error;
pub mod extent_map;
pub mod failpoint;
pub mod gc;
pub mod k8s;
pub mod metrics;
pub mod migrate;
pub mod nbd;
pub mod policy;
pub mod sim;
pub mod ui;
pub mod units;
pub mod volume;

pub use error::{Result, TierError};
