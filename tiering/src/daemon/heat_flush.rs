//! The heat flush loop: moves the heat map's in-memory deltas into RocksDB
//! every `heat.flush_interval`, until cancelled. A failed flush keeps its
//! deltas in memory for the next one.
//!
//! The interval is real time, not the daemon's clock: it bounds how often
//! RocksDB is written, a cost paid in real seconds whatever
//! `server.clock_speed` says (heat itself is stamped with the clock).

use std::sync::Arc;
use std::time::Duration;

use heatmap::HeatMap;
use prometheus::Histogram;
use tokio_util::sync::CancellationToken;

/// What the loop needs.
pub struct Deps {
    pub heat: Arc<HeatMap>,
    pub every: Duration,
    pub duration: Histogram,
}

pub async fn run(d: Deps, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(d.every) => {}
            _ = cancel.cancelled() => break,
        }
        let heat = d.heat.clone();
        let timer = d.duration.start_timer();
        let flushed = tokio::task::spawn_blocking(move || heat.flush()).await;
        timer.observe_duration();
        match flushed {
            Ok(Ok(n)) if n > 0 => tracing::debug!(extents = n, "heat flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "heat flush failed; will retry"),
            Err(e) => tracing::error!(error = %e, "heat flush task failed"),
            _ => {}
        }
    }
}
