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

use super::meta::{validate_name, VolumeMeta};
use super::registry::NEXT_ID_KEY;
use super::{layer_name, HeldLayer, Layer, LayerMeta, LocalTier, Volume, Volumes};
use crate::config::Config;
use crate::db::{self, CF_LAYERS, CF_META};
use crate::error::{Result, TierError};
use crate::extent_map::ExtentMap;

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

    /// In `batch`: `lm` becomes `meta`'s top layer, and its id is taken.
    pub(super) fn put_top(
        &self,
        batch: &mut WriteBatch,
        lm: &LayerMeta,
        meta: &VolumeMeta,
    ) -> Result<()> {
        self.put_layer_meta(batch, lm)?;
        self.put_meta(batch, meta)?;
        batch.put_cf(
            db::cf(&self.db, CF_META)?,
            NEXT_ID_KEY,
            (lm.id + 1).to_be_bytes(),
        );
        Ok(())
    }

    /// Commits `batch`, which names the new layer file `tier`; if it fails,
    /// the file goes (no metadata names it).
    fn commit_new_layer(&self, batch: WriteBatch, tier: &LocalTier) -> Result<()> {
        db::write_synced(&self.db, batch).inspect_err(|_| {
            let _ = std::fs::remove_file(tier.path());
        })
    }

    /// In `batch`: every record of layer `id`, extents and description.
    pub(super) fn drop_layer_records(&self, batch: &mut WriteBatch, id: u64) -> Result<()> {
        crate::extent_map::delete_layer(&self.db, batch, id)?;
        batch.delete_cf(db::cf(&self.db, CF_LAYERS)?, id.to_be_bytes());
        Ok(())
    }

    /// The loaded layer of snapshot `snap`.
    fn snapshot_layer(&self, snap: &LayerMeta) -> Result<Arc<Layer>> {
        self.layer(snap.id)
            .ok_or_else(|| TierError::CorruptMetadata {
                key: format!("layer {}", snap.id),
                reason: "a snapshot's layer is not loaded".into(),
            })
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
            uid: om.uid.clone(),
            generation: om.generation,
            fenced: om.fenced,
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
        self.check_file_room(volume, 1)?;
        self.create_layer_file(id, size, volume)
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
        let layer = Arc::new(Layer::new(
            id,
            layer_name(&self.node, id),
            tier,
            map,
            Some(parent),
            size,
        ));
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
                remote_name: None,
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
        let fresh = LayerMeta::fresh(id, top.id, vol.id(), size, now);
        let mut meta = vol.meta();
        meta.layer = Some(id);
        let mut batch = WriteBatch::default();
        self.put_layer_meta(&mut batch, &frozen)?;
        self.put_top(&mut batch, &fresh, &meta)?;
        self.commit_new_layer(batch, &tier)?;
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
            self.drop_layer_records(&mut batch, id)?;
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
        let base = self.snapshot_layer(&snap)?;
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
            uid: super::meta::new_uid(),
            generation: 0,
            fenced: false,
        };
        let lm = LayerMeta::fresh(id, snap.id, id, snap.size, now);
        let tier = self.new_layer_file(id, snap.size, &req.name)?;
        let mut batch = WriteBatch::default();
        self.put_top(&mut batch, &lm, &meta)?;
        crate::failpoint::hit("clone-before-commit");
        self.commit_new_layer(batch, &tier)?;
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
        let base = self.snapshot_layer(&snap)?;
        let _gate = vol.write_gate.write();
        let old = vol.top();
        let id = self.next_id()?;
        let now = self.clock.now_ms();
        let tier = self.new_layer_file(id, snap.size, volume)?;
        let lm = LayerMeta::fresh(id, snap.id, vol.id(), snap.size, now);
        let mut meta = vol.meta();
        meta.layer = Some(id);
        meta.size = snap.size;
        let mut batch = WriteBatch::default();
        self.put_top(&mut batch, &lm, &meta)?;
        // The replaced top layer goes in the same batch: no snapshot is it
        // and nothing sits on it.
        self.drop_layer_records(&mut batch, old.id)?;
        crate::failpoint::hit("revert-before-commit");
        self.commit_new_layer(batch, &tier)?;
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
