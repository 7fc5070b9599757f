//! Making a volume from layers that live in a bucket (a restore), and
//! remembering which local layers a backup has already described there.
//!
//! A restored volume is what a backup's snapshot was: a chain of frozen
//! layers whose extents are all remote (or zero), with a fresh empty layer
//! on top for new writes. Nothing is fetched to make it: it is servable as
//! soon as its metadata is committed, and reads fetch what they touch.
//! Invariant: the volume, its layers and their records are committed in
//! one synced batch, after the layer files exist; a crash before leaves
//! only files that `Volumes::open` removes.

use std::sync::Arc;

use rocksdb::WriteBatch;

use super::registry::file_name;
use super::{LayerMeta, Volume, VolumeMeta, Volumes};
use crate::db::{self, CF_EXTENTS, CF_META};
use crate::error::{Result, TierError};
use crate::extent_map::{extent_key, ExtentRecord};

/// One frozen layer to restore.
#[derive(Debug, Clone)]
pub struct RestoredLayer {
    /// Its bucket name, kept.
    pub name: String,
    /// The key of its index (so later backups reuse it); None when it was
    /// rebuilt from object headers (the next backup writes one).
    pub index: Option<String>,
    pub size: u64,
    /// Remote or zero records.
    pub records: Vec<(u64, ExtentRecord)>,
}

/// A volume to make from a backup.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub name: String,
    pub uid: String,
    pub class: String,
    pub size: u64,
    pub extent_size: u64,
    /// The fencing generation claimed for it (0: none yet, a copy).
    pub generation: u64,
    /// Bottom first.
    pub layers: Vec<RestoredLayer>,
}

const INDEX_PREFIX: &str = "layer_index/";

fn last_backup_key(volume: u64) -> Vec<u8> {
    format!("last_backup/{volume:016x}").into_bytes()
}

fn index_key(layer: u64) -> Vec<u8> {
    format!("{INDEX_PREFIX}{layer:016x}").into_bytes()
}

impl Volumes {
    /// Makes volume `plan.name` from `plan`'s layers, servable at once.
    pub fn restore_volume(&self, plan: RestorePlan) -> Result<Arc<Volume>> {
        super::validate_name(&plan.name)?;
        super::validate_size(plan.size)?;
        super::validate_extent_size(plan.extent_size)?;
        let _g = self.admin.lock();
        if self.map.read().contains_key(&plan.name) {
            return Err(TierError::VolumeExists(plan.name));
        }
        self.check_file_room(&plan.name, plan.layers.len() as u64 + 1)?;
        let now = self.clock.now_ms();
        let first = self.next_id()?;
        let top_id = first + plan.layers.len() as u64;
        let mut batch = WriteBatch::default();
        let mut files = Vec::new();
        let mut metas = Vec::new();
        let cleanup = |files: &[std::path::PathBuf]| {
            for f in files {
                let _ = std::fs::remove_file(f);
            }
        };
        let mut parent = None;
        for (i, l) in plan.layers.iter().enumerate() {
            let id = first + i as u64;
            let path = self.dir.join(file_name(id));
            if let Err(e) = self.create_layer_file(id, l.size, &plan.name) {
                cleanup(&files);
                return Err(e);
            }
            files.push(path);
            let lm = LayerMeta {
                id,
                parent,
                volume: top_id,
                snapshot: None,
                frozen: true,
                size: l.size,
                created_ms: now,
                frozen_ms: now,
                remote_name: Some(l.name.clone()),
            };
            self.put_layer_meta(&mut batch, &lm)?;
            let cf = db::cf(&self.db, CF_EXTENTS)?;
            for (e, rec) in &l.records {
                batch.put_cf(cf, extent_key(id, *e), rec.encode());
            }
            if let Some(index) = &l.index {
                batch.put_cf(db::cf(&self.db, CF_META)?, index_key(id), index.as_bytes());
            }
            metas.push(lm);
            parent = Some(id);
        }
        let meta = VolumeMeta {
            id: top_id,
            name: plan.name.clone(),
            size: plan.size,
            class: plan.class.clone(),
            extent_size: plan.extent_size,
            created_ms: now,
            record_trace: None,
            layer: Some(top_id),
            uid: plan.uid.clone(),
            generation: plan.generation,
            fenced: false,
        };
        let top_path = self.dir.join(file_name(top_id));
        if let Err(e) = self.create_layer_file(top_id, plan.size, &plan.name) {
            cleanup(&files);
            return Err(e);
        }
        files.push(top_path);
        let top = match parent {
            Some(p) => LayerMeta::fresh(top_id, p, top_id, plan.size, now),
            None => LayerMeta {
                parent: None,
                ..LayerMeta::fresh(top_id, 0, top_id, plan.size, now)
            },
        };
        self.put_top(&mut batch, &top, &meta)?;
        if let Err(e) = db::write_synced(&self.db, batch) {
            cleanup(&files);
            return Err(e);
        }
        {
            let mut lms = self.layer_metas.write();
            for lm in metas {
                lms.insert(lm.id, lm);
            }
            lms.insert(top.id, top);
        }
        let layer = self.load_layer(top_id, &meta)?;
        let vol = Arc::new(Volume::new(
            meta,
            layer,
            self.heat.clone(),
            self.engine.clone(),
            false,
        ));
        vol.refresh_trace();
        self.map.write().insert(plan.name.clone(), vol.clone());
        tracing::info!(volume = %plan.name, layers = plan.layers.len(), "volume restored");
        Ok(vol)
    }

    /// The key of the index a backup wrote for local layer `id`, if any.
    pub fn layer_index(&self, id: u64) -> Result<Option<String>> {
        let v = self
            .db
            .get_cf(db::cf(&self.db, CF_META)?, index_key(id))
            .map_err(|source| TierError::Db {
                op: "read layer index key",
                source: source.into(),
            })?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// When `vol`'s newest backup (taken by this node) was committed.
    pub fn last_backup_ms(&self, vol: &Volume) -> Option<u64> {
        let cf = db::cf(&self.db, CF_META).ok()?;
        let v = self.db.get_cf(cf, last_backup_key(vol.id())).ok()??;
        v.as_slice().try_into().ok().map(u64::from_be_bytes)
    }

    pub fn set_last_backup_ms(&self, vol: &Volume, ms: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            db::cf(&self.db, CF_META)?,
            last_backup_key(vol.id()),
            ms.to_be_bytes(),
        );
        db::write_synced(&self.db, batch)
    }

    /// Remembers that layer `id`'s index is at `key`.
    pub fn set_layer_index(&self, id: u64, key: &str) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(db::cf(&self.db, CF_META)?, index_key(id), key.as_bytes());
        db::write_synced(&self.db, batch)
    }
}
