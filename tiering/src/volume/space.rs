//! Who holds a volume's data (the volume alone, each snapshot alone, or
//! several), and compaction: freeing what a hidden layer holds that no
//! volume or snapshot reads any more.
//!
//! Both walk every extent of the layers concerned and ask, per reader (every
//! volume's top layer and every snapshot), which blocks it reads from each
//! layer (`layer::visible_blocks`). Compaction punches first and commits
//! after, so a crash in between leaves blocks that read as zeros and that no
//! one reads.

use std::sync::Arc;

use serde::Serialize;

use super::layer::{full_words, visible_blocks};
use super::{Layer, LayerMeta, Volume, Volumes, BLOCK_SIZE};
use crate::blocks::Blocks;
use crate::error::{Result, TierError};
use crate::extent_map::{ExtentRecord, Slot};

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

impl Volumes {
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
                if matches!(slot, Slot::Local | Slot::Partial | Slot::Overlay) {
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
}
