//! A storage class's policies as the configuration states them, and what
//! they mean for a read of cold data.
//!
//! Invariant: a `ClassConfig` that passed [`ClassConfig::validate`] and
//! [`ClassConfig::fill_defaults`] has a cooling period wherever its tiering
//! policy uses one, and every field within its documented range.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{format_duration, parse_duration, HumanDuration, HumanSize};

/// FabricPool's default cooling for `auto`.
pub const AUTO_DEFAULT_COOLING: Duration = Duration::from_secs(31 * 86_400);
/// FabricPool's default cooling for `snapshot-only`.
pub const SNAPSHOT_ONLY_DEFAULT_COOLING: Duration = Duration::from_secs(2 * 86_400);

/// Default bounds of an adaptive cooling period.
pub const DEFAULT_MIN_COOLING: Duration = Duration::from_secs(3_600);
pub const DEFAULT_MAX_COOLING: Duration = Duration::from_secs(183 * 86_400);
/// An extent back within this long of being tiered came back too soon.
pub const DEFAULT_THRASH_WINDOW: Duration = Duration::from_secs(86_400);

/// `max_thrash_fraction`: a share, or "off".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThrashFraction {
    Share(f64),
    Off,
}

impl<'de> Deserialize<'de> for ThrashFraction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(f) => Ok(ThrashFraction::Share(f)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ThrashFraction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ThrashFraction::Share(f) => s.serialize_f64(*f),
            ThrashFraction::Off => s.serialize_str("off"),
        }
    }
}

impl std::str::FromStr for ThrashFraction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" => Ok(ThrashFraction::Off),
            t => t
                .parse::<f64>()
                .map(ThrashFraction::Share)
                .map_err(|_| format!("{t:?} is not a fraction such as 0.05, or \"off\"")),
        }
    }
}

/// How long an extent idles before it counts as cold: a fixed period, or
/// `auto` (derived per volume from prices and observed re-access, see
/// [`crate::cooling`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoolingPeriod {
    Fixed(Duration),
    Auto,
}

impl<'de> Deserialize<'de> for CoolingPeriod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for CoolingPeriod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl std::str::FromStr for CoolingPeriod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "auto" {
            return Ok(CoolingPeriod::Auto);
        }
        parse_duration(s)
            .map(CoolingPeriod::Fixed)
            .map_err(|e| format!("{e} (or \"auto\": derived from prices and re-access)"))
    }
}

impl fmt::Display for CoolingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoolingPeriod::Fixed(d) => f.write_str(&format_duration(*d)),
            CoolingPeriod::Auto => f.write_str("auto"),
        }
    }
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

impl TieringPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TieringPolicy::None => "none",
            TieringPolicy::SnapshotOnly => "snapshot-only",
            TieringPolicy::Auto => "auto",
            TieringPolicy::All => "all",
        }
    }

    /// The cooling period a class gets when it names none.
    pub fn default_cooling(self) -> Option<Duration> {
        match self {
            TieringPolicy::Auto => Some(AUTO_DEFAULT_COOLING),
            TieringPolicy::SnapshotOnly => Some(SNAPSHOT_ONLY_DEFAULT_COOLING),
            TieringPolicy::None | TieringPolicy::All => None,
        }
    }
}

impl fmt::Display for TieringPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

impl RetrievalPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RetrievalPolicy::Default => "default",
            RetrievalPolicy::OnRead => "on-read",
            RetrievalPolicy::Never => "never",
            RetrievalPolicy::Promote => "promote",
        }
    }
}

impl fmt::Display for RetrievalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a tiered extent's frames are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }
}

/// `[classes.NAME]`: one storage class.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassConfig {
    pub tiering_policy: TieringPolicy,
    /// Idle time before an extent counts as cold, or "auto" (derived per
    /// volume from the prices and observed re-access). Defaults: 31d for
    /// auto, 2d for snapshot-only.
    pub cooling_period: Option<CoolingPeriod>,
    /// Bounds of an "auto" cooling period. Defaults 1h and 183d.
    pub min_cooling: Option<HumanDuration>,
    pub max_cooling: Option<HumanDuration>,
    /// Under an "auto" cooling period, an extent brought back within this
    /// long of being tiered cools twice as long next time (up to
    /// max_cooling). Default 1d.
    pub thrash_window: Option<HumanDuration>,
    /// Under an "auto" cooling period: the share of the extents a cooling
    /// period tiers that may come back within thrash_window (by the gaps the
    /// volume showed); a cooling period that would bring more back is not
    /// chosen, whatever it saves (say 0.05). Default "off": cost alone.
    pub max_thrash_fraction: Option<ThrashFraction>,
    /// Bytes a volume may bring back from the object store per day; past
    /// it, cold reads are served without bringing extents back. Default none.
    pub max_rehydrate_per_day: Option<HumanSize>,
    /// Under an "auto" cooling period: when more than this fraction of a
    /// volume's reads in the last hour touched cold data, its cooling period
    /// doubles (and halves again once under half of it). Default none.
    pub max_cold_read_fraction: Option<f64>,
    pub retrieval_policy: RetrievalPolicy,
    /// A write to part of a tiered extent keeps the blocks it writes local
    /// (an overlay) and leaves the rest in the object store, instead of
    /// bringing the whole extent back; a pass merges the overlay into a new
    /// object once the extent is cold again. Default false.
    pub write_overlay: bool,
    /// The backend tiered extents go to. Default: the only backend, if there is one.
    pub backend: Option<String>,
    /// Compression of tiered extents (independently compressed frames). Default none.
    pub compression: Compression,
    /// S3 storage class or Azure access tier for uploads; default the backend's.
    pub upload_tier: Option<String>,
    /// Tier only while the filesystem holding the local tier is fuller than
    /// this percentage. Default 0: always.
    pub local_fullness_threshold: u8,
    /// Upload bandwidth cap for this class, e.g. "100MiB" (per second). Default none.
    pub max_upload_bandwidth: Option<HumanSize>,
    /// Uploads at once for this class. Default 4.
    pub max_concurrent_uploads: Option<usize>,
    /// Record the access trace of this class's volumes (for `tierd
    /// simulate`). Default false; a volume can override it.
    pub record_trace: bool,
    /// Take a snapshot of each of the class's volumes this often (named
    /// `auto-YYYYMMDD-HHMMSS`). Default none: no scheduled snapshots.
    pub snapshot_schedule: Option<HumanDuration>,
    /// Scheduled snapshots kept per volume; older ones are deleted (snapshots
    /// taken by hand never are). Default 24.
    pub snapshot_retention: Option<u32>,
    /// Back each of the class's volumes up to its backend this often: the
    /// class's recovery point. Default none: no scheduled backups.
    pub backup_interval: Option<HumanDuration>,
    /// Scheduled backups kept per volume in the bucket; older ones are
    /// deleted (backups taken by hand never are). Default 7.
    pub backup_keep: Option<u32>,
}

/// Scheduled backups kept when a class names no `backup_keep`.
pub const DEFAULT_BACKUP_KEEP: u32 = 7;

/// Scheduled snapshots kept when a class names no retention.
pub const DEFAULT_SNAPSHOT_RETENTION: u32 = 24;

impl ClassConfig {
    /// A class with these policies and everything else at its default.
    pub fn with_policies(
        tiering_policy: TieringPolicy,
        cooling_period: Option<Duration>,
        retrieval_policy: RetrievalPolicy,
    ) -> Self {
        let mut c = ClassConfig {
            tiering_policy,
            cooling_period: cooling_period.map(CoolingPeriod::Fixed),
            retrieval_policy,
            ..Default::default()
        };
        c.fill_defaults();
        c
    }

    /// Gives the class its policy's default cooling period if it names none.
    pub fn fill_defaults(&mut self) {
        if self.cooling_period.is_none() {
            self.cooling_period = self
                .tiering_policy
                .default_cooling()
                .map(CoolingPeriod::Fixed);
        }
    }

    /// Checks what types alone cannot; the message names the key under `classes.NAME`.
    pub fn validate(&self) -> Result<(), String> {
        if self.cooling_is_auto()
            && !matches!(
                self.tiering_policy,
                TieringPolicy::Auto | TieringPolicy::SnapshotOnly
            )
        {
            return Err(format!(
                "cooling_period: \"auto\" needs tiering_policy auto or snapshot-only, not {}",
                self.tiering_policy
            ));
        }
        if self.min_cooling() > self.max_cooling() {
            return Err(format!(
                "min_cooling ({}) is longer than max_cooling ({})",
                HumanDuration(self.min_cooling()),
                HumanDuration(self.max_cooling())
            ));
        }
        if self.min_cooling() < Duration::from_secs(1) {
            return Err("min_cooling: at least 1s".into());
        }
        if let Some(ThrashFraction::Share(f)) = self.max_thrash_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!(
                    "max_thrash_fraction: {f} is not a fraction above 0 and at most 1 (or \"off\")"
                ));
            }
        }
        if let Some(f) = self.max_cold_read_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!(
                    "max_cold_read_fraction: {f} is not a fraction above 0 and at most 1"
                ));
            }
        }
        if self.rehydrate_budget() == Some(0) {
            return Err(
                "max_rehydrate_per_day: more than 0 bytes (leave it out for no limit)".into(),
            );
        }
        if self.local_fullness_threshold > 100 {
            return Err("local_fullness_threshold: a percentage from 0 to 100".into());
        }
        if self.max_concurrent_uploads == Some(0) {
            return Err("max_concurrent_uploads: at least 1".into());
        }
        if self
            .snapshot_schedule
            .is_some_and(|d| d.0 < Duration::from_secs(1))
        {
            return Err("snapshot_schedule: at least 1s".into());
        }
        if self
            .backup_interval
            .is_some_and(|d| d.0 < Duration::from_secs(1))
        {
            return Err("backup_interval: at least 1s".into());
        }
        if self.backup_keep == Some(0) {
            return Err("backup_keep: at least 1 (leave backup_interval out for none)".into());
        }
        if self.snapshot_retention == Some(0) {
            return Err(
                "snapshot_retention: at least 1 (leave snapshot_schedule out for none)".into(),
            );
        }
        Ok(())
    }

    /// The fixed cooling period; for `auto`, the shortest it may become
    /// (each volume's current value comes from its [`crate::cooling::Tuner`]).
    pub fn cooling(&self) -> Duration {
        match self.cooling_period {
            Some(CoolingPeriod::Fixed(d)) => d,
            Some(CoolingPeriod::Auto) => self.min_cooling(),
            None => Duration::ZERO,
        }
    }

    /// `cooling_period = "auto"`.
    pub fn cooling_is_auto(&self) -> bool {
        self.cooling_period == Some(CoolingPeriod::Auto)
    }

    pub fn min_cooling(&self) -> Duration {
        self.min_cooling.map(|d| d.0).unwrap_or(DEFAULT_MIN_COOLING)
    }

    pub fn max_cooling(&self) -> Duration {
        self.max_cooling.map(|d| d.0).unwrap_or(DEFAULT_MAX_COOLING)
    }

    pub fn thrash_window(&self) -> Duration {
        self.thrash_window
            .map(|d| d.0)
            .unwrap_or(DEFAULT_THRASH_WINDOW)
    }

    /// The thrash share a cooling period may have, if bounded.
    pub fn thrash_fraction(&self) -> Option<f64> {
        match self.max_thrash_fraction {
            None | Some(ThrashFraction::Off) => None,
            Some(ThrashFraction::Share(f)) => Some(f),
        }
    }

    /// Bytes a volume may bring back per day, if limited.
    pub fn rehydrate_budget(&self) -> Option<u64> {
        self.max_rehydrate_per_day.as_ref().map(HumanSize::bytes)
    }

    /// Whether reads detected as sequential scans warm an extent (reset its
    /// idle time, raise its temperature): `[heat] scans_warm` when set, else
    /// not under an auto cooling period and yes otherwise.
    pub fn scans_warm(&self, setting: Option<bool>) -> bool {
        setting.unwrap_or(!self.cooling_is_auto())
    }

    /// Scheduled backups to keep per volume.
    pub fn backup_keep(&self) -> u32 {
        self.backup_keep.unwrap_or(DEFAULT_BACKUP_KEEP)
    }

    /// Scheduled snapshots to keep per volume.
    pub fn snapshot_keep(&self) -> u32 {
        self.snapshot_retention
            .unwrap_or(DEFAULT_SNAPSHOT_RETENTION)
    }

    /// Upload bandwidth cap in bytes per second, if any.
    pub fn upload_bandwidth(&self) -> Option<u64> {
        self.max_upload_bandwidth.as_ref().map(HumanSize::bytes)
    }

    /// A short description of the class's policies, as `auto 31d, default retrieval`.
    pub fn describe(&self) -> String {
        let mut s = self.tiering_policy.to_string();
        if matches!(
            self.tiering_policy,
            TieringPolicy::Auto | TieringPolicy::SnapshotOnly
        ) {
            match self.cooling_period {
                Some(CoolingPeriod::Auto) => s += " auto",
                _ => s += &format!(" {}", HumanDuration(self.cooling())),
            }
        }
        s += &format!(", {} retrieval", self.retrieval_policy);
        if self.write_overlay {
            s += ", write overlay";
        }
        s
    }
}

/// Whether a read of a cold extent brings it back to the local tier.
pub fn brings_back(class: &ClassConfig, sequential: bool) -> bool {
    match class.retrieval_policy {
        RetrievalPolicy::OnRead | RetrievalPolicy::Promote => true,
        RetrievalPolicy::Never => false,
        // FabricPool's "default": the tiering policy decides. Under auto and
        // snapshot-only random reads bring data back and scans do not; under
        // all nothing comes back; a class tiering nothing brings back every read.
        RetrievalPolicy::Default => match class.tiering_policy {
            TieringPolicy::Auto | TieringPolicy::SnapshotOnly => !sequential,
            TieringPolicy::All => false,
            TieringPolicy::None => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(t: TieringPolicy, r: RetrievalPolicy) -> ClassConfig {
        ClassConfig::with_policies(t, None, r)
    }

    #[test]
    fn retrieval_policies() {
        use RetrievalPolicy::*;
        use TieringPolicy::*;
        assert!(brings_back(&class(Auto, Default), false));
        assert!(!brings_back(&class(Auto, Default), true));
        assert!(!brings_back(&class(All, Default), false));
        assert!(brings_back(&class(All, OnRead), true));
        assert!(!brings_back(&class(Auto, Never), false));
        assert!(brings_back(&class(None, Default), true));
    }

    #[test]
    fn names_match_the_configuration_spelling() {
        for p in [
            TieringPolicy::None,
            TieringPolicy::SnapshotOnly,
            TieringPolicy::Auto,
            TieringPolicy::All,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for r in [
            RetrievalPolicy::Default,
            RetrievalPolicy::OnRead,
            RetrievalPolicy::Never,
            RetrievalPolicy::Promote,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(
            class(TieringPolicy::Auto, RetrievalPolicy::Default).describe(),
            "auto 31d, default retrieval"
        );
        assert_eq!(
            class(TieringPolicy::All, RetrievalPolicy::OnRead).describe(),
            "all, on-read retrieval"
        );
    }
}
