//! The conformance suite and failure behaviour against real Azurite.
//! Needs `TIERD_AZURITE_ENDPOINT` (see localstack/with-emulators.sh).

mod common;

use std::sync::Arc;

use backends::Secret;
use backends::{
    build, conformance, AzureConfig, BackendConfig, BackendError, BackendMetrics, ObjectStore,
    PutOptions,
};

use bytes::Bytes;
use common::*;

async fn store(
    c: AzureConfig,
    metrics: BackendMetrics,
) -> Result<Arc<dyn ObjectStore>, BackendError> {
    build(
        "azure",
        &BackendConfig::Azure(c),
        std::path::Path::new("/nonexistent"),
        metrics,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_conformance() {
    let Some(ep) = emulator_env("TIERD_AZURITE_ENDPOINT") else {
        return;
    };
    let s = store(
        azure_config(&ep, &unique("conf")),
        BackendMetrics::unregistered(),
    )
    .await
    .unwrap();
    conformance::run_all(s.as_ref(), "suite/").await;
}

#[tokio::test]
async fn azure_wrong_key_is_permanent_with_a_clear_message() {
    let Some(ep) = emulator_env("TIERD_AZURITE_ENDPOINT") else {
        return;
    };
    let mut c = azure_config(&ep, &unique("auth"));
    c.access_key = Some(Secret::new(
        "d3JvbmcgYnV0IHdlbGwtZm9ybWVkIGtleSBmb3IgdGVzdGluZyB0aGUgYmFja2VuZA==",
    ));
    let e = store(c, BackendMetrics::unregistered()).await.unwrap_err();
    assert!(matches!(e, BackendError::Permanent(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("403") && msg.contains("AuthorizationFailure")
            || msg.contains("AuthenticationFailed"),
        "{msg}"
    );
    assert!(
        !msg.contains("d3JvbmcgYnV0"),
        "the key must not appear in errors: {msg}"
    );
}

#[tokio::test]
async fn azure_access_tier_is_applied() {
    let Some(ep) = emulator_env("TIERD_AZURITE_ENDPOINT") else {
        return;
    };
    let s = store(
        azure_config(&ep, &unique("tier")),
        BackendMetrics::unregistered(),
    )
    .await
    .unwrap();
    for (key, size) in [("small", 1000usize), ("staged", 20 << 20)] {
        let opts = PutOptions {
            tier: Some("Cool".into()),
            ..Default::default()
        };
        s.put(key, conformance::pattern(size, 3), &opts)
            .await
            .unwrap();
        assert_eq!(s.get(key).await.unwrap(), conformance::pattern(size, 3));
    }
}

#[tokio::test]
async fn azure_injected_busy_and_500_are_retried() {
    let Some(ep) = emulator_env("TIERD_AZURITE_ENDPOINT") else {
        return;
    };
    let (proxy, via_proxy) = FaultProxy::in_front_of(&ep).await;
    let metrics = BackendMetrics::unregistered();
    let s = store(azure_config(&via_proxy, &unique("fault")), metrics.clone())
        .await
        .unwrap();
    proxy.inject(vec![azure_busy(), azure_internal(), azure_busy()]);
    s.put(
        "obj",
        Bytes::from_static(b"survives"),
        &PutOptions::default(),
    )
    .await
    .expect("put retried to success");
    proxy.inject(vec![azure_internal()]);
    assert_eq!(
        s.get("obj").await.expect("get retried to success").to_vec(),
        b"survives"
    );
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["azure", "put", "throttled"])
            .get(),
        2
    );
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["azure", "put", "transient"])
            .get(),
        1
    );
}

#[tokio::test]
async fn azure_upload_damaged_on_the_way_is_caught_and_sent_again() {
    let Some(ep) = emulator_env("TIERD_AZURITE_ENDPOINT") else {
        return;
    };
    let (proxy, via_proxy) = FaultProxy::in_front_of(&ep).await;
    let metrics = BackendMetrics::unregistered();
    let s = store(azure_config(&via_proxy, &unique("damage")), metrics.clone())
        .await
        .unwrap();
    // One Put Blob (checked against the MD5 the service computed) and one
    // staged upload (each block's Content-MD5 checked by the service).
    let uploads = [("blob", 1 << 20), ("blocks", 20 << 20)];
    damaged_uploads_are_repaired(s.as_ref(), &proxy, &metrics, "azure", uploads).await;
}
