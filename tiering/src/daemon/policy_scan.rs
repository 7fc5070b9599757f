//! The policy scan loop: a tiering pass over every volume each
//! `tiering.scan_interval` (read anew after a reload), until cancelled.
//! Passes run as tracked blocking tasks and stop between extents once the
//! token is cancelled.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::error::TierError;
use crate::volume::Volumes;

pub struct Deps {
    pub volumes: Arc<Volumes>,
    pub engine: Arc<Engine>,
    pub data_dir: PathBuf,
}

pub async fn run(d: Deps, cancel: CancellationToken) {
    loop {
        let every = d.engine.config().tiering.scan_interval.0;
        tokio::select! {
            _ = d.engine.clock().sleep(every) => {}
            _ = cancel.cancelled() => break,
        }
        for vol in d.volumes.list() {
            if cancel.is_cancelled() {
                break;
            }
            let dir = d.data_dir.clone();
            let name = vol.name();
            let volumes = d.volumes.clone();
            let pass = d
                .engine
                .tasks()
                .spawn_blocking(move || crate::migrate::tier_pass(&volumes, &vol, &dir));
            match pass.await {
                Ok(Ok(_)) | Ok(Err(TierError::Busy { .. })) => {}
                Ok(Err(e)) => tracing::warn!(volume = %name, error = %e, "policy pass failed"),
                Err(e) => tracing::error!(volume = %name, error = %e, "policy pass panicked"),
            }
        }
    }
}
