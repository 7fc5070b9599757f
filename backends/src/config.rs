//! Settings of each backend kind, as they appear under `[backends.NAME]` in
//! tierd's configuration. Defaults live in the `Default` impls and the doc
//! comments; secrets never print.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A credential: usable, but never shown by `Debug`, `Display` or serialisation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Request limits every backend kind shares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    /// Requests in flight at once against this backend. Default 64.
    pub max_concurrency: usize,
    /// Time one attempt may take. Default 30s.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Time a request may take over all its attempts. Default 2m.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Attempts per request, retries included. Default 8.
    pub max_attempts: u32,
    /// First backoff delay; it doubles per retry, with full jitter. Default 50ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Largest backoff delay. Default 5s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            attempt_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// `kind = "fs"`: a local directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsConfig {
    /// Directory holding the objects; tierd defaults it to `<data_dir>/objects`.
    pub root: Option<PathBuf>,
    pub limits: RequestLimits,
}

/// S3 storage classes an upload may ask for.
pub const S3_STORAGE_CLASSES: [&str; 4] = [
    "STANDARD",
    "STANDARD_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
];

/// `kind = "s3"`: an S3 bucket (AWS or compatible).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// Prepended to every key, e.g. "tierd/". Default empty.
    pub prefix: String,
    /// Default "us-east-1".
    pub region: String,
    /// Custom endpoint (LocalStack, MinIO); default the AWS endpoint.
    pub endpoint: Option<String>,
    /// Path-style addressing (needed by most S3-compatible stores). Default false.
    pub path_style: bool,
    /// Static credentials; without them the SDK's chain (environment, profile,
    /// instance role) is used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Storage class for uploads (STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR).
    pub storage_class: Option<String>,
    /// Objects at least this large use multipart upload. Default 16 MiB.
    pub multipart_threshold: u64,
    /// Part size for multipart uploads (at least 5 MiB). Default 8 MiB.
    pub part_size: u64,
    /// Create the bucket at start-up if it is missing. Default false.
    pub create_bucket: bool,
    pub limits: RequestLimits,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            storage_class: None,
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            create_bucket: false,
            limits: RequestLimits::default(),
        }
    }
}

/// Azure access tiers an upload may ask for.
pub const AZURE_ACCESS_TIERS: [&str; 3] = ["Hot", "Cool", "Cold"];

/// `kind = "azure"`: an Azure Blob container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Storage account; default from `AZURE_STORAGE_ACCOUNT`.
    pub account: String,
    pub container: String,
    /// Prepended to every blob name. Default empty.
    pub prefix: String,
    /// Blob endpoint including the account for emulators, e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1`; default the public cloud.
    pub endpoint: Option<String>,
    /// Shared key; default from `AZURE_STORAGE_KEY`.
    pub access_key: Option<Secret>,
    /// SAS token instead of a key; default from `AZURE_STORAGE_SAS_TOKEN`.
    pub sas_token: Option<Secret>,
    /// Access tier for uploads (Hot, Cool, Cold).
    pub access_tier: Option<String>,
    /// Objects at least this large are uploaded as staged blocks. Default 16 MiB.
    pub block_threshold: u64,
    /// Size of each staged block. Default 8 MiB.
    pub block_size: u64,
    /// Create the container at start-up if it is missing. Default false.
    pub create_container: bool,
    pub limits: RequestLimits,
}

impl Default for AzureConfig {
    fn default() -> Self {
        Self {
            account: String::new(),
            container: String::new(),
            prefix: String::new(),
            endpoint: None,
            access_key: None,
            sas_token: None,
            access_tier: None,
            block_threshold: 16 << 20,
            block_size: 8 << 20,
            create_container: false,
            limits: RequestLimits::default(),
        }
    }
}

/// One `[backends.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    Fs(FsConfig),
    S3(S3Config),
    Azure(AzureConfig),
}

impl BackendConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Fs(_) => "fs",
            BackendConfig::S3(_) => "s3",
            BackendConfig::Azure(_) => "azure",
        }
    }

    pub fn limits(&self) -> &RequestLimits {
        match self {
            BackendConfig::Fs(c) => &c.limits,
            BackendConfig::S3(c) => &c.limits,
            BackendConfig::Azure(c) => &c.limits,
        }
    }

    /// Checks what types cannot; messages name the key (relative to the table).
    pub fn validate(&self) -> Result<(), String> {
        let l = self.limits();
        if l.max_concurrency == 0 {
            return Err("limits.max_concurrency: must be at least 1".into());
        }
        if l.max_attempts == 0 {
            return Err("limits.max_attempts: must be at least 1".into());
        }
        if l.attempt_timeout.is_zero() || l.deadline < l.attempt_timeout {
            return Err(
                "limits: attempt_timeout must be positive and no longer than deadline".into(),
            );
        }
        match self {
            BackendConfig::Fs(_) => Ok(()),
            BackendConfig::S3(c) => {
                if c.bucket.is_empty() {
                    return Err("bucket: required".into());
                }
                if let Some(sc) = &c.storage_class {
                    if !S3_STORAGE_CLASSES.contains(&sc.as_str()) {
                        return Err(format!(
                            "storage_class: {sc:?} is not one of {}",
                            S3_STORAGE_CLASSES.join(", ")
                        ));
                    }
                }
                if c.part_size < 5 << 20 {
                    return Err("part_size: S3 parts must be at least 5 MiB".into());
                }
                if c.multipart_threshold < c.part_size {
                    return Err("multipart_threshold: must be at least part_size".into());
                }
                if c.access_key_id.is_some() != c.secret_access_key.is_some() {
                    return Err("access_key_id and secret_access_key: give both or neither".into());
                }
                Ok(())
            }
            BackendConfig::Azure(c) => {
                if c.container.is_empty() {
                    return Err("container: required".into());
                }
                if let Some(t) = &c.access_tier {
                    if !AZURE_ACCESS_TIERS.contains(&t.as_str()) {
                        return Err(format!(
                            "access_tier: {t:?} is not one of {}",
                            AZURE_ACCESS_TIERS.join(", ")
                        ));
                    }
                }
                if c.block_size == 0 || c.block_size > 4000 << 20 {
                    return Err("block_size: must be between 1 byte and 4000 MiB".into());
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = S3Config {
            bucket: "b".into(),
            access_key_id: Some("AKIA".into()),
            secret_access_key: Some(Secret::new("hunter2")),
            ..Default::default()
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(
            c.secret_access_key.as_ref().map(Secret::expose),
            Some("hunter2")
        );
    }

    #[test]
    fn validation_names_the_key() {
        let bad = BackendConfig::S3(S3Config {
            bucket: "b".into(),
            storage_class: Some("DEEP_FREEZE".into()),
            ..Default::default()
        });
        assert!(bad.validate().unwrap_err().starts_with("storage_class"));
        let bad = BackendConfig::Azure(AzureConfig::default());
        assert!(bad.validate().unwrap_err().starts_with("container"));
        assert!(BackendConfig::Fs(FsConfig::default()).validate().is_ok());
    }
}
