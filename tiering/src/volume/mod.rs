//! Volumes: named block devices served over NBD, each backed by a chain of
//! layers (sparse local files, see `layer`) and, for tiered extents, by
//! objects in a backend; and the registry that creates, finds, resizes,
//! snapshots, clones and deletes them.
//!
//! A [`Volume`] is the one I/O path every client goes through. Each request is
//! checked against the volume's bounds, split by extent, and served from where
//! the extent maps say the data is: the top layer, or for what it does not
//! hold, the layers below it. Writes go to the top layer only. Every access
//! is reported to the heat map, which never blocks. A snapshot's export is a
//! read-only `Volume` whose top is the snapshot's layer. Invariants kept here:
//! - an extent's state only changes under its layer stripe's write lock; I/O
//!   that reads the state holds the read lock for as long as it relies on it;
//! - writes hold the volume's write gate (shared), so a snapshot, which holds
//!   it alone, sees every acknowledged write and none that follows;
//! - a cold extent is made local again only after its data is durable in the
//!   local file, so a crash can never expose zeros or stale bytes;
//! - every write bumps its stripe's sequence number, so a migration that read
//!   the data before the write cannot commit (the write wins).
//!
//! What a volume is and reports is here; reads are in `read`, reads of cold
//! extents and bringing them back in `cold`, writes, zeroing and flush in
//! `write`; snapshots, clones and revert in `snapshots`, space accounting
//! and compaction in `space`.

#[cfg(test)]
mod agreement_tests;
mod cold;
#[cfg(test)]
mod cold_tests;
mod cooling;
#[cfg(test)]
mod cooling_tests;
mod fence;
mod layer;
mod local_tier;
mod meta;
mod read;
mod registry;
mod restore;
#[cfg(test)]
mod snapshot_tests;
mod snapshots;
mod space;
mod trace_log;
mod write;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use heatmap::{Access, AccessKind, HeatMap};
use parking_lot::RwLock;
use serde::Serialize;

pub use cooling::CostNow;
pub use fence::{claim, claimed_generations, Owned};
pub use layer::{layer_name, reads_from, HeldLayer, Layer, LayerMeta};
pub use local_tier::{Allocation, LocalTier};
pub use meta::{
    new_uid, validate_extent_size, validate_name, validate_size, VolumeMeta, BLOCK_SIZE,
    DEFAULT_EXTENT_SIZE, MAX_EXTENT_SIZE, MIN_EXTENT_SIZE,
};
use read::resolves_remote;
pub(crate) use read::BringBack;
pub use registry::{CreateVolume, PatchVolume, Volumes};
pub use restore::{RestorePlan, RestoredLayer};
pub use snapshots::{CloneVolume, SnapshotInfo};
pub use space::Space;

use crate::engine::Engine;
use crate::error::{Result, TierError};
use crate::extent_map::{ExtentRecord, ExtentState, Slot};

/// Counters of one volume's traffic with the object store.
#[derive(Debug, Default)]
pub struct VolumeStats {
    pub bytes_fetched: AtomicU64,
    pub fetches: AtomicU64,
    pub rehydrations: AtomicU64,
    pub integrity_errors: AtomicU64,
    pub bytes_tiered: AtomicU64,
    pub extents_tiered: AtomicU64,
    pub merges: AtomicU64,
}

/// One volume, shared by every connection that serves it.
#[derive(Debug)]
pub struct Volume {
    meta: RwLock<VolumeMeta>,
    size: AtomicU64,
    extent_shift: u32,
    heat: Arc<HeatMap>,
    pub(crate) engine: Arc<Engine>,
    /// The layer writes go to; what it does not hold is read below it.
    top: RwLock<Arc<Layer>>,
    /// Held shared by every write, alone by whatever replaces the top layer.
    write_gate: RwLock<()>,
    /// A snapshot's export: reads only, never brings data back.
    read_only: bool,
    pub stats: VolumeStats,
    /// Serialises policy and promote passes of this volume.
    pub(crate) pass: parking_lot::Mutex<()>,
    /// What the last pass said, for the status.
    pub(crate) last_pass: RwLock<Option<serde_json::Value>>,
    /// The pass running now, if any: for progress bars.
    pub(crate) progress: RwLock<Option<PassProgress>>,
    connections: AtomicUsize,
    closed: AtomicBool,
    pub(crate) trace_log: trace_log::TraceLog,
    /// The cooling period's state (see `cooling`).
    pub(crate) tuner: parking_lot::Mutex<policy::Tuner>,
    /// The sequential streams reading it, across connections (read-ahead of
    /// one stops where another began).
    pub(crate) streams: parking_lot::Mutex<policy::Streams>,
}

/// What the API reports about a volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub id: u64,
    /// Identity in buckets, across nodes.
    pub uid: String,
    /// The fencing generation this node holds (0: none claimed yet).
    pub generation: u64,
    /// Another node took the volume over: no writes here any more.
    pub fenced: bool,
    pub size: u64,
    pub class: String,
    pub extent_size: u64,
    pub block_size: u64,
    pub extents: u64,
    pub extents_local: u64,
    pub extents_remote: u64,
    pub extents_zero: u64,
    /// Remote extents with blocks written since held locally (`write_overlay`).
    pub extents_overlay: u64,
    /// Disk space the local tier really occupies.
    pub bytes_local: u64,
    /// Logical bytes whose only copy is in the object store.
    pub bytes_remote: u64,
    /// Local bytes idle longer than the class's cooling period, not yet tiered
    /// (FabricPool's inactive data reporting). Filled in by `tierd volume show`.
    pub bytes_inactive: Option<u64>,
    /// The cooling period now and how it was chosen, the thrash guard and
    /// the rehydration budget: filled in by `tierd volume show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooling: Option<policy::cooling::TunerStatus>,
    /// Estimated monthly cost now against keeping it all local: filled in
    /// by `tierd volume show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostNow>,
    /// Who holds the volume's data, with its snapshots: filled in by
    /// `tierd volume show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<Space>,
    pub bytes_fetched: u64,
    pub rehydrations: u64,
    pub integrity_errors: u64,
    pub connections: usize,
    pub created_ms: u64,
    /// Why tiering is not happening, or what the last pass did.
    pub status: Vec<String>,
    pub last_pass: Option<serde_json::Value>,
    /// The pass running now, if any.
    pub pass_progress: Option<PassProgress>,
}

/// How far a running tier or promote pass has got.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PassProgress {
    pub kind: String,
    pub done: u64,
    pub total: u64,
}

/// Holds a volume's connection count up while a client is attached.
#[derive(Debug)]
pub struct Attachment(Arc<Volume>);

impl Drop for Attachment {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::ops::Deref for Attachment {
    type Target = Arc<Volume>;
    fn deref(&self) -> &Arc<Volume> {
        &self.0
    }
}

impl Volume {
    fn new(
        meta: VolumeMeta,
        top: Arc<Layer>,
        heat: Arc<HeatMap>,
        engine: Arc<Engine>,
        read_only: bool,
    ) -> Self {
        // Its request series exist, at 0, from the start (and go with it).
        engine.metrics.add_volume(&meta.name);
        let now = engine.clock().now_ms();
        Self {
            size: AtomicU64::new(meta.size),
            extent_shift: meta.extent_size.trailing_zeros(),
            meta: RwLock::new(meta),
            heat,
            engine,
            top: RwLock::new(top),
            write_gate: RwLock::new(()),
            read_only,
            stats: VolumeStats::default(),
            pass: parking_lot::Mutex::new(()),
            last_pass: RwLock::new(None),
            progress: RwLock::new(None),
            connections: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            trace_log: Default::default(),
            tuner: parking_lot::Mutex::new(policy::Tuner::new(now)),
            streams: parking_lot::Mutex::new(policy::Streams::new()),
        }
    }

    /// Starts or stops recording the access trace, as the volume's setting
    /// (or else its class's) says now.
    pub(crate) fn refresh_trace(&self) {
        let meta = self.meta();
        let config = self.engine.config();
        let on = meta.record_trace.unwrap_or_else(|| {
            config
                .classes
                .get(&meta.class)
                .is_some_and(|c| c.record_trace)
        });
        let target = on.then(|| trace_log::TraceTarget {
            dir: config.server.data_dir.join("traces"),
            volume: meta.name.clone(),
            max_bytes: config.tiering.trace_max_size.bytes(),
            keep: config.tiering.trace_keep,
        });
        self.trace_log.set(target);
    }

    /// Frees the local copy of every extent whose data lives elsewhere: after a
    /// crash between committing a migration and punching its hole, or
    /// between writing overlay blocks and a flush naming them (an overlay
    /// the record names keeps its blocks).
    pub(crate) fn repair_local_copies(&self) -> Result<u64> {
        let mut n = 0;
        for layer in self.top().chain() {
            let map = layer.map.read();
            for e in 0..map.len() {
                if matches!(map.slot(e), Slot::Remote | Slot::Zero) {
                    let (start, len) = self.extent_range(e);
                    layer
                        .tier
                        .punch_hole(start, len)
                        .map_err(|err| self.io_err("punch tiered extent", err))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The layer writes go to now.
    pub fn top(&self) -> Arc<Layer> {
        self.top.read().clone()
    }

    pub(crate) fn set_top(&self, layer: Arc<Layer>) {
        *self.top.write() = layer;
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn refuse_read_only(&self) -> Result<()> {
        if self.read_only {
            return Err(TierError::ReadOnly {
                export: self.name(),
            });
        }
        if self.meta.read().fenced {
            return Err(self.fenced_error());
        }
        Ok(())
    }

    pub fn meta(&self) -> VolumeMeta {
        self.meta.read().clone()
    }

    pub fn id(&self) -> u64 {
        self.meta.read().id
    }

    pub fn name(&self) -> String {
        self.meta.read().name.clone()
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    pub fn extent_size(&self) -> u64 {
        1 << self.extent_shift
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// True once the volume was deleted; connections still holding it must stop.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn attach(self: &Arc<Self>) -> Attachment {
        self.connections.fetch_add(1, Ordering::SeqCst);
        Attachment(self.clone())
    }

    pub fn heat(&self) -> &Arc<HeatMap> {
        &self.heat
    }

    /// Start and length of extent `e` (the last one may be short).
    pub fn extent_range(&self, e: u64) -> (u64, u64) {
        let start = e << self.extent_shift;
        (
            start,
            self.extent_size().min(self.size().saturating_sub(start)),
        )
    }

    /// Publishes a running pass's progress (`None` when it ends).
    pub(crate) fn set_progress(&self, p: Option<PassProgress>) {
        *self.progress.write() = p;
    }

    pub(crate) fn advance_progress(&self) {
        if let Some(p) = self.progress.write().as_mut() {
            p.done += 1;
        }
    }

    /// Whether any extent under `offset..offset+len` reads from the object
    /// store now (in the top layer or a layer it reads through).
    pub fn touches_remote(&self, offset: u64, len: u64) -> bool {
        let top = self.top();
        self.pieces(offset, len)
            .any(|(e, _, _)| resolves_remote(&top, e))
    }

    /// The state of extent `e` in the top layer, as the policy sees it.
    pub fn extent_state(&self, e: u64) -> ExtentState {
        self.top().map.read().state(e)
    }

    /// Where extent `e` is in the top layer.
    pub fn extent_slot(&self, e: u64) -> Slot {
        self.top().map.read().slot(e)
    }

    /// The persisted record of extent `e` in the top layer, if it has one.
    pub fn extent_record(&self, e: u64) -> Result<Option<ExtentRecord>> {
        self.top().map.read().record(e)
    }

    pub fn info(&self) -> VolumeInfo {
        let m = self.meta();
        let top = self.top();
        let [local, remote, zero, overlay] = top.map.read().counts();
        let mut status = Vec::new();
        if let Ok(class) = self.engine.class(&m.class) {
            use crate::config::TieringPolicy;
            match class.tiering_policy {
                TieringPolicy::None => status.push("tiering policy none: nothing is tiered".to_string()),
                TieringPolicy::SnapshotOnly if top.parent.is_none() => {
                    status.push("tiering policy snapshot-only: the volume has no snapshots, so nothing is tiered".into())
                }
                _ => {}
            }
            if let Some(b) = class
                .backend
                .as_deref()
                .and_then(|b| self.engine.breaker_open(b))
            {
                status.push(b);
            }
        } else {
            status.push(format!(
                "class {:?} is not configured: the volume is not tiered",
                m.class
            ));
        }
        if m.fenced {
            status.push(format!(
                "fenced: another node restored this volume and holds a newer generation than ours ({}); it is read-only here",
                m.generation
            ));
        }
        // The last extent may be short; count remote bytes exactly.
        let last = m.extent_count().saturating_sub(1);
        let remote_bytes = {
            let map = top.map.read();
            (0..map.len())
                .filter(|&e| matches!(map.slot(e), Slot::Remote | Slot::Overlay))
                .map(|e| {
                    if e == last {
                        self.extent_range(e).1
                    } else {
                        m.extent_size
                    }
                })
                .sum()
        };
        VolumeInfo {
            bytes_local: top.tier.allocated_bytes().unwrap_or(0),
            bytes_remote: remote_bytes,
            bytes_inactive: None,
            cooling: None,
            cost: None,
            space: None,
            bytes_fetched: self.stats.bytes_fetched.load(Ordering::Relaxed),
            rehydrations: self.stats.rehydrations.load(Ordering::Relaxed),
            integrity_errors: self.stats.integrity_errors.load(Ordering::Relaxed),
            extents: m.extent_count(),
            extents_local: local,
            extents_remote: remote,
            extents_zero: zero,
            extents_overlay: overlay,
            connections: self.connections(),
            name: m.name,
            id: m.id,
            uid: m.uid,
            generation: m.generation,
            fenced: m.fenced,
            size: m.size,
            class: m.class,
            extent_size: m.extent_size,
            block_size: BLOCK_SIZE,
            created_ms: m.created_ms,
            status,
            last_pass: self.last_pass.read().clone(),
            pass_progress: self.progress.read().clone(),
        }
    }

    /// Writes the whole content of extent `e` (the `pieces` in order) into
    /// `layer`'s file and makes it durable: what must happen before a remote
    /// or inherited extent's record may say local.
    pub(crate) fn write_extent_durably<'a>(
        &self,
        layer: &Layer,
        e: u64,
        pieces: impl IntoIterator<Item = &'a [u8]>,
        op: &'static str,
    ) -> Result<()> {
        let (mut at, _) = self.extent_range(e);
        for piece in pieces {
            layer
                .tier
                .write_at(piece, at)
                .map_err(|err| self.layer_err(layer, op, err))?;
            at += piece.len() as u64;
        }
        layer
            .tier
            .sync()
            .map_err(|err| self.layer_err(layer, "fdatasync", err))
    }

    pub(crate) fn io_err(&self, op: &'static str, source: std::io::Error) -> TierError {
        self.layer_err(&self.top(), op, source)
    }

    pub(crate) fn layer_err(
        &self,
        layer: &Layer,
        op: &'static str,
        source: std::io::Error,
    ) -> TierError {
        TierError::Io {
            volume: self.name(),
            op,
            path: layer.tier.path().to_path_buf(),
            source,
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(TierError::InvalidArgument(format!(
                "range {offset}+{len} is beyond the end of volume {:?} ({size} bytes)",
                self.name()
            ))),
        }
    }

    /// Splits `[offset, offset + len)` into (extent, start within volume,
    /// length) pieces, as the simulator does (the same function).
    fn pieces(&self, offset: u64, len: u64) -> policy::extent::Pieces {
        policy::extent::pieces(self.extent_shift, offset, len)
    }

    /// Reports an access to every extent it touches.
    fn trace(&self, op: policy::trace::Op, offset: u64, len: u64) {
        if !self.read_only && self.trace_log.is_on() {
            self.trace_log
                .log(self.heat.clock().now_ms(), op, offset, len);
        }
    }

    fn record(&self, kind: AccessKind, offset: u64, len: u64, sequential: bool) {
        // A snapshot's reads say nothing about the live volume's heat.
        if len == 0 || self.read_only || !self.heat.enabled() {
            return;
        }
        let id = self.id();
        for (extent, _, n) in self.pieces(offset, len) {
            self.heat.record(
                id,
                extent,
                Access {
                    kind,
                    bytes: n,
                    sequential,
                },
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use heatmap::{HeatConfig, ManualClock};

    fn volume(dir: &std::path::Path) -> Arc<Volume> {
        volume_with(dir, crate::engine::tests::engine(), "default")
    }

    /// A 8 MiB volume of 1 MiB extents in `class`, on `engine`.
    pub(crate) fn volume_with(
        dir: &std::path::Path,
        engine: Arc<Engine>,
        class: &str,
    ) -> Arc<Volume> {
        volume_sized(dir, engine, class, 8 << 20)
    }

    /// [`volume_with`] of `size` bytes.
    pub(crate) fn volume_sized(
        dir: &std::path::Path,
        engine: Arc<Engine>,
        class: &str,
        size: u64,
    ) -> Arc<Volume> {
        let cfg = HeatConfig::default();
        let db = crate::db::open(&dir.join("db"), &cfg).unwrap();
        let heat =
            Arc::new(HeatMap::new(db.clone(), Arc::new(ManualClock::new(1000)), &cfg).unwrap());
        let meta = VolumeMeta {
            id: 3,
            name: "v".into(),
            size,
            class: class.into(),
            extent_size: 1 << 20,
            created_ms: 0,
            record_trace: None,
            layer: None,
            uid: new_uid(),
            generation: 0,
            fenced: false,
        };
        let tier = LocalTier::create(&dir.join("v.img"), meta.size).unwrap();
        let map = crate::extent_map::ExtentMap::load(
            db,
            meta.id,
            meta.extent_count(),
            meta.extent_blocks(),
            false,
        )
        .unwrap();
        let layer = Arc::new(Layer::new(
            meta.id,
            format!("test-{:016x}", meta.id),
            tier,
            map,
            None,
            meta.size,
        ));
        Arc::new(Volume::new(meta, layer, heat, engine, false))
    }

    #[test]
    fn io_spanning_extents_records_heat_per_extent() {
        let dir = tempfile::tempdir().unwrap();
        let v = volume(dir.path());
        // 12 KiB straddling the boundary of extents 0 and 1.
        let data: Vec<u8> = (0..12288u32).map(|i| (i % 251) as u8).collect();
        v.write((1 << 20) - 4096, &data, true).unwrap();
        let mut back = vec![0u8; data.len()];
        v.read((1 << 20) - 4096, &mut back, policy::ReadPattern::RANDOM)
            .unwrap();
        assert_eq!(back, data);
        let e0 = v.heat.extent(3, 0).unwrap().unwrap();
        let e1 = v.heat.extent(3, 1).unwrap().unwrap();
        assert_eq!((e0.write_bytes, e0.read_bytes), (4096, 4096));
        assert_eq!((e1.write_bytes, e1.read_bytes), (8192, 8192));
        assert_eq!(v.heat.extent(3, 2).unwrap(), None);
    }

    #[test]
    fn cached_reads_serve_local_bytes_and_step_aside_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let v = volume(dir.path());
        let data: Vec<u8> = (0..12288u32).map(|i| (i % 241) as u8).collect();
        v.write((1 << 20) - 4096, &data, false).unwrap();
        let mut back = vec![0u8; data.len()];
        let r = v.try_read_cached((1 << 20) - 4096, &mut back, policy::ReadPattern::RANDOM);
        assert!(matches!(r, Some(Ok(()))), "{r:?}");
        assert_eq!(back, data);
        let e1 = v.heat.extent(3, 1).unwrap().unwrap();
        assert_eq!(e1.read_bytes, 8192, "the read is recorded like any other");
        // A writer (a migration committing, a rehydration) holds extent 1's
        // stripe: the cached path neither waits nor records.
        let top = v.top();
        let guard = top.stripe(1).lock.write();
        let mut other = vec![0u8; 4096];
        assert!(v
            .try_read_cached(1 << 20, &mut other, policy::ReadPattern::RANDOM)
            .is_none());
        drop(guard);
        assert_eq!(v.heat.extent(3, 1).unwrap().unwrap().read_bytes, 8192);
        assert!(matches!(
            v.try_read_cached(8 << 20, &mut other, policy::ReadPattern::RANDOM),
            Some(Err(TierError::InvalidArgument(_)))
        ));
    }

    #[test]
    fn out_of_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = volume(dir.path());
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            v.read(8 << 20, &mut buf, policy::ReadPattern::RANDOM),
            Err(TierError::InvalidArgument(_))
        ));
        assert!(v.write(u64::MAX - 10, &buf, false).is_err());
        assert!(v.trim((8 << 20) - 4096, 8192, false).is_err());
    }

    #[test]
    fn zeroes_and_trim_read_back_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let v = volume(dir.path());
        v.write(0, &vec![9u8; 2 << 20], false).unwrap();
        v.write_zeroes(4096, 4096, false, false).unwrap();
        v.trim(1 << 20, 1 << 20, false).unwrap();
        let mut buf = vec![1u8; 2 << 20];
        v.read(0, &mut buf, policy::ReadPattern::RANDOM).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 9));
        assert!(buf[4096..8192].iter().all(|&b| b == 0));
        assert!(buf[8192..1 << 20].iter().all(|&b| b == 9));
        assert!(buf[1 << 20..].iter().all(|&b| b == 0));
        let runs = v.allocation(0, 8 << 20, 16).unwrap();
        assert!(!runs[0].hole);
        assert!(runs.last().unwrap().hole);
    }
}
