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
use policy::select::{may_tier, Cooling};
use policy::trace::{Event, Op};
use policy::{
    plan_cold_read, ClassConfig, ColdRead, Economics, ExtentState, ExtentView, Fetch, Fullness,
    Limits, Neighbours, ReadTracker, Readahead, Streams, Tuner,
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

    /// The extents under `offset..offset+len`, and how many bytes of each,
    /// split exactly as the daemon splits a request.
    fn pieces(&self, offset: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
        policy::extent::pieces(self.shift, offset, len).map(|(e, _, n)| (e, n))
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
                for (e, n) in self.pieces(ev.offset, ev.len) {
                    let i = e as usize;
                    match self.states[i] {
                        ExtentState::Remote if n == self.ext => {
                            // A full overwrite needs no fetch; the object becomes garbage.
                            self.tuner.on_returned(e, now, &Limits::of(class));
                            self.drop_object(e, now, p, c);
                            self.states[i] = ExtentState::Local;
                        }
                        ExtentState::Remote => {
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
                for (e, n) in self.pieces(ev.offset, ev.len) {
                    let i = e as usize;
                    let whole = n == self.ext;
                    match self.states[i] {
                        ExtentState::Remote if whole => {
                            self.tuner.forget(e);
                            self.drop_object(e, now, p, c);
                            self.states[i] = ExtentState::Zero;
                        }
                        ExtentState::Remote => {
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
        for (e, n) in self.pieces(offset, len) {
            let i = e as usize;
            if self.states[i] == ExtentState::Remote {
                cold = true;
                c.cold_reads += 1;
                let start = e << self.shift;
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
                        within: offset.max(start) - start,
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
                    if self.states[r as usize] == ExtentState::Remote {
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
            })
            .collect();
        let Ok(chosen) = policy::select(class, &cooling, &views, now, 0, fullness) else {
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
            self.tuner.on_tiered(e, now, &limits);
            c.puts += 1;
            c.extents_tiered += 1;
            c.bytes_uploaded += self.ext;
        }
        self.earliest_local_use = (0..self.states.len())
            .filter(|&i| self.states[i] == ExtentState::Local && self.allocated[i])
            .map(|i| fixed.last_use(view_heats[i].as_ref(), 0))
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Bytes of every extent the volume has grown to, as a capacity.
    pub fn provisioned_bytes(&self) -> u64 {
        self.states.len() as u64 * self.ext
    }

    /// Whether the fetch cache holds the current object of remote extent `e`.
    pub fn cached(&self, e: u64) -> bool {
        let i = e as usize;
        i < self.states.len()
            && self.states[i] == ExtentState::Remote
            && self.cache.contains(&(e, self.generation[i]))
    }

    /// The extents whose only copy is remote now.
    pub fn tiered_extents(&self) -> Vec<u64> {
        (0..self.states.len() as u64)
            .filter(|&e| self.states[e as usize] == ExtentState::Remote)
            .collect()
    }
}
