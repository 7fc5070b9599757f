//! The two documents a backup leaves in the bucket (docs/backups.md):
//!
//! - a **manifest** per backup (`backups/<volume>/<uid>/<id>.json`): what
//!   the volume was (name, uid, size, class, extent size), the chain of
//!   layers it reads, bottom first, each by its index, and a heat summary;
//!   JSON, then a line `#xxh3:<16 hex>` over the bytes before it.
//! - a **layer index** per layer (`layers/<uid>/<layer>/<id>.idx`): the
//!   extent records of one frozen layer (object key, codec, frame table,
//!   block set, or zero), binary, written once when a backup first needs the
//!   layer and shared by every later backup that reads through it.
//!
//! Both are written with a conditional put and never rewritten, and both
//! carry a checksum, so a truncated or damaged document is refused by name
//! while every other backup stays restorable.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::extent_map::ExtentRecord;
use crate::wire::{Reader, Writer};

/// The manifest format this build writes and the newest it reads.
pub const MANIFEST_FORMAT: u32 = 1;
const CHECKSUM_TAG: &[u8] = b"\n#xxh3:";
const INDEX_MAGIC: &[u8; 8] = b"TIERDLX1";
const INDEX_VERSION: u8 = 1;

/// One backup, as its manifest says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Sortable by time: `YYYYMMDD-HHMMSS-mmm`.
    pub id: String,
    pub volume: String,
    pub uid: String,
    pub size: u64,
    pub class: String,
    pub extent_size: u64,
    pub block_size: u64,
    /// The fencing generation of the node that took it.
    pub generation: u64,
    pub node: String,
    /// The snapshot it was taken from (deleted locally once committed).
    pub snapshot: String,
    pub created_ms: u64,
    /// The layers the volume read at the snapshot, bottom first.
    pub layers: Vec<ManifestLayer>,
    /// Extents worth fetching first after a restore, hottest first.
    pub hot_extents: Vec<u64>,
    /// Bytes this backup uploaded (what it added to the bucket).
    pub bytes_uploaded: u64,
    /// Taken by the class's schedule (pruned by `backup_keep`), not by hand.
    #[serde(default)]
    pub scheduled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLayer {
    /// The layer's bucket name.
    pub name: String,
    /// Its index's key.
    pub index: String,
    pub size: u64,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        let sum = xxh3_64(&v);
        v.extend_from_slice(CHECKSUM_TAG);
        v.extend_from_slice(format!("{sum:016x}\n").as_bytes());
        v
    }

    /// Reads a manifest, refusing one that is damaged, truncated or of a
    /// newer format than this build knows.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let at = b
            .windows(CHECKSUM_TAG.len())
            .rposition(|w| w == CHECKSUM_TAG)
            .ok_or("no checksum line: the manifest is truncated or not a tierd manifest")?;
        let (body, tail) = b.split_at(at);
        let hex = std::str::from_utf8(&tail[CHECKSUM_TAG.len()..])
            .map_err(|_| "checksum line is not text")?
            .trim();
        let want = u64::from_str_radix(hex, 16).map_err(|_| "checksum line is damaged")?;
        if xxh3_64(body) != want {
            return Err("checksum mismatch: the manifest is damaged".into());
        }
        let format = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("format").and_then(|f| f.as_u64()))
            .ok_or("no format number")?;
        if format > MANIFEST_FORMAT as u64 {
            return Err(format!(
                "manifest format {format} is newer than this tierd reads ({MANIFEST_FORMAT}); upgrade tierd to restore it"
            ));
        }
        serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))
    }
}

/// The records of one frozen layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerIndex {
    pub uid: String,
    pub layer: String,
    /// The bucket name of the layer below ("" for a bottom layer).
    pub parent: String,
    pub size: u64,
    pub extent_size: u64,
    /// Remote or zero records; extents not listed read through the layer
    /// below (or, in a bottom layer, are zeros).
    pub records: Vec<(u64, ExtentRecord)>,
}

impl LayerIndex {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.records.len() * 64);
        v.extend_from_slice(INDEX_MAGIC);
        let mut w = Writer(&mut v);
        w.u8(INDEX_VERSION)
            .str(&self.uid)
            .str(&self.layer)
            .str(&self.parent)
            .u64(self.size)
            .u64(self.extent_size)
            .u64(self.records.len() as u64);
        for (e, rec) in &self.records {
            let r = rec.encode();
            w.u64(*e).u32(r.len() as u32);
            w.0.extend_from_slice(&r);
        }
        let sum = xxh3_64(&v);
        v.extend_from_slice(&sum.to_le_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < INDEX_MAGIC.len() + 8 || &b[..8] != INDEX_MAGIC {
            return Err("not a tierd layer index".into());
        }
        let (body, sum) = b.split_at(b.len() - 8);
        let want = u64::from_le_bytes(sum.try_into().map_err(|_| "truncated")?);
        if xxh3_64(body) != want {
            return Err("checksum mismatch: the layer index is damaged or truncated".into());
        }
        let mut r = Reader(&body[8..]);
        let version = r.u8()?;
        if version > INDEX_VERSION {
            return Err(format!(
                "layer index version {version} is newer than this tierd reads ({INDEX_VERSION})"
            ));
        }
        let uid = r.str()?;
        let layer = r.str()?;
        let parent = r.str()?;
        let size = r.u64()?;
        let extent_size = r.u64()?;
        let n = r.u64()?;
        let mut records = Vec::with_capacity((n as usize).min(1 << 20));
        for _ in 0..n {
            let e = r.u64()?;
            let len = r.u32()? as usize;
            let rec = ExtentRecord::decode(r.take(len)?)?;
            records.push((e, rec));
        }
        if !r.is_empty() {
            return Err("trailing bytes after the records".into());
        }
        Ok(Self {
            uid,
            layer,
            parent,
            size,
            extent_size,
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extent_map::{Compression, Frame, RemoteExtent};

    fn manifest() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            id: "20261204-101500-123".into(),
            volume: "db".into(),
            uid: "00ff".into(),
            size: 1 << 30,
            class: "gold".into(),
            extent_size: 4 << 20,
            block_size: 4096,
            generation: 2,
            node: "n".into(),
            snapshot: "backup-20261204-101500-123".into(),
            created_ms: 5,
            layers: vec![ManifestLayer {
                name: "n-01".into(),
                index: "layers/00ff/n-01/20261204-101500-123.idx".into(),
                size: 1 << 30,
            }],
            hot_extents: vec![3, 1],
            bytes_uploaded: 7,
            scheduled: true,
        }
    }

    #[test]
    fn manifests_round_trip_and_damage_is_named() {
        let m = manifest();
        let b = m.encode();
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        let err = Manifest::decode(&b[..b.len() / 2]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let mut bad = b.clone();
        let i = bad.iter().position(|&c| c == b'g').unwrap();
        bad[i] = b'G';
        assert!(Manifest::decode(&bad).unwrap_err().contains("damaged"));
        // A newer format is refused by name, not misread.
        let mut newer = m.clone();
        newer.format = MANIFEST_FORMAT + 1;
        let err = Manifest::decode(&newer.encode()).unwrap_err();
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn layer_indexes_round_trip_and_damage_is_refused() {
        let ix = LayerIndex {
            uid: "00ff".into(),
            layer: "n-02".into(),
            parent: "n-01".into(),
            size: 1 << 30,
            extent_size: 4 << 20,
            records: vec![
                (0, ExtentRecord::Zero),
                (
                    9,
                    ExtentRecord::Remote(RemoteExtent {
                        backend: "s3".into(),
                        key: "data/00ff/00000001/n-02/000000000009/01".into(),
                        generation: 1,
                        checksum: 2,
                        compression: Compression::None,
                        frame_size: 65536,
                        frames: vec![Frame {
                            stored_len: 4,
                            checksum: 5,
                        }],
                        blocks: None,
                        header_len: 200,
                    }),
                ),
            ],
        };
        let b = ix.encode();
        assert_eq!(LayerIndex::decode(&b).unwrap(), ix);
        for cut in [0, 8, b.len() / 2, b.len() - 1] {
            assert!(LayerIndex::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = b.clone();
        bad[20] ^= 4;
        assert!(LayerIndex::decode(&bad).is_err());
    }
}
