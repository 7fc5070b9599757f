//! The snapshot schedule loop: for each volume whose class has a
//! `snapshot_schedule`, takes a snapshot named `auto-YYYYMMDD-HHMMSS` (UTC,
//! on the daemon's clock) once the newest scheduled one is that old, and
//! deletes the oldest scheduled ones beyond `snapshot_retention`. Snapshots
//! taken by hand are never touched. Runs on the daemon's clock until
//! cancelled; a failure is logged and retried at the next tick.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::volume::{Volume, Volumes};

pub struct Deps {
    pub volumes: Arc<Volumes>,
    pub engine: Arc<Engine>,
}

/// The prefix of scheduled snapshots' names.
pub const PREFIX: &str = "auto-";

/// `auto-YYYYMMDD-HHMMSS` for a time in ms since the epoch (UTC).
pub fn name_at(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{PREFIX}{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How often to look: a tenth of the shortest schedule, from 1 s to 1 min.
fn tick(engine: &Engine) -> Duration {
    engine
        .config()
        .classes
        .values()
        .filter_map(|c| c.snapshot_schedule.map(|d| d.0 / 10))
        .min()
        .unwrap_or(Duration::from_secs(60))
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Takes and prunes `vol`'s scheduled snapshots as its class says, now.
pub fn apply(
    volumes: &Volumes,
    engine: &Engine,
    vol: &Volume,
    now_ms: u64,
) -> crate::error::Result<()> {
    let Ok(class) = engine.class(&vol.meta().class) else {
        return Ok(());
    };
    let Some(every) = class.snapshot_schedule else {
        return Ok(());
    };
    let name = vol.name();
    let scheduled: Vec<(String, u64)> = volumes
        .snapshot_times(&name)?
        .into_iter()
        .filter(|(s, _)| s.starts_with(PREFIX))
        .collect();
    let due = scheduled
        .last()
        .is_none_or(|(_, t)| now_ms.saturating_sub(*t) >= every.0.as_millis() as u64);
    let mut count = scheduled.len();
    if due {
        let snap = name_at(now_ms);
        if !scheduled.iter().any(|(s, _)| *s == snap) {
            volumes.snapshot_create(&name, &snap)?;
            count += 1;
        }
    }
    let keep = class.snapshot_keep() as usize;
    for (old, _) in scheduled.iter().take(count.saturating_sub(keep)) {
        volumes.snapshot_delete(&name, old)?;
    }
    Ok(())
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
            let r = d
                .engine
                .tasks()
                .spawn_blocking(move || apply(&volumes, &engine, &vol, now))
                .await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "scheduled snapshot failed"),
                Err(e) => tracing::error!(error = %e, "scheduled snapshot task panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_utc_timestamps() {
        assert_eq!(name_at(0), "auto-19700101-000000");
        // 2026-12-04 17:38:34 UTC
        assert_eq!(name_at(1_796_405_914_000), "auto-20261204-173834");
        assert_eq!(name_at(951_782_400_000), "auto-20000229-000000");
    }
}
