//! The write side of a volume's I/O path: writes, zeroing and trim, and
//! flush. Writes go to the top layer only.
//!
//! Invariants kept here: a write lands only in an extent the top layer holds
//! (a remote one is brought back first, or replaced outright when the write
//! covers all of it, durably before its record changes); in an extent the top
//! layer inherits, whole blocks are written into its file and noted as held,
//! and a block only partly written is first filled from the layers below, so
//! a held block is always whole; every write bumps its stripe's sequence
//! number under the stripe lock, so a migration that read the extent earlier
//! cannot commit over it; a whole remote extent that is zeroed becomes a zero
//! extent without a fetch; a Backed extent (local, with the same bytes in the
//! bucket) is durably plain local before a write changes it; writes hold the
//! write gate shared, so nothing writes while the top layer is frozen or
//! replaced. Under a class with `write_overlay`, a write to part of a
//! remote extent lands in its overlay instead (see `policy::overlay`): its
//! partly covered edge blocks are first filled from the object, the blocks
//! are written into the file and only then noted as held, and the set is
//! persisted at flush like a partial extent's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use heatmap::AccessKind;

use super::{Layer, Volume, BLOCK_SIZE};
use crate::error::Result;
use crate::extent_map::{ExtentRecord, Slot};

/// What a range operation puts in the blocks it covers.
#[derive(Clone, Copy)]
enum Fill<'a> {
    Data(&'a [u8]),
    /// Zeros, freeing the space when `punch`.
    Zeros {
        punch: bool,
    },
}

impl Volume {
    /// Takes extent `e` of the top layer out of the remote or zero state so
    /// it can be written locally. `whole_overwrite` is the data about to
    /// replace all of it, if the write covers the whole extent (then no fetch
    /// is needed).
    fn make_writable(&self, top: &Layer, e: u64, whole_overwrite: Option<&[u8]>) -> Result<()> {
        let stripe = top.stripe(e);
        let slot = top.map.read().slot(e);
        match slot {
            Slot::Local | Slot::Inherit | Slot::Partial => Ok(()),
            Slot::Zero => {
                let _g = stripe.lock.write();
                // The local range is a hole, which reads as the zeros the record promises.
                if top.map.read().slot(e) == Slot::Zero {
                    top.map.read().make_local(e)?;
                }
                Ok(())
            }
            Slot::Remote | Slot::Overlay => match whole_overwrite {
                Some(data) => {
                    let _g = stripe.lock.write();
                    if !matches!(top.map.read().slot(e), Slot::Remote | Slot::Overlay) {
                        return Ok(());
                    }
                    self.write_extent_durably(top, e, [data], "write")?;
                    top.map.read().make_local(e)?;
                    stripe.seq.fetch_add(1, Ordering::SeqCst);
                    self.note_returned(e);
                    Ok(())
                }
                None => self.rehydrate(e).map(|_| ()),
            },
        }
    }

    /// Blocks `first..last` of extent `e` that the range `start..start+n`
    /// touches, and whether the first and last are only partly covered.
    fn block_span(&self, e: u64, start: u64, n: u64) -> (u32, u32, bool, bool) {
        let (ext_start, _) = self.extent_range(e);
        let within = start - ext_start;
        let first = (within / BLOCK_SIZE) as u32;
        let last = (within + n).div_ceil(BLOCK_SIZE) as u32;
        let head_partial = !within.is_multiple_of(BLOCK_SIZE);
        let tail_partial = !(within + n).is_multiple_of(BLOCK_SIZE);
        (first, last, head_partial, tail_partial)
    }

    /// Makes the top layer hold whole copies of the partly covered edge
    /// blocks of `start..start+n` in inherited extent `e`, read from the
    /// layers below, so the write that follows never leaves a held block
    /// with bytes the layer does not have.
    fn fill_edges(self: &Arc<Self>, top: &Arc<Layer>, e: u64, start: u64, n: u64) -> Result<()> {
        let (first, last, head, tail) = self.block_span(e, start, n);
        let (ext_start, ext_len) = self.extent_range(e);
        let _g = top.stripe(e).lock.write();
        let map = top.map.read();
        if !matches!(map.slot(e), Slot::Inherit | Slot::Partial) {
            return Ok(());
        }
        let blocks = map.blocks(e);
        let held = |b: u32| blocks.as_ref().is_some_and(|s| s.contains(b));
        let mut edges = Vec::new();
        if head && !held(first) {
            edges.push(first);
        }
        if tail && !held(last - 1) && !edges.contains(&(last - 1)) {
            edges.push(last - 1);
        }
        drop(map);
        for b in edges {
            let off = ext_start + b as u64 * BLOCK_SIZE;
            let len = BLOCK_SIZE.min(ext_start + ext_len - off);
            let mut buf = vec![0u8; len as usize];
            if let Some(p) = &top.parent {
                self.read_in(
                    p,
                    e,
                    off,
                    &mut buf,
                    &super::read::Reading::new(policy::ReadPattern::RANDOM, 0, 0),
                    false,
                )?;
            }
            top.tier
                .write_at(&buf, off)
                .map_err(|err| self.layer_err(top, "fill block", err))?;
            top.map.read().hold_blocks(e, b, b + 1);
        }
        Ok(())
    }

    /// Applies `fill` to `start..start+n` of extent `e` in the top layer,
    /// whatever its state, bringing or filling in what it needs first.
    fn put(self: &Arc<Self>, e: u64, start: u64, n: u64, fill: Fill<'_>) -> Result<()> {
        let top = self.top();
        let whole = n == self.extent_range(e).1;
        loop {
            let stripe = top.stripe(e);
            let slot = top.map.read().slot(e);
            match (slot, fill) {
                (Slot::Zero, Fill::Zeros { .. }) => return Ok(()),
                // A whole remote extent zeroed: no fetch, the old object
                // becomes garbage. The range is punched first (an overlay's
                // blocks, or leftovers of a punch that failed), so a zero
                // extent's range is a hole whenever its record says zero.
                (Slot::Remote | Slot::Overlay, Fill::Zeros { .. }) if whole => {
                    let _g = stripe.lock.write();
                    if matches!(top.map.read().slot(e), Slot::Remote | Slot::Overlay) {
                        top.tier
                            .punch_hole(start, n)
                            .map_err(|err| self.layer_err(&top, "trim", err))?;
                        top.map.read().commit(e, &ExtentRecord::Zero)?;
                        stripe.seq.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                (Slot::Remote | Slot::Overlay, _) if !whole && self.keeps_overlay(slot) => {
                    if self.put_overlay(&top, e, start, n, fill)? {
                        return Ok(());
                    }
                    continue;
                }
                // A whole inherited extent zeroed: zero here, hiding what is below.
                (Slot::Inherit | Slot::Partial, Fill::Zeros { .. }) if whole => {
                    let _g = stripe.lock.write();
                    if matches!(top.map.read().slot(e), Slot::Inherit | Slot::Partial) {
                        top.tier
                            .punch_hole(start, n)
                            .map_err(|err| self.layer_err(&top, "trim", err))?;
                        top.map.read().commit(e, &ExtentRecord::Zero)?;
                        stripe.seq.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                (Slot::Remote | Slot::Zero | Slot::Overlay, _) => {
                    let data = match fill {
                        Fill::Data(d) if whole => Some(d),
                        _ => None,
                    };
                    self.make_writable(&top, e, data)?;
                    continue;
                }
                // Its copy in the bucket is about to differ: the extent
                // becomes plain local (durably) before the data changes.
                (Slot::Local, _) if top.map.read().is_backed(e) => {
                    let _g = stripe.lock.write();
                    if top.map.read().is_backed(e) {
                        top.map.read().make_local(e)?;
                    }
                    continue;
                }
                (Slot::Local, _) => {
                    let _g = stripe.lock.read();
                    if top.map.read().slot(e) != Slot::Local {
                        continue;
                    }
                    stripe.seq.fetch_add(1, Ordering::SeqCst);
                    return self.apply(&top, start, n, fill);
                }
                (Slot::Inherit | Slot::Partial, _) => {
                    let (first, last, head, tail) = self.block_span(e, start, n);
                    {
                        let _g = stripe.lock.read();
                        let map = top.map.read();
                        if matches!(map.slot(e), Slot::Inherit | Slot::Partial) {
                            let blocks = map.blocks(e);
                            let held = |b: u32| blocks.as_ref().is_some_and(|s| s.contains(b));
                            if (!head || held(first)) && (!tail || held(last - 1)) {
                                stripe.seq.fetch_add(1, Ordering::SeqCst);
                                self.apply(&top, start, n, fill)?;
                                // Noted only once the bytes are in the file:
                                // a reader never takes an unwritten block as held.
                                map.hold_blocks(e, first, last);
                                return Ok(());
                            }
                        }
                    }
                    self.fill_edges(&top, e, start, n)?;
                }
            }
        }
    }

    /// Whether a write to part of an extent in `slot` lands in its overlay.
    fn keeps_overlay(&self, slot: Slot) -> bool {
        let class = self.engine.class(&self.meta.read().class).ok();
        policy::overlay::partial_write(class.as_ref(), slot.view()) == policy::PartialWrite::Overlay
    }

    /// Applies `fill` to `start..start+n` of remote extent `e` of the top
    /// layer by way of its overlay, making it one if it is not yet: edge
    /// blocks it only partly covers and the overlay lacks are first filled
    /// from the object (the cached copy, or a ranged GET of their frames,
    /// fetched before the stripe is locked); the blocks are noted as held
    /// only once written. An overlay that then holds every block is the
    /// extent, flushed and recorded local (its object is garbage). False:
    /// the extent is no longer the remote extent it was (retry).
    fn put_overlay(
        self: &Arc<Self>,
        top: &Arc<Layer>,
        e: u64,
        start: u64,
        n: u64,
        fill: Fill<'_>,
    ) -> Result<bool> {
        let stripe = top.stripe(e);
        // The edge blocks the overlay lacks, fetched before the stripe is
        // locked (other extents share it); used only if the extent is still
        // the same object's when the lock is held.
        let (rec, edges) = {
            let map = top.map.read();
            if !matches!(map.slot(e), Slot::Remote | Slot::Overlay) {
                return Ok(false);
            }
            let rec = match map.record(e)?.as_ref().and_then(ExtentRecord::remote) {
                Some(r) if r.blocks.is_none() => r.clone(),
                other => {
                    return Err(crate::error::TierError::CorruptMetadata {
                        key: format!("extent {}/{e}", top.id),
                        reason: format!("a write to an overlay found the record {other:?}"),
                    })
                }
            };
            let held = map.blocks(e).filter(|_| map.slot(e) == Slot::Overlay);
            let (ext_start, ext_len) = self.extent_range(e);
            let edges: Vec<u32> =
                policy::overlay::edge_blocks(start - ext_start, n, BLOCK_SIZE, ext_len)
                    .into_iter()
                    .filter(|&b| !held.as_ref().is_some_and(|h| h.contains(b)))
                    .collect();
            (rec, edges)
        };
        let (ext_start, ext_len) = self.extent_range(e);
        let mut filled = Vec::with_capacity(edges.len());
        for b in edges {
            let fetch = if self.engine.cached(&(top.id, e, rec.generation)) {
                policy::Fetch::Whole
            } else {
                policy::overlay::edge_fetch(b, BLOCK_SIZE, rec.frame_size as u64, ext_len)
            };
            let from = b as u64 * BLOCK_SIZE;
            let mut buf = vec![0u8; BLOCK_SIZE.min(ext_len - from) as usize];
            self.read_remote(top, e, &rec, from, &mut buf, fetch)?;
            filled.push((b, buf));
        }
        let full = {
            let _g = stripe.lock.write();
            let map = top.map.read();
            let same = matches!(map.slot(e), Slot::Remote | Slot::Overlay)
                && map
                    .record(e)?
                    .as_ref()
                    .and_then(ExtentRecord::remote)
                    .is_some_and(|r| r.generation == rec.generation);
            if !same {
                return Ok(false);
            }
            map.begin_overlay(e);
            let held = map.blocks(e);
            for (b, buf) in filled {
                if held.as_ref().is_some_and(|h| h.contains(b)) {
                    continue;
                }
                top.tier
                    .write_at(&buf, ext_start + b as u64 * BLOCK_SIZE)
                    .map_err(|err| self.layer_err(top, "fill block", err))?;
                map.hold_blocks(e, b, b + 1);
            }
            let (first, last, _, _) = self.block_span(e, start, n);
            stripe.seq.fetch_add(1, Ordering::SeqCst);
            self.apply(top, start, n, fill)?;
            map.hold_blocks(e, first, last);
            map.blocks(e).is_some_and(|b| b.is_full())
        };
        if full {
            self.flush()?;
            if top.map.read().slot(e) == Slot::Local {
                self.note_returned(e);
            }
        }
        Ok(true)
    }

    /// Writes `fill` into the top layer's file.
    fn apply(&self, top: &Layer, start: u64, n: u64, fill: Fill<'_>) -> Result<()> {
        match fill {
            Fill::Data(d) => top
                .tier
                .write_at(d, start)
                .map_err(|err| self.layer_err(top, "write", err)),
            Fill::Zeros { punch: true } => top
                .tier
                .punch_hole(start, n)
                .map_err(|err| self.layer_err(top, "trim", err)),
            Fill::Zeros { punch: false } => top
                .tier
                .zero_range(start, n)
                .map_err(|err| self.layer_err(top, "write zeroes", err)),
        }
    }

    /// Writes `data` at `offset`; with `fua` it is durable before this returns.
    pub fn write(self: &Arc<Self>, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.refuse_read_only()?;
        self.check_range(offset, data.len() as u64)?;
        {
            let _gate = self.write_gate.read();
            let mut pos = 0usize;
            for (e, start, n) in self.pieces(offset, data.len() as u64) {
                let chunk = &data[pos..pos + n as usize];
                pos += n as usize;
                self.put(e, start, n, Fill::Data(chunk))?;
            }
        }
        self.trace(policy::trace::Op::Write, offset, data.len() as u64);
        self.record(AccessKind::Write, offset, data.len() as u64, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Zeroes a range, freeing its space when `may_punch`.
    fn zero(self: &Arc<Self>, offset: u64, len: u64, may_punch: bool) -> Result<()> {
        let _gate = self.write_gate.read();
        for (e, start, n) in self.pieces(offset, len) {
            self.put(e, start, n, Fill::Zeros { punch: may_punch })?;
        }
        Ok(())
    }

    /// Discards a range: it reads as zeros afterwards and its space is freed.
    pub fn trim(self: &Arc<Self>, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.refuse_read_only()?;
        self.check_range(offset, len)?;
        self.zero(offset, len, true)?;
        self.trace(policy::trace::Op::Trim, offset, len);
        self.record(AccessKind::Write, offset, len, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Zeroes a range. With `may_punch` the space may be freed (a hole); without,
    /// it stays allocated.
    pub fn write_zeroes(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        may_punch: bool,
        fua: bool,
    ) -> Result<()> {
        self.refuse_read_only()?;
        self.check_range(offset, len)?;
        self.zero(offset, len, may_punch)?;
        self.trace(policy::trace::Op::Write, offset, len);
        self.record(AccessKind::Write, offset, len, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Pushes the buffered access trace, if recording, to its file.
    pub fn flush_trace(&self) {
        self.trace_log.flush();
    }

    /// Makes every completed write durable: the top layer's file, then which
    /// blocks of its inherited extents it now holds.
    pub fn flush(&self) -> Result<()> {
        self.trace_log.flush();
        let top = self.top();
        let map = top.map.read();
        if !map.has_unflushed_blocks() {
            top.tier
                .sync()
                .map_err(|e| self.layer_err(&top, "fdatasync", e))?;
            // Another flush may hold this caller's block sets, not yet written.
            map.settle_flush();
            return Ok(());
        }
        map.flush_blocks(|| {
            top.tier
                .sync()
                .map_err(|e| self.layer_err(&top, "fdatasync", e))
        })
    }
}
