//! Storage classes from real Kubernetes StorageClass manifests: every `.yaml`
//! or `.yml` file of a directory, several documents per file.
//!
//! A document becomes a class when it is a `StorageClass` whose provisioner is
//! one tierd serves. Its `metadata.name` names the class; parameters use
//! Trident's names (`tieringPolicy`, `tieringMinimumCoolingDays`) and tierd's
//! own (`tierd.io/coolingPeriod`, `tierd.io/retrievalPolicy`,
//! `tierd.io/backend`, `tierd.io/compression`, `tierd.io/uploadTier`,
//! `tierd.io/snapshotSchedule`, `tierd.io/snapshotRetention`). Other
//! kinds and other provisioners are skipped with a note; a bad value or an
//! unknown `tierd.io/` parameter is an error naming the file, the class and
//! the parameter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use policy::units::parse_duration;
use policy::{
    ClassConfig, Compression, CoolingPeriod, HumanDuration, HumanSize, RetrievalPolicy,
    TieringPolicy,
};

/// Provisioners whose classes tierd takes by default.
pub const DEFAULT_PROVISIONERS: [&str; 2] = ["tierd.io/block", "csi.trident.netapp.io"];

#[derive(Debug, Deserialize)]
struct Document {
    kind: Option<String>,
    metadata: Option<Metadata>,
    provisioner: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: Option<String>,
}

/// What loading a directory produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub classes: BTreeMap<String, ClassConfig>,
    /// Documents passed over, and why (logged by the caller).
    pub skipped: Vec<String>,
}

fn text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn enum_value<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_yaml::from_str(s).ok()
}

/// Turns one StorageClass's parameters into a class.
fn class_from(
    params: &BTreeMap<String, serde_yaml::Value>,
    at: &str,
) -> Result<ClassConfig, String> {
    let mut c = ClassConfig::default();
    for (k, v) in params {
        let val = text(v).ok_or_else(|| format!("{at}: parameter {k}: expected a string"))?;
        let bad = |what: &str| format!("{at}: parameter {k}: {val:?} is not {what}");
        let duration = |v: &str| {
            parse_duration(v)
                .map(HumanDuration)
                .map_err(|e| format!("{at}: parameter {k}: {e}"))
        };
        match k.as_str() {
            "tieringPolicy" => {
                c.tiering_policy = enum_value::<TieringPolicy>(&val)
                    .ok_or_else(|| bad("one of none, snapshot-only, auto, all"))?
            }
            "tieringMinimumCoolingDays" => {
                let days: u64 = val.parse().map_err(|_| bad("a whole number of days"))?;
                c.cooling_period = Some(CoolingPeriod::Fixed(Duration::from_secs(days * 86_400)));
            }
            "tierd.io/coolingPeriod" => {
                c.cooling_period = Some(val.parse::<CoolingPeriod>().map_err(|e| format!("{at}: parameter {k}: {e}"))?)
            }
            "tierd.io/minCooling" => c.min_cooling = Some(duration(&val)?),
            "tierd.io/maxCooling" => c.max_cooling = Some(duration(&val)?),
            "tierd.io/thrashWindow" => c.thrash_window = Some(duration(&val)?),
            "tierd.io/maxRehydratePerDay" => {
                c.max_rehydrate_per_day = Some(val.parse::<HumanSize>().map_err(|e| format!("{at}: parameter {k}: {e}"))?)
            }
            "tierd.io/maxThrashFraction" => {
                c.max_thrash_fraction = Some(val.parse::<policy::ThrashFraction>().map_err(|e| format!("{at}: parameter {k}: {e}"))?)
            }
            "tierd.io/maxColdReadFraction" => {
                c.max_cold_read_fraction = Some(val.parse::<f64>().map_err(|_| bad("a fraction such as 0.01"))?)
            }
            "tierd.io/retrievalPolicy" => {
                c.retrieval_policy = enum_value::<RetrievalPolicy>(&val)
                    .ok_or_else(|| bad("one of default, on-read, never, promote"))?
            }
            "tierd.io/writeOverlay" => {
                c.write_overlay = val.parse().map_err(|_| bad("true or false"))?
            }
            "tierd.io/backend" => c.backend = Some(val),
            "tierd.io/compression" => {
                c.compression = enum_value::<Compression>(&val).ok_or_else(|| bad("one of none, zstd"))?
            }
            "tierd.io/uploadTier" => c.upload_tier = Some(val),
            "tierd.io/snapshotSchedule" => {
                c.snapshot_schedule = Some(HumanDuration(
                    parse_duration(&val).map_err(|e| format!("{at}: parameter {k}: {e}"))?,
                ))
            }
            "tierd.io/backupInterval" => {
                c.backup_interval = Some(HumanDuration(
                    parse_duration(&val).map_err(|e| format!("{at}: parameter {k}: {e}"))?,
                ))
            }
            "tierd.io/backupKeep" => {
                c.backup_keep = Some(val.parse().map_err(|_| bad("a whole number of backups"))?)
            }
            "tierd.io/snapshotRetention" => {
                c.snapshot_retention =
                    Some(val.parse().map_err(|_| bad("a whole number of snapshots"))?)
            }
            other if other.starts_with("tierd.io/") => {
                return Err(format!(
                    "{at}: unknown parameter {other} (tierd.io/ parameters: coolingPeriod, minCooling, maxCooling, thrashWindow, maxRehydratePerDay, maxThrashFraction, maxColdReadFraction, retrievalPolicy, writeOverlay, backend, compression, uploadTier, snapshotSchedule, snapshotRetention, backupInterval, backupKeep)"
                ))
            }
            // Parameters of the storage server itself (fsType, backendType, …).
            _ => {}
        }
    }
    Ok(c)
}

/// Loads every StorageClass of `dir` served by one of `provisioners`.
pub fn load_dir(dir: &Path, provisioners: &[String]) -> Result<Loaded, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read StorageClass directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("yaml") | Some("yml")
            )
        })
        .collect();
    files.sort();
    let mut out = Loaded::default();
    for file in files {
        let body =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&body).enumerate() {
            let at_doc = format!("{} document {}", file.display(), i + 1);
            let value =
                serde_yaml::Value::deserialize(doc).map_err(|e| format!("{at_doc}: {e}"))?;
            if value.is_null() {
                continue;
            }
            let d: Document =
                serde_yaml::from_value(value).map_err(|e| format!("{at_doc}: {e}"))?;
            if d.kind.as_deref() != Some("StorageClass") {
                out.skipped.push(format!(
                    "{at_doc}: kind {:?} is not a StorageClass",
                    d.kind.unwrap_or_default()
                ));
                continue;
            }
            let name = d
                .metadata
                .and_then(|m| m.name)
                .ok_or_else(|| format!("{at_doc}: StorageClass without metadata.name"))?;
            let prov = d.provisioner.unwrap_or_default();
            if !provisioners.contains(&prov) {
                out.skipped.push(format!(
                    "{at_doc}: StorageClass {name} belongs to provisioner {prov:?}, not to tierd ({})",
                    provisioners.join(", ")
                ));
                continue;
            }
            let class = class_from(&d.parameters, &format!("{at_doc}: StorageClass {name}"))?;
            if out.classes.insert(name.clone(), class).is_some() {
                return Err(format!("{at_doc}: StorageClass {name} is defined twice"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provs() -> Vec<String> {
        DEFAULT_PROVISIONERS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn multi_document_files_with_trident_and_tierd_parameters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("classes.yaml"),
            r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: gold
provisioner: csi.trident.netapp.io
parameters:
  backendType: ontap-nas
  tieringPolicy: none
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
provisioner: tierd.io/block
parameters:
  tieringPolicy: auto
  tieringMinimumCoolingDays: "31"
  tierd.io/backend: s3
  tierd.io/compression: zstd
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: unrelated
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ebs
provisioner: ebs.csi.aws.com
"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("archive.yml"),
            "kind: StorageClass\nmetadata:\n  name: archive\nprovisioner: tierd.io/block\nparameters:\n  tieringPolicy: all\n  tierd.io/coolingPeriod: 2d\n  tierd.io/retrievalPolicy: never\n  tierd.io/writeOverlay: \"true\"\n  tierd.io/snapshotSchedule: 1h\n  tierd.io/snapshotRetention: \"48\"\n  tierd.io/backupInterval: 6h\n  tierd.io/backupKeep: \"14\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let l = load_dir(dir.path(), &provs()).unwrap();
        assert_eq!(
            l.classes.keys().collect::<Vec<_>>(),
            vec!["archive", "gold", "standard"]
        );
        let a = &l.classes["archive"];
        assert_eq!(
            a.snapshot_schedule.map(|d| d.0),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(a.snapshot_keep(), 48);
        assert_eq!(
            a.backup_interval.map(|d| d.0),
            Some(Duration::from_secs(6 * 3600))
        );
        assert_eq!(a.backup_keep(), 14);
        assert!(a.write_overlay);
        let s = &l.classes["standard"];
        assert!(!s.write_overlay, "off unless asked for");
        assert_eq!(s.tiering_policy, TieringPolicy::Auto);
        assert_eq!(s.snapshot_schedule, None);
        assert_eq!(s.cooling(), Duration::from_secs(31 * 86_400));
        assert_eq!(s.backend.as_deref(), Some("s3"));
        assert_eq!(s.compression, Compression::Zstd);
        assert_eq!(
            l.classes["archive"].retrieval_policy,
            RetrievalPolicy::Never
        );
        assert_eq!(l.skipped.len(), 2, "{:?}", l.skipped);
        assert!(l.skipped.iter().any(|s| s.contains("ebs.csi.aws.com")));
    }

    #[test]
    fn bad_values_name_file_class_and_parameter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "kind: StorageClass\nmetadata:\n  name: odd\nprovisioner: tierd.io/block\nparameters:\n  tieringPolicy: sometimes\n",
        )
        .unwrap();
        let e = load_dir(dir.path(), &provs()).unwrap_err();
        assert!(
            e.contains("bad.yaml")
                && e.contains("odd")
                && e.contains("tieringPolicy")
                && e.contains("sometimes"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("bad.yaml"),
            "kind: StorageClass\nmetadata:\n  name: odd\nprovisioner: tierd.io/block\nparameters:\n  tierd.io/colour: blue\n",
        )
        .unwrap();
        let e = load_dir(dir.path(), &provs()).unwrap_err();
        assert!(e.contains("unknown parameter tierd.io/colour"), "{e}");
        std::fs::write(
            dir.path().join("bad.yaml"),
            "kind: StorageClass\nmetadata:\n  name: odd\nprovisioner: tierd.io/block\nparameters:\n  tierd.io/writeOverlay: sometimes\n",
        )
        .unwrap();
        let e = load_dir(dir.path(), &provs()).unwrap_err();
        assert!(
            e.contains("tierd.io/writeOverlay") && e.contains("true or false"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// The example StorageClasses shipped in deploy/kubernetes produce the
    /// policies the README promises.
    #[test]
    fn deploy_manifests_produce_the_documented_policies() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
        let provs: Vec<String> = DEFAULT_PROVISIONERS.iter().map(|s| s.to_string()).collect();
        let l = load_dir(&dir, &provs).unwrap();
        let gold = &l.classes["gold"];
        assert_eq!(gold.tiering_policy, TieringPolicy::None);
        let std = &l.classes["standard"];
        assert_eq!(std.tiering_policy, TieringPolicy::Auto);
        assert_eq!(
            std.cooling_period,
            Some(CoolingPeriod::Fixed(Duration::from_secs(31 * 86_400)))
        );
        assert_eq!(std.backend.as_deref(), Some("s3"));
        assert_eq!(std.compression, Compression::Zstd);
        let archive = &l.classes["archive"];
        assert_eq!(archive.tiering_policy, TieringPolicy::All);
        assert_eq!(archive.retrieval_policy, RetrievalPolicy::Never);
        assert_eq!(archive.backend.as_deref(), Some("azure"));
        assert_eq!(archive.upload_tier.as_deref(), Some("Cool"));
        assert_eq!(
            std.snapshot_schedule.map(|d| d.0),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(std.snapshot_keep(), 24);
        assert_eq!(archive.snapshot_schedule, None);
    }
}
