//! Fencing: which node may write a volume's objects (after Neon's
//! generation numbers). A node holds a generation for a volume in the
//! backend of its class, claimed by a conditional put of
//! `generations/<uid>/<generation>`: a claim is made once and never
//! overwritten, so two nodes never hold one generation. Every key a node
//! writes for the volume carries its generation, so two nodes never write
//! the same key. A restore on another node claims the next generation; this
//! node learns it at its next pass, backup or collection (a listing of the
//! claims shows a newer one), and from then on the volume is fenced: no
//! upload, no backup, no deletion of its objects, no client writes.
//!
//! Invariant: a volume's `generation` is one this node claimed (or 0:
//! none yet, nothing uploaded under the new layout), and `fenced` is never
//! cleared.

use std::collections::HashMap;
use std::sync::Arc;

use backends::{BackendError, ObjectStore, PutOptions};
use futures::TryStreamExt;
use rocksdb::WriteBatch;

use super::{Volume, VolumeMeta, Volumes};
use crate::db::{self, CF_META};
use crate::error::{Result, TierError};
use crate::keys;

impl Volume {
    pub fn is_fenced(&self) -> bool {
        self.meta.read().fenced
    }

    /// Why a fenced volume refuses to write.
    pub(crate) fn fenced_error(&self) -> TierError {
        let m = self.meta();
        let backend = self
            .engine
            .class(&m.class)
            .ok()
            .and_then(|c| c.backend.clone())
            .unwrap_or_default();
        TierError::Fenced {
            volume: m.name,
            backend,
            ours: m.generation,
            newer: m.generation + 1,
        }
    }
}

/// The generations claimed for volume `uid` in `store`, highest last.
pub async fn claimed_generations(store: &dyn ObjectStore, uid: &str) -> Result<Vec<u64>> {
    let metas: Vec<backends::ObjectMeta> = store
        .list(&keys::generations_prefix(uid))
        .try_collect()
        .await?;
    let mut gens: Vec<u64> = metas
        .iter()
        .filter_map(|m| keys::parse_generation_key(&m.key))
        .filter(|(u, _)| u == uid)
        .map(|(_, g)| g)
        .collect();
    gens.sort_unstable();
    Ok(gens)
}

/// Claims generation `generation` of volume `meta` in `store`; false if
/// another node holds it already.
pub async fn claim(
    store: &dyn ObjectStore,
    meta: &VolumeMeta,
    generation: u64,
    node: &str,
    now_ms: u64,
) -> Result<bool> {
    let body = serde_json::json!({
        "volume": meta.name,
        "uid": meta.uid,
        "generation": generation,
        "node": node,
        "claimed_ms": now_ms,
    });
    let key = keys::generation_key(&meta.uid, generation);
    match store
        .put(&key, body.to_string().into(), &PutOptions::if_absent())
        .await
    {
        Ok(_) => Ok(true),
        Err(BackendError::PreconditionFailed(_)) => {
            // Ours, if an earlier attempt of this put landed.
            let there = store.get(&key).await?.into_bytes();
            let theirs: serde_json::Value = serde_json::from_slice(&there).unwrap_or_default();
            Ok(theirs.get("node").and_then(|n| n.as_str()) == Some(node)
                && theirs.get("claimed_ms").and_then(|n| n.as_u64()) == Some(now_ms))
        }
        Err(e) => Err(e.into()),
    }
}

impl Volumes {
    /// Makes sure this node may write `vol`'s objects: claims generation 1
    /// on first use, and fences the volume if another node holds a newer
    /// generation. Returns the generation held (0 for a class that tiers
    /// nowhere). Blocks on the backend: call it from a blocking thread.
    pub fn ensure_owner(&self, vol: &Volume) -> Result<u64> {
        let meta = vol.meta();
        let class = self.engine.class(&meta.class)?;
        let Some(backend) = class.backend.clone() else {
            return Ok(meta.generation);
        };
        if meta.fenced {
            return Err(vol.fenced_error());
        }
        let store = self.engine.backend(&backend)?;
        self.ensure_owner_in(vol, &backend, &store)
    }

    /// [`Volumes::ensure_owner`] in a given backend.
    pub fn ensure_owner_in(
        &self,
        vol: &Volume,
        backend: &str,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<u64> {
        let meta = vol.meta();
        if meta.fenced {
            return Err(vol.fenced_error());
        }
        let gens = self
            .engine
            .block_on(claimed_generations(store.as_ref(), &meta.uid))?;
        let newest = gens.last().copied().unwrap_or(0);
        if newest > meta.generation {
            // Another node restored this volume (or, with no generation of
            // ours, restored it before we ever uploaded).
            tracing::warn!(volume = %meta.name, ours = meta.generation, newer = newest, backend, "volume fenced: another node holds a newer generation");
            self.set_owner(vol, meta.generation, true)?;
            return Err(TierError::Fenced {
                volume: meta.name,
                backend: backend.to_string(),
                ours: meta.generation,
                newer: newest,
            });
        }
        if meta.generation > 0 {
            return Ok(meta.generation);
        }
        let now = self.clock.now_ms();
        if !self
            .engine
            .block_on(claim(store.as_ref(), &meta, 1, &self.node, now))?
        {
            self.set_owner(vol, 0, true)?;
            return Err(TierError::Fenced {
                volume: meta.name,
                backend: backend.to_string(),
                ours: 0,
                newer: 1,
            });
        }
        self.set_owner(vol, 1, false)?;
        tracing::info!(volume = %meta.name, uid = %meta.uid, backend, "generation 1 claimed");
        Ok(1)
    }

    /// Persists `vol`'s generation and fenced flag.
    pub(super) fn set_owner(&self, vol: &Volume, generation: u64, fenced: bool) -> Result<()> {
        let _g = self.admin.lock();
        let mut meta = vol.meta();
        meta.generation = generation;
        meta.fenced = meta.fenced || fenced;
        let mut batch = WriteBatch::default();
        self.put_meta(&mut batch, &meta)?;
        db::write_synced(&self.db, batch)?;
        *vol.meta.write() = meta;
        Ok(())
    }

    /// This data directory's identity.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn engine(&self) -> &Arc<crate::engine::Engine> {
        &self.engine
    }

    pub fn clock(&self) -> &Arc<dyn heatmap::Clock> {
        &self.clock
    }

    /// Remembers, in `batch`, that deleted volume `meta` wrote objects
    /// under its uid, so GC may still collect them.
    pub(super) fn put_tombstone(&self, batch: &mut WriteBatch, meta: &VolumeMeta) -> Result<()> {
        if !meta.fenced {
            batch.put_cf(
                db::cf(&self.db, CF_META)?,
                tombstone_key(&meta.uid),
                meta.generation.to_be_bytes(),
            );
        }
        Ok(())
    }

    /// The volume uids whose objects this node may delete, with the newest
    /// generation it wrote them under: its volumes that are not fenced, and
    /// its deleted volumes' (until [`Volumes::forget_deleted`]).
    pub fn owned_uids(&self) -> Result<HashMap<String, Owned>> {
        let mut out: HashMap<String, Owned> = self
            .list()
            .into_iter()
            .map(|v| v.meta())
            .filter(|m| !m.fenced)
            .map(|m| {
                (
                    m.uid,
                    Owned {
                        generation: m.generation,
                        deleted: false,
                    },
                )
            })
            .collect();
        let cf = db::cf(&self.db, CF_META)?;
        for item in self.db.prefix_iterator_cf(cf, TOMBSTONE_PREFIX.as_bytes()) {
            let (k, v) = item.map_err(|source| TierError::Db {
                op: "iterate tombstones",
                source: source.into(),
            })?;
            let Some(uid) = k.strip_prefix(TOMBSTONE_PREFIX.as_bytes()) else {
                break;
            };
            let generation = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            out.entry(String::from_utf8_lossy(uid).into_owned())
                .or_insert(Owned {
                    generation,
                    deleted: true,
                });
        }
        Ok(out)
    }

    /// Drops the tombstone of a deleted volume whose objects are all gone.
    pub fn forget_deleted(&self, uid: &str) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(db::cf(&self.db, CF_META)?, tombstone_key(uid));
        db::write_synced(&self.db, batch)
    }

    /// Whether this node wrote objects under the layout from before volume
    /// uids (keys `<layer>/<extent>/<time>`), which it alone may collect.
    pub fn owns_legacy_keys(&self) -> Result<bool> {
        super::registry::has_key(&self.db, super::registry::LEGACY_KEY)
    }
}

/// A volume uid whose objects this node may collect.
#[derive(Debug, Clone, Copy)]
pub struct Owned {
    /// Objects of newer generations are another node's.
    pub generation: u64,
    /// The volume was deleted here.
    pub deleted: bool,
}

const TOMBSTONE_PREFIX: &str = "deleted_uid/";

fn tombstone_key(uid: &str) -> Vec<u8> {
    format!("{TOMBSTONE_PREFIX}{uid}").into_bytes()
}
