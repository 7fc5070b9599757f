//! `tierd simulate`: replays a block trace through tiering policies in
//! simulated time and reports what each would do and cost, beside the
//! offline optimum for the same trace.
//!
//! The policies run the daemon's own code (see [`volume`]): only the clock
//! and the I/O are simulated. Each device of the trace is one volume; every
//! policy sees the same events in one streaming pass over the trace, so
//! memory depends on the extents touched, not on the number of events.

pub mod chart;
mod oracle;
pub mod report;
pub mod snapshots;
pub mod timeline;
pub mod trace;
pub mod volume;

#[cfg(test)]
mod tests;

use serde::Serialize;

use std::collections::BTreeMap;

use oracle::Oracle;
use policy::cost::{self, monthly_cost, Cost, Pricing, Usage};
use policy::{ClassConfig, CoolingPeriod, Fullness, RetrievalPolicy, TieringPolicy};
use timeline::Timeline;
use trace::{Event, TraceError};
use volume::{Counters, SimVolume, VolumeParams};

/// What can stop a simulation, with what the user must change.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("pricing: {0}")]
    Cost(#[from] cost::CostError),
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
}

pub type Result<T, E = SimError> = std::result::Result<T, E>;

/// One policy to simulate: a class, and the price list its objects pay.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub class: ClassConfig,
    pub price_tier: String,
}

/// Everything about a simulation except the policies and the trace.
#[derive(Debug, Clone)]
pub struct Options {
    pub volume: VolumeParams,
    pub scan_interval_ms: u64,
    /// Width of the buckets of the local-bytes timeline (and the chart).
    pub bucket_ms: u64,
    pub pricing: Pricing,
    /// Size of the filesystem holding the local tier, for classes with a
    /// `local_fullness_threshold`. `None`: what the trace's volumes
    /// provision, so a threshold reads as the share of provisioned space held
    /// locally.
    pub local_capacity: Option<u64>,
    /// A snapshot schedule for every volume (`--snapshot-every`,
    /// `--snapshot-keep`), so snapshot-only and auto are priced with it.
    pub snapshots: Option<snapshots::Schedule>,
}

/// What one policy did over the trace.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub description: String,
    pub price_tier: String,
    /// None for the optimum, whose history is not kept.
    pub local_peak_bytes: Option<f64>,
    pub local_mean_bytes: f64,
    pub remote_mean_bytes: f64,
    pub extents_tiered: u64,
    pub bytes_tiered: u64,
    pub rehydrations: u64,
    pub thrash: u64,
    /// Overlays merged into new objects (`write_overlay`).
    #[serde(skip_serializing_if = "is_zero")]
    pub merges: u64,
    pub puts: u64,
    pub gets: u64,
    pub bytes_fetched: u64,
    pub cold_reads: u64,
    pub cold_cache_hits: u64,
    /// Read requests, and those that touched a remote extent.
    pub read_requests: u64,
    pub cold_read_requests: u64,
    /// Extents back within the class's own thrash window (`thrash_window`,
    /// what the thrash guard reacts to) under `cooling_period = "auto"`.
    #[serde(skip_serializing_if = "is_zero")]
    pub guard_thrash: u64,
    /// Each device's cooling period at the end, in ms (under
    /// `cooling_period = "auto"`, where it adapts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cooling_ms: Vec<u64>,
    /// Mean estimated wait of a cold read on the object store, in ms.
    pub cold_read_ms: Option<f64>,
    pub passes: u64,
    /// Scheduled snapshots taken, over all volumes.
    #[serde(skip_serializing_if = "is_zero")]
    pub snapshots: u64,
    pub cost: Cost,
    /// Extents whose only copy is remote at the end, per device (by index).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_extents: Vec<Vec<u64>>,
    /// Extents that are overlays at the end (remote, with blocks written
    /// since kept locally), per device; only with `write_overlay`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overlay_extents: Vec<Vec<u64>>,
    #[serde(skip)]
    pub series: Vec<(f64, f64)>,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub events: u64,
    pub devices: Vec<String>,
    pub duration_ms: u64,
    pub extent_size: u64,
    pub scan_interval_ms: u64,
    pub prices_taken: String,
    pub policies: Vec<PolicyReport>,
    /// The offline optimum, per price tier the policies use.
    pub optimum: Vec<PolicyReport>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Simulated wall-clock time of the trace's start. Traces count from 0, but
/// the policy compares `now - cooling` with last-use times, which must not
/// saturate at the epoch (everything would look idle since time 0).
const EPOCH_MS: u64 = 30 * 365 * 86_400_000;

struct Run<'a> {
    policy: &'a Policy,
    econ: Option<policy::Economics>,
    snapshots: bool,
    volumes: Vec<SimVolume>,
    counters: Counters,
    local: Timeline,
    remote: Timeline,
    local_total: u64,
    remote_total: u64,
    next_pass: u64,
    next_snapshot: u64,
}

impl Run<'_> {
    fn volume(&mut self, device: u32, p: &VolumeParams) -> &mut SimVolume {
        let d = device as usize;
        while self.volumes.len() <= d {
            let mut v = SimVolume::new(p, self.econ);
            if self.snapshots {
                v.enable_snapshots();
            }
            self.volumes.push(v);
        }
        &mut self.volumes[d]
    }

    fn record(&mut self, now: u64, local_delta: i64, remote_delta: i64) {
        self.local_total = (self.local_total as i64 + local_delta) as u64;
        self.remote_total = (self.remote_total as i64 + remote_delta) as u64;
        self.local.set(now, self.local_total);
        self.remote.set(now, self.remote_total);
    }

    /// Takes the scheduled snapshot due at `t` of every volume.
    fn snapshot_at(&mut self, t: u64, s: snapshots::Schedule, o: &Options) {
        for i in 0..self.volumes.len() {
            let v = &mut self.volumes[i];
            let (l, r) = (v.local_bytes as i64, v.remote_bytes as i64);
            v.snapshot(EPOCH_MS + t, s.keep, &o.volume, &mut self.counters);
            let (dl, dr) = (v.local_bytes as i64 - l, v.remote_bytes as i64 - r);
            if dl != 0 || dr != 0 {
                self.record(t, dl, dr);
            }
        }
        self.next_snapshot += s.every_ms;
    }

    /// Runs every pass (and scheduled snapshot) due up to `now`, in time
    /// order, as the daemon's loops would have.
    fn passes_until(&mut self, now: u64, o: &Options) {
        loop {
            if let Some(s) = o.snapshots {
                if self.next_snapshot <= now && self.next_snapshot <= self.next_pass {
                    let t = self.next_snapshot;
                    self.snapshot_at(t, s, o);
                    continue;
                }
            }
            if self.next_pass > now {
                break;
            }
            let t = self.next_pass;
            let capacity = o
                .local_capacity
                .unwrap_or_else(|| self.volumes.iter().map(SimVolume::provisioned_bytes).sum());
            for i in 0..self.volumes.len() {
                // As the daemon's statvfs: every volume's local bytes count.
                let fullness = Fullness {
                    used_bytes: self.local_total,
                    capacity_bytes: capacity,
                };
                let v = &mut self.volumes[i];
                let (l, r) = (v.local_bytes as i64, v.remote_bytes as i64);
                v.pass(
                    EPOCH_MS + t,
                    &self.policy.class,
                    fullness,
                    &o.volume,
                    &mut self.counters,
                );
                let (dl, dr) = (v.local_bytes as i64 - l, v.remote_bytes as i64 - r);
                if dl != 0 || dr != 0 {
                    self.record(t, dl, dr);
                }
            }
            self.next_pass += o.scan_interval_ms;
        }
    }

    fn apply(&mut self, ev: &Event, o: &Options) {
        self.passes_until(ev.t_ms, o);
        let class = &self.policy.class;
        let mut counters = std::mem::take(&mut self.counters);
        let v = self.volume(ev.device, &o.volume);
        let (l, r) = (v.local_bytes as i64, v.remote_bytes as i64);
        let at = Event {
            t_ms: EPOCH_MS + ev.t_ms,
            ..*ev
        };
        v.apply(&at, class, &o.volume, &mut counters);
        let (dl, dr) = (v.local_bytes as i64 - l, v.remote_bytes as i64 - r);
        self.counters = counters;
        if dl != 0 || dr != 0 {
            self.record(ev.t_ms, dl, dr);
        }
    }
}

pub use policy::cost::price_tier;

/// A policy named on the command line: one of the configured classes
/// (`known`, by name), or an ad-hoc one written `POLICY[:COOLING][/RETRIEVAL][+overlay]`,
/// such as `auto:7d/on-read`, `auto:auto` or `all`, priced as S3 Standard.
pub fn policy_from_arg(known: &BTreeMap<String, Policy>, arg: &str) -> Result<Policy> {
    if let Some(p) = known.get(arg) {
        return Ok(p.clone());
    }
    let bad = |why: String| {
        SimError::InvalidArgument(format!(
            "--class {arg:?}: {why}; name a configured class ({}) or write POLICY[:COOLING][/RETRIEVAL][+overlay], e.g. auto:7d/on-read or auto:auto/never+overlay",
            known.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    };
    let (spec, overlay) = match arg.strip_suffix("+overlay") {
        Some(s) => (s, true),
        None => (arg, false),
    };
    let (head, retrieval) = spec.split_once('/').unwrap_or((spec, "default"));
    let (policy, cooling) = head
        .split_once(':')
        .map(|(p, c)| (p, Some(c)))
        .unwrap_or((head, None));
    let tiering_policy: TieringPolicy =
        serde_json::from_value(serde_json::Value::String(policy.into())).map_err(|_| {
            bad(format!(
                "{policy:?} is not a class nor a tiering policy (none, snapshot-only, auto, all)"
            ))
        })?;
    let retrieval_policy: RetrievalPolicy =
        serde_json::from_value(serde_json::Value::String(retrieval.into())).map_err(|_| {
            bad(format!(
                "{retrieval:?} is not a retrieval policy (default, on-read, never, promote)"
            ))
        })?;
    let cooling = cooling
        .map(str::parse::<CoolingPeriod>)
        .transpose()
        .map_err(bad)?;
    let mut class = ClassConfig::with_policies(tiering_policy, None, retrieval_policy);
    if cooling.is_some() {
        class.cooling_period = cooling;
    }
    class.write_overlay = overlay;
    class.validate().map_err(bad)?;
    Ok(Policy {
        name: arg.to_string(),
        price_tier: price_tier("s3", None),
        class,
    })
}

/// Local and remote byte-milliseconds of a run, and its local-bytes history.
struct Occupancy {
    local_byte_ms: f64,
    remote_byte_ms: f64,
    local_peak: Option<f64>,
    series: Vec<(f64, f64)>,
}

fn finish_report(
    name: String,
    description: String,
    price_tier: &str,
    c: Counters,
    u: Occupancy,
    end: u64,
    pricing: &Pricing,
) -> Result<PolicyReport> {
    let duration = end.max(1);
    let usage = Usage {
        duration_ms: duration,
        local_byte_ms: u.local_byte_ms,
        remote_byte_ms: u.remote_byte_ms,
        puts: c.puts,
        gets: c.gets,
        bytes_retrieved: c.bytes_fetched,
        deleted_objects: c.deleted.objects(),
    };
    let cost = monthly_cost(pricing, price_tier, &usage)?;
    Ok(PolicyReport {
        name,
        description,
        price_tier: price_tier.to_string(),
        local_peak_bytes: u.local_peak,
        local_mean_bytes: u.local_byte_ms / duration as f64,
        remote_mean_bytes: u.remote_byte_ms / duration as f64,
        extents_tiered: c.extents_tiered,
        bytes_tiered: c.bytes_uploaded,
        rehydrations: c.rehydrations,
        thrash: c.thrash,
        merges: c.merges,
        puts: c.puts,
        gets: c.gets,
        bytes_fetched: c.bytes_fetched,
        cold_reads: c.cold_reads,
        cold_cache_hits: c.cold_cache_hits,
        read_requests: c.read_requests,
        cold_read_requests: c.cold_read_requests,
        guard_thrash: 0,
        cooling_ms: Vec::new(),
        cold_read_ms: (c.cold_reads > 0).then(|| c.cold_wait_ms / c.cold_reads as f64),
        passes: c.passes,
        snapshots: c.snapshots,
        cost,
        remote_extents: Vec::new(),
        overlay_extents: Vec::new(),
        series: u.series,
    })
}

/// Replays `events` (in time order, time 0 at the trace's start) through
/// every policy and the optimum.
pub fn run<I>(events: I, policies: &[Policy], o: &Options) -> Result<Report>
where
    I: Iterator<Item = std::result::Result<Event, TraceError>>,
{
    if policies.is_empty() {
        return Err(SimError::InvalidArgument(
            "simulate: name at least one --class".into(),
        ));
    }
    let mut tiers: Vec<String> = policies.iter().map(|p| p.price_tier.clone()).collect();
    tiers.sort();
    tiers.dedup();
    let mut oracles = Vec::new();
    for t in &tiers {
        let price = o.pricing.tiers.get(t).cloned().ok_or_else(|| {
            SimError::InvalidArgument(format!(
                "no price list {t:?} in [pricing.tiers] (known: {})",
                o.pricing
                    .tiers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        // The optimum may keep overlays when a policy priced against it may.
        let overlays = policies
            .iter()
            .any(|p| &p.price_tier == t && p.class.write_overlay);
        oracles.push(Oracle::new(
            o.volume.extent_size,
            o.pricing.local_gb_month,
            price,
            o.volume.thrash_window_ms,
            overlays,
        ));
    }
    let mut runs: Vec<Run> = policies
        .iter()
        .map(|p| Run {
            policy: p,
            econ: policy::Economics::of_class(
                &o.pricing,
                &p.price_tier,
                o.volume.extent_size,
                &p.class,
            ),
            volumes: Vec::new(),
            counters: Counters::default(),
            local: Timeline::new(o.bucket_ms),
            remote: Timeline::new(o.bucket_ms),
            local_total: 0,
            remote_total: 0,
            next_pass: o.scan_interval_ms,
            snapshots: o.snapshots.is_some(),
            next_snapshot: o.snapshots.map(|s| s.every_ms).unwrap_or(u64::MAX),
        })
        .collect();
    let mut n = 0u64;
    let mut end = 0u64;
    for ev in events {
        let ev = ev?;
        n += 1;
        end = end.max(ev.t_ms);
        for r in &mut runs {
            r.apply(&ev, o);
        }
        for or in &mut oracles {
            or.apply(&ev);
        }
    }
    // The trace ends one scan interval after its last event, so the last
    // events' effect on local bytes is seen.
    let end = end + o.scan_interval_ms;
    let mut reports = Vec::new();
    for mut r in runs {
        r.passes_until(end, o);
        let (lt, rt) = (r.local_total, r.remote_total);
        r.local.set(end, lt);
        r.remote.set(end, rt);
        let u = Occupancy {
            local_byte_ms: r.local.integral(),
            remote_byte_ms: r.remote.integral(),
            local_peak: Some(r.local.peak() as f64),
            series: r.local.series(end),
        };
        let mut rep = finish_report(
            r.policy.name.clone(),
            r.policy.class.describe(),
            &r.policy.price_tier,
            r.counters,
            u,
            end,
            &o.pricing,
        )?;
        rep.remote_extents = r.volumes.iter().map(|v| v.tiered_extents()).collect();
        if r.policy.class.write_overlay {
            rep.overlay_extents = r.volumes.iter().map(|v| v.overlay_extents()).collect();
        }
        if r.policy.class.cooling_is_auto() {
            rep.cooling_ms = r
                .volumes
                .iter()
                .map(|v| v.cooling_ms(&r.policy.class))
                .collect();
            rep.guard_thrash = r.volumes.iter().map(SimVolume::tuner_thrash).sum();
        }
        reports.push(rep);
    }
    let mut optimum = Vec::new();
    for (t, mut or) in tiers.iter().zip(oracles) {
        or.finish(end);
        let u = Occupancy {
            local_byte_ms: or.local_byte_ms,
            remote_byte_ms: or.remote_byte_ms,
            local_peak: None,
            series: Vec::new(),
        };
        optimum.push(finish_report(
            format!("optimum ({t})"),
            "offline: knows every future access".into(),
            t,
            std::mem::take(&mut or.counters),
            u,
            end,
            &o.pricing,
        )?);
    }
    Ok(Report {
        events: n,
        devices: Vec::new(),
        duration_ms: end,
        extent_size: o.volume.extent_size,
        scan_interval_ms: o.scan_interval_ms,
        prices_taken: o.pricing.taken.clone(),
        policies: reports,
        optimum,
    })
}
