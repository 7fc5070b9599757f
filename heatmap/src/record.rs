//! One extent's heat: counts, recency and a decayed temperature, with the
//! associative combine that both the in-memory aggregation and the RocksDB
//! merge operator use, and its fixed binary encoding.
//!
//! Temperature is a sum of accesses each weighted by `2^(-age / half_life)`,
//! kept as a value valid at `temp_at_ms`. Two records combine by decaying both to
//! the later of their times and adding, which is associative and commutative, so
//! deltas can be merged in any grouping and the result is the same.

use serde::Serialize;

/// What an access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
}

/// One access to one extent, as the I/O path reports it.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub kind: AccessKind,
    pub bytes: u64,
    /// The read continued an earlier read of the same connection.
    pub sequential: bool,
}

/// The persisted heat of one extent (and, identically shaped, a delta of it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HeatRecord {
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub sequential_reads: u64,
    pub random_reads: u64,
    pub last_read_ms: u64,
    pub last_write_ms: u64,
    /// The last write or read that was not part of a sequential scan: the
    /// last use when scans do not warm.
    pub last_warm_ms: u64,
    /// The time at which the three decayed scores below are valid.
    pub temp_at_ms: u64,
    pub temperature: f64,
    pub sequential_score: f64,
    pub random_score: f64,
}

/// Version 1 had no `last_warm_ms`.
const VERSION_1: u8 = 1;
const VERSION: u8 = 2;
const V1_LEN: usize = 1 + 9 * 8 + 3 * 8;
/// Encoded size: a version byte, ten u64 and three f64.
pub const ENCODED_LEN: usize = 1 + 10 * 8 + 3 * 8;

/// `2^(-dt / half_life)`: the weight an access keeps after `dt` ms.
pub fn decay_factor(dt_ms: u64, half_life_ms: f64) -> f64 {
    if half_life_ms <= 0.0 {
        return if dt_ms == 0 { 1.0 } else { 0.0 };
    }
    (-(dt_ms as f64) / half_life_ms).exp2()
}

impl HeatRecord {
    /// The delta one access contributes at time `now_ms`.
    pub fn from_access(access: Access, now_ms: u64) -> Self {
        let mut r = HeatRecord {
            temp_at_ms: now_ms,
            temperature: 1.0,
            ..Default::default()
        };
        match access.kind {
            AccessKind::Read => {
                r.reads = 1;
                r.read_bytes = access.bytes;
                r.last_read_ms = now_ms;
                if access.sequential {
                    r.sequential_reads = 1;
                    r.sequential_score = 1.0;
                } else {
                    r.random_reads = 1;
                    r.random_score = 1.0;
                    r.last_warm_ms = now_ms;
                }
            }
            AccessKind::Write => {
                r.writes = 1;
                r.write_bytes = access.bytes;
                r.last_write_ms = now_ms;
                r.last_warm_ms = now_ms;
            }
        }
        r
    }

    pub fn last_access_ms(&self) -> u64 {
        self.last_read_ms.max(self.last_write_ms)
    }

    /// Folds `other` into `self`.
    pub fn combine(&mut self, other: &HeatRecord, half_life_ms: f64) {
        let at = self.temp_at_ms.max(other.temp_at_ms);
        let a = decay_factor(at - self.temp_at_ms, half_life_ms);
        let b = decay_factor(at - other.temp_at_ms, half_life_ms);
        self.temperature = self.temperature * a + other.temperature * b;
        self.sequential_score = self.sequential_score * a + other.sequential_score * b;
        self.random_score = self.random_score * a + other.random_score * b;
        self.temp_at_ms = at;
        self.reads += other.reads;
        self.writes += other.writes;
        self.read_bytes += other.read_bytes;
        self.write_bytes += other.write_bytes;
        self.sequential_reads += other.sequential_reads;
        self.random_reads += other.random_reads;
        self.last_read_ms = self.last_read_ms.max(other.last_read_ms);
        self.last_write_ms = self.last_write_ms.max(other.last_write_ms);
        self.last_warm_ms = self.last_warm_ms.max(other.last_warm_ms);
    }

    /// The three scores decayed to `now_ms` (never grown: a time before
    /// `temp_at_ms` leaves them as they are).
    pub fn scores_at(&self, now_ms: u64, half_life_ms: f64) -> (f64, f64, f64) {
        let f = decay_factor(now_ms.saturating_sub(self.temp_at_ms), half_life_ms);
        (
            self.temperature * f,
            self.sequential_score * f,
            self.random_score * f,
        )
    }

    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0] = VERSION;
        let ints = [
            self.reads,
            self.writes,
            self.read_bytes,
            self.write_bytes,
            self.sequential_reads,
            self.random_reads,
            self.last_read_ms,
            self.last_write_ms,
            self.temp_at_ms,
            self.last_warm_ms,
        ];
        let mut pos = 1;
        for v in ints {
            out[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
            pos += 8;
        }
        for v in [self.temperature, self.sequential_score, self.random_score] {
            out[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
            pos += 8;
        }
        out
    }

    /// Reads this version and version 1 (whose every access counts as warm).
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let (ints, want) = match buf.first() {
            Some(&VERSION) => (10, ENCODED_LEN),
            Some(&VERSION_1) => (9, V1_LEN),
            Some(v) => return Err(format!("unknown record version {v}")),
            None => return Err("empty record".into()),
        };
        if buf.len() != want {
            return Err(format!("record is {} bytes, expected {want}", buf.len()));
        }
        let mut words = [0u64; 13];
        for (i, w) in words.iter_mut().enumerate().take(ints + 3) {
            let start = 1 + i * 8;
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[start..start + 8]);
            *w = u64::from_le_bytes(b);
        }
        let last_warm_ms = if ints == 10 {
            words[9]
        } else {
            words[6].max(words[7])
        };
        // The three scores follow the integers.
        let f = |i: usize| f64::from_bits(words[ints + i]);
        Ok(HeatRecord {
            reads: words[0],
            writes: words[1],
            read_bytes: words[2],
            write_bytes: words[3],
            sequential_reads: words[4],
            random_reads: words[5],
            last_read_ms: words[6],
            last_write_ms: words[7],
            temp_at_ms: words[8],
            last_warm_ms,
            temperature: f(0),
            sequential_score: f(1),
            random_score: f(2),
        })
    }
}

/// An extent's heat as queries report it, with the scores decayed to the query time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExtentHeat {
    pub extent: u64,
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub sequential_reads: u64,
    pub random_reads: u64,
    pub last_access_ms: u64,
    pub last_read_ms: u64,
    pub last_write_ms: u64,
    pub temperature: f64,
    /// The last use that was not part of a sequential scan.
    pub last_warm_ms: u64,
    /// The temperature without sequential-scan reads.
    pub warm_temperature: f64,
    /// Share of recent (decay-weighted) reads that were sequential, 0 to 1;
    /// `None` when the extent has never been read.
    pub sequential_ratio: Option<f64>,
}

impl ExtentHeat {
    pub fn from_record(extent: u64, r: &HeatRecord, now_ms: u64, half_life_ms: f64) -> Self {
        let (temperature, seq, rnd) = r.scores_at(now_ms, half_life_ms);
        let sequential_ratio = if r.reads == 0 {
            None
        } else if seq + rnd > 0.0 {
            Some(seq / (seq + rnd))
        } else {
            // Every read has decayed to nothing: fall back to the lifetime counts.
            Some(r.sequential_reads as f64 / r.reads as f64)
        };
        ExtentHeat {
            extent,
            reads: r.reads,
            writes: r.writes,
            read_bytes: r.read_bytes,
            write_bytes: r.write_bytes,
            sequential_reads: r.sequential_reads,
            random_reads: r.random_reads,
            last_access_ms: r.last_access_ms(),
            last_read_ms: r.last_read_ms,
            last_write_ms: r.last_write_ms,
            temperature,
            last_warm_ms: r.last_warm_ms,
            warm_temperature: (temperature - seq).max(0.0),
            sequential_ratio,
        }
    }
}

/// Upper bounds of the temperature histogram's buckets (the last is open-ended).
pub const TEMPERATURE_BUCKETS: [f64; 7] = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0];

/// One bucket of a temperature histogram.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistogramBucket {
    /// Inclusive upper bound; `None` for the last, open-ended bucket.
    pub le: Option<f64>,
    pub extents: u64,
}

/// Counts extents into [`TEMPERATURE_BUCKETS`].
pub fn histogram_of(extents: &[ExtentHeat]) -> Vec<HistogramBucket> {
    let mut counts = vec![0u64; TEMPERATURE_BUCKETS.len() + 1];
    for h in extents {
        let i = TEMPERATURE_BUCKETS
            .iter()
            .position(|&le| h.temperature <= le)
            .unwrap_or(TEMPERATURE_BUCKETS.len());
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, extents)| HistogramBucket {
            le: TEMPERATURE_BUCKETS.get(i).copied(),
            extents,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: f64 = 1000.0;

    fn read(seq: bool, at: u64) -> HeatRecord {
        HeatRecord::from_access(
            Access {
                kind: AccessKind::Read,
                bytes: 4096,
                sequential: seq,
            },
            at,
        )
    }

    #[test]
    fn temperature_halves_every_half_life() {
        let r = read(false, 0);
        let (t, _, _) = r.scores_at(1000, H);
        assert!((t - 0.5).abs() < 1e-12, "{t}");
        let (t, _, _) = r.scores_at(3000, H);
        assert!((t - 0.125).abs() < 1e-12, "{t}");
    }

    #[test]
    fn combine_is_associative_and_order_free() {
        let a = read(true, 100);
        let b = read(false, 2500);
        let c = HeatRecord::from_access(
            Access {
                kind: AccessKind::Write,
                bytes: 8192,
                sequential: false,
            },
            1700,
        );
        let mut left = a;
        left.combine(&b, H);
        left.combine(&c, H);
        let mut bc = b;
        bc.combine(&c, H);
        let mut right = a;
        right.combine(&bc, H);
        let mut rev = c;
        rev.combine(&b, H);
        rev.combine(&a, H);
        for other in [right, rev] {
            assert_eq!(left.reads, other.reads);
            assert_eq!(left.last_write_ms, other.last_write_ms);
            assert_eq!(left.temp_at_ms, other.temp_at_ms);
            assert!((left.temperature - other.temperature).abs() < 1e-12);
            assert!((left.sequential_score - other.sequential_score).abs() < 1e-12);
        }
        assert_eq!(left.reads, 2);
        assert_eq!(left.writes, 1);
        assert_eq!(left.read_bytes, 8192);
        assert_eq!(left.write_bytes, 8192);
        assert_eq!(left.last_access_ms(), 2500);
        // 1 access at age 2400, one at age 800, one at age 0.
        let want = decay_factor(2400, H) + decay_factor(800, H) + 1.0;
        assert!((left.temperature - want).abs() < 1e-12);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut r = read(true, 42);
        r.combine(&read(false, 99), H);
        let enc = r.encode();
        assert_eq!(HeatRecord::decode(&enc).unwrap(), r);
        assert!(HeatRecord::decode(&enc[..10]).is_err());
        let mut bad = enc;
        bad[0] = 9;
        assert!(HeatRecord::decode(&bad).unwrap_err().contains("version"));
    }

    #[test]
    fn version_1_records_still_decode_as_warm() {
        let mut r = read(true, 42);
        r.combine(&read(false, 99), H);
        let v2 = r.encode();
        // Version 1: the same without last_warm_ms (the tenth integer).
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&v2[1..1 + 9 * 8]);
        v1.extend_from_slice(&v2[1 + 10 * 8..]);
        let back = HeatRecord::decode(&v1).unwrap();
        assert_eq!(
            back.last_warm_ms, 99,
            "the later of its last read and write"
        );
        assert_eq!(back.temperature, r.temperature);
        assert_eq!(back.random_score, r.random_score);
        assert!(HeatRecord::decode(&v1[..v1.len() - 1]).is_err());
    }

    #[test]
    fn scans_do_not_warm() {
        let mut r = read(false, 10);
        r.combine(&read(true, 500), H);
        r.combine(&read(true, 900), H);
        assert_eq!((r.last_read_ms, r.last_warm_ms), (900, 10));
        let h = ExtentHeat::from_record(0, &r, 900, H);
        let random_only = decay_factor(890, H);
        assert!((h.warm_temperature - random_only).abs() < 1e-12, "{h:?}");
        assert!(h.temperature > h.warm_temperature + 1.0);
        let w = HeatRecord::from_access(
            Access {
                kind: AccessKind::Write,
                bytes: 1,
                sequential: false,
            },
            1000,
        );
        r.combine(&w, H);
        assert_eq!(r.last_warm_ms, 1000);
    }

    #[test]
    fn sequential_ratio_reflects_recent_reads() {
        let mut r = read(true, 0);
        r.combine(&read(true, 10), H);
        r.combine(&read(false, 20), H);
        let h = ExtentHeat::from_record(3, &r, 20, H);
        let ratio = h.sequential_ratio.unwrap();
        assert!(ratio > 0.6 && ratio < 0.7, "{ratio}");
        let w = HeatRecord::from_access(
            Access {
                kind: AccessKind::Write,
                bytes: 1,
                sequential: false,
            },
            5,
        );
        assert_eq!(ExtentHeat::from_record(0, &w, 5, H).sequential_ratio, None);
    }
}
