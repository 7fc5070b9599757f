//! The conformance suite and failure behaviour against real LocalStack S3.
//! Needs `TIERD_S3_ENDPOINT` (see localstack/with-emulators.sh).

mod common;

use std::sync::Arc;

use backends::{
    build, conformance, BackendConfig, BackendError, BackendMetrics, ObjectStore, PutOptions,
    S3Config, Secret,
};
use futures::StreamExt;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::*;

async fn store(c: S3Config, metrics: BackendMetrics) -> Arc<dyn ObjectStore> {
    build(
        "s3",
        &BackendConfig::S3(c),
        std::path::Path::new("/nonexistent"),
        metrics,
    )
    .await
    .expect("build s3 backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conformance() {
    let Some(ep) = emulator_env("TIERD_S3_ENDPOINT") else {
        return;
    };
    let s = store(
        s3_config(&ep, &unique("conf")),
        BackendMetrics::unregistered(),
    )
    .await;
    conformance::run_all(s.as_ref(), "suite/").await;
}

#[tokio::test]
async fn s3_storage_class_is_applied() {
    let Some(ep) = emulator_env("TIERD_S3_ENDPOINT") else {
        return;
    };
    let bucket = unique("sc");
    let s = store(s3_config(&ep, &bucket), BackendMetrics::unregistered()).await;
    let opts = PutOptions {
        tier: Some("STANDARD_IA".into()),
        ..Default::default()
    };
    s.put("ia", Bytes::from_static(b"cold"), &opts)
        .await
        .unwrap();
    // Ask S3 directly which storage class the object got.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&ep)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let head = client
        .head_object()
        .bucket(&bucket)
        .key("tierd/ia")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.storage_class().map(|c| c.as_str()),
        Some("STANDARD_IA")
    );
}

#[tokio::test]
async fn s3_missing_bucket_is_a_clear_error() {
    let Some(ep) = emulator_env("TIERD_S3_ENDPOINT") else {
        return;
    };
    let mut c = s3_config(&ep, &unique("absent"));
    c.create_bucket = false;
    let s = store(c, BackendMetrics::unregistered()).await;
    let e = s
        .put("k", Bytes::from_static(b"x"), &PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("NoSuchBucket"), "{e}");
}

#[tokio::test]
async fn s3_injected_slowdown_and_500_are_retried() {
    let Some(ep) = emulator_env("TIERD_S3_ENDPOINT") else {
        return;
    };
    let (proxy, via_proxy) = FaultProxy::in_front_of(&ep).await;
    let metrics = BackendMetrics::unregistered();
    let s = store(s3_config(&via_proxy, &unique("fault")), metrics.clone()).await;
    proxy.inject(vec![s3_slowdown(), s3_slowdown(), s3_internal()]);
    s.put(
        "obj",
        Bytes::from_static(b"survives"),
        &PutOptions::default(),
    )
    .await
    .expect("put retried to success");
    proxy.inject(vec![s3_internal(), s3_slowdown()]);
    assert_eq!(
        s.get("obj").await.expect("get retried to success").to_vec(),
        b"survives"
    );
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["s3", "put", "throttled"])
            .get(),
        2
    );
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["s3", "put", "transient"])
            .get(),
        1
    );
    assert_eq!(metrics.retries.with_label_values(&["s3", "get"]).get(), 2);
}

#[tokio::test]
async fn s3_upload_damaged_on_the_way_is_caught_and_sent_again() {
    let Some(ep) = emulator_env("TIERD_S3_ENDPOINT") else {
        return;
    };
    let (proxy, via_proxy) = FaultProxy::in_front_of(&ep).await;
    let metrics = BackendMetrics::unregistered();
    let s = store(s3_config(&via_proxy, &unique("damage")), metrics.clone()).await;
    // One PutObject and one multipart upload (20 MiB is over the 16 MiB
    // default threshold), each part with a CRC32 the service checks.
    let uploads = [("object", 1 << 20), ("multipart", 20 << 20)];
    damaged_uploads_are_repaired(s.as_ref(), &proxy, &metrics, "s3", uploads).await;
}

/// Real S3 turns away a request signed with the wrong secret or an unknown
/// key id; LocalStack serves any signature, so the proxy makes S3's check
/// (see `common::sigv4`). Correctly signed traffic of every kind passes the
/// same check first: the verifier is not one that refuses everything.
#[tokio::test]
async fn s3_wrong_credentials_are_permanent_with_a_clear_message() {
    let Some(ep) = emulator_env("TIERD_S3_ENDPOINT") else {
        return;
    };
    let (proxy, via_proxy) = FaultProxy::in_front_of(&ep).await;
    proxy.require_s3_key("test", "test");
    let bucket = unique("auth");
    let good = store(
        s3_config(&via_proxy, &bucket),
        BackendMetrics::unregistered(),
    )
    .await;
    let big = conformance::pattern(20 << 20, 3);
    good.put(
        "dir/small",
        Bytes::from_static(b"signed"),
        &PutOptions::default(),
    )
    .await
    .expect("a correctly signed put passes the check");
    good.put("dir/multi part", big.clone(), &PutOptions::default())
        .await
        .expect("a correctly signed multipart upload passes the check");
    assert!(good.get("dir/multi part").await.unwrap() == big);
    assert_eq!(
        &good.get_range("dir/small", 1..4).await.unwrap()[..],
        b"ign"
    );
    assert_eq!(good.head("dir/small").await.unwrap().size, 6);
    let listed: Vec<_> = good.list("dir/").collect::<Vec<_>>().await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    good.delete("dir/small").await.unwrap();
    assert_eq!(proxy.unsigned.load(Ordering::SeqCst), 0);

    let wrong_secret = "wr0ng-s3cret-for-the-test";
    let cases = [
        ("test", wrong_secret, "SignatureDoesNotMatch"),
        ("AKIAUNKNOWNKEY", "test", "InvalidAccessKeyId"),
    ];
    for (key_id, secret, code) in cases {
        let metrics = BackendMetrics::unregistered();
        let mut c = s3_config(&via_proxy, &bucket);
        c.access_key_id = Some(key_id.into());
        c.secret_access_key = Some(Secret::new(secret));
        c.create_bucket = false;
        let bad = store(c, metrics.clone()).await;
        let e = bad
            .get("dir/multi part")
            .await
            .expect_err("wrong credentials must not read");
        assert!(matches!(e, BackendError::Permanent(_)), "{code}: {e}");
        let msg = e.to_string();
        assert!(msg.contains("403") && msg.contains(code), "{msg}");
        assert!(msg.contains("dir/multi part"), "names the key: {msg}");
        assert!(
            !msg.contains(wrong_secret),
            "the secret must not appear: {msg}"
        );
        let e = bad
            .put(
                "dir/other",
                Bytes::from_static(b"x"),
                &PutOptions::default(),
            )
            .await
            .expect_err("wrong credentials must not write");
        assert!(matches!(e, BackendError::Permanent(_)), "{code}: {e}");
        assert_eq!(
            metrics.retries.with_label_values(&["s3", "get"]).get()
                + metrics.retries.with_label_values(&["s3", "put"]).get(),
            0,
            "a refused signature is not retried"
        );
    }
    assert_eq!(proxy.unsigned.load(Ordering::SeqCst), 4);
    assert!(
        matches!(good.head("dir/other").await, Err(BackendError::NotFound(_))),
        "nothing was written with wrong credentials"
    );
}
