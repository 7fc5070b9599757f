//! An emulator stopped mid-test: requests fail as Transient after bounded
//! retries, and work again once it is back. In its own test binary because it
//! takes the emulators away from every test running beside it.
// Measures real elapsed time of real I/O: the wall clock is the point here.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use backends::{build, BackendConfig, BackendError, BackendMetrics, PutOptions};
use bytes::Bytes;
use common::*;

#[tokio::test]
async fn s3_stopped_emulator_is_transient_then_recovers() {
    let Some(ep) = emulator_env("TIERD_S3_ENDPOINT") else {
        return;
    };
    if emulator_env("TIERD_EMU_RUN").is_none() {
        return;
    }
    let mut c = s3_config(&ep, &unique("stop"));
    c.limits.max_attempts = 4;
    c.limits.deadline = Duration::from_secs(10);
    c.limits.attempt_timeout = Duration::from_secs(2);
    let s = build(
        "s3",
        &BackendConfig::S3(c),
        std::path::Path::new("/nonexistent"),
        BackendMetrics::unregistered(),
    )
    .await
    .unwrap();
    s.put("before", Bytes::from_static(b"x"), &PutOptions::default())
        .await
        .unwrap();
    emulator_ctl("s3.sh", "stop");
    let t0 = Instant::now();
    let e = s.get("before").await.unwrap_err();
    let took = t0.elapsed();
    emulator_ctl("s3.sh", "start");
    assert!(matches!(e, BackendError::Transient(_)), "{e}");
    assert!(e.to_string().contains("gave up after"), "{e}");
    assert!(
        took < Duration::from_secs(10),
        "retries must be bounded, took {took:?}"
    );
    // LocalStack keeps state in memory, so the bucket is created again.
    s.create_container().await.expect("emulator back");
    s.put("after", Bytes::from_static(b"y"), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(s.get("after").await.unwrap().to_vec(), b"y");
}

#[tokio::test]
async fn azure_stopped_emulator_is_transient_then_recovers() {
    let Some(ep) = emulator_env("TIERD_AZURITE_ENDPOINT") else {
        return;
    };
    if emulator_env("TIERD_EMU_RUN").is_none() {
        return;
    }
    let mut c = azure_config(&ep, &unique("stop"));
    c.limits.max_attempts = 4;
    c.limits.deadline = Duration::from_secs(10);
    c.limits.attempt_timeout = Duration::from_secs(2);
    let s = build(
        "azure",
        &BackendConfig::Azure(c),
        std::path::Path::new("/nonexistent"),
        BackendMetrics::unregistered(),
    )
    .await
    .unwrap();
    s.put("kept", Bytes::from_static(b"x"), &PutOptions::default())
        .await
        .unwrap();
    emulator_ctl("azurite.sh", "stop");
    let t0 = Instant::now();
    let e = s.get("kept").await.unwrap_err();
    let took = t0.elapsed();
    emulator_ctl("azurite.sh", "start");
    assert!(matches!(e, BackendError::Transient(_)), "{e}");
    assert!(
        took < Duration::from_secs(10),
        "retries must be bounded, took {took:?}"
    );
    // Azurite persists to disk: the object written before the outage is back.
    assert_eq!(s.get("kept").await.expect("emulator back").to_vec(), b"x");
}
