//! Layers: what snapshots, clones and revert are made of.
//!
//! A volume's data is a chain of layers. Each layer is a sparse local file
//! the size of the volume (`<data_dir>/volumes/<layer id>.img`) with its own
//! extent map; a layer on top of another holds only what was written since
//! the layer below was frozen, block by block, and reads the rest through it.
//! Taking a snapshot freezes the volume's top layer (it becomes the
//! snapshot) and puts a new, empty one on top: no data is copied. A clone is
//! a new volume whose first layer sits on a snapshot's; a revert replaces the
//! top layer with an empty one on the snapshot's. So writes never copy old
//! data out of the way (redirect-on-write): a first write after a snapshot
//! costs what any write costs, and the only extra work is persisting which
//! blocks the layer holds, at flush.
//!
//! Invariants: a frozen layer's content never changes (tiering and
//! rehydration move its data, never alter it); a layer is removed only when
//! no volume, snapshot or other layer reads through it; locks are taken top
//! layer first, so a read holding a layer's stripe may take its parent's.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::local_tier::LocalTier;
use crate::extent_map::{ExtentMap, Slot};

/// Lock stripes per layer: extents map onto them by index.
pub(crate) const STRIPES: usize = 1024;

/// One lock stripe: the lock that guards extent state changes, and the count of
/// writes that went through it.
#[derive(Debug, Default)]
pub(crate) struct Stripe {
    pub(crate) lock: RwLock<()>,
    pub(crate) seq: AtomicU64,
}

/// A layer's persisted description (column family `layers`). A volume's
/// bottom layer from before snapshots existed has none: its id is the
/// volume's, and it has no parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub id: u64,
    pub parent: Option<u64>,
    /// The volume whose data it was (it may since have been deleted).
    pub volume: u64,
    /// The snapshot this layer is, if it is one. A frozen layer without a
    /// name is kept only for the layers above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub frozen: bool,
    pub size: u64,
    pub created_ms: u64,
    /// When it was frozen (the snapshot's time).
    #[serde(default)]
    pub frozen_ms: u64,
    /// Its name in buckets, when it came from one (a restored layer keeps
    /// the name it was backed up under); otherwise see [`layer_name`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
}

/// The bucket name of layer `id` made on the node whose data directory is
/// `node` (random, see `Volumes::open`): unique across nodes, so the
/// objects and indexes of two nodes' layers never share a key.
pub fn layer_name(node: &str, id: u64) -> String {
    format!("{node}-{id:016x}")
}

impl LayerMeta {
    /// A new, empty, writable layer on `parent`, for `volume`.
    pub fn fresh(id: u64, parent: u64, volume: u64, size: u64, now_ms: u64) -> Self {
        Self {
            id,
            parent: Some(parent),
            volume,
            snapshot: None,
            frozen: false,
            size,
            created_ms: now_ms,
            frozen_ms: 0,
            remote_name: None,
        }
    }
}

/// One layer: its file, its extent map, its locks, and the layer below.
#[derive(Debug)]
pub struct Layer {
    pub(crate) id: u64,
    /// Its name in buckets (object headers, keys, backup indexes).
    pub(crate) name: String,
    pub(crate) tier: LocalTier,
    pub(crate) map: RwLock<ExtentMap>,
    pub(crate) stripes: Vec<Stripe>,
    pub(crate) parent: Option<Arc<Layer>>,
    /// Bytes this layer covers (a layer below a grown volume is shorter).
    pub(crate) size: AtomicU64,
}

impl Layer {
    pub(crate) fn new(
        id: u64,
        name: String,
        tier: LocalTier,
        map: ExtentMap,
        parent: Option<Arc<Layer>>,
        size: u64,
    ) -> Self {
        Self {
            id,
            name,
            tier,
            map: RwLock::new(map),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            parent,
            size: AtomicU64::new(size),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn parent(&self) -> Option<&Arc<Layer>> {
        self.parent.as_ref()
    }

    pub(crate) fn stripe(&self, e: u64) -> &Stripe {
        &self.stripes[(e as usize) % STRIPES]
    }

    /// Layers from this one down to the bottom.
    pub fn chain(self: &Arc<Self>) -> Vec<Arc<Layer>> {
        let mut out = vec![self.clone()];
        while let Some(p) = out.last().and_then(|l| l.parent.clone()) {
            out.push(p);
        }
        out
    }

    /// Per extent of `extent_size` bytes: whether this layer's file holds
    /// any data in its range.
    pub(crate) fn allocated_extents(&self, extent_size: u64) -> Vec<bool> {
        let n = self.size().div_ceil(extent_size) as usize;
        let mut out = vec![false; n];
        for (a, b) in self.data_runs() {
            if b <= a {
                continue;
            }
            let first = (a / extent_size) as usize;
            let last = ((b - 1) / extent_size) as usize;
            for x in out
                .iter_mut()
                .take(last.min(n.saturating_sub(1)) + 1)
                .skip(first)
            {
                *x = true;
            }
        }
        out
    }

    /// The data runs of this layer's file (one pass of SEEK_DATA/SEEK_HOLE),
    /// as `(offset, end)` pairs, for [`Layer::data_words`].
    pub(crate) fn data_runs(&self) -> Vec<(u64, u64)> {
        self.tier
            .allocation(0, self.size(), usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !r.hole)
            .map(|r| (r.offset, r.offset + r.len))
            .collect()
    }

    /// The blocks of extent `e` that hold data: all of a remote extent (or
    /// the blocks its object holds) and of an overlay, the allocated ones of a local or
    /// partial one (a never-written or trimmed block is a hole, per `runs`
    /// from [`Layer::data_runs`]), none otherwise. As words.
    pub(crate) fn data_words(&self, e: u64, runs: &[(u64, u64)]) -> Vec<u64> {
        let (slot, bpe) = {
            let map = self.map.read();
            (map.slot(e), map.blocks_per_extent())
        };
        match slot {
            Slot::Remote => self
                .map
                .read()
                .blocks(e)
                .map(|b| b.words())
                .unwrap_or_else(|| full_words(bpe)),
            Slot::Overlay => full_words(bpe),
            Slot::Local | Slot::Partial => {
                let bs = super::BLOCK_SIZE;
                let ext = bpe as u64 * bs;
                let (start, end) = (e * ext, (e + 1) * ext);
                let mut w = vec![0u64; bpe.div_ceil(64) as usize];
                let first = runs.partition_point(|&(_, b)| b <= start);
                for &(a, b) in runs[first..].iter().take_while(|&&(a, _)| a < end) {
                    let from = (a.max(start) - start) / bs;
                    let to = (b.min(end) - start).div_ceil(bs);
                    for i in from..to.min(bpe as u64) {
                        w[(i / 64) as usize] |= 1 << (i % 64);
                    }
                }
                w
            }
            Slot::Zero | Slot::Inherit => Vec::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A frozen layer as a volume's policy pass sees it: the layer, when it was
/// frozen, and the top layers of every live volume that reads through it.
#[derive(Debug, Clone)]
pub struct HeldLayer {
    pub layer: Arc<Layer>,
    pub frozen_ms: u64,
    pub viewers: Vec<Arc<Layer>>,
}

/// Whether a volume whose top layer is `top` reads any block of extent `e`
/// from `layer` (a layer of its chain): some block `layer` holds that no
/// layer above it in the chain holds.
pub fn reads_from(top: &Arc<Layer>, layer: &Layer, e: u64) -> bool {
    visible_blocks(top, layer, e).is_some_and(|w| w.iter().any(|&x| x != 0))
}

/// The blocks of extent `e` that a reader whose top layer is `top` reads
/// from `layer`, as words (see [`crate::blocks::Blocks::words`]); `None`
/// when `layer` is not in its chain or holds nothing of `e`.
pub fn visible_blocks(top: &Arc<Layer>, layer: &Layer, e: u64) -> Option<Vec<u64>> {
    let mut shadow: Option<Vec<u64>> = None;
    for l in top.chain() {
        let map = l.map.read();
        if e >= map.len() {
            // Shorter than the volume (it grew since): holds nothing of `e`.
            if l.id == layer.id {
                return None;
            }
            continue;
        }
        let slot = map.slot(e);
        if l.id == layer.id {
            let held: Vec<u64> = match slot {
                Slot::Local | Slot::Overlay => full_words(map.blocks_per_extent()),
                Slot::Remote => map
                    .blocks(e)
                    .map(|b| b.words())
                    .unwrap_or_else(|| full_words(map.blocks_per_extent())),
                Slot::Partial => map.blocks(e).map(|b| b.words())?,
                Slot::Zero | Slot::Inherit => return None,
            };
            let shadow = shadow.unwrap_or_else(|| vec![0; held.len()]);
            return Some(held.iter().zip(&shadow).map(|(h, s)| h & !s).collect());
        }
        let partial_remote = slot == Slot::Remote && map.blocks(e).is_some();
        match slot {
            Slot::Local | Slot::Zero | Slot::Overlay => return Some(Vec::new()),
            Slot::Remote if !partial_remote => return Some(Vec::new()),
            Slot::Remote | Slot::Partial => {
                if let Some(b) = map.blocks(e) {
                    let w = b.words();
                    match &mut shadow {
                        Some(s) => s.iter_mut().zip(&w).for_each(|(a, b)| *a |= b),
                        None => shadow = Some(w),
                    }
                }
            }
            Slot::Inherit => {}
        }
    }
    None
}

pub(crate) fn full_words(blocks: u32) -> Vec<u64> {
    (0..blocks.div_ceil(64))
        .map(|i| {
            let left = blocks - i * 64;
            if left >= 64 {
                u64::MAX
            } else {
                (1u64 << left) - 1
            }
        })
        .collect()
}
