//! The scavenger: `tierd recover scan`. When every manifest of a volume is
//! lost, its objects still say what they are (see `object_header`): this
//! rebuilds the volume from a listing of the bucket and the headers.
//!
//! For each layer and extent the newest object wins (a frozen layer's
//! objects of one extent are all the same bytes; a live layer's newest is
//! its last upload). The chain is rebuilt from the parent names in the
//! headers, from the layer with the newest object down. What the bucket
//! never held (writes not yet tiered or backed up) cannot come back, and a
//! layer that uploaded nothing ends the chain (the report says so).

use std::collections::{BTreeMap, HashMap, HashSet};

use backends::ObjectStore;
use futures::TryStreamExt;
use serde::Serialize;

use super::restore::take_over;
use crate::error::{Result, TierError};
use crate::extent_map::{ExtentRecord, RemoteExtent};
use crate::keys;
use crate::object_header::{ObjectHeader, PROBE_LEN};
use crate::volume::{RestorePlan, RestoredLayer, Volumes};

/// What to rebuild.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    pub backend: String,
    /// Only this volume (by the name its objects carry); all without.
    pub volume: Option<String>,
    /// Rebuild as a copy under this name (one volume only).
    pub as_name: Option<String>,
    /// The class to put it in (default: the configuration's `default`).
    pub class: Option<String>,
}

/// One rebuilt volume.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    pub volume: String,
    pub uid: String,
    pub generation: u64,
    pub size: u64,
    pub layers: usize,
    pub extents: u64,
    pub objects_listed: u64,
    /// Objects whose header could not be read (skipped).
    pub unreadable: Vec<String>,
    /// Why the chain ends where it does, if a parent had no objects.
    pub note: Option<String>,
}

/// The newest object of one extent of one layer, and its header.
struct Found {
    key: String,
    written_ms: u64,
    header: Option<(ObjectHeader, u32)>,
}

/// Rebuilds volumes from `req.backend`'s objects. Blocks.
pub fn scan(volumes: &Volumes, req: &ScanRequest) -> Result<Vec<Rebuilt>> {
    let engine = volumes.engine();
    let store = engine.backend(&req.backend)?;
    let metas: Vec<backends::ObjectMeta> =
        engine.block_on(store.list(keys::DATA_PREFIX).try_collect())?;
    // uid -> layer -> extent -> newest object.
    let mut by_uid: BTreeMap<String, HashMap<String, BTreeMap<u64, Found>>> = BTreeMap::new();
    let mut listed: HashMap<String, u64> = HashMap::new();
    for m in metas {
        let Some(dk) = keys::parse_data_key(&m.key) else {
            continue;
        };
        *listed.entry(dk.uid.clone()).or_default() += 1;
        let slot = by_uid
            .entry(dk.uid)
            .or_default()
            .entry(dk.layer)
            .or_default()
            .entry(dk.extent);
        let newer = Found {
            key: m.key,
            written_ms: dk.written_ms,
            header: None,
        };
        match slot {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(newer);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if newer.written_ms > o.get().written_ms {
                    o.insert(newer);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (uid, mut layers) in by_uid {
        let mut unreadable = Vec::new();
        let mut name = None;
        for extents in layers.values_mut() {
            for f in extents.values_mut() {
                match engine.block_on(read_header(store.as_ref(), &f.key)) {
                    Ok(h) => {
                        name.get_or_insert_with(|| h.0.volume.clone());
                        f.header = Some(h);
                    }
                    Err(e) => unreadable.push(format!("{}: {e}", f.key)),
                }
            }
        }
        let Some(name) = name else { continue };
        if req.volume.as_deref().is_some_and(|v| v != name) {
            continue;
        }
        out.push(rebuild(
            volumes,
            req,
            &store,
            &uid,
            &name,
            layers,
            listed.get(&uid).copied().unwrap_or(0),
            unreadable,
        )?);
    }
    if out.is_empty() {
        return Err(TierError::InvalidArgument(match &req.volume {
            Some(v) => format!(
                "backend {:?} holds no readable objects of a volume named {v:?}",
                req.backend
            ),
            None => format!("backend {:?} holds no readable tierd objects", req.backend),
        }));
    }
    Ok(out)
}

async fn read_header(
    store: &dyn ObjectStore,
    key: &str,
) -> std::result::Result<(ObjectHeader, u32), String> {
    let head = store
        .get_range(key, 0..PROBE_LEN)
        .await
        .map_err(|e| e.to_string())?;
    let len = ObjectHeader::announced_len(&head).ok_or("no object header")? as u64;
    let bytes = if len > head.len() as u64 {
        store
            .get_range(key, 0..len)
            .await
            .map_err(|e| e.to_string())?
    } else {
        head
    };
    ObjectHeader::decode(&bytes)
}

#[allow(clippy::too_many_arguments)]
fn rebuild(
    volumes: &Volumes,
    req: &ScanRequest,
    store: &std::sync::Arc<dyn ObjectStore>,
    uid: &str,
    name: &str,
    layers: HashMap<String, BTreeMap<u64, Found>>,
    objects_listed: u64,
    unreadable: Vec<String>,
) -> Result<Rebuilt> {
    let parent_of: HashMap<&str, &str> = layers
        .iter()
        .filter_map(|(l, ex)| {
            ex.values()
                .find_map(|f| f.header.as_ref())
                .map(|(h, _)| (l.as_str(), h.parent.as_str()))
        })
        .collect();
    let parents: HashSet<&str> = parent_of.values().copied().collect();
    // The top: a layer no other layer sits on, with the newest object.
    let newest = |l: &str| {
        layers
            .get(l)
            .map(|ex| ex.values().map(|f| f.written_ms).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let top = parent_of
        .keys()
        .filter(|l| !parents.contains(*l))
        .max_by_key(|l| newest(l))
        .copied()
        .ok_or_else(|| {
            TierError::InvalidArgument(format!("volume {name:?}: its layers form a loop"))
        })?;
    let mut chain = vec![top];
    let mut note = None;
    while let Some(p) = parent_of.get(chain.last().copied().unwrap_or_default()) {
        if p.is_empty() {
            break;
        }
        if !parent_of.contains_key(p) {
            note = Some(format!(
                "layer {p} has no objects in the bucket: the volume is rebuilt from the layers above it"
            ));
            break;
        }
        if chain.contains(p) {
            break;
        }
        chain.push(p);
    }
    chain.reverse();
    let mut size = 0;
    let mut extent_size = 0;
    let mut restored = Vec::new();
    let mut extents = 0;
    for l in &chain {
        let mut records = Vec::new();
        let mut layer_size = 0;
        for (e, f) in layers.get(*l).into_iter().flatten() {
            let Some((h, header_len)) = &f.header else {
                continue;
            };
            size = size.max(h.volume_size);
            layer_size = layer_size.max(h.volume_size);
            extent_size = h.extent_size;
            extents += 1;
            records.push((
                *e,
                ExtentRecord::Remote(RemoteExtent {
                    backend: req.backend.clone(),
                    key: f.key.clone(),
                    generation: h.written_ms,
                    checksum: h.checksum,
                    compression: h.compression,
                    frame_size: h.frame_size,
                    frames: h.frames.clone(),
                    blocks: h.blocks.clone(),
                    header_len: *header_len,
                }),
            ));
        }
        restored.push(RestoredLayer {
            name: l.to_string(),
            index: None,
            size: layer_size,
            records,
        });
    }
    for l in &mut restored {
        if l.size == 0 {
            l.size = size;
        }
    }
    let target = req.as_name.clone().unwrap_or_else(|| name.to_string());
    let copy = target != name;
    let class = req.class.clone().unwrap_or_else(|| "default".to_string());
    let config = volumes.engine().config();
    if !config.classes.contains_key(&class) {
        return Err(TierError::UnknownClass {
            class,
            known: config.class_names(),
        });
    }
    if volumes.get(&target).is_ok() {
        return Err(TierError::InvalidArgument(format!(
            "volume {target:?} exists on this node; rebuild under another name with --as NEW, or delete it first"
        )));
    }
    let (new_uid, generation) = if copy {
        (crate::volume::new_uid(), 0)
    } else {
        (
            uid.to_string(),
            take_over(volumes, store.as_ref(), uid, &target)?,
        )
    };
    volumes.restore_volume(RestorePlan {
        name: target.clone(),
        uid: new_uid.clone(),
        class,
        size,
        extent_size,
        generation,
        layers: restored,
    })?;
    tracing::info!(volume = %target, layers = chain.len(), extents, "volume rebuilt from object headers");
    Ok(Rebuilt {
        volume: target,
        uid: new_uid,
        generation,
        size,
        layers: chain.len(),
        extents,
        objects_listed,
        unreadable,
        note,
    })
}
