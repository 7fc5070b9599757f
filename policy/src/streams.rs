//! The sequential streams reading one volume, across its connections, so
//! that read-ahead for one stream stops where another stream began, and the
//! streams share the fetch cache rather than each filling it.
//!
//! A parallel copy (nbdcopy, qemu-img convert) cuts the volume into regions
//! and reads several at once (nbdcopy: eight 128 MiB regions of a 1 GiB
//! volume). Each stream reading ahead as if alone evicts the others'
//! prefetched extents before they are read, and the stream at the end of its
//! region reads ahead into the next, which another stream read long before:
//! either way extents are fetched twice (12% of the bytes of a 1 GiB nbdcopy
//! on LocalStack). No connection's read tracker can see that; a volume-wide
//! table can.
//!
//! Invariant kept here: a stream is known by the byte offset it started at
//! (a read's end minus the bytes its stream has read, which every read of
//! one stream agrees on); only streams heard from within [`STREAM_TTL_MS`]
//! bound anyone's read-ahead, so a later scan of the same range reads ahead
//! freely once the first has ended.

/// Streams remembered per volume (the least recently heard from is replaced).
const SLOTS: usize = 16;
/// A stream not heard from for this long has ended.
pub const STREAM_TTL_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy)]
struct Stream {
    start: u64,
    head: u64,
    seen_ms: u64,
}

/// The live streams of one volume.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    slots: Vec<Stream>,
}

/// What the other streams of a volume mean for one stream's read-ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbours {
    /// The start of the nearest other live stream at or after this one's
    /// head: read-ahead stops there (`u64::MAX`: none).
    pub next_start: u64,
    /// Live streams, this one included: they share the read-ahead room.
    pub live: u32,
}

impl Neighbours {
    /// A read that is not part of a stream: nothing bounds or shares its
    /// (empty) read-ahead.
    pub const ALONE: Self = Self {
        next_start: u64::MAX,
        live: 1,
    };
}

impl Streams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that the stream which started at byte `start` has read up to
    /// byte `head`, at `now_ms`, and says what the other live streams mean
    /// for its read-ahead.
    pub fn note(&mut self, start: u64, head: u64, now_ms: u64) -> Neighbours {
        match self.slots.iter_mut().find(|s| s.start == start) {
            Some(s) => {
                s.head = s.head.max(head);
                s.seen_ms = now_ms;
            }
            None => {
                let new = Stream {
                    start,
                    head,
                    seen_ms: now_ms,
                };
                if self.slots.len() < SLOTS {
                    self.slots.push(new);
                } else if let Some(oldest) = self.slots.iter_mut().min_by_key(|s| s.seen_ms) {
                    *oldest = new;
                }
            }
        }
        let live = || {
            self.slots
                .iter()
                .filter(move |s| now_ms.saturating_sub(s.seen_ms) < STREAM_TTL_MS)
        };
        Neighbours {
            next_start: live()
                .filter(|s| s.start != start && s.start >= head)
                .map(|s| s.start)
                .min()
                .unwrap_or(u64::MAX),
            live: live().count() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn next(s: &mut Streams, start: u64, head: u64, now: u64) -> u64 {
        s.note(start, head, now).next_start
    }

    #[test]
    fn read_ahead_stops_where_a_live_stream_began() {
        let mut s = Streams::new();
        // Two regions read at once, as nbdcopy does: 0.. and 128 MiB...
        assert_eq!(
            next(&mut s, 0, MIB, 0),
            u64::MAX,
            "alone, nothing bounds it"
        );
        assert_eq!(
            next(&mut s, 128 * MIB, 129 * MIB, 10),
            u64::MAX,
            "none ahead"
        );
        assert_eq!(next(&mut s, 0, 100 * MIB, 20), 128 * MIB);
        // The same stream heard again keeps its identity and its bound.
        assert_eq!(next(&mut s, 0, 120 * MIB, 30), 128 * MIB);
        // A stream never bounds itself, nor do streams behind it.
        assert_eq!(next(&mut s, 128 * MIB, 200 * MIB, 40), u64::MAX);
    }

    #[test]
    fn the_nearest_live_stream_ahead_is_the_bound() {
        let mut s = Streams::new();
        s.note(512 * MIB, 513 * MIB, 0);
        s.note(256 * MIB, 257 * MIB, 0);
        assert_eq!(next(&mut s, 0, MIB, 1), 256 * MIB);
        // One that started at or behind this head does not count.
        assert_eq!(next(&mut s, 0, 300 * MIB, 2), 512 * MIB);
    }

    #[test]
    fn live_streams_are_counted_and_ended_ones_bound_nobody() {
        let mut s = Streams::new();
        s.note(128 * MIB, 256 * MIB, 0);
        let n = s.note(0, MIB, STREAM_TTL_MS - 1);
        assert_eq!((n.next_start, n.live), (128 * MIB, 2));
        // A later scan of the whole volume, after the first one ended.
        let n = s.note(0, 2 * MIB, STREAM_TTL_MS + 1);
        assert_eq!((n.next_start, n.live), (u64::MAX, 1));
    }

    #[test]
    fn the_table_keeps_the_streams_heard_from_last() {
        let mut s = Streams::new();
        for i in 0..SLOTS as u64 {
            s.note((i + 1) * 1000 * MIB, (i + 1) * 1000 * MIB + MIB, i);
        }
        // Each new one replaces the quietest: 1000 MiB (heard at 0), then
        // 2000 MiB (heard at 1).
        let n = s.note(5 * MIB, 6 * MIB, 100);
        assert_eq!((n.next_start, n.live), (2000 * MIB, SLOTS as u32));
        assert_eq!(next(&mut s, 999 * MIB, 1000 * MIB, 101), 3000 * MIB);
        assert_eq!(s.slots.len(), SLOTS);
    }
}
