//! One policy pass over a volume: choose the extents to tier (the policy's
//! pick among the live extents and the frozen snapshot layers), tier them in
//! order at the class's paced rate, and report; and `promote`, which brings
//! a whole volume back. Owns the pass's progress (published while it runs,
//! cleared however it ends) and pacing. The per-extent machinery it drives
//! (upload, commit, rehydrate) lives in the parent module, which does not
//! look back in here.

use std::sync::Arc;
use std::time::Duration;

use clock::Stopwatch;
use policy::{ClassConfig, Fullness, Hold};

use super::{views, Outcome, PassReport};
use crate::error::{Result, TierError};
use crate::extent_map::Slot;
use crate::volume::{reads_from, HeldLayer, Layer, Volume, Volumes};

/// The extents of frozen layers `policy::select_held` picks, whole or partly
/// held, and the overlays frozen with them.
fn select_held(
    vol: &Volume,
    class: &ClassConfig,
    cooling: &policy::select::Cooling,
    held: &[HeldLayer],
    heat: &[heatmap::ExtentHeat],
    now: u64,
) -> Vec<(Arc<Layer>, u64)> {
    let by_extent: std::collections::HashMap<u64, &heatmap::ExtentHeat> =
        heat.iter().map(|h| (h.extent, h)).collect();
    let mut units = Vec::new();
    let mut targets = Vec::new();
    for h in held {
        let n = h.layer.map.read().len();
        for e in 0..n {
            if !matches!(h.layer.map.read().slot(e), Slot::Local | Slot::Partial) {
                continue;
            }
            units.push(policy::HeldView {
                layer: h.layer.id(),
                extent: e,
                live: h.viewers.iter().any(|t| reads_from(t, &h.layer, e)),
                frozen_ms: h.frozen_ms,
                heat: by_extent.get(&e).copied(),
            });
            targets.push((h.layer.clone(), e));
        }
    }
    let picked = policy::select_held(class, cooling, &units, now);
    tracing::debug!(volume = %vol.name(), units = units.len(), picked = picked.len(), "snapshot data considered");
    let mut out: Vec<(Arc<Layer>, u64)> = picked.into_iter().map(|i| targets[i].clone()).collect();
    // Overlays frozen by a snapshot are merged (`policy::overlay::merges_frozen`).
    if policy::overlay::merges_frozen(class) {
        for h in held {
            let map = h.layer.map.read();
            out.extend(
                (0..map.len())
                    .filter(|&e| map.slot(e) == Slot::Overlay)
                    .map(|e| (h.layer.clone(), e)),
            );
        }
    }
    out
}

/// Clears a volume's published progress when a pass ends, however it ends.
struct ClearProgress<'a>(&'a Arc<Volume>);

impl Drop for ClearProgress<'_> {
    fn drop(&mut self) {
        self.0.set_progress(None);
    }
}

/// How full the filesystem holding `path` is, by statvfs (unknown if it
/// cannot be read).
pub fn fullness(path: &std::path::Path) -> Fullness {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return Fullness::unknown();
    };
    // SAFETY: statvfs only writes into the struct it is given, which is
    // plain data for which all zeros is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return Fullness::unknown();
    }
    let unit = st.f_frsize.max(1);
    Fullness {
        used_bytes: st.f_blocks.saturating_sub(st.f_bavail) * unit,
        capacity_bytes: st.f_blocks * unit,
    }
}

/// Waits, on the engine's clock, as long as needed to keep `bytes` within
/// `rate` bytes per second, given when the last upload of this class may
/// have ended (`next_free_ms`). Shutdown ends the wait at once. Runs on a
/// blocking thread.
pub(super) fn pace(engine: &crate::engine::Engine, next_free_ms: &mut u64, bytes: u64, rate: u64) {
    let clock = engine.clock();
    let now = clock.now_ms();
    let start = (*next_free_ms).max(now);
    *next_free_ms = start + (bytes as f64 * 1000.0 / rate.max(1) as f64) as u64;
    let left = Duration::from_millis(start - now);
    if left.is_zero() {
        return;
    }
    let tasks = engine.tasks();
    engine.block_on(async {
        tokio::select! {
            _ = clock.sleep(left) => {}
            _ = tasks.cancelled() => {}
        }
    });
}

/// Held for the whole of a tier or promote pass: the volume's pass lock (one
/// pass per volume at a time). Shutdown waits for passes as tracked tasks.
struct PassStart<'a> {
    _running: parking_lot::MutexGuard<'a, ()>,
}

impl<'a> PassStart<'a> {
    fn begin(vol: &'a Volume) -> Result<Self> {
        let Some(running) = vol.pass.try_lock() else {
            return Err(TierError::Busy {
                volume: vol.name(),
                reason: "a pass is already running".into(),
            });
        };
        Ok(Self { _running: running })
    }
}

/// A policy pass over `vol` (see [`run_pass`]) by a node that checks first
/// that it still owns the volume: a fenced volume is not tiered (the report
/// says why). A check that cannot reach the backend does not stop the pass:
/// uploads carry this node's generation in their keys, so they never touch
/// another node's objects, and the next check fences if need be.
pub fn tier_pass(
    volumes: &Volumes,
    vol: &Arc<Volume>,
    data_dir: &std::path::Path,
) -> Result<PassReport> {
    match volumes.ensure_owner(vol) {
        Ok(_) => {}
        Err(e @ TierError::Fenced { .. }) => {
            let report = PassReport {
                volume: vol.name(),
                kind: "tier",
                held: Some(e.to_string()),
                ..Default::default()
            };
            *vol.last_pass.write() = serde_json::to_value(&report).ok();
            return Ok(report);
        }
        Err(e) => {
            tracing::warn!(volume = %vol.name(), error = %e, "could not check the volume's fencing generation; tiering under the one held");
        }
    }
    let held = volumes.held_layers(vol);
    let report = run_pass(vol, data_dir, &held);
    // What the pass taught the tuner survives a restart.
    if let Err(e) = volumes.save_tuner(vol) {
        tracing::warn!(volume = %vol.name(), error = %e, "could not save the cooling state");
    }
    report
}

/// One policy pass over a volume: choose, then tier, coldest first: extents
/// of its top layer as `policy::select` says, and extents of the frozen
/// layers it governs (`held`, its snapshots) as `policy::select_held` says.
/// Runs on a blocking thread.
pub fn run_pass(
    vol: &Arc<Volume>,
    data_dir: &std::path::Path,
    held: &[HeldLayer],
) -> Result<PassReport> {
    let t0 = Stopwatch::start();
    let _pass = PassStart::begin(vol)?;
    let mut report = PassReport {
        volume: vol.name(),
        kind: "tier",
        ..Default::default()
    };
    // A reload may have switched trace recording for the class.
    vol.refresh_trace();
    let meta = vol.meta();
    let class = vol.engine.class(&meta.class)?;
    let Some(backend) = class.backend.clone() else {
        // Only a class that tiers nothing may lack a backend (validation).
        report.held = Some(
            policy::select(
                &class,
                &policy::select::Cooling::of_class(&class, true),
                &[],
                0,
                0,
                Fullness::unknown(),
            )
            .err()
            .map(|h| h.to_string())
            .unwrap_or_else(|| format!("class {:?} names no backend", meta.class)),
        );
        *vol.last_pass.write() = serde_json::to_value(&report).ok();
        return Ok(report);
    };
    if let Some(reason) = vol.engine.breaker_open(&backend) {
        report.held = Some(reason);
        *vol.last_pass.write() = serde_json::to_value(&report).ok();
        return Ok(report);
    }
    let store = vol.engine.backend(&backend)?;
    let (heat, states) = vol.extent_views()?;
    let views = views(&heat, &states);
    let now = vol.heat().clock().now_ms();
    let top = vol.top();
    let pc = vol.tune(&class, &heat);
    let per_extent = |e: u64| pc.of(e);
    let cooling = pc.view(&class, &per_extent);
    let mut chosen: Vec<(Arc<Layer>, u64)> = match policy::select(
        &class,
        &cooling,
        &views,
        now,
        meta.created_ms,
        fullness(data_dir),
    ) {
        Ok(c) => c.into_iter().map(|e| (top.clone(), e)).collect(),
        // Snapshot-only never tiers the volume's own layer; its snapshots' data is below.
        Err(Hold::NoSnapshots) if !held.is_empty() => Vec::new(),
        Err(hold) => {
            report.held = Some(hold.to_string());
            *vol.last_pass.write() = serde_json::to_value(&report).ok();
            return Ok(report);
        }
    };
    chosen.extend(select_held(vol, &class, &cooling, held, &heat, now));
    report.candidates = chosen.len();
    vol.set_progress(Some(crate::volume::PassProgress {
        kind: "tier".into(),
        done: 0,
        total: chosen.len() as u64,
    }));
    let _clear = ClearProgress(vol);
    let workers = class.max_concurrent_uploads.unwrap_or(4).max(1);
    let rate = class.upload_bandwidth();
    let next_free = parking_lot::Mutex::new(vol.engine.clock().now_ms());
    let queue = parking_lot::Mutex::new(chosen.into_iter());
    let results = parking_lot::Mutex::new(Vec::new());
    let tried = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if vol.is_closed()
                    || vol.engine.is_stopping()
                    || vol.engine.breaker_open(&backend).is_some()
                {
                    return;
                }
                let Some((layer, e)) = queue.lock().next() else {
                    return;
                };
                tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let frozen = !Arc::ptr_eq(&layer, &top);
                let r = vol.tier_layer_extent(&layer, e, &class, &backend, &store, frozen);
                vol.advance_progress();
                if let (Ok(Outcome::Tiered { stored } | Outcome::Merged { stored }), Some(rate)) =
                    (&r, rate)
                {
                    let mut nf = next_free.lock();
                    pace(&vol.engine, &mut nf, *stored, rate);
                }
                results.lock().push((e, r));
            });
        }
    });
    let m = &vol.engine.metrics;
    for (e, r) in results.into_inner() {
        let result = match r {
            Ok(Outcome::Tiered { stored }) => {
                report.tiered += 1;
                report.bytes_uploaded += stored;
                m.migration_bytes
                    .with_label_values(&["tier"])
                    .inc_by(stored);
                "ok"
            }
            Ok(Outcome::Merged { stored }) => {
                report.merged += 1;
                report.bytes_uploaded += stored;
                m.migration_bytes
                    .with_label_values(&["merge"])
                    .inc_by(stored);
                "merged"
            }
            Ok(Outcome::Zero) => {
                report.zero += 1;
                "zero"
            }
            Ok(Outcome::Raced) => {
                report.raced += 1;
                "raced"
            }
            Ok(Outcome::NotLocal) => continue,
            Err(err) => {
                report.failed += 1;
                tracing::warn!(volume = %report.volume, extent = e, error = %err, "tiering an extent failed; it stays local");
                if report.errors.len() < 5 {
                    report.errors.push(format!("extent {e}: {err}"));
                }
                "error"
            }
        };
        m.migrations.with_label_values(&["tier", result]).inc();
    }
    if let Some(reason) = vol.engine.breaker_open(&backend) {
        report.held = Some(reason);
    }
    let tried = tried.into_inner();
    if tried < report.candidates {
        let why = match &report.held {
            Some(reason) => reason.clone(),
            None if vol.is_closed() => "the volume was deleted".into(),
            None => "the daemon is stopping".into(),
        };
        report.stopped = Some(format!(
            "{why}; {} of {} candidates not tried",
            report.candidates - tried,
            report.candidates
        ));
    }
    report.seconds = t0.elapsed().as_secs_f64();
    m.pass_duration.observe(report.seconds);
    tracing::info!(volume = %report.volume, tiered = report.tiered, zero = report.zero, raced = report.raced,
        failed = report.failed, bytes = report.bytes_uploaded, "tier pass done");
    *vol.last_pass.write() = serde_json::to_value(&report).ok();
    Ok(report)
}

/// Brings every remote extent of a volume back to the local tier.
pub fn promote(vol: &Arc<Volume>) -> Result<PassReport> {
    let t0 = Stopwatch::start();
    let _pass = PassStart::begin(vol)?;
    let mut report = PassReport {
        volume: vol.name(),
        kind: "promote",
        ..Default::default()
    };
    let top = vol.top();
    let n = top.map.read().len();
    let todo = {
        let map = top.map.read();
        (0..n)
            .filter(|&e| matches!(map.slot(e), Slot::Remote | Slot::Zero | Slot::Overlay))
            .count() as u64
    };
    vol.set_progress(Some(crate::volume::PassProgress {
        kind: "promote".into(),
        done: 0,
        total: todo,
    }));
    let _clear = ClearProgress(vol);
    for e in 0..n {
        if vol.engine.is_stopping() {
            break;
        }
        let slot = top.map.read().slot(e);
        if matches!(slot, Slot::Remote | Slot::Zero | Slot::Overlay) {
            vol.advance_progress();
        }
        match slot {
            Slot::Remote | Slot::Overlay => {
                report.candidates += 1;
                match vol.rehydrate(e) {
                    Ok(true) => report.rehydrated += 1,
                    Ok(false) => {}
                    Err(err) => {
                        report.failed += 1;
                        if report.errors.len() < 5 {
                            report.errors.push(format!("extent {e}: {err}"));
                        }
                    }
                }
            }
            Slot::Zero => {
                // Nothing to fetch: the hole already reads as the zeros recorded.
                let _g = top.stripe(e).lock.write();
                if top.map.read().slot(e) == Slot::Zero {
                    top.map.read().make_local(e)?;
                    report.rehydrated += 1;
                }
            }
            // Data a snapshot shares stays where it is: promote brings back
            // only what the volume's own layer tiered.
            Slot::Local | Slot::Inherit | Slot::Partial => {}
        }
    }
    report.seconds = t0.elapsed().as_secs_f64();
    *vol.last_pass.write() = serde_json::to_value(&report).ok();
    Ok(report)
}
