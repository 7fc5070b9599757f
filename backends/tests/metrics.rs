//! Every series whose labels are known exists, at 0, as soon as a backend is
//! built: a dashboard sees 0 rather than nothing.

use backends::{build, BackendConfig, BackendMetrics, FsConfig, REQUEST_RESULTS};
use prometheus::{Encoder, Registry, TextEncoder};

#[tokio::test]
async fn a_new_backend_exports_zero_series() {
    let registry = Registry::new();
    let metrics = BackendMetrics::register(&registry).expect("register");
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = build(
        "local",
        &BackendConfig::Fs(FsConfig::default()),
        dir.path(),
        metrics,
    )
    .await
    .expect("build fs backend");

    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encode");
    let text = String::from_utf8(buf).expect("utf-8");
    let has = |line: String| {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in the scrape:\n{text}"
        )
    };
    let ops = [
        "put",
        "get",
        "get_range",
        "head",
        "delete",
        "create_container",
    ];
    for op in ops.iter().chain(&["list"]) {
        for result in REQUEST_RESULTS {
            has(format!(
                "tierd_backend_requests_total{{backend=\"local\",op=\"{op}\",result=\"{result}\"}} 0"
            ));
        }
    }
    for op in ops {
        has(format!(
            "tierd_backend_retries_total{{backend=\"local\",op=\"{op}\"}} 0"
        ));
        has(format!(
            "tierd_backend_request_duration_seconds_count{{backend=\"local\",op=\"{op}\"}} 0"
        ));
    }
    for direction in ["upload", "download"] {
        has(format!(
            "tierd_backend_bytes_total{{backend=\"local\",direction=\"{direction}\"}} 0"
        ));
    }
}
