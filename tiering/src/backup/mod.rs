//! Backups in the object store, and recovery from the bucket alone
//! (docs/backups.md).
//!
//! A backup is a snapshot whose data and metadata all live in the bucket.
//! Taking one snapshots the volume, uploads every extent of the snapshot's
//! layers that is not in the bucket yet (a frozen layer never changes, so a
//! layer is uploaded once and every later backup reuses its index: backups
//! are incremental by construction, and extents already tiered cost
//! nothing), writes an index for each layer new to the bucket, and commits
//! the manifest with a conditional put. Until that put, nothing in the
//! bucket names the new backup: a crash leaves the previous ones intact and
//! the half-made one invisible (its objects are garbage for GC, or reused
//! by the next backup, which finds them recorded in the layer).
//!
//! `restore` makes a volume from a manifest on any node; `fence` (in
//! `volume`) keeps two nodes from both writing it.

pub mod manifest;
pub mod restore;
pub mod scan;

use std::sync::Arc;

use backends::{BackendError, ObjectStore, PutOptions};
use futures::TryStreamExt;
use serde::Serialize;

use crate::error::{Result, TierError};
use crate::extent_map::{ExtentRecord, Slot};
use crate::keys;
use crate::volume::{Layer, Volume, Volumes, BLOCK_SIZE};
use manifest::{LayerIndex, Manifest, ManifestLayer, MANIFEST_FORMAT};

/// How many extents a backup's manifest names as the hot set to prefetch.
const HOT_EXTENTS: usize = 4096;
/// Name prefix of the snapshot a backup takes.
pub const SNAPSHOT_PREFIX: &str = "backup-";

/// What a backup did, or what the bucket says of one.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    pub id: String,
    pub volume: String,
    pub uid: String,
    pub backend: String,
    pub size: u64,
    pub class: String,
    pub created_ms: u64,
    pub generation: u64,
    pub layers: usize,
    /// Bytes uploaded by this backup: extent objects and indexes.
    pub bytes_uploaded: u64,
    /// Extent objects uploaded, and extents it reused from the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_uploaded: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_reused: Option<u64>,
}

impl BackupInfo {
    fn from_manifest(m: &Manifest, backend: &str) -> Self {
        Self {
            id: m.id.clone(),
            volume: m.volume.clone(),
            uid: m.uid.clone(),
            backend: backend.to_string(),
            size: m.size,
            class: m.class.clone(),
            created_ms: m.created_ms,
            generation: m.generation,
            layers: m.layers.len(),
            bytes_uploaded: m.bytes_uploaded,
            objects_uploaded: None,
            objects_reused: None,
        }
    }
}

/// A backup id for time `ms`: `YYYYMMDD-HHMMSS-mmm` (UTC), sortable.
pub fn backup_id(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}{mo:02}{d:02}-{:02}{:02}{:02}-{:03}",
        t / 3600,
        t / 60 % 60,
        t % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The backend of `vol`'s class, by name and handle.
fn class_backend(volumes: &Volumes, vol: &Volume) -> Result<(String, Arc<dyn ObjectStore>)> {
    let meta = vol.meta();
    let class = volumes.engine().class(&meta.class)?;
    let Some(backend) = class.backend.clone() else {
        return Err(TierError::InvalidArgument(format!(
            "volume {:?} is in class {:?}, which names no backend to back up to",
            meta.name, meta.class
        )));
    };
    let store = volumes.engine().backend(&backend)?;
    Ok((backend, store))
}

/// Puts `data` under `key` unless something is there; an object already
/// there with the same bytes (an earlier attempt of this put) is success.
pub(crate) fn put_once(
    volumes: &Volumes,
    store: &Arc<dyn ObjectStore>,
    key: &str,
    data: Vec<u8>,
) -> Result<()> {
    let engine = volumes.engine();
    engine.block_on(async {
        match store
            .put(key, data.clone().into(), &PutOptions::if_absent())
            .await
        {
            Ok(_) => Ok(()),
            Err(BackendError::PreconditionFailed(ctx)) => {
                if store.get(key).await? == data {
                    Ok(())
                } else {
                    Err(TierError::Backend(BackendError::PreconditionFailed(ctx)))
                }
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Backs `volume` up to its class's backend: see the module doc. Blocks;
/// run it on a blocking thread.
pub fn create(volumes: &Volumes, volume: &str) -> Result<BackupInfo> {
    create_with(volumes, volume, false)
}

/// [`create`], marking the backup as the schedule's (`scheduled`), which
/// `prune` may delete.
pub fn create_with(volumes: &Volumes, volume: &str, scheduled: bool) -> Result<BackupInfo> {
    let vol = volumes.get(volume)?;
    let (backend, store) = class_backend(volumes, &vol)?;
    let generation = volumes.ensure_owner_in(&vol, &backend, &store)?;
    // One pass or backup of a volume at a time.
    let _pass = vol.pass.lock();
    // A backup that died left its snapshot: its layers are what matter,
    // and they stay for as long as the volume reads through them.
    for (stale, _) in volumes.snapshot_times(volume)? {
        if stale.starts_with(SNAPSHOT_PREFIX) {
            volumes.snapshot_delete(volume, &stale)?;
            tracing::info!(volume, snapshot = %stale, "snapshot of an interrupted backup deleted");
        }
    }
    let now = volumes.clock().now_ms();
    let id = backup_id(now);
    let snapshot = format!("{SNAPSHOT_PREFIX}{id}");
    volumes.snapshot_create(volume, &snapshot)?;
    let result = backup_snapshot(
        volumes,
        &vol,
        &backend,
        &store,
        &Naming {
            id: &id,
            snapshot: &snapshot,
            scheduled,
        },
        generation,
    );
    // The snapshot did its job (its layers are in the bucket now) or the
    // backup failed; either way it goes, and its layers stay as long as
    // the volume reads through them.
    if let Err(e) = volumes.snapshot_delete(volume, &snapshot) {
        tracing::warn!(volume, snapshot = %snapshot, error = %e, "could not delete a backup's snapshot");
    }
    let info = result?;
    volumes.set_last_backup_ms(&vol, info.created_ms)?;
    tracing::info!(volume, backup = %info.id, bytes = info.bytes_uploaded, uploaded = info.objects_uploaded, reused = info.objects_reused, "backup committed");
    Ok(info)
}

/// What a backup is called, and by whom it was taken.
struct Naming<'a> {
    id: &'a str,
    snapshot: &'a str,
    scheduled: bool,
}

fn backup_snapshot(
    volumes: &Volumes,
    vol: &Arc<Volume>,
    backend: &str,
    store: &Arc<dyn ObjectStore>,
    naming: &Naming,
    generation: u64,
) -> Result<BackupInfo> {
    let (id, snapshot) = (naming.id, naming.snapshot);
    let meta = vol.meta();
    let frozen = vol
        .top()
        .parent()
        .cloned()
        .ok_or_else(|| TierError::CorruptMetadata {
            key: format!("volume {}", meta.name),
            reason: "a snapshot was taken but the top layer has no parent".into(),
        })?;
    let mut chain = frozen.chain();
    chain.reverse();
    let mut layers = Vec::new();
    let mut uploaded = Counts::default();
    for layer in &chain {
        let index = match volumes.layer_index(layer.id())? {
            Some(key) => key,
            None => {
                let key = keys::layer_index_key(&meta.uid, layer.name(), id);
                let records = backup_layer(vol, layer, backend, store, &mut uploaded)?;
                let ix = LayerIndex {
                    uid: meta.uid.clone(),
                    layer: layer.name().to_string(),
                    parent: layer
                        .parent()
                        .map(|p| p.name().to_string())
                        .unwrap_or_default(),
                    size: layer.size(),
                    extent_size: meta.extent_size,
                    records,
                };
                let bytes = ix.encode();
                uploaded.bytes += bytes.len() as u64;
                crate::failpoint::hit("backup-before-index");
                put_once(volumes, store, &key, bytes)?;
                volumes.set_layer_index(layer.id(), &key)?;
                key
            }
        };
        layers.push(ManifestLayer {
            name: layer.name().to_string(),
            index,
            size: layer.size(),
        });
    }
    // Hot: touched within the class's cooling period (what the policy
    // would keep local), hottest first.
    let mut heat = vol.heat().volume_extents(vol.id())?;
    let class = volumes.engine().class(&meta.class)?;
    let cooling = vol.current_cooling(&class);
    let use_of = policy::select::Cooling::of_class(&class, cooling.scans_warm);
    let now = volumes.clock().now_ms();
    heat.retain(|h| {
        (h.reads > 0 || h.writes > 0)
            && (cooling.base_ms == 0
                || now.saturating_sub(use_of.last_use(Some(h), 0)) < cooling.of(h.extent))
    });
    heat.sort_by(|a, b| b.temperature.total_cmp(&a.temperature));
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id: id.to_string(),
        volume: meta.name.clone(),
        uid: meta.uid.clone(),
        size: frozen.size(),
        class: meta.class.clone(),
        extent_size: meta.extent_size,
        block_size: BLOCK_SIZE,
        generation,
        node: volumes.node().to_string(),
        snapshot: snapshot.to_string(),
        created_ms: volumes.clock().now_ms(),
        layers,
        hot_extents: heat.iter().take(HOT_EXTENTS).map(|h| h.extent).collect(),
        bytes_uploaded: uploaded.bytes,
        scheduled: naming.scheduled,
    };
    crate::failpoint::hit("backup-before-manifest");
    // Fenced since the start? Then a newer node owns the volume: commit nothing.
    volumes.ensure_owner_in(vol, backend, store)?;
    put_once(
        volumes,
        store,
        &keys::manifest_key(&meta.name, &meta.uid, id),
        manifest.encode(),
    )?;
    crate::failpoint::hit("backup-after-manifest");
    let mut info = BackupInfo::from_manifest(&manifest, backend);
    info.objects_uploaded = Some(uploaded.objects);
    info.objects_reused = Some(uploaded.reused);
    Ok(info)
}

#[derive(Default)]
struct Counts {
    bytes: u64,
    objects: u64,
    reused: u64,
}

/// Makes sure every extent frozen `layer` holds is in `store`, and returns
/// the layer's records as its index lists them: remote (an object) or zero.
fn backup_layer(
    vol: &Volume,
    layer: &Arc<Layer>,
    backend: &str,
    store: &Arc<dyn ObjectStore>,
    counts: &mut Counts,
) -> Result<Vec<(u64, ExtentRecord)>> {
    let n = layer.map.read().len();
    let allocated = layer.allocated_extents(vol.extent_size());
    let mut out = Vec::new();
    for e in 0..n {
        let slot = layer.map.read().slot(e);
        let rec = match slot {
            Slot::Inherit => continue,
            Slot::Zero => ExtentRecord::Zero,
            Slot::Remote => match layer.map.read().record(e)? {
                Some(ExtentRecord::Remote(r)) => {
                    if r.backend != backend {
                        return Err(TierError::InvalidArgument(format!(
                            "volume {:?}: extent {e} of layer {} is in backend {:?}, not in {backend:?} where backups go; promote it first",
                            vol.name(),
                            layer.name(),
                            r.backend
                        )));
                    }
                    counts.reused += 1;
                    ExtentRecord::Remote(r)
                }
                _ => ExtentRecord::Zero,
            },
            // The index names whole objects: the overlay is merged into
            // one first (its blocks then leave the local tier, as a pass's
            // merge would have had them).
            Slot::Overlay => {
                let class = vol.engine.class(&vol.meta().class)?;
                match vol.merge_overlay(layer, e, &class, backend, store)? {
                    crate::migrate::Outcome::Merged { stored } => {
                        counts.objects += 1;
                        counts.bytes += stored;
                    }
                    other => {
                        return Err(TierError::InvalidArgument(format!(
                            "volume {:?}: extent {e} of layer {}: merging its overlay for the backup came to {other:?}",
                            vol.name(),
                            layer.name()
                        )))
                    }
                }
                match layer.map.read().record(e)? {
                    Some(ExtentRecord::Remote(r)) => ExtentRecord::Remote(r),
                    other => {
                        return Err(TierError::CorruptMetadata {
                            key: format!("extent {}/{e}", layer.id),
                            reason: format!("after a merge the record is {other:?}"),
                        })
                    }
                }
            }
            Slot::Local | Slot::Partial => {
                if slot == Slot::Local && !allocated.get(e as usize).copied().unwrap_or(false) {
                    // A hole: zeros in a bottom layer, and a layer on top
                    // holds what it wrote (a Local slot there is written).
                    if layer.parent().is_none() {
                        continue;
                    }
                }
                match vol.back_up_extent(layer, e, backend, store)? {
                    Some((r, stored)) => {
                        counts.objects += 1;
                        counts.bytes += stored;
                        r
                    }
                    None => {
                        counts.reused += 1;
                        match layer.map.read().record(e)? {
                            Some(ExtentRecord::Remote(r)) | Some(ExtentRecord::Backed(r)) => {
                                ExtentRecord::Remote(r)
                            }
                            Some(ExtentRecord::Zero) => ExtentRecord::Zero,
                            _ => continue,
                        }
                    }
                }
            }
        };
        out.push((e, rec));
    }
    Ok(out)
}

/// Deletes `vol`'s oldest scheduled backups in its class's backend beyond
/// the newest `keep` (backups taken by hand are never deleted). Returns
/// the ids deleted.
pub fn prune(volumes: &Volumes, vol: &Volume, keep: u32) -> Result<Vec<String>> {
    let (backend, store) = class_backend(volumes, vol)?;
    let meta = vol.meta();
    let engine = volumes.engine();
    let mut scheduled = Vec::new();
    for (id, key) in engine.block_on(manifest_keys(store.as_ref(), &meta.name))? {
        if keys::parse_manifest_key(&key).is_none_or(|(_, uid, _)| uid != meta.uid) {
            continue;
        }
        // An unreadable manifest is left alone (and protects its objects).
        if let Ok(m) = engine.block_on(read_manifest(store.as_ref(), &backend, &key)) {
            if m.scheduled {
                scheduled.push(id);
            }
        }
    }
    let excess = scheduled.len().saturating_sub(keep as usize);
    let mut deleted = Vec::new();
    for id in scheduled.into_iter().take(excess) {
        engine.block_on(delete(store.as_ref(), &backend, &meta.name, &id))?;
        deleted.push(id);
    }
    Ok(deleted)
}

/// Every backup in `store`, of `volume` or of all volumes, oldest first
/// per volume. Damaged manifests are listed with the reason.
pub async fn list(
    store: &dyn ObjectStore,
    backend: &str,
    volume: Option<&str>,
) -> Result<Vec<std::result::Result<BackupInfo, TierError>>> {
    let prefix = match volume {
        Some(v) => keys::backups_of(v),
        None => keys::BACKUPS_PREFIX.to_string(),
    };
    let metas: Vec<backends::ObjectMeta> = store.list(&prefix).try_collect().await?;
    let mut out = Vec::new();
    for m in metas {
        if keys::parse_manifest_key(&m.key).is_none() {
            continue;
        }
        let got = read_manifest(store, backend, &m.key)
            .await
            .map(|man| BackupInfo::from_manifest(&man, backend));
        out.push(got);
    }
    Ok(out)
}

/// Reads and checks the manifest at `key`.
pub async fn read_manifest(store: &dyn ObjectStore, backend: &str, key: &str) -> Result<Manifest> {
    let bytes = store.get(key).await?.into_bytes();
    Manifest::decode(&bytes).map_err(|reason| TierError::BadBackup {
        backend: backend.to_string(),
        key: key.to_string(),
        reason,
    })
}

/// Reads and checks the layer index at `key`.
pub async fn read_index(store: &dyn ObjectStore, backend: &str, key: &str) -> Result<LayerIndex> {
    let bytes = store.get(key).await?.into_bytes();
    LayerIndex::decode(&bytes).map_err(|reason| TierError::BadBackup {
        backend: backend.to_string(),
        key: key.to_string(),
        reason,
    })
}

/// The manifest keys of `volume`'s backups in `store`, oldest first.
pub async fn manifest_keys(store: &dyn ObjectStore, volume: &str) -> Result<Vec<(String, String)>> {
    let metas: Vec<backends::ObjectMeta> =
        store.list(&keys::backups_of(volume)).try_collect().await?;
    let mut out: Vec<(String, String)> = metas
        .into_iter()
        .filter_map(|m| keys::parse_manifest_key(&m.key).map(|(_, _, id)| (id, m.key)))
        .collect();
    out.sort();
    Ok(out)
}

/// Deletes backup `id` of `volume` from `store`: its manifest. Objects only
/// it referred to become garbage for the collector of the node that owns
/// the volume.
pub async fn delete(store: &dyn ObjectStore, backend: &str, volume: &str, id: &str) -> Result<()> {
    let all = manifest_keys(store, volume).await?;
    let Some((_, key)) = all.iter().find(|(i, _)| i == id) else {
        return Err(TierError::BackupNotFound {
            volume: volume.to_string(),
            backup: id.to_string(),
            backend: backend.to_string(),
            known: all.into_iter().map(|(i, _)| i).collect(),
        });
    };
    store.delete(key).await?;
    tracing::info!(volume, backup = id, backend, "backup deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_are_utc_and_sort_by_time() {
        assert_eq!(backup_id(0), "19700101-000000-000");
        assert_eq!(backup_id(1_796_393_700_123), "20261204-141500-123");
        assert!(backup_id(1_796_393_700_124) > backup_id(1_796_393_700_123));
        assert_eq!(backup_id(951_782_400_000), "20000229-000000-000");
    }
}
