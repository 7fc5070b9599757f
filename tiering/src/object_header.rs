//! The header every data object starts with, so that a bucket describes
//! itself: which volume, layer and extent the object holds, under which
//! fencing generation it was written, and how its body is laid out (codec,
//! frame table, block set). With it `tierd recover scan` can rebuild a
//! volume's map from a listing when every manifest is lost. The body (the
//! frames `codec` wrote) follows the header; extent records keep the
//! header's length so reads skip it. Objects from before headers existed
//! have none (their records say a header length of 0).
//!
//! Layout (little endian; docs/backups.md):
//! `"TIERDOB1"`, header length u32, version u8, then the fields of
//! [`ObjectHeader`], then xxh3-64 of everything before it.

use xxhash_rust::xxh3::xxh3_64;

use crate::blocks::Blocks;
use crate::extent_map::{Compression, Frame};
use crate::wire::{Reader, Writer};

const MAGIC: &[u8; 8] = b"TIERDOB1";
const VERSION: u8 = 1;
/// What a scan fetches first; a longer header is fetched again whole.
pub const PROBE_LEN: u64 = 8192;

/// What an object says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHeader {
    /// The volume's identity across nodes (see `VolumeMeta::uid`).
    pub volume_uid: String,
    /// The volume's name when the object was written.
    pub volume: String,
    /// The layer's name in the bucket (see `backup::layer_name`), and its
    /// parent's ("" for a bottom layer).
    pub layer: String,
    pub parent: String,
    pub extent: u64,
    pub extent_size: u64,
    pub volume_size: u64,
    /// The fencing generation of the node that wrote it.
    pub generation: u64,
    /// When it was written (ms since the epoch; also in its key).
    pub written_ms: u64,
    /// xxh3-64 of the whole uncompressed extent.
    pub checksum: u64,
    pub compression: Compression,
    pub frame_size: u32,
    pub frames: Vec<Frame>,
    /// The blocks it holds, when its layer held only some of the extent.
    pub blocks: Option<Blocks>,
}

impl ObjectHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(128 + self.frames.len() * 12);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&0u32.to_le_bytes());
        let mut w = Writer(&mut v);
        w.u8(VERSION)
            .str(&self.volume_uid)
            .str(&self.volume)
            .str(&self.layer)
            .str(&self.parent)
            .u64(self.extent)
            .u64(self.extent_size)
            .u64(self.volume_size)
            .u64(self.generation)
            .u64(self.written_ms)
            .u64(self.checksum)
            .u8(match self.compression {
                Compression::None => 0,
                Compression::Zstd => 1,
            })
            .u32(self.frame_size)
            .u32(self.frames.len() as u32);
        for f in &self.frames {
            w.u32(f.stored_len).u64(f.checksum);
        }
        w.blocks(self.blocks.as_ref());
        let len = (v.len() + 8) as u32;
        v[8..12].copy_from_slice(&len.to_le_bytes());
        let sum = xxh3_64(&v);
        v.extend_from_slice(&sum.to_le_bytes());
        v
    }

    /// The header length an object's first bytes announce, if they start
    /// with a header at all.
    pub fn announced_len(prefix: &[u8]) -> Option<u32> {
        if prefix.len() < 12 || &prefix[..8] != MAGIC {
            return None;
        }
        prefix[8..12].try_into().ok().map(u32::from_le_bytes)
    }

    /// Reads a header from an object's first bytes (at least its announced
    /// length); returns it with its length.
    pub fn decode(b: &[u8]) -> Result<(Self, u32), String> {
        let len = Self::announced_len(b)
            .ok_or("no object header (not a tierd object, or written before headers existed)")?;
        let n = len as usize;
        if n < 20 || b.len() < n {
            return Err(format!(
                "object header announces {n} bytes, {} were read",
                b.len()
            ));
        }
        let (body, sum) = b[..n].split_at(n - 8);
        let want = u64::from_le_bytes(sum.try_into().map_err(|_| "header checksum")?);
        if xxh3_64(body) != want {
            return Err("object header checksum mismatch".into());
        }
        let mut r = Reader(&body[12..]);
        let version = r.u8()?;
        if version != VERSION {
            return Err(format!(
                "object header version {version} is newer than this tierd reads ({VERSION})"
            ));
        }
        let volume_uid = r.str()?;
        let volume = r.str()?;
        let layer = r.str()?;
        let parent = r.str()?;
        let extent = r.u64()?;
        let extent_size = r.u64()?;
        let volume_size = r.u64()?;
        let generation = r.u64()?;
        let written_ms = r.u64()?;
        let checksum = r.u64()?;
        let compression = match r.u8()? {
            0 => Compression::None,
            1 => Compression::Zstd,
            c => return Err(format!("unknown compression {c}")),
        };
        let frame_size = r.u32()?;
        let count = r.u32()? as usize;
        let mut frames = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            frames.push(Frame {
                stored_len: r.u32()?,
                checksum: r.u64()?,
            });
        }
        let blocks = r.blocks()?;
        Ok((
            Self {
                volume_uid,
                volume,
                layer,
                parent,
                extent,
                extent_size,
                volume_size,
                generation,
                written_ms,
                checksum,
                compression,
                frame_size,
                frames,
                blocks,
            },
            len,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectHeader {
        let b = Blocks::new(1024);
        b.insert_range(10, 20);
        ObjectHeader {
            volume_uid: "0123456789abcdef0123456789abcdef".into(),
            volume: "db".into(),
            layer: "00000002-0000000000000007".into(),
            parent: "00000001-0000000000000001".into(),
            extent: 42,
            extent_size: 4 << 20,
            volume_size: 1 << 30,
            generation: 2,
            written_ms: 1_700_000_000_000,
            checksum: 99,
            compression: Compression::Zstd,
            frame_size: 65536,
            frames: vec![
                Frame {
                    stored_len: 10,
                    checksum: 1
                };
                64
            ],
            blocks: Some(b),
        }
    }

    #[test]
    fn round_trip_and_damage_is_refused() {
        let h = sample();
        let mut bytes = h.encode();
        let (back, len) = ObjectHeader::decode(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(len as usize, bytes.len());
        assert_eq!(ObjectHeader::announced_len(&bytes), Some(len));
        // Followed by a body, it still reads.
        bytes.extend_from_slice(&[7; 100]);
        assert_eq!(ObjectHeader::decode(&bytes).unwrap().0, h);
        let clean = h.encode();
        for i in [12, 40, clean.len() - 9] {
            let mut bad = clean.clone();
            bad[i] ^= 1;
            let err = ObjectHeader::decode(&bad).unwrap_err();
            assert!(err.contains("checksum"), "{err}");
        }
        assert!(ObjectHeader::decode(&clean[..clean.len() - 1]).is_err());
        assert!(ObjectHeader::decode(b"plain frames").is_err());
    }
}
