//! Azure Blob Storage (and Azurite) through `azure_storage_blobs` 0.21.
//!
//! That crate line is legacy upstream; everything that touches it is in this
//! file, so moving to another Azure client changes nothing else. The SDK's own
//! retries are off: [`crate::RetryStore`] retries in one place.
//!
//! Integrity of uploads: no object is reported written unless an MD5 of the
//! bytes we hold matches one the service computed over the bytes it got.
//! Small uploads are one Put Blob whose MD5 is hashed on a blocking thread
//! while the body is on the wire, then compared with the Content-MD5 the
//! service answers with (it computes one for every block blob); hashing first
//! and sending the digest as a header would put ~9 ms per 4 MiB in front of
//! every upload. A service that answers without a Content-MD5 gets the digest
//! as a request header from then on, and verifies it itself. Large uploads
//! are staged blocks, each with a Content-MD5 header the service verifies,
//! committed by a block list. A mismatch either way is transient: the data we
//! hold is intact, so the retry (same key, never yet referenced) repairs it.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use azure_core::error::ErrorKind as AzKind;
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::blob::{BlobBlockType, BlockList};
use azure_storage_blobs::prelude::*;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::config::AzureConfig;
use crate::error::{chain, ctx, BackendError, Result};
use crate::{Body, ObjectMeta, ObjectStore, PutOptions};

/// Blocks staged at once within one upload.
const BLOCK_CONCURRENCY: usize = 4;

#[derive(Debug)]
pub struct AzureStore {
    name: String,
    container: ContainerClient,
    prefix: String,
    access_tier: Option<String>,
    block_threshold: u64,
    block_size: u64,
    /// Set once the service answered a Put Blob without a Content-MD5: the
    /// digest then goes in front, as a header.
    md5_in_header: AtomicBool,
}

fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

/// MD5 on a blocking thread, so that hashing never holds up a runtime
/// worker (and runs on another core while the body is sent).
async fn md5_blocking(data: Bytes) -> std::result::Result<[u8; 16], String> {
    match tokio::task::spawn_blocking(move || md5(&data)).await {
        Ok(d) => Ok(d),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(format!("hashing the upload: {e}")),
    }
}

/// A request context that adds a Content-MD5 header. The crate's Put Block
/// takes a `hash` but never sends it (0.21), so the header goes in through
/// the pipeline's custom-header step, which runs before the request is signed.
fn content_md5(digest: [u8; 16]) -> azure_core::Context {
    let mut headers = azure_core::headers::Headers::new();
    headers.add(Hash::MD5(digest));
    let mut ctx = azure_core::Context::new();
    ctx.insert(azure_core::CustomHeaders::from(headers));
    ctx
}

fn b64(d: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(d)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn tier(s: &str) -> Option<AccessTier> {
    match s {
        "Hot" => Some(AccessTier::Hot),
        "Cool" => Some(AccessTier::Cool),
        "Cold" => Some(AccessTier::Cold),
        _ => None,
    }
}

impl AzureStore {
    pub fn new(name: &str, c: &AzureConfig) -> Result<Self> {
        let account = if c.account.is_empty() {
            env("AZURE_STORAGE_ACCOUNT").unwrap_or_default()
        } else {
            c.account.clone()
        };
        if account.is_empty() {
            return Err(BackendError::Permanent(ctx(
                name,
                "configure",
                "",
                "account: required (or set AZURE_STORAGE_ACCOUNT)",
            )));
        }
        let key = c
            .access_key
            .as_ref()
            .map(|s| s.expose().to_string())
            .or_else(|| env("AZURE_STORAGE_KEY"));
        let sas = c
            .sas_token
            .as_ref()
            .map(|s| s.expose().to_string())
            .or_else(|| env("AZURE_STORAGE_SAS_TOKEN"));
        let creds = match (key, sas) {
            (Some(k), _) => StorageCredentials::access_key(account.clone(), k),
            (None, Some(s)) => StorageCredentials::sas_token(s).map_err(|e| {
                BackendError::Permanent(ctx(name, "configure", "", format!("sas_token: {e}")))
            })?,
            (None, None) => StorageCredentials::anonymous(),
        };
        let location = match &c.endpoint {
            Some(uri) => CloudLocation::Custom {
                account: account.clone(),
                uri: uri.trim_end_matches('/').to_string(),
            },
            None => CloudLocation::Public { account },
        };
        let container = ClientBuilder::with_location(location, creds)
            .retry(azure_core::RetryOptions::none())
            .container_client(c.container.clone());
        Ok(Self {
            name: name.to_string(),
            container,
            prefix: c.prefix.clone(),
            access_tier: c.access_tier.clone(),
            block_threshold: c.block_threshold,
            block_size: c.block_size,
            md5_in_header: AtomicBool::new(false),
        })
    }

    /// Blobs under the prefix that have only uncommitted blocks, with their
    /// last-modified time (Unix ms); None when the credentials cannot sign a
    /// listing (a SAS token or anonymous access: Azure itself discards
    /// uncommitted blocks after a week). The SDK cannot parse a listing that
    /// includes uncommitted blobs (their properties lack Content-Type), so
    /// this one goes out as a plain request on a short-lived signed URL.
    async fn uncommitted_blobs(&self) -> Result<Option<Vec<(String, i128)>>> {
        let fail = |m: String| BackendError::Transient(ctx(&self.name, "reclaim_partial", "", m));
        let expiry = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
        let perms = azure_storage::shared_access_signature::service_sas::BlobSasPermissions {
            list: true,
            ..Default::default()
        };
        let sas = match self.container.shared_access_signature(perms, expiry).await {
            Ok(sas) => sas,
            Err(e) if matches!(e.kind(), AzKind::Credential) => return Ok(None),
            Err(e) => return Err(self.err("reclaim_partial", "", e)),
        };
        let base = self
            .container
            .generate_signed_container_url(&sas)
            .map_err(|e| self.err("reclaim_partial", "", e))?;
        let client = reqwest::Client::new();
        let (mut all, mut committed) = (Vec::new(), std::collections::HashSet::new());
        for include in [true, false] {
            let mut marker = String::new();
            loop {
                let mut url = base.clone();
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("restype", "container")
                        .append_pair("comp", "list")
                        .append_pair("prefix", &self.prefix);
                    if include {
                        q.append_pair("include", "uncommittedblobs");
                    }
                    if !marker.is_empty() {
                        q.append_pair("marker", &marker);
                    }
                }
                let body = client
                    .get(url.as_str())
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| fail(format!("list: {e}")))?
                    .text()
                    .await
                    .map_err(|e| fail(format!("list: {e}")))?;
                for blob in body.split("<Blob>").skip(1) {
                    let Some(name) = between(blob, "<Name>", "</Name>") else {
                        continue;
                    };
                    if include {
                        let ms = between(blob, "<Last-Modified>", "</Last-Modified>")
                            .and_then(|t| azure_core::date::parse_rfc1123(t).ok())
                            .map(|t| t.unix_timestamp_nanos() / 1_000_000)
                            .unwrap_or(i128::MAX);
                        all.push((name.to_string(), ms));
                    } else {
                        committed.insert(name.to_string());
                    }
                }
                marker = between(&body, "<NextMarker>", "</NextMarker>")
                    .unwrap_or_default()
                    .to_string();
                if marker.is_empty() {
                    break;
                }
            }
        }
        all.retain(|(name, _)| !committed.contains(name));
        Ok(Some(all))
    }

    fn blob(&self, key: &str) -> BlobClient {
        self.container
            .blob_client(format!("{}{}", self.prefix, key))
    }

    fn err(&self, op: &'static str, key: &str, e: azure_core::Error) -> BackendError {
        match e.kind() {
            AzKind::HttpResponse { status, error_code } => {
                let code = error_code.clone().unwrap_or_default();
                let status = *status as u16;
                // The service's own words ("Provided contentMD5 doesn't
                // match."), where the crate's Display only repeats the status.
                let said = e
                    .as_http_error()
                    .and_then(|h| h.error_message())
                    .map(|m| m.lines().next().unwrap_or(m).trim().to_string())
                    .unwrap_or_else(|| e.to_string());
                let c = ctx(&self.name, op, key, format!("HTTP {status} {code}: {said}"));
                // Azurite says InvalidOperation where the service says Md5Mismatch.
                let md5_mismatch =
                    code == "Md5Mismatch" || (code == "InvalidOperation" && said.contains("MD5"));
                if md5_mismatch {
                    return BackendError::Transient(c);
                }
                match code.as_str() {
                    "ServerBusy" | "OperationTimedOut" => BackendError::Throttled(c),
                    "AuthenticationFailed" | "AuthorizationFailure" => BackendError::Permanent(c),
                    "BlobNotFound" | "ContainerNotFound" => BackendError::NotFound(c),
                    // What `If-None-Match: *` on an existing blob answers.
                    "BlobAlreadyExists" => BackendError::PreconditionFailed(c),
                    _ => BackendError::from_status(status, c),
                }
            }
            AzKind::Io => BackendError::Transient(ctx(&self.name, op, key, chain(&e))),
            AzKind::Credential | AzKind::DataConversion | AzKind::MockFramework => {
                BackendError::Permanent(ctx(&self.name, op, key, chain(&e)))
            }
            AzKind::Other => BackendError::Transient(ctx(&self.name, op, key, chain(&e))),
        }
    }

    fn access_tier(&self, opts: &PutOptions) -> Option<AccessTier> {
        opts.tier
            .as_deref()
            .or(self.access_tier.as_deref())
            .and_then(tier)
    }

    /// One Put Blob, verified against the service's MD5 (see the module docs).
    async fn put_blob(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<String> {
        let in_header = self.md5_in_header.load(Ordering::Relaxed);
        let hashing = md5_blocking(data.clone());
        let mut req = self.blob(key).put_block_blob(data.clone());
        if let Some(t) = self.access_tier(opts) {
            req = req.access_tier(t);
        }
        if opts.if_absent {
            req = req.if_match(azure_core::request_options::IfMatchCondition::NotMatch(
                "*".to_string(),
            ));
        }
        let hash_err = |m| BackendError::Transient(ctx(&self.name, "put", key, m));
        let (sent, ours) = if in_header {
            let ours = hashing.await.map_err(hash_err)?;
            (req.hash(Hash::MD5(ours)).await, ours)
        } else {
            let (sent, ours) = tokio::join!(req.into_future(), hashing);
            (sent, ours.map_err(hash_err)?)
        };
        let out = sent.map_err(|e| self.err("put", key, e))?;
        match out.content_md5 {
            Some(theirs) if theirs.as_slice() == &ours => Ok(out.etag),
            Some(theirs) => Err(BackendError::Transient(ctx(
                &self.name,
                "put",
                key,
                format!(
                    "the service stored different bytes than were sent: its Content-MD5 is {}, ours {}",
                    b64(theirs.as_slice()),
                    b64(&ours)
                ),
            ))),
            // Sent with the header, the service itself checked the digest.
            None if in_header => Ok(out.etag),
            None => {
                tracing::warn!(
                    backend = %self.name,
                    "the service answered Put Blob without a Content-MD5; sending it as a request header from now on"
                );
                self.md5_in_header.store(true, Ordering::Relaxed);
                Box::pin(self.put_blob(key, data, opts)).await
            }
        }
    }

    async fn put_blocks(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<String> {
        let blob = self.blob(key);
        let size = self.block_size as usize;
        // Fixed-width ids: Azure requires every id of a blob to have the same length.
        let blocks: Vec<(BlockId, Bytes)> = (0..data.len().div_ceil(size))
            .map(|i| {
                (
                    BlockId::new(format!("tierd-{i:08}")),
                    data.slice(i * size..((i + 1) * size).min(data.len())),
                )
            })
            .collect();
        let ids: Vec<BlockId> = blocks.iter().map(|(id, _)| id.clone()).collect();
        futures::stream::iter(blocks)
            .map(|(id, body)| {
                let blob = blob.clone();
                async move {
                    let digest = md5_blocking(body.clone())
                        .await
                        .map_err(|m| BackendError::Transient(ctx(&self.name, "put", key, m)))?;
                    blob.put_block(id, body)
                        .context(content_md5(digest))
                        .await
                        .map_err(|e| self.err("put", key, e))
                }
            })
            .buffer_unordered(BLOCK_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        crate::failpoint::hit("azure-blocks-before-commit");
        let list = BlockList {
            blocks: ids
                .into_iter()
                .map(BlobBlockType::new_uncommitted)
                .collect(),
        };
        let mut req = blob.put_block_list(list);
        if let Some(t) = self.access_tier(opts) {
            req = req.access_tier(t);
        }
        let out = req.await.map_err(|e| self.err("put", key, e))?;
        Ok(out.etag)
    }
}

#[async_trait]
impl ObjectStore for AzureStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        let size = data.len() as u64;
        // A conditional put is one request: a block list would leave the
        // blocks uncommitted when the condition fails.
        let etag = if size >= self.block_threshold && !opts.if_absent {
            self.put_blocks(key, data, opts).await?
        } else {
            self.put_blob(key, data, opts).await?
        };
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag: Some(etag),
        })
    }

    async fn get(&self, key: &str) -> Result<Body> {
        // One GET of a range that covers any blob: no HEAD round trip first.
        // (An empty blob answers 416; get_range turns that into empty bytes.)
        self.get_range(key, 0..(1 << 62)).await.map(Body::from)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        // One request for the whole range: the chunk size covers it.
        let mut stream = self
            .blob(key)
            .get()
            .range(range.clone())
            .chunk_size(range.end - range.start)
            .into_stream();
        let mut out = Vec::new();
        if let Some(page) = stream.next().await {
            let mut page = match page {
                Ok(p) => p,
                Err(e) => {
                    let err = self.err("get_range", key, e);
                    // Azure answers 416 for any range of an empty blob; the
                    // contract says an empty object reads as empty.
                    if matches!(&err, BackendError::Permanent(c) if c.message.contains("HTTP 416"))
                        && self.head(key).await?.size == 0
                    {
                        return Ok(Bytes::new());
                    }
                    return Err(err);
                }
            };
            // Sized from the response's Content-Length and filled chunk by
            // chunk: one copy of the body (the crate's own collect() grows a
            // Vec and copies it twice more).
            let len = page
                .blob
                .properties
                .content_length
                .min(range.end - range.start);
            out.reserve_exact(len.min(1 << 30) as usize);
            while let Some(chunk) = page.data.next().await {
                let chunk = chunk.map_err(|e| {
                    BackendError::Transient(ctx(
                        &self.name,
                        "get_range",
                        key,
                        format!("reading body: {e}"),
                    ))
                })?;
                out.extend_from_slice(&chunk);
            }
        }
        if out.is_empty() {
            // Azurite answers a range past the end with an empty body where the
            // service answers 416: hold every backend to the same contract.
            let size = self.head(key).await?.size;
            if size > 0 && range.start >= size {
                return Err(BackendError::Permanent(ctx(
                    &self.name,
                    "get_range",
                    key,
                    format!(
                        "range starts at {} but the object is {size} bytes",
                        range.start
                    ),
                )));
            }
        }
        Ok(Bytes::from(out))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let p = self
            .blob(key)
            .get_properties()
            .await
            .map_err(|e| self.err("head", key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: p.blob.properties.content_length,
            etag: Some(p.blob.properties.etag.to_string()),
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.blob(key).delete().await {
            Ok(_) => Ok(()),
            Err(e) => match self.err("delete", key, e) {
                BackendError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let full = format!("{}{}", self.prefix, prefix);
        self.container
            .list_blobs()
            .prefix(full)
            .into_stream()
            .map(move |page| match page {
                Ok(page) => {
                    let items: Vec<Result<ObjectMeta>> = page
                        .blobs
                        .blobs()
                        .filter_map(|b| {
                            let key = b.name.strip_prefix(self.prefix.as_str())?.to_string();
                            Some(Ok(ObjectMeta {
                                key,
                                size: b.properties.content_length,
                                etag: Some(b.properties.etag.to_string()),
                            }))
                        })
                        .collect();
                    futures::stream::iter(items).boxed()
                }
                Err(e) => futures::stream::iter(vec![Err(self.err("list", prefix, e))]).boxed(),
            })
            .flatten()
            .boxed()
    }

    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        let Some(uncommitted) = self.uncommitted_blobs().await? else {
            return Ok(0);
        };
        let mut removed = 0;
        for (name, modified_ms) in uncommitted {
            if modified_ms >= before_ms as i128 {
                continue;
            }
            // Committing an empty block list discards the uncommitted blocks;
            // the empty blob it leaves is then deleted.
            let blob = self.container.blob_client(&name);
            blob.put_block_list(BlockList { blocks: Vec::new() })
                .await
                .map_err(|e| self.err("reclaim_partial", &name, e))?;
            blob.delete()
                .await
                .map_err(|e| self.err("reclaim_partial", &name, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn create_container(&self) -> Result<()> {
        match self.container.create().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let exists = matches!(e.kind(), AzKind::HttpResponse { status, .. } if *status as u16 == 409);
                if exists {
                    Ok(())
                } else {
                    Err(self.err("create_container", "", e))
                }
            }
        }
    }
}

/// The text between the first `open` and the `close` after it.
fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let from = s.find(open)? + open.len();
    let len = s[from..].find(close)?;
    Some(&s[from..from + len])
}
