//! Restoring volumes from a bucket on any node, empty data directory or
//! not: read a manifest and its layer indexes, claim the volume's next
//! fencing generation (so the node that had it stops writing it), and make
//! the volume from remote layers. It is servable at once; reads fetch what
//! they touch, by the class's retrieval policy.

use std::collections::BTreeMap;

use serde::Serialize;

use super::manifest::Manifest;
use super::{manifest_keys, read_index, read_manifest};
use crate::error::{Result, TierError};
use crate::extent_map::ExtentRecord;
use crate::volume::{claim, claimed_generations, RestorePlan, RestoredLayer, Volumes};

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    pub backend: String,
    /// The volume (its name in the bucket); every volume with `all`.
    pub volume: Option<String>,
    /// A backup id; the newest when None.
    pub backup: Option<String>,
    /// Restore as a new volume of this name (a copy with its own identity;
    /// the original is not fenced).
    pub as_name: Option<String>,
    pub all: bool,
    /// The class to put it in; the backup's when None.
    pub class: Option<String>,
}

/// One restored volume.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub volume: String,
    pub backup: String,
    pub uid: String,
    pub generation: u64,
    pub size: u64,
    pub class: String,
    pub layers: usize,
    pub extents_remote: u64,
    /// Extents the manifest names as hot, to fetch first.
    pub hot_extents: Vec<u64>,
}

/// Restores what `req` asks for. Blocks; run it on a blocking thread.
pub fn restore(volumes: &Volumes, req: &RestoreRequest) -> Result<Vec<Restored>> {
    let engine = volumes.engine();
    let store = engine.backend(&req.backend)?;
    if req.all {
        if req.volume.is_some() || req.backup.is_some() || req.as_name.is_some() {
            return Err(TierError::InvalidArgument(
                "--all restores the newest backup of every volume under its own name: it takes no volume, backup or --as".into(),
            ));
        }
        let listed = engine.block_on(super::list(store.as_ref(), &req.backend, None))?;
        let mut newest: BTreeMap<String, String> = BTreeMap::new();
        for info in listed.into_iter().flatten() {
            let e = newest.entry(info.volume.clone()).or_default();
            if info.id > *e {
                *e = info.id;
            }
        }
        if newest.is_empty() {
            return Err(TierError::InvalidArgument(format!(
                "backend {:?} holds no backups",
                req.backend
            )));
        }
        let mut out = Vec::new();
        for (volume, id) in newest {
            let one = RestoreRequest {
                volume: Some(volume),
                backup: Some(id),
                all: false,
                ..req.clone()
            };
            out.extend(restore(volumes, &one)?);
        }
        return Ok(out);
    }
    let Some(volume) = req.volume.as_deref() else {
        return Err(TierError::InvalidArgument(
            "name the volume to restore (or pass --all)".into(),
        ));
    };
    let name = req.as_name.clone().unwrap_or_else(|| volume.to_string());
    if volumes.get(&name).is_ok() {
        return Err(TierError::InvalidArgument(format!(
            "volume {name:?} exists on this node; restore under another name with --as NEW, or delete it first"
        )));
    }
    let all = engine.block_on(manifest_keys(store.as_ref(), volume))?;
    let chosen = match &req.backup {
        Some(id) => all.iter().find(|(i, _)| i == id),
        None => all.last(),
    };
    let Some((id, key)) = chosen else {
        return Err(TierError::BackupNotFound {
            volume: volume.to_string(),
            backup: req.backup.clone().unwrap_or_else(|| "(newest)".into()),
            backend: req.backend.clone(),
            known: all.iter().map(|(i, _)| i.clone()).collect(),
        });
    };
    let manifest = engine
        .block_on(read_manifest(store.as_ref(), &req.backend, key))
        .map_err(|e| match e {
            TierError::BadBackup {
                backend,
                key,
                reason,
            } => TierError::BadBackup {
                backend,
                key,
                reason: format!(
                    "{reason}; older backups of {volume:?}: {}",
                    all.iter()
                        .map(|(i, _)| i.as_str())
                        .filter(|i| *i != id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            e => e,
        })?;
    restore_manifest(volumes, req, &manifest, &name)
}

/// Brings the hot set a manifest names into the restored volume's local
/// layer in the background, hottest first (a tracked task: shutdown stops
/// it between extents), unless its class never brings data back.
fn prefetch_hot(volumes: &Volumes, vol: &std::sync::Arc<crate::volume::Volume>, hot: &[u64]) {
    let engine = volumes.engine().clone();
    let never = engine
        .class(&vol.meta().class)
        .is_ok_and(|c| c.retrieval_policy == crate::config::RetrievalPolicy::Never);
    if never || hot.is_empty() {
        return;
    }
    let (vol, hot) = (vol.clone(), hot.to_vec());
    engine.clone().tasks().spawn_blocking(move || {
        let mut brought = 0;
        for e in hot {
            if engine.is_stopping() || vol.is_closed() {
                break;
            }
            match vol.prefetch_extent(e) {
                Ok(true) => brought += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(volume = %vol.name(), extent = e, error = %err, "prefetch of the hot set stopped");
                    break;
                }
            }
        }
        tracing::info!(volume = %vol.name(), extents = brought, "hot set prefetched");
    });
}

/// Claims the next fencing generation of volume `uid` in `store` for this
/// node (restoring it as `name`): whoever held the volume is fenced.
pub(crate) fn take_over(
    volumes: &Volumes,
    store: &dyn backends::ObjectStore,
    uid: &str,
    name: &str,
) -> Result<u64> {
    let engine = volumes.engine();
    let mut g = engine
        .block_on(claimed_generations(store, uid))?
        .last()
        .copied()
        .unwrap_or(0)
        + 1;
    let meta = crate::volume::VolumeMeta {
        id: 0,
        name: name.to_string(),
        size: 0,
        class: String::new(),
        extent_size: 0,
        created_ms: 0,
        record_trace: None,
        layer: None,
        uid: uid.to_string(),
        generation: 0,
        fenced: false,
    };
    let now = volumes.clock().now_ms();
    while !engine.block_on(claim(store, &meta, g, volumes.node(), now))? {
        g += 1;
    }
    tracing::info!(
        volume = name,
        uid,
        generation = g,
        "generation claimed to take the volume over"
    );
    Ok(g)
}

fn restore_manifest(
    volumes: &Volumes,
    req: &RestoreRequest,
    manifest: &Manifest,
    name: &str,
) -> Result<Vec<Restored>> {
    let engine = volumes.engine();
    let store = engine.backend(&req.backend)?;
    let class = req.class.clone().unwrap_or_else(|| manifest.class.clone());
    let config = engine.config();
    if !config.classes.contains_key(&class) {
        return Err(TierError::UnknownClass {
            class,
            known: config.class_names(),
        });
    }
    let mut layers = Vec::new();
    let mut remote = 0;
    for ml in &manifest.layers {
        let ix = engine.block_on(read_index(store.as_ref(), &req.backend, &ml.index))?;
        if ix.layer != ml.name {
            return Err(TierError::BadBackup {
                backend: req.backend.clone(),
                key: ml.index.clone(),
                reason: format!(
                    "index describes layer {:?}, the manifest says {:?}",
                    ix.layer, ml.name
                ),
            });
        }
        let records = ix
            .records
            .into_iter()
            .map(|(e, rec)| match rec {
                // The objects are where this node reads them from now.
                ExtentRecord::Remote(mut r) | ExtentRecord::Backed(mut r) => {
                    remote += 1;
                    r.backend = req.backend.clone();
                    (e, ExtentRecord::Remote(r))
                }
                rec => (e, rec),
            })
            .collect();
        layers.push(RestoredLayer {
            name: ml.name.clone(),
            index: Some(ml.index.clone()),
            size: ml.size,
            records,
        });
    }
    let copy = req.as_name.is_some() && req.as_name.as_deref() != Some(manifest.volume.as_str());
    let (uid, generation) = if copy {
        (crate::volume::new_uid(), 0)
    } else {
        let g = take_over(volumes, store.as_ref(), &manifest.uid, name)?;
        (manifest.uid.clone(), g)
    };
    let plan = RestorePlan {
        name: name.to_string(),
        uid: uid.clone(),
        class: class.clone(),
        size: manifest.size,
        extent_size: manifest.extent_size,
        generation,
        layers,
    };
    let nlayers = plan.layers.len();
    let vol = volumes.restore_volume(plan)?;
    prefetch_hot(volumes, &vol, &manifest.hot_extents);
    Ok(vec![Restored {
        volume: name.to_string(),
        backup: manifest.id.clone(),
        uid,
        generation,
        size: manifest.size,
        class,
        layers: nlayers,
        extents_remote: remote,
        hot_extents: manifest.hot_extents.clone(),
    }])
}
