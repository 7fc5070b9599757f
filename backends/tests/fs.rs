//! The conformance suite against the local-directory backend, and what only
//! the fs backend promises (atomic puts, key validation).

use backends::{
    build, conformance, BackendConfig, BackendMetrics, FsConfig, ObjectStore, PutOptions,
};
use bytes::Bytes;

async fn store(root: &std::path::Path) -> std::sync::Arc<dyn ObjectStore> {
    build(
        "local",
        &BackendConfig::Fs(FsConfig::default()),
        root,
        BackendMetrics::unregistered(),
    )
    .await
    .expect("build fs backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    conformance::run_all(s.as_ref(), "t1/").await;
}

#[tokio::test]
async fn fs_puts_leave_no_temporary_files_and_reject_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    s.put("a/b/c", Bytes::from_static(b"x"), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
        0
    );
    for bad in ["", "/abs", "a/../b", "a//b", ".tmp/x"] {
        let e = s
            .put(bad, Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(e, backends::BackendError::Permanent(_)),
            "{bad:?}: {e}"
        );
    }
}
