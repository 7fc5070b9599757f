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
use crate::extent_map::ExtentMap;

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
}

/// One layer: its file, its extent map, its locks, and the layer below.
#[derive(Debug)]
pub struct Layer {
    pub(crate) id: u64,
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
        tier: LocalTier,
        map: ExtentMap,
        parent: Option<Arc<Layer>>,
        size: u64,
    ) -> Self {
        Self {
            id,
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

    pub fn size(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::SeqCst)
    }
}
