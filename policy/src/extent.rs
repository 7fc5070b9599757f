//! Where an extent's data lives, as every decision sees it.

/// The state of one extent: its data is in the local tier, only in the
/// object store, nowhere because it is all zeros, or in the object store
/// with some blocks written since kept locally (an overlay, see
/// [`crate::overlay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtentState {
    Local = 0,
    Remote = 1,
    Zero = 2,
    Overlay = 3,
}

impl ExtentState {
    /// The state a persisted byte stands for; unknown bytes read as local,
    /// the state that keeps the local copy.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => ExtentState::Remote,
            2 => ExtentState::Zero,
            3 => ExtentState::Overlay,
            _ => ExtentState::Local,
        }
    }

    /// The object store holds (most of) the data: a remote extent, or an
    /// overlay over one.
    pub fn is_tiered(self) -> bool {
        matches!(self, ExtentState::Remote | ExtentState::Overlay)
    }
}

/// The extents under `offset..offset + len` of a volume whose extents are
/// `1 << extent_shift` bytes: `(extent, start within the volume, bytes)` for
/// each, in order, without allocating (the simulator visits every event of
/// traces with millions of them). An empty range has no pieces.
pub fn pieces(extent_shift: u32, offset: u64, len: u64) -> Pieces {
    let end = offset.saturating_add(len);
    Pieces {
        shift: extent_shift,
        offset,
        end,
        next: offset >> extent_shift,
        last: end.saturating_sub(1) >> extent_shift,
    }
}

/// See [`pieces`].
#[derive(Debug, Clone)]
pub struct Pieces {
    shift: u32,
    offset: u64,
    end: u64,
    next: u64,
    last: u64,
}

impl Iterator for Pieces {
    type Item = (u64, u64, u64);
    fn next(&mut self) -> Option<(u64, u64, u64)> {
        while self.next <= self.last {
            let e = self.next;
            self.next += 1;
            let s = (e << self.shift).max(self.offset);
            // The last extent of the address space ends at u64::MAX.
            let t = (e + 1).saturating_mul(1u64 << self.shift).min(self.end);
            if t > s {
                return Some((e, s, t - s));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_by_extent() {
        // 1 MiB extents; 12 KiB straddling extents 0 and 1.
        let p: Vec<_> = pieces(20, (1 << 20) - 4096, 12288).collect();
        assert_eq!(p, vec![(0, (1 << 20) - 4096, 4096), (1, 1 << 20, 8192)]);
        assert_eq!(pieces(20, 5, 0).count(), 0);
        assert_eq!(pieces(20, 0, 3 << 20).count(), 3);
        assert_eq!(pieces(20, u64::MAX - 10, 100).map(|p| p.2).sum::<u64>(), 10);
    }
}
