//! Which 4 KiB blocks of one extent a layer holds: a fixed-size bit set that
//! writers fill in without a lock (bits are only ever set while an extent is
//! being written; a flush copies them out to persist them).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Blocks {
    words: Vec<AtomicU64>,
    len: u32,
}

impl Blocks {
    /// An empty set of `len` blocks.
    pub fn new(len: u32) -> Self {
        Self {
            words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Adds blocks `first..last`.
    pub fn insert_range(&self, first: u32, last: u32) {
        let last = last.min(self.len);
        let mut i = first;
        while i < last {
            let w = i / 64;
            let lo = i % 64;
            let hi = (last - w * 64).min(64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            self.words[w as usize].fetch_or(mask, Ordering::AcqRel);
            i = w * 64 + hi;
        }
    }

    /// A set of `len` blocks from plain words (see [`Blocks::words`]).
    pub fn from_words(len: u32, words: &[u64]) -> Self {
        let s = Self::new(len);
        for (a, &b) in s.words.iter().zip(words) {
            a.store(b, Ordering::Release);
        }
        s
    }

    /// The set as plain words (bit `i % 64` of word `i / 64` is block `i`).
    pub fn words(&self) -> Vec<u64> {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .collect()
    }

    pub fn count(&self) -> u32 {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire).count_ones())
            .sum()
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// Runs of `first..last` that are all held (true) or all not (false).
    pub fn runs(&self, first: u32, last: u32) -> Vec<(u32, u32, bool)> {
        let mut out: Vec<(u32, u32, bool)> = Vec::new();
        for i in first..last.min(self.len) {
            let held = self.contains(i);
            match out.last_mut() {
                Some(r) if r.2 == held && r.1 == i => r.1 = i + 1,
                _ => out.push((i, i + 1, held)),
            }
        }
        out
    }

    /// The persisted form: the block count, then the words (little endian).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_le_bytes());
        for w in &self.words {
            out.extend_from_slice(&w.load(Ordering::Acquire).to_le_bytes());
        }
    }

    /// Reads what [`Blocks::encode`] wrote; `None` if the bytes are not that.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
        let words = b.get(4..)?;
        if words.len() != len.div_ceil(64) as usize * 8 {
            return None;
        }
        let s = Self::new(len);
        for (w, c) in s.words.iter().zip(words.chunks_exact(8)) {
            w.store(u64::from_le_bytes(c.try_into().ok()?), Ordering::Release);
        }
        Some(s)
    }

    pub fn copy(&self) -> Self {
        let s = Self::new(self.len);
        for (a, b) in s.words.iter().zip(&self.words) {
            a.store(b.load(Ordering::Acquire), Ordering::Release);
        }
        s
    }
}

impl PartialEq for Blocks {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .words
                .iter()
                .zip(&other.words)
                .all(|(a, b)| a.load(Ordering::Acquire) == b.load(Ordering::Acquire))
    }
}

impl Eq for Blocks {}

impl Clone for Blocks {
    fn clone(&self) -> Self {
        self.copy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_runs_and_round_trip() {
        let b = Blocks::new(1024);
        assert!(b.runs(0, 4) == vec![(0, 4, false)]);
        b.insert_range(3, 70);
        b.insert_range(128, 192);
        assert_eq!(b.count(), 67 + 64);
        assert!(!b.contains(2) && b.contains(3) && b.contains(69) && !b.contains(70));
        assert_eq!(
            b.runs(0, 200),
            vec![
                (0, 3, false),
                (3, 70, true),
                (70, 128, false),
                (128, 192, true),
                (192, 200, false)
            ]
        );
        let mut enc = Vec::new();
        b.encode(&mut enc);
        let back = Blocks::decode(&enc).expect("decodes");
        assert!(back == b);
        assert!(Blocks::decode(&enc[..enc.len() - 1]).is_none());
        assert!(!b.is_full());
        b.insert_range(0, 1024);
        assert!(b.is_full());
        let odd = Blocks::new(100);
        odd.insert_range(0, 1000);
        assert!(odd.is_full() && odd.count() == 100);
    }
}
