//! Where each extent of one layer keeps its data: the layer's local file, an
//! object in the backend, nowhere because it is all zeros, or (in a layer on
//! top of another, see `volume::layer`) the layer below, for all of the extent
//! or for the blocks this layer does not hold.
//!
//! Invariant: an extent is either local, or remote with a committed key, never
//! neither. An extent with no record is local in a bottom layer and inherited
//! in a layer with a parent. A remote record is written (synced) only after
//! its object's upload was confirmed, and the local copy is punched only after
//! that write; a remote record is removed only after the data is back in the
//! local file (or was overwritten there). Which blocks a partial extent holds
//! is persisted only after those blocks are durable in the file (at flush), so
//! a crash can lose an unflushed write, as a disk's write cache may, but never
//! expose a block the file does not hold. An overlay (a remote extent with
//! blocks written since held in the file, see `policy::overlay`) keeps the
//! same rule: its record names the object and the blocks flushed, and a
//! block is read from the file only once that set (in memory, then on
//! disk) names it. RocksDB holds the records (column
//! family `extents`, key `layer id ++ extent index`); memory holds one state
//! byte per extent, and the block sets of partial extents, so the I/O path
//! decides without touching RocksDB.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rocksdb::{IteratorMode, WriteBatch, DB};

pub use policy::{Compression, ExtentState};

use crate::blocks::Blocks;
use crate::db::{self, CF_EXTENTS};
use crate::error::{Result, TierError};
use crate::wire::{Reader, Writer};

/// How a tiered extent's object is laid out: independently checksummed (and,
/// with zstd, independently compressed) frames, so a small read fetches and
/// verifies only the frames it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteExtent {
    /// The backend holding the object (a class may later point elsewhere).
    pub backend: String,
    pub key: String,
    pub generation: u64,
    /// xxh3-64 of the whole uncompressed extent.
    pub checksum: u64,
    pub compression: Compression,
    /// Uncompressed bytes per frame (the last frame may be shorter).
    pub frame_size: u32,
    /// Per frame: stored (possibly compressed) length and xxh3-64 of the stored bytes.
    pub frames: Vec<Frame>,
    /// The blocks the object holds for its layer, when the layer held only
    /// some of the extent (a frozen layer's partial extent); the others are
    /// read from the layer below. None: the whole extent.
    pub blocks: Option<Blocks>,
    /// Bytes of the object's header (see `object_header`) before the
    /// frames; 0 for objects from before headers existed.
    pub header_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub stored_len: u32,
    pub checksum: u64,
}

impl RemoteExtent {
    pub fn stored_size(&self) -> u64 {
        self.frames.iter().map(|f| f.stored_len as u64).sum()
    }

    /// Byte offset of frame `i` in the object (after its header).
    pub fn frame_offset(&self, i: usize) -> u64 {
        self.header_len as u64
            + self.frames[..i]
                .iter()
                .map(|f| f.stored_len as u64)
                .sum::<u64>()
    }
}

/// A persisted extent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentRecord {
    Remote(RemoteExtent),
    /// All zeros: no object, the local range is a hole.
    Zero,
    /// All of it in this layer's file (the default of a bottom layer, which
    /// therefore never stores it).
    Local,
    /// These blocks in this layer's file, the rest in the layer below.
    Partial(Blocks),
    /// In this layer's file (the blocks of `blocks`, or all of it), and a
    /// copy in the backend that a backup uploaded: a frozen layer's extent,
    /// so the copy stays exact. Tiering it costs no upload.
    Backed(RemoteExtent),
    /// In the object of `remote` (which holds the whole extent), except the
    /// blocks of `blocks`, written since and held in this layer's file.
    Overlay {
        remote: RemoteExtent,
        blocks: Blocks,
    },
}

const VERSION: u8 = 1;
/// Remote and backed records carry the object's header length.
const VERSION_2: u8 = 2;
const KIND_REMOTE: u8 = 1;
const KIND_ZERO: u8 = 2;
const KIND_LOCAL: u8 = 3;
const KIND_PARTIAL: u8 = 4;
const KIND_BACKED: u8 = 5;
const KIND_OVERLAY: u8 = 6;

/// Where one extent of a layer is, as the I/O path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Slot {
    Local = 0,
    Remote = 1,
    Zero = 2,
    /// Nothing here: the layer below has it all.
    Inherit = 3,
    /// Some blocks here (see the extent's [`Blocks`]), the rest below.
    Partial = 4,
    /// Remote, with some blocks here (see the extent's [`Blocks`]).
    Overlay = 5,
}

impl Slot {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Slot::Remote,
            2 => Slot::Zero,
            3 => Slot::Inherit,
            4 => Slot::Partial,
            5 => Slot::Overlay,
            _ => Slot::Local,
        }
    }

    /// The state the policy and the reports see. Inherited and partial
    /// extents read through the layer below; the policy counts them as
    /// local data it may not move as a whole (see `placements`).
    pub fn view(self) -> ExtentState {
        match self {
            Slot::Remote => ExtentState::Remote,
            Slot::Zero => ExtentState::Zero,
            Slot::Overlay => ExtentState::Overlay,
            Slot::Local | Slot::Inherit | Slot::Partial => ExtentState::Local,
        }
    }
}

impl ExtentRecord {
    fn slot(&self) -> Slot {
        match self {
            ExtentRecord::Remote(_) => Slot::Remote,
            ExtentRecord::Zero => Slot::Zero,
            ExtentRecord::Local => Slot::Local,
            ExtentRecord::Partial(_) => Slot::Partial,
            ExtentRecord::Backed(r) if r.blocks.is_some() => Slot::Partial,
            ExtentRecord::Backed(_) => Slot::Local,
            ExtentRecord::Overlay { .. } => Slot::Overlay,
        }
    }

    /// The object an extent's data is (partly) in: of a remote or overlay record.
    pub fn remote(&self) -> Option<&RemoteExtent> {
        match self {
            ExtentRecord::Remote(r) | ExtentRecord::Overlay { remote: r, .. } => Some(r),
            _ => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            ExtentRecord::Zero => vec![VERSION, KIND_ZERO],
            ExtentRecord::Local => vec![VERSION, KIND_LOCAL],
            ExtentRecord::Partial(b) => {
                let mut v = vec![VERSION, KIND_PARTIAL];
                b.encode(&mut v);
                v
            }
            ExtentRecord::Remote(r) => encode_remote(KIND_REMOTE, r),
            ExtentRecord::Backed(r) => encode_remote(KIND_BACKED, r),
            ExtentRecord::Overlay { remote, blocks } => {
                let mut v = encode_remote(KIND_OVERLAY, remote);
                Writer(&mut v).blocks(Some(blocks));
                v
            }
        }
    }

    pub fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader(b);
        let version = r.u8()?;
        if version != VERSION && version != VERSION_2 {
            return Err("unknown extent record version".into());
        }
        match r.u8()? {
            KIND_ZERO => Ok(ExtentRecord::Zero),
            KIND_LOCAL => Ok(ExtentRecord::Local),
            KIND_PARTIAL => Blocks::decode(r.rest())
                .map(ExtentRecord::Partial)
                .ok_or_else(|| "bad block set".to_string()),
            KIND_REMOTE => decode_remote(&mut r, version).map(ExtentRecord::Remote),
            KIND_BACKED => decode_remote(&mut r, version).map(ExtentRecord::Backed),
            KIND_OVERLAY if version == VERSION_2 => {
                let remote = decode_remote(&mut r, version)?;
                let blocks = r.blocks()?.ok_or("overlay without a block set")?;
                Ok(ExtentRecord::Overlay { remote, blocks })
            }
            k => Err(format!("unknown extent record kind {k}")),
        }
    }
}

fn encode_remote(kind: u8, r: &RemoteExtent) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + r.key.len() + r.frames.len() * 12);
    let mut w = Writer(&mut v);
    w.u8(VERSION_2)
        .u8(kind)
        .u64(r.generation)
        .u64(r.checksum)
        .u8(match r.compression {
            Compression::None => 0,
            Compression::Zstd => 1,
        })
        .u32(r.frame_size)
        .str(&r.backend)
        .str(&r.key)
        .u32(r.frames.len() as u32);
    for f in &r.frames {
        w.u32(f.stored_len).u64(f.checksum);
    }
    w.u32(r.header_len).blocks(r.blocks.as_ref());
    v
}

/// A remote (or backed) record's fields; version 1 records end with an
/// optional bare block set and have no header length.
fn decode_remote(r: &mut Reader, version: u8) -> std::result::Result<RemoteExtent, String> {
    let generation = r.u64()?;
    let checksum = r.u64()?;
    let compression = match r.u8()? {
        0 => Compression::None,
        1 => Compression::Zstd,
        c => return Err(format!("unknown compression {c}")),
    };
    let frame_size = r.u32()?;
    let backend = r.str()?;
    let key = r.str()?;
    let n = r.u32()? as usize;
    let mut frames = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        frames.push(Frame {
            stored_len: r.u32()?,
            checksum: r.u64()?,
        });
    }
    let (header_len, blocks) = if version == VERSION {
        let blocks = if r.is_empty() {
            None
        } else {
            Some(Blocks::decode(r.rest()).ok_or_else(|| "bad block set".to_string())?)
        };
        (0, blocks)
    } else {
        (r.u32()?, r.blocks()?)
    };
    Ok(RemoteExtent {
        backend,
        key,
        generation,
        checksum,
        compression,
        frame_size,
        frames,
        blocks,
        header_len,
    })
}

pub fn extent_key(volume: u64, extent: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&volume.to_be_bytes());
    k[8..].copy_from_slice(&extent.to_be_bytes());
    k
}

/// One layer's extent map.
#[derive(Debug)]
pub struct ExtentMap {
    db: Arc<DB>,
    layer: u64,
    states: Vec<AtomicU8>,
    /// A layer with a parent inherits what it has no record for.
    has_parent: bool,
    blocks_per_extent: u32,
    /// The block sets of partial extents (present before the slot says partial).
    partial: RwLock<HashMap<u64, Arc<Blocks>>>,
    /// Partial extents whose block set changed since the last flush.
    dirty: Mutex<BTreeSet<u64>>,
    /// Extents whose record is Backed: local data with an identical copy in
    /// the bucket, which a write must end before it changes the data.
    backed: RwLock<HashSet<u64>>,
    /// Held by a flush while it persists block sets, and by anything that
    /// takes an extent out of the partial state, so a flush never writes a
    /// stale block set over a newer record.
    commit: Mutex<()>,
}

impl ExtentMap {
    /// Loads the records of `layer` (which has `extents` extents of
    /// `blocks_per_extent` blocks). `has_parent`: extents with no record are
    /// inherited rather than local.
    pub fn load(
        db: Arc<DB>,
        layer: u64,
        extents: u64,
        blocks_per_extent: u32,
        has_parent: bool,
    ) -> Result<Self> {
        let default = if has_parent {
            Slot::Inherit
        } else {
            Slot::Local
        };
        let states: Vec<AtomicU8> = (0..extents).map(|_| AtomicU8::new(default as u8)).collect();
        let mut partial = HashMap::new();
        let mut backed = HashSet::new();
        {
            let cf = db::cf(&db, CF_EXTENTS)?;
            let start = extent_key(layer, 0);
            for item in db.iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
            {
                let (k, v) = item.map_err(|source| TierError::Db {
                    op: "iterate extents",
                    source: source.into(),
                })?;
                if k.len() != 16 || k[..8] != layer.to_be_bytes() {
                    break;
                }
                let extent = u64::from_be_bytes(k[8..16].try_into().unwrap_or_default());
                let rec =
                    ExtentRecord::decode(&v).map_err(|reason| TierError::CorruptMetadata {
                        key: format!("extent {layer}/{extent}"),
                        reason,
                    })?;
                if let Some(s) = states.get(extent as usize) {
                    s.store(rec.slot() as u8, Ordering::SeqCst);
                    if matches!(rec, ExtentRecord::Backed(_)) {
                        backed.insert(extent);
                    }
                    match rec {
                        ExtentRecord::Partial(b)
                        | ExtentRecord::Remote(RemoteExtent {
                            blocks: Some(b), ..
                        })
                        | ExtentRecord::Backed(RemoteExtent {
                            blocks: Some(b), ..
                        })
                        | ExtentRecord::Overlay { blocks: b, .. } => {
                            partial.insert(extent, Arc::new(b));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(Self {
            db,
            layer,
            states,
            has_parent,
            blocks_per_extent,
            partial: RwLock::new(partial),
            dirty: Mutex::new(BTreeSet::new()),
            backed: RwLock::new(backed),
            commit: Mutex::new(()),
        })
    }

    pub fn layer(&self) -> u64 {
        self.layer
    }

    pub fn len(&self) -> u64 {
        self.states.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    pub fn has_parent(&self) -> bool {
        self.has_parent
    }

    pub fn blocks_per_extent(&self) -> u32 {
        self.blocks_per_extent
    }

    pub fn slot(&self, extent: u64) -> Slot {
        self.states
            .get(extent as usize)
            .map(|s| Slot::from_u8(s.load(Ordering::SeqCst)))
            .unwrap_or(if self.has_parent {
                Slot::Inherit
            } else {
                Slot::Local
            })
    }

    /// The policy's view of the extent's state.
    pub fn state(&self, extent: u64) -> ExtentState {
        self.slot(extent).view()
    }

    fn set_slot(&self, extent: u64, slot: Slot) {
        if let Some(s) = self.states.get(extent as usize) {
            s.store(slot as u8, Ordering::SeqCst);
        }
    }

    /// Whether the extent's record is Backed (its local data also has a copy
    /// in the bucket).
    pub fn is_backed(&self, extent: u64) -> bool {
        let backed = self.backed.read();
        !backed.is_empty() && backed.contains(&extent)
    }

    /// The blocks a partial extent or an overlay holds here (or, for a
    /// remote extent, its object holds, when not all).
    pub fn blocks(&self, extent: u64) -> Option<Arc<Blocks>> {
        self.partial.read().get(&extent).cloned()
    }

    /// Notes that blocks `first..last` of `extent` are now written in this
    /// layer's file (an inherited extent becomes partial). In memory only,
    /// until [`ExtentMap::flush_blocks`]. Call with the extent's stripe held.
    pub fn hold_blocks(&self, extent: u64, first: u32, last: u32) {
        let blocks = {
            let existing = self.partial.read().get(&extent).cloned();
            match existing {
                Some(b) => b,
                None => self
                    .partial
                    .write()
                    .entry(extent)
                    .or_insert_with(|| Arc::new(Blocks::new(self.blocks_per_extent)))
                    .clone(),
            }
        };
        blocks.insert_range(first, last);
        if let Some(s) = self.states.get(extent as usize) {
            let _ = s.compare_exchange(
                Slot::Inherit as u8,
                Slot::Partial as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        self.dirty.lock().insert(extent);
    }

    /// Makes remote `extent` an overlay holding no block yet, in memory
    /// (the record stays remote until a flush names blocks). Call with the
    /// extent's stripe held for writing.
    pub fn begin_overlay(&self, extent: u64) {
        if self.slot(extent) != Slot::Remote {
            return;
        }
        self.partial
            .write()
            .insert(extent, Arc::new(Blocks::new(self.blocks_per_extent)));
        self.set_slot(extent, Slot::Overlay);
    }

    /// Whether a flush has block sets to persist.
    pub fn has_unflushed_blocks(&self) -> bool {
        !self.dirty.lock().is_empty()
    }

    /// Persists the block sets written since the last call. `sync_data` must
    /// make the layer's file durable; it runs after the sets are copied and
    /// before they are written, so every block a persisted set names is on
    /// disk. A set that became full is persisted as a local extent (an
    /// overlay's object is then garbage).
    pub fn flush_blocks(&self, sync_data: impl FnOnce() -> Result<()>) -> Result<()> {
        let _c = self.commit.lock();
        let extents = std::mem::take(&mut *self.dirty.lock());
        let restore = |extents: BTreeSet<u64>| self.dirty.lock().extend(extents);
        let copies = match self.block_set_copies(&extents) {
            Ok(c) => c,
            Err(e) => {
                restore(extents);
                return Err(e);
            }
        };
        if let Err(e) = sync_data() {
            restore(extents);
            return Err(e);
        }
        crate::failpoint::hit("flush-blocks-before-commit");
        if copies.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let cf = db::cf(&self.db, CF_EXTENTS)?;
        for (e, b, remote) in &copies {
            let rec = match remote {
                _ if b.is_full() => ExtentRecord::Local,
                Some(r) => ExtentRecord::Overlay {
                    remote: r.clone(),
                    blocks: b.clone(),
                },
                None => ExtentRecord::Partial(b.clone()),
            };
            batch.put_cf(cf, extent_key(self.layer, *e), rec.encode());
        }
        if let Err(e) = db::write_synced(&self.db, batch) {
            restore(extents);
            return Err(e);
        }
        let mut partial = self.partial.write();
        for (e, b, _) in copies {
            if b.is_full() && matches!(self.slot(e), Slot::Partial | Slot::Overlay) {
                self.set_slot(e, Slot::Local);
                partial.remove(&e);
            }
        }
        Ok(())
    }

    /// Copies of the block sets of `extents` still partial or overlays, with
    /// each overlay's object, for [`ExtentMap::flush_blocks`].
    #[allow(clippy::type_complexity)]
    fn block_set_copies(
        &self,
        extents: &BTreeSet<u64>,
    ) -> Result<Vec<(u64, Blocks, Option<RemoteExtent>)>> {
        let partial = self.partial.read();
        let mut out = Vec::new();
        for &e in extents {
            let slot = self.slot(e);
            if !matches!(slot, Slot::Partial | Slot::Overlay) {
                continue;
            }
            let Some(b) = partial.get(&e).map(|b| b.copy()) else {
                continue;
            };
            let remote = match slot {
                Slot::Overlay => match self.record(e)?.as_ref().and_then(ExtentRecord::remote) {
                    Some(r) => Some(r.clone()),
                    None => {
                        return Err(TierError::CorruptMetadata {
                            key: format!("extent {}/{e}", self.layer),
                            reason: "an overlay whose record names no object".into(),
                        })
                    }
                },
                _ => None,
            };
            out.push((e, b, remote));
        }
        Ok(out)
    }

    /// Waits until a flush of block sets under way (by another caller) has
    /// persisted them: a caller that found none left to flush may otherwise
    /// return before the sets its writes added are on disk.
    pub fn settle_flush(&self) {
        drop(self.commit.lock());
    }

    /// The persisted record, if the extent is not local.
    pub fn record(&self, extent: u64) -> Result<Option<ExtentRecord>> {
        let cf = db::cf(&self.db, CF_EXTENTS)?;
        match self.db.get_cf(cf, extent_key(self.layer, extent)) {
            Ok(Some(v)) => {
                ExtentRecord::decode(&v)
                    .map(Some)
                    .map_err(|reason| TierError::CorruptMetadata {
                        key: format!("extent {}/{extent}", self.layer),
                        reason,
                    })
            }
            Ok(None) => Ok(None),
            Err(source) => Err(TierError::Db {
                op: "read extent",
                source: source.into(),
            }),
        }
    }

    /// Durably records that `extent` now lives in `rec`.
    pub fn commit(&self, extent: u64, rec: &ExtentRecord) -> Result<()> {
        let _c = self.commit.lock();
        let mut batch = WriteBatch::default();
        batch.put_cf(
            db::cf(&self.db, CF_EXTENTS)?,
            extent_key(self.layer, extent),
            rec.encode(),
        );
        db::write_synced(&self.db, batch)?;
        self.set_slot(extent, rec.slot());
        if matches!(rec, ExtentRecord::Backed(_)) {
            self.backed.write().insert(extent);
        } else {
            self.backed.write().remove(&extent);
        }
        match rec {
            ExtentRecord::Partial(b)
            | ExtentRecord::Remote(RemoteExtent {
                blocks: Some(b), ..
            })
            | ExtentRecord::Backed(RemoteExtent {
                blocks: Some(b), ..
            })
            | ExtentRecord::Overlay { blocks: b, .. } => {
                self.partial.write().insert(extent, Arc::new(b.clone()));
            }
            _ => {
                self.partial.write().remove(&extent);
            }
        }
        Ok(())
    }

    /// Durably records that `extent` is wholly in this layer's file again.
    pub fn make_local(&self, extent: u64) -> Result<()> {
        if self.has_parent {
            return self.commit(extent, &ExtentRecord::Local);
        }
        let _c = self.commit.lock();
        let mut batch = WriteBatch::default();
        batch.delete_cf(
            db::cf(&self.db, CF_EXTENTS)?,
            extent_key(self.layer, extent),
        );
        db::write_synced(&self.db, batch)?;
        self.set_slot(extent, Slot::Local);
        self.partial.write().remove(&extent);
        self.backed.write().remove(&extent);
        Ok(())
    }

    /// Durably forgets what this layer holds of `extent`, which then reads
    /// from the layer below: for a layer's data no one can see any more.
    pub fn forget(&self, extent: u64) -> Result<()> {
        let _c = self.commit.lock();
        let mut batch = WriteBatch::default();
        let cf = db::cf(&self.db, CF_EXTENTS)?;
        if self.has_parent {
            batch.delete_cf(cf, extent_key(self.layer, extent));
        } else {
            // A bottom layer has nothing below: what no one sees is zeros.
            batch.put_cf(
                cf,
                extent_key(self.layer, extent),
                ExtentRecord::Zero.encode(),
            );
        }
        db::write_synced(&self.db, batch)?;
        self.set_slot(
            extent,
            if self.has_parent {
                Slot::Inherit
            } else {
                Slot::Zero
            },
        );
        self.partial.write().remove(&extent);
        self.backed.write().remove(&extent);
        Ok(())
    }

    /// Extents per state (local, remote, zero, overlay), inherited and
    /// partial ones counted as local.
    pub fn counts(&self) -> [u64; 4] {
        let mut c = [0u64; 4];
        for s in &self.states {
            c[Slot::from_u8(s.load(Ordering::Relaxed)).view() as usize] += 1;
        }
        c
    }

    /// Extents per slot: local, remote, zero, inherited, partial, overlay.
    pub fn slot_counts(&self) -> [u64; 6] {
        let mut c = [0u64; 6];
        for s in &self.states {
            c[Slot::from_u8(s.load(Ordering::Relaxed)) as usize] += 1;
        }
        c
    }

    /// Grows the map after the volume grew; new extents are local in a bottom
    /// layer and inherited (zeros beyond the parent's end) otherwise.
    pub fn grow(&mut self, extents: u64) {
        let default = if self.has_parent {
            Slot::Inherit
        } else {
            Slot::Local
        };
        while (self.states.len() as u64) < extents {
            self.states.push(AtomicU8::new(default as u8));
        }
    }
}

/// Every persisted record of `layer`, by extent (for GC and backups: one
/// scan instead of a lookup per extent).
pub fn layer_records(db: &DB, layer: u64) -> Result<Vec<(u64, ExtentRecord)>> {
    let cf = db::cf(db, CF_EXTENTS)?;
    let start = extent_key(layer, 0);
    let mut out = Vec::new();
    for item in db.iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward)) {
        let (k, v) = item.map_err(|source| TierError::Db {
            op: "iterate extents",
            source: source.into(),
        })?;
        if k.len() != 16 || k[..8] != layer.to_be_bytes() {
            break;
        }
        let extent = u64::from_be_bytes(k[8..16].try_into().unwrap_or_default());
        let rec = ExtentRecord::decode(&v).map_err(|reason| TierError::CorruptMetadata {
            key: format!("extent {layer}/{extent}"),
            reason,
        })?;
        out.push((extent, rec));
    }
    Ok(out)
}

impl ExtentMap {
    /// Every persisted record of this layer (see [`layer_records`]).
    pub fn records(&self) -> Result<Vec<(u64, ExtentRecord)>> {
        layer_records(&self.db, self.layer)
    }
}

/// Removes every record of `layer` (in `batch`).
pub fn delete_layer(db: &DB, batch: &mut WriteBatch, layer: u64) -> Result<()> {
    batch.delete_range_cf(
        db::cf(db, CF_EXTENTS)?,
        extent_key(layer, 0),
        extent_key(layer, u64::MAX),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = ExtentRecord::Remote(RemoteExtent {
            backend: "s3".into(),
            key: "0000000000000001/000000000003/0000000000000007".into(),
            generation: 7,
            checksum: 0xdead_beef,
            compression: Compression::Zstd,
            frame_size: 65536,
            frames: vec![
                Frame {
                    stored_len: 100,
                    checksum: 1,
                },
                Frame {
                    stored_len: 65536,
                    checksum: 2,
                },
            ],
            blocks: None,
            header_len: 0,
        });
        assert_eq!(ExtentRecord::decode(&r.encode()).unwrap(), r);
        let blocks = Blocks::new(256);
        blocks.insert_range(10, 20);
        let ExtentRecord::Remote(remote) = r.clone() else {
            unreachable!()
        };
        let backed = ExtentRecord::Backed(RemoteExtent {
            blocks: Some(blocks.copy()),
            header_len: 300,
            ..remote.clone()
        });
        let overlay = ExtentRecord::Overlay {
            remote: remote.clone(),
            blocks: blocks.copy(),
        };
        for rec in [
            ExtentRecord::Zero,
            ExtentRecord::Local,
            ExtentRecord::Partial(blocks.copy()),
            backed.clone(),
            overlay.clone(),
        ] {
            assert_eq!(ExtentRecord::decode(&rec.encode()).unwrap(), rec);
        }
        assert_eq!(backed.slot(), Slot::Partial);
        assert_eq!(overlay.slot(), Slot::Overlay);
        assert_eq!(overlay.remote(), Some(&remote));
        let enc = overlay.encode();
        assert!(ExtentRecord::decode(&enc[..enc.len() - 1]).is_err());
        let enc = r.encode();
        assert!(ExtentRecord::decode(&enc[..enc.len() - 1]).is_err());
        assert_eq!(remote.stored_size(), 65636);
        assert_eq!(remote.frame_offset(1), 100);
        let with_header = RemoteExtent {
            header_len: 300,
            ..remote.clone()
        };
        assert_eq!(with_header.frame_offset(0), 300);
        assert_eq!(with_header.frame_offset(1), 400);
    }

    /// Records written before object headers (version 1) still read, with
    /// a header length of 0 and their optional block-set tail.
    #[test]
    fn version_1_remote_records_read() {
        let blocks = Blocks::new(128);
        blocks.insert_range(0, 5);
        for tail in [None, Some(&blocks)] {
            let mut v = Vec::new();
            let mut w = Writer(&mut v);
            w.u8(1)
                .u8(KIND_REMOTE)
                .u64(5)
                .u64(6)
                .u8(0)
                .u32(65536)
                .str("fs")
                .str("a/b/c")
                .u32(1)
                .u32(10)
                .u64(11);
            if let Some(b) = tail {
                b.encode(&mut v);
            }
            let Ok(ExtentRecord::Remote(r)) = ExtentRecord::decode(&v) else {
                panic!("v1 record did not decode");
            };
            assert_eq!(r.header_len, 0);
            assert_eq!(r.key, "a/b/c");
            assert_eq!(r.frames.len(), 1);
            assert_eq!(r.blocks.is_some(), tail.is_some());
        }
    }
}
