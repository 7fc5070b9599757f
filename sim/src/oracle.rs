//! The offline optimum a policy is measured against: an oracle that knows
//! every future access and, for each extent, picks the cheapest sequence of
//! local and remote states under the same prices.
//!
//! Per extent it keeps the cheapest way to be local and the cheapest way to
//! be remote after the accesses seen so far (a two-state dynamic program,
//! exact because extents are priced independently). Between accesses an
//! extent stays local (local storage), is tiered at the start of the gap (a
//! PUT, then remote storage) or stays remote. At a read a remote extent is
//! either read in place (a ranged GET of the bytes read) or brought back (a
//! GET of the extent); writes need it local. Early-deletion charges apply when
//! an object goes away before the tier's minimum storage duration. The oracle
//! has no fetch cache, so a policy whose cache absorbs repeated cold reads can
//! in principle come out cheaper; the report shows the difference either way.
//!
//! When a class it is measured against may keep write overlays
//! (`write_overlay`), the oracle may too: a third state, remote with the
//! blocks written since kept locally (priced as local space for those
//! blocks). A partial write may then leave a remote extent remote (filling a
//! partly written edge block costs a ranged GET), and an overlay may be
//! merged into a new object at the start of a gap (a GET and a PUT). The
//! overlay state keeps one block set, that of its cheapest history, so with
//! overlays the program is a close approximation rather than exact.
//!
//! One streaming pass; memory is one small record per extent seen.

use std::collections::HashMap;

use super::cost::Price;
use super::trace::{Event, Op};
use super::volume::Counters;

const MONTH_MS: f64 = 30.0 * 86_400_000.0;
const FRAME: u64 = 64 << 10;
const BLOCK: u64 = 4096;

/// The cheapest history ending in one state, and what it did.
#[derive(Debug, Clone, Copy, Default)]
struct Path {
    cost: f64,
    /// For the remote state: when its object was written.
    tiered_at: u64,
    puts: u32,
    gets: u32,
    rehydrations: u32,
    /// Returns within the thrash window of the tiering.
    thrash: u32,
    fetched: u64,
    local_ms: u64,
    remote_ms: u64,
    /// Storage time still owed for objects deleted before the minimum duration.
    owed_ms: u64,
    /// Overlays merged into new objects.
    merges: u32,
    /// Overlay blocks held locally, times how long (block-ms).
    overlay_block_ms: u64,
}

/// The overlay state: its cheapest history and the blocks it holds.
#[derive(Debug, Clone)]
struct Overlay {
    path: Path,
    held: Vec<u64>,
}

impl Overlay {
    fn count(&self) -> u64 {
        self.held.iter().map(|w| w.count_ones() as u64).sum()
    }

    fn has(&self, b: u64) -> bool {
        self.held[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    fn covers(&self, from: u64, to: u64) -> bool {
        (from / BLOCK..to.div_ceil(BLOCK)).all(|b| self.has(b))
    }

    fn hold(&mut self, from: u64, to: u64) {
        for b in from / BLOCK..to.div_ceil(BLOCK) {
            self.held[(b / 64) as usize] |= 1 << (b % 64);
        }
    }
}

#[derive(Debug, Clone)]
struct Extent {
    last: u64,
    local: Path,
    remote: Option<Path>,
    overlay: Option<Overlay>,
}

#[derive(Debug)]
pub struct Oracle {
    shift: u32,
    extent_size: u64,
    local_gb_month: f64,
    price: Price,
    thrash_window_ms: u64,
    /// Whether the overlay state is open to it.
    overlays: bool,
    extents: HashMap<(u32, u64), Extent>,
    pub counters: Counters,
    pub local_byte_ms: f64,
    pub remote_byte_ms: f64,
}

impl Oracle {
    pub fn new(
        extent_size: u64,
        local_gb_month: f64,
        price: Price,
        thrash_window_ms: u64,
        overlays: bool,
    ) -> Self {
        Self {
            thrash_window_ms,
            overlays,
            shift: extent_size.trailing_zeros(),
            extent_size,
            local_gb_month,
            price,
            extents: HashMap::new(),
            counters: Counters::default(),
            local_byte_ms: 0.0,
            remote_byte_ms: 0.0,
        }
    }

    fn gb(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e9
    }

    fn keep(&self, ms: u64) -> f64 {
        self.local_gb_month * self.gb(self.extent_size) * ms as f64 / MONTH_MS
    }

    /// Local space for `blocks` overlay blocks over `ms`.
    fn keep_blocks(&self, blocks: u64, ms: u64) -> f64 {
        self.local_gb_month * self.gb(blocks * BLOCK) * ms as f64 / MONTH_MS
    }

    fn store(&self, ms: u64) -> f64 {
        self.price.storage_gb_month * self.gb(self.extent_size) * ms as f64 / MONTH_MS
    }

    fn get(&self, bytes: u64) -> f64 {
        self.price.get_per_1000 / 1000.0 + self.price.retrieval_per_gb * self.gb(bytes)
    }

    fn min_ms(&self) -> u64 {
        (self.price.min_storage_days * 86_400_000.0) as u64
    }

    /// Storage time owed when an object written at `tiered_at` goes at `now`.
    fn owed(&self, tiered_at: u64, now: u64) -> u64 {
        self.min_ms().saturating_sub(now.saturating_sub(tiered_at))
    }

    /// The three states after an idle gap `[from, to)`.
    fn gap(&self, x: &Extent, to: u64) -> (Path, Path, Option<Overlay>) {
        let g = to.saturating_sub(x.last);
        let mut local = x.local;
        local.cost += self.keep(g);
        local.local_ms += g;
        let mut tiered = x.local;
        tiered.cost += self.price.put_per_1000 / 1000.0 + self.store(g);
        tiered.puts += 1;
        tiered.remote_ms += g;
        tiered.tiered_at = x.last;
        let mut remote = match x.remote {
            Some(r) => {
                let mut stay = r;
                stay.cost += self.store(g);
                stay.remote_ms += g;
                Self::cheaper(tiered, stay)
            }
            None => tiered,
        };
        let overlay = x.overlay.as_ref().map(|o| {
            // Merged at the start of the gap: the old object (fetched, then
            // deleted) with the blocks over it goes up as a new one.
            let mut merged = o.path;
            let owed = self.owed(merged.tiered_at, x.last);
            merged.cost += self.store(owed)
                + self.get(self.extent_size)
                + self.price.put_per_1000 / 1000.0
                + self.store(g);
            merged.owed_ms += owed;
            merged.gets += 1;
            merged.fetched += self.extent_size;
            merged.merges += 1;
            merged.remote_ms += g;
            merged.tiered_at = x.last;
            remote = Self::cheaper(remote, merged);
            let mut stay = o.clone();
            let n = stay.count();
            stay.path.cost += self.store(g) + self.keep_blocks(n, g);
            stay.path.remote_ms += g;
            stay.path.overlay_block_ms += n * g;
            stay
        });
        (local, remote, overlay)
    }

    /// A partial write of `s..t` (bytes within the extent) kept in an
    /// overlay: over the clean remote state, or over the overlay there is.
    /// Edge blocks written only partly and not held cost a ranged GET.
    fn overlay_write(&self, remote: Path, overlay: Option<&Overlay>, s: u64, t: u64) -> Overlay {
        let words = self.extent_size.div_ceil(BLOCK).div_ceil(64) as usize;
        let edge = |o: &Overlay| {
            policy::overlay::edge_blocks(s, t - s, BLOCK, self.extent_size)
                .into_iter()
                .filter(|&b| !o.has(b as u64))
                .count() as f64
        };
        let fresh = Overlay {
            path: remote,
            held: vec![0; words],
        };
        let mut best = fresh.clone();
        best.path.cost += edge(&fresh) * self.get(FRAME);
        if let Some(o) = overlay {
            let mut grown = o.clone();
            grown.path.cost += edge(o) * self.get(FRAME);
            if grown.path.cost < best.path.cost {
                best = grown;
            }
        }
        best.hold(s, t);
        best
    }

    /// Brings a remote path back at `now`, with (`fetch`) or without a GET.
    fn back(&self, mut r: Path, now: u64, fetch: bool) -> Path {
        let owed = self.owed(r.tiered_at, now);
        r.cost += self.store(owed);
        r.owed_ms += owed;
        if fetch {
            r.cost += self.get(self.extent_size);
            r.gets += 1;
            r.fetched += self.extent_size;
        }
        r.rehydrations += 1;
        if now.saturating_sub(r.tiered_at) <= self.thrash_window_ms {
            r.thrash += 1;
        }
        r
    }

    fn cheaper(a: Path, b: Path) -> Path {
        if b.cost < a.cost {
            b
        } else {
            a
        }
    }

    pub fn apply(&mut self, ev: &Event) {
        if ev.len == 0 {
            return;
        }
        let end = ev.offset.saturating_add(ev.len);
        let (first, last) = (ev.offset >> self.shift, (end - 1) >> self.shift);
        for e in first..=last {
            let s = (e << self.shift).max(ev.offset);
            let t = ((e + 1) << self.shift).min(end);
            let whole = t - s == self.extent_size;
            let (ws, wt) = (s - (e << self.shift), t - (e << self.shift));
            let key = (ev.device, e);
            let Some(x) = self.extents.get(&key).cloned() else {
                // Data exists from its first write; reads and trims of
                // never-written extents touch no storage.
                if ev.op == Op::Write {
                    self.extents.insert(
                        key,
                        Extent {
                            last: ev.t_ms,
                            local: Path::default(),
                            remote: None,
                            overlay: None,
                        },
                    );
                }
                continue;
            };
            let (local, remote, overlay) = self.gap(&x, ev.t_ms);
            let now = ev.t_ms;
            // Local again at `now`: stayed, or came back from either
            // tiered state (with a GET when the data is needed).
            let back_any = |fetch: bool| {
                let mut best = Self::cheaper(local, self.back(remote, now, fetch));
                if let Some(o) = &overlay {
                    best = Self::cheaper(best, self.back(o.path, now, fetch));
                }
                best
            };
            let next = match ev.op {
                Op::Read => {
                    let frames = (t - s).div_ceil(FRAME) * FRAME;
                    let ranged = self.get(frames.min(self.extent_size));
                    let mut in_place = remote;
                    in_place.cost += ranged;
                    in_place.gets += 1;
                    in_place.fetched += frames.min(self.extent_size);
                    let overlay = overlay.clone().map(|mut o| {
                        if !o.covers(ws, wt) {
                            o.path.cost += ranged;
                            o.path.gets += 1;
                            o.path.fetched += frames.min(self.extent_size);
                        }
                        o
                    });
                    Extent {
                        last: now,
                        local: back_any(true),
                        remote: Some(in_place),
                        overlay,
                    }
                }
                Op::Write | Op::Trim if whole => {
                    let done = back_any(false);
                    if ev.op == Op::Trim {
                        // The data is gone: settle this extent's history.
                        self.settle(done);
                        self.extents.remove(&key);
                        continue;
                    }
                    Extent {
                        last: now,
                        local: done,
                        remote: None,
                        overlay: None,
                    }
                }
                Op::Write | Op::Trim => {
                    let mut local = back_any(true);
                    let mut kept = None;
                    if self.overlays {
                        let o = self.overlay_write(remote, overlay.as_ref(), ws, wt);
                        let blocks = self.extent_size.div_ceil(BLOCK);
                        if o.count() >= blocks {
                            // Every block written: local, the object garbage.
                            local = Self::cheaper(local, self.back(o.path, now, false));
                        } else {
                            kept = Some(o);
                        }
                    }
                    Extent {
                        last: now,
                        local,
                        remote: None,
                        overlay: kept,
                    }
                }
            };
            self.extents.insert(key, next);
        }
    }

    fn settle(&mut self, p: Path) {
        let extent_size = self.extent_size;
        let min = self.min_ms();
        let c = &mut self.counters;
        c.puts += p.puts as u64;
        c.extents_tiered += p.puts as u64;
        c.bytes_uploaded += p.puts as u64 * extent_size;
        c.gets += p.gets as u64;
        c.bytes_fetched += p.fetched;
        c.rehydrations += p.rehydrations as u64;
        c.thrash += p.thrash as u64;
        c.merges += p.merges as u64;
        c.puts += p.merges as u64;
        c.bytes_uploaded += p.merges as u64 * extent_size;
        self.local_byte_ms +=
            p.local_ms as f64 * self.extent_size as f64 + p.overlay_block_ms as f64 * BLOCK as f64;
        self.remote_byte_ms += p.remote_ms as f64 * self.extent_size as f64;
        // As deleted objects, so the cost model charges what is owed: whole
        // minimum durations, then the rest.
        if min > 0 {
            let mut owed = p.owed_ms;
            while owed > 0 {
                let part = owed.min(min);
                c.deleted.add(extent_size, min - part);
                owed -= part;
            }
        }
    }

    /// Closes every extent's last gap at the end of the trace.
    pub fn finish(&mut self, end: u64) {
        let all: Vec<Extent> = self.extents.drain().map(|(_, x)| x).collect();
        for x in all {
            let (local, remote, overlay) = self.gap(&x, end);
            let mut best = Self::cheaper(local, remote);
            if let Some(o) = overlay {
                best = Self::cheaper(best, o.path);
            }
            self.settle(best);
        }
    }
}
