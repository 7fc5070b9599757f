//! The heat map proper: in-memory aggregation on the I/O path, batched merges
//! into RocksDB, and the queries the policy engine and operators ask.
//!
//! Keys are `volume id (u64 BE) ++ extent index (u64 BE)`, so one volume's
//! extents are one contiguous, ordered key range.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, MergeOperands, Options, WriteBatch, DB,
};

use crate::error::HeatError;
use crate::record::{histogram_of, Access, ExtentHeat, HeatRecord, HistogramBucket};
use clock::Clock;

/// The column family this crate owns.
pub const CF_HEAT: &str = "heat";

const SHARDS: usize = 32;

/// How heat is tracked.
#[derive(Debug, Clone)]
pub struct HeatConfig {
    /// Time for an access's weight in the temperature to halve.
    pub half_life: Duration,
    /// When false, [`HeatMap::record`] does nothing (used to measure the cost of tracking).
    pub enabled: bool,
}

impl Default for HeatConfig {
    fn default() -> Self {
        Self {
            half_life: Duration::from_secs(24 * 3600),
            enabled: true,
        }
    }
}

type Pending = HashMap<(u64, u64), HeatRecord>;

/// Per-extent heat of every volume. Cheap to share behind an `Arc`.
pub struct HeatMap {
    db: Arc<DB>,
    clock: Arc<dyn Clock>,
    half_life_ms: f64,
    enabled: bool,
    shards: Vec<Mutex<Pending>>,
}

impl std::fmt::Debug for HeatMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeatMap")
            .field("half_life_ms", &self.half_life_ms)
            .field("enabled", &self.enabled)
            .finish()
    }
}

fn key(volume: u64, extent: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&volume.to_be_bytes());
    k[8..].copy_from_slice(&extent.to_be_bytes());
    k
}

fn split_key(k: &[u8]) -> Option<(u64, u64)> {
    if k.len() != 16 {
        return None;
    }
    let mut v = [0u8; 8];
    let mut e = [0u8; 8];
    v.copy_from_slice(&k[..8]);
    e.copy_from_slice(&k[8..]);
    Some((u64::from_be_bytes(v), u64::from_be_bytes(e)))
}

fn merge_records(
    half_life_ms: f64,
    key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut acc: Option<HeatRecord> = None;
    // A record that fails to decode is dropped with a warning rather than failing
    // the merge: a failed merge would make the whole key unreadable, and heat is
    // advisory, whereas the extent map it informs is not.
    let mut fold = |bytes: &[u8]| match HeatRecord::decode(bytes) {
        Ok(r) => match acc.as_mut() {
            Some(a) => a.combine(&r, half_life_ms),
            None => acc = Some(r),
        },
        Err(reason) => {
            tracing::warn!(key = ?split_key(key), %reason, "dropping undecodable heat record")
        }
    };
    if let Some(e) = existing {
        fold(e);
    }
    for op in operands.iter() {
        fold(op);
    }
    Some(acc.unwrap_or_default().encode().to_vec())
}

impl HeatMap {
    /// The descriptor to open the heat column family with: it carries the merge
    /// operator, which needs the half-life.
    pub fn column_family(config: &HeatConfig) -> ColumnFamilyDescriptor {
        let half_life_ms = config.half_life.as_secs_f64() * 1000.0;
        let mut opts = Options::default();
        opts.set_merge_operator_associative(
            "tierd-heat-v1",
            move |k: &[u8], e: Option<&[u8]>, ops: &MergeOperands| {
                merge_records(half_life_ms, k, e, ops)
            },
        );
        ColumnFamilyDescriptor::new(CF_HEAT, opts)
    }

    /// Wraps a database that was opened with [`HeatMap::column_family`].
    pub fn new(db: Arc<DB>, clock: Arc<dyn Clock>, config: &HeatConfig) -> Result<Self, HeatError> {
        if db.cf_handle(CF_HEAT).is_none() {
            return Err(HeatError::MissingColumnFamily(CF_HEAT));
        }
        Ok(Self {
            db,
            clock,
            half_life_ms: config.half_life.as_secs_f64() * 1000.0,
            enabled: config.enabled,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn shard(&self, volume: u64, extent: u64) -> &Mutex<Pending> {
        let h = volume
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(extent)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        &self.shards[(h >> 59) as usize % SHARDS]
    }

    /// Folds one access into memory. Never touches RocksDB.
    pub fn record(&self, volume: u64, extent: u64, access: Access) {
        if !self.enabled {
            return;
        }
        let delta = HeatRecord::from_access(access, self.clock.now_ms());
        let half_life_ms = self.half_life_ms;
        self.shard(volume, extent)
            .lock()
            .entry((volume, extent))
            .and_modify(|r| r.combine(&delta, half_life_ms))
            .or_insert(delta);
    }

    /// Number of extents with unflushed deltas.
    pub fn pending(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Writes every pending delta to RocksDB as merge operands in one batch.
    /// Returns how many extents were flushed. On failure the deltas are put back,
    /// so a later flush retries them.
    pub fn flush(&self) -> Result<usize, HeatError> {
        let cf = self
            .db
            .cf_handle(CF_HEAT)
            .ok_or(HeatError::MissingColumnFamily(CF_HEAT))?;
        let mut taken: Vec<Pending> = Vec::with_capacity(SHARDS);
        for s in &self.shards {
            let mut g = s.lock();
            if !g.is_empty() {
                taken.push(std::mem::take(&mut *g));
            }
        }
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for m in &taken {
            for (&(v, e), r) in m {
                batch.merge_cf(cf, key(v, e), r.encode());
                n += 1;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        if let Err(source) = self.db.write(batch) {
            for m in taken {
                for ((v, e), r) in m {
                    let half_life_ms = self.half_life_ms;
                    self.shard(v, e)
                        .lock()
                        .entry((v, e))
                        .and_modify(|cur| cur.combine(&r, half_life_ms))
                        .or_insert(r);
                }
            }
            return Err(HeatError::Db {
                op: "write batch",
                source: source.into(),
            });
        }
        Ok(n)
    }

    /// Every tracked extent of a volume, in extent order, decayed to now.
    /// Pending deltas are flushed first so the answer includes them.
    pub fn volume_extents(&self, volume: u64) -> Result<Vec<ExtentHeat>, HeatError> {
        self.flush()?;
        let now = self.clock.now_ms();
        let cf = self
            .db
            .cf_handle(CF_HEAT)
            .ok_or(HeatError::MissingColumnFamily(CF_HEAT))?;
        let start = key(volume, 0);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(|source| HeatError::Db {
                op: "iterate",
                source: source.into(),
            })?;
            let Some((vol, extent)) = split_key(&k) else {
                break;
            };
            if vol != volume {
                break;
            }
            let r = HeatRecord::decode(&v).map_err(|reason| HeatError::Corrupt {
                volume,
                extent,
                reason,
            })?;
            out.push(ExtentHeat::from_record(extent, &r, now, self.half_life_ms));
        }
        Ok(out)
    }

    /// One extent's heat, or `None` if it was never accessed.
    pub fn extent(&self, volume: u64, extent: u64) -> Result<Option<ExtentHeat>, HeatError> {
        let cf = self
            .db
            .cf_handle(CF_HEAT)
            .ok_or(HeatError::MissingColumnFamily(CF_HEAT))?;
        let mut rec = match self.db.get_cf(cf, key(volume, extent)) {
            Ok(Some(v)) => Some(HeatRecord::decode(&v).map_err(|reason| HeatError::Corrupt {
                volume,
                extent,
                reason,
            })?),
            Ok(None) => None,
            Err(source) => {
                return Err(HeatError::Db {
                    op: "get",
                    source: source.into(),
                })
            }
        };
        if let Some(p) = self.shard(volume, extent).lock().get(&(volume, extent)) {
            match rec.as_mut() {
                Some(r) => r.combine(p, self.half_life_ms),
                None => rec = Some(*p),
            }
        }
        Ok(
            rec.map(|r| {
                ExtentHeat::from_record(extent, &r, self.clock.now_ms(), self.half_life_ms)
            }),
        )
    }

    /// The `n` hottest tracked extents, hottest first.
    pub fn hottest(&self, volume: u64, n: usize) -> Result<Vec<ExtentHeat>, HeatError> {
        let mut v = self.volume_extents(volume)?;
        v.sort_by(|a, b| {
            b.temperature
                .total_cmp(&a.temperature)
                .then(a.extent.cmp(&b.extent))
        });
        v.truncate(n);
        Ok(v)
    }

    /// The `n` coldest tracked extents, coldest first.
    pub fn coldest(&self, volume: u64, n: usize) -> Result<Vec<ExtentHeat>, HeatError> {
        let mut v = self.volume_extents(volume)?;
        v.sort_by(|a, b| {
            a.temperature
                .total_cmp(&b.temperature)
                .then(a.extent.cmp(&b.extent))
        });
        v.truncate(n);
        Ok(v)
    }

    /// Tracked extents whose last access is before `since_ms`, in extent order.
    pub fn idle_since(&self, volume: u64, since_ms: u64) -> Result<Vec<ExtentHeat>, HeatError> {
        let mut v = self.volume_extents(volume)?;
        v.retain(|h| h.last_access_ms < since_ms);
        Ok(v)
    }

    /// Tracked extents counted by temperature, over [`crate::TEMPERATURE_BUCKETS`].
    pub fn histogram(&self, volume: u64) -> Result<Vec<HistogramBucket>, HeatError> {
        Ok(histogram_of(&self.volume_extents(volume)?))
    }

    /// Forgets a volume: its pending deltas and every persisted record.
    pub fn delete_volume(&self, volume: u64) -> Result<(), HeatError> {
        for s in &self.shards {
            s.lock().retain(|&(v, _), _| v != volume);
        }
        let cf = self
            .db
            .cf_handle(CF_HEAT)
            .ok_or(HeatError::MissingColumnFamily(CF_HEAT))?;
        let mut batch = WriteBatch::default();
        // The range end is exclusive, so the last possible extent key is deleted on its own.
        batch.delete_range_cf(cf, key(volume, 0), key(volume, u64::MAX));
        batch.delete_cf(cf, key(volume, u64::MAX));
        self.db.write(batch).map_err(|source| HeatError::Db {
            op: "delete range",
            source: source.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AccessKind;
    use crate::record::TEMPERATURE_BUCKETS;
    use clock::ManualClock;

    fn open(dir: &std::path::Path, cfg: &HeatConfig) -> Arc<DB> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        Arc::new(DB::open_cf_descriptors(&opts, dir, vec![HeatMap::column_family(cfg)]).unwrap())
    }

    fn read(seq: bool) -> Access {
        Access {
            kind: AccessKind::Read,
            bytes: 4096,
            sequential: seq,
        }
    }

    fn cfg() -> HeatConfig {
        HeatConfig {
            half_life: Duration::from_secs(10),
            enabled: true,
        }
    }

    #[test]
    fn record_flush_and_query() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let hm = HeatMap::new(open(dir.path(), &cfg()), clock.clone(), &cfg()).unwrap();
        for _ in 0..10 {
            hm.record(1, 5, read(false));
        }
        hm.record(1, 2, read(true));
        hm.record(2, 5, read(true));
        assert_eq!(hm.pending(), 3);
        assert_eq!(hm.flush().unwrap(), 3);
        assert_eq!(hm.pending(), 0);
        // A second round of deltas merges on top of the first.
        clock.advance_ms(10_000);
        hm.record(1, 5, read(false));
        let hot = hm.hottest(1, 10).unwrap();
        assert_eq!(hot.len(), 2, "volume 2 must not leak into volume 1");
        assert_eq!(hot[0].extent, 5);
        assert_eq!(hot[0].reads, 11);
        // Ten accesses one half-life ago plus one now.
        assert!(
            (hot[0].temperature - 6.0).abs() < 1e-9,
            "{}",
            hot[0].temperature
        );
        assert_eq!(hm.coldest(1, 1).unwrap()[0].extent, 2);
        let idle = hm.idle_since(1, 1_000_001).unwrap();
        assert_eq!(idle.iter().map(|h| h.extent).collect::<Vec<_>>(), vec![2]);
        assert_eq!(hm.extent(2, 5).unwrap().unwrap().sequential_reads, 1);
        assert_eq!(hm.extent(2, 6).unwrap(), None);
    }

    #[test]
    fn heat_survives_reopen_and_delete_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        {
            let hm = HeatMap::new(open(dir.path(), &cfg()), clock.clone(), &cfg()).unwrap();
            hm.record(7, 0, read(false));
            hm.record(7, 1, read(false));
            hm.record(8, 0, read(false));
            hm.flush().unwrap();
        }
        let hm = HeatMap::new(open(dir.path(), &cfg()), clock.clone(), &cfg()).unwrap();
        assert_eq!(hm.volume_extents(7).unwrap().len(), 2);
        hm.record(7, 3, read(false));
        hm.delete_volume(7).unwrap();
        assert!(hm.volume_extents(7).unwrap().is_empty());
        assert_eq!(hm.volume_extents(8).unwrap().len(), 1);
    }

    #[test]
    fn histogram_counts_every_extent_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let hm = HeatMap::new(open(dir.path(), &cfg()), clock.clone(), &cfg()).unwrap();
        for e in 0..5 {
            for _ in 0..(e * 10 + 1) {
                hm.record(1, e, read(false));
            }
        }
        let h = hm.histogram(1).unwrap();
        assert_eq!(h.len(), TEMPERATURE_BUCKETS.len() + 1);
        assert_eq!(h.iter().map(|b| b.extents).sum::<u64>(), 5);
        // Temperatures 1, 11, 21, 31, 41: one in (0.1, 1], four in (10, 100].
        assert_eq!(h[3].extents, 1);
        assert_eq!(h[5].extents, 4);
    }

    #[test]
    fn disabled_map_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = HeatConfig {
            enabled: false,
            ..cfg()
        };
        let hm = HeatMap::new(open(dir.path(), &c), Arc::new(ManualClock::new(0)), &c).unwrap();
        hm.record(1, 1, read(false));
        assert_eq!(hm.pending(), 0);
    }
}
