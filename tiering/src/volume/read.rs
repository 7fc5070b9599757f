//! The read side of a volume's I/O path: a request is split by extent and
//! each piece is read as the top layer sees it, from its file, its object,
//! or the layers below (`read_in`), with a no-wait path for data in the page
//! cache and the allocation map for BLOCK_STATUS.
//!
//! Invariants kept here: a piece is read holding the stripe read lock of
//! every layer it passes through, taken top layer first; a snapshot's reads
//! (a read-only volume) never bring data back; a partly held extent reads
//! its held blocks from its layer and the rest from below, never zeros for a
//! block a layer below holds.

use std::cell::Cell;
use std::sync::Arc;

use heatmap::AccessKind;
use policy::ReadPattern;

use super::{Allocation, Layer, Volume, BLOCK_SIZE};
use crate::error::Result;
use crate::extent_map::Slot;

/// How a request reads, passed down the layers: the client's pattern, and
/// whether any piece needed the object store (a cold read, for the tuner).
pub(super) struct Reading {
    pattern: ReadPattern,
    /// Where the request's stream began (its end less what the stream has
    /// read): the stream's name in the volume's `Streams`.
    stream_start: u64,
    /// Where the request ends (the stream's head once it is served).
    end: u64,
    cold: Cell<bool>,
}

impl Reading {
    pub(super) fn new(pattern: ReadPattern, offset: u64, len: u64) -> Self {
        Reading {
            pattern,
            stream_start: (offset + len).saturating_sub(pattern.streamed),
            end: offset + len,
            cold: Cell::new(false),
        }
    }
}

impl Volume {
    /// Reads `buf.len()` bytes at `offset` if that needs no waiting at all:
    /// no extent of the range is remote, no stripe lock is held for writing,
    /// and every byte is in the page cache. `None` means nothing was read
    /// (and nothing recorded): call [`Volume::read`] where blocking is fine.
    /// Lets the NBD connection task serve cached reads without leaving its
    /// thread.
    pub fn try_read_cached(
        &self,
        offset: u64,
        buf: &mut [u8],
        pattern: ReadPattern,
    ) -> Option<Result<()>> {
        if let Err(e) = self.check_range(offset, buf.len() as u64) {
            return Some(Err(e));
        }
        let top = self.top.try_read()?.clone();
        let mut pos = 0usize;
        for (e, start, n) in self.pieces(offset, buf.len() as u64) {
            let out = &mut buf[pos..pos + n as usize];
            pos += n as usize;
            match self.try_read_in(&top, e, start, out)? {
                Ok(()) => {}
                Err(err) => return Some(Err(err)),
            }
        }
        self.trace(policy::trace::Op::Read, offset, buf.len() as u64);
        self.record(
            AccessKind::Read,
            offset,
            buf.len() as u64,
            pattern.sequential,
        );
        self.note_read(false);
        Some(Ok(()))
    }

    /// [`Volume::read_in`] without waiting: through the layers that hold
    /// the piece locally, every byte from the page cache, no lock held by a
    /// writer; `None` as soon as anything would wait or needs the object
    /// store.
    fn try_read_in(&self, layer: &Layer, e: u64, start: u64, out: &mut [u8]) -> Option<Result<()>> {
        let _g = layer.stripe(e).lock.try_read()?;
        let map = layer.map.try_read()?;
        if e >= map.len() {
            out.fill(0);
            return Some(Ok(()));
        }
        let nowait = |out: &mut [u8], at: u64| match layer.tier.read_at_nowait(out, at) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(err) => Some(Err(self.layer_err(layer, "read", err))),
        };
        match map.slot(e) {
            Slot::Local | Slot::Zero => {
                drop(map);
                nowait(out, start)
            }
            Slot::Remote => None,
            // An overlay read only from its own blocks needs no object.
            Slot::Overlay => {
                let blocks = map.blocks(e)?;
                drop(map);
                if self
                    .block_runs(e, start, out.len(), Some(&blocks))
                    .iter()
                    .all(|r| r.2)
                {
                    nowait(out, start)
                } else {
                    None
                }
            }
            Slot::Inherit => {
                drop(map);
                match &layer.parent {
                    Some(p) => self.try_read_in(p, e, start, out),
                    None => {
                        out.fill(0);
                        Some(Ok(()))
                    }
                }
            }
            Slot::Partial => {
                let blocks = map.blocks(e)?;
                drop(map);
                for (from, to, held) in self.block_runs(e, start, out.len(), Some(&blocks)) {
                    let part = &mut out[(from - start) as usize..(to - start) as usize];
                    let r = if held {
                        nowait(part, from)
                    } else if let Some(p) = &layer.parent {
                        self.try_read_in(p, e, from, part)
                    } else {
                        part.fill(0);
                        Some(Ok(()))
                    };
                    match r? {
                        Ok(()) => {}
                        Err(err) => return Some(Err(err)),
                    }
                }
                Some(Ok(()))
            }
        }
    }

    /// Reads `buf.len()` bytes at `offset`. `pattern` is what the client's
    /// read tracker made of it (sequential, and how far its stream has run).
    pub fn read(self: &Arc<Self>, offset: u64, buf: &mut [u8], pattern: ReadPattern) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let top = self.top();
        let mut pos = 0usize;
        let how = Reading::new(pattern, offset, buf.len() as u64);
        for (e, start, n) in self.pieces(offset, buf.len() as u64) {
            let out = &mut buf[pos..pos + n as usize];
            pos += n as usize;
            if let Some(back) = self.read_in(&top, e, start, out, &how, true)? {
                let r = if Arc::ptr_eq(&back.layer, &top) {
                    self.rehydrate_with(&top, e, back.generation, &back.data)
                } else {
                    self.copy_up(&top, e, &back)
                };
                if let Err(err) = r {
                    // The read itself succeeded; the extent just stays cold.
                    tracing::warn!(volume = %self.name(), extent = e, error = %err, "could not bring extent back");
                }
            }
        }
        self.trace(policy::trace::Op::Read, offset, buf.len() as u64);
        self.record(
            AccessKind::Read,
            offset,
            buf.len() as u64,
            pattern.sequential,
        );
        self.note_read(how.cold.get());
        Ok(())
    }

    /// Reads the piece `start..start + out.len()` of extent `e` as `layer`
    /// sees it: from its file, its object, or the layers below. `whole`: the
    /// layers above passed the whole extent down, so a whole object fetched
    /// here is the extent's content as the top layer sees it, and may be
    /// brought back (returned).
    pub(super) fn read_in(
        self: &Arc<Self>,
        layer: &Arc<Layer>,
        e: u64,
        start: u64,
        out: &mut [u8],
        how: &Reading,
        whole: bool,
    ) -> Result<Option<BringBack>> {
        let _g = layer.stripe(e).lock.read();
        let map = layer.map.read();
        if e >= map.len() {
            // Past the end of a layer below a grown volume: never written.
            out.fill(0);
            return Ok(None);
        }
        match map.slot(e) {
            Slot::Local | Slot::Zero => {
                drop(map);
                layer
                    .tier
                    .read_at(out, start)
                    .map_err(|err| self.layer_err(layer, "read", err))?;
                Ok(None)
            }
            Slot::Inherit => {
                drop(map);
                match &layer.parent {
                    Some(p) => self.read_in(p, e, start, out, how, whole),
                    None => {
                        out.fill(0);
                        Ok(None)
                    }
                }
            }
            Slot::Partial => {
                let blocks = map.blocks(e);
                drop(map);
                for (from, to, held) in self.block_runs(e, start, out.len(), blocks.as_deref()) {
                    let part = &mut out[(from - start) as usize..(to - start) as usize];
                    if held {
                        layer
                            .tier
                            .read_at(part, from)
                            .map_err(|err| self.layer_err(layer, "read", err))?;
                    } else if let Some(p) = &layer.parent {
                        self.read_in(p, e, from, part, how, false)?;
                    } else {
                        part.fill(0);
                    }
                }
                Ok(None)
            }
            Slot::Remote if map.blocks(e).is_some() => {
                let blocks = map.blocks(e);
                drop(map);
                self.read_partial_remote(layer, e, start, out, blocks, how)?;
                Ok(None)
            }
            Slot::Remote => {
                drop(map);
                self.read_cold(layer, e, start, out, how, whole)
            }
            // The overlay's blocks from the file, the rest as a remote
            // extent's (planned as one, so a read asks the object store
            // what the simulator's does); a read its blocks cover is local.
            Slot::Overlay => {
                let blocks = map.blocks(e);
                drop(map);
                let runs = self.block_runs(e, start, out.len(), blocks.as_deref());
                let back = if runs.iter().all(|r| r.2) {
                    None
                } else {
                    self.read_cold(layer, e, start, out, how, whole)?
                };
                for (from, to, held) in runs {
                    if held {
                        let part = &mut out[(from - start) as usize..(to - start) as usize];
                        layer
                            .tier
                            .read_at(part, from)
                            .map_err(|err| self.layer_err(layer, "read", err))?;
                    }
                }
                Ok(back)
            }
        }
    }

    /// Reads the piece `start..start + out.len()` of extent `e` from
    /// `layer`'s object as the cold-read plan says, reading ahead; returns
    /// the whole object when the plan brings the extent back (see
    /// [`Volume::read_in`] for `whole`). Call with the stripe read lock held.
    fn read_cold(
        self: &Arc<Self>,
        layer: &Arc<Layer>,
        e: u64,
        start: u64,
        out: &mut [u8],
        how: &Reading,
        whole: bool,
    ) -> Result<Option<BringBack>> {
        let pattern = how.pattern;
        how.cold.set(true);
        let rec = self.remote_record(layer, e)?;
        let (ext_start, ext_len) = self.extent_range(e);
        let class = self.engine.class(&self.meta.read().class).ok();
        let others = if pattern.sequential {
            let now = self.engine.clock().now_ms();
            self.streams.lock().note(how.stream_start, how.end, now)
        } else {
            policy::Neighbours::ALONE
        };
        let plan = policy::plan_cold_read(
            class.as_ref(),
            &policy::ColdRead {
                extent: e,
                within: start - ext_start,
                len: out.len() as u64,
                extent_len: ext_len,
                extent_count: layer.map.read().len(),
                pattern,
                cached: self.engine.cached(&(layer.id, e, rec.generation)),
                ahead_limit: others.next_start >> self.extent_shift,
                streams: others.live,
            },
            rec.frame_size as u64,
            self.engine.readahead(),
        );
        let data = self.read_remote(layer, e, &rec, start - ext_start, out, plan.fetch)?;
        self.readahead(plan.readahead);
        // A snapshot's reads leave its data where it is (FabricPool's
        // `default` retrieval does not bring snapshot data back).
        Ok(data
            .filter(|_| plan.bring_back && whole && !self.read_only && self.may_bring_back(ext_len))
            .map(|data| BringBack {
                layer: layer.clone(),
                generation: rec.generation,
                data,
            }))
    }

    /// Reads a piece of extent `e` of `layer` whose object holds only the
    /// blocks in `blocks`: those from the object (only the frames the run
    /// touches), the others from the layers below. Nothing comes back: the
    /// object is a frozen layer's, and never the whole extent.
    fn read_partial_remote(
        self: &Arc<Self>,
        layer: &Arc<Layer>,
        e: u64,
        start: u64,
        out: &mut [u8],
        blocks: Option<Arc<crate::blocks::Blocks>>,
        how: &Reading,
    ) -> Result<()> {
        how.cold.set(true);
        let rec = self.remote_record(layer, e)?;
        let (ext_start, _) = self.extent_range(e);
        let fs = (rec.frame_size as u64).max(1);
        for (from, to, held) in self.block_runs(e, start, out.len(), blocks.as_deref()) {
            let part = &mut out[(from - start) as usize..(to - start) as usize];
            if held {
                let within = from - ext_start;
                let fetch = policy::Fetch::Frames {
                    first: within / fs,
                    last: (within + part.len() as u64).div_ceil(fs),
                };
                self.read_remote(layer, e, &rec, within, part, fetch)?;
            } else if let Some(p) = &layer.parent {
                self.read_in(p, e, from, part, how, false)?;
            } else {
                part.fill(0);
            }
        }
        Ok(())
    }

    /// The byte ranges of `start..start + len` (within extent `e`) that a
    /// layer holding `blocks` holds (true) or reads from below (false), in
    /// order; all held when `blocks` is None.
    pub(super) fn block_runs(
        &self,
        e: u64,
        start: u64,
        len: usize,
        blocks: Option<&crate::blocks::Blocks>,
    ) -> Vec<(u64, u64, bool)> {
        let (ext_start, _) = self.extent_range(e);
        let end = start + len as u64;
        let first = ((start - ext_start) / BLOCK_SIZE) as u32;
        let last = (end - ext_start).div_ceil(BLOCK_SIZE) as u32;
        let runs = match blocks {
            Some(b) => b.runs(first, last),
            None => vec![(first, last, true)],
        };
        runs.into_iter()
            .map(|(a, b, held)| {
                let from = (ext_start + a as u64 * BLOCK_SIZE).max(start);
                let to = (ext_start + b as u64 * BLOCK_SIZE).min(end);
                (from, to, held)
            })
            .collect()
    }

    /// Allocation runs of `[offset, offset + len)`, at most `max_runs`: remote
    /// extents are data, zero extents holes, local ones as the file says.
    pub fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Allocation>> {
        self.check_range(offset, len)?;
        let mut out: Vec<Allocation> = Vec::new();
        let push = |a: Allocation, out: &mut Vec<Allocation>| match out.last_mut() {
            Some(l) if l.hole == a.hole && l.offset + l.len == a.offset => l.len += a.len,
            _ => out.push(a),
        };
        let top = self.top();
        for (e, start, n) in self.pieces(offset, len) {
            if out.len() >= max_runs {
                break;
            }
            for a in self.allocation_in(&top, e, start, n, max_runs)? {
                push(a, &mut out);
            }
        }
        out.truncate(max_runs);
        Ok(out)
    }

    /// Allocation of one piece of extent `e` as `layer` sees it: remote
    /// extents are data, zero extents holes, local ones as the file says,
    /// inherited ones as the layer below says; partial ones are data (the
    /// safe answer: a client may skip only what is certainly zeros).
    fn allocation_in(
        &self,
        layer: &Arc<Layer>,
        e: u64,
        start: u64,
        n: u64,
        max_runs: usize,
    ) -> Result<Vec<Allocation>> {
        let data = |hole| {
            Ok(vec![Allocation {
                offset: start,
                len: n,
                hole,
            }])
        };
        let slot = {
            let map = layer.map.read();
            if e >= map.len() {
                return data(true);
            }
            map.slot(e)
        };
        match slot {
            Slot::Remote | Slot::Partial | Slot::Overlay => data(false),
            Slot::Zero => data(true),
            Slot::Inherit => match &layer.parent {
                Some(p) => self.allocation_in(p, e, start, n, max_runs),
                None => data(true),
            },
            Slot::Local => layer
                .tier
                .allocation(start, n, max_runs)
                .map_err(|err| self.layer_err(layer, "seek data/hole", err)),
        }
    }
}

/// A whole extent fetched from `layer`'s object for a read that may bring
/// it back into the top layer.
pub(crate) struct BringBack {
    pub(crate) layer: Arc<Layer>,
    pub(crate) generation: u64,
    pub(crate) data: backends::Body,
}

/// Whether reading extent `e` through `layer` may need the object store.
pub(super) fn resolves_remote(layer: &Arc<Layer>, e: u64) -> bool {
    let slot = {
        let map = layer.map.read();
        if e >= map.len() {
            return false;
        }
        map.slot(e)
    };
    match slot {
        Slot::Remote | Slot::Overlay => true,
        Slot::Local | Slot::Zero => false,
        Slot::Inherit | Slot::Partial => {
            layer.parent.as_ref().is_some_and(|p| resolves_remote(p, e))
        }
    }
}
