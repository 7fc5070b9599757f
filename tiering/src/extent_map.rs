//! Where each extent's data lives: the local tier, an object in the backend, or
//! nowhere because it is all zeros.
//!
//! Invariant: an extent is either local, or remote with a committed key, never
//! neither. An extent with no record is local. A record is written (synced)
//! only after its object's upload was confirmed, and the local copy is punched
//! only after that write; a record is removed only after the data is back in
//! the local file (or was overwritten there). RocksDB holds the records
//! (column family `extents`, key `volume id ++ extent index`); memory holds one
//! state byte per extent so the I/O path decides without touching RocksDB.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use rocksdb::{IteratorMode, WriteBatch, DB};

pub use policy::{Compression, ExtentState};

use crate::db::{self, CF_EXTENTS};
use crate::error::{Result, TierError};

/// How a tiered extent's object is laid out: independently checksummed (and,
/// with zstd, independently compressed) frames, so a small read fetches and
/// verifies only the frames it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteExtent {
    /// The backend holding the object (a class may later point elsewhere).
    pub backend: String,
    pub key: String,
    pub generation: u64,
    /// xxh3-64 of the whole uncompressed extent.
    pub checksum: u64,
    pub compression: Compression,
    /// Uncompressed bytes per frame (the last frame may be shorter).
    pub frame_size: u32,
    /// Per frame: stored (possibly compressed) length and xxh3-64 of the stored bytes.
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub stored_len: u32,
    pub checksum: u64,
}

impl RemoteExtent {
    pub fn stored_size(&self) -> u64 {
        self.frames.iter().map(|f| f.stored_len as u64).sum()
    }

    /// Stored byte offset of frame `i`.
    pub fn frame_offset(&self, i: usize) -> u64 {
        self.frames[..i].iter().map(|f| f.stored_len as u64).sum()
    }
}

/// A persisted extent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentRecord {
    Remote(RemoteExtent),
    /// All zeros: no object, the local range is a hole.
    Zero,
}

const VERSION: u8 = 1;
const KIND_REMOTE: u8 = 1;
const KIND_ZERO: u8 = 2;

impl ExtentRecord {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ExtentRecord::Zero => vec![VERSION, KIND_ZERO],
            ExtentRecord::Remote(r) => {
                let mut v = Vec::with_capacity(32 + r.key.len() + r.frames.len() * 12);
                v.push(VERSION);
                v.push(KIND_REMOTE);
                v.extend_from_slice(&r.generation.to_le_bytes());
                v.extend_from_slice(&r.checksum.to_le_bytes());
                v.push(match r.compression {
                    Compression::None => 0,
                    Compression::Zstd => 1,
                });
                v.extend_from_slice(&r.frame_size.to_le_bytes());
                for text in [&r.backend, &r.key] {
                    v.extend_from_slice(&(text.len() as u16).to_le_bytes());
                    v.extend_from_slice(text.as_bytes());
                }
                v.extend_from_slice(&(r.frames.len() as u32).to_le_bytes());
                for f in &r.frames {
                    v.extend_from_slice(&f.stored_len.to_le_bytes());
                    v.extend_from_slice(&f.checksum.to_le_bytes());
                }
                v
            }
        }
    }

    pub fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        struct R<'a>(&'a [u8]);
        impl R<'_> {
            fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
                if self.0.len() < n {
                    return Err("record truncated".into());
                }
                let (a, b) = self.0.split_at(n);
                self.0 = b;
                Ok(a)
            }
            fn u8(&mut self) -> std::result::Result<u8, String> {
                Ok(self.take(1)?[0])
            }
            fn u16(&mut self) -> std::result::Result<u16, String> {
                Ok(u16::from_le_bytes(
                    self.take(2)?.try_into().map_err(|_| "u16")?,
                ))
            }
            fn u32(&mut self) -> std::result::Result<u32, String> {
                Ok(u32::from_le_bytes(
                    self.take(4)?.try_into().map_err(|_| "u32")?,
                ))
            }
            fn u64(&mut self) -> std::result::Result<u64, String> {
                Ok(u64::from_le_bytes(
                    self.take(8)?.try_into().map_err(|_| "u64")?,
                ))
            }
        }
        let mut r = R(b);
        if r.u8()? != VERSION {
            return Err("unknown extent record version".into());
        }
        match r.u8()? {
            KIND_ZERO => Ok(ExtentRecord::Zero),
            KIND_REMOTE => {
                let generation = r.u64()?;
                let checksum = r.u64()?;
                let compression = match r.u8()? {
                    0 => Compression::None,
                    1 => Compression::Zstd,
                    c => return Err(format!("unknown compression {c}")),
                };
                let frame_size = r.u32()?;
                let blen = r.u16()? as usize;
                let backend = String::from_utf8(r.take(blen)?.to_vec())
                    .map_err(|_| "backend is not UTF-8")?;
                let klen = r.u16()? as usize;
                let key =
                    String::from_utf8(r.take(klen)?.to_vec()).map_err(|_| "key is not UTF-8")?;
                let n = r.u32()? as usize;
                let mut frames = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    frames.push(Frame {
                        stored_len: r.u32()?,
                        checksum: r.u64()?,
                    });
                }
                if !r.0.is_empty() {
                    return Err("trailing bytes".into());
                }
                Ok(ExtentRecord::Remote(RemoteExtent {
                    backend,
                    key,
                    generation,
                    checksum,
                    compression,
                    frame_size,
                    frames,
                }))
            }
            k => Err(format!("unknown extent record kind {k}")),
        }
    }
}

pub fn extent_key(volume: u64, extent: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&volume.to_be_bytes());
    k[8..].copy_from_slice(&extent.to_be_bytes());
    k
}

/// One volume's extent map.
#[derive(Debug)]
pub struct ExtentMap {
    db: Arc<DB>,
    volume: u64,
    states: Vec<AtomicU8>,
}

impl ExtentMap {
    /// Loads the records of `volume` (which has `extents` extents).
    pub fn load(db: Arc<DB>, volume: u64, extents: u64) -> Result<Self> {
        let states: Vec<AtomicU8> = (0..extents)
            .map(|_| AtomicU8::new(ExtentState::Local as u8))
            .collect();
        {
            let cf = db::cf(&db, CF_EXTENTS)?;
            let start = extent_key(volume, 0);
            for item in db.iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
            {
                let (k, v) = item.map_err(|source| TierError::Db {
                    op: "iterate extents",
                    source: source.into(),
                })?;
                if k.len() != 16 || k[..8] != volume.to_be_bytes() {
                    break;
                }
                let extent = u64::from_be_bytes(k[8..16].try_into().unwrap_or_default());
                let rec =
                    ExtentRecord::decode(&v).map_err(|reason| TierError::CorruptMetadata {
                        key: format!("extent {volume}/{extent}"),
                        reason,
                    })?;
                if let Some(s) = states.get(extent as usize) {
                    let st = match rec {
                        ExtentRecord::Remote(_) => ExtentState::Remote,
                        ExtentRecord::Zero => ExtentState::Zero,
                    };
                    s.store(st as u8, Ordering::SeqCst);
                }
            }
        }
        Ok(Self { db, volume, states })
    }

    pub fn len(&self) -> u64 {
        self.states.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    pub fn state(&self, extent: u64) -> ExtentState {
        self.states
            .get(extent as usize)
            .map(|s| ExtentState::from_u8(s.load(Ordering::SeqCst)))
            .unwrap_or(ExtentState::Local)
    }

    /// The persisted record, if the extent is not local.
    pub fn record(&self, extent: u64) -> Result<Option<ExtentRecord>> {
        let cf = db::cf(&self.db, CF_EXTENTS)?;
        match self.db.get_cf(cf, extent_key(self.volume, extent)) {
            Ok(Some(v)) => {
                ExtentRecord::decode(&v)
                    .map(Some)
                    .map_err(|reason| TierError::CorruptMetadata {
                        key: format!("extent {}/{extent}", self.volume),
                        reason,
                    })
            }
            Ok(None) => Ok(None),
            Err(source) => Err(TierError::Db {
                op: "read extent",
                source: source.into(),
            }),
        }
    }

    /// Durably records that `extent` now lives in `rec`.
    pub fn commit(&self, extent: u64, rec: &ExtentRecord) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            db::cf(&self.db, CF_EXTENTS)?,
            extent_key(self.volume, extent),
            rec.encode(),
        );
        db::write_synced(&self.db, batch)?;
        let st = match rec {
            ExtentRecord::Remote(_) => ExtentState::Remote,
            ExtentRecord::Zero => ExtentState::Zero,
        };
        if let Some(s) = self.states.get(extent as usize) {
            s.store(st as u8, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Durably records that `extent` is local again.
    pub fn make_local(&self, extent: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(
            db::cf(&self.db, CF_EXTENTS)?,
            extent_key(self.volume, extent),
        );
        db::write_synced(&self.db, batch)?;
        if let Some(s) = self.states.get(extent as usize) {
            s.store(ExtentState::Local as u8, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Extents per state.
    pub fn counts(&self) -> [u64; 3] {
        let mut c = [0u64; 3];
        for s in &self.states {
            c[s.load(Ordering::Relaxed).min(2) as usize] += 1;
        }
        c
    }

    /// Grows the map after the volume grew; new extents are local.
    pub fn grow(&mut self, extents: u64) {
        while (self.states.len() as u64) < extents {
            self.states.push(AtomicU8::new(ExtentState::Local as u8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = ExtentRecord::Remote(RemoteExtent {
            backend: "s3".into(),
            key: "0000000000000001/000000000003/0000000000000007".into(),
            generation: 7,
            checksum: 0xdead_beef,
            compression: Compression::Zstd,
            frame_size: 65536,
            frames: vec![
                Frame {
                    stored_len: 100,
                    checksum: 1,
                },
                Frame {
                    stored_len: 65536,
                    checksum: 2,
                },
            ],
        });
        assert_eq!(ExtentRecord::decode(&r.encode()).unwrap(), r);
        assert_eq!(
            ExtentRecord::decode(&ExtentRecord::Zero.encode()).unwrap(),
            ExtentRecord::Zero
        );
        let enc = r.encode();
        assert!(ExtentRecord::decode(&enc[..enc.len() - 1]).is_err());
        if let ExtentRecord::Remote(r) = r {
            assert_eq!(r.stored_size(), 65636);
            assert_eq!(r.frame_offset(1), 100);
        }
    }
}
