//! Every metric the tiering crate exports, defined here once (the backends
//! crate defines its own and registers them in the same registry).
//!
//! Two kinds: event metrics (counters and histograms updated as things happen,
//! held in [`TierMetrics`]) and state metrics (volume bytes, extents per state,
//! temperatures, engine counters), computed fresh at every scrape by
//! [`render`] into a scratch registry, so a deleted volume's series simply
//! stop appearing.

use std::sync::atomic::Ordering;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use heatmap::HeatMap;

use crate::engine::Engine;
use crate::volume::Volumes;

#[derive(Debug, Clone)]
pub struct TierMetrics {
    /// NBD requests by volume, operation and result (ok or the NBD errno name).
    pub nbd_requests: IntCounterVec,
    /// NBD request latency by operation and tier (local, or remote when a cold extent was touched).
    pub nbd_duration: HistogramVec,
    /// Extent migrations by direction (tier, rehydrate) and result.
    pub migrations: IntCounterVec,
    /// Bytes moved by direction (tier: stored bytes uploaded; rehydrate: bytes written back).
    pub migration_bytes: IntCounterVec,
    pub heat_flush_duration: Histogram,
    pub pass_duration: Histogram,
}

fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.00005, 2.0, 18).unwrap_or_default()
}

impl TierMetrics {
    /// Metrics not registered anywhere (tests).
    pub fn unregistered() -> prometheus::Result<Self> {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        Ok(Self {
            nbd_requests: counter_vec(
                "tierd_nbd_requests_total",
                "NBD requests",
                &["volume", "op", "result"],
            )?,
            nbd_duration: HistogramVec::new(
                HistogramOpts::new("tierd_nbd_request_duration_seconds", "NBD request latency")
                    .buckets(latency_buckets()),
                &["op", "tier"],
            )?,
            migrations: counter_vec(
                "tierd_migrations_total",
                "Extent migrations",
                &["direction", "result"],
            )?,
            migration_bytes: counter_vec(
                "tierd_migration_bytes_total",
                "Bytes moved between tiers",
                &["direction"],
            )?,
            heat_flush_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "tierd_heat_flush_duration_seconds",
                    "Time to flush heat to RocksDB",
                )
                .buckets(latency_buckets()),
            )?,
            pass_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "tierd_policy_pass_duration_seconds",
                    "Time of one policy pass over a volume",
                )
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 20).unwrap_or_default()),
            )?,
        })
    }

    /// Metrics registered in `registry`, with `tierd_build_info`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.nbd_requests.clone()))?;
        registry.register(Box::new(m.nbd_duration.clone()))?;
        registry.register(Box::new(m.migrations.clone()))?;
        registry.register(Box::new(m.migration_bytes.clone()))?;
        registry.register(Box::new(m.heat_flush_duration.clone()))?;
        registry.register(Box::new(m.pass_duration.clone()))?;
        let info = IntGaugeVec::new(Opts::new("tierd_build_info", "tierd version"), &["version"])?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(info))?;
        Ok(m)
    }
}

/// The state metrics, computed now.
fn state(volumes: &Volumes, engine: &Engine, heat: &HeatMap) -> prometheus::Result<Registry> {
    let r = Registry::new();
    let bytes = IntGaugeVec::new(
        Opts::new("tierd_volume_bytes", "Volume bytes by tier"),
        &["volume", "tier"],
    )?;
    let inactive = IntGaugeVec::new(
        Opts::new(
            "tierd_volume_inactive_bytes",
            "Local bytes idle past the cooling period, not yet tiered",
        ),
        &["volume"],
    )?;
    let extents = IntGaugeVec::new(
        Opts::new("tierd_extents", "Extents by state"),
        &["volume", "state"],
    )?;
    let temps = HistogramVec::new(
        HistogramOpts::new(
            "tierd_volume_extent_temperature",
            "Temperature of accessed extents",
        )
        .buckets(heatmap::TEMPERATURE_BUCKETS.to_vec()),
        &["volume"],
    )?;
    for v in volumes.list() {
        let info = v.info();
        let name = info.name.as_str();
        bytes
            .with_label_values(&[name, "local"])
            .set(info.bytes_local as i64);
        bytes
            .with_label_values(&[name, "remote"])
            .set(info.bytes_remote as i64);
        if let Ok(b) = v.inactive_bytes() {
            inactive.with_label_values(&[name]).set(b as i64);
        }
        extents
            .with_label_values(&[name, "local"])
            .set(info.extents_local as i64);
        extents
            .with_label_values(&[name, "remote"])
            .set(info.extents_remote as i64);
        extents
            .with_label_values(&[name, "zero"])
            .set(info.extents_zero as i64);
        let h = temps.with_label_values(&[name]);
        if let Ok(heat) = v.heat().volume_extents(v.id()) {
            for e in heat {
                h.observe(e.temperature);
            }
        }
    }
    r.register(Box::new(bytes))?;
    r.register(Box::new(inactive))?;
    r.register(Box::new(extents))?;
    r.register(Box::new(temps))?;
    let s = &engine.stats;
    for (name, help, value) in [
        (
            "tierd_integrity_errors_total",
            "Cold reads that failed verification",
            &s.integrity_errors,
        ),
        (
            "tierd_gc_objects_deleted_total",
            "Garbage objects deleted",
            &s.gc_objects_deleted,
        ),
        (
            "tierd_rehydration_cache_hits_total",
            "Cold reads served from the fetch cache",
            &s.cache_hits,
        ),
        (
            "tierd_rehydration_cache_misses_total",
            "Cold reads that needed a fetch",
            &s.cache_misses,
        ),
    ] {
        let c = IntCounter::new(name, help)?;
        c.inc_by(value.load(Ordering::Relaxed));
        r.register(Box::new(c))?;
    }
    let pending = IntGauge::new(
        "tierd_heat_pending_extents",
        "Extents with heat not yet flushed",
    )?;
    pending.set(heat.pending() as i64);
    r.register(Box::new(pending))?;
    Ok(r)
}

/// The whole exposition: event metrics of `registry` plus the state now.
pub fn render(
    registry: &Registry,
    volumes: &Volumes,
    engine: &Engine,
    heat: &HeatMap,
) -> Result<String, String> {
    let mut families = registry.gather();
    families.extend(
        state(volumes, engine, heat)
            .map_err(|e| e.to_string())?
            .gather(),
    );
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}
