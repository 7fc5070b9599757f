//! One volume under one class in simulated time: the extent states, heat,
//! read tracking and fetch cache the daemon would hold for it, driven by trace
//! events. Every decision goes through the daemon's own code: the policy pass
//! (`policy::select`), the retrieval policy (`engine::brings_back`) and the
//! access decisions (`access`). What it records is what the daemon would send
//! to the object store and keep on local disk.
//!
//! Invariant: `local_bytes` and `remote_bytes` always equal the allocated
//! local extents and the remote extents times the extent size (the caller
//! integrates them over time).

use std::num::NonZeroUsize;

use heatmap::{Access, AccessKind, ExtentHeat, HeatRecord};

use super::trace::{Event, Op};
use crate::access::{self, ReadTracker};
use crate::config::ClassConfig;
use crate::engine::brings_back;
use crate::extent_map::ExtentState;
use crate::policy::{self, ExtentView};

/// Frames of a tiered extent: a ranged GET fetches whole frames.
const FRAME: u64 = 64 << 10;

/// What a simulated policy did, summed over its volumes.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub puts: u64,
    pub gets: u64,
    pub bytes_uploaded: u64,
    pub bytes_fetched: u64,
    pub extents_tiered: u64,
    pub rehydrations: u64,
    /// Extents brought back within the thrash window of being tiered.
    pub thrash: u64,
    /// Reads that touched a remote extent, and those served by the cache.
    pub cold_reads: u64,
    pub cold_cache_hits: u64,
    /// Estimated time cold reads waited on the object store, summed.
    pub cold_wait_ms: f64,
    /// Objects made garbage, by age at deletion.
    pub deleted: Deletions,
    pub passes: u64,
}

/// Bytes of deleted objects by their age at deletion, in hours up to a year.
/// Only objects deleted before a tier's minimum storage duration cost
/// anything (no list price we know asks for more than 180 days), and memory
/// stays constant however many objects a trace deletes.
#[derive(Debug, Clone, Default)]
pub struct Deletions {
    bytes_by_hour: Vec<u64>,
}

const HOUR_MS: u64 = 3_600_000;
const YEAR_HOURS: usize = 366 * 24;

impl Deletions {
    pub fn add(&mut self, bytes: u64, age_ms: u64) {
        let h = (age_ms / HOUR_MS) as usize;
        if h >= YEAR_HOURS {
            return;
        }
        if self.bytes_by_hour.len() <= h {
            self.bytes_by_hour.resize(h + 1, 0);
        }
        self.bytes_by_hour[h] += bytes;
    }

    /// As (bytes, age in ms) for the cost model; ages round down to the hour,
    /// so an early-deletion charge is at most one hour's storage too high.
    pub fn objects(&self) -> Vec<(u64, u64)> {
        self.bytes_by_hour
            .iter()
            .enumerate()
            .filter(|(_, &b)| b > 0)
            .map(|(h, &b)| (b, h as u64 * HOUR_MS))
            .collect()
    }
}

/// How the object store answers, for the cold-read latency estimate.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub first_byte_ms: f64,
    pub bytes_per_ms: f64,
}

impl Latency {
    fn get(&self, bytes: u64) -> f64 {
        self.first_byte_ms + bytes as f64 / self.bytes_per_ms.max(1e-9)
    }
}

/// Knobs shared by every volume of a simulation.
#[derive(Debug, Clone)]
pub struct VolumeParams {
    pub extent_size: u64,
    pub half_life_ms: f64,
    pub readahead_extents: u32,
    pub cache_entries: usize,
    pub thrash_window_ms: u64,
    pub gc_grace_ms: u64,
    pub latency: Latency,
}

/// Iterates (extent, bytes within it) without allocating: the simulator
/// visits every event of traces with millions of them.
struct Pieces {
    shift: u32,
    offset: u64,
    end: u64,
    next: u64,
    last: u64,
}

impl Iterator for Pieces {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        while self.next <= self.last {
            let e = self.next;
            self.next += 1;
            let s = (e << self.shift).max(self.offset);
            let t = ((e + 1) << self.shift).min(self.end);
            if t > s {
                return Some((e, t - s));
            }
        }
        None
    }
}

#[derive(Debug)]
pub struct SimVolume {
    shift: u32,
    ext: u64,
    states: Vec<ExtentState>,
    allocated: Vec<bool>,
    heat: Vec<Option<HeatRecord>>,
    tiered_at: Vec<u64>,
    generation: Vec<u64>,
    next_generation: u64,
    cache: lru::LruCache<(u64, u64), ()>,
    reads: ReadTracker,
    /// No local allocated extent was last used before this (a pass before
    /// `earliest + cooling` has nothing to do).
    earliest_local_use: u64,
    pub local_bytes: u64,
    pub remote_bytes: u64,
}

impl SimVolume {
    pub fn new(p: &VolumeParams) -> Self {
        Self {
            shift: p.extent_size.trailing_zeros(),
            ext: p.extent_size,
            states: Vec::new(),
            allocated: Vec::new(),
            heat: Vec::new(),
            tiered_at: Vec::new(),
            generation: Vec::new(),
            next_generation: 1,
            cache: lru::LruCache::new(
                NonZeroUsize::new(p.cache_entries).unwrap_or(NonZeroUsize::MIN),
            ),
            reads: ReadTracker::new(),
            earliest_local_use: u64::MAX,
            local_bytes: 0,
            remote_bytes: 0,
        }
    }

    fn grow_to(&mut self, extents: u64) {
        let n = extents as usize;
        if n > self.states.len() {
            self.states.resize(n, ExtentState::Local);
            self.allocated.resize(n, false);
            self.heat.resize(n, None);
            self.tiered_at.resize(n, 0);
            self.generation.resize(n, 0);
        }
    }

    /// The extents under `offset..offset+len`, and how many bytes of each.
    fn pieces(&self, offset: u64, len: u64) -> Pieces {
        let end = offset.saturating_add(len);
        Pieces {
            shift: self.shift,
            offset,
            end,
            next: offset >> self.shift,
            last: end.saturating_sub(1) >> self.shift,
        }
    }

    fn touch(
        &mut self,
        e: u64,
        kind: AccessKind,
        bytes: u64,
        sequential: bool,
        now: u64,
        half_life_ms: f64,
    ) {
        let delta = HeatRecord::from_access(
            Access {
                kind,
                bytes,
                sequential,
            },
            now,
        );
        let slot = &mut self.heat[e as usize];
        match slot {
            Some(r) => r.combine(&delta, half_life_ms),
            None => *slot = Some(delta),
        }
    }

    fn make_allocated_local(&mut self, e: u64, now: u64) {
        let i = e as usize;
        if !self.allocated[i] && self.states[i] == ExtentState::Local {
            self.allocated[i] = true;
            self.local_bytes += self.ext;
        }
        self.earliest_local_use = self.earliest_local_use.min(now);
    }

    /// The object of remote extent `e` becomes garbage (GC deletes it after the grace).
    fn drop_object(&mut self, e: u64, now: u64, p: &VolumeParams, c: &mut Counters) {
        let i = e as usize;
        self.remote_bytes -= self.ext;
        let age = (now + p.gc_grace_ms).saturating_sub(self.tiered_at[i]);
        c.deleted.add(self.ext, age);
        self.cache.pop(&(e, self.generation[i]));
    }

    /// A whole fetch of remote extent `e` through the cache; returns whether it was a hit.
    fn fetch_whole(&mut self, e: u64, c: &mut Counters) -> bool {
        let key = (e, self.generation[e as usize]);
        if self.cache.get(&key).is_some() {
            return true;
        }
        c.gets += 1;
        c.bytes_fetched += self.ext;
        self.cache.put(key, ());
        false
    }

    /// Brings remote extent `e` back with data already fetched.
    fn rehydrate(&mut self, e: u64, now: u64, p: &VolumeParams, c: &mut Counters) {
        let i = e as usize;
        self.drop_object(e, now, p, c);
        self.states[i] = ExtentState::Local;
        self.allocated[i] = true;
        self.local_bytes += self.ext;
        self.earliest_local_use = self.earliest_local_use.min(now);
        c.rehydrations += 1;
        if now.saturating_sub(self.tiered_at[i]) <= p.thrash_window_ms {
            c.thrash += 1;
        }
    }

    pub fn apply(&mut self, ev: &Event, class: &ClassConfig, p: &VolumeParams, c: &mut Counters) {
        if ev.len == 0 {
            return;
        }
        let now = ev.t_ms;
        let end = ev.offset.saturating_add(ev.len);
        self.grow_to(end.div_ceil(self.ext));
        match ev.op {
            Op::Read => self.read(ev.offset, ev.len, now, class, p, c),
            Op::Write => {
                for (e, n) in self.pieces(ev.offset, ev.len) {
                    let i = e as usize;
                    match self.states[i] {
                        ExtentState::Remote if n == self.ext => {
                            // A full overwrite needs no fetch; the object becomes garbage.
                            self.drop_object(e, now, p, c);
                            self.states[i] = ExtentState::Local;
                        }
                        ExtentState::Remote => {
                            self.fetch_whole(e, c);
                            self.rehydrate(e, now, p, c);
                        }
                        ExtentState::Zero => self.states[i] = ExtentState::Local,
                        ExtentState::Local => {}
                    }
                    self.make_allocated_local(e, now);
                    self.touch(e, AccessKind::Write, n, false, now, p.half_life_ms);
                }
            }
            Op::Trim => {
                for (e, n) in self.pieces(ev.offset, ev.len) {
                    let i = e as usize;
                    let whole = n == self.ext;
                    match self.states[i] {
                        ExtentState::Remote if whole => {
                            self.drop_object(e, now, p, c);
                            self.states[i] = ExtentState::Zero;
                        }
                        ExtentState::Remote => {
                            self.fetch_whole(e, c);
                            self.rehydrate(e, now, p, c);
                        }
                        ExtentState::Local if whole && self.allocated[i] => {
                            self.allocated[i] = false;
                            self.local_bytes -= self.ext;
                        }
                        _ => {}
                    }
                    self.touch(e, AccessKind::Write, n, false, now, p.half_life_ms);
                }
            }
        }
    }

    fn read(
        &mut self,
        offset: u64,
        len: u64,
        now: u64,
        class: &ClassConfig,
        p: &VolumeParams,
        c: &mut Counters,
    ) {
        let sequential = self.reads.observe(offset, len);
        let count = self.states.len() as u64;
        for (e, n) in self.pieces(offset, len) {
            let i = e as usize;
            if self.states[i] == ExtentState::Remote {
                c.cold_reads += 1;
                let back = brings_back(class, sequential);
                let cached = self.cache.contains(&(e, self.generation[i]));
                if access::fetch_whole(back, sequential, cached, n, self.ext) {
                    if self.fetch_whole(e, c) {
                        c.cold_cache_hits += 1;
                    } else {
                        c.cold_wait_ms += p.latency.get(self.ext);
                    }
                } else {
                    let within = offset.max(e << self.shift) - (e << self.shift);
                    let first = within / FRAME;
                    let last = (within + n).div_ceil(FRAME);
                    let bytes = (last - first) * FRAME;
                    c.gets += 1;
                    c.bytes_fetched += bytes;
                    c.cold_wait_ms += p.latency.get(bytes);
                }
                if sequential {
                    for r in access::readahead(e, p.readahead_extents, count) {
                        if self.states[r as usize] == ExtentState::Remote {
                            self.fetch_whole(r, c);
                        }
                    }
                }
                if back {
                    self.rehydrate(e, now, p, c);
                }
            }
            self.touch(e, AccessKind::Read, n, sequential, now, p.half_life_ms);
        }
    }

    /// One policy pass at `now`, as the daemon's: the same selection, then
    /// every chosen extent uploaded.
    pub fn pass(&mut self, now: u64, class: &ClassConfig, p: &VolumeParams, c: &mut Counters) {
        let cooling = match class.tiering_policy {
            crate::config::TieringPolicy::All => 0,
            _ => class.cooling().as_millis() as u64,
        };
        let tiers = matches!(
            class.tiering_policy,
            crate::config::TieringPolicy::Auto | crate::config::TieringPolicy::All
        );
        if !tiers
            || self.earliest_local_use == u64::MAX
            || now.saturating_sub(cooling) < self.earliest_local_use
        {
            return;
        }
        c.passes += 1;
        let heats: Vec<Option<ExtentHeat>> = self
            .heat
            .iter()
            .enumerate()
            .map(|(e, r)| {
                r.as_ref()
                    .map(|r| ExtentHeat::from_record(e as u64, r, now, p.half_life_ms))
            })
            .collect();
        let views: Vec<ExtentView> = (0..self.states.len())
            .map(|i| ExtentView {
                extent: i as u64,
                state: self.states[i],
                allocated: self.allocated[i],
                heat: heats[i].as_ref(),
            })
            .collect();
        let provisioned = (self.states.len() as u64 * self.ext).max(1);
        let used_pct = (self.local_bytes * 100 / provisioned).min(100) as u8;
        let Ok(chosen) = policy::select(class, &views, now, 0, used_pct) else {
            return;
        };
        for e in chosen {
            let i = e as usize;
            self.states[i] = ExtentState::Remote;
            self.allocated[i] = false;
            self.local_bytes -= self.ext;
            self.remote_bytes += self.ext;
            self.tiered_at[i] = now;
            self.generation[i] = self.next_generation;
            self.next_generation += 1;
            c.puts += 1;
            c.extents_tiered += 1;
            c.bytes_uploaded += self.ext;
        }
        self.earliest_local_use = (0..self.states.len())
            .filter(|&i| self.states[i] == ExtentState::Local && self.allocated[i])
            .map(|i| {
                self.heat[i]
                    .as_ref()
                    .map(|h| h.last_access_ms())
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(u64::MAX);
    }

    /// The extents whose only copy is remote now.
    pub fn tiered_extents(&self) -> Vec<u64> {
        (0..self.states.len() as u64)
            .filter(|&e| self.states[e as usize] == ExtentState::Remote)
            .collect()
    }
}
