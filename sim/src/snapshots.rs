//! Snapshot-held data of one simulated volume, as the daemon's layers hold it
//! (see the daemon's `volume::layer`): a schedule of snapshots, block-level
//! redirect-on-write, and retention that deletes the oldest.
//!
//! Layer `k` holds what was written while `k` snapshots existed. A block's
//! old version becomes *shadowed* when the volume writes it again in a newer
//! layer; it stays for the snapshots that can see it (those taken after it
//! was written and up to the overwrite) and is freed when the last of them
//! is deleted. A unit is one extent of one layer; it is snapshot-only once no
//! block of it is live, and then `policy::select_held` decides when it moves
//! (one PUT, its blocks' bytes), exactly as the daemon decides. The volume's
//! live data keeps its per-extent model in `volume`; this module adds only
//! the bytes snapshots alone hold, local or remote, and reports what it
//! uploads and deletes for the volume to count.

use std::collections::{BTreeMap, HashMap, VecDeque};

use heatmap::{ExtentHeat, HeatRecord};
use policy::{ClassConfig, HeldView};

const BLOCK: u64 = 4096;
const NONE: u16 = u16::MAX;

/// Snapshots taken every `every_ms`, the newest `keep` kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub every_ms: u64,
    pub keep: u32,
}

#[derive(Debug, Default)]
struct Unit {
    /// Blocks of this unit the volume still reads.
    live: u32,
    /// Shadowed blocks by the newest snapshot that sees them.
    pending: BTreeMap<u32, u32>,
    /// Moved to the object store: its bytes then, and when.
    remote: Option<(u64, u64)>,
}

impl Unit {
    fn shadowed(&self) -> u32 {
        self.pending.values().sum()
    }
}

#[derive(Debug)]
pub struct SnapshotData {
    blocks_per_extent: usize,
    /// Per extent, per block: the layer holding the live version.
    layer_of: HashMap<u64, Vec<u16>>,
    units: HashMap<(u16, u64), Unit>,
    /// Layers so far (= snapshots taken).
    current: u16,
    /// Snapshots kept: (index, time taken).
    kept: VecDeque<(u32, u64)>,
    pub taken: u64,
    pub local_bytes: u64,
    pub remote_bytes: u64,
}

impl SnapshotData {
    pub fn new(extent_size: u64) -> Self {
        Self {
            blocks_per_extent: (extent_size / BLOCK).max(1) as usize,
            layer_of: HashMap::new(),
            units: HashMap::new(),
            current: 0,
            kept: VecDeque::new(),
            taken: 0,
            local_bytes: 0,
            remote_bytes: 0,
        }
    }

    /// The volume writes (or trims) blocks `first..last` of extent `e`.
    pub fn write(&mut self, e: u64, first: usize, last: usize) {
        let cur = self.current;
        let bpe = self.blocks_per_extent;
        let layers = self.layer_of.entry(e).or_insert_with(|| vec![NONE; bpe]);
        for slot in layers.iter_mut().take(last.min(bpe)).skip(first) {
            let old = *slot;
            if old == cur {
                continue;
            }
            *slot = cur;
            if old != NONE {
                let u = self.units.entry((old, e)).or_default();
                u.live = u.live.saturating_sub(1);
                // Seen by the snapshots from `old + 1` up to the newest now.
                *u.pending.entry(cur as u32).or_default() += 1;
                if u.remote.is_none() {
                    self.local_bytes += BLOCK;
                }
            }
            self.units.entry((cur, e)).or_default().live += 1;
        }
    }

    /// Takes a snapshot at `now`; deletes the oldest beyond `keep`, freeing
    /// what only it could see. Returns the objects that became garbage, as
    /// (bytes, age when GC deletes them).
    pub fn snapshot(&mut self, now: u64, keep: u32, gc_grace_ms: u64) -> Vec<(u64, u64)> {
        self.current = self.current.saturating_add(1).min(NONE - 1);
        self.taken += 1;
        self.kept.push_back((self.current as u32, now));
        let mut deleted = Vec::new();
        while self.kept.len() > keep.max(1) as usize {
            let Some((gone, _)) = self.kept.pop_front() else {
                break;
            };
            self.free_up_to(gone, now, gc_grace_ms, &mut deleted);
        }
        deleted
    }

    fn free_up_to(
        &mut self,
        snapshot: u32,
        now: u64,
        gc_grace_ms: u64,
        deleted: &mut Vec<(u64, u64)>,
    ) {
        let mut emptied = Vec::new();
        for (key, u) in self.units.iter_mut() {
            let freed: u32 = u.pending.range(..=snapshot).map(|(_, n)| *n).sum();
            if freed == 0 {
                continue;
            }
            u.pending.retain(|&s, _| s > snapshot);
            match u.remote {
                None => self.local_bytes -= freed as u64 * BLOCK,
                Some((bytes, at)) if u.live == 0 && u.pending.is_empty() => {
                    // Nothing refers to the object any more: GC deletes it.
                    self.remote_bytes -= bytes;
                    deleted.push((bytes, (now + gc_grace_ms).saturating_sub(at)));
                    emptied.push(*key);
                }
                Some(_) => {}
            }
        }
        for k in emptied {
            self.units.remove(&k);
        }
    }

    /// One pass: the snapshot-only units `select_held` picks move to the
    /// object store. `heat` gives the live extent's heat. Returns the bytes
    /// of each object uploaded.
    pub fn pass(
        &mut self,
        now: u64,
        class: &ClassConfig,
        cooling: &policy::select::Cooling,
        heat: &[Option<HeatRecord>],
        half_life_ms: f64,
    ) -> Vec<u64> {
        let frozen_at = |layer: u16, kept: &VecDeque<(u32, u64)>| {
            kept.iter()
                .find(|(i, _)| *i == layer as u32 + 1)
                .map(|(_, t)| *t)
                .unwrap_or(0)
        };
        let keys: Vec<(u16, u64)> = self
            .units
            .iter()
            .filter(|((layer, _), u)| {
                *layer < self.current && u.live == 0 && u.remote.is_none() && u.shadowed() > 0
            })
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return Vec::new();
        }
        let heats: Vec<Option<ExtentHeat>> = keys
            .iter()
            .map(|(_, e)| {
                heat.get(*e as usize)
                    .and_then(|h| h.as_ref())
                    .map(|r| ExtentHeat::from_record(*e, r, now, half_life_ms))
            })
            .collect();
        let views: Vec<HeldView> = keys
            .iter()
            .zip(&heats)
            .map(|(&(layer, e), h)| HeldView {
                layer: layer as u64,
                extent: e,
                live: false,
                frozen_ms: frozen_at(layer, &self.kept),
                heat: h.as_ref(),
            })
            .collect();
        let mut uploaded = Vec::new();
        for i in policy::select_held(class, cooling, &views, now) {
            let Some(u) = self.units.get_mut(&keys[i]) else {
                continue;
            };
            let bytes = u.shadowed() as u64 * BLOCK;
            u.remote = Some((bytes, now));
            self.local_bytes -= bytes;
            self.remote_bytes += bytes;
            uploaded.push(bytes);
        }
        uploaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{RetrievalPolicy, TieringPolicy};

    const MIB: u64 = 1 << 20;

    #[test]
    fn shadowed_blocks_are_held_until_their_last_snapshot_goes() {
        let mut s = SnapshotData::new(MIB);
        s.write(0, 0, 256); // the whole extent, before any snapshot
        assert_eq!(s.local_bytes, 0, "live data is the volume's");
        s.snapshot(10, 2, 0); // snapshot 1
        s.write(0, 0, 10); // 10 blocks shadowed, seen by snapshot 1
        s.write(0, 0, 10); // again in the same layer: nothing more
        assert_eq!(s.local_bytes, 10 * BLOCK);
        s.snapshot(20, 2, 0); // snapshot 2
        s.write(0, 5, 15); // 5 of layer 1's blocks and 5 of layer 0's
        assert_eq!(s.local_bytes, 20 * BLOCK);
        s.snapshot(30, 2, 0); // snapshot 3: snapshot 1 goes
        assert_eq!(
            s.local_bytes,
            10 * BLOCK,
            "what only snapshot 1 saw is freed"
        );
        s.snapshot(40, 2, 0); // snapshot 2 goes
        assert_eq!(s.local_bytes, 0);
    }

    #[test]
    fn snapshot_only_units_move_as_the_policy_says() {
        let auto = ClassConfig::with_policies(TieringPolicy::Auto, None, RetrievalPolicy::Default);
        let none = ClassConfig::with_policies(TieringPolicy::None, None, RetrievalPolicy::Default);
        let mut s = SnapshotData::new(MIB);
        s.write(0, 0, 256);
        s.write(1, 0, 256);
        assert!(s.snapshot(10, 24, 0).is_empty());
        s.write(0, 0, 256); // extent 0 of layer 0: snapshot-only
        s.write(1, 0, 1); // extent 1 of layer 0: still mostly live
        assert!(s
            .pass(
                20,
                &none,
                &policy::select::Cooling::of_class(&none, true),
                &[],
                1.0
            )
            .is_empty());
        assert_eq!(s.remote_bytes, 0);
        assert_eq!(
            s.pass(
                20,
                &auto,
                &policy::select::Cooling::of_class(&auto, true),
                &[],
                1.0
            ),
            vec![MIB]
        );
        assert_eq!(s.remote_bytes, MIB);
        assert_eq!(
            s.local_bytes, BLOCK,
            "the one shadowed block of extent 1 stays"
        );
    }
}
