//! The Prometheus exposition the API serves: the registry's event metrics
//! plus the state of every volume and of the engine, computed at each scrape
//! into a scratch registry (so a deleted volume's state series simply stop
//! appearing). Each volume's heat is read once per scrape.

use std::sync::atomic::Ordering;

use heatmap::HeatMap;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::engine::Engine;
use crate::volume::Volumes;

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
    let held = IntGaugeVec::new(
        Opts::new(
            "tierd_volume_held_bytes",
            "Data of a volume with snapshots, by who holds it: the volume alone, its snapshots alone, or shared",
        ),
        &["volume", "holder"],
    )?;
    let snapshots = IntGaugeVec::new(
        Opts::new("tierd_volume_snapshots", "Snapshots of a volume"),
        &["volume"],
    )?;
    let fenced = IntGaugeVec::new(
        Opts::new(
            "tierd_volume_fenced",
            "1 when another node took the volume over (a newer fencing generation): this node no longer writes it",
        ),
        &["volume"],
    )?;
    let backup_age = IntGaugeVec::new(
        Opts::new(
            "tierd_volume_backup_age_seconds",
            "Seconds since the volume's newest backup by this node committed (its recovery point)",
        ),
        &["volume"],
    )?;
    let cooling = prometheus::GaugeVec::new(
        Opts::new(
            "tierd_volume_cooling_seconds",
            "The cooling period a volume works with now (adapted under cooling_period = \"auto\")",
        ),
        &["volume"],
    )?;
    let cost = prometheus::GaugeVec::new(
        Opts::new(
            "tierd_class_monthly_cost_dollars",
            "Estimated monthly cost of a class's volumes at the current rate (basis now), and kept all local (basis all_local), in US dollars",
        ),
        &["class", "basis"],
    )?;
    let now = volumes.clock().now_ms();
    for v in volumes.list() {
        let info = v.info();
        if let Some(st) = v.cooling_status() {
            cooling
                .with_label_values(&[info.name.as_str()])
                .set(st.cooling_ms as f64 / 1000.0);
        }
        if let Some(c) = v.cost_now(info.bytes_local, info.bytes_remote) {
            cost.with_label_values(&[info.class.as_str(), "now"])
                .add(c.now);
            cost.with_label_values(&[info.class.as_str(), "all_local"])
                .add(c.all_local);
        }
        fenced
            .with_label_values(&[info.name.as_str()])
            .set(i64::from(info.fenced));
        if let Some(ms) = volumes.last_backup_ms(&v) {
            backup_age
                .with_label_values(&[info.name.as_str()])
                .set((now.saturating_sub(ms) / 1000) as i64);
        }
        // Who holds what is worth its cost only once a volume has layers
        // below its top (snapshots, a clone's origin, a revert).
        if v.top().parent().is_some() {
            // At most once a minute per volume: it walks every extent of
            // every layer.
            let sp = volumes.space_cached(&v, 60_000);
            let name = info.name.as_str();
            held.with_label_values(&[name, "volume"])
                .set(sp.bytes_owned as i64);
            held.with_label_values(&[name, "shared"])
                .set(sp.bytes_shared as i64);
            held.with_label_values(&[name, "snapshots"])
                .set(sp.snapshots.iter().map(|(_, b)| *b).sum::<u64>() as i64);
            snapshots
                .with_label_values(&[name])
                .set(sp.snapshots.len() as i64);
        }
        let name = info.name.as_str();
        bytes
            .with_label_values(&[name, "local"])
            .set(info.bytes_local as i64);
        bytes
            .with_label_values(&[name, "remote"])
            .set(info.bytes_remote as i64);
        // One read of the volume's heat serves both the inactive bytes
        // and the temperature histogram.
        let heat = v.heat().volume_extents(v.id()).ok();
        if let Some(b) = heat.as_ref().and_then(|h| v.inactive_bytes_from(h).ok()) {
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
        extents
            .with_label_values(&[name, "overlay"])
            .set(info.extents_overlay as i64);
        let h = temps.with_label_values(&[name]);
        for e in heat.iter().flatten() {
            h.observe(e.temperature);
        }
    }
    r.register(Box::new(bytes))?;
    r.register(Box::new(cooling))?;
    r.register(Box::new(cost))?;
    r.register(Box::new(fenced))?;
    r.register(Box::new(backup_age))?;
    r.register(Box::new(inactive))?;
    r.register(Box::new(extents))?;
    r.register(Box::new(temps))?;
    r.register(Box::new(held))?;
    r.register(Box::new(snapshots))?;
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
