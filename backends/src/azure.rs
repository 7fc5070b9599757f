//! Azure Blob Storage (and Azurite) through `azure_storage_blobs` 0.21.
//!
//! That crate line is legacy upstream; everything that touches it is in this
//! file, so moving to another Azure client changes nothing else. The SDK's own
//! retries are off: [`crate::Managed`] retries in one place. Small uploads are
//! one Put Blob with a Content-MD5 the service verifies; large ones are staged
//! blocks committed by a block list.

use std::ops::Range;

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
use crate::{ObjectMeta, ObjectStore, PutOptions};

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
        })
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
                let c = ctx(&self.name, op, key, format!("HTTP {status} {code}: {e}"));
                match code.as_str() {
                    "ServerBusy" | "OperationTimedOut" => BackendError::Throttled(c),
                    "AuthenticationFailed" | "AuthorizationFailure" => BackendError::Permanent(c),
                    "BlobNotFound" | "ContainerNotFound" => BackendError::NotFound(c),
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
                    blob.put_block(id, body)
                        .await
                        .map_err(|e| self.err("put", key, e))
                }
            })
            .buffer_unordered(BLOCK_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
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
        let etag = if size >= self.block_threshold {
            self.put_blocks(key, data, opts).await?
        } else {
            let digest: [u8; 16] = {
                use md5::Digest;
                md5::Md5::digest(&data).into()
            };
            let mut req = self.blob(key).put_block_blob(data).hash(Hash::MD5(digest));
            if let Some(t) = self.access_tier(opts) {
                req = req.access_tier(t);
            }
            req.await.map_err(|e| self.err("put", key, e))?.etag
        };
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag: Some(etag),
        })
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        // One GET of a range that covers any blob: no HEAD round trip first.
        // (An empty blob answers 416; get_range turns that into empty bytes.)
        self.get_range(key, 0..(1 << 62)).await
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
                    {
                        if self.head(key).await?.size == 0 {
                            return Ok(Bytes::new());
                        }
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
