//! Every metric this crate exports, defined once and shared by all backends
//! (the `backend` label tells them apart).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct BackendMetrics {
    /// Attempts by backend, operation and result (ok or the error kind).
    pub requests: IntCounterVec,
    /// Attempt latency by backend and operation.
    pub duration: HistogramVec,
    /// Payload bytes by backend and direction (upload, download).
    pub bytes: IntCounterVec,
    /// Retries by backend and operation.
    pub retries: IntCounterVec,
}

impl BackendMetrics {
    /// Metrics not registered anywhere (tests, tools).
    pub fn unregistered() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "tierd_backend_requests_total",
                "Object-store request attempts by result",
            ),
            &["backend", "op", "result"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tierd_backend_request_duration_seconds",
                "Object-store request attempt latency",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).expect("static buckets")),
            &["backend", "op"],
        )
        .expect("static metric definition");
        let bytes = IntCounterVec::new(
            Opts::new("tierd_backend_bytes_total", "Object-store payload bytes"),
            &["backend", "direction"],
        )
        .expect("static metric definition");
        let retries = IntCounterVec::new(
            Opts::new(
                "tierd_backend_retries_total",
                "Object-store request retries",
            ),
            &["backend", "op"],
        )
        .expect("static metric definition");
        Self {
            requests,
            duration,
            bytes,
            retries,
        }
    }

    /// Metrics registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered();
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        Ok(m)
    }
}
