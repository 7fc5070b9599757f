//! The daemon's configuration: one TOML file of `serde` structs with their
//! defaults and validation in this one place.
//!
//! Invariant: a `Config` that left [`Config::load`] or [`Config::embedded`] is
//! valid: every address parses, every class names a configured backend, every
//! duration is in range. Unknown keys anywhere are errors that name the file and
//! the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::units::{format_duration, parse_duration};

/// A configuration file that cannot be used, and why.
#[derive(Debug, Error)]
#[error("configuration {file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// A duration written as text ("31d", "5s") in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub heat: HeatSettings,
    /// Object stores cold extents go to, by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Storage classes (tiering policies), by name.
    pub classes: BTreeMap<String, ClassConfig>,
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
    /// The admin HTTP API. Default `127.0.0.1:9464`.
    pub http_listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tierd-data"),
            nbd_listen: "127.0.0.1:10809".into(),
            nbd_socket: None,
            http_listen: "127.0.0.1:9464".into(),
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
}

impl Default for HeatSettings {
    fn default() -> Self {
        Self {
            half_life: HumanDuration(Duration::from_secs(86_400)),
            flush_interval: HumanDuration(Duration::from_secs(5)),
            enabled: true,
        }
    }
}

/// `[backends.NAME]`: one object store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// A local directory.
    Fs(FsBackendConfig),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FsBackendConfig {
    /// Directory holding the objects. Default `<data_dir>/objects`.
    pub root: Option<PathBuf>,
}

/// When a class moves extents off the local tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieringPolicy {
    /// Never.
    #[default]
    None,
    /// Only blocks held by snapshots, after the cooling period.
    SnapshotOnly,
    /// Extents not accessed for the cooling period.
    Auto,
    /// Everything, as soon as possible.
    All,
}

/// When a read of a tiered extent brings it back to the local tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetrievalPolicy {
    /// Random reads bring it back, sequential reads do not.
    #[default]
    Default,
    /// Every read brings it back.
    OnRead,
    /// Reads never bring it back.
    Never,
    /// A background pass brings the whole volume back.
    Promote,
}

/// `[classes.NAME]`: one storage class.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassConfig {
    pub tiering_policy: TieringPolicy,
    /// Idle time before an extent counts as cold. Defaults: 31d for auto, 2d for snapshot-only.
    pub cooling_period: Option<HumanDuration>,
    pub retrieval_policy: RetrievalPolicy,
    /// The backend tiered extents go to. Default: the only backend, if there is one.
    pub backend: Option<String>,
}

/// Names of the embedded backend and class that exist when the file defines none.
pub const DEFAULT_BACKEND: &str = "local";
pub const DEFAULT_CLASS: &str = "default";

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
        Self::parse(&text, &file)
    }

    /// Parses, completes and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
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
                BackendConfig::Fs(FsBackendConfig::default()),
            );
        }
        if self.classes.is_empty() {
            self.classes
                .insert(DEFAULT_CLASS.into(), ClassConfig::default());
        }
        let only_backend = (self.backends.len() == 1)
            .then(|| self.backends.keys().next().cloned())
            .flatten();
        for class in self.classes.values_mut() {
            if class.backend.is_none() {
                class.backend = only_backend.clone();
            }
            if class.cooling_period.is_none() {
                class.cooling_period = match class.tiering_policy {
                    TieringPolicy::Auto => Some(HumanDuration(Duration::from_secs(31 * 86_400))),
                    TieringPolicy::SnapshotOnly => {
                        Some(HumanDuration(Duration::from_secs(2 * 86_400)))
                    }
                    TieringPolicy::None | TieringPolicy::All => None,
                };
            }
        }
    }

    /// Checks what types alone cannot; the message names the key.
    fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        if s.data_dir.as_os_str().is_empty() {
            return Err("server.data_dir: must not be empty".into());
        }
        if !s.nbd_listen.is_empty() {
            s.nbd_listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "server.nbd_listen: {:?} is not an address such as 127.0.0.1:10809 ({e})",
                    s.nbd_listen
                )
            })?;
        }
        if s.nbd_listen.is_empty() && s.nbd_socket.is_none() {
            return Err(
                "server: nbd_listen is empty and nbd_socket is unset, so no client could connect"
                    .into(),
            );
        }
        s.http_listen.parse::<SocketAddr>().map_err(|e| {
            format!(
                "server.http_listen: {:?} is not an address such as 127.0.0.1:9464 ({e})",
                s.http_listen
            )
        })?;
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
        for (name, class) in &self.classes {
            match &class.backend {
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

    /// The configured class names, for error messages.
    pub fn class_names(&self) -> String {
        self.classes.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            std.cooling_period.unwrap().0,
            Duration::from_secs(31 * 86_400)
        );
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
    }
}
