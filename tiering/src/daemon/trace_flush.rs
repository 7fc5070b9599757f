//! The trace flush loop: pushes every recording volume's buffered access
//! trace to its file each `heat.flush_interval` (the recorder rotates files
//! as it writes), so a trace on disk is at most that old even for a volume
//! whose clients never flush. Stops when cancelled; shutdown syncs volumes,
//! which flushes the rest.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::volume::Volumes;

pub struct Deps {
    pub volumes: Arc<Volumes>,
    pub every: Duration,
}

pub async fn run(d: Deps, cancel: CancellationToken) {
    loop {
        tokio::select! {
            // Real time, as the heat flush: a disk-write cadence.
            _ = tokio::time::sleep(d.every) => {}
            _ = cancel.cancelled() => break,
        }
        let volumes = d.volumes.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            for v in volumes.list() {
                v.flush_trace();
            }
        })
        .await;
        if let Err(e) = flushed {
            tracing::error!(error = %e, "trace flush task failed");
        }
    }
}
