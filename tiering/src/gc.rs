//! Garbage collection of objects nothing refers to: uploads dropped because
//! a write won, generations replaced by newer ones, extents trimmed or
//! rewritten, volumes, snapshots and layers deleted, backups deleted.
//!
//! An object stays while any layer record on this node names it (a
//! volume's, a snapshot's, a frozen layer a clone reads through), while any
//! backup in the bucket names it (a manifest, through its layer indexes,
//! whichever volume or node wrote it), and while it is younger than the
//! grace period (its upload may be about to commit; its age is the time in
//! its key). And GC deletes only what this node may: objects of its own
//! volumes (or of volumes it deleted) written under a generation it held,
//! never another node's, never a fenced volume's, and objects of the old
//! key layout only on a node that wrote them. A manifest that cannot be
//! read protects every object of its volume.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use backends::ObjectStore;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::backup;
use crate::engine::Engine;
use crate::error::Result;
use crate::extent_map::ExtentRecord;
use crate::keys;
use crate::volume::{claimed_generations, Owned, Volumes};

#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub listed: u64,
    pub referenced: u64,
    /// Named only by a backup.
    pub in_backups: u64,
    pub young: u64,
    pub deleted: u64,
    /// Data objects not ours to delete: another node's volume or
    /// generation, or a fenced volume's. (Manifests, indexes and fencing
    /// claims are not listed.)
    pub foreign: u64,
    /// What unfinished uploads older than the grace period left (temporary
    /// files, multipart uploads), removed.
    pub partial_uploads: u64,
    pub errors: Vec<String>,
}

/// What the retained backups in one backend refer to.
#[derive(Default)]
struct BackupRefs {
    keys: HashSet<String>,
    /// Volumes with a manifest or index that could not be read.
    protected: HashSet<String>,
}

async fn backup_refs(store: &dyn ObjectStore, backend: &str) -> Result<BackupRefs> {
    let mut refs = BackupRefs::default();
    let metas: Vec<backends::ObjectMeta> = store.list(keys::BACKUPS_PREFIX).try_collect().await?;
    let mut indexes = HashSet::new();
    for m in metas {
        let Some((_, uid, _)) = keys::parse_manifest_key(&m.key) else {
            continue;
        };
        match backup::read_manifest(store, backend, &m.key).await {
            Ok(man) => indexes.extend(man.layers.into_iter().map(|l| (uid.clone(), l.index))),
            Err(e) => {
                tracing::warn!(key = %m.key, error = %e, "unreadable manifest: its volume's objects are kept");
                refs.protected.insert(uid);
            }
        }
    }
    for (uid, index) in indexes {
        match backup::read_index(store, backend, &index).await {
            Ok(ix) => {
                for (_, rec) in ix.records {
                    if let ExtentRecord::Remote(r) | ExtentRecord::Backed(r) = rec {
                        refs.keys.insert(r.key);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(key = %index, error = %e, "unreadable layer index: its volume's objects are kept");
                refs.protected.insert(uid);
            }
        }
    }
    Ok(refs)
}

/// Collects garbage in every backend the engine knows.
pub async fn collect(
    engine: &Engine,
    volumes: &Volumes,
    now_ms: u64,
    grace: Duration,
) -> Result<GcReport> {
    let mut referenced: HashSet<(String, String)> = HashSet::new();
    for layer in volumes.all_layers() {
        for (_, rec) in layer.map.read().records()? {
            if let ExtentRecord::Remote(r)
            | ExtentRecord::Backed(r)
            | ExtentRecord::Overlay { remote: r, .. } = rec
            {
                referenced.insert((r.backend, r.key));
            }
        }
    }
    let owned: HashMap<String, Owned> = volumes.owned_uids()?;
    let legacy = volumes.owns_legacy_keys()?;
    let config = engine.config();
    let mut report = GcReport::default();
    let grace_ms = grace.as_millis() as u64;
    // Objects of each owned volume still in any backend after collection.
    let mut left: HashMap<String, u64> = HashMap::new();
    // Partial uploads carry the backend's wall-clock times; the grace is
    // in the daemon's (possibly sped-up) time.
    let wall_grace = (grace_ms as f64 / config.server.clock_speed.max(1e-9)) as u64;
    let partial_before = clock::Clock::now_ms(&clock::SystemClock).saturating_sub(wall_grace);
    for name in config.backends.keys() {
        let store = engine.backend(name)?;
        match store.reclaim_partial(partial_before).await {
            Ok(n) => report.partial_uploads += n,
            Err(e) => report
                .errors
                .push(format!("backend {name}: reclaiming partial uploads: {e}")),
        }
        let refs = match backup_refs(store.as_ref(), name).await {
            Ok(r) => r,
            Err(e) => {
                // Without the backups' references nothing is safe to delete here.
                report
                    .errors
                    .push(format!("backend {name}: reading backups: {e}"));
                continue;
            }
        };
        let mut garbage: HashMap<Option<String>, Vec<String>> = HashMap::new();
        // Data objects are under `data/`; the old layout's at the root,
        // listed only by a node that wrote them.
        let mut listing = if legacy {
            store.list("")
        } else {
            store.list(keys::DATA_PREFIX)
        };
        while let Some(item) = listing.next().await {
            let meta = match item {
                Ok(m) => m,
                Err(e) => {
                    report.errors.push(e.to_string());
                    break;
                }
            };
            if !meta.key.starts_with(keys::DATA_PREFIX)
                && keys::parse_legacy_key(&meta.key).is_none()
            {
                continue;
            }
            report.listed += 1;
            let (uid, written_ms) = if let Some(dk) = keys::parse_data_key(&meta.key) {
                let mine = owned
                    .get(&dk.uid)
                    .is_some_and(|o| dk.generation <= o.generation)
                    && !refs.protected.contains(&dk.uid);
                if !mine {
                    report.foreign += 1;
                    continue;
                }
                *left.entry(dk.uid.clone()).or_default() += 1;
                (Some(dk.uid), dk.written_ms)
            } else if let Some((_, _, written_ms)) = keys::parse_legacy_key(&meta.key) {
                if !legacy {
                    report.foreign += 1;
                    continue;
                }
                (None, written_ms)
            } else {
                report.foreign += 1;
                continue;
            };
            if referenced.contains(&(name.clone(), meta.key.clone())) {
                report.referenced += 1;
            } else if refs.keys.contains(&meta.key) {
                report.in_backups += 1;
            } else if now_ms.saturating_sub(written_ms) < grace_ms {
                report.young += 1;
            } else {
                garbage.entry(uid).or_default().push(meta.key);
            }
        }
        drop(listing);
        for (uid, keys) in garbage {
            // A live volume another node has taken since: not ours any more.
            if let Some(uid) = &uid {
                if let Some(o) = owned.get(uid).filter(|o| !o.deleted) {
                    match claimed_generations(store.as_ref(), uid).await {
                        Ok(g) if g.last().copied().unwrap_or(0) > o.generation => {
                            report.foreign += keys.len() as u64;
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            report.errors.push(e.to_string());
                            continue;
                        }
                    }
                }
            }
            for key in keys {
                match store.delete(&key).await {
                    Ok(()) => {
                        report.deleted += 1;
                        if let Some(n) = uid.as_ref().and_then(|u| left.get_mut(u)) {
                            *n -= 1;
                        }
                        engine
                            .stats
                            .gc_objects_deleted
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => report.errors.push(e.to_string()),
                }
            }
        }
    }
    // A deleted volume whose objects are all gone is forgotten.
    if report.errors.is_empty() {
        for (uid, o) in &owned {
            if o.deleted && left.get(uid).copied().unwrap_or(0) == 0 {
                volumes.forget_deleted(uid)?;
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
