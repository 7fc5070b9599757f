//! An object's bytes as they came off the wire: the segments of a response
//! body, in order, kept apart.
//!
//! An HTTP client hands a body over in the pieces its socket reads produced
//! (kilobytes each). Gathering a 4 MiB extent into one buffer costs a copy of
//! every byte that is then read once, into a reply, and dropped; that copy
//! was a seventh of the daemon's CPU on a cold sequential read. A [`Body`]
//! keeps the pieces and lets readers hash, copy out or slice across them.
//!
//! Invariant kept here: no segment is empty, and `ends[i]` is the body
//! offset one past segment `i`, so a byte's segment is found by binary
//! search. Cloning shares the segments (one reference count).

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

#[derive(Clone, Default)]
pub struct Body(Arc<Segments>);

#[derive(Default)]
struct Segments {
    segs: Vec<Bytes>,
    ends: Vec<usize>,
}

impl Body {
    /// The body made of `segments` in order (empty ones are dropped).
    pub fn from_segments(segments: impl IntoIterator<Item = Bytes>) -> Self {
        let mut s = Segments::default();
        let mut end = 0;
        for b in segments.into_iter().filter(|b| !b.is_empty()) {
            end += b.len();
            s.segs.push(b);
            s.ends.push(end);
        }
        Self(Arc::new(s))
    }

    pub fn len(&self) -> usize {
        self.0.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many segments it is held in.
    pub fn segment_count(&self) -> usize {
        self.0.segs.len()
    }

    /// The pieces of the segments that hold bytes `range`, in order.
    ///
    /// # Panics
    /// If `range` runs past the end or backwards, as slicing does.
    pub fn chunks(&self, range: Range<usize>) -> impl Iterator<Item = &[u8]> + '_ {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "range {range:?} out of a {}-byte body",
            self.len()
        );
        let first = self.0.ends.partition_point(|&end| end <= range.start);
        self.0.segs[first..]
            .iter()
            .zip(&self.0.ends[first..])
            .map_while(move |(seg, &end)| {
                let seg_start = end - seg.len();
                if seg_start >= range.end {
                    return None;
                }
                let from = range.start.saturating_sub(seg_start);
                let to = range.end.min(end) - seg_start;
                Some(&seg[from..to])
            })
            .filter(|c| !c.is_empty())
    }

    /// Every segment in order, whole.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.0.segs.iter().map(|b| &b[..])
    }

    /// Copies bytes `at..at + buf.len()` into `buf`.
    ///
    /// # Panics
    /// If that runs past the end, as `copy_from_slice` does.
    pub fn copy_to_slice(&self, at: usize, buf: &mut [u8]) {
        let mut pos = 0;
        for c in self.chunks(at..at + buf.len()) {
            buf[pos..pos + c.len()].copy_from_slice(c);
            pos += c.len();
        }
    }

    /// Bytes `range` as a body sharing these segments (no copy).
    ///
    /// # Panics
    /// If `range` runs past the end or backwards.
    pub fn slice(&self, range: Range<usize>) -> Self {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "range {range:?} out of a {}-byte body",
            self.len()
        );
        let first = self.0.ends.partition_point(|&end| end <= range.start);
        let mut out = Vec::new();
        let mut pos = range.start;
        for (seg, &end) in self.0.segs[first..].iter().zip(&self.0.ends[first..]) {
            if pos >= range.end {
                break;
            }
            let seg_start = end - seg.len();
            out.push(seg.slice(pos - seg_start..range.end.min(end) - seg_start));
            pos = end;
        }
        Self::from_segments(out)
    }

    /// The bytes in one buffer: the segment itself when there is one,
    /// otherwise a copy.
    pub fn into_bytes(self) -> Bytes {
        match self.0.segs.len() {
            0 => Bytes::new(),
            1 => self.0.segs[0].clone(),
            _ => {
                let mut out = BytesMut::with_capacity(self.len());
                for s in &self.0.segs {
                    out.extend_from_slice(s);
                }
                out.freeze()
            }
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for s in &self.0.segs {
            out.extend_from_slice(s);
        }
        out
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self::from_segments([b])
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl PartialEq<[u8]> for Body {
    fn eq(&self, other: &[u8]) -> bool {
        self.len() == other.len() && {
            let mut pos = 0;
            self.segments().all(|s| {
                let same = s == &other[pos..pos + s.len()];
                pos += s.len();
                same
            })
        }
    }
}

impl PartialEq<&[u8]> for Body {
    fn eq(&self, other: &&[u8]) -> bool {
        *self == **other
    }
}

impl PartialEq<Vec<u8>> for Body {
    fn eq(&self, other: &Vec<u8>) -> bool {
        *self == other[..]
    }
}

impl PartialEq<Bytes> for Body {
    fn eq(&self, other: &Bytes) -> bool {
        *self == other[..]
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Body({} bytes in {} segments)",
            self.len(),
            self.segment_count()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0..100 cut at 7, 8, 30, 99 (plus an empty piece that is dropped).
    fn cut() -> (Vec<u8>, Body) {
        let all: Vec<u8> = (0..100).collect();
        let cuts = [0, 7, 8, 8, 30, 99, 100];
        let body = Body::from_segments(
            cuts.windows(2)
                .map(|w| Bytes::copy_from_slice(&all[w[0]..w[1]])),
        );
        (all, body)
    }

    #[test]
    fn every_range_reads_as_the_contiguous_bytes() {
        let (all, body) = cut();
        assert_eq!(body.len(), 100);
        assert_eq!(body.segment_count(), 5, "the empty piece is dropped");
        for a in 0..=100 {
            for b in a..=100 {
                let joined: Vec<u8> = body.chunks(a..b).flatten().copied().collect();
                assert_eq!(joined, all[a..b], "chunks {a}..{b}");
                let mut buf = vec![0xee; b - a];
                body.copy_to_slice(a, &mut buf);
                assert_eq!(buf, all[a..b], "copy {a}..{b}");
                let s = body.slice(a..b);
                assert_eq!(s.len(), b - a);
                assert_eq!(s.to_vec(), all[a..b], "slice {a}..{b}");
                assert!(s.chunks(0..s.len()).all(|c| !c.is_empty()));
            }
        }
        assert_eq!(body.clone().into_bytes(), all[..]);
        assert!(body == all);
    }

    #[test]
    fn one_segment_comes_out_without_a_copy() {
        let b = Bytes::from(vec![1u8; 64]);
        let ptr = b.as_ptr();
        assert_eq!(Body::from(b).into_bytes().as_ptr(), ptr);
        assert!(Body::default().into_bytes().is_empty());
    }

    #[test]
    fn a_difference_anywhere_is_unequal() {
        let (mut all, body) = cut();
        all[50] ^= 1;
        assert!(body != all);
        assert!(body != all[..99].to_vec());
    }

    #[test]
    #[should_panic(expected = "out of a 100-byte body")]
    fn a_range_past_the_end_panics() {
        let (_, body) = cut();
        let _ = body.chunks(90..101).count();
    }
}
