//! The daemon's configuration: one TOML file of `serde` structs with their
//! defaults and validation in this one place.
//!
//! Invariant: a `Config` that left [`Config::load`] or [`Config::embedded`] is
//! valid: every address parses, every class names a configured backend, every
//! duration is in range. Unknown keys anywhere are errors that name the file and
//! the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod k8s;

pub use backends::{AzureConfig, BackendConfig, FsConfig, S3Config};
pub use policy::cost::Pricing;
pub use policy::{
    ClassConfig, Compression, HumanDuration, HumanSize, RetrievalPolicy, TieringPolicy,
};

/// A configuration file that cannot be used, and why.
#[derive(Debug, Error)]
#[error("configuration {file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub heat: HeatSettings,
    pub tiering: TieringSettings,
    /// Object stores cold extents go to, by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Storage classes (tiering policies), by name.
    pub classes: BTreeMap<String, ClassConfig>,
    pub kubernetes: KubernetesSettings,
    pub log: LogSettings,
    /// Prices for `tierd simulate`'s cost model (shipped list prices by default).
    pub pricing: Pricing,
    /// Notes from loading (skipped manifests), logged at start-up.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// `[log]`: what the daemon logs, and how.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (default) or `json` (one object per line, for log collectors).
    pub format: LogFormat,
    /// A level or filter such as `info` or `info,tiering=debug`; the
    /// `TIERD_LOG` environment variable overrides it. Default `info`.
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[kubernetes]`: storage classes from StorageClass manifests.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSettings {
    /// A directory of StorageClass manifests (YAML, several documents per
    /// file); relative paths are relative to the configuration file. Off unless set.
    pub storage_class_dir: Option<PathBuf>,
    /// Provisioners whose StorageClasses are tierd's. Default tierd.io/block
    /// and csi.trident.netapp.io.
    pub provisioners: Vec<String>,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            storage_class_dir: None,
            provisioners: k8s::DEFAULT_PROVISIONERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// `[server]`: where data lives and where the daemon listens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// RocksDB, volume files and the local object store live here. Default `./tierd-data`.
    pub data_dir: PathBuf,
    /// NBD over TCP. Default `127.0.0.1:10809`; an empty string turns TCP off.
    pub nbd_listen: String,
    /// NBD over a unix socket, off unless set.
    pub nbd_socket: Option<PathBuf>,
    /// Bytes of write payloads and read replies one NBD connection may hold
    /// at once; beyond it the daemon stops reading that connection's
    /// requests until replies have gone out. Default 32MiB.
    pub nbd_connection_buffer: HumanSize,
    /// The same, for all NBD connections together. Default 512MiB.
    pub nbd_total_buffer: HumanSize,
    /// The admin HTTP API. Default `127.0.0.1:9464`.
    pub http_listen: String,
    /// A file holding the bearer token the admin API requires (all but
    /// /healthz and /readyz). Off unless set.
    pub admin_token_file: Option<PathBuf>,
    /// Let the admin API listen beyond loopback without a token. Default false.
    pub allow_insecure_admin: bool,
    /// Let NBD listen beyond loopback without TLS, where any host that
    /// reaches it reads and writes every volume. Default false.
    pub allow_insecure_nbd: bool,
    /// The server's X.509 certificate chain (PEM) for NBD over TLS. With it
    /// (and `tls_key_file`), TCP clients must STARTTLS; the unix socket may.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM): when set, NBD clients must present a
    /// certificate it signed.
    pub tls_client_ca_file: Option<PathBuf>,
    /// How fast the daemon's clock runs against real time. Every timer of
    /// the daemon runs on it: heat and cooling, the scan and GC intervals,
    /// GC grace, the circuit breaker, upload pacing and the backends'
    /// timeouts, deadlines and backoffs; only the heat and trace flush
    /// cadences stay real time. Default 1; larger only for demos and tests
    /// that live through days of cooling in seconds, as a trace replay does.
    pub clock_speed: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tierd-data"),
            nbd_listen: "127.0.0.1:10809".into(),
            nbd_socket: None,
            nbd_connection_buffer: HumanSize::from_bytes(32 << 20),
            nbd_total_buffer: HumanSize::from_bytes(512 << 20),
            http_listen: "127.0.0.1:9464".into(),
            admin_token_file: None,
            allow_insecure_admin: false,
            allow_insecure_nbd: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            clock_speed: 1.0,
        }
    }
}

/// `[heat]`: how extent heat is tracked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeatSettings {
    /// Time for an access's weight in an extent's temperature to halve. Default 1d.
    pub half_life: HumanDuration,
    /// How often in-memory counts are written to RocksDB. Default 5s.
    pub flush_interval: HumanDuration,
    /// Heat tracking on or off (off only to measure its cost). Default on.
    pub enabled: bool,
    /// Whether reads detected as sequential scans warm an extent (reset its
    /// idle time, raise its temperature); they are counted either way.
    /// Default: false for classes with cooling_period = "auto", true for the rest.
    pub scans_warm: Option<bool>,
}

impl Default for HeatSettings {
    fn default() -> Self {
        Self {
            half_life: HumanDuration(Duration::from_secs(86_400)),
            flush_interval: HumanDuration(Duration::from_secs(5)),
            enabled: true,
            scans_warm: None,
        }
    }
}

/// `[tiering]`: the engine's knobs shared by every class.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TieringSettings {
    /// How often every volume gets a policy pass. Default 1m.
    pub scan_interval: HumanDuration,
    /// Memory for recently fetched cold extents. Default 256MiB.
    pub cache_size: HumanSize,
    /// Extents read ahead when a client starts reading cold data
    /// sequentially. Default 2.
    pub readahead_extents: u32,
    /// Extents read ahead at most as a stream grows (the window is twice
    /// what the stream has read), and never more than half of what
    /// `cache_size` holds; streams reading one volume at once share it.
    /// Default 32.
    pub readahead_max_extents: u32,
    /// Read-ahead fetches in flight at most, across every stream and volume:
    /// beyond it a stream reads ahead no further until one lands (its reads
    /// still fetch what they need). Bounds the memory and backend load of
    /// many streams at once. Default 16.
    pub max_readahead_fetches: usize,
    /// Uncompressed bytes per checksummed frame of a tiered extent: a power of
    /// two from 4KiB to 1MiB. Default 64KiB.
    pub frame_size: HumanSize,
    /// Unreferenced objects younger than this are kept (uploads in flight). Default 1h.
    pub gc_grace: HumanDuration,
    /// How often garbage objects are collected. Default 10m.
    pub gc_interval: HumanDuration,
    /// Uploads at once across all classes. Default 8.
    pub max_concurrent_uploads: usize,
    /// Consecutive backend failures that pause migration to a backend. Default 5.
    pub breaker_failures: u32,
    /// How long a tripped breaker pauses migration. Default 30s.
    pub breaker_pause: HumanDuration,
    /// Size of one access-trace file before it rotates. Default 64MiB.
    pub trace_max_size: HumanSize,
    /// Rotated access-trace files kept per volume. Default 3.
    pub trace_keep: usize,
}

impl Default for TieringSettings {
    fn default() -> Self {
        Self {
            scan_interval: HumanDuration(Duration::from_secs(60)),
            cache_size: HumanSize::from_bytes(256 << 20),
            readahead_extents: 2,
            readahead_max_extents: 32,
            max_readahead_fetches: 16,
            frame_size: HumanSize::from_bytes(64 << 10),
            gc_grace: HumanDuration(Duration::from_secs(3600)),
            gc_interval: HumanDuration(Duration::from_secs(600)),
            max_concurrent_uploads: 8,
            breaker_failures: 5,
            breaker_pause: HumanDuration(Duration::from_secs(30)),
            trace_max_size: HumanSize::from_bytes(64 << 20),
            trace_keep: 3,
        }
    }
}

impl TieringSettings {
    pub fn cache_bytes(&self) -> u64 {
        self.cache_size.bytes()
    }
    /// How far sequential cold reads read ahead (the daemon's and the
    /// simulator's).
    pub fn readahead(&self) -> policy::Readahead {
        policy::Readahead::new(
            self.readahead_extents,
            self.readahead_max_extents,
            policy::access::cache_entries(self.cache_bytes()),
        )
    }
    /// Validated to be a power of two from 4 KiB to 1 MiB, so it fits.
    pub fn frame_bytes(&self) -> u32 {
        self.frame_size.bytes() as u32
    }
}

/// Names of the embedded backend and class that exist when the file defines none.
pub const DEFAULT_BACKEND: &str = "local";
pub const DEFAULT_CLASS: &str = "default";

/// A TOML error as "line L, column C (table.key): message", without the
/// quoted source line toml's own rendering adds: that line may hold a secret.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end();
    let Some(span) = e.span() else {
        return msg.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before.len() - line_start + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let path = match (table, key) {
        (Some(t), Some(k)) => format!(" ({t}.{k})"),
        (None, Some(k)) => format!(" ({k})"),
        (Some(t), None) => format!(" ([{t}])"),
        (None, None) => String::new(),
    };
    format!("line {line_no}, column {col}{path}: {msg}")
}

impl Config {
    /// The embedded defaults: used when `tierd serve` gets no `--config`.
    pub fn embedded() -> Config {
        let mut c = Config::default();
        c.fill_defaults();
        c
    }

    /// Reads, parses, completes and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse_at(&text, &file, path.parent())
    }

    /// Parses, completes and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Self::parse_at(text, file, None)
    }

    /// As [`Config::parse`], resolving relative paths against `base`.
    pub fn parse_at(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            message: toml_message(text, &e),
        })?;
        if let Some(dir) = c.kubernetes.storage_class_dir.clone() {
            let dir = match base {
                Some(b) if dir.is_relative() => b.join(dir),
                _ => dir,
            };
            let loaded =
                k8s::load_dir(&dir, &c.kubernetes.provisioners).map_err(|message| ConfigError {
                    file: file.to_string(),
                    message: format!("kubernetes.storage_class_dir: {message}"),
                })?;
            for (name, class) in loaded.classes {
                if c.classes.contains_key(&name) {
                    return Err(ConfigError {
                        file: file.to_string(),
                        message: format!("class {name:?} is defined both in [classes] and by a StorageClass in {}", dir.display()),
                    });
                }
                c.classes.insert(name, class);
            }
            c.notes.extend(loaded.skipped);
        }
        c.fill_defaults();
        c.validate().map_err(|message| ConfigError {
            file: file.to_string(),
            message,
        })?;
        Ok(c)
    }

    fn fill_defaults(&mut self) {
        if self.backends.is_empty() {
            self.backends.insert(
                DEFAULT_BACKEND.into(),
                BackendConfig::Fs(FsConfig::default()),
            );
        }
        if self.classes.is_empty() {
            // FabricPool's default: only data that snapshots alone hold
            // leaves the local disk, after 2 days.
            self.classes.insert(
                DEFAULT_CLASS.into(),
                ClassConfig {
                    tiering_policy: TieringPolicy::SnapshotOnly,
                    ..ClassConfig::default()
                },
            );
        }
        let only_backend = (self.backends.len() == 1)
            .then(|| self.backends.keys().next().cloned())
            .flatten();
        for class in self.classes.values_mut() {
            if class.backend.is_none() {
                class.backend = only_backend.clone();
            }
            class.fill_defaults();
        }
    }

    /// Checks what types alone cannot; the message names the key.
    fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        if s.data_dir.as_os_str().is_empty() {
            return Err("server.data_dir: must not be empty".into());
        }
        self.pricing
            .validate()
            .map_err(|e| format!("pricing: {e}"))?;
        if !(s.clock_speed > 0.0 && s.clock_speed <= 1e7) {
            return Err(format!(
                "server.clock_speed: {} is not a speed-up between 0 and 10000000",
                s.clock_speed
            ));
        }
        if !s.nbd_listen.is_empty() {
            let nbd = s.nbd_listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "server.nbd_listen: {:?} is not an address such as 127.0.0.1:10809 ({e})",
                    s.nbd_listen
                )
            })?;
            if !nbd.ip().is_loopback() && s.tls_cert_file.is_none() && !s.allow_insecure_nbd {
                return Err(format!(
                    "server.nbd_listen: {} is not a loopback address, and NBD without TLS has \
                     no protection: anyone who can reach it could read and overwrite every \
                     volume. Listen on loopback (a sidecar's block server reaches it there), \
                     set tls_cert_file and tls_key_file (and tls_client_ca_file to admit only \
                     clients with certificates), or set allow_insecure_nbd = true on a \
                     network you trust",
                    s.nbd_listen
                ));
            }
        }
        if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
            return Err("server.tls_cert_file and server.tls_key_file: set both or neither".into());
        }
        if s.tls_client_ca_file.is_some() && s.tls_cert_file.is_none() {
            return Err(
                "server.tls_client_ca_file: needs tls_cert_file and tls_key_file (TLS on)".into(),
            );
        }
        let (conn, total) = (s.nbd_connection_buffer.bytes(), s.nbd_total_buffer.bytes());
        if !(1 << 20..=1 << 31).contains(&conn) || !(1 << 20..=1 << 31).contains(&total) {
            return Err(format!(
                "server.nbd_connection_buffer ({conn} bytes) and server.nbd_total_buffer \
                 ({total} bytes) must each be from 1MiB to 2GiB"
            ));
        }
        if conn > total {
            return Err(format!(
                "server.nbd_connection_buffer ({conn} bytes) is larger than \
                 server.nbd_total_buffer ({total} bytes)"
            ));
        }
        if s.nbd_listen.is_empty() && s.nbd_socket.is_none() {
            return Err(
                "server: nbd_listen is empty and nbd_socket is unset, so no client could connect"
                    .into(),
            );
        }
        let http = s.http_listen.parse::<SocketAddr>().map_err(|e| {
            format!(
                "server.http_listen: {:?} is not an address such as 127.0.0.1:9464 ({e})",
                s.http_listen
            )
        })?;
        if !http.ip().is_loopback() && s.admin_token_file.is_none() && !s.allow_insecure_admin {
            return Err(format!(
                "server.http_listen: {} is not a loopback address, so anyone who can reach it could \
                 delete volumes; set server.admin_token_file (or allow_insecure_admin = true)",
                s.http_listen
            ));
        }
        if self
            .log
            .level
            .as_deref()
            .is_some_and(|l| log_filter(l).is_none())
        {
            return Err(format!(
                "log.level: {:?} is not a level or filter such as \"info\" or \"tiering=debug\"",
                self.log.level.as_deref().unwrap_or_default()
            ));
        }
        if self.heat.half_life.0.is_zero() {
            return Err("heat.half_life: must be greater than zero".into());
        }
        if self.heat.flush_interval.0 < Duration::from_millis(10) {
            return Err(format!(
                "heat.flush_interval: {} is too short (at least 10ms)",
                self.heat.flush_interval
            ));
        }
        for name in self.backends.keys().chain(self.classes.keys()) {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "{name:?}: backend and class names use letters, digits, '-', '_' and '.'"
                ));
            }
        }
        let t = &self.tiering;
        let fs = t.frame_size.bytes();
        if !fs.is_power_of_two() || !(4096..=(1 << 20)).contains(&fs) {
            return Err(format!(
                "tiering.frame_size: {} must be a power of two from 4KiB to 1MiB",
                t.frame_size
            ));
        }
        if t.scan_interval.0 < Duration::from_millis(10) {
            return Err("tiering.scan_interval: at least 10ms".into());
        }
        if t.max_concurrent_uploads == 0 {
            return Err("tiering.max_concurrent_uploads: at least 1".into());
        }
        if t.max_readahead_fetches == 0 {
            return Err("tiering.max_readahead_fetches: at least 1".into());
        }
        for (name, backend) in &self.backends {
            backend
                .validate()
                .map_err(|m| format!("backends.{name}.{m}"))?;
        }
        for (name, class) in &self.classes {
            class
                .validate()
                .map_err(|m| format!("classes.{name}.{m}"))?;
            match &class.backend {
                // A class that tiers nothing needs no backend (reads of extents
                // tiered under an earlier policy use the backend in their record).
                None if class.tiering_policy == TieringPolicy::None => {}
                None => {
                    return Err(format!(
                        "classes.{name}.backend: required when more than one backend is configured ({})",
                        self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                }
                Some(b) if !self.backends.contains_key(b) => {
                    return Err(format!(
                        "classes.{name}.backend: no backend named {b:?} (configured: {})",
                        self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Settings that are valid but unusual enough to say so at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (name, class) in &self.classes {
            if let Some(policy::CoolingPeriod::Fixed(d)) = class.cooling_period {
                let c = HumanDuration(d);
                let days = d.as_secs_f64() / 86_400.0;
                if !(2.0..=183.0).contains(&days) {
                    w.push(format!(
                        "classes.{name}.cooling_period = {c} is outside FabricPool's 2 to 183 days; fine for tests, unusual in production"
                    ));
                }
            }
        }
        w
    }

    /// The price list `class`'s objects pay: by its backend's kind and its
    /// upload tier (`tierd simulate`, cooling_period = "auto", cost reports).
    pub fn price_tier(&self, class: &ClassConfig) -> String {
        let kind = class
            .backend
            .as_ref()
            .and_then(|b| self.backends.get(b))
            .map(|b| b.kind())
            .unwrap_or("s3");
        policy::cost::price_tier(kind, class.upload_tier.as_deref())
    }

    /// The configured class names, for error messages.
    pub fn class_names(&self) -> String {
        self.classes.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The log filter a level or filter string (`log.level`, `TIERD_LOG`)
/// means, or None when it means none. Only levels and `target=level` lists
/// are parsed (letters, digits, `_ : , = . -`), at most 1 KiB: the filter
/// parser panics on some non-ASCII strings, and span and field filters
/// (`[span{field=value}]`) compile regular expressions that a 400-byte
/// string can keep busy for seconds (both found by fuzzing the loader).
pub fn log_filter(spec: &str) -> Option<tracing_subscriber::EnvFilter> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_:,=.- ".contains(c);
    if spec.len() > 1024 || !spec.chars().all(plain) {
        return None;
    }
    tracing_subscriber::EnvFilter::try_new(spec).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_are_levels_and_targets_only() {
        assert!(log_filter("info").is_some());
        assert!(log_filter("info,tiering=debug,tiering::migrate=trace").is_some());
        assert!(log_filter("caf\u{e9}=debug").is_none());
        // Span and field filters compile regexes; the fuzzer's input kept
        // one busy for over 10 s (its input is in the corpus, replayed).
        let slow = format!(
            "In!!![!!{}{{{}}}",
            "!".repeat(20),
            ".".repeat(100) + &"?".repeat(40)
        );
        assert!(log_filter(&slow).is_none());
        assert!(log_filter("tiering[pass{volume=pg}]=debug").is_none());
        assert!(log_filter(&"a".repeat(2000)).is_none());
    }

    #[test]
    fn embedded_defaults() {
        let c = Config::embedded();
        assert_eq!(c.server.nbd_listen, "127.0.0.1:10809");
        assert_eq!(c.server.http_listen, "127.0.0.1:9464");
        assert_eq!(c.server.data_dir, PathBuf::from("./tierd-data"));
        assert_eq!(
            c.classes[DEFAULT_CLASS].backend.as_deref(),
            Some(DEFAULT_BACKEND)
        );
        assert_eq!(
            c.classes[DEFAULT_CLASS].tiering_policy,
            TieringPolicy::SnapshotOnly
        );
        assert_eq!(
            c.classes[DEFAULT_CLASS].cooling(),
            std::time::Duration::from_secs(2 * 86_400)
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn full_file_parses() {
        let c = Config::parse(
            r#"
            [server]
            data_dir = "/var/lib/tierd"
            nbd_listen = "127.0.0.1:20000"
            nbd_socket = "/run/tierd.sock"
            http_listen = "127.0.0.1:20001"
            [heat]
            half_life = "12h"
            flush_interval = "2s"
            [backends.cold]
            kind = "fs"
            root = "/srv/objects"
            [classes.standard]
            tiering_policy = "auto"
            retrieval_policy = "on-read"
            "#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.heat.half_life.0, Duration::from_secs(12 * 3600));
        let std = &c.classes["standard"];
        assert_eq!(std.tiering_policy, TieringPolicy::Auto);
        assert_eq!(std.cooling(), Duration::from_secs(31 * 86_400));
        assert_eq!(std.backend.as_deref(), Some("cold"));
    }

    #[test]
    fn unknown_keys_are_errors_naming_file_and_key() {
        let e = Config::parse("[server]\nnbd_lisen = \"127.0.0.1:1\"\n", "my.toml").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("my.toml") && m.contains("nbd_lisen"), "{m}");
        let e =
            Config::parse("[backends.b]\nkind = \"fs\"\nbucket = \"x\"\n", "b.toml").unwrap_err();
        assert!(e.to_string().contains("bucket"), "{e}");
        let e = Config::parse("[surprise]\n", "s.toml").unwrap_err();
        assert!(e.to_string().contains("surprise"), "{e}");
    }

    #[test]
    fn errors_never_quote_the_line_they_are_on() {
        let text =
            "[backends.s]\nkind = \"s3\"\nbucket = \"b\"\nsecret_acess_key = \"hunter2-s3cr3t\"\n";
        let m = Config::parse(text, "k.toml").unwrap_err().to_string();
        assert!(
            m.contains("k.toml") && m.contains("secret_acess_key"),
            "{m}"
        );
        assert!(!m.contains("hunter2"), "{m}");
        let m = Config::parse("[heat]\nhalf_life = [\"hunter2-s3cr3t\"]\n", "k.toml")
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("heat.half_life") && !m.contains("hunter2"),
            "{m}"
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let e = Config::parse("[heat]\nhalf_life = \"soon\"\n", "h.toml").unwrap_err();
        assert!(
            e.to_string().contains("half_life") && e.to_string().contains("soon"),
            "{e}"
        );
        let e = Config::parse("[server]\nhttp_listen = \"localhost\"\n", "a.toml").unwrap_err();
        assert!(e.to_string().contains("server.http_listen"), "{e}");
        let e =
            Config::parse("[classes.x]\ntiering_policy = \"sometimes\"\n", "p.toml").unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = Config::parse(
            "[backends.a]\nkind=\"fs\"\n[backends.b]\nkind=\"fs\"\n[classes.x]\nbackend=\"c\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("classes.x.backend"), "{e}");
        let e = Config::parse("[backends.a]\nkind=\"s3\"\n", "s.toml").unwrap_err();
        assert!(e.to_string().contains("backends.a.bucket: required"), "{e}");
        let e = Config::parse(
            "[backends.a]\nkind=\"azure\"\ncontainer=\"c\"\naccess_tier=\"Frozen\"\n",
            "z.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("backends.a.access_tier"), "{e}");
    }

    #[test]
    fn cloud_backends_parse() {
        let c = Config::parse(
            r#"
            [backends.s3]
            kind = "s3"
            bucket = "tier"
            endpoint = "http://127.0.0.1:4566"
            path_style = true
            storage_class = "STANDARD_IA"
            [backends.s3.limits]
            max_concurrency = 16
            attempt_timeout = "10s"
            [backends.blob]
            kind = "azure"
            account = "devstoreaccount1"
            container = "tier"
            access_tier = "Cool"
            [classes.standard]
            tiering_policy = "auto"
            backend = "s3"
            "#,
            "cloud.toml",
        )
        .unwrap();
        match &c.backends["s3"] {
            BackendConfig::S3(s) => {
                assert_eq!(s.limits.max_concurrency, 16);
                assert_eq!(s.storage_class.as_deref(), Some("STANDARD_IA"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.backends["blob"].kind(), "azure");
    }

    /// The configuration block of the README, which operators copy.
    fn readme_block() -> String {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
                .expect("README.md beside the workspace");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .expect("a Configuration section");
        let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let len = section[start..].find("```").expect("the block ends");
        section[start..start + len].to_string()
    }

    #[test]
    fn readme_configuration_is_valid_and_states_the_defaults() {
        let text = readme_block();
        let parsed = Config::parse(&text, "README.md").unwrap_or_else(|e| panic!("{e}"));
        assert!(parsed.classes.contains_key(DEFAULT_CLASS));
        let readme: toml::Table = toml::from_str(&text).expect("toml");
        let defaults = toml::Table::try_from(Config::embedded()).expect("defaults serialize");
        let mut checked = 0;
        for section in ["server", "log", "heat", "tiering"] {
            let (Some(doc), Some(def)) = (
                readme.get(section).and_then(|v| v.as_table()),
                defaults.get(section).and_then(|v| v.as_table()),
            ) else {
                panic!("[{section}] missing from the README block or the defaults");
            };
            for (key, value) in doc {
                // Keys without a default (optional settings) are examples.
                if let Some(d) = def.get(key) {
                    assert_eq!(
                        value, d,
                        "README [{section}] {key} differs from the default"
                    );
                    checked += 1;
                }
            }
            for key in def.keys() {
                assert!(
                    doc.contains_key(key),
                    "README [{section}] does not document {key}"
                );
            }
        }
        assert!(checked >= 20, "only {checked} defaults compared");
        // The embedded default class, as documented.
        let class = &readme["classes"]["default"];
        let embedded = &Config::embedded().classes[DEFAULT_CLASS];
        assert_eq!(
            class["tiering_policy"].as_str(),
            Some(embedded.tiering_policy.as_str())
        );
        assert_eq!(
            class["retrieval_policy"].as_str(),
            Some(embedded.retrieval_policy.as_str())
        );
    }
}
