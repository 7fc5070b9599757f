//! How the I/O path classifies and serves accesses, as pure decisions shared
//! by the daemon and the simulator (`tierd simulate`), so that a simulation
//! makes the same calls, and the same object-store requests, as the daemon.
//!
//! Owns: telling sequential reads from random ones and how long a stream has
//! run, and the one plan for a read of a cold extent ([`plan_cold_read`]):
//! whether it fetches the whole object or only the frames it needs, which
//! extents it reads ahead, and whether the extent comes back to the local
//! tier. The daemon's cold read path and the simulator both follow that plan
//! and nothing else.

use std::ops::Range;

use crate::class::{brings_back, ClassConfig};

/// Read ends remembered per connection to call a read sequential.
const RECENT_READS: usize = 16;
/// Reads at least this long are streaming reads whatever came before: scans
/// use large requests, and their first request continues nothing.
const LARGE_READ: u64 = 1 << 20;

/// How a read relates to the reads before it on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadPattern {
    /// It continues a recent read, or is large enough to be a scan's.
    pub sequential: bool,
    /// Bytes the stream it belongs to has read, this read included (0 for a
    /// random read): read-ahead grows with it.
    pub streamed: u64,
}

impl ReadPattern {
    /// A read that continues nothing (and any read not from a client).
    pub const RANDOM: Self = Self {
        sequential: false,
        streamed: 0,
    };
}

/// Remembers where recent reads ended, and how long the stream ending there
/// ran, to tell sequential reads from random ones even when a client keeps
/// several reads in flight.
#[derive(Debug, Clone)]
pub struct ReadTracker {
    /// (end offset, bytes streamed up to it) of recent reads.
    ends: [(u64, u64); RECENT_READS],
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
            ends: [(u64::MAX, 0); RECENT_READS],
            next: 0,
        }
    }

    /// Records a read and says whether it was sequential and how far its
    /// stream has run.
    pub fn observe(&mut self, offset: u64, len: u64) -> ReadPattern {
        let before = self
            .ends
            .iter()
            .find(|(end, _)| *end == offset)
            .map(|&(_, streamed)| streamed);
        let pattern = match before {
            Some(streamed) => ReadPattern {
                sequential: true,
                streamed: streamed.saturating_add(len),
            },
            None if len >= LARGE_READ => ReadPattern {
                sequential: true,
                streamed: len,
            },
            None => ReadPattern {
                sequential: false,
                streamed: len,
            },
        };
        self.ends[self.next] = (offset.saturating_add(len), pattern.streamed);
        self.next = (self.next + 1) % RECENT_READS;
        if pattern.sequential {
            pattern
        } else {
            ReadPattern::RANDOM
        }
    }
}

/// How far sequential cold reads read ahead, in extents: `initial` at the
/// start of a stream, growing with it (as the kernel's read-ahead window
/// doubles while a stream keeps consuming it) up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readahead {
    pub initial: u32,
    pub max: u32,
}

impl Readahead {
    /// The settings, with `max` no less than `initial` and held to half the
    /// fetch cache: read-ahead beyond that would evict its own extents before
    /// the reader got there.
    pub fn new(initial: u32, max: u32, cache_entries: usize) -> Self {
        let room = u32::try_from(cache_entries / 2).unwrap_or(u32::MAX);
        let max = max.max(initial).min(room);
        Self {
            initial: initial.min(max),
            max,
        }
    }

    /// Extents to read ahead for a stream that has read `streamed` bytes
    /// of `extent_len`-byte extents: twice what it has read, within bounds.
    pub fn window(&self, streamed: u64, extent_len: u64) -> u32 {
        let read = streamed / extent_len.max(1);
        let grown = u32::try_from(read.saturating_mul(2)).unwrap_or(u32::MAX);
        grown.clamp(self.initial, self.max)
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
    /// What the read tracker made of the read.
    pub pattern: ReadPattern,
    /// A whole copy of this object generation is in the fetch cache.
    pub cached: bool,
    /// Read-ahead stops before this extent: where another live stream of
    /// the volume began, so what it has read is not fetched again
    /// ([`crate::Streams`]); `u64::MAX` when no stream is ahead.
    pub ahead_limit: u64,
    /// Sequential streams reading the volume now (at least 1): they share
    /// the read-ahead room, so none evicts what another fetched ahead.
    pub streams: u32,
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
/// object's uncompressed bytes per frame.
///
/// The whole object is fetched (then cached) when the extent comes back
/// anyway, when the read streams, when it is cached, or when the read covers
/// half the extent or more; otherwise only the frames it touches. Sequential
/// reads prefetch the next extents, as many as `readahead` gives the stream
/// (its share when the volume has several), stopping where another stream
/// began.
pub fn plan_cold_read(
    class: Option<&ClassConfig>,
    read: &ColdRead,
    frame_size: u64,
    readahead: Readahead,
) -> ColdReadPlan {
    let sequential = read.pattern.sequential;
    let bring_back = class.is_some_and(|c| brings_back(c, sequential));
    let whole = bring_back || sequential || read.cached || read.len * 2 >= read.extent_len;
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
    let readahead = if sequential {
        let window = readahead
            .window(read.pattern.streamed, read.extent_len)
            .min((readahead.max / read.streams.max(1)).max(1));
        ahead(read.extent, window, read.extent_count.min(read.ahead_limit))
    } else {
        read.extent..read.extent
    };
    ColdReadPlan {
        fetch,
        readahead,
        bring_back,
    }
}

/// The `window` extents after extent `after`, within the volume.
fn ahead(after: u64, window: u32, extent_count: u64) -> Range<u64> {
    let start = (after + 1).min(extent_count);
    start..(after + 1 + window as u64).min(extent_count)
}

/// Extents the fetch cache holds for `cache_bytes`, sized for 4 MiB extents.
pub fn cache_entries(cache_bytes: u64) -> usize {
    (cache_bytes / (4u64 << 20)).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(t: &mut ReadTracker, offset: u64, len: u64) -> bool {
        t.observe(offset, len).sequential
    }

    #[test]
    fn reads_continuing_recent_ones_are_sequential() {
        let mut t = ReadTracker::new();
        assert!(!seq(&mut t, 0, 4096));
        assert!(seq(&mut t, 4096, 4096));
        // Two streams interleaved, as with several reads in flight.
        assert!(!seq(&mut t, 1 << 30, 65536));
        assert!(seq(&mut t, 8192, 4096));
        assert!(seq(&mut t, (1 << 30) + 65536, 65536));
        assert!(!seq(&mut t, 12345, 1));
        // A large read streams even when it continues nothing.
        assert!(seq(&mut t, 7 << 30, 2 << 20));
    }

    #[test]
    fn streams_count_what_they_have_read() {
        let mut t = ReadTracker::new();
        assert_eq!(t.observe(0, 4096), ReadPattern::RANDOM);
        assert_eq!(t.observe(4096, 4096).streamed, 8192);
        // Another stream interleaved keeps its own count.
        assert_eq!(t.observe(1 << 30, 2 << 20).streamed, 2 << 20);
        assert_eq!(t.observe(8192, 8192).streamed, 16384);
        assert_eq!(t.observe((1 << 30) + (2 << 20), 1 << 20).streamed, 3 << 20);
        // A random read starts nothing that counts until it is continued.
        assert_eq!(t.observe(5 << 30, 4096), ReadPattern::RANDOM);
        assert_eq!(t.observe((5 << 30) + 4096, 4096).streamed, 8192);
    }

    #[test]
    fn readahead_grows_with_the_stream_within_bounds() {
        const MIB4: u64 = 4 << 20;
        let r = Readahead::new(2, 32, 64);
        assert_eq!(r.window(4096, MIB4), 2);
        assert_eq!(r.window(MIB4, MIB4), 2);
        assert_eq!(r.window(3 * MIB4, MIB4), 6);
        assert_eq!(r.window(10 * MIB4, MIB4), 20);
        assert_eq!(r.window(1 << 40, MIB4), 32);
        // Never more than half what the fetch cache holds (a one-entry cache
        // reads nothing ahead); 0 turns it off; max is at least initial.
        assert_eq!(Readahead::new(2, 32, 16).window(1 << 40, MIB4), 8);
        assert_eq!(Readahead::new(2, 32, 1).window(1 << 40, MIB4), 0);
        assert_eq!(Readahead::new(0, 0, 64).window(1 << 40, MIB4), 0);
        assert_eq!(Readahead::new(4, 2, 64), Readahead { initial: 4, max: 4 });
    }

    #[test]
    fn readahead_stops_at_the_last_extent() {
        assert_eq!(ahead(3, 2, 100), 4..6);
        assert_eq!(ahead(98, 4, 100), 99..100);
        assert_eq!(ahead(99, 4, 100), 100..100);
    }

    fn read(within: u64, len: u64, sequential: bool, cached: bool) -> ColdRead {
        ColdRead {
            extent: 7,
            within,
            len,
            extent_len: 4 << 20,
            extent_count: 10,
            pattern: ReadPattern {
                sequential,
                streamed: if sequential { len } else { 0 },
            },
            cached,
            ahead_limit: u64::MAX,
            streams: 1,
        }
    }

    const RA: Readahead = Readahead { initial: 2, max: 2 };

    #[test]
    fn cold_read_plans() {
        use crate::class::{RetrievalPolicy, TieringPolicy};
        let auto = ClassConfig::with_policies(TieringPolicy::Auto, None, RetrievalPolicy::Default);
        let all = ClassConfig::with_policies(TieringPolicy::All, None, RetrievalPolicy::Default);
        // A small random read under auto comes back, so it fetches the whole object.
        let p = plan_cold_read(Some(&auto), &read(4096, 4096, false, false), 65536, RA);
        assert_eq!(
            (p.fetch, p.bring_back, p.readahead),
            (Fetch::Whole, true, 7..7)
        );
        // Under all it stays cold: only its frame (straddling reads take two).
        let p = plan_cold_read(Some(&all), &read(4096, 4096, false, false), 65536, RA);
        assert_eq!(
            (p.fetch, p.bring_back),
            (Fetch::Frames { first: 0, last: 1 }, false)
        );
        let p = plan_cold_read(
            Some(&all),
            &read(65536 - 512, 1024, false, false),
            65536,
            RA,
        );
        assert_eq!(p.fetch, Fetch::Frames { first: 0, last: 2 });
        // The frame size comes from the caller (the object's own).
        let p = plan_cold_read(Some(&all), &read(1 << 20, 4096, false, false), 1 << 20, RA);
        assert_eq!(p.fetch, Fetch::Frames { first: 1, last: 2 });
        // Cached, large or streaming reads take the whole object; streams read ahead.
        assert_eq!(
            plan_cold_read(Some(&all), &read(0, 4096, false, true), 65536, RA).fetch,
            Fetch::Whole
        );
        assert_eq!(
            plan_cold_read(Some(&all), &read(0, 2 << 20, false, false), 65536, RA).fetch,
            Fetch::Whole
        );
        let p = plan_cold_read(Some(&auto), &read(0, 4096, true, false), 65536, RA);
        assert_eq!(
            (p.fetch, p.bring_back, p.readahead),
            (Fetch::Whole, false, 8..10)
        );
        // A long stream reads further ahead, as far as the volume goes.
        let mut long = read(0, 4096, true, false);
        long.pattern.streamed = 5 << 22;
        long.extent = 2;
        let grown = Readahead::new(2, 32, 64);
        assert_eq!(
            plan_cold_read(Some(&all), &long, 65536, grown).readahead,
            3..10
        );
        long.extent_count = 100;
        assert_eq!(
            plan_cold_read(Some(&all), &long, 65536, grown).readahead,
            3..13
        );
        // Four streams at once share the room: 32 / 4 extents each.
        long.streams = 4;
        assert_eq!(
            plan_cold_read(Some(&all), &long, 65536, grown).readahead,
            3..11
        );
        long.streams = 1;
        // Another stream that began at extent 6 bounds it.
        long.ahead_limit = 6;
        assert_eq!(
            plan_cold_read(Some(&all), &long, 65536, grown).readahead,
            3..6
        );
        long.ahead_limit = 3;
        assert!(plan_cold_read(Some(&all), &long, 65536, grown)
            .readahead
            .is_empty());
        // An unconfigured class brings nothing back.
        let p = plan_cold_read(None, &read(4096, 4096, false, false), 65536, RA);
        assert!(!p.bring_back);
    }
}
