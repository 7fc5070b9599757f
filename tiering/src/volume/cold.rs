//! The cold side of a volume's I/O path: reading extents whose only copy is
//! in the object store (whole or frame by frame, through the engine's cache),
//! reading ahead for sequential readers, and bringing extents back.
//!
//! Invariant kept here: an extent becomes local again only if it is still the
//! remote generation that was fetched, and only after its bytes are durable in
//! the local file; a failed or damaged fetch is an error naming the volume,
//! extent and object, never zeros.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use backends::Body;
use policy::Fetch;

use super::{BringBack, Layer, Volume};
use crate::engine::FetchFailure;
use crate::error::{Result, TierError};
use crate::extent_map::{ExtentRecord, RemoteExtent, Slot};

fn integrity(vol: &str, extent: u64, key: &str, f: FetchFailure) -> TierError {
    match f {
        FetchFailure::Integrity(reason) => TierError::Integrity {
            volume: vol.to_string(),
            extent,
            key: key.to_string(),
            reason,
        },
        FetchFailure::Backend(source) => TierError::Fetch {
            volume: vol.to_string(),
            extent,
            key: key.to_string(),
            source,
        },
    }
}

impl Volume {
    pub(crate) fn remote_record(&self, layer: &Layer, e: u64) -> Result<RemoteExtent> {
        match layer.map.read().record(e)? {
            Some(ExtentRecord::Remote(r)) | Some(ExtentRecord::Overlay { remote: r, .. }) => Ok(r),
            other => Err(TierError::CorruptMetadata {
                key: format!("extent {}/{e}", layer.id),
                reason: format!("state says remote but the record is {other:?}"),
            }),
        }
    }

    /// The whole extent `e` of `layer` from the backend (or the cache, which
    /// layers sharing it share).
    pub(crate) fn fetch_whole(&self, layer: &Layer, e: u64, rec: &RemoteExtent) -> Result<Body> {
        let (_, len) = self.extent_range(e);
        let fk = (layer.id, e, rec.generation);
        let (data, performed) = self
            .engine
            .fetch_extent(fk, rec, len as usize)
            .map_err(|f| self.fetch_failed(e, &rec.key, f))?;
        if performed {
            self.stats.fetches.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_fetched
                .fetch_add(rec.stored_size(), Ordering::Relaxed);
            self.note_fetch(rec.stored_size());
        }
        Ok(data)
    }

    fn fetch_failed(&self, e: u64, key: &str, f: FetchFailure) -> TierError {
        if matches!(f, FetchFailure::Integrity(_)) {
            self.stats.integrity_errors.fetch_add(1, Ordering::Relaxed);
            self.engine
                .stats
                .integrity_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        let err = integrity(&self.name(), e, key, f);
        tracing::error!(volume = %self.name(), extent = e, key, error = %err, "cold read failed");
        err
    }

    /// Reads part of a remote extent into `buf` as the cold-read plan says:
    /// the whole object (shared and cached; returned so the caller can bring
    /// it back) or only the frames the read touches.
    pub(super) fn read_remote(
        &self,
        layer: &Layer,
        e: u64,
        rec: &RemoteExtent,
        within: u64,
        buf: &mut [u8],
        fetch: Fetch,
    ) -> Result<Option<Body>> {
        let (_, ext_len) = self.extent_range(e);
        let (first, last) = match fetch {
            Fetch::Whole => {
                let data = self.fetch_whole(layer, e, rec)?;
                data.copy_to_slice(within as usize, buf);
                return Ok(Some(data));
            }
            Fetch::Frames { first, last } => (first as usize, last as usize),
        };
        // The plan counts frames from the extent's length; a record holding
        // fewer is damaged metadata, never a reason to index past its end.
        if last > rec.frames.len() || first >= last {
            return Err(TierError::CorruptMetadata {
                key: format!("extent {}/{e}", layer.id),
                reason: format!(
                    "the read needs frames {first}..{last} but the record has {}",
                    rec.frames.len()
                ),
            });
        }
        let fs = rec.frame_size as u64;
        // Not in the cache, so a miss, even though only some frames are fetched.
        self.engine
            .stats
            .cache_misses
            .fetch_add(1, Ordering::Relaxed);
        let data = self
            .engine
            .fetch_frames(rec, first, last, ext_len as usize)
            .map_err(|f| self.fetch_failed(e, &rec.key, f))?;
        let stored = rec.frame_offset(last) - rec.frame_offset(first);
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_fetched
            .fetch_add(stored, Ordering::Relaxed);
        self.note_fetch(stored);
        let skip = (within - first as u64 * fs) as usize;
        buf.copy_from_slice(&data[skip..skip + buf.len()]);
        Ok(None)
    }

    /// Makes a remote extent of `layer` local with `data` (its object's
    /// content), if it is still the same remote generation. Durable before
    /// the record goes. An overlay keeps its own blocks: only the others
    /// are written from `data`.
    pub(crate) fn rehydrate_with(
        &self,
        layer: &Layer,
        e: u64,
        generation: u64,
        data: &Body,
    ) -> Result<bool> {
        let stripe = layer.stripe(e);
        let _g = stripe.lock.write();
        let map = layer.map.read();
        let slot = map.slot(e);
        if !matches!(slot, Slot::Remote | Slot::Overlay) {
            return Ok(false);
        }
        match map.record(e)?.as_ref().and_then(ExtentRecord::remote) {
            Some(r) if r.generation == generation => {}
            _ => return Ok(false),
        }
        if slot == Slot::Overlay {
            let held = map.blocks(e);
            let (start, len) = self.extent_range(e);
            for (from, to, is_held) in self.block_runs(e, start, len as usize, held.as_deref()) {
                if is_held {
                    continue;
                }
                let mut part = vec![0u8; (to - from) as usize];
                data.copy_to_slice((from - start) as usize, &mut part);
                layer
                    .tier
                    .write_at(&part, from)
                    .map_err(|err| self.layer_err(layer, "rehydrate", err))?;
            }
            layer
                .tier
                .sync()
                .map_err(|err| self.layer_err(layer, "fdatasync", err))?;
        } else {
            self.write_extent_durably(layer, e, data.segments(), "rehydrate")?;
        }
        crate::failpoint::hit("rehydrate-before-commit");
        map.make_local(e)?;
        crate::failpoint::hit("rehydrate-after-commit");
        stripe.seq.fetch_add(1, Ordering::SeqCst);
        self.engine.forget(&(layer.id, e, generation));
        self.brought_back(e, data.len());
        self.note_returned(e);
        Ok(true)
    }

    fn brought_back(&self, e: u64, bytes: usize) {
        self.stats.rehydrations.fetch_add(1, Ordering::Relaxed);
        let m = &self.engine.metrics;
        m.migrations.with_label_values(&["rehydrate", "ok"]).inc();
        m.migration_bytes
            .with_label_values(&["rehydrate"])
            .inc_by(bytes as u64);
        tracing::debug!(volume = %self.name(), extent = e, "extent rehydrated");
    }

    /// Brings a remote extent of a layer below into the top layer, where the
    /// top layer still inherits all of it: the layer below keeps its object
    /// for the snapshots that share it. Durable before the record says local.
    /// The record is Backed by that object: until a write changes the
    /// extent, a backup names the object and a tier pass points back at it,
    /// neither uploading the same bytes again.
    pub(crate) fn copy_up(&self, top: &Layer, e: u64, back: &BringBack) -> Result<bool> {
        let stripe = top.stripe(e);
        let _g = stripe.lock.write();
        let map = top.map.read();
        if map.slot(e) != Slot::Inherit {
            return Ok(false);
        }
        // Still the object the data came from (frozen layers only move
        // their data, so this holds unless it was collected), and all of
        // the extent (not an overlay's object).
        if back.layer.map.read().slot(e) != Slot::Remote {
            return Ok(false);
        }
        let source = match back.layer.map.read().record(e)? {
            Some(ExtentRecord::Remote(r))
                if r.generation == back.generation && r.blocks.is_none() =>
            {
                r
            }
            _ => return Ok(false),
        };
        self.write_extent_durably(top, e, back.data.segments(), "copy up")?;
        map.commit(e, &ExtentRecord::Backed(source))?;
        stripe.seq.fetch_add(1, Ordering::SeqCst);
        self.brought_back(e, back.data.len());
        Ok(true)
    }

    /// Brings extent `e` of the top layer back if it is remote (promote
    /// passes, writes).
    pub(crate) fn rehydrate(&self, e: u64) -> Result<bool> {
        let top = self.top();
        let rec = {
            let _g = top.stripe(e).lock.read();
            if !matches!(top.map.read().slot(e), Slot::Remote | Slot::Overlay) {
                return Ok(false);
            }
            self.remote_record(&top, e)?
        };
        let r = self
            .fetch_whole(&top, e, &rec)
            .and_then(|data| self.rehydrate_with(&top, e, rec.generation, &data));
        if r.is_err() {
            let m = &self.engine.metrics.migrations;
            m.with_label_values(&["rehydrate", "error"]).inc();
        }
        r
    }

    /// Brings extent `e` into the top layer ahead of any read, when the top
    /// layer reads all of it from one remote object below (a restored
    /// volume's hot set). Returns whether it did.
    pub(crate) fn prefetch_extent(&self, e: u64) -> Result<bool> {
        let top = self.top();
        if e >= top.map.read().len() || top.map.read().slot(e) != Slot::Inherit {
            return Ok(false);
        }
        let Some(layer) = whole_remote_source(&top, e) else {
            return Ok(false);
        };
        // An overlay's object is not the extent's content.
        if layer.map.read().slot(e) != Slot::Remote {
            return Ok(false);
        }
        let rec = self.remote_record(&layer, e)?;
        let data = self.fetch_whole(&layer, e, &rec)?;
        let back = BringBack {
            layer,
            generation: rec.generation,
            data,
        };
        self.copy_up(&top, e, &back)
    }

    /// Prefetches the planned extents whose data, read through the volume,
    /// is a whole remote object not cached, as tracked background tasks
    /// (shutdown waits for or cancels them), in order and while the engine's
    /// read-ahead limit allows.
    pub(super) fn readahead(self: &Arc<Self>, extents: std::ops::Range<u64>) {
        let top = self.top();
        for e in extents {
            let Some(layer) = whole_remote_source(&top, e) else {
                continue;
            };
            let Ok(rec) = self.remote_record(&layer, e) else {
                continue;
            };
            if self
                .engine
                .cached_or_fetching(&(layer.id, e, rec.generation))
            {
                continue;
            }
            // At the limit, the extents further ahead wait for the next
            // read of the stream to ask again.
            let Some(slot) = self.engine.readahead_slot() else {
                return;
            };
            let vol = self.clone();
            self.engine.tasks().spawn_blocking(move || {
                // A failed prefetch is only a lost head start: the read that
                // needs the extent fetches it again and reports any error.
                let _ = vol.fetch_whole(&layer, e, &rec);
                drop(slot);
            });
        }
    }
}

/// The layer whose remote object a read of extent `e` through `top` gets
/// whole: down through the layers that inherit it, to one that holds it
/// remote and entire (or as an overlay, whose object is entire). Reading ahead in the layer where the last read found
/// its extent would fetch that layer's older copy of any extent a layer
/// above has rewritten (a restored incremental backup: every changed
/// extent, fetched twice).
fn whole_remote_source(top: &Arc<Layer>, e: u64) -> Option<Arc<Layer>> {
    let mut layer = top.clone();
    loop {
        let (slot, partial) = {
            let map = layer.map.read();
            if e >= map.len() {
                return None;
            }
            (map.slot(e), map.blocks(e).is_some())
        };
        match slot {
            Slot::Inherit => layer = layer.parent.clone()?,
            Slot::Remote if !partial => return Some(layer),
            Slot::Overlay => return Some(layer),
            _ => return None,
        }
    }
}
