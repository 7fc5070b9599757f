//! `cooling_period = "auto"`: how long an extent of one volume must idle
//! before it is tiered, derived from the class's prices and the volume's
//! observed re-access gaps, with a personal back-off for extents that came
//! back too soon, a daily rehydration budget and a cold-read (latency) guard.
//!
//! This module owns [`Economics`] (what idling locally and a round trip
//! through the object store cost one extent), [`break_even`], and [`Tuner`],
//! the per-volume state that the daemon and the simulator feed with the same
//! events at the same points: a pass ([`Tuner::on_pass`]), a tier
//! ([`Tuner::on_tiered`]), a return ([`Tuner::on_returned`]), a read
//! ([`Tuner::on_read`]) and a request to bring an extent back
//! ([`Tuner::allow_bring_back`]). Invariant: the tuner's state is a function
//! of those calls and their arguments alone (no clock, no randomness), so two
//! tuners fed the same calls decide alike.
//!
//! # The choice of algorithm
//! Deciding when to tier an idle extent is the ski-rental problem: every
//! millisecond an extent stays local costs rent (local minus remote storage);
//! tiering "buys" (a PUT, and later a GET and retrieval when it comes back,
//! plus remote storage up to the tier's minimum duration). Without knowing
//! the future, tiering once the rent paid equals the purchase price (the
//! break-even idle time) is never worse than twice the optimum, and no
//! deterministic rule does better in the worst case. That is where a volume
//! starts.
//!
//! Real volumes are not adversaries: the same extents come back after
//! similar gaps. So the tuner keeps a decayed histogram of the re-access gaps
//! it has seen (how long an extent idled before it was touched again), and
//! picks the threshold that would have cost least over that distribution
//! (the "learned" ski rental of Karlin, Manasse, McGeoch and Owicki's
//! nonuniform problems, with the empirical distribution for the prior).
//! Among thresholds the gaps cannot tell apart it takes the shortest, since
//! extents that never come back leave no gap and are cheapest tiered
//! soonest; an extent that then comes back too soon gets its own longer
//! period (the thrash guard). It trusts the histogram only once it holds [`MIN_EVIDENCE`] gaps, and old
//! gaps fade with a half-life of [`HISTORY_HALF_LIFE_MS`], so a working set
//! that moves is followed. Gaps are seen at passes (an extent whose last use
//! moved since the previous pass idled from the old time to the new one), so
//! the daemon and the simulator see the same gaps without a lookup per I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::class::{ClassConfig, RetrievalPolicy};
use crate::cost::{Price, Pricing};

const DAY_MS: f64 = 86_400_000.0;
const MONTH_MS: f64 = 30.0 * DAY_MS;
const HOUR_MS: u64 = 3_600_000;
/// Decayed gaps the histogram must hold before it overrides the break-even.
pub const MIN_EVIDENCE: f64 = 8.0;
/// Old gaps count half after this long.
pub const HISTORY_HALF_LIFE_MS: f64 = 14.0 * DAY_MS;
/// Histogram buckets per doubling of the gap.
const STEPS_PER_DOUBLING: f64 = 4.0;
/// The smallest gap bucket starts at one second.
const FIRST_GAP_MS: f64 = 1_000.0;
/// Gap buckets: 1 s doubling 4 steps at a time up to 2^35 s (beyond any cooling).
const BUCKETS: usize = 35 * 4;
/// A personal back-off doubles at most this many times.
const MAX_BACKOFF: u8 = 16;
/// What a ranged GET of a cold read typically fetches: one frame.
const RANGED_GET_BYTES: u64 = 64 << 10;
/// Reads in the last hour before the latency guard judges a fraction.
const MIN_READS_FOR_GUARD: u64 = 20;

/// What one extent costs idling locally and on a round trip through the
/// object store, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Economics {
    /// Local storage, per ms.
    pub local_per_ms: f64,
    /// Remote storage, per ms.
    pub remote_per_ms: f64,
    /// What tiering costs in requests over one gap that outlasts the
    /// threshold: one PUT, and one later GET of the whole extent with its
    /// retrieval fee, when the access that ends the gap brings it back.
    /// Under a class that never brings extents back and keeps write
    /// overlays (see [`Economics::of_class`]), one ranged GET.
    pub round_trip: f64,
    /// The PUT alone.
    pub put: f64,
    /// Merging an overlay into a new object: a GET of the whole extent with
    /// its retrieval fee, and a PUT.
    pub merge: f64,
    /// The tier's minimum storage duration.
    pub min_storage_ms: f64,
}

impl Economics {
    /// The economics of an `extent_bytes` extent with `local_gb_month` local
    /// storage and `price` remote.
    pub fn new(local_gb_month: f64, price: &Price, extent_bytes: u64) -> Self {
        let gb = extent_bytes as f64 / 1e9;
        Economics {
            local_per_ms: local_gb_month * gb / MONTH_MS,
            remote_per_ms: price.storage_gb_month * gb / MONTH_MS,
            round_trip: (price.put_per_1000 + price.get_per_1000) / 1000.0
                + price.retrieval_per_gb * gb,
            put: price.put_per_1000 / 1000.0,
            merge: (price.put_per_1000 + price.get_per_1000) / 1000.0 + price.retrieval_per_gb * gb,
            min_storage_ms: price.min_storage_days * DAY_MS,
        }
    }

    /// [`Economics::of`] for the extents of `class`. A class that never
    /// brings extents back (`retrieval_policy = "never"`) and keeps write
    /// overlays keeps a tiered extent tiered through every later access:
    /// reads are ranged GETs, writes land in the overlay. The access that
    /// ends a gap then costs one ranged GET (a frame's retrieval fee), and
    /// the PUT is paid once per tiering, shared by every gap the extent
    /// then spends remote, so a gap is not charged for it.
    pub fn of_class(
        pricing: &Pricing,
        tier: &str,
        extent_bytes: u64,
        class: &ClassConfig,
    ) -> Option<Self> {
        let mut e = Self::of(pricing, tier, extent_bytes)?;
        if class.write_overlay && class.retrieval_policy == RetrievalPolicy::Never {
            let p = pricing.tiers.get(tier)?;
            let frame_gb = (extent_bytes.min(RANGED_GET_BYTES)) as f64 / 1e9;
            e.round_trip = p.get_per_1000 / 1000.0 + p.retrieval_per_gb * frame_gb;
        }
        Some(e)
    }

    /// How long an overlay holding a whole extent's worth of blocks must
    /// idle before merging it has paid for itself: the merge over the local
    /// rent it ends (an overlay of a share `f` waits `1/f` times as long).
    pub fn merge_break_even(&self) -> Option<f64> {
        (self.local_per_ms > 0.0).then(|| self.merge / self.local_per_ms)
    }

    /// The economics of a class's extents from a pricing table, by price
    /// tier (see [`crate::cost::price_tier`]); `None` for an unknown tier.
    pub fn of(pricing: &Pricing, tier: &str, extent_bytes: u64) -> Option<Self> {
        pricing
            .tiers
            .get(tier)
            .map(|p| Economics::new(pricing.local_gb_month, p, extent_bytes))
    }

    /// What an extent that idles `gap_ms` costs when it is tiered once it has
    /// idled `threshold_ms` (and brought back at the end of the gap).
    pub fn gap_cost(&self, threshold_ms: f64, gap_ms: f64) -> f64 {
        if gap_ms <= threshold_ms {
            return self.local_per_ms * gap_ms;
        }
        let remote_ms = (gap_ms - threshold_ms).max(self.min_storage_ms);
        self.local_per_ms * threshold_ms + self.round_trip + self.remote_per_ms * remote_ms
    }

    /// What an extent idle for `age_ms` so far (and not back yet) has cost
    /// under a threshold: a lower bound of what its whole gap will cost.
    pub fn idle_cost(&self, threshold_ms: f64, age_ms: f64) -> f64 {
        if age_ms <= threshold_ms {
            return self.local_per_ms * age_ms;
        }
        self.local_per_ms * threshold_ms + self.put + self.remote_per_ms * (age_ms - threshold_ms)
    }
}

/// The idle time after which tiering an extent has paid for itself if it
/// then stays away at least as long again: the purchase (round trip, plus
/// remote storage up to the minimum duration) over the rent saved per ms.
/// `None` when local storage is no dearer than remote: tiering never pays.
pub fn break_even(e: &Economics) -> Option<f64> {
    let rent = e.local_per_ms - e.remote_per_ms;
    if rent <= 0.0 {
        return None;
    }
    // Past the minimum duration, remote storage is paid per ms like rent.
    let past_min = e.round_trip / rent;
    if past_min >= e.min_storage_ms {
        return Some(past_min);
    }
    // Back before the minimum: the whole minimum is billed.
    Some((e.round_trip + e.remote_per_ms * e.min_storage_ms) / e.local_per_ms)
}

/// The bounds and guards a class sets for its volumes' tuners, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub min_ms: u64,
    pub max_ms: u64,
    pub thrash_window_ms: u64,
    pub max_cold_read_fraction: Option<f64>,
    pub max_rehydrate_per_day: Option<u64>,
    /// At most this share of the extents a threshold tiers may come back
    /// within the thrash window (by the gaps seen).
    pub max_thrash_fraction: Option<f64>,
    /// The cooling period adapts (`cooling_period = "auto"`); when false the
    /// tuner keeps the fixed value and only the rehydration budget applies.
    pub adaptive: bool,
    /// The fixed cooling period (or the starting point without prices).
    pub fixed_ms: u64,
}

impl Limits {
    pub fn of(class: &ClassConfig) -> Self {
        Limits {
            min_ms: class.min_cooling().as_millis() as u64,
            max_ms: class.max_cooling().as_millis() as u64,
            thrash_window_ms: class.thrash_window().as_millis() as u64,
            max_cold_read_fraction: class.max_cold_read_fraction,
            max_rehydrate_per_day: class.rehydrate_budget(),
            max_thrash_fraction: class.thrash_fraction(),
            adaptive: class.cooling_is_auto(),
            fixed_ms: class.cooling().as_millis() as u64,
        }
    }
}

/// A decayed histogram of re-access gaps on log-spaced buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GapHistogram {
    weights: Vec<f64>,
    /// The time the weights are valid at.
    at_ms: u64,
}

fn bucket_of(gap_ms: u64) -> usize {
    let g = (gap_ms as f64).max(FIRST_GAP_MS);
    (((g / FIRST_GAP_MS).log2() * STEPS_PER_DOUBLING) as usize).min(BUCKETS - 1)
}

/// The lower bound of bucket `i`, in ms.
fn bucket_start(i: usize) -> f64 {
    FIRST_GAP_MS * (i as f64 / STEPS_PER_DOUBLING).exp2()
}

/// The gap that stands for bucket `i`: the geometric middle of its bounds.
fn bucket_mid(i: usize) -> f64 {
    FIRST_GAP_MS * ((i as f64 + 0.5) / STEPS_PER_DOUBLING).exp2()
}

impl GapHistogram {
    /// Fades every weight to `now_ms`.
    pub fn decay_to(&mut self, now_ms: u64) {
        if now_ms <= self.at_ms {
            return;
        }
        let f = (-((now_ms - self.at_ms) as f64) / HISTORY_HALF_LIFE_MS).exp2();
        for w in &mut self.weights {
            *w *= f;
        }
        self.at_ms = now_ms;
    }

    pub fn add(&mut self, gap_ms: u64, weight: f64) {
        if self.weights.is_empty() {
            self.weights = vec![0.0; BUCKETS];
        }
        self.weights[bucket_of(gap_ms)] += weight;
    }

    pub fn total(&self) -> f64 {
        self.weights.iter().sum()
    }

    /// The threshold in `[min_ms, max_ms]` that would have cost least over
    /// the gaps held and the idle periods still running (`idle`, by their
    /// age so far: extents that never come back show up only there). Among
    /// thresholds that cost the same (every gap held falls on one side of
    /// them all) the shortest, which tiers extents that never come back
    /// soonest. Candidates are the bucket bounds, the bounds and `fallback_ms`.
    ///
    /// With `thrash = Some((window_ms, fraction))`, only thresholds under
    /// which at most that fraction of the extents tiered would have come back
    /// within the window qualify (the longest if none does): latency bought
    /// with money, where the extents show that tiering them soon brings them
    /// straight back.
    pub fn best_threshold(
        &self,
        idle: &GapHistogram,
        e: &Economics,
        limits: (u64, u64),
        fallback_ms: u64,
        thrash: Option<(u64, f64)>,
    ) -> u64 {
        let (min_ms, max_ms) = limits;
        let mut candidates: Vec<u64> = (0..BUCKETS)
            .map(|i| bucket_start(i) as u64)
            .filter(|&t| t > min_ms && t < max_ms)
            .collect();
        candidates.extend([min_ms, max_ms, fallback_ms.clamp(min_ms, max_ms)]);
        let held = |h: &GapHistogram| -> Vec<(f64, f64)> {
            h.weights
                .iter()
                .enumerate()
                .filter(|(_, &w)| w > 0.0)
                .map(|(i, &w)| (w, bucket_mid(i)))
                .collect()
        };
        let (gaps, ages) = (held(self), held(idle));
        let mut best = (f64::INFINITY, max_ms);
        for t in candidates {
            let tf = t as f64;
            if let Some((window, fraction)) = thrash {
                let tiered: f64 = gaps
                    .iter()
                    .chain(&ages)
                    .filter(|&&(_, g)| g > tf)
                    .map(|&(w, _)| w)
                    .sum();
                let back: f64 = gaps
                    .iter()
                    .filter(|&&(_, g)| g > tf && g <= tf + window as f64)
                    .map(|&(w, _)| w)
                    .sum();
                if tiered > 0.0 && back > fraction * tiered && t < max_ms {
                    continue;
                }
            }
            let cost: f64 = gaps
                .iter()
                .map(|&(w, g)| w * e.gap_cost(tf, g))
                .sum::<f64>()
                + ages
                    .iter()
                    .map(|&(w, a)| w * e.idle_cost(tf, a))
                    .sum::<f64>();
            // Relative slack, so rounding cannot flip a tie.
            let better =
                cost < best.0 * (1.0 - 1e-9) || (cost <= best.0 * (1.0 + 1e-9) && t < best.1);
            if better {
                best = (cost, t);
            }
        }
        best.1
    }
}

/// Reads and cold reads in the current and the previous clock hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadMix {
    hour: u64,
    reads: u64,
    cold: u64,
    prev_reads: u64,
    prev_cold: u64,
}

impl ReadMix {
    fn roll(&mut self, now_ms: u64) {
        let h = now_ms / HOUR_MS;
        if h == self.hour {
            return;
        }
        if h == self.hour + 1 {
            self.prev_reads = self.reads;
            self.prev_cold = self.cold;
        } else {
            self.prev_reads = 0;
            self.prev_cold = 0;
        }
        self.hour = h;
        self.reads = 0;
        self.cold = 0;
    }

    pub fn add(&mut self, now_ms: u64, cold: bool) {
        self.roll(now_ms);
        self.reads += 1;
        self.cold += u64::from(cold);
    }

    /// Reads and cold reads over the last hour or so (this clock hour and the one before).
    pub fn recent(&mut self, now_ms: u64) -> (u64, u64) {
        self.roll(now_ms);
        (self.reads + self.prev_reads, self.cold + self.prev_cold)
    }
}

/// A token bucket of bytes that may be brought back, refilled at the daily rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Bytes left; starts full.
    left: Option<f64>,
    at_ms: u64,
    /// Bring-backs refused since the tuner started.
    pub refused: u64,
}

impl Budget {
    fn take(&mut self, per_day: u64, bytes: u64, now_ms: u64) -> bool {
        let cap = per_day as f64;
        let left = match self.left {
            None => cap,
            Some(l) => (l + cap * now_ms.saturating_sub(self.at_ms) as f64 / DAY_MS).min(cap),
        };
        self.at_ms = self.at_ms.max(now_ms);
        if left >= bytes as f64 {
            self.left = Some(left - bytes as f64);
            true
        } else {
            self.left = Some(left);
            self.refused += 1;
            false
        }
    }

    pub fn left(&self, per_day: u64) -> u64 {
        self.left.unwrap_or(per_day as f64) as u64
    }
}

/// Requests a volume made since its tuner started, for the savings report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub since_ms: u64,
    pub puts: u64,
    pub gets: u64,
    pub bytes_fetched: u64,
}

/// Extents with a personal back-off: each cools 2^k times the volume's period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Backoffs(BTreeMap<u64, u8>);

impl Backoffs {
    /// The cooling period of extent `e` when the volume's is `base_ms`.
    pub fn cooling_of(&self, e: u64, base_ms: u64, limits: &Limits) -> u64 {
        match self.0.get(&e) {
            Some(&k) if limits.adaptive => base_ms
                .saturating_mul(1u64 << k.min(MAX_BACKOFF))
                .min(limits.max_ms.max(base_ms)),
            _ => base_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Upper bounds of the heat bands: an extent's temperature at its last use
/// (about 1.44 times its accesses per half-life, plus the one just made).
pub const HEAT_BANDS: [f64; 4] = [1.5, 3.0, 6.0, 12.0];
const BANDS: usize = HEAT_BANDS.len() + 1;

/// The band of an extent whose temperature at its last use was `heat`.
pub fn band_of(heat: f64) -> usize {
    HEAT_BANDS
        .iter()
        .position(|&b| heat < b)
        .unwrap_or(HEAT_BANDS.len())
}

/// An extent's temperature at its last use, from its temperature `now_ms`
/// (decayed since) and the half-life: undoes the decay of the idle time.
pub fn heat_at_use(temperature_now: f64, last_use_ms: u64, now_ms: u64, half_life_ms: f64) -> f64 {
    if half_life_ms <= 0.0 || temperature_now <= 0.0 {
        return temperature_now.max(0.0);
    }
    let halvings = (now_ms.saturating_sub(last_use_ms) as f64 / half_life_ms).min(60.0);
    temperature_now * halvings.exp2()
}

/// The cooling periods one pass works with: the volume's (over every gap it
/// saw) and one per heat band (over the gaps of extents that were that hot
/// when they went idle), in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub volume_ms: u64,
    pub bands_ms: [u64; BANDS],
}

impl Thresholds {
    fn all(ms: u64) -> Self {
        Thresholds {
            volume_ms: ms,
            bands_ms: [ms; BANDS],
        }
    }

    /// The cooling period of an extent whose temperature at its last use was `heat`.
    pub fn for_heat(&self, heat: f64) -> u64 {
        self.bands_ms[band_of(heat)]
    }

    /// The shortest period any extent may get.
    pub fn floor_ms(&self) -> u64 {
        self.bands_ms
            .iter()
            .copied()
            .min()
            .unwrap_or(self.volume_ms)
            .min(self.volume_ms)
    }
}

/// One volume's cooling state. See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tuner {
    /// Every gap, and the gaps by the heat band the extent was in.
    gaps: GapHistogram,
    band_gaps: Vec<GapHistogram>,
    /// Each extent's last use and temperature then, as the previous pass
    /// saw them (0: unseen).
    #[serde(skip)]
    seen: Vec<(u64, f32)>,
    /// When each extent still remote was tiered.
    tiered_at: BTreeMap<u64, u64>,
    /// Personal back-offs.
    backoff: Backoffs,
    /// The latency guard's back-off, and when it last moved.
    latency_k: u8,
    latency_at_ms: u64,
    reads: ReadMix,
    budget: Budget,
    /// The cooling periods the last pass used (all 0 before the first).
    current: Thresholds,
    /// Extents that came back within the thrash window, since the start.
    pub thrash: u64,
    pub requests: Requests,
}

/// What [`Tuner::status`] reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunerStatus {
    /// `auto` or `fixed`.
    pub mode: &'static str,
    pub cooling_ms: u64,
    /// By heat band at the last use: below 1.5, 3, 6, 12 and above.
    pub band_cooling_ms: [u64; BANDS],
    pub break_even_ms: Option<u64>,
    /// Decayed re-access gaps the choice rests on.
    pub gaps_observed: f64,
    /// The latency guard's multiplier (1 when it is quiet).
    pub latency_factor: u64,
    pub cold_read_fraction: Option<f64>,
    pub extents_backed_off: usize,
    pub thrash: u64,
    pub rehydrate_budget_left: Option<u64>,
    pub rehydrations_refused: u64,
}

impl Tuner {
    pub fn new(now_ms: u64) -> Self {
        Tuner {
            requests: Requests {
                since_ms: now_ms,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The cooling period the volume works with now (before any pass: the
    /// fixed value, or the break-even).
    pub fn cooling_ms(&self, limits: &Limits, econ: Option<&Economics>) -> u64 {
        self.thresholds(limits, econ).volume_ms
    }

    /// The cooling periods the volume works with now (before any pass: the
    /// fixed value, or the break-even, for every band).
    pub fn thresholds(&self, limits: &Limits, econ: Option<&Economics>) -> Thresholds {
        if self.current.volume_ms > 0 {
            return self.current;
        }
        Thresholds::all(start_ms(limits, econ))
    }

    /// The cooling period of extent `e`: the volume's, doubled per back-off.
    pub fn cooling_of(&self, e: u64, base_ms: u64, limits: &Limits) -> u64 {
        self.backoff.cooling_of(e, base_ms, limits)
    }

    /// The personal back-offs now, for a pass to use without the tuner.
    pub fn backoffs(&self) -> Backoffs {
        self.backoff.clone()
    }

    /// A policy pass at `now_ms` over `uses`, every extent with heat: its
    /// last use and its temperature at that use. Takes in the gaps they show
    /// since the previous pass and the idle periods still running, then sets
    /// and returns the cooling periods.
    pub fn on_pass(
        &mut self,
        now_ms: u64,
        uses: impl IntoIterator<Item = (u64, u64, f64)>,
        limits: &Limits,
        econ: Option<&Economics>,
    ) -> Thresholds {
        if !limits.adaptive {
            self.current = Thresholds::all(limits.fixed_ms);
            return self.current;
        }
        if self.band_gaps.len() != BANDS {
            self.band_gaps = vec![GapHistogram::default(); BANDS];
        }
        self.gaps.decay_to(now_ms);
        for g in &mut self.band_gaps {
            g.decay_to(now_ms);
        }
        let mut idle = GapHistogram::default();
        let mut band_idle = vec![GapHistogram::default(); BANDS];
        for (e, u, heat) in uses {
            if now_ms > u && u > 0 {
                idle.add(now_ms - u, 1.0);
                band_idle[band_of(heat)].add(now_ms - u, 1.0);
            }
            let Ok(i) = usize::try_from(e) else { continue };
            if self.seen.len() <= i {
                self.seen.resize(i + 1, (0, 0.0));
            }
            let (s, h) = self.seen[i];
            if s > 0 && u > s {
                self.gaps.add(u - s, 1.0);
                self.band_gaps[band_of(h as f64)].add(u - s, 1.0);
            }
            self.seen[i] = (u, heat as f32);
        }
        let start = start_ms(limits, econ);
        let thrash = limits
            .max_thrash_fraction
            .map(|f| (limits.thrash_window_ms, f));
        let best = |h: &GapHistogram, idle: &GapHistogram, fallback: u64| match econ {
            Some(e) if h.total() + idle.total() >= MIN_EVIDENCE => {
                h.best_threshold(idle, e, (limits.min_ms, limits.max_ms), start, thrash)
            }
            _ => fallback,
        };
        let volume = best(&self.gaps, &idle, start);
        let mut t = Thresholds {
            volume_ms: volume,
            bands_ms: [volume; BANDS],
        };
        for (b, h) in self.band_gaps.iter().enumerate() {
            t.bands_ms[b] = best(h, &band_idle[b], volume);
        }
        if let Some(max_frac) = limits.max_cold_read_fraction {
            if now_ms.saturating_sub(self.latency_at_ms) >= HOUR_MS {
                let (reads, cold) = self.reads.recent(now_ms);
                if reads >= MIN_READS_FOR_GUARD {
                    let frac = cold as f64 / reads as f64;
                    if frac > max_frac && self.latency_k < MAX_BACKOFF {
                        self.latency_k += 1;
                        self.latency_at_ms = now_ms;
                    } else if frac < max_frac / 2.0 && self.latency_k > 0 {
                        self.latency_k -= 1;
                        self.latency_at_ms = now_ms;
                    }
                }
            }
        }
        let guard = |ms: u64| {
            ms.saturating_mul(1u64 << self.latency_k)
                .clamp(limits.min_ms, limits.max_ms.max(limits.min_ms))
        };
        t.volume_ms = guard(t.volume_ms);
        for b in &mut t.bands_ms {
            *b = guard(*b);
        }
        self.current = t;
        t
    }

    /// Extent `e` was tiered at `now_ms`.
    pub fn on_tiered(&mut self, e: u64, now_ms: u64, limits: &Limits) {
        if limits.adaptive {
            self.tiered_at.insert(e, now_ms);
        }
        self.requests.puts += 1;
    }

    /// Extent `e` became local again (brought back by a read or a partial
    /// write, or overwritten whole) at `now_ms`. Returns whether that was
    /// within the thrash window of its tiering: its personal cooling then
    /// doubles; a return after the window halves it again.
    pub fn on_returned(&mut self, e: u64, now_ms: u64, limits: &Limits) -> bool {
        let Some(t) = self.tiered_at.remove(&e) else {
            return false;
        };
        let k = self.backoff.0.get(&e).copied().unwrap_or(0);
        if now_ms.saturating_sub(t) <= limits.thrash_window_ms {
            self.backoff.0.insert(e, (k + 1).min(MAX_BACKOFF));
            self.thrash += 1;
            true
        } else {
            if k <= 1 {
                self.backoff.0.remove(&e);
            } else {
                self.backoff.0.insert(e, k - 1);
            }
            false
        }
    }

    /// A read request at `now_ms`; `cold` if it touched a remote extent.
    pub fn on_read(&mut self, now_ms: u64, cold: bool) {
        self.reads.add(now_ms, cold);
    }

    /// A fetch from the object store (a GET of `bytes`).
    /// A PUT not of a tiered extent of the volume's own (its snapshots' data).
    pub fn on_put(&mut self) {
        self.requests.puts += 1;
    }

    pub fn on_fetch(&mut self, bytes: u64) {
        self.requests.gets += 1;
        self.requests.bytes_fetched += bytes;
    }

    /// Whether a read may bring `bytes` back now, under the class's daily
    /// budget (always, without one). A refusal is counted.
    pub fn allow_bring_back(&mut self, bytes: u64, now_ms: u64, limits: &Limits) -> bool {
        match limits.max_rehydrate_per_day {
            None => true,
            Some(per_day) => self.budget.take(per_day, bytes, now_ms),
        }
    }

    /// The extent is gone (deleted volume range, trimmed): forget it.
    pub fn forget(&mut self, e: u64) {
        self.tiered_at.remove(&e);
        self.backoff.0.remove(&e);
    }

    pub fn status(
        &mut self,
        now_ms: u64,
        limits: &Limits,
        econ: Option<&Economics>,
    ) -> TunerStatus {
        let (reads, cold) = self.reads.recent(now_ms);
        TunerStatus {
            mode: if limits.adaptive { "auto" } else { "fixed" },
            cooling_ms: self.cooling_ms(limits, econ),
            band_cooling_ms: self.thresholds(limits, econ).bands_ms,
            break_even_ms: econ.and_then(break_even).map(|b| b as u64),
            gaps_observed: (self.gaps.total() * 100.0).round() / 100.0,
            latency_factor: 1u64 << self.latency_k,
            cold_read_fraction: (reads > 0).then(|| cold as f64 / reads as f64),
            extents_backed_off: self.backoff.len(),
            thrash: self.thrash,
            rehydrate_budget_left: limits.max_rehydrate_per_day.map(|d| self.budget.left(d)),
            rehydrations_refused: self.budget.refused,
        }
    }
}

/// Where a volume starts: the break-even for `auto`, clamped to the class's
/// bounds (its maximum when tiering never pays), or the fixed period.
fn start_ms(limits: &Limits, econ: Option<&Economics>) -> u64 {
    if !limits.adaptive {
        return limits.fixed_ms;
    }
    let be = econ.and_then(break_even).map(|b| b as u64);
    be.unwrap_or(limits.max_ms)
        .clamp(limits.min_ms, limits.max_ms.max(limits.min_ms))
}

#[cfg(test)]
mod tests;
