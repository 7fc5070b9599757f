//! The behaviour every backend must show, written once. Each backend's tests
//! call [`run_all`] (or single checks) with a fresh key prefix. These functions
//! panic on a violation: they are test code that lives here, behind the
//! crate's `testing` feature, so the tests of every crate can share it
//! (`backends = { path = "../backends", features = ["testing"] }` in
//! `[dev-dependencies]`). The in-memory store runs it in plain `cargo test`;
//! fs too; S3 and Azure against their emulators.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::{BackendError, ObjectStore, PutOptions};

/// Deterministic incompressible bytes.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn opts() -> PutOptions {
    PutOptions::default()
}

/// 0 B, 1 B, 4 MiB and 40 MiB (multipart or staged blocks) round trips.
pub async fn round_trips(s: &dyn ObjectStore, prefix: &str) {
    for (i, len) in [0usize, 1, 4 << 20, 40 << 20].into_iter().enumerate() {
        let key = format!("{prefix}rt/{len}");
        let data = pattern(len, i as u64 + 1);
        let meta = s
            .put(&key, data.clone(), &opts())
            .await
            .unwrap_or_else(|e| panic!("put {len}: {e}"));
        assert_eq!(meta.size, len as u64);
        assert_eq!(
            s.head(&key)
                .await
                .unwrap_or_else(|e| panic!("head {len}: {e}"))
                .size,
            len as u64
        );
        let back = s
            .get(&key)
            .await
            .unwrap_or_else(|e| panic!("get {len}: {e}"));
        assert!(
            back == data,
            "{len}-byte object came back different ({} bytes)",
            back.len()
        );
    }
    // Overwrite replaces.
    let key = format!("{prefix}rt/1");
    s.put(&key, Bytes::from_static(b"second"), &opts())
        .await
        .unwrap();
    assert_eq!(s.get(&key).await.unwrap().to_vec(), b"second");
}

/// Ranged reads at the edges of an object.
pub async fn ranged_reads(s: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}range/obj");
    let data = pattern(10_000, 7);
    s.put(&key, data.clone(), &opts()).await.unwrap();
    for r in [0..1u64, 9_999..10_000, 0..10_000, 4_096..8_192, 1..9_999] {
        let got = s
            .get_range(&key, r.clone())
            .await
            .unwrap_or_else(|e| panic!("range {r:?}: {e}"));
        assert!(
            got == data.slice(r.start as usize..r.end as usize),
            "range {r:?} differs"
        );
    }
    let got = s.get_range(&key, 5_000..20_000).await.unwrap();
    assert!(
        got == data.slice(5_000..),
        "a range past the end must be cut at the end"
    );
    assert!(s.get_range(&key, 100..100).await.unwrap().is_empty());
    match s.get_range(&key, 10_000..10_001).await {
        Err(BackendError::Permanent(_)) => {}
        other => panic!("a range starting at the end must be a permanent error, got {other:?}"),
    }
}

/// Listing more than one page (1000 keys) returns every key once, in order,
/// and nothing outside the prefix.
pub async fn listing_pages(s: &dyn ObjectStore, prefix: &str) {
    let n = 1_100;
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}list/k{i:05}")).collect();
    futures::stream::iter(keys.clone())
        .map(|k| async move {
            s.put(&k, Bytes::from(k.clone().into_bytes()), &opts())
                .await
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_or_else(|e| panic!("put for listing: {e}"));
    s.put(
        &format!("{prefix}listing-not/x"),
        Bytes::from_static(b"x"),
        &opts(),
    )
    .await
    .unwrap();
    let listed: Vec<String> = s
        .list(&format!("{prefix}list/"))
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(listed.len(), n, "listed {} of {n} keys", listed.len());
    assert_eq!(listed, keys, "listing must be complete and in key order");
    let sizes: Vec<u64> = s
        .list(&format!("{prefix}list/k0000"))
        .map_ok(|m| m.size)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        sizes.len(),
        10,
        "a partial-name prefix lists k00000..k00009"
    );
    assert!(sizes.iter().all(|&sz| sz == (prefix.len() + 11) as u64));
}

/// Deleting is idempotent; deleted objects are gone.
pub async fn deletes(s: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}del/obj");
    s.delete(&key)
        .await
        .unwrap_or_else(|e| panic!("deleting a missing key must succeed: {e}"));
    s.put(&key, Bytes::from_static(b"bye"), &opts())
        .await
        .unwrap();
    s.delete(&key).await.unwrap();
    s.delete(&key).await.unwrap();
    assert!(s.get(&key).await.unwrap_err().is_not_found());
}

/// Missing keys are NotFound for every read.
pub async fn missing_keys(s: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}missing/none");
    for (what, r) in [
        ("get", s.get(&key).await.map(|_| ())),
        ("get_range", s.get_range(&key, 0..10).await.map(|_| ())),
        ("head", s.head(&key).await.map(|_| ())),
    ] {
        match r {
            Err(BackendError::NotFound(c)) => assert!(c.to_string().contains(&key), "{what}: {c}"),
            other => panic!("{what} of a missing key: expected NotFound, got {other:?}"),
        }
    }
}

/// Concurrent puts of distinct keys all land intact.
pub async fn concurrent_puts(s: &dyn ObjectStore, prefix: &str) {
    let keys: Vec<(String, Bytes)> = (0..32)
        .map(|i| (format!("{prefix}conc/{i}"), pattern(256 << 10, 100 + i)))
        .collect();
    futures::stream::iter(keys.clone())
        .map(|(k, d)| async move { s.put(&k, d, &opts()).await })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_or_else(|e| panic!("concurrent put: {e}"));
    for (k, d) in keys {
        assert!(s.get(&k).await.unwrap() == d, "{k} differs");
    }
    let listed: BTreeSet<String> = s
        .list(&format!("{prefix}conc/"))
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 32);
}

/// A put with `if_absent` stores a new key once: the second such put fails
/// as PreconditionFailed and leaves the first object, and of eight racing
/// for one key exactly one lands (conditional PUT on S3 and Azure, a hard
/// link on fs).
pub async fn conditional_puts(s: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}cond/manifest");
    let once = PutOptions::if_absent();
    s.put(&key, Bytes::from_static(b"first"), &once)
        .await
        .unwrap_or_else(|e| panic!("first conditional put: {e}"));
    match s.put(&key, Bytes::from_static(b"second"), &once).await {
        Err(BackendError::PreconditionFailed(_)) => {}
        other => panic!("a conditional put over an existing object gave {other:?}"),
    }
    assert_eq!(s.get(&key).await.unwrap().to_vec(), b"first");
    let race = format!("{prefix}cond/race");
    let results: Vec<_> = futures::stream::iter(0..8u64)
        .map(|i| {
            let race = race.clone();
            async move {
                (
                    i,
                    s.put(&race, pattern(1000, i), &PutOptions::if_absent())
                        .await,
                )
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let won: Vec<u64> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(won.len(), 1, "conditional puts that landed: {results:?}");
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, BackendError::PreconditionFailed(_)),
                "a losing conditional put failed otherwise: {e}"
            );
        }
    }
    assert!(s.get(&race).await.unwrap() == pattern(1000, won[0]));
}

/// Everything above.
pub async fn run_all(s: &dyn ObjectStore, prefix: &str) {
    round_trips(s, prefix).await;
    ranged_reads(s, prefix).await;
    listing_pages(s, prefix).await;
    deletes(s, prefix).await;
    missing_keys(s, prefix).await;
    concurrent_puts(s, prefix).await;
    conditional_puts(s, prefix).await;
}
