//! The garbage collection loop: deletes unreferenced objects older than
//! `tiering.gc_grace` every `tiering.gc_interval`, until cancelled. A
//! collection in progress is abandoned at cancellation; what it did not
//! delete the next run deletes.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::volume::Volumes;

pub struct Deps {
    pub volumes: Arc<Volumes>,
    pub engine: Arc<Engine>,
}

pub async fn run(d: Deps, cancel: CancellationToken) {
    loop {
        let cfg = d.engine.config();
        tokio::select! {
            _ = d.engine.clock().sleep(cfg.tiering.gc_interval.0) => {}
            _ = cancel.cancelled() => break,
        }
        let now = d.engine.clock().now_ms();
        tokio::select! {
            r = crate::gc::collect(&d.engine, &d.volumes, now, cfg.tiering.gc_grace.0) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "garbage collection failed");
                }
            }
            _ = cancel.cancelled() => break,
        }
    }
}
