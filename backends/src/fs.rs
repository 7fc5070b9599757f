//! A local directory as an object store: the embedded default.
//!
//! Invariant: an object is either absent or complete. Puts write a temporary
//! file under `<root>/.tmp`, fsync it, rename it into place and fsync the parent
//! directory, so a crash never leaves a partial object under a real key.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::{ctx, BackendError, Result};
use crate::{Body, ObjectMeta, ObjectStore, PutOptions};

#[derive(Debug)]
pub struct FsStore {
    name: String,
    root: PathBuf,
}

const TMP_DIR: &str = ".tmp";

impl FsStore {
    pub fn new(name: &str, root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(TMP_DIR)).map_err(|e| {
            BackendError::Permanent(ctx(
                name,
                "open",
                "",
                format!("cannot create {}: {e}", root.display()),
            ))
        })?;
        Ok(Self {
            name: name.to_string(),
            root: root.to_path_buf(),
        })
    }

    fn path(&self, op: &'static str, key: &str) -> Result<PathBuf> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".." || c == TMP_DIR);
        if bad {
            return Err(BackendError::Permanent(ctx(
                &self.name,
                op,
                key,
                "invalid key: empty, absolute, or with an empty, '.', '..' or '.tmp' component",
            )));
        }
        Ok(self.root.join(key))
    }

    fn io_err(&self, op: &'static str, key: &str, e: std::io::Error) -> BackendError {
        let c = ctx(&self.name, op, key, e.to_string());
        match e.kind() {
            ErrorKind::NotFound => BackendError::NotFound(c),
            // Only a put with `if_absent` links onto an existing name.
            ErrorKind::AlreadyExists => BackendError::PreconditionFailed(c),
            ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                BackendError::Transient(c)
            }
            _ => BackendError::Permanent(c),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r.map_err(|e| self.io_err(op, key, e)),
            Err(e) => Err(BackendError::Transient(ctx(
                &self.name,
                op,
                key,
                format!("I/O task failed: {e}"),
            ))),
        }
    }
}

fn put_atomic(root: &Path, path: &Path, data: &[u8], if_absent: bool) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(root);
    std::fs::create_dir_all(parent)?;
    let tmp = root
        .join(TMP_DIR)
        .join(format!("{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        crate::failpoint::hit("fs-put-before-rename");
        if if_absent {
            // link(2) fails with EEXIST instead of replacing: atomic and exclusive.
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)?;
        } else {
            std::fs::rename(&tmp, path)?;
        }
        std::fs::File::open(parent)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn read_range(path: &Path, range: Range<u64>) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    if range.start >= size && size > 0 {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!(
                "range starts at {} but the object is {size} bytes",
                range.start
            ),
        ));
    }
    let end = range.end.min(size);
    let mut buf = vec![0u8; end.saturating_sub(range.start) as usize];
    f.seek(SeekFrom::Start(range.start))?;
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// All keys under `root` starting with `prefix`, sorted.
fn walk(root: &Path, prefix: &str) -> std::io::Result<Vec<(String, u64)>> {
    // Start at the deepest directory the prefix names completely.
    let dir_part = prefix.rfind('/').map(|i| &prefix[..=i]).unwrap_or("");
    let mut out = Vec::new();
    let mut stack = vec![(root.join(dir_part), dir_part.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if rel.is_empty() && name == TMP_DIR {
                continue;
            }
            let key = format!("{rel}{name}");
            let ft = entry.file_type()?;
            if ft.is_dir() {
                let sub = format!("{key}/");
                if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                    stack.push((entry.path(), sub));
                }
            } else if key.starts_with(prefix) {
                out.push((key, entry.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[async_trait]
impl ObjectStore for FsStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        let path = self.path("put", key)?;
        let root = self.root.clone();
        let size = data.len() as u64;
        let if_absent = opts.if_absent;
        self.blocking("put", key, move || {
            put_atomic(&root, &path, &data, if_absent)
        })
        .await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag: None,
        })
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let path = self.path("get", key)?;
        self.blocking("get", key, move || std::fs::read(path))
            .await
            .map(Body::from)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path("get_range", key)?;
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        self.blocking("get_range", key, move || read_range(&path, range))
            .await
            .map(Bytes::from)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path("head", key)?;
        let size = self
            .blocking("head", key, move || {
                std::fs::metadata(path).map(|m| m.len())
            })
            .await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag: None,
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path("delete", key)?;
        self.blocking("delete", key, move || match std::fs::remove_file(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let root = self.root.clone();
        let p = prefix.to_string();
        let fut = async move { self.blocking("list", prefix, move || walk(&root, &p)).await };
        futures::stream::once(fut)
            .flat_map(|r| match r {
                Ok(v) => futures::stream::iter(
                    v.into_iter()
                        .map(|(key, size)| {
                            Ok(ObjectMeta {
                                key,
                                size,
                                etag: None,
                            })
                        })
                        .collect::<Vec<_>>(),
                )
                .boxed(),
                Err(e) => futures::stream::iter(vec![Err(e)]).boxed(),
            })
            .boxed()
    }

    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        let tmp = self.root.join(TMP_DIR);
        self.blocking("reclaim_partial", "", move || {
            let cutoff = std::time::UNIX_EPOCH + std::time::Duration::from_millis(before_ms);
            let mut removed = 0;
            let entries = match std::fs::read_dir(&tmp) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if old {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn create_container(&self) -> Result<()> {
        let root = self.root.join(TMP_DIR);
        self.blocking("create_container", "", move || {
            std::fs::create_dir_all(root)
        })
        .await
    }
}
