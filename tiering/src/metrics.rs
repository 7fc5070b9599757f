//! Every metric the tiering crate exports, defined here once (the backends
//! crate defines its own and registers them in the same registry).
//!
//! Two kinds: event metrics (counters and histograms updated as things happen,
//! held in [`TierMetrics`], defined here) and state metrics (volume bytes,
//! extents per state, temperatures, engine counters), computed fresh at every
//! scrape by the API's scrape renderer, so a deleted volume's state series
//! simply stop appearing.
//!
//! This module is a leaf: it imports no other module of the crate, and every
//! module that counts something takes its handles from here. Invariants:
//! labelled counters whose label sets are known start at 0 (a dashboard sees 0,
//! not nothing), and [`TierMetrics::forget_volume`] removes a deleted volume's
//! event series.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// NBD commands as `tierd_nbd_requests_total` labels them.
pub const NBD_OPS: [&str; 8] = [
    "read",
    "write",
    "disc",
    "flush",
    "trim",
    "write_zeroes",
    "block_status",
    "unknown",
];
/// Results of an NBD request: ok, or the errno's name.
pub const NBD_RESULTS: [&str; 9] = [
    "ok",
    "eperm",
    "eio",
    "einval",
    "enospc",
    "eoverflow",
    "enotsup",
    "eshutdown",
    "error",
];
/// Directions of a migration, and how one can end.
pub const MIGRATION_DIRECTIONS: [&str; 2] = ["tier", "rehydrate"];
pub const MIGRATION_RESULTS: [&str; 4] = ["ok", "raced", "error", "zero"];

#[derive(Debug, Clone)]
pub struct TierMetrics {
    /// NBD requests by volume, operation and result (ok or the NBD errno name).
    pub nbd_requests: IntCounterVec,
    /// NBD request latency by operation and tier (local, or remote when a cold extent was touched).
    pub nbd_duration: HistogramVec,
    /// Bytes of write payloads and read replies NBD connections hold now.
    pub nbd_buffered: IntGauge,
    /// Extent migrations by direction (tier, merge, rehydrate) and result.
    pub migrations: IntCounterVec,
    /// Bytes moved by direction (tier: stored bytes uploaded; rehydrate: bytes written back).
    pub migration_bytes: IntCounterVec,
    pub heat_flush_duration: Histogram,
    pub pass_duration: Histogram,
    /// Extents back within their class's thrash window of being tiered, by volume.
    pub cooling_thrash: IntCounterVec,
    /// Bring-backs a class's max_rehydrate_per_day refused, by volume.
    pub rehydrations_refused: IntCounterVec,
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
        let m = Self {
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
            nbd_buffered: IntGauge::new(
                "tierd_nbd_buffered_bytes",
                "Bytes of write payloads and read replies NBD connections hold",
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
            cooling_thrash: counter_vec(
                "tierd_cooling_thrash_total",
                "Extents brought back within the thrash window of being tiered",
                &["volume"],
            )?,
            rehydrations_refused: counter_vec(
                "tierd_rehydrations_refused_total",
                "Cold reads served without bringing the extent back because the daily rehydration budget was spent",
                &["volume"],
            )?,
        };
        m.zero_known_series();
        Ok(m)
    }

    /// Metrics registered in `registry`, with `tierd_build_info`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.nbd_requests.clone()))?;
        registry.register(Box::new(m.nbd_duration.clone()))?;
        registry.register(Box::new(m.nbd_buffered.clone()))?;
        registry.register(Box::new(m.migrations.clone()))?;
        registry.register(Box::new(m.migration_bytes.clone()))?;
        registry.register(Box::new(m.heat_flush_duration.clone()))?;
        registry.register(Box::new(m.pass_duration.clone()))?;
        registry.register(Box::new(m.cooling_thrash.clone()))?;
        registry.register(Box::new(m.rehydrations_refused.clone()))?;
        let info = IntGaugeVec::new(Opts::new("tierd_build_info", "tierd version"), &["version"])?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(info))?;
        Ok(m)
    }

    /// Creates every series of a known label set at 0.
    fn zero_known_series(&self) {
        for d in MIGRATION_DIRECTIONS {
            self.migration_bytes.with_label_values(&[d]);
            for r in MIGRATION_RESULTS {
                self.migrations.with_label_values(&[d, r]);
            }
        }
    }

    /// A volume's request series, created at 0 for a volume that now exists.
    pub fn add_volume(&self, volume: &str) {
        for op in NBD_OPS {
            self.nbd_requests.with_label_values(&[volume, op, "ok"]);
        }
        self.cooling_thrash.with_label_values(&[volume]);
        self.rehydrations_refused.with_label_values(&[volume]);
    }

    /// Removes every series of a deleted volume.
    pub fn forget_volume(&self, volume: &str) {
        for op in NBD_OPS {
            for r in NBD_RESULTS {
                // A series never created is not an error worth reporting.
                let _ = self.nbd_requests.remove_label_values(&[volume, op, r]);
            }
        }
        let _ = self.cooling_thrash.remove_label_values(&[volume]);
        let _ = self.rehydrations_refused.remove_label_values(&[volume]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(r: &Registry, name: &str) -> Vec<String> {
        r.gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .map(|m| {
                m.get_label()
                    .iter()
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn known_series_start_at_zero_and_deleted_volumes_leave() {
        let r = Registry::new();
        let m = TierMetrics::register(&r).expect("register");
        let migrations = series(&r, "tierd_migrations_total");
        assert_eq!(
            migrations.len(),
            MIGRATION_DIRECTIONS.len() * MIGRATION_RESULTS.len()
        );
        assert!(migrations.contains(&"direction=rehydrate,result=error".to_string()));
        assert_eq!(series(&r, "tierd_migration_bytes_total").len(), 2);
        m.add_volume("v1");
        m.add_volume("v2");
        m.nbd_requests
            .with_label_values(&["v1", "read", "eio"])
            .inc();
        assert_eq!(
            series(&r, "tierd_nbd_requests_total").len(),
            2 * NBD_OPS.len() + 1
        );
        m.forget_volume("v1");
        let left = series(&r, "tierd_nbd_requests_total");
        assert_eq!(left.len(), NBD_OPS.len());
        assert!(left.iter().all(|s| s.contains("volume=v2")), "{left:?}");
    }
}
