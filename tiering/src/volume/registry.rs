//! The set of volumes: created, found, resized and deleted here, with their
//! metadata in RocksDB and their layers' local files under
//! `<data_dir>/volumes/<layer id>.img` (snapshots, clones and revert are in
//! `snapshots`).
//!
//! Ordering keeps crashes harmless. Create writes the file before the metadata;
//! delete removes the metadata before the file. A crash in between leaves at
//! worst a file no metadata names, and [`Volumes::open`] removes those.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use heatmap::{Clock, HeatMap};
use parking_lot::{Mutex, RwLock};
use rocksdb::{IteratorMode, WriteBatch, DB};

use super::meta::{
    validate_extent_size, validate_name, validate_size, VolumeMeta, DEFAULT_EXTENT_SIZE,
};
use super::{layer_name, Layer, LayerMeta, LocalTier, Volume};
use crate::config::Config;
use crate::db::{self, CF_LAYERS, CF_META, CF_VOLUMES};
use crate::engine::Engine;
use crate::error::{Result, TierError};
use crate::extent_map::ExtentMap;

pub(super) const NEXT_ID_KEY: &[u8] = b"next_volume_id";
/// This data directory's random identity, in its layers' bucket names.
const NODE_KEY: &[u8] = b"node_uid";
/// Set on a data directory made before volume uids (see
/// `Volumes::owns_legacy_keys`).
pub(super) const LEGACY_KEY: &[u8] = b"legacy_object_keys";

/// A request to create a volume.
#[derive(Debug, Clone)]
pub struct CreateVolume {
    pub name: String,
    pub size: u64,
    pub class: String,
    pub extent_size: Option<u64>,
}

/// A change to an existing volume. Size may only grow.
#[derive(Debug, Clone, Default)]
pub struct PatchVolume {
    pub size: Option<u64>,
    pub class: Option<String>,
    /// Record the access trace (true/false), overriding the class.
    pub record_trace: Option<bool>,
}

#[derive(Debug)]
pub struct Volumes {
    pub(super) db: Arc<DB>,
    pub(super) heat: Arc<HeatMap>,
    pub(super) engine: Arc<Engine>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) dir: PathBuf,
    /// This data directory's identity (see [`layer_name`]).
    pub(super) node: String,
    pub(super) map: RwLock<BTreeMap<String, Arc<Volume>>>,
    /// Every layer loaded: volumes' tops, snapshots, and the frozen layers
    /// they read through.
    pub(super) layers: RwLock<HashMap<u64, Arc<Layer>>>,
    /// Descriptions of the layers that have one (see [`LayerMeta`]).
    pub(super) layer_metas: RwLock<BTreeMap<u64, LayerMeta>>,
    /// Snapshot exports, by export name (`VOLUME@SNAPSHOT`).
    pub(super) views: RwLock<BTreeMap<String, Arc<Volume>>>,
    /// The last space accounting per volume id, and when (clock ms).
    pub(super) space_cache: Mutex<HashMap<u64, (u64, super::Space)>>,
    /// Serialises create, patch, delete and the snapshot operations; I/O
    /// never takes it.
    pub(super) admin: Mutex<()>,
}

pub(super) fn has_key(db: &DB, key: &[u8]) -> Result<bool> {
    db.get_cf(db::cf(db, CF_META)?, key)
        .map(|v| v.is_some())
        .map_err(|source| TierError::Db {
            op: "read metadata",
            source: source.into(),
        })
}

/// This data directory's identity, made at its first start: 16 hex digits.
fn node_uid(db: &DB) -> Result<String> {
    let cf = db::cf(db, CF_META)?;
    let cur = db.get_cf(cf, NODE_KEY).map_err(|source| TierError::Db {
        op: "read node uid",
        source: source.into(),
    })?;
    if let Some(b) = cur {
        return String::from_utf8(b).map_err(|_| TierError::CorruptMetadata {
            key: "node_uid".into(),
            reason: "not UTF-8".into(),
        });
    }
    let node = format!("{:016x}", rand::random::<u64>());
    let mut batch = WriteBatch::default();
    batch.put_cf(cf, NODE_KEY, node.as_bytes());
    db::write_synced(db, batch)?;
    Ok(node)
}

pub(super) fn file_name(id: u64) -> String {
    format!("{id:016x}.img")
}

fn check_class(class: &str, config: &Config) -> Result<()> {
    if config.classes.contains_key(class) {
        Ok(())
    } else {
        Err(TierError::UnknownClass {
            class: class.to_string(),
            known: config.class_names(),
        })
    }
}

impl Volumes {
    /// Loads every volume recorded in the database and removes orphaned files.
    pub fn open(
        db: Arc<DB>,
        heat: Arc<HeatMap>,
        engine: Arc<Engine>,
        clock: Arc<dyn Clock>,
        data_dir: &Path,
    ) -> Result<Self> {
        let dir = data_dir.join("volumes");
        std::fs::create_dir_all(&dir).map_err(|source| TierError::Startup {
            context: format!("cannot create {}", dir.display()),
            source,
        })?;
        let mut metas = BTreeMap::new();
        {
            let cf = db::cf(&db, CF_LAYERS)?;
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (k, v) = item.map_err(|source| TierError::Db {
                    op: "iterate layers",
                    source: source.into(),
                })?;
                let meta: LayerMeta =
                    serde_json::from_slice(&v).map_err(|e| TierError::CorruptMetadata {
                        key: format!("layer {}", String::from_utf8_lossy(&k)),
                        reason: e.to_string(),
                    })?;
                metas.insert(meta.id, meta);
            }
        }
        let mut vols = Vec::new();
        {
            let cf = db::cf(&db, CF_VOLUMES)?;
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (k, v) = item.map_err(|source| TierError::Db {
                    op: "iterate volumes",
                    source: source.into(),
                })?;
                let key = String::from_utf8_lossy(&k).to_string();
                let meta: VolumeMeta =
                    serde_json::from_slice(&v).map_err(|e| TierError::CorruptMetadata {
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                vols.push(meta);
            }
        }
        let fresh_node = !has_key(&db, NODE_KEY)?;
        let node = node_uid(&db)?;
        if fresh_node && !vols.is_empty() {
            // Made before volume uids: its objects have keys of the old
            // layout, which only this node may collect.
            let mut batch = WriteBatch::default();
            batch.put_cf(db::cf(&db, CF_META)?, LEGACY_KEY, b"1");
            db::write_synced(&db, batch)?;
        }
        // Volumes from before uids existed get one now.
        let mut batch = WriteBatch::default();
        for meta in vols.iter_mut().filter(|m| m.uid.is_empty()) {
            meta.uid = super::meta::new_uid();
            batch.put_cf(
                db::cf(&db, CF_VOLUMES)?,
                meta.name.as_bytes(),
                serde_json::to_vec(&*meta).map_err(|e| TierError::CorruptMetadata {
                    key: meta.name.clone(),
                    reason: e.to_string(),
                })?,
            );
        }
        if !batch.is_empty() {
            db::write_synced(&db, batch)?;
        }
        let this = Self {
            db,
            heat,
            engine,
            clock,
            dir,
            node,
            map: RwLock::new(BTreeMap::new()),
            layers: RwLock::new(HashMap::new()),
            layer_metas: RwLock::new(metas.clone()),
            views: RwLock::new(BTreeMap::new()),
            space_cache: Mutex::new(HashMap::new()),
            admin: Mutex::new(()),
        };
        for meta in vols {
            let top = this.load_layer(meta.top_layer(), &meta)?;
            // A grow whose metadata reached the disk but whose resize did not.
            if top.tier.file_len().unwrap_or(0) < meta.size {
                top.tier
                    .set_len(meta.size)
                    .map_err(|source| TierError::Io {
                        volume: meta.name.clone(),
                        op: "resize local tier",
                        path: top.tier.path().to_path_buf(),
                        source,
                    })?;
            }
            let vol = Volume::new(meta, top, this.heat.clone(), this.engine.clone(), false);
            this.load_tuner(&vol)?;
            vol.refresh_trace();
            let repaired = vol.repair_local_copies()?;
            if repaired > 0 {
                tracing::debug!(volume = %vol.name(), extents = repaired, "local copies of tiered extents freed");
            }
            this.map.write().insert(vol.name(), Arc::new(vol));
        }
        // Snapshots (and frozen layers only clones still read through).
        for lm in metas.values() {
            let Some(owner) = this
                .map
                .read()
                .values()
                .find(|v| v.id() == lm.volume)
                .cloned()
            else {
                continue;
            };
            let layer = this.load_layer(lm.id, &owner.meta())?;
            if let Some(snap) = &lm.snapshot {
                this.add_view(&owner, snap, layer, lm);
            }
        }
        let known: std::collections::HashSet<String> = this
            .layers
            .read()
            .keys()
            .chain(metas.keys())
            .map(|&id| file_name(id))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&this.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.ends_with(".img") && !known.contains(&name) {
                    tracing::warn!(file = %entry.path().display(), "removing local tier file no volume refers to");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        tracing::info!(volumes = this.map.read().len(), layers = this.layers.read().len(), dir = %this.dir.display(), "volumes loaded");
        Ok(this)
    }

    /// The layer `id` with the layers below it, loading them if need be.
    /// `like` gives the geometry of layers that have no description (a
    /// volume's first layer from before layers existed).
    pub(super) fn load_layer(&self, id: u64, like: &VolumeMeta) -> Result<Arc<Layer>> {
        if let Some(l) = self.layers.read().get(&id) {
            return Ok(l.clone());
        }
        let lm = self.layer_metas.read().get(&id).cloned();
        let parent = match lm.as_ref().and_then(|m| m.parent) {
            Some(p) => Some(self.load_layer(p, like)?),
            None => None,
        };
        let size = lm.as_ref().map(|m| m.size).unwrap_or(like.size);
        let path = self.dir.join(file_name(id));
        let tier = LocalTier::open(&path).map_err(|source| TierError::Io {
            volume: like.name.clone(),
            op: "open local tier",
            path: path.clone(),
            source,
        })?;
        let extents = size.div_ceil(like.extent_size);
        let map = ExtentMap::load(
            self.db.clone(),
            id,
            extents,
            like.extent_blocks(),
            parent.is_some(),
        )?;
        let name = lm
            .as_ref()
            .and_then(|m| m.remote_name.clone())
            .unwrap_or_else(|| layer_name(&self.node, id));
        let layer = Arc::new(Layer::new(id, name, tier, map, parent, size));
        self.layers.write().insert(id, layer.clone());
        Ok(layer)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Volume>> {
        self.map
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| TierError::VolumeNotFound(name.to_string()))
    }

    /// Every volume, in name order.
    pub fn list(&self) -> Vec<Arc<Volume>> {
        self.map.read().values().cloned().collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.map.read().keys().cloned().collect()
    }

    pub(super) fn put_meta(&self, batch: &mut WriteBatch, meta: &VolumeMeta) -> Result<()> {
        let cf = db::cf(&self.db, CF_VOLUMES)?;
        let bytes = serde_json::to_vec(meta).map_err(|e| TierError::CorruptMetadata {
            key: meta.name.clone(),
            reason: e.to_string(),
        })?;
        batch.put_cf(cf, meta.name.as_bytes(), bytes);
        Ok(())
    }

    /// Layer files open now (one per layer of every volume).
    pub fn open_layer_files(&self) -> usize {
        self.layers.read().len()
    }

    /// Refuses to go on when `needed` more layer files would pass what the
    /// open-file limit allows (see `fd_limit`).
    pub(super) fn check_file_room(&self, volume: &str, needed: u64) -> Result<()> {
        let open = self.layers.read().len() as u64;
        let allowed = crate::fd_limit::layer_files_allowed();
        if open + needed > allowed {
            return Err(TierError::TooManyFiles {
                volume: volume.to_string(),
                needed,
                open,
                limit: crate::fd_limit::soft(),
                reserved: crate::fd_limit::RESERVED,
                allowed,
            });
        }
        Ok(())
    }

    /// Creates the local tier file of layer `id`: a size the local
    /// filesystem or the process cannot hold is bad input naming the limit.
    pub(super) fn create_layer_file(&self, id: u64, size: u64, volume: &str) -> Result<LocalTier> {
        let path = self.dir.join(file_name(id));
        LocalTier::create(&path, size).map_err(|source| {
            if source.kind() == std::io::ErrorKind::InvalidInput {
                TierError::InvalidArgument(format!("volume {volume:?}: {source}"))
            } else {
                TierError::Io {
                    volume: volume.to_string(),
                    op: "create layer file",
                    path,
                    source,
                }
            }
        })
    }

    pub(super) fn next_id(&self) -> Result<u64> {
        let cf = db::cf(&self.db, CF_META)?;
        let cur = self
            .db
            .get_cf(cf, NEXT_ID_KEY)
            .map_err(|source| TierError::Db {
                op: "read next volume id",
                source: source.into(),
            })?;
        match cur {
            None => Ok(1),
            Some(b) => {
                let arr: [u8; 8] =
                    b.as_slice()
                        .try_into()
                        .map_err(|_| TierError::CorruptMetadata {
                            key: "next_volume_id".into(),
                            reason: format!("{} bytes, expected 8", b.len()),
                        })?;
                Ok(u64::from_be_bytes(arr))
            }
        }
    }

    pub fn create(&self, req: CreateVolume, config: &Config) -> Result<Arc<Volume>> {
        validate_name(&req.name)?;
        validate_size(req.size)?;
        let extent_size = req.extent_size.unwrap_or(DEFAULT_EXTENT_SIZE);
        validate_extent_size(extent_size)?;
        check_class(&req.class, config)?;
        let _g = self.admin.lock();
        if self.map.read().contains_key(&req.name) {
            return Err(TierError::VolumeExists(req.name));
        }
        self.check_file_room(&req.name, 1)?;
        let id = self.next_id()?;
        // The id is taken before anything is made with it: a create that
        // fails part way never hands the same id (and file name) out again.
        let mut batch = WriteBatch::default();
        batch.put_cf(
            db::cf(&self.db, CF_META)?,
            NEXT_ID_KEY,
            (id + 1).to_be_bytes(),
        );
        db::write_synced(&self.db, batch)?;
        let meta = VolumeMeta {
            id,
            name: req.name.clone(),
            size: req.size,
            class: req.class,
            extent_size,
            created_ms: self.clock.now_ms(),
            record_trace: None,
            layer: None,
            uid: super::meta::new_uid(),
            generation: 0,
            fenced: false,
        };
        let path = self.dir.join(file_name(id));
        let tier = self.create_layer_file(id, meta.size, &meta.name)?;
        let mut batch = WriteBatch::default();
        self.put_meta(&mut batch, &meta)?;
        if let Err(e) = db::write_synced(&self.db, batch) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let extents = ExtentMap::load(
            self.db.clone(),
            meta.id,
            meta.extent_count(),
            meta.extent_blocks(),
            false,
        )?;
        let layer = Arc::new(Layer::new(
            meta.id,
            layer_name(&self.node, meta.id),
            tier,
            extents,
            None,
            meta.size,
        ));
        self.layers.write().insert(meta.id, layer.clone());
        let vol = Arc::new(Volume::new(
            meta,
            layer,
            self.heat.clone(),
            self.engine.clone(),
            false,
        ));
        vol.refresh_trace();
        self.map.write().insert(req.name.clone(), vol.clone());
        tracing::info!(volume = %req.name, id, size = vol.size(), "volume created");
        Ok(vol)
    }

    /// Grows a volume or changes its class. Connected clients keep the size they
    /// negotiated; new connections see the new one.
    pub fn patch(&self, name: &str, patch: PatchVolume, config: &Config) -> Result<Arc<Volume>> {
        let _g = self.admin.lock();
        let vol = self.get(name)?;
        let mut meta = vol.meta();
        if let Some(class) = patch.class {
            check_class(&class, config)?;
            meta.class = class;
        }
        if let Some(on) = patch.record_trace {
            meta.record_trace = Some(on);
        }
        let mut grow_to = None;
        if let Some(size) = patch.size {
            validate_size(size)?;
            if size < meta.size {
                return Err(TierError::InvalidArgument(format!(
                    "volume {name:?} is {} bytes; shrinking to {size} would destroy data and is not supported",
                    meta.size
                )));
            }
            if size > meta.size {
                grow_to = Some(size);
                meta.size = size;
            }
        }
        // Grow the file first: metadata must never claim more than the file holds.
        let top = vol.top();
        if let Some(size) = grow_to {
            top.tier
                .set_len(size)
                .map_err(|e| vol.io_err("grow local tier", e))?;
        }
        let mut batch = WriteBatch::default();
        self.put_meta(&mut batch, &meta)?;
        if grow_to.is_some() {
            if let Some(mut lm) = self.layer_metas.read().get(&top.id).cloned() {
                lm.size = meta.size;
                self.put_layer_meta(&mut batch, &lm)?;
            }
        }
        db::write_synced(&self.db, batch)?;
        if let Some(lm) = self.layer_metas.write().get_mut(&top.id) {
            lm.size = meta.size;
        }
        top.map.write().grow(meta.extent_count());
        top.size.store(meta.size, Ordering::SeqCst);
        vol.size.store(meta.size, Ordering::SeqCst);
        *vol.meta.write() = meta;
        vol.refresh_trace();
        tracing::info!(volume = %name, size = vol.size(), "volume updated");
        Ok(vol)
    }

    /// Deletes a volume, with its snapshots, and frees its space. Refused
    /// while clients are connected, unless `force`, which cuts them off; and
    /// while clones read through its snapshots, unless `keep_clones` (they
    /// then keep the layers they need).
    pub fn delete(&self, name: &str, force: bool, keep_clones: bool) -> Result<()> {
        let _g = self.admin.lock();
        let vol = self.get(name)?;
        let connections = vol.connections();
        if connections > 0 && !force {
            return Err(TierError::VolumeBusy {
                volume: name.to_string(),
                connections,
            });
        }
        let clones = self.clones_of(&vol);
        if !clones.is_empty() && !keep_clones {
            return Err(TierError::HasClones {
                volume: name.to_string(),
                clones,
            });
        }
        let top = vol.top();
        let snapshots: Vec<LayerMeta> = self
            .layer_metas
            .read()
            .values()
            .filter(|m| m.volume == vol.id() && m.snapshot.is_some())
            .cloned()
            .collect();
        // The volume's metadata, its top layer and its snapshots' names go
        // in one batch; layers no one reads through any more follow.
        let mut batch = WriteBatch::default();
        batch.delete_cf(db::cf(&self.db, CF_VOLUMES)?, name.as_bytes());
        self.delete_tuner(&mut batch, vol.id())?;
        self.put_tombstone(&mut batch, &vol.meta())?;
        self.drop_layer_records(&mut batch, top.id)?;
        for lm in &snapshots {
            let mut hidden = lm.clone();
            hidden.snapshot = None;
            self.put_layer_meta(&mut batch, &hidden)?;
        }
        db::write_synced(&self.db, batch)?;
        vol.closed.store(true, Ordering::SeqCst);
        self.map.write().remove(name);
        self.layers.write().remove(&top.id);
        self.layer_metas.write().remove(&top.id);
        for lm in &snapshots {
            if let Some(m) = self.layer_metas.write().get_mut(&lm.id) {
                m.snapshot = None;
            }
            if let Some(snap) = &lm.snapshot {
                self.drop_view(name, snap);
            }
        }
        let path = top.tier.path().to_path_buf();
        if let Err(e) = std::fs::remove_file(&path) {
            // The metadata is gone, so the next start removes the orphan anyway.
            tracing::warn!(volume = %name, path = %path.display(), error = %e, "could not remove local tier file");
        }
        if let Some(parent) = top.parent.clone() {
            drop(top);
            self.release(parent.id)?;
        }
        for lm in &snapshots {
            self.compact_below(lm.id)?;
        }
        self.heat.delete_volume(vol.id())?;
        vol.engine.metrics.forget_volume(name);
        tracing::info!(volume = %name, snapshots = snapshots.len(), "volume deleted");
        Ok(())
    }

    /// fdatasync every volume's local tier (at shutdown).
    pub fn sync_all(&self) -> Result<()> {
        for v in self.list() {
            v.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use heatmap::{HeatConfig, ManualClock};

    pub(in crate::volume) fn open(dir: &Path) -> Volumes {
        let cfg = HeatConfig::default();
        let db = db::open(&dir.join("db"), &cfg).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(5));
        let heat = Arc::new(HeatMap::new(db.clone(), clock.clone(), &cfg).unwrap());
        Volumes::open(db, heat, crate::engine::tests::engine(), clock, dir).unwrap()
    }

    fn req(name: &str, size: u64) -> CreateVolume {
        CreateVolume {
            name: name.into(),
            size,
            class: "default".into(),
            extent_size: None,
        }
    }

    #[test]
    fn lifecycle_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded();
        {
            let vols = open(dir.path());
            let a = vols.create(req("a", 16 << 20), &config).unwrap();
            vols.create(req("b", 8 << 20), &config).unwrap();
            assert!(matches!(
                vols.create(req("a", 4096), &config),
                Err(TierError::VolumeExists(_))
            ));
            a.write(4096, &[5u8; 4096], true).unwrap();
            vols.patch(
                "a",
                PatchVolume {
                    size: Some(32 << 20),
                    class: None,
                    ..Default::default()
                },
                &config,
            )
            .unwrap();
            assert!(vols
                .patch(
                    "a",
                    PatchVolume {
                        size: Some(4 << 20),
                        class: None,
                        ..Default::default()
                    },
                    &config
                )
                .unwrap_err()
                .to_string()
                .contains("shrinking"));
            let e = vols
                .patch(
                    "a",
                    PatchVolume {
                        size: None,
                        class: Some("gold".into()),
                        ..Default::default()
                    },
                    &config,
                )
                .unwrap_err();
            assert!(matches!(e, TierError::UnknownClass { .. }), "{e}");
        }
        let vols = open(dir.path());
        assert_eq!(vols.names(), vec!["a", "b"]);
        let a = vols.get("a").unwrap();
        assert_eq!(a.size(), 32 << 20);
        let mut buf = [0u8; 4096];
        a.read(4096, &mut buf, policy::ReadPattern::RANDOM).unwrap();
        assert_eq!(buf, [5u8; 4096]);
    }

    #[test]
    fn delete_frees_space_and_refuses_busy_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded();
        let vols = open(dir.path());
        let v = vols.create(req("gone", 8 << 20), &config).unwrap();
        let path = v.top().tier.path().to_path_buf();
        let attached = v.attach();
        assert!(matches!(
            vols.delete("gone", false, false),
            Err(TierError::VolumeBusy { connections: 1, .. })
        ));
        drop(attached);
        vols.delete("gone", false, false).unwrap();
        assert!(!path.exists());
        assert!(v.is_closed());
        assert!(matches!(
            vols.get("gone"),
            Err(TierError::VolumeNotFound(_))
        ));
        // Ids are never reused.
        let again = vols.create(req("gone", 8 << 20), &config).unwrap();
        assert_ne!(again.id(), v.id());
    }

    #[test]
    fn orphan_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("volumes")).unwrap();
        let orphan = dir.path().join("volumes").join(file_name(99));
        std::fs::write(&orphan, b"x").unwrap();
        let _ = open(dir.path());
        assert!(!orphan.exists());
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded();
        let vols = open(dir.path());
        assert!(matches!(
            vols.create(req("a/b", 4096), &config),
            Err(TierError::InvalidName { .. })
        ));
        assert!(vols.create(req("ok", 1000), &config).is_err());
        let mut r = req("ok", 8 << 20);
        r.class = "platinum".into();
        let e = vols.create(r, &config).unwrap_err().to_string();
        assert!(e.contains("platinum") && e.contains("default"), "{e}");
    }
}
