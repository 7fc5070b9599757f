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

use policy::cooling::heat_at_use;
use policy::overlay;
use policy::select::{may_tier, Cooling};
use policy::trace::{Event, Op};
use policy::{
    plan_cold_read, ClassConfig, ColdRead, Economics, ExtentState, ExtentView, Fetch, Fullness,
    Limits, Neighbours, PartialWrite, ReadTracker, Readahead, Streams, Tuner,
};

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
    /// Read requests, and those that touched a remote extent.
    pub read_requests: u64,
    pub cold_read_requests: u64,
    /// Estimated time cold reads waited on the object store, summed.
    pub cold_wait_ms: f64,
    /// Objects made garbage, by age at deletion.
    pub deleted: Deletions,
    pub passes: u64,
    /// Overlays merged into a new object (with `write_overlay`; each one
    /// PUT, and a GET unless the object was cached).
    pub merges: u64,
    /// Snapshots taken (with a snapshot schedule).
    pub snapshots: u64,
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
/// The daemon's block: the unit of an overlay.
const BLOCK: u64 = 4096;
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
    /// Uncompressed bytes per checksummed frame (`tiering.frame_size`): a
    /// ranged GET fetches whole frames.
    pub frame_size: u64,
    pub half_life_ms: f64,
    /// How far sequential cold reads read ahead (`tiering.readahead_*`).
    pub readahead: Readahead,
    pub cache_entries: usize,
    pub thrash_window_ms: u64,
    pub gc_grace_ms: u64,
    pub latency: Latency,
    /// `[heat] scans_warm` (unset: per class, see `ClassConfig::scans_warm`).
    pub scans_warm: Option<bool>,
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
    /// The blocks each overlay extent holds locally (with `write_overlay`).
    overlay: std::collections::HashMap<u64, Vec<u64>>,
    cache: lru::LruCache<(u64, u64), ()>,
    reads: ReadTracker,
    streams: Streams,
    /// No local allocated extent was last used before this (a pass before
    /// `earliest + cooling` has nothing to do).
    earliest_local_use: u64,
    /// What snapshots alone hold, with a snapshot schedule.
    snaps: Option<crate::snapshots::SnapshotData>,
    /// The cooling period's state, as the daemon keeps one per volume.
    tuner: Tuner,
    /// What one extent costs where (for `cooling_period = "auto"`).
    econ: Option<Economics>,
    pub local_bytes: u64,
    pub remote_bytes: u64,
}

impl SimVolume {
    pub fn new(p: &VolumeParams, econ: Option<Economics>) -> Self {
        Self {
            shift: p.extent_size.trailing_zeros(),
            ext: p.extent_size,
            states: Vec::new(),
            allocated: Vec::new(),
            heat: Vec::new(),
            tiered_at: Vec::new(),
            generation: Vec::new(),
            next_generation: 1,
            overlay: std::collections::HashMap::new(),
            cache: lru::LruCache::new(
                NonZeroUsize::new(p.cache_entries).unwrap_or(NonZeroUsize::MIN),
            ),
            reads: ReadTracker::new(),
            streams: Streams::new(),
            earliest_local_use: u64::MAX,
            snaps: None,
            tuner: Tuner::new(0),
            econ,
            local_bytes: 0,
            remote_bytes: 0,
        }
    }

    /// Tracks what snapshots hold from now on (before any event).
    pub fn enable_snapshots(&mut self) {
        self.snaps = Some(crate::snapshots::SnapshotData::new(self.ext));
    }

    /// Runs `f` on the snapshot data, carrying its byte changes into the
    /// volume's totals.
    fn with_snaps(
        &mut self,
        f: impl FnOnce(&mut crate::snapshots::SnapshotData, &[Option<HeatRecord>]),
    ) {
        let Some(s) = self.snaps.as_mut() else {
            return;
        };
        let (l, r) = (s.local_bytes, s.remote_bytes);
        f(s, &self.heat);
        self.local_bytes = self.local_bytes + s.local_bytes - l;
        self.remote_bytes = self.remote_bytes + s.remote_bytes - r;
    }

    /// Takes a scheduled snapshot at `now`, keeping the newest `keep`.
    pub fn snapshot(&mut self, now: u64, keep: u32, p: &VolumeParams, c: &mut Counters) {
        c.snapshots += 1;
        let mut deleted = Vec::new();
        self.with_snaps(|s, _| deleted = s.snapshot(now, keep, p.gc_grace_ms));
        for (bytes, age) in deleted {
            c.deleted.add(bytes, age);
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
        self.drop_overlay(e);
        self.remote_bytes -= self.ext;
        let age = (now + p.gc_grace_ms).saturating_sub(self.tiered_at[i]);
        c.deleted.add(self.ext, age);
        self.cache.pop(&(e, self.generation[i]));
    }

    /// Forgets the overlay of extent `e`, if it has one, freeing its blocks.
    fn drop_overlay(&mut self, e: u64) {
        if let Some(bits) = self.overlay.remove(&e) {
            let held: u64 = bits.iter().map(|w| w.count_ones() as u64).sum();
            self.local_bytes -= held * BLOCK;
        }
    }

    /// Blocks per extent (the overlay's unit).
    fn blocks(&self) -> u32 {
        self.ext.div_ceil(BLOCK) as u32
    }

    /// A write of bytes `span` (within the extent) into tiered extent `e`, kept in its
    /// overlay as the daemon keeps it: partly covered edge blocks the
    /// overlay lacks are first filled from the object (the cached copy, or
    /// a ranged GET of their frames), then the blocks are held locally; an
    /// overlay holding every block is the extent, local, its object garbage.
    fn write_overlay(
        &mut self,
        e: u64,
        span: std::ops::Range<u64>,
        now: u64,
        class: &ClassConfig,
        p: &VolumeParams,
        c: &mut Counters,
    ) {
        let i = e as usize;
        let (within, n) = (span.start, span.end - span.start);
        let blocks = self.blocks();
        let words = blocks.div_ceil(64) as usize;
        let held = |bits: Option<&Vec<u64>>, b: u32| {
            bits.is_some_and(|w| w[b as usize / 64] & (1 << (b % 64)) != 0)
        };
        for b in overlay::edge_blocks(within, n, BLOCK, self.ext) {
            if held(self.overlay.get(&e), b) {
                continue;
            }
            if self.cache.get(&(e, self.generation[i])).is_some() {
                continue;
            }
            if let Fetch::Frames { first, last } =
                overlay::edge_fetch(b, BLOCK, p.frame_size, self.ext)
            {
                let bytes = ((last - first) * p.frame_size).min(self.ext);
                c.gets += 1;
                c.bytes_fetched += bytes;
                c.cold_wait_ms += p.latency.get(bytes);
                self.tuner.on_fetch(bytes);
            }
        }
        let bits = self.overlay.entry(e).or_insert_with(|| vec![0; words]);
        let (first, last) = (within / BLOCK, (within + n).div_ceil(BLOCK));
        let mut added = 0;
        for b in first..last {
            let (w, m) = ((b / 64) as usize, 1u64 << (b % 64));
            if bits[w] & m == 0 {
                bits[w] |= m;
                added += 1;
            }
        }
        let count: u32 = bits.iter().map(|w| w.count_ones()).sum();
        self.local_bytes += added * BLOCK;
        self.states[i] = ExtentState::Overlay;
        self.earliest_local_use = self.earliest_local_use.min(now);
        if overlay::after_write(count, blocks) == ExtentState::Local {
            self.tuner.on_returned(e, now, &Limits::of(class));
            self.drop_object(e, now, p, c);
            self.states[i] = ExtentState::Local;
            self.make_allocated_local(e, now);
        }
    }

    /// The share of extent `e`'s blocks its overlay holds (0 for none).
    fn overlay_share(&self, e: u64) -> f64 {
        self.overlay.get(&e).map_or(0.0, |bits| {
            bits.iter().map(|w| w.count_ones()).sum::<u32>() as f64 / self.blocks() as f64
        })
    }

    /// Whether the overlay of extent `e` holds every block of `within..within + n`.
    fn overlay_covers(&self, e: u64, within: u64, n: u64) -> bool {
        let Some(bits) = self.overlay.get(&e) else {
            return false;
        };
        (within / BLOCK..(within + n).div_ceil(BLOCK))
            .all(|b| bits[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }

    /// A whole fetch of remote extent `e` through the cache; returns whether it was a hit.
    fn fetch_whole(&mut self, e: u64, c: &mut Counters) -> bool {
        let key = (e, self.generation[e as usize]);
        if self.cache.get(&key).is_some() {
            return true;
        }
        c.gets += 1;
        c.bytes_fetched += self.ext;
        self.tuner.on_fetch(self.ext);
        self.cache.put(key, ());
        false
    }

    /// Brings remote extent `e` back with data already fetched.
    fn rehydrate(
        &mut self,
        e: u64,
        now: u64,
        class: &ClassConfig,
        p: &VolumeParams,
        c: &mut Counters,
    ) {
        let i = e as usize;
        self.tuner.on_returned(e, now, &Limits::of(class));
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
        if matches!(ev.op, Op::Write | Op::Trim) {
            let shift = self.shift;
            self.with_snaps(|s, _| {
                for (e, start, n) in policy::extent::pieces(shift, ev.offset, ev.len) {
                    let within = start - (e << shift);
                    s.write(
                        e,
                        (within / 4096) as usize,
                        (within + n).div_ceil(4096) as usize,
                    );
                }
            });
        }
        match ev.op {
            Op::Read => self.read(ev.offset, ev.len, now, class, p, c),
            Op::Write => {
                for (e, start, n) in policy::extent::pieces(self.shift, ev.offset, ev.len) {
                    let i = e as usize;
                    let state = self.states[i];
                    match state {
                        ExtentState::Remote | ExtentState::Overlay if n == self.ext => {
                            // A full overwrite needs no fetch; the object becomes garbage.
                            self.tuner.on_returned(e, now, &Limits::of(class));
                            self.drop_object(e, now, p, c);
                            self.states[i] = ExtentState::Local;
                        }
                        ExtentState::Remote | ExtentState::Overlay
                            if overlay::partial_write(Some(class), state)
                                == PartialWrite::Overlay =>
                        {
                            let within = start - (e << self.shift);
                            self.write_overlay(e, within..within + n, now, class, p, c);
                            self.touch(e, AccessKind::Write, n, false, now, p.half_life_ms);
                            continue;
                        }
                        ExtentState::Remote | ExtentState::Overlay => {
                            self.fetch_whole(e, c);
                            self.rehydrate(e, now, class, p, c);
                        }
                        ExtentState::Zero => self.states[i] = ExtentState::Local,
                        ExtentState::Local => {}
                    }
                    self.make_allocated_local(e, now);
                    self.touch(e, AccessKind::Write, n, false, now, p.half_life_ms);
                }
            }
            Op::Trim => {
                for (e, start, n) in policy::extent::pieces(self.shift, ev.offset, ev.len) {
                    let i = e as usize;
                    let whole = n == self.ext;
                    let state = self.states[i];
                    match state {
                        ExtentState::Remote | ExtentState::Overlay if whole => {
                            self.tuner.forget(e);
                            self.drop_object(e, now, p, c);
                            self.states[i] = ExtentState::Zero;
                        }
                        // Zeros written into the overlay, as data would be.
                        ExtentState::Remote | ExtentState::Overlay
                            if overlay::partial_write(Some(class), state)
                                == PartialWrite::Overlay =>
                        {
                            let within = start - (e << self.shift);
                            self.write_overlay(e, within..within + n, now, class, p, c);
                        }
                        ExtentState::Remote | ExtentState::Overlay => {
                            self.fetch_whole(e, c);
                            self.rehydrate(e, now, class, p, c);
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
        let pattern = self.reads.observe(offset, len);
        let sequential = pattern.sequential;
        let stream_start = (offset + len).saturating_sub(pattern.streamed);
        let count = self.states.len() as u64;
        let limits = Limits::of(class);
        let mut cold = false;
        for (e, start, n) in policy::extent::pieces(self.shift, offset, len) {
            let i = e as usize;
            let within = start - (e << self.shift);
            let tiered = match self.states[i] {
                ExtentState::Remote => true,
                // An overlay read only from its own blocks is a local read.
                ExtentState::Overlay => !self.overlay_covers(e, within, n),
                _ => false,
            };
            if tiered {
                cold = true;
                c.cold_reads += 1;
                // As the daemon does, on its cold path: the stream is noted,
                // and read-ahead stops where another stream began.
                let others = if sequential {
                    self.streams.note(stream_start, offset + len, now)
                } else {
                    Neighbours::ALONE
                };
                let plan = plan_cold_read(
                    Some(class),
                    &ColdRead {
                        extent: e,
                        within,
                        len: n,
                        extent_len: self.ext,
                        extent_count: count,
                        pattern,
                        cached: self.cache.contains(&(e, self.generation[i])),
                        ahead_limit: others.next_start >> self.shift,
                        streams: others.live,
                    },
                    p.frame_size,
                    p.readahead,
                );
                match plan.fetch {
                    Fetch::Whole => {
                        if self.fetch_whole(e, c) {
                            c.cold_cache_hits += 1;
                        } else {
                            c.cold_wait_ms += p.latency.get(self.ext);
                        }
                    }
                    Fetch::Frames { first, last } => {
                        let bytes = (last - first) * p.frame_size;
                        c.gets += 1;
                        c.bytes_fetched += bytes;
                        c.cold_wait_ms += p.latency.get(bytes);
                        self.tuner.on_fetch(bytes);
                    }
                }
                for r in plan.readahead {
                    if self.states[r as usize].is_tiered() {
                        self.fetch_whole(r, c);
                    }
                }
                if plan.bring_back && self.tuner.allow_bring_back(self.ext, now, &limits) {
                    self.rehydrate(e, now, class, p, c);
                }
            }
            self.touch(e, AccessKind::Read, n, sequential, now, p.half_life_ms);
        }
        self.tuner.on_read(now, cold);
        c.read_requests += 1;
        c.cold_read_requests += u64::from(cold);
    }

    /// The volume's cooling period now, in ms.
    pub fn cooling_ms(&self, class: &ClassConfig) -> u64 {
        self.tuner
            .cooling_ms(&Limits::of(class), self.econ.as_ref())
    }

    /// Extents that came back within the class's thrash window (the tuner's count).
    pub fn tuner_thrash(&self) -> u64 {
        self.tuner.thrash
    }

    /// One policy pass at `now`, as the daemon's: the same selection, then
    /// every chosen extent uploaded.
    pub fn pass(
        &mut self,
        now: u64,
        class: &ClassConfig,
        fullness: Fullness,
        p: &VolumeParams,
        c: &mut Counters,
    ) {
        let limits = Limits::of(class);
        let scans_warm = class.scans_warm(p.scans_warm);
        let fixed = Cooling::of_class(class, scans_warm);
        let hl = p.half_life_ms;
        let heat_at = |h: &ExtentHeat, used: u64| {
            let t = if scans_warm {
                h.temperature
            } else {
                h.warm_temperature
            };
            heat_at_use(t, used, now, hl)
        };
        // What the tuner sees: every extent's last use and heat then, as the
        // daemon's pass reads them from the heat.
        let heats: Vec<Option<ExtentHeat>> = if limits.adaptive || self.snaps.is_some() {
            self.heat
                .iter()
                .enumerate()
                .map(|(e, r)| {
                    r.as_ref()
                        .map(|r| ExtentHeat::from_record(e as u64, r, now, hl))
                })
                .collect()
        } else {
            Vec::new()
        };
        let uses = heats.iter().flatten().map(|h| {
            let used = fixed.last_use(Some(h), 0);
            (h.extent, used, heat_at(h, used))
        });
        let th = if limits.adaptive {
            self.tuner.on_pass(now, uses, &limits, self.econ.as_ref())
        } else {
            self.tuner
                .on_pass(now, std::iter::empty(), &limits, self.econ.as_ref())
        };
        let tuner = &self.tuner;
        let personal = |e: u64| {
            let band = match heats.get(e as usize).and_then(Option::as_ref) {
                Some(h) => th.for_heat(heat_at(h, fixed.last_use(Some(h), 0))),
                None => th.volume_ms,
            };
            tuner.cooling_of(e, band, &limits)
        };
        let all = class.tiering_policy == policy::TieringPolicy::All;
        let cooling = Cooling {
            base_ms: if all { 0 } else { th.volume_ms },
            floor_ms: if all { 0 } else { th.floor_ms() },
            scans_warm,
            merge_ms: overlay::merge_ms(self.econ.as_ref()),
            per_extent: Some(&personal),
        };
        let mut uploaded = Vec::new();
        let half_life_ms = p.half_life_ms;
        if let Some(s) = self.snaps.as_mut() {
            let (l, r) = (s.local_bytes, s.remote_bytes);
            uploaded = s.pass(now, class, &cooling, &self.heat, half_life_ms);
            self.local_bytes = self.local_bytes + s.local_bytes - l;
            self.remote_bytes = self.remote_bytes + s.remote_bytes - r;
        }
        for bytes in uploaded {
            c.puts += 1;
            c.bytes_uploaded += bytes;
            c.extents_tiered += 1;
        }
        let earliest = (self.earliest_local_use != u64::MAX).then_some(self.earliest_local_use);
        if !may_tier(class, &cooling, earliest, now) {
            return;
        }
        c.passes += 1;
        let computed: Vec<Option<ExtentHeat>>;
        let view_heats = if heats.is_empty() {
            computed = self
                .heat
                .iter()
                .enumerate()
                .map(|(e, r)| {
                    r.as_ref()
                        .map(|r| ExtentHeat::from_record(e as u64, r, now, hl))
                })
                .collect();
            &computed
        } else {
            &heats
        };
        let views: Vec<ExtentView> = (0..self.states.len())
            .map(|i| ExtentView {
                extent: i as u64,
                state: self.states[i],
                allocated: self.allocated[i],
                heat: view_heats[i].as_ref(),
                overlay_share: self.overlay_share(i as u64),
            })
            .collect();
        let Ok(chosen) = policy::select(class, &cooling, &views, now, 0, fullness) else {
            return;
        };
        for e in chosen {
            let i = e as usize;
            if self.states[i] == ExtentState::Overlay {
                self.merge(e, now, &limits, p, c);
                continue;
            }
            self.states[i] = ExtentState::Remote;
            self.allocated[i] = false;
            self.local_bytes -= self.ext;
            self.remote_bytes += self.ext;
            self.tiered_at[i] = now;
            self.generation[i] = self.next_generation;
            self.next_generation += 1;
            self.tuner.on_tiered(e, now, &limits);
            c.puts += 1;
            c.extents_tiered += 1;
            c.bytes_uploaded += self.ext;
        }
        self.earliest_local_use = (0..self.states.len())
            .filter(|&i| {
                (self.states[i] == ExtentState::Local && self.allocated[i])
                    || self.states[i] == ExtentState::Overlay
            })
            .map(|i| fixed.last_use(view_heats[i].as_ref(), 0))
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Merges the overlay of extent `e` into a new object, as the daemon's
    /// pass does: the old object (cached, or a GET) with the overlay's
    /// blocks over it goes up as a new generation; the old object and the
    /// overlay's local blocks are freed.
    fn merge(&mut self, e: u64, now: u64, limits: &Limits, p: &VolumeParams, c: &mut Counters) {
        let i = e as usize;
        self.fetch_whole(e, c);
        self.drop_object(e, now, p, c);
        self.remote_bytes += self.ext;
        self.tiered_at[i] = now;
        self.generation[i] = self.next_generation;
        self.next_generation += 1;
        self.states[i] = ExtentState::Remote;
        self.tuner.on_tiered(e, now, limits);
        c.puts += 1;
        c.merges += 1;
        c.bytes_uploaded += self.ext;
    }

    /// Bytes of every extent the volume has grown to, as a capacity.
    pub fn provisioned_bytes(&self) -> u64 {
        self.states.len() as u64 * self.ext
    }

    /// Whether the fetch cache holds the current object of tiered extent `e`.
    pub fn cached(&self, e: u64) -> bool {
        let i = e as usize;
        i < self.states.len()
            && self.states[i].is_tiered()
            && self.cache.contains(&(e, self.generation[i]))
    }

    /// The extents that are overlays now (remote, with blocks held locally).
    pub fn overlay_extents(&self) -> Vec<u64> {
        (0..self.states.len() as u64)
            .filter(|&e| self.states[e as usize] == ExtentState::Overlay)
            .collect()
    }

    /// The extents whose only copy is remote now.
    pub fn tiered_extents(&self) -> Vec<u64> {
        (0..self.states.len() as u64)
            .filter(|&e| self.states[e as usize] == ExtentState::Remote)
            .collect()
    }
}
