//! Amazon S3 (and S3-compatible stores such as LocalStack) through `aws-sdk-s3`.
//!
//! The SDK's own retries are off: [`crate::RetryStore`] retries in one place.
//! Uploads carry a CRC32 checksum the service verifies; large ones are
//! multipart, with the checksum algorithm declared at creation so that the
//! per-part checksums sent at completion are accepted. Downloads are not
//! checked by the SDK: the reader verifies them (frame checksums) instead.

use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, StorageClass};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::config::S3Config;
use crate::error::{chain, ctx, BackendError, Result};
use crate::{Body, ObjectMeta, ObjectStore, PutOptions};

/// Parts uploaded at once within one multipart upload.
const PART_CONCURRENCY: usize = 4;

#[derive(Debug)]
pub struct S3Store {
    name: String,
    client: Client,
    bucket: String,
    prefix: String,
    storage_class: Option<String>,
    multipart_threshold: u64,
    part_size: u64,
}

impl S3Store {
    pub async fn new(name: &str, c: &S3Config) -> Result<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(c.region.clone()))
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.expose().to_string(),
                c.session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "tierd-config",
            ));
        }
        if let Some(ep) = &c.endpoint {
            loader = loader.endpoint_url(ep.clone());
        }
        let sdk = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(c.path_style)
            // What tierd reads back checks itself: data objects against the
            // frame checksums of their extent records, manifests and layer
            // indexes against their own xxh3. The SDK's CRC32 of every body
            // on top was 3% of a cold read's CPU.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(Self {
            name: name.to_string(),
            client: Client::from_conf(conf),
            bucket: c.bucket.clone(),
            prefix: c.prefix.clone(),
            storage_class: c.storage_class.clone(),
            multipart_threshold: c.multipart_threshold,
            part_size: c.part_size,
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn err<E>(&self, op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &e {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or("");
                let msg = se.err().message().unwrap_or("");
                let c = ctx(
                    &self.name,
                    op,
                    key,
                    format!("HTTP {status} {code}: {msg}")
                        .trim_end_matches(": ")
                        .to_string(),
                );
                match code {
                    "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                        BackendError::Throttled(c)
                    }
                    "NoSuchKey" | "NoSuchBucket" | "NotFound" => BackendError::NotFound(c),
                    // The bytes were damaged on the way; ours are intact, so
                    // sending them again is the repair.
                    "BadDigest" | "XAmzContentChecksumMismatch" => BackendError::Transient(c),
                    // Two conditional puts raced; the retry learns which won.
                    "ConditionalRequestConflict" => BackendError::Transient(c),
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AccessDenied"
                    | "InvalidToken" => BackendError::Permanent(c),
                    _ => BackendError::from_status(status, c),
                }
            }
            SdkError::ConstructionFailure(_) => BackendError::Permanent(ctx(
                &self.name,
                op,
                key,
                format!("cannot build request: {}", chain(&e)),
            )),
            // Timeouts, refused or reset connections, unreadable answers.
            _ => BackendError::Transient(ctx(&self.name, op, key, chain(&e))),
        }
    }

    fn storage_class(&self, opts: &PutOptions) -> Option<StorageClass> {
        opts.tier
            .as_ref()
            .or(self.storage_class.as_ref())
            .map(|s| StorageClass::from(s.as_str()))
    }

    async fn put_single(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        let size = data.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_storage_class(self.storage_class(opts))
            .set_if_none_match(opts.if_absent.then(|| "*".to_string()))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.err("put", key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag: out.e_tag().map(str::to_string),
        })
    }

    async fn put_multipart(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        let full = self.full(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_storage_class(self.storage_class(opts))
            .send()
            .await
            .map_err(|e| self.err("put", key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                BackendError::Transient(ctx(
                    &self.name,
                    "put",
                    key,
                    "no upload id in CreateMultipartUpload",
                ))
            })?
            .to_string();
        let part = self.part_size as usize;
        let parts: Vec<(i32, Bytes)> = (0..data.len().div_ceil(part))
            .map(|i| {
                (
                    (i + 1) as i32,
                    data.slice(i * part..((i + 1) * part).min(data.len())),
                )
            })
            .collect();
        let uploaded: Result<Vec<CompletedPart>> = futures::stream::iter(parts)
            .map(|(n, body)| {
                let full = full.clone();
                let upload_id = upload_id.clone();
                async move {
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(n)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| self.err("put", key, e))?;
                    Ok(CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .build())
                }
            })
            .buffered(PART_CONCURRENCY)
            .try_collect()
            .await;
        let completed = match uploaded {
            Ok(p) => p,
            Err(e) => {
                self.abort(&full, &upload_id).await;
                return Err(e);
            }
        };
        crate::failpoint::hit("s3-multipart-before-complete");
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        match out {
            Ok(out) => Ok(ObjectMeta {
                key: key.to_string(),
                size: data.len() as u64,
                etag: out.e_tag().map(str::to_string),
            }),
            Err(e) => {
                self.abort(&full, &upload_id).await;
                Err(self.err("put", key, e))
            }
        }
    }

    async fn abort(&self, full: &str, upload_id: &str) {
        let r = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(backend = %self.name, key = full, error = %chain(&e), "could not abort multipart upload");
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<ObjectMeta>, Option<String>)> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| self.err("list", prefix, e))?;
        let items = out
            .contents()
            .iter()
            .filter_map(|o| {
                let k = o.key()?.strip_prefix(self.prefix.as_str())?.to_string();
                Some(ObjectMeta {
                    key: k,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(str::to_string),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok((items, next))
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        // A conditional put is one request (S3 takes objects up to 5 GiB so).
        if data.len() as u64 >= self.multipart_threshold && !opts.if_absent {
            self.put_multipart(key, data, opts).await
        } else {
            self.put_single(key, data, opts).await
        }
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.err("get", key, e))?;
        // The segments as hyper read them: gathering them into one buffer
        // would copy every byte once more (see `Body`).
        out.body
            .collect()
            .await
            .map(|d| Body::from_segments(d.into_segments()))
            .map_err(|e| {
                BackendError::Transient(ctx(&self.name, "get", key, format!("reading body: {e}")))
            })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| self.err("get_range", key, e))?;
        out.body
            .collect()
            .await
            .map(|d| d.into_bytes())
            .map_err(|e| {
                BackendError::Transient(ctx(
                    &self.name,
                    "get_range",
                    key,
                    format!("reading body: {e}"),
                ))
            })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.err("head", key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(str::to_string),
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.err("delete", key, e))
            .map(|_| ())
            .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // State: None = finished; Some(token) = fetch the page after `token`.
        futures::stream::unfold(Some(None::<String>), move |state| async move {
            let token = state?;
            match self.list_page(prefix, token).await {
                Ok((items, next)) => {
                    let items: Vec<Result<ObjectMeta>> = items.into_iter().map(Ok).collect();
                    Some((futures::stream::iter(items), next.map(Some)))
                }
                Err(e) => Some((futures::stream::iter(vec![Err(e)]), None)),
            }
        })
        .flatten()
        .boxed()
    }

    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        let mut removed = 0;
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.err("list_multipart_uploads", "", e))?;
            for u in out.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let started = u
                    .initiated()
                    .map(|t| t.to_millis().unwrap_or(0).max(0) as u64);
                if started.is_some_and(|t| t < before_ms) {
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await
                        .map_err(|e| self.err("abort_multipart_upload", key, e))?;
                    removed += 1;
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(removed);
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(removed);
            }
        }
    }

    async fn create_container(&self) -> Result<()> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e
                    .as_service_error()
                    .and_then(|s| s.code())
                    .unwrap_or("")
                    .to_string();
                if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
                    Ok(())
                } else {
                    Err(self.err("create_container", &self.bucket.clone(), e))
                }
            }
        }
    }
}
