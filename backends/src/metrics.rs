//! Every metric this crate exports, defined once and shared by all backends
//! (the `backend` label tells them apart).
//!
//! Invariant: the layers never look a series up per request. Each resolves
//! the handles of its backend once, at construction ([`AttemptSeries`],
//! [`RetrySeries`]), which also creates every series whose labels are known
//! in advance (backend × operation × result, direction) at 0, so a dashboard
//! sees 0 rather than nothing from the moment a backend is built.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use crate::error::ErrorKind;
use crate::Op;

/// Values of the `result` label of `tierd_backend_requests_total`: `ok`,
/// then every [`ErrorKind`] label in [`ErrorKind::ALL`] order.
pub const REQUEST_RESULTS: [&str; 6] = [
    "ok",
    "not_found",
    "precondition_failed",
    "throttled",
    "transient",
    "permanent",
];

/// Index in [`REQUEST_RESULTS`] of an attempt's outcome.
fn result_index(outcome: Result<(), ErrorKind>) -> usize {
    match outcome {
        Ok(()) => 0,
        Err(kind) => 1 + kind as usize,
    }
}

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

/// One operation's attempt series for one backend.
#[derive(Debug, Clone)]
pub(crate) struct OpSeries {
    /// By [`REQUEST_RESULTS`] index.
    results: [IntCounter; REQUEST_RESULTS.len()],
    /// `None` for list, whose pages are not timed one by one.
    duration: Option<Histogram>,
}

impl OpSeries {
    /// Counts one attempt's outcome.
    pub(crate) fn count(&self, outcome: Result<(), ErrorKind>) {
        self.results[result_index(outcome)].inc();
    }

    /// Records one attempt's latency.
    pub(crate) fn observe(&self, seconds: f64) {
        if let Some(h) = &self.duration {
            h.observe(seconds);
        }
    }
}

/// The attempt series of one backend, resolved once (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct AttemptSeries {
    /// By [`Op::index`].
    ops: [OpSeries; Op::ALL.len()],
    pub(crate) upload_bytes: IntCounter,
    pub(crate) download_bytes: IntCounter,
}

impl AttemptSeries {
    pub(crate) fn op(&self, op: Op) -> &OpSeries {
        &self.ops[op.index()]
    }
}

/// The retry counters of one backend, resolved once; list is never retried
/// and has none.
#[derive(Debug, Clone)]
pub(crate) struct RetrySeries {
    ops: [Option<IntCounter>; Op::ALL.len()],
}

impl RetrySeries {
    pub(crate) fn inc(&self, op: Op) {
        if let Some(c) = &self.ops[op.index()] {
            c.inc();
        }
    }
}

impl BackendMetrics {
    /// The attempt series of `backend`, created at 0 where missing.
    pub(crate) fn attempt_series(&self, backend: &str) -> AttemptSeries {
        AttemptSeries {
            ops: Op::ALL.map(|op| OpSeries {
                results: REQUEST_RESULTS
                    .map(|r| self.requests.with_label_values(&[backend, op.as_str(), r])),
                duration: (op != Op::List)
                    .then(|| self.duration.with_label_values(&[backend, op.as_str()])),
            }),
            upload_bytes: self.bytes.with_label_values(&[backend, "upload"]),
            download_bytes: self.bytes.with_label_values(&[backend, "download"]),
        }
    }

    /// The retry counters of `backend`, created at 0 where missing.
    pub(crate) fn retry_series(&self, backend: &str) -> RetrySeries {
        RetrySeries {
            ops: Op::ALL.map(|op| {
                (op != Op::List).then(|| self.retries.with_label_values(&[backend, op.as_str()]))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_follow_error_kinds() {
        assert_eq!(REQUEST_RESULTS[result_index(Ok(()))], "ok");
        for kind in ErrorKind::ALL {
            assert_eq!(REQUEST_RESULTS[result_index(Err(kind))], kind.label());
        }
    }
}
