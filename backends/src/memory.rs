//! An object store in memory: for tests, the simulator and tools, and the
//! backend the conformance suite runs against in plain `cargo test`.
//!
//! [`MemoryStore`] owns a sorted map from key to object. Invariant: it keeps
//! the [`ObjectStore`] contract exactly as the real backends do (an object is
//! absent or complete, overwrites replace, missing keys are NotFound for every
//! read, deleting a missing key succeeds, ranges are cut at the end and one
//! starting at or past a non-empty object's end is Permanent, listing is in
//! key order and page by page), so code tested against it behaves the same
//! on fs, S3 and Azure. Keys follow the fs backend's rules, the strictest of
//! the three: non-empty, not absolute, no empty, `.` or `..` component.
//! Nothing persists past the store.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, Range};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;

use crate::error::{ctx, BackendError, Result};
use crate::{Body, ObjectMeta, ObjectStore, Op, PutOptions};

/// Keys per listing page, as S3's default page.
const PAGE: usize = 1000;

struct Object {
    data: Bytes,
    /// Changes with every put of the key.
    etag: String,
    /// The tier the put asked for, if any.
    tier: Option<String>,
}

#[derive(Default)]
struct Objects {
    by_key: BTreeMap<String, Object>,
    /// Puts so far; each object's etag is the number of the put that wrote it.
    puts: u64,
}

/// An [`ObjectStore`] in memory.
pub struct MemoryStore {
    name: String,
    objects: Mutex<Objects>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the objects: they may be many megabytes.
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .field("objects", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store called `name` (in errors and metrics).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            objects: Mutex::new(Objects::default()),
        }
    }

    /// Objects stored.
    pub fn len(&self) -> usize {
        self.objects.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes stored, over all objects.
    pub fn total_bytes(&self) -> u64 {
        let objects = self.objects.lock();
        objects.by_key.values().map(|o| o.data.len() as u64).sum()
    }

    /// The tier (`PutOptions::tier`) the object under `key` was put with.
    pub fn tier_of(&self, key: &str) -> Option<String> {
        let objects = self.objects.lock();
        objects.by_key.get(key).and_then(|o| o.tier.clone())
    }

    fn check_key(&self, op: Op, key: &str) -> Result<()> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
        if bad {
            return Err(BackendError::Permanent(ctx(
                &self.name,
                op.as_str(),
                key,
                "invalid key: empty, absolute, or with an empty, '.' or '..' component",
            )));
        }
        Ok(())
    }

    fn not_found(&self, op: Op, key: &str) -> BackendError {
        BackendError::NotFound(ctx(&self.name, op.as_str(), key, "no such object"))
    }

    fn read(&self, op: Op, key: &str) -> Result<(Bytes, Option<String>)> {
        self.check_key(op, key)?;
        let objects = self.objects.lock();
        let o = objects
            .by_key
            .get(key)
            .ok_or_else(|| self.not_found(op, key))?;
        Ok((o.data.clone(), Some(o.etag.clone())))
    }

    /// Up to [`PAGE`] keys starting with `prefix`, after `after` if given.
    fn page(&self, prefix: &str, after: Option<&str>) -> Vec<ObjectMeta> {
        let objects = self.objects.lock();
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(prefix),
        };
        objects
            .by_key
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(PAGE)
            .map(|(k, o)| ObjectMeta {
                key: k.clone(),
                size: o.data.len() as u64,
                etag: Some(o.etag.clone()),
            })
            .collect()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        self.check_key(Op::Put, key)?;
        let mut objects = self.objects.lock();
        if opts.if_absent && objects.by_key.contains_key(key) {
            return Err(BackendError::PreconditionFailed(ctx(
                "memory",
                "put",
                key,
                "an object with this key exists",
            )));
        }
        objects.puts += 1;
        let etag = format!("\"{:x}\"", objects.puts);
        let size = data.len() as u64;
        objects.by_key.insert(
            key.to_string(),
            Object {
                data,
                etag: etag.clone(),
                tier: opts.tier.clone(),
            },
        );
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag: Some(etag),
        })
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.read(Op::Get, key).map(|(data, _)| data.into())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let (data, _) = self.read(Op::GetRange, key)?;
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let size = data.len() as u64;
        if range.start >= size && size > 0 {
            return Err(BackendError::Permanent(ctx(
                &self.name,
                Op::GetRange.as_str(),
                key,
                format!(
                    "range starts at {} but the object is {size} bytes",
                    range.start
                ),
            )));
        }
        let start = range.start.min(size) as usize;
        let end = range.end.min(size) as usize;
        Ok(data.slice(start..end))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let (data, etag) = self.read(Op::Head, key)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: data.len() as u64,
            etag,
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check_key(Op::Delete, key)?;
        self.objects.lock().by_key.remove(key);
        Ok(())
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // Page by page, as the services list: a page is a consistent snapshot,
        // and keys put or deleted between pages may or may not appear.
        let pages = futures::stream::unfold(Some(None::<String>), move |state| async move {
            let after = state?;
            let page = self.page(prefix, after.as_deref());
            let next = (page.len() == PAGE)
                .then(|| page.last().map(|m| m.key.clone()))
                .flatten();
            Some((page, next.map(Some)))
        });
        pages
            .flat_map(|page| futures::stream::iter(page.into_iter().map(Ok)))
            .boxed()
    }

    async fn create_container(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn memory_conformance() {
        let s = MemoryStore::new("mem");
        crate::conformance::run_all(&s, "t1/").await;
        crate::conformance::run_all(&s, "t2/").await;
    }

    #[tokio::test]
    async fn etags_change_on_overwrite_and_tiers_are_kept() {
        let s = MemoryStore::new("mem");
        let opts = PutOptions {
            tier: Some("Cool".into()),
            ..Default::default()
        };
        let a = s.put("k", Bytes::from_static(b"1"), &opts).await.unwrap();
        let b = s
            .put("k", Bytes::from_static(b"2"), &PutOptions::default())
            .await
            .unwrap();
        assert_ne!(a.etag, b.etag);
        assert_eq!(s.head("k").await.unwrap().etag, b.etag);
        assert_eq!(s.tier_of("k"), None);
        s.put("c", Bytes::new(), &opts).await.unwrap();
        assert_eq!(s.tier_of("c").as_deref(), Some("Cool"));
        assert_eq!((s.len(), s.total_bytes()), (2, 1));
    }

    #[tokio::test]
    async fn empty_objects_and_bad_keys() {
        let s = MemoryStore::new("mem");
        s.put("empty", Bytes::new(), &PutOptions::default())
            .await
            .unwrap();
        assert!(s.get_range("empty", 0..10).await.unwrap().is_empty());
        assert!(s.get_range("empty", 5..10).await.unwrap().is_empty());
        for bad in ["", "/abs", "a/../b", "a//b", "a/"] {
            let e = s
                .put(bad, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap_err();
            assert!(matches!(e, BackendError::Permanent(_)), "{bad:?}: {e}");
        }
        assert_eq!(s.len(), 1, "only the empty object was stored");
    }

    #[tokio::test]
    async fn a_key_equal_to_the_prefix_is_listed_and_pages_continue_after_it() {
        let s = MemoryStore::new("mem");
        for k in ["a", "a/b", "ab", "b"] {
            s.put(k, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        }
        let keys: Vec<String> = s.list("a").map_ok(|m| m.key).try_collect().await.unwrap();
        assert_eq!(keys, ["a", "a/b", "ab"]);
        let all: Vec<String> = s.list("").map_ok(|m| m.key).try_collect().await.unwrap();
        assert_eq!(all, ["a", "a/b", "ab", "b"]);
    }
}
