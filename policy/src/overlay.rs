//! Writes to part of a tiered extent under a class's `write_overlay`: the
//! blocks written stay local (the extent's overlay) and the rest stays in
//! its object, instead of the whole extent coming back. The daemon and the
//! simulator both ask here what such a write does, which frames it must
//! fetch first, and what an overlay becomes as it grows.
//!
//! Invariant kept by the callers, stated here because every decision below
//! assumes it: an overlay block is always whole (a block only partly
//! written is first filled from the object), so an extent whose blocks are
//! all in its overlay needs nothing from its object.

use crate::access::Fetch;
use crate::class::ClassConfig;
use crate::cooling::Economics;
use crate::extent::ExtentState;

/// What a write to part of a tiered extent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartialWrite {
    /// Fetch the extent, bring it back, then write (FabricPool's way).
    BringBack,
    /// Write the blocks into the extent's overlay; the object stays.
    Overlay,
}

/// What a write to part of an extent in `state` does under `class` (a
/// volume without a class, as a restored one before it is placed, brings
/// extents back).
pub fn partial_write(class: Option<&ClassConfig>, state: ExtentState) -> PartialWrite {
    match (state, class) {
        (ExtentState::Overlay, _) => PartialWrite::Overlay,
        (ExtentState::Remote, Some(c)) if c.write_overlay => PartialWrite::Overlay,
        _ => PartialWrite::BringBack,
    }
}

/// The blocks of a write of `len` bytes at `within` (bytes into an extent of
/// `extent_len`) that it covers only partly, and so must be filled from the
/// object before it lands: none, one, or the first and the last.
pub fn edge_blocks(within: u64, len: u64, block: u64, extent_len: u64) -> Vec<u32> {
    let end = (within + len).min(extent_len);
    let first = within / block;
    let last = end.div_ceil(block).saturating_sub(1);
    let mut edges = Vec::new();
    if !within.is_multiple_of(block) || (end < (first + 1) * block && end < extent_len) {
        edges.push(first as u32);
    }
    let tail_partial = !end.is_multiple_of(block) && end < extent_len;
    if last != first && tail_partial {
        edges.push(last as u32);
    }
    edges
}

/// The frames to fetch to fill edge block `b` of an extent of `extent_len`
/// stored in frames of `frame_size`.
pub fn edge_fetch(b: u32, block: u64, frame_size: u64, extent_len: u64) -> Fetch {
    let fs = frame_size.max(1);
    let from = b as u64 * block;
    let to = (from + block).min(extent_len);
    Fetch::Frames {
        first: from / fs,
        last: to.div_ceil(fs),
    }
}

/// The state an overlay is in once it holds `held` of the extent's `total`
/// blocks: an overlay that holds every block is the whole extent, local,
/// and its object is garbage (no fetch needed).
pub fn after_write(held: u32, total: u32) -> ExtentState {
    if held >= total {
        ExtentState::Local
    } else {
        ExtentState::Overlay
    }
}

/// Whether a pass under `class` merges the overlays of frozen (snapshot)
/// layers, which it does at once whenever the class tiers at all: a frozen
/// overlay never grows, its blocks would hold local space for the life of
/// the snapshot, and a volume reading through it cannot copy the extent up
/// (the object alone is not its content), so every such read stays cold.
pub fn merges_frozen(class: &ClassConfig) -> bool {
    class.tiering_policy != crate::class::TieringPolicy::None
}

/// How long an overlay holding every block of its extent idles before a
/// pass merges it (`Cooling::merge_ms`): the merge's break-even from the
/// prices, or 0 (the extent's own period alone) without them.
pub fn merge_ms(econ: Option<&Economics>) -> u64 {
    econ.and_then(Economics::merge_break_even)
        .map_or(0, |ms| ms.min(u64::MAX as f64 / 2.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{RetrievalPolicy, TieringPolicy};

    const B: u64 = 4096;
    const EXT: u64 = 1 << 20;

    fn class(overlay: bool) -> ClassConfig {
        let mut c = ClassConfig::with_policies(TieringPolicy::Auto, None, RetrievalPolicy::Never);
        c.write_overlay = overlay;
        c
    }

    #[test]
    fn only_classes_that_ask_keep_an_overlay() {
        let (on, off) = (class(true), class(false));
        assert_eq!(
            partial_write(Some(&on), ExtentState::Remote),
            PartialWrite::Overlay
        );
        assert_eq!(
            partial_write(Some(&off), ExtentState::Remote),
            PartialWrite::BringBack
        );
        assert_eq!(
            partial_write(None, ExtentState::Remote),
            PartialWrite::BringBack
        );
        // An overlay already there keeps growing, whatever the class says
        // now (it may have been changed since).
        assert_eq!(
            partial_write(Some(&off), ExtentState::Overlay),
            PartialWrite::Overlay
        );
    }

    #[test]
    fn edges_are_the_partly_covered_blocks() {
        // Whole blocks: nothing to fill.
        assert!(edge_blocks(0, B, B, EXT).is_empty());
        assert!(edge_blocks(8 * B, 3 * B, B, EXT).is_empty());
        // 512 bytes inside block 2: that block, once.
        assert_eq!(edge_blocks(2 * B + 512, 512, B, EXT), vec![2]);
        // Straddling blocks 2 and 3, both partly.
        assert_eq!(edge_blocks(2 * B + 512, B, B, EXT), vec![2, 3]);
        // Aligned start, ragged end.
        assert_eq!(edge_blocks(4 * B, B + 100, B, EXT), vec![5]);
        // Ragged start, aligned end.
        assert_eq!(edge_blocks(4 * B + 100, B - 100, B, EXT), vec![4]);
        // The extent's own end counts as a block boundary.
        assert!(edge_blocks(EXT - B, B, B, EXT).is_empty());
        assert!(edge_blocks(0, 1000, B, 1000).is_empty());
    }

    #[test]
    fn an_edge_fetches_the_frames_under_its_block() {
        assert_eq!(
            edge_fetch(17, B, 64 << 10, EXT),
            Fetch::Frames { first: 1, last: 2 }
        );
        // Frames smaller than a block: the block's frames.
        assert_eq!(
            edge_fetch(1, B, 1024, EXT),
            Fetch::Frames { first: 4, last: 8 }
        );
    }

    #[test]
    fn frozen_overlays_merge_unless_the_class_tiers_nothing() {
        assert!(merges_frozen(&class(true)));
        let none = ClassConfig::with_policies(TieringPolicy::None, None, RetrievalPolicy::Default);
        assert!(!merges_frozen(&none));
    }

    #[test]
    fn a_full_overlay_is_local() {
        assert_eq!(after_write(255, 256), ExtentState::Overlay);
        assert_eq!(after_write(256, 256), ExtentState::Local);
    }
}
