//! Snapshots, clones and revert: the registry's operations on layers.
//!
//! Each one changes which layers exist and which is a volume's top in one
//! synced RocksDB batch, after any new layer's file exists and before any
//! old one's file goes, so a crash leaves the state before or after it and
//! at worst a file no metadata names (removed at the next start). A layer is
//! removed once nothing reads through it: no volume has it as top, no
//! snapshot is it, and no other layer sits on it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rocksdb::WriteBatch;
use serde::Serialize;

use super::layer::{full_words, visible_blocks};
use super::meta::{validate_name, VolumeMeta};
use super::registry::{file_name, NEXT_ID_KEY};
use super::{HeldLayer, Layer, LayerMeta, LocalTier, Volume, Volumes, BLOCK_SIZE};
use crate::blocks::Blocks;
use crate::config::Config;
use crate::db::{self, CF_LAYERS, CF_META};
use crate::error::{Result, TierError};
use crate::extent_map::{ExtentMap, ExtentRecord, Slot};

/// What the API reports about a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub volume: String,
    /// The read-only NBD export that serves it.
    pub export: String,
    pub created_ms: u64,
    pub size: u64,
    /// Bytes of the snapshot's own layer in its local file (data written
    /// between the snapshot before it and this one).
    pub bytes_local: u64,
    /// Logical bytes only this snapshot holds: what deleting it frees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_exclusive: Option<u64>,
}

/// Where a volume's data is held, in logical bytes (local or remote): by the
/// volume alone, by one of its snapshots alone, or by several of them (the
/// volume and a snapshot, two snapshots, a clone).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Space {
    pub bytes_owned: u64,
    pub bytes_shared: u64,
    /// Per snapshot, oldest first: what deleting it would free.
    pub snapshots: Vec<(String, u64)>,
}

/// A request to clone a snapshot into a new volume.
#[derive(Debug, Clone)]
pub struct CloneVolume {
    /// `VOLUME@SNAPSHOT`.
    pub source: String,
    pub name: String,
    /// The clone's class; the origin's when None.
    pub class: Option<String>,
}

/// Splits an export name `VOLUME@SNAPSHOT`.
pub fn split_export(name: &str) -> Option<(&str, &str)> {
    name.split_once('@')
}

impl Volumes {
    pub(super) fn put_layer_meta(&self, batch: &mut WriteBatch, m: &LayerMeta) -> Result<()> {
        let bytes = serde_json::to_vec(m).map_err(|e| TierError::CorruptMetadata {
            key: format!("layer {}", m.id),
            reason: e.to_string(),
        })?;
        batch.put_cf(db::cf(&self.db, CF_LAYERS)?, m.id.to_be_bytes(), bytes);
        Ok(())
    }

    /// The layer `id`, if loaded (GC asks which objects are referred to).
    pub fn layer(&self, id: u64) -> Option<Arc<Layer>> {
        self.layers.read().get(&id).cloned()
    }

    /// Every layer loaded.
    pub fn all_layers(&self) -> Vec<Arc<Layer>> {
        self.layers.read().values().cloned().collect()
    }

    pub(super) fn add_view(
        &self,
        owner: &Volume,
        snapshot: &str,
        layer: Arc<Layer>,
        lm: &LayerMeta,
    ) {
        let om = owner.meta();
        let export = format!("{}@{snapshot}", om.name);
        let meta = VolumeMeta {
            id: om.id,
            name: export.clone(),
            size: lm.size,
            class: om.class.clone(),
            extent_size: om.extent_size,
            created_ms: lm.frozen_ms,
            record_trace: None,
            layer: Some(layer.id),
        };
        let view = Volume::new(meta, layer, self.heat.clone(), self.engine.clone(), true);
        self.views.write().insert(export, Arc::new(view));
    }

    pub(super) fn drop_view(&self, volume: &str, snapshot: &str) {
        let export = format!("{volume}@{snapshot}");
        if let Some(v) = self.views.write().remove(&export) {
            v.closed.store(true, Ordering::SeqCst);
            self.engine.metrics.forget_volume(&export);
        }
    }

    /// What an NBD client may open: a volume, or a snapshot's read-only export.
    pub fn export(&self, name: &str) -> Result<Arc<Volume>> {
        if let Some(v) = self.views.read().get(name) {
            return Ok(v.clone());
        }
        if let Some((volume, snapshot)) = split_export(name) {
            let vol = self.get(volume)?;
            return Err(TierError::SnapshotNotFound {
                volume: volume.into(),
                snapshot: snapshot.into(),
                known: self.snapshot_names(&vol),
            });
        }
        self.get(name)
    }

    /// Every export name: volumes, then snapshots.
    pub fn export_names(&self) -> Vec<String> {
        let mut names = self.names();
        names.extend(self.views.read().keys().cloned());
        names
    }

    fn snapshot_names(&self, vol: &Volume) -> Vec<String> {
        let id = vol.id();
        let mut v: Vec<(u64, String)> = self
            .layer_metas
            .read()
            .values()
            .filter(|m| m.volume == id)
            .filter_map(|m| m.snapshot.clone().map(|s| (m.frozen_ms, s)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    fn snapshot_meta(&self, vol: &Volume, snapshot: &str) -> Result<LayerMeta> {
        let id = vol.id();
        self.layer_metas
            .read()
            .values()
            .find(|m| m.volume == id && m.snapshot.as_deref() == Some(snapshot))
            .cloned()
            .ok_or_else(|| TierError::SnapshotNotFound {
                volume: vol.name(),
                snapshot: snapshot.to_string(),
                known: self.snapshot_names(vol),
            })
    }

    /// Other volumes whose layers sit on one of `vol`'s snapshots.
    pub(super) fn clones_of(&self, vol: &Volume) -> Vec<String> {
        let id = vol.id();
        self.map
            .read()
            .values()
            .filter(|v| v.id() != id)
            .filter(|v| {
                v.top().chain().iter().skip(1).any(|l| {
                    self.layer_metas
                        .read()
                        .get(&l.id)
                        .is_some_and(|m| m.volume == id)
                })
            })
            .map(|v| v.name())
            .collect()
    }

    /// The frozen layers `vol`'s policy pass governs: those of its own
    /// snapshots, and those it reads through whose volume is gone (the first
    /// such volume by name takes them), each with the live volumes that read
    /// through it.
    pub fn held_layers(&self, vol: &Volume) -> Vec<HeldLayer> {
        let volumes: Vec<Arc<Volume>> = self.map.read().values().cloned().collect();
        let ids: std::collections::HashSet<u64> = volumes.iter().map(|v| v.id()).collect();
        let chains: Vec<(String, Vec<Arc<Layer>>)> = volumes
            .iter()
            .map(|v| (v.name(), v.top().chain()))
            .collect();
        let metas = self.layer_metas.read().clone();
        let mut out = Vec::new();
        for m in metas.values().filter(|m| m.frozen) {
            let Some(layer) = self.layer(m.id) else {
                continue;
            };
            let readers: Vec<&(String, Vec<Arc<Layer>>)> = chains
                .iter()
                .filter(|(_, c)| c.iter().any(|l| l.id == m.id))
                .collect();
            let governs = if ids.contains(&m.volume) {
                m.volume == vol.id()
            } else {
                readers.first().is_some_and(|(name, _)| *name == vol.name())
            };
            if governs {
                out.push(HeldLayer {
                    layer,
                    frozen_ms: m.frozen_ms,
                    viewers: readers.iter().map(|(_, c)| c[0].clone()).collect(),
                });
            }
        }
        out
    }

    /// Creates an empty layer file for a new top layer.
    fn new_layer_file(&self, id: u64, size: u64, volume: &str) -> Result<LocalTier> {
        let path = self.dir.join(file_name(id));
        LocalTier::create(&path, size).map_err(|source| TierError::Io {
            volume: volume.to_string(),
            op: "create layer file",
            path,
            source,
        })
    }

    fn open_layer(
        &self,
        id: u64,
        tier: LocalTier,
        like: &VolumeMeta,
        parent: Arc<Layer>,
        size: u64,
    ) -> Result<Arc<Layer>> {
        let map = ExtentMap::load(
            self.db.clone(),
            id,
            size.div_ceil(like.extent_size),
            like.extent_blocks(),
            true,
        )?;
        let layer = Arc::new(Layer::new(id, tier, map, Some(parent), size));
        self.layers.write().insert(id, layer.clone());
        Ok(layer)
    }

    /// The description of `vol`'s top layer as it is now (a volume's first
    /// layer may have none yet).
    fn top_meta(&self, vol: &Volume, top: &Layer) -> LayerMeta {
        self.layer_metas
            .read()
            .get(&top.id)
            .cloned()
            .unwrap_or_else(|| LayerMeta {
                id: top.id,
                parent: top.parent.as_ref().map(|p| p.id),
                volume: vol.id(),
                snapshot: None,
                frozen: false,
                size: vol.size(),
                created_ms: vol.meta().created_ms,
                frozen_ms: 0,
            })
    }

    /// Takes a snapshot of `volume` named `name`: freezes its top layer and
    /// puts a new one on it. Writes wait only for the flush and the
    /// metadata commit.
    pub fn snapshot_create(&self, volume: &str, name: &str) -> Result<SnapshotInfo> {
        validate_name(name)?;
        let _g = self.admin.lock();
        let vol = self.get(volume)?;
        if self.snapshot_meta(&vol, name).is_ok() {
            return Err(TierError::SnapshotExists {
                volume: volume.into(),
                snapshot: name.into(),
            });
        }
        let _gate = vol.write_gate.write();
        // Every acknowledged write is in the layer being frozen, durably.
        vol.flush()?;
        crate::failpoint::hit("snapshot-before-commit");
        let top = vol.top();
        let now = self.clock.now_ms();
        let id = self.next_id()?;
        let size = vol.size();
        let tier = self.new_layer_file(id, size, volume)?;
        let mut frozen = self.top_meta(&vol, &top);
        frozen.frozen = true;
        frozen.snapshot = Some(name.to_string());
        frozen.frozen_ms = now;
        frozen.size = size;
        let fresh = LayerMeta {
            id,
            parent: Some(top.id),
            volume: vol.id(),
            snapshot: None,
            frozen: false,
            size,
            created_ms: now,
            frozen_ms: 0,
        };
        let mut meta = vol.meta();
        meta.layer = Some(id);
        let mut batch = WriteBatch::default();
        self.put_layer_meta(&mut batch, &frozen)?;
        self.put_layer_meta(&mut batch, &fresh)?;
        self.put_meta(&mut batch, &meta)?;
        batch.put_cf(
            db::cf(&self.db, CF_META)?,
            NEXT_ID_KEY,
            (id + 1).to_be_bytes(),
        );
        if let Err(e) = db::write_synced(&self.db, batch) {
            let _ = std::fs::remove_file(tier.path());
            return Err(e);
        }
        crate::failpoint::hit("snapshot-after-commit");
        let layer = self.open_layer(id, tier, &meta, top.clone(), size)?;
        vol.set_top(layer);
        *vol.meta.write() = meta;
        self.layer_metas.write().insert(frozen.id, frozen.clone());
        self.layer_metas.write().insert(fresh.id, fresh);
        self.add_view(&vol, name, top.clone(), &frozen);
        tracing::info!(volume, snapshot = name, layer = top.id, "snapshot created");
        Ok(self.snapshot_info(&vol, &frozen, &top))
    }

    fn snapshot_info(&self, vol: &Volume, m: &LayerMeta, layer: &Layer) -> SnapshotInfo {
        let name = m.snapshot.clone().unwrap_or_default();
        SnapshotInfo {
            export: format!("{}@{name}", vol.name()),
            name,
            volume: vol.name(),
            created_ms: m.frozen_ms,
            size: m.size,
            bytes_local: layer.tier.allocated_bytes().unwrap_or(0),
            bytes_exclusive: None,
        }
    }

    /// Who holds `vol`'s data: every block of every layer it or its
    /// snapshots read, counted for the one reader that reads it, or as
    /// shared when several do. (Remembered for [`Volumes::space_cached`].)
    pub fn space(&self, vol: &Volume) -> Space {
        let sp = self.count_space(vol);
        self.space_cache
            .lock()
            .insert(vol.id(), (self.clock.now_ms(), sp.clone()));
        sp
    }

    fn count_space(&self, vol: &Volume) -> Space {
        let metas = self.layer_metas.read().clone();
        let id = vol.id();
        let top = vol.top();
        let mut snaps: Vec<&LayerMeta> = metas
            .values()
            .filter(|m| m.volume == id && m.snapshot.is_some())
            .collect();
        snaps.sort_by_key(|m| (m.frozen_ms, m.id));
        let mut layers: Vec<Arc<Layer>> = top.chain();
        for m in &snaps {
            if let Some(l) = self.layer(m.id) {
                for c in l.chain() {
                    if !layers.iter().any(|x| x.id == c.id) {
                        layers.push(c);
                    }
                }
            }
        }
        // Readers: every volume's top layer and every snapshot, of any
        // volume (a clone reads what it shares).
        let mut readers: Vec<Arc<Layer>> = self.map.read().values().map(|v| v.top()).collect();
        for m in metas.values().filter(|m| m.snapshot.is_some()) {
            if let Some(l) = self.layer(m.id) {
                readers.push(l);
            }
        }
        readers.retain(|r| {
            r.chain()
                .iter()
                .any(|c| layers.iter().any(|l| l.id == c.id))
        });
        let mut per_reader = vec![0u64; readers.len()];
        let mut shared = 0u64;
        for l in &layers {
            let n = l.map.read().len();
            let runs = l.data_runs();
            for e in 0..n {
                if matches!(l.map.read().slot(e), Slot::Inherit | Slot::Zero) {
                    continue;
                }
                let data = l.data_words(e, &runs);
                let seen: Vec<Option<Vec<u64>>> = readers
                    .iter()
                    .map(|r| {
                        visible_blocks(r, l, e)
                            .map(|v| v.iter().zip(&data).map(|(a, b)| a & b).collect())
                    })
                    .collect();
                let words = seen.iter().flatten().map(Vec::len).max().unwrap_or(0);
                let (mut once, mut twice) = (vec![0u64; words], vec![0u64; words]);
                for v in seen.iter().flatten() {
                    for (i, &w) in v.iter().enumerate() {
                        twice[i] |= once[i] & w;
                        once[i] |= w;
                    }
                }
                shared += twice.iter().map(|w| w.count_ones() as u64).sum::<u64>() * BLOCK_SIZE;
                for (k, v) in seen.iter().enumerate() {
                    if let Some(v) = v {
                        let only: u64 = v
                            .iter()
                            .zip(&twice)
                            .map(|(a, b)| (a & !b).count_ones() as u64)
                            .sum();
                        per_reader[k] += only * BLOCK_SIZE;
                    }
                }
            }
        }
        let bytes_of = |layer: u64| {
            readers
                .iter()
                .position(|r| r.id == layer)
                .map(|k| per_reader[k])
                .unwrap_or(0)
        };
        Space {
            bytes_owned: bytes_of(top.id),
            bytes_shared: shared,
            snapshots: snaps
                .iter()
                .map(|m| (m.snapshot.clone().unwrap_or_default(), bytes_of(m.id)))
                .collect(),
        }
    }

    /// `volume`'s snapshots as (name, time taken), oldest first: without
    /// the space accounting `snapshot_list` adds (for the schedule).
    pub fn snapshot_times(&self, volume: &str) -> Result<Vec<(String, u64)>> {
        let vol = self.get(volume)?;
        let id = vol.id();
        let mut v: Vec<(u64, u64, String)> = self
            .layer_metas
            .read()
            .values()
            .filter(|m| m.volume == id)
            .filter_map(|m| m.snapshot.clone().map(|s| (m.frozen_ms, m.id, s)))
            .collect();
        v.sort();
        Ok(v.into_iter().map(|(t, _, s)| (s, t)).collect())
    }

    /// [`Volumes::space`], computed at most once per `max_age_ms` of the
    /// clock per volume (the metrics scrape asks often; the count walks
    /// every extent of every layer).
    pub fn space_cached(&self, vol: &Volume, max_age_ms: u64) -> Space {
        let now = self.clock.now_ms();
        if let Some((at, sp)) = self.space_cache.lock().get(&vol.id()) {
            if now.saturating_sub(*at) < max_age_ms {
                return sp.clone();
            }
        }
        self.space(vol)
    }

    /// `volume`'s snapshots, oldest first.
    pub fn snapshot_list(&self, volume: &str) -> Result<Vec<SnapshotInfo>> {
        let vol = self.get(volume)?;
        let id = vol.id();
        let mut metas: Vec<LayerMeta> = self
            .layer_metas
            .read()
            .values()
            .filter(|m| m.volume == id && m.snapshot.is_some())
            .cloned()
            .collect();
        metas.sort_by_key(|m| (m.frozen_ms, m.id));
        let space = self.space(&vol);
        Ok(metas
            .iter()
            .filter_map(|m| {
                let layer = self.layer(m.id)?;
                let mut info = self.snapshot_info(&vol, m, &layer);
                info.bytes_exclusive = space
                    .snapshots
                    .iter()
                    .find(|(n, _)| Some(n) == m.snapshot.as_ref())
                    .map(|(_, b)| *b);
                Some(info)
            })
            .collect())
    }

    /// Deletes a snapshot. Its layer goes at once if nothing reads through
    /// it; otherwise it stays, unnamed, for the layers above it.
    pub fn snapshot_delete(&self, volume: &str, name: &str) -> Result<()> {
        let _g = self.admin.lock();
        let vol = self.get(volume)?;
        let mut m = self.snapshot_meta(&vol, name)?;
        m.snapshot = None;
        let mut batch = WriteBatch::default();
        self.put_layer_meta(&mut batch, &m)?;
        crate::failpoint::hit("snapshot-delete-before-commit");
        db::write_synced(&self.db, batch)?;
        self.layer_metas.write().insert(m.id, m.clone());
        self.drop_view(volume, name);
        self.release(m.id)?;
        let freed = self.compact_below(m.id)?;
        tracing::info!(volume, snapshot = name, freed, "snapshot deleted");
        Ok(())
    }

    /// Compacts layer `id` if it is hidden, and the hidden layers below it
    /// down to the first one a snapshot or volume is: the only layers whose
    /// readers can have changed when `id` lost its name. Bytes freed.
    pub(super) fn compact_below(&self, id: u64) -> Result<u64> {
        let mut freed = 0;
        let mut next = self.layer(id);
        while let Some(layer) = next.take() {
            let hidden = self
                .layer_metas
                .read()
                .get(&layer.id)
                .is_some_and(|m| m.frozen && m.snapshot.is_none());
            if !hidden {
                break;
            }
            freed += self.compact(&layer)?;
            next = layer.parent.clone();
        }
        Ok(freed)
    }

    /// Frees what a hidden layer holds that no volume or snapshot reads any
    /// more: whole extents (their objects become garbage) and, within
    /// extents still partly read, the blocks no one reads. Deleting a
    /// snapshot thus frees exactly the data only it held. Bytes freed
    /// locally.
    fn compact(&self, h: &Arc<Layer>) -> Result<u64> {
        let mut readers: Vec<Arc<Layer>> = self.map.read().values().map(|v| v.top()).collect();
        for m in self.layer_metas.read().values() {
            if m.snapshot.is_some() {
                if let Some(l) = self.layer(m.id) {
                    readers.push(l);
                }
            }
        }
        readers.retain(|r| r.id != h.id && r.chain().iter().any(|l| l.id == h.id));
        let (bpe, n) = {
            let map = h.map.read();
            (map.blocks_per_extent(), map.len())
        };
        let ext_bytes = bpe as u64 * BLOCK_SIZE;
        let size = h.size();
        let mut freed = 0u64;
        for e in 0..n {
            let slot = h.map.read().slot(e);
            if slot == Slot::Inherit {
                continue;
            }
            let mut seen = vec![0u64; bpe.div_ceil(64) as usize];
            for r in &readers {
                if let Some(v) = visible_blocks(r, h, e) {
                    seen.iter_mut().zip(&v).for_each(|(a, b)| *a |= b);
                }
            }
            let start = e * ext_bytes;
            let len = ext_bytes.min(size.saturating_sub(start));
            let _g = h.stripe(e).lock.write();
            let err = |op, err| TierError::Io {
                volume: format!("layer {}", h.id),
                op,
                path: h.tier.path().to_path_buf(),
                source: err,
            };
            if seen.iter().all(|&w| w == 0) {
                if matches!(slot, Slot::Local | Slot::Partial) {
                    h.tier.punch_hole(start, len).map_err(|e| err("punch", e))?;
                    freed += len;
                }
                h.map.read().forget(e)?;
                continue;
            }
            let held = match slot {
                Slot::Local => full_words(bpe),
                Slot::Partial => match h.map.read().blocks(e) {
                    Some(b) => b.words(),
                    None => continue,
                },
                _ => continue,
            };
            let keep: Vec<u64> = held.iter().zip(&seen).map(|(a, b)| a & b).collect();
            if keep == held {
                continue;
            }
            for b in 0..bpe {
                let (w, bit) = ((b / 64) as usize, 1u64 << (b % 64));
                if held[w] & bit != 0 && keep[w] & bit == 0 {
                    let off = start + b as u64 * BLOCK_SIZE;
                    if off < start + len {
                        h.tier
                            .punch_hole(off, BLOCK_SIZE.min(start + len - off))
                            .map_err(|e| err("punch", e))?;
                        freed += BLOCK_SIZE;
                    }
                }
            }
            // Committed after the punch: a crash in between leaves blocks
            // that read as zeros, which no one reads.
            h.map
                .read()
                .commit(e, &ExtentRecord::Partial(Blocks::from_words(bpe, &keep)))?;
        }
        if freed > 0 {
            tracing::debug!(layer = h.id, freed, "hidden layer compacted");
        }
        Ok(freed)
    }

    /// Removes layer `id` if nothing reads through it any more, then its
    /// parent if that leaves it unused, and so on down.
    pub(super) fn release(&self, id: u64) -> Result<()> {
        let mut next = Some(id);
        while let Some(id) = next.take() {
            let Some(m) = self.layer_metas.read().get(&id).cloned() else {
                return Ok(());
            };
            let named = m.snapshot.is_some();
            let is_top = self.map.read().values().any(|v| v.top().id == id);
            let has_children = self
                .layer_metas
                .read()
                .values()
                .any(|o| o.parent == Some(id));
            if named || is_top || has_children {
                return Ok(());
            }
            let mut batch = WriteBatch::default();
            crate::extent_map::delete_layer(&self.db, &mut batch, id)?;
            batch.delete_cf(db::cf(&self.db, CF_LAYERS)?, id.to_be_bytes());
            db::write_synced(&self.db, batch)?;
            self.layer_metas.write().remove(&id);
            if let Some(layer) = self.layers.write().remove(&id) {
                if let Err(e) = std::fs::remove_file(layer.tier.path()) {
                    tracing::warn!(layer = id, error = %e, "could not remove a released layer's file");
                }
            }
            tracing::debug!(layer = id, "layer released");
            next = m.parent;
        }
        Ok(())
    }

    /// Makes a new volume from snapshot `source` (`VOLUME@SNAPSHOT`) at once:
    /// its first layer sits on the snapshot's and shares all its data.
    pub fn clone_volume(&self, req: CloneVolume, config: &Config) -> Result<Arc<Volume>> {
        validate_name(&req.name)?;
        let Some((volume, snapshot)) = split_export(&req.source) else {
            return Err(TierError::InvalidArgument(format!(
                "clone source {:?} is not VOLUME@SNAPSHOT",
                req.source
            )));
        };
        let _g = self.admin.lock();
        let origin = self.get(volume)?;
        let snap = self.snapshot_meta(&origin, snapshot)?;
        let om = origin.meta();
        let class = req.class.clone().unwrap_or_else(|| om.class.clone());
        if !config.classes.contains_key(&class) {
            return Err(TierError::UnknownClass {
                class,
                known: config.class_names(),
            });
        }
        if self.map.read().contains_key(&req.name) {
            return Err(TierError::VolumeExists(req.name));
        }
        let base = self
            .layer(snap.id)
            .ok_or_else(|| TierError::CorruptMetadata {
                key: format!("layer {}", snap.id),
                reason: "a snapshot's layer is not loaded".into(),
            })?;
        let id = self.next_id()?;
        let now = self.clock.now_ms();
        let meta = VolumeMeta {
            id,
            name: req.name.clone(),
            size: snap.size,
            class,
            extent_size: om.extent_size,
            created_ms: now,
            record_trace: None,
            layer: Some(id),
        };
        let lm = LayerMeta {
            id,
            parent: Some(snap.id),
            volume: id,
            snapshot: None,
            frozen: false,
            size: snap.size,
            created_ms: now,
            frozen_ms: 0,
        };
        let tier = self.new_layer_file(id, snap.size, &req.name)?;
        let mut batch = WriteBatch::default();
        self.put_layer_meta(&mut batch, &lm)?;
        self.put_meta(&mut batch, &meta)?;
        batch.put_cf(
            db::cf(&self.db, CF_META)?,
            NEXT_ID_KEY,
            (id + 1).to_be_bytes(),
        );
        crate::failpoint::hit("clone-before-commit");
        if let Err(e) = db::write_synced(&self.db, batch) {
            let _ = std::fs::remove_file(tier.path());
            return Err(e);
        }
        let layer = self.open_layer(id, tier, &meta, base, snap.size)?;
        self.layer_metas.write().insert(id, lm);
        let vol = Arc::new(Volume::new(
            meta,
            layer,
            self.heat.clone(),
            self.engine.clone(),
            false,
        ));
        vol.refresh_trace();
        self.map.write().insert(req.name.clone(), vol.clone());
        tracing::info!(volume = %req.name, source = %req.source, id, "clone created");
        Ok(vol)
    }

    /// Rolls `volume` back to `snapshot`: its top layer is replaced by an
    /// empty one on the snapshot's. Refused while clients are connected,
    /// unless `force` (they then read the reverted data).
    pub fn revert(&self, volume: &str, snapshot: &str, force: bool) -> Result<Arc<Volume>> {
        let _g = self.admin.lock();
        let vol = self.get(volume)?;
        let snap = self.snapshot_meta(&vol, snapshot)?;
        let connections = vol.connections();
        if connections > 0 && !force {
            return Err(TierError::VolumeBusy {
                volume: volume.to_string(),
                connections,
            });
        }
        let base = self
            .layer(snap.id)
            .ok_or_else(|| TierError::CorruptMetadata {
                key: format!("layer {}", snap.id),
                reason: "a snapshot's layer is not loaded".into(),
            })?;
        let _gate = vol.write_gate.write();
        let old = vol.top();
        let id = self.next_id()?;
        let now = self.clock.now_ms();
        let tier = self.new_layer_file(id, snap.size, volume)?;
        let lm = LayerMeta {
            id,
            parent: Some(snap.id),
            volume: vol.id(),
            snapshot: None,
            frozen: false,
            size: snap.size,
            created_ms: now,
            frozen_ms: 0,
        };
        let mut meta = vol.meta();
        meta.layer = Some(id);
        meta.size = snap.size;
        let mut batch = WriteBatch::default();
        self.put_layer_meta(&mut batch, &lm)?;
        self.put_meta(&mut batch, &meta)?;
        batch.put_cf(
            db::cf(&self.db, CF_META)?,
            NEXT_ID_KEY,
            (id + 1).to_be_bytes(),
        );
        // The replaced top layer goes in the same batch: no snapshot is it
        // and nothing sits on it.
        crate::extent_map::delete_layer(&self.db, &mut batch, old.id)?;
        batch.delete_cf(db::cf(&self.db, CF_LAYERS)?, old.id.to_be_bytes());
        crate::failpoint::hit("revert-before-commit");
        if let Err(e) = db::write_synced(&self.db, batch) {
            let _ = std::fs::remove_file(tier.path());
            return Err(e);
        }
        let layer = self.open_layer(id, tier, &meta, base, snap.size)?;
        vol.set_top(layer);
        vol.size.store(meta.size, Ordering::SeqCst);
        *vol.meta.write() = meta;
        self.layer_metas.write().insert(id, lm);
        self.layer_metas.write().remove(&old.id);
        self.layers.write().remove(&old.id);
        if let Err(e) = std::fs::remove_file(old.tier.path()) {
            tracing::warn!(volume, error = %e, "could not remove the replaced layer's file");
        }
        if let Some(p) = &old.parent {
            let p = p.id;
            drop(old);
            self.release(p)?;
        }
        drop(_gate);
        tracing::info!(volume, snapshot, "volume reverted");
        Ok(vol)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use heatmap::{Clock, HeatConfig, HeatMap, ManualClock};

    use super::*;
    use crate::volume::CreateVolume;

    const MIB: u64 = 1 << 20;

    fn open(dir: &Path) -> Volumes {
        let cfg = HeatConfig::default();
        let db = db::open(&dir.join("db"), &cfg).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(5));
        let heat = Arc::new(HeatMap::new(db.clone(), clock.clone(), &cfg).unwrap());
        Volumes::open(db, heat, crate::engine::tests::engine(), clock, dir).unwrap()
    }

    fn create(vols: &Volumes, name: &str) -> Arc<Volume> {
        vols.create(
            CreateVolume {
                name: name.into(),
                size: 8 * MIB,
                class: "default".into(),
                extent_size: Some(MIB),
            },
            &Config::embedded(),
        )
        .unwrap()
    }

    fn read(v: &Arc<Volume>, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        v.read(off, &mut b, false).unwrap();
        b
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn a_snapshot_keeps_what_was_written_before_it_and_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let vols = open(dir.path());
        let v = create(&vols, "v");
        let old = pattern(3 * MIB as usize, 1);
        v.write(0, &old, false).unwrap();
        vols.snapshot_create("v", "s1").unwrap();
        // Whole blocks, a sub-block write straddling two blocks, a trim.
        v.write(4096, &[7u8; 8192], false).unwrap();
        v.write(MIB + 1000, &[9u8; 5000], false).unwrap();
        v.trim(2 * MIB, MIB, false).unwrap();
        let snap = vols.export("v@s1").unwrap();
        assert!(snap.is_read_only());
        assert!(
            read(&snap, 0, 3 * MIB as usize) == old,
            "the snapshot reads the old bytes"
        );
        let mut want = old.clone();
        want[4096..12288].fill(7);
        want[MIB as usize + 1000..MIB as usize + 6000].fill(9);
        want[2 * MIB as usize..3 * MIB as usize].fill(0);
        assert!(
            read(&v, 0, 3 * MIB as usize) == want,
            "the volume reads the new bytes"
        );
        // A write to the snapshot's export is refused, naming it.
        let e = snap.write(0, &[1u8; 4096], false).unwrap_err();
        assert!(matches!(e, TierError::ReadOnly { .. }), "{e}");
        assert_eq!(e.kind().nbd_errno(), libc::EPERM as u32);
        // Only the blocks written since take space in the new top layer.
        v.flush().unwrap();
        let own = v.top().tier.allocated_bytes().unwrap();
        assert!(
            own <= 8192 + 8192 + 4096 * 2,
            "{own} bytes in the top layer"
        );
        // After a restart, both still read the same.
        drop((v, snap));
        drop(vols);
        let vols = open(dir.path());
        let v = vols.get("v").unwrap();
        assert!(read(&v, 0, 3 * MIB as usize) == want);
        let snap = vols.export("v@s1").unwrap();
        assert!(read(&snap, 0, 3 * MIB as usize) == old);
        assert_eq!(vols.export_names(), vec!["v", "v@s1"]);
    }

    #[test]
    fn clones_are_independent_and_outlive_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let vols = open(dir.path());
        let config = Config::embedded();
        let v = create(&vols, "v");
        let base = pattern(2 * MIB as usize, 3);
        v.write(0, &base, false).unwrap();
        vols.snapshot_create("v", "s").unwrap();
        let c = vols
            .clone_volume(
                CloneVolume {
                    source: "v@s".into(),
                    name: "c".into(),
                    class: None,
                },
                &config,
            )
            .unwrap();
        assert!(
            read(&c, 0, 2 * MIB as usize) == base,
            "a clone starts as the snapshot"
        );
        c.write(0, &[1u8; 4096], false).unwrap();
        v.write(8192, &[2u8; 4096], false).unwrap();
        assert_eq!(read(&c, 0, 4096), vec![1u8; 4096]);
        assert!(
            read(&c, 8192, 4096) == base[8192..12288],
            "origin writes stay out of the clone"
        );
        assert!(
            read(&v, 0, 4096) == base[..4096],
            "clone writes stay out of the origin"
        );
        // The origin cannot go while its clone reads through it, unless asked.
        let e = vols.delete("v", false, false).unwrap_err();
        assert!(
            matches!(&e, TierError::HasClones { clones, .. } if clones == &["c"]),
            "{e}"
        );
        vols.delete("v", false, true).unwrap();
        assert!(vols.export("v@s").is_err());
        c.flush().unwrap();
        drop((c, v));
        drop(vols);
        let vols = open(dir.path());
        let c = vols.get("c").unwrap();
        let mut want = base.clone();
        want[..4096].fill(1);
        assert!(
            read(&c, 0, 2 * MIB as usize) == want,
            "the clone kept its data"
        );
        // With the clone gone, nothing holds the old layers: their files go.
        vols.delete("c", false, false).unwrap();
        let files = std::fs::read_dir(dir.path().join("volumes"))
            .unwrap()
            .count();
        assert_eq!(files, 0, "every layer file was released");
    }

    #[test]
    fn deleting_a_snapshot_frees_exactly_what_only_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let vols = open(dir.path());
        let v = create(&vols, "v");
        let old = pattern(2 * MIB as usize, 5);
        v.write(0, &old, true).unwrap();
        vols.snapshot_create("v", "s").unwrap();
        // Extent 0 rewritten whole, one block of extent 1.
        v.write(0, &vec![1u8; MIB as usize], false).unwrap();
        v.write(MIB, &[2u8; 4096], false).unwrap();
        v.flush().unwrap();
        let space = vols.space(&v);
        assert_eq!(
            space,
            Space {
                bytes_owned: MIB + 4096,
                bytes_shared: MIB - 4096,
                snapshots: vec![("s".into(), MIB + 4096)],
            }
        );
        let below = v.top().parent().cloned().unwrap();
        let before = below.tier.allocated_bytes().unwrap();
        assert!(before >= 2 * MIB, "{before}");
        vols.snapshot_delete("v", "s").unwrap();
        let after = below.tier.allocated_bytes().unwrap();
        assert_eq!(
            before - after,
            MIB + 4096,
            "extent 0 and one block of extent 1 freed"
        );
        let mut want = old.clone();
        want[..MIB as usize].fill(1);
        want[MIB as usize..MIB as usize + 4096].fill(2);
        assert!(read(&v, 0, 2 * MIB as usize) == want);
        drop((v, below));
        drop(vols);
        let vols = open(dir.path());
        assert!(read(&vols.get("v").unwrap(), 0, 2 * MIB as usize) == want);
    }

    #[test]
    fn revert_rolls_back_and_bad_requests_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let vols = open(dir.path());
        let v = create(&vols, "v");
        v.write(0, &[1u8; 4096], false).unwrap();
        vols.snapshot_create("v", "a").unwrap();
        v.write(0, &[2u8; 4096], false).unwrap();
        vols.snapshot_create("v", "b").unwrap();
        v.write(0, &[3u8; 4096], false).unwrap();
        let attached = v.attach();
        assert!(matches!(
            vols.revert("v", "a", false),
            Err(TierError::VolumeBusy { .. })
        ));
        drop(attached);
        vols.revert("v", "a", false).unwrap();
        assert_eq!(read(&v, 0, 4096), vec![1u8; 4096]);
        assert_eq!(read(&vols.export("v@b").unwrap(), 0, 4096), vec![2u8; 4096]);
        v.write(0, &[4u8; 4096], false).unwrap();
        assert_eq!(read(&vols.export("v@a").unwrap(), 0, 4096), vec![1u8; 4096]);
        let names: Vec<String> = vols
            .snapshot_list("v")
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        // Deleting b: nothing reads through it any more, so its layer goes.
        let before = std::fs::read_dir(dir.path().join("volumes"))
            .unwrap()
            .count();
        vols.snapshot_delete("v", "b").unwrap();
        let after = std::fs::read_dir(dir.path().join("volumes"))
            .unwrap()
            .count();
        assert_eq!(after, before - 1);
        let e = vols.snapshot_create("v", "a").unwrap_err();
        assert!(matches!(e, TierError::SnapshotExists { .. }), "{e}");
        let e = vols.snapshot_delete("v", "zz").unwrap_err();
        assert!(e.to_string().contains("snapshots: a"), "{e}");
        assert!(matches!(
            vols.snapshot_create("v", "no/slash"),
            Err(TierError::InvalidName { .. })
        ));
        assert!(matches!(
            vols.export("v@zz"),
            Err(TierError::SnapshotNotFound { .. })
        ));
        assert!(matches!(
            vols.revert("nope", "a", false),
            Err(TierError::VolumeNotFound(_))
        ));
    }
}
