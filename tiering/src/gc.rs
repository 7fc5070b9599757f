//! Garbage collection of objects no extent record of any layer refers to:
//! uploads dropped because a write won, generations replaced by newer ones,
//! extents trimmed or rewritten, volumes, snapshots and layers deleted. An
//! object a snapshot or clone still reads through stays: its layer's record
//! refers to it. An object younger than the grace period is kept,
//! since its upload may be about to commit; its age is read from the
//! generation in its key (milliseconds since the epoch).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::Result;
use crate::extent_map::ExtentRecord;
use crate::migrate::parse_key;
use crate::volume::{Layer, Volumes};

#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub listed: u64,
    pub referenced: u64,
    pub young: u64,
    pub deleted: u64,
    pub foreign: u64,
    pub errors: Vec<String>,
}

/// Collects garbage in every backend the engine knows.
pub async fn collect(
    engine: &Engine,
    volumes: &Volumes,
    now_ms: u64,
    grace: Duration,
) -> Result<GcReport> {
    // Keys name the layer that uploaded them: a volume's, or a snapshot's,
    // or a frozen layer a clone still reads through.
    let by_id: HashMap<u64, Arc<Layer>> = volumes
        .all_layers()
        .into_iter()
        .map(|l| (l.id(), l))
        .collect();
    let config = engine.config();
    let mut report = GcReport::default();
    for name in config.backends.keys() {
        let store = engine.backend(name)?;
        let mut garbage = Vec::new();
        let mut listing = store.list("");
        while let Some(item) = listing.next().await {
            let meta = match item {
                Ok(m) => m,
                Err(e) => {
                    report.errors.push(e.to_string());
                    break;
                }
            };
            report.listed += 1;
            let Some((layer, extent, generation)) = parse_key(&meta.key) else {
                // Not ours (or not in our layout): never touch it.
                report.foreign += 1;
                continue;
            };
            let referenced = match by_id.get(&layer) {
                Some(l) => {
                    let rec = l.map.read().record(extent)?;
                    matches!(rec, Some(ExtentRecord::Remote(r)) if r.key == meta.key && r.backend == *name)
                }
                None => false,
            };
            if referenced {
                report.referenced += 1;
            } else if now_ms.saturating_sub(generation) < grace.as_millis() as u64 {
                report.young += 1;
            } else {
                garbage.push(meta.key);
            }
        }
        drop(listing);
        for key in garbage {
            match store.delete(&key).await {
                Ok(()) => {
                    report.deleted += 1;
                    engine
                        .stats
                        .gc_objects_deleted
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    if report.deleted > 0 {
        tracing::info!(
            deleted = report.deleted,
            listed = report.listed,
            "garbage objects collected"
        );
    }
    Ok(report)
}
