//! Moving extents between tiers: the machinery the policy drives.
//!
//! Tiering one extent follows the order that keeps it safe at every instant:
//! read the local data and note the stripe's write count; upload under a key no
//! other upload uses (volume, extent, generation); only once the upload is
//! confirmed, commit the record (synced) and punch the local copy, and only if
//! no write touched the stripe meanwhile (the write wins; the object becomes
//! garbage for the collector). A crash anywhere leaves the local copy, or a
//! committed remote copy, never neither.

use backends::{ObjectStore, PutOptions};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::blocks::Blocks;
use crate::codec;
use crate::keys;
use crate::object_header::ObjectHeader;
use policy::{ClassConfig, ExtentState, ExtentView};

use crate::error::Result;
use crate::extent_map::{ExtentRecord, RemoteExtent, Slot};
use crate::failpoint;
use crate::volume::{Layer, Volume};

mod pass;
pub use pass::{fullness, promote, run_pass, tier_pass};

/// Where an extent is: its index, its state, whether its range of the
/// local file holds data, and the share of its blocks an overlay holds.
pub type Placement = (u64, ExtentState, bool, f64);

/// What an upload reads (see `Volume::read_for_upload`): the stripe's
/// write count before the read, the bytes, the blocks held if partial.
type UploadRead = (u64, Vec<u8>, Option<Blocks>);

/// What happened to one extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Tiered {
        stored: u64,
    },
    /// An overlay merged into a new object.
    Merged {
        stored: u64,
    },
    Zero,
    /// A write landed during the upload; the extent stays local.
    Raced,
    NotLocal,
}

/// What a pass did, for the API and the status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub volume: String,
    pub kind: &'static str,
    pub candidates: usize,
    pub tiered: usize,
    /// Overlays merged into new objects.
    pub merged: usize,
    pub zero: usize,
    pub raced: usize,
    pub failed: usize,
    pub rehydrated: usize,
    pub bytes_uploaded: u64,
    pub held: Option<String>,
    /// Why the pass stopped before it had tried every candidate (the
    /// backend's circuit breaker opened, the daemon is stopping).
    pub stopped: Option<String>,
    pub errors: Vec<String>,
    pub seconds: f64,
}

impl Volume {
    /// Uploads `data`, extent `e` of `layer` (the blocks `held` of it, or
    /// all), as one self-describing object (header, then frames) under a
    /// key of this volume's fencing generation that no other upload uses.
    /// Returns the record that points at it, and the bytes stored. Refused
    /// once the volume is fenced.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upload_extent(
        &self,
        layer: &Layer,
        e: u64,
        data: &[u8],
        held: Option<Blocks>,
        compression: policy::Compression,
        tier: Option<String>,
        backend: &str,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<(RemoteExtent, u64)> {
        let meta = self.meta();
        if meta.fenced {
            return Err(self.fenced_error());
        }
        let frame_size = self.engine.config().tiering.frame_bytes();
        let encoded = codec::encode(data, frame_size as usize, compression)
            .map_err(|err| self.io_err("compress", err))?;
        let written_ms = self.engine.next_generation(self.heat().clock().now_ms());
        let key = keys::data_key(&meta.uid, meta.generation, &layer.name, e, written_ms);
        let header = ObjectHeader {
            volume_uid: meta.uid.clone(),
            volume: meta.name.clone(),
            layer: layer.name.clone(),
            parent: layer
                .parent
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            extent: e,
            extent_size: meta.extent_size,
            volume_size: layer.size(),
            generation: meta.generation,
            written_ms,
            checksum: encoded.checksum,
            compression,
            frame_size,
            frames: encoded.frames.clone(),
            blocks: held.as_ref().map(Blocks::copy),
        }
        .encode();
        let header_len = header.len() as u32;
        let mut body = Vec::with_capacity(header.len() + encoded.body.len());
        body.extend_from_slice(&header);
        body.extend_from_slice(&encoded.body);
        let stored = body.len() as u64;
        let opts = PutOptions {
            tier,
            ..Default::default()
        };
        failpoint::hit("before-upload");
        let put = {
            let slots = self.engine.upload_slots.clone();
            self.engine.block_on(async {
                let _slot = slots.acquire().await;
                store.put(&key, body.into(), &opts).await
            })
        };
        self.engine
            .record_backend_result(backend, put.as_ref().map(|_| ()));
        put?;
        Ok((
            RemoteExtent {
                backend: backend.to_string(),
                key,
                generation: written_ms,
                checksum: encoded.checksum,
                compression,
                frame_size,
                frames: encoded.frames,
                blocks: held,
                header_len,
            },
            stored,
        ))
    }

    /// Moves extent `e` of the top layer to `store` (named `backend`) under
    /// `class`.
    pub fn tier_extent(
        &self,
        e: u64,
        class: &ClassConfig,
        backend: &str,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<Outcome> {
        self.tier_layer_extent(&self.top(), e, class, backend, store, false)
    }

    /// Moves extent `e` of `layer` (the top layer, or a frozen one below it)
    /// to `store`: an extent the layer holds whole, or with `partial` (a
    /// frozen layer only, whose blocks never change) one it holds only some
    /// blocks of; that object carries the block set, its other blocks zero
    /// and always compressed, so they cost nothing.
    pub(crate) fn tier_layer_extent(
        &self,
        layer: &Layer,
        e: u64,
        class: &ClassConfig,
        backend: &str,
        store: &Arc<dyn ObjectStore>,
        partial: bool,
    ) -> Result<Outcome> {
        let outcome = self.move_layer_extent(layer, e, class, backend, store, partial)?;
        if let Outcome::Tiered { stored } | Outcome::Merged { stored } = outcome {
            // The tuner times returns of the volume's own extents; a frozen
            // layer's upload is only a request to count.
            if partial {
                if stored > 0 {
                    self.tuner.lock().on_put();
                }
            } else {
                self.note_tiered(e, &policy::Limits::of(class));
            }
        }
        Ok(outcome)
    }

    fn move_layer_extent(
        &self,
        layer: &Layer,
        e: u64,
        class: &ClassConfig,
        backend: &str,
        store: &Arc<dyn ObjectStore>,
        partial: bool,
    ) -> Result<Outcome> {
        let stripe = layer.stripe(e);
        let (start, len) = self.extent_range(e);
        if layer.map.read().slot(e) == Slot::Overlay {
            return self.merge_overlay(layer, e, class, backend, store);
        }
        if let Some(outcome) = self.tier_backed(layer, e, partial)? {
            return Ok(outcome);
        }
        let Some((seq0, data, held)) = self.read_for_upload(layer, e, partial)? else {
            return Ok(Outcome::NotLocal);
        };
        if held.is_none() && data.iter().all(|&b| b == 0) {
            let _g = stripe.lock.write();
            if stripe.seq.load(Ordering::SeqCst) != seq0 || layer.map.read().slot(e) != Slot::Local
            {
                return Ok(Outcome::Raced);
            }
            layer.map.read().commit(e, &ExtentRecord::Zero)?;
            layer
                .tier
                .punch_hole(start, len)
                .map_err(|err| self.layer_err(layer, "punch", err))?;
            return Ok(Outcome::Zero);
        }
        let compression = if held.is_some() {
            policy::Compression::Zstd
        } else {
            class.compression
        };
        let upload = self.upload_extent(
            layer,
            e,
            &data,
            held.clone(),
            compression,
            class.upload_tier.clone(),
            backend,
            store,
        );
        drop(data);
        let (remote, stored) = upload?;
        failpoint::hit("after-upload");
        let rec = ExtentRecord::Remote(remote);
        let _g = stripe.lock.write();
        let unchanged = {
            let map = layer.map.read();
            match &held {
                None => map.slot(e) == Slot::Local,
                Some(h) => map.slot(e) == Slot::Partial && map.blocks(e).is_some_and(|b| *b == *h),
            }
        };
        if stripe.seq.load(Ordering::SeqCst) != seq0 || !unchanged {
            tracing::debug!(volume = %self.name(), extent = e, "write during upload: keeping the local copy");
            return Ok(Outcome::Raced);
        }
        layer.map.read().commit(e, &rec)?;
        failpoint::hit("after-commit");
        layer
            .tier
            .punch_hole(start, len)
            .map_err(|err| self.layer_err(layer, "punch", err))?;
        failpoint::hit("after-punch");
        self.stats.bytes_tiered.fetch_add(len, Ordering::Relaxed);
        self.stats.extents_tiered.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Tiered { stored })
    }

    /// Merges the overlay of extent `e` of `layer` into a new object: the
    /// old object (cached, or fetched) with the overlay's blocks over it,
    /// uploaded like any extent; then, if no write touched the extent
    /// meanwhile, the record names the new object and the overlay's blocks
    /// are freed. The old object becomes garbage. Same order as tiering:
    /// upload, commit, punch.
    pub(crate) fn merge_overlay(
        &self,
        layer: &Layer,
        e: u64,
        class: &ClassConfig,
        backend: &str,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<Outcome> {
        let stripe = layer.stripe(e);
        let (start, len) = self.extent_range(e);
        let (seq0, old) = {
            let _g = stripe.lock.read();
            if layer.map.read().slot(e) != Slot::Overlay {
                return Ok(Outcome::NotLocal);
            }
            (
                stripe.seq.load(Ordering::SeqCst),
                self.remote_record(layer, e)?,
            )
        };
        let object = self.fetch_whole(layer, e, &old)?;
        let mut data = vec![0u8; len as usize];
        object.copy_to_slice(0, &mut data);
        drop(object);
        let held = {
            let _g = stripe.lock.read();
            let map = layer.map.read();
            if stripe.seq.load(Ordering::SeqCst) != seq0 || map.slot(e) != Slot::Overlay {
                return Ok(Outcome::Raced);
            }
            let Some(held) = map.blocks(e) else {
                return Ok(Outcome::Raced);
            };
            drop(map);
            for (a, b, is_held) in held.runs(0, held.len()) {
                if is_held {
                    let from = (a as u64 * crate::volume::BLOCK_SIZE).min(len);
                    let to = (b as u64 * crate::volume::BLOCK_SIZE).min(len);
                    layer
                        .tier
                        .read_at(&mut data[from as usize..to as usize], start + from)
                        .map_err(|err| self.layer_err(layer, "read for merge", err))?;
                }
            }
            held.copy()
        };
        let (remote, stored) = self.upload_extent(
            layer,
            e,
            &data,
            None,
            class.compression,
            class.upload_tier.clone(),
            backend,
            store,
        )?;
        drop(data);
        failpoint::hit("after-upload");
        let _g = stripe.lock.write();
        {
            let map = layer.map.read();
            if stripe.seq.load(Ordering::SeqCst) != seq0
                || map.slot(e) != Slot::Overlay
                || map.blocks(e).is_none_or(|b| *b != held)
            {
                tracing::debug!(volume = %self.name(), extent = e, "write during merge: keeping the overlay");
                return Ok(Outcome::Raced);
            }
            map.commit(e, &ExtentRecord::Remote(remote))?;
        }
        failpoint::hit("after-commit");
        layer
            .tier
            .punch_hole(start, len)
            .map_err(|err| self.layer_err(layer, "punch", err))?;
        failpoint::hit("after-punch");
        self.engine.forget(&(layer.id, e, old.generation));
        self.stats.merges.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Merged { stored })
    }

    /// What an upload of extent `e` of `layer` sends: the stripe's write
    /// count before the read, the extent's bytes, and the blocks the layer
    /// holds when it holds only some (with `partial`; other blocks read as
    /// zeros). None: the layer does not hold the extent in its file.
    fn read_for_upload(&self, layer: &Layer, e: u64, partial: bool) -> Result<Option<UploadRead>> {
        let stripe = layer.stripe(e);
        let (start, len) = self.extent_range(e);
        let _g = stripe.lock.read();
        let map = layer.map.read();
        let held = match map.slot(e) {
            Slot::Local => None,
            Slot::Partial if partial => match map.blocks(e) {
                Some(b) => Some(b.copy()),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        drop(map);
        let seq0 = stripe.seq.load(Ordering::SeqCst);
        let mut data = vec![0u8; len as usize];
        layer
            .tier
            .read_at(&mut data, start)
            .map_err(|err| self.layer_err(layer, "read for upload", err))?;
        if let Some(h) = &held {
            // Blocks the layer does not hold are not its data.
            for (a, b, is_held) in h.runs(0, h.len()) {
                if !is_held {
                    let from = (a as u64 * crate::volume::BLOCK_SIZE).min(len) as usize;
                    let to = (b as u64 * crate::volume::BLOCK_SIZE).min(len) as usize;
                    data[from..to].fill(0);
                }
            }
        }
        Ok(Some((seq0, data, held)))
    }

    /// Copies extent `e` of frozen `layer` to `store` for a backup, keeping
    /// the local copy: the record becomes Backed (or Zero, for zeros).
    /// Returns the record a layer index lists and the bytes stored; None
    /// when there is nothing to upload: the extent already has a copy in
    /// the bucket, or was tiered meanwhile (its record says where).
    pub(crate) fn back_up_extent(
        &self,
        layer: &Layer,
        e: u64,
        backend: &str,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<Option<(ExtentRecord, u64)>> {
        if matches!(layer.map.read().record(e)?, Some(ExtentRecord::Backed(_))) {
            return Ok(None);
        }
        let Some((_, data, held)) = self.read_for_upload(layer, e, true)? else {
            return Ok(None);
        };
        let stripe = layer.stripe(e);
        let (start, len) = self.extent_range(e);
        let unchanged = |map: &crate::extent_map::ExtentMap| match &held {
            None => map.slot(e) == Slot::Local,
            Some(h) => map.slot(e) == Slot::Partial && map.blocks(e).is_some_and(|b| *b == *h),
        };
        if held.is_none() && data.iter().all(|&b| b == 0) {
            let _g = stripe.lock.write();
            if !unchanged(&layer.map.read()) {
                return Ok(None);
            }
            layer.map.read().commit(e, &ExtentRecord::Zero)?;
            layer
                .tier
                .punch_hole(start, len)
                .map_err(|err| self.layer_err(layer, "punch", err))?;
            return Ok(Some((ExtentRecord::Zero, 0)));
        }
        let compression = if held.is_some() {
            policy::Compression::Zstd
        } else {
            self.engine.class(&self.meta().class)?.compression
        };
        let (remote, stored) = self.upload_extent(
            layer,
            e,
            &data,
            held.clone(),
            compression,
            None,
            backend,
            store,
        )?;
        drop(data);
        let _g = stripe.lock.write();
        if !unchanged(&layer.map.read()) {
            return Ok(None);
        }
        layer
            .map
            .read()
            .commit(e, &ExtentRecord::Backed(remote.clone()))?;
        Ok(Some((ExtentRecord::Remote(remote), stored)))
    }

    /// Tiers extent `e` of a frozen `layer` whose backup copy is already in
    /// the backend: the record points at that object and the local copy is
    /// freed, with no upload. None: the extent has no backup copy.
    fn tier_backed(&self, layer: &Layer, e: u64, partial: bool) -> Result<Option<Outcome>> {
        let stripe = layer.stripe(e);
        let _g = stripe.lock.write();
        let rec = match layer.map.read().record(e)? {
            Some(ExtentRecord::Backed(r)) if partial || r.blocks.is_none() => r,
            _ => return Ok(None),
        };
        let (start, len) = self.extent_range(e);
        layer.map.read().commit(e, &ExtentRecord::Remote(rec))?;
        layer
            .tier
            .punch_hole(start, len)
            .map_err(|err| self.layer_err(layer, "punch", err))?;
        self.stats.bytes_tiered.fetch_add(len, Ordering::Relaxed);
        self.stats.extents_tiered.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Outcome::Tiered { stored: 0 }))
    }

    /// The policy's view of every extent: state, allocation, heat.
    pub fn extent_views(&self) -> Result<(Vec<heatmap::ExtentHeat>, Vec<Placement>)> {
        let heat = self.heat().volume_extents(self.id())?;
        Ok((heat, self.placements()?))
    }

    /// Every extent's state in the top layer, and whether the layer's file
    /// holds it (an extent read through a layer below counts as holding
    /// nothing here: the policy moves only what the top layer holds whole).
    pub fn placements(&self) -> Result<Vec<Placement>> {
        let top = self.top();
        let n = top.map.read().len();
        let size = self.size();
        let alloc = top
            .tier
            .allocation(0, size, usize::MAX)
            .map_err(|err| self.io_err("seek data/hole", err))?;
        let mut allocated = vec![false; n as usize];
        for a in alloc.iter().filter(|a| !a.hole) {
            let first = a.offset / self.extent_size();
            let last = (a.offset + a.len - 1) / self.extent_size();
            for e in first..=last.min(n.saturating_sub(1)) {
                allocated[e as usize] = true;
            }
        }
        let map = top.map.read();
        Ok((0..n)
            .map(|e| {
                let slot = map.slot(e);
                let held = allocated[e as usize] && slot == Slot::Local;
                let share = match slot {
                    Slot::Overlay => map.blocks(e).map_or(0.0, |b| {
                        b.count() as f64 / map.blocks_per_extent().max(1) as f64
                    }),
                    _ => 0.0,
                };
                (e, slot.view(), held, share)
            })
            .collect())
    }

    /// Bytes of local data idle past the class's cooling period.
    pub fn inactive_bytes(&self) -> Result<u64> {
        let heat = self.heat().volume_extents(self.id())?;
        self.inactive_bytes_from(&heat)
    }

    /// As [`Volume::inactive_bytes`], with the volume's heat already read.
    pub fn inactive_bytes_from(&self, heat: &[heatmap::ExtentHeat]) -> Result<u64> {
        let class = self.engine.class(&self.meta().class)?;
        let states = self.placements()?;
        let views = views(heat, &states);
        let now = self.heat().clock().now_ms();
        let pc = self.current_cooling(&class);
        let per_extent = |e: u64| pc.of(e);
        let cooling = pc.view(&class, &per_extent);
        Ok(
            policy::inactive(&class, &cooling, &views, now, self.meta().created_ms) as u64
                * self.extent_size(),
        )
    }
}

fn views<'a>(heat: &'a [heatmap::ExtentHeat], states: &[Placement]) -> Vec<ExtentView<'a>> {
    let mut by_extent: std::collections::HashMap<u64, &heatmap::ExtentHeat> =
        std::collections::HashMap::new();
    for h in heat {
        by_extent.insert(h.extent, h);
    }
    states
        .iter()
        .map(|&(extent, state, allocated, overlay_share)| ExtentView {
            extent,
            state,
            allocated,
            heat: by_extent.get(&extent).copied(),
            overlay_share,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pass::pace;
    use super::*;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::mpsc;
    use std::time::Duration;

    use async_trait::async_trait;
    use backends::{BackendError, ObjectMeta};
    use bytes::Bytes;
    use futures::stream::BoxStream;

    use crate::config::{Config, TieringPolicy};

    /// An in-memory store whose puts wait for the test to open a gate.
    #[derive(Debug)]
    struct GateStore {
        objects: parking_lot::Mutex<HashMap<String, Bytes>>,
        entered: parking_lot::Mutex<mpsc::Sender<()>>,
        release: parking_lot::Mutex<mpsc::Receiver<()>>,
    }

    impl GateStore {
        fn bytes(&self, key: &str) -> backends::Result<Bytes> {
            self.objects.lock().get(key).cloned().ok_or_else(|| {
                BackendError::NotFound(backends::ErrorContext {
                    backend: "gate".into(),
                    op: "get",
                    key: key.into(),
                    message: "absent".into(),
                })
            })
        }
    }

    #[async_trait]
    impl ObjectStore for GateStore {
        fn name(&self) -> &str {
            "gate"
        }
        async fn put(
            &self,
            key: &str,
            data: Bytes,
            _: &PutOptions,
        ) -> backends::Result<ObjectMeta> {
            let _ = self.entered.lock().send(());
            let _ = self.release.lock().recv();
            let size = data.len() as u64;
            self.objects.lock().insert(key.to_string(), data);
            Ok(ObjectMeta {
                key: key.to_string(),
                size,
                etag: None,
            })
        }
        async fn get(&self, key: &str) -> backends::Result<backends::Body> {
            self.bytes(key).map(backends::Body::from)
        }
        async fn get_range(&self, key: &str, r: std::ops::Range<u64>) -> backends::Result<Bytes> {
            let b = self.bytes(key)?;
            Ok(b.slice(r.start as usize..(r.end as usize).min(b.len())))
        }
        async fn head(&self, key: &str) -> backends::Result<ObjectMeta> {
            let b = self.bytes(key)?;
            Ok(ObjectMeta {
                key: key.into(),
                size: b.len() as u64,
                etag: None,
            })
        }
        async fn delete(&self, key: &str) -> backends::Result<()> {
            self.objects.lock().remove(key);
            Ok(())
        }
        fn list<'a>(&'a self, _: &'a str) -> BoxStream<'a, backends::Result<ObjectMeta>> {
            Box::pin(futures::stream::empty())
        }
        async fn create_container(&self) -> backends::Result<()> {
            Ok(())
        }
    }

    fn setup(
        dir: &std::path::Path,
    ) -> (
        Arc<Volume>,
        Arc<GateStore>,
        mpsc::Receiver<()>,
        mpsc::Sender<()>,
        ClassConfig,
    ) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let gate = Arc::new(GateStore {
            objects: Default::default(),
            entered: parking_lot::Mutex::new(entered_tx),
            release: parking_lot::Mutex::new(release_rx),
        });
        let mut config = Config::embedded();
        let class = ClassConfig {
            tiering_policy: TieringPolicy::All,
            backend: Some("gate".into()),
            ..Default::default()
        };
        config.classes.insert("cold".into(), class.clone());
        let store: Arc<dyn ObjectStore> = gate.clone();
        let engine = crate::engine::tests::engine_with(
            config,
            BTreeMap::from([("gate".to_string(), store)]),
        );
        let vol = crate::volume::tests::volume_with(dir, engine, "cold");
        (vol, gate, entered_rx, release_tx, class)
    }

    #[test]
    fn a_write_during_the_upload_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (vol, gate, entered, release, class) = setup(dir.path());
        vol.write(0, &vec![1u8; 1 << 20], false).unwrap();
        let store: Arc<dyn ObjectStore> = gate.clone();
        let v = vol.clone();
        let c = class.clone();
        let t = std::thread::spawn(move || v.tier_extent(0, &c, "gate", &store));
        entered.recv().unwrap(); // the upload is in flight
        vol.write(4096, &[2u8; 4096], false).unwrap();
        release.send(()).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), Outcome::Raced);
        assert_eq!(vol.extent_state(0), ExtentState::Local);
        let mut buf = vec![0u8; 8192];
        vol.read(0, &mut buf, policy::ReadPattern::RANDOM).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 1) && buf[4096..].iter().all(|&b| b == 2));
        assert_eq!(
            gate.objects.lock().len(),
            1,
            "the dropped upload is left for the collector"
        );
    }

    #[test]
    fn without_writes_the_extent_is_tiered_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (vol, gate, _entered, release, class) = setup(dir.path());
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
        vol.write(1 << 20, &data, false).unwrap();
        release.send(()).unwrap();
        let store: Arc<dyn ObjectStore> = gate.clone();
        assert!(matches!(
            vol.tier_extent(1, &class, "gate", &store).unwrap(),
            Outcome::Tiered { .. }
        ));
        assert_eq!(vol.extent_state(1), ExtentState::Remote);
        assert!(
            vol.top().tier.allocated_bytes().unwrap() < 1 << 20,
            "the local copy was punched"
        );
        // A zero extent needs no object at all.
        assert_eq!(
            vol.tier_extent(5, &class, "gate", &store).unwrap(),
            Outcome::Zero
        );
        let mut back = vec![0u8; 1 << 20];
        vol.read(1 << 20, &mut back, policy::ReadPattern::RANDOM)
            .unwrap();
        assert!(back == data);
        assert_eq!(gate.objects.lock().len(), 1);
    }

    #[test]
    fn pacing_spreads_uploads_at_the_rate() {
        use clock::Clock;
        let clock = Arc::new(clock::ManualClock::new(1_000));
        let engine = crate::engine::tests::engine_on(clock.clone());
        let t0 = clock.now_ms();
        let paced = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut nf = engine.clock().now_ms();
                for _ in 0..3 {
                    pace(&engine, &mut nf, 1_000, 20_000);
                }
            })
        };
        // The test moves time; nothing sleeps for real.
        while !paced.is_finished() {
            if clock.sleepers() > 0 {
                clock.advance_ms(10);
            }
            std::thread::yield_now();
        }
        paced.join().expect("pacing thread");
        // Three 1000-byte uploads at 20 kB/s: the third waits for the first two (100 ms).
        let elapsed = Duration::from_millis(clock.now_ms() - t0);
        assert!(elapsed >= Duration::from_millis(90), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(110), "{elapsed:?}");
    }
}
