//! How the I/O path classifies and serves accesses, as pure decisions shared
//! by the daemon and the simulator (`tierd simulate`), so that a simulation
//! makes the same calls, and the same object-store requests, as the daemon.
//!
//! Owns: telling sequential reads from random ones, whether a read of a cold
//! extent fetches the whole object or only the frames it needs, which extents
//! a sequential read prefetches, and how many extents the fetch cache holds.

use std::ops::Range;

use crate::config::TieringSettings;

/// Read ends remembered per connection to call a read sequential.
const RECENT_READS: usize = 16;
/// Reads at least this long are streaming reads whatever came before: scans
/// use large requests, and their first request continues nothing.
const LARGE_READ: u64 = 1 << 20;

/// Remembers where recent reads ended, to tell sequential reads from random
/// ones even when a client keeps several reads in flight.
#[derive(Debug, Clone)]
pub struct ReadTracker {
    ends: [u64; RECENT_READS],
    next: usize,
}

impl Default for ReadTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadTracker {
    pub fn new() -> Self {
        Self {
            ends: [u64::MAX; RECENT_READS],
            next: 0,
        }
    }

    /// Records a read and says whether it was sequential.
    pub fn observe(&mut self, offset: u64, len: u64) -> bool {
        let sequential = len >= LARGE_READ || self.ends.contains(&offset);
        self.ends[self.next] = offset + len;
        self.next = (self.next + 1) % RECENT_READS;
        sequential
    }
}

/// Whether a read of `len` bytes of a cold extent of `extent_len` fetches the
/// whole object (then cached) rather than a ranged GET of its frames: when the
/// extent comes back anyway, when the read streams, when it is cached, or when
/// the read covers half the extent or more.
pub fn fetch_whole(
    brings_back: bool,
    sequential: bool,
    cached: bool,
    len: u64,
    extent_len: u64,
) -> bool {
    brings_back || sequential || cached || len * 2 >= extent_len
}

/// The extents a sequential read of extent `after` prefetches (those of them
/// that are remote and not cached).
pub fn readahead(after: u64, readahead_extents: u32, extent_count: u64) -> Range<u64> {
    (after + 1)..(after + 1 + readahead_extents as u64).min(extent_count)
}

/// Extents the fetch cache holds, sized for 4 MiB extents.
pub fn cache_entries(t: &TieringSettings) -> usize {
    (t.cache_bytes() / (4u64 << 20)).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_continuing_recent_ones_are_sequential() {
        let mut t = ReadTracker::new();
        assert!(!t.observe(0, 4096));
        assert!(t.observe(4096, 4096));
        // Two streams interleaved, as with several reads in flight.
        assert!(!t.observe(1 << 30, 65536));
        assert!(t.observe(8192, 4096));
        assert!(t.observe((1 << 30) + 65536, 65536));
        assert!(!t.observe(12345, 1));
        // A large read streams even when it continues nothing.
        assert!(t.observe(7 << 30, 2 << 20));
    }

    #[test]
    fn readahead_stops_at_the_last_extent() {
        assert_eq!(readahead(3, 2, 100), 4..6);
        assert_eq!(readahead(98, 4, 100), 99..100);
        assert_eq!(readahead(99, 4, 100), 100..100);
    }
}
