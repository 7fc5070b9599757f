//! How the I/O path classifies and serves accesses, as pure decisions shared
//! by the daemon and the simulator (`tierd simulate`), so that a simulation
//! makes the same calls, and the same object-store requests, as the daemon.
//!
//! Owns: telling sequential reads from random ones, and the one plan for a
//! read of a cold extent ([`plan_cold_read`]): whether it fetches the whole
//! object or only the frames it needs, which extents it reads ahead, and
//! whether the extent comes back to the local tier. The daemon's cold read
//! path and the simulator both follow that plan and nothing else.

use std::ops::Range;

use crate::class::{brings_back, ClassConfig};

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

/// What is fetched from the object store for a cold read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The whole object, shared by concurrent readers and cached.
    Whole,
    /// Frames `first..last` of the object, with one ranged GET.
    Frames { first: u64, last: u64 },
}

/// One read of one cold extent, as the plan needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdRead {
    pub extent: u64,
    /// Where the read starts within the extent.
    pub within: u64,
    pub len: u64,
    /// The extent's length (the last extent of a volume may be short).
    pub extent_len: u64,
    /// Extents in the volume (read-ahead stops at the last).
    pub extent_count: u64,
    /// The read tracker called the read sequential.
    pub sequential: bool,
    /// A whole copy of this object generation is in the fetch cache.
    pub cached: bool,
}

/// What a read of a cold extent does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdReadPlan {
    pub fetch: Fetch,
    /// Extents to prefetch whole (those of them that are remote and not cached).
    pub readahead: Range<u64>,
    /// The extent comes back to the local tier after the read.
    pub bring_back: bool,
}

/// The plan for a read of a cold extent under `class` (`None`: the volume's
/// class is not configured, so nothing comes back). `frame_size` is the
/// object's uncompressed bytes per frame; `readahead_extents` the setting.
///
/// The whole object is fetched (then cached) when the extent comes back
/// anyway, when the read streams, when it is cached, or when the read covers
/// half the extent or more; otherwise only the frames it touches. Sequential
/// reads prefetch the next `readahead_extents` extents.
pub fn plan_cold_read(
    class: Option<&ClassConfig>,
    read: &ColdRead,
    frame_size: u64,
    readahead_extents: u32,
) -> ColdReadPlan {
    let bring_back = class.is_some_and(|c| brings_back(c, read.sequential));
    let whole = bring_back || read.sequential || read.cached || read.len * 2 >= read.extent_len;
    let fetch = if whole {
        Fetch::Whole
    } else {
        let fs = frame_size.max(1);
        let frames = read.extent_len.div_ceil(fs);
        Fetch::Frames {
            first: read.within / fs,
            last: (read.within + read.len).div_ceil(fs).min(frames),
        }
    };
    let readahead = if read.sequential {
        readahead(read.extent, readahead_extents, read.extent_count)
    } else {
        read.extent..read.extent
    };
    ColdReadPlan {
        fetch,
        readahead,
        bring_back,
    }
}

/// The extents a sequential read of extent `after` prefetches (those of them
/// that are remote and not cached).
fn readahead(after: u64, readahead_extents: u32, extent_count: u64) -> Range<u64> {
    let start = (after + 1).min(extent_count);
    start..(after + 1 + readahead_extents as u64).min(extent_count)
}

/// Extents the fetch cache holds for `cache_bytes`, sized for 4 MiB extents.
pub fn cache_entries(cache_bytes: u64) -> usize {
    (cache_bytes / (4u64 << 20)).max(1) as usize
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

    fn read(within: u64, len: u64, sequential: bool, cached: bool) -> ColdRead {
        ColdRead {
            extent: 7,
            within,
            len,
            extent_len: 4 << 20,
            extent_count: 10,
            sequential,
            cached,
        }
    }

    #[test]
    fn cold_read_plans() {
        use crate::class::{RetrievalPolicy, TieringPolicy};
        let auto = ClassConfig::with_policies(TieringPolicy::Auto, None, RetrievalPolicy::Default);
        let all = ClassConfig::with_policies(TieringPolicy::All, None, RetrievalPolicy::Default);
        // A small random read under auto comes back, so it fetches the whole object.
        let p = plan_cold_read(Some(&auto), &read(4096, 4096, false, false), 65536, 2);
        assert_eq!(
            (p.fetch, p.bring_back, p.readahead),
            (Fetch::Whole, true, 7..7)
        );
        // Under all it stays cold: only its frame (straddling reads take two).
        let p = plan_cold_read(Some(&all), &read(4096, 4096, false, false), 65536, 2);
        assert_eq!(
            (p.fetch, p.bring_back),
            (Fetch::Frames { first: 0, last: 1 }, false)
        );
        let p = plan_cold_read(Some(&all), &read(65536 - 512, 1024, false, false), 65536, 2);
        assert_eq!(p.fetch, Fetch::Frames { first: 0, last: 2 });
        // The frame size comes from the caller (the object's own).
        let p = plan_cold_read(Some(&all), &read(1 << 20, 4096, false, false), 1 << 20, 2);
        assert_eq!(p.fetch, Fetch::Frames { first: 1, last: 2 });
        // Cached, large or streaming reads take the whole object; streams read ahead.
        assert_eq!(
            plan_cold_read(Some(&all), &read(0, 4096, false, true), 65536, 2).fetch,
            Fetch::Whole
        );
        assert_eq!(
            plan_cold_read(Some(&all), &read(0, 2 << 20, false, false), 65536, 2).fetch,
            Fetch::Whole
        );
        let p = plan_cold_read(Some(&auto), &read(0, 4096, true, false), 65536, 2);
        assert_eq!(
            (p.fetch, p.bring_back, p.readahead),
            (Fetch::Whole, false, 8..10)
        );
        // An unconfigured class brings nothing back.
        let p = plan_cold_read(None, &read(4096, 4096, false, false), 65536, 2);
        assert!(!p.bring_back);
    }
}
