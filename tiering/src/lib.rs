//! tierd's tiering crate: volumes served over NBD from a local tier, the heat
//! they generate, and the admin API and CLI around them.

pub mod config;
pub mod db;
pub mod error;
pub mod units;
pub mod volume;

pub use error::{Result, TierError};
