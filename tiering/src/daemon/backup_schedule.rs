//! The backup schedule loop: for each volume whose class has a
//! `backup_interval`, takes a backup once the newest this node committed
//! is that old (so a class's recovery point is its interval), then deletes
//! the oldest scheduled backups in the bucket beyond `backup_keep`.
//! Backups taken by hand are never deleted; fenced volumes are skipped.
//! Runs on the daemon's clock until cancelled; a failure is logged and
//! retried at the next tick.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::volume::{Volume, Volumes};

pub struct Deps {
    pub volumes: Arc<Volumes>,
    pub engine: Arc<Engine>,
}

/// How often to look: a tenth of the shortest interval, from 1 s to 1 min.
fn tick(engine: &Engine) -> Duration {
    engine
        .config()
        .classes
        .values()
        .filter_map(|c| c.backup_interval.map(|d| d.0 / 10))
        .min()
        .unwrap_or(Duration::from_secs(60))
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Backs `vol` up and prunes its scheduled backups if its class says it is
/// due at `now_ms`. Returns whether a backup was taken.
pub fn apply(
    volumes: &Volumes,
    engine: &Engine,
    vol: &Volume,
    now_ms: u64,
) -> crate::error::Result<bool> {
    let Ok(class) = engine.class(&vol.meta().class) else {
        return Ok(false);
    };
    let Some(every) = class.backup_interval else {
        return Ok(false);
    };
    if vol.is_fenced() {
        return Ok(false);
    }
    let due = volumes
        .last_backup_ms(vol)
        .is_none_or(|t| now_ms.saturating_sub(t) >= every.0.as_millis() as u64);
    if !due {
        return Ok(false);
    }
    let name = vol.name();
    crate::backup::create_with(volumes, &name, true)?;
    let pruned = crate::backup::prune(volumes, vol, class.backup_keep())?;
    if !pruned.is_empty() {
        tracing::info!(volume = %name, pruned = ?pruned, "scheduled backups pruned");
    }
    Ok(true)
}

pub async fn run(d: Deps, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = d.engine.clock().sleep(tick(&d.engine)) => {}
            _ = cancel.cancelled() => break,
        }
        for vol in d.volumes.list() {
            if cancel.is_cancelled() {
                break;
            }
            let (volumes, engine) = (d.volumes.clone(), d.engine.clone());
            let now = d.engine.clock().now_ms();
            let name = vol.name();
            let r = d
                .engine
                .tasks()
                .spawn_blocking(move || apply(&volumes, &engine, &vol, now))
                .await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(volume = %name, error = %e, "scheduled backup failed"),
                Err(e) => {
                    tracing::error!(volume = %name, error = %e, "scheduled backup task panicked")
                }
            }
        }
    }
}
