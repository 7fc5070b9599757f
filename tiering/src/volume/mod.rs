//! Volumes: named block devices served over NBD, each backed by a sparse local
//! file, and the registry that creates, finds, resizes and deletes them.
//!
//! A [`Volume`] is the one I/O path every client goes through: each request is
//! checked against the volume's bounds, served from the local tier, and reported
//! to the heat map extent by extent. The heat map never blocks it.

mod local_tier;
mod meta;
mod registry;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use heatmap::{Access, AccessKind, HeatMap};
use parking_lot::RwLock;
use serde::Serialize;

pub use local_tier::{Allocation, LocalTier};
pub use meta::{
    validate_extent_size, validate_name, validate_size, VolumeMeta, BLOCK_SIZE,
    DEFAULT_EXTENT_SIZE, MAX_EXTENT_SIZE, MIN_EXTENT_SIZE,
};
pub use registry::{CreateVolume, PatchVolume, Volumes};

use crate::error::{Result, TierError};

/// One volume, shared by every connection that serves it.
#[derive(Debug)]
pub struct Volume {
    meta: RwLock<VolumeMeta>,
    size: AtomicU64,
    extent_shift: u32,
    tier: LocalTier,
    heat: Arc<HeatMap>,
    connections: AtomicUsize,
    closed: AtomicBool,
}

/// What the API reports about a volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub id: u64,
    pub size: u64,
    pub class: String,
    pub extent_size: u64,
    pub block_size: u64,
    pub extents: u64,
    /// Disk space the local tier really occupies.
    pub bytes_local: u64,
    /// Bytes held in the object store (tiering lands later; always 0 until then).
    pub bytes_remote: u64,
    pub connections: usize,
    pub created_ms: u64,
}

/// Holds a volume's connection count up while a client is attached.
#[derive(Debug)]
pub struct Attachment(Arc<Volume>);

impl Drop for Attachment {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::ops::Deref for Attachment {
    type Target = Arc<Volume>;
    fn deref(&self) -> &Arc<Volume> {
        &self.0
    }
}

impl Volume {
    fn new(meta: VolumeMeta, tier: LocalTier, heat: Arc<HeatMap>) -> Self {
        Self {
            size: AtomicU64::new(meta.size),
            extent_shift: meta.extent_size.trailing_zeros(),
            meta: RwLock::new(meta),
            tier,
            heat,
            connections: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    pub fn meta(&self) -> VolumeMeta {
        self.meta.read().clone()
    }

    pub fn id(&self) -> u64 {
        self.meta.read().id
    }

    pub fn name(&self) -> String {
        self.meta.read().name.clone()
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// True once the volume was deleted; connections still holding it must stop.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn attach(self: &Arc<Self>) -> Attachment {
        self.connections.fetch_add(1, Ordering::SeqCst);
        Attachment(self.clone())
    }

    pub fn info(&self) -> VolumeInfo {
        let m = self.meta();
        VolumeInfo {
            bytes_local: self.tier.allocated_bytes().unwrap_or(0),
            bytes_remote: 0,
            extents: m.extent_count(),
            connections: self.connections(),
            name: m.name,
            id: m.id,
            size: m.size,
            class: m.class,
            extent_size: m.extent_size,
            block_size: BLOCK_SIZE,
            created_ms: m.created_ms,
        }
    }

    fn io_err(&self, op: &'static str, source: std::io::Error) -> TierError {
        TierError::Io {
            volume: self.name(),
            op,
            path: self.tier.path().to_path_buf(),
            source,
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(TierError::InvalidArgument(format!(
                "range {offset}+{len} is beyond the end of volume {:?} ({size} bytes)",
                self.name()
            ))),
        }
    }

    /// Reports an access to every extent it touches.
    fn record(&self, kind: AccessKind, offset: u64, len: u64, sequential: bool) {
        if len == 0 || !self.heat.enabled() {
            return;
        }
        let id = self.id();
        let first = offset >> self.extent_shift;
        let last = (offset + len - 1) >> self.extent_shift;
        for extent in first..=last {
            let start = (extent << self.extent_shift).max(offset);
            let end = ((extent + 1) << self.extent_shift).min(offset + len);
            self.heat.record(
                id,
                extent,
                Access {
                    kind,
                    bytes: end - start,
                    sequential,
                },
            );
        }
    }

    /// Reads `buf.len()` bytes at `offset`. `sequential` says whether the read
    /// continues an earlier read of the same client.
    pub fn read(&self, offset: u64, buf: &mut [u8], sequential: bool) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.tier
            .read_at(buf, offset)
            .map_err(|e| self.io_err("read", e))?;
        self.record(AccessKind::Read, offset, buf.len() as u64, sequential);
        Ok(())
    }

    /// Writes `data` at `offset`; with `fua` it is durable before this returns.
    pub fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.check_range(offset, data.len() as u64)?;
        self.tier
            .write_at(data, offset)
            .map_err(|e| self.io_err("write", e))?;
        self.record(AccessKind::Write, offset, data.len() as u64, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Discards a range: it reads as zeros afterwards and its space is freed.
    pub fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.check_range(offset, len)?;
        self.tier
            .punch_hole(offset, len)
            .map_err(|e| self.io_err("trim", e))?;
        self.record(AccessKind::Write, offset, len, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Zeroes a range. With `may_punch` the space may be freed (a hole); without,
    /// it stays allocated.
    pub fn write_zeroes(&self, offset: u64, len: u64, may_punch: bool, fua: bool) -> Result<()> {
        self.check_range(offset, len)?;
        let r = if may_punch {
            self.tier.punch_hole(offset, len)
        } else {
            self.tier.zero_range(offset, len)
        };
        r.map_err(|e| self.io_err("write zeroes", e))?;
        self.record(AccessKind::Write, offset, len, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<()> {
        self.tier.sync().map_err(|e| self.io_err("fdatasync", e))
    }

    /// Allocation runs of `[offset, offset + len)`, at most `max_runs`.
    pub fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Allocation>> {
        self.check_range(offset, len)?;
        self.tier
            .allocation(offset, len, max_runs)
            .map_err(|e| self.io_err("seek data/hole", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heatmap::{HeatConfig, ManualClock};

    fn volume(dir: &std::path::Path) -> Volume {
        let cfg = HeatConfig::default();
        let db = crate::db::open(&dir.join("db"), &cfg).unwrap();
        let heat = Arc::new(HeatMap::new(db, Arc::new(ManualClock::new(1000)), &cfg).unwrap());
        let meta = VolumeMeta {
            id: 3,
            name: "v".into(),
            size: 8 << 20,
            class: "default".into(),
            extent_size: 1 << 20,
            created_ms: 0,
        };
        let tier = LocalTier::create(&dir.join("v.img"), meta.size).unwrap();
        Volume::new(meta, tier, heat)
    }

    #[test]
    fn io_spanning_extents_records_heat_per_extent() {
        let dir = tempfile::tempdir().unwrap();
        let v = volume(dir.path());
        // 12 KiB straddling the boundary of extents 0 and 1.
        let data: Vec<u8> = (0..12288u32).map(|i| (i % 251) as u8).collect();
        v.write((1 << 20) - 4096, &data, true).unwrap();
        let mut back = vec![0u8; data.len()];
        v.read((1 << 20) - 4096, &mut back, false).unwrap();
        assert_eq!(back, data);
        let e0 = v.heat.extent(3, 0).unwrap().unwrap();
        let e1 = v.heat.extent(3, 1).unwrap().unwrap();
        assert_eq!((e0.write_bytes, e0.read_bytes), (4096, 4096));
        assert_eq!((e1.write_bytes, e1.read_bytes), (8192, 8192));
        assert_eq!(v.heat.extent(3, 2).unwrap(), None);
    }

    #[test]
    fn out_of_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = volume(dir.path());
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            v.read(8 << 20, &mut buf, false),
            Err(TierError::InvalidArgument(_))
        ));
        assert!(v.write(u64::MAX - 10, &buf, false).is_err());
        assert!(v.trim((8 << 20) - 4096, 8192, false).is_err());
    }

    #[test]
    fn zeroes_and_trim_read_back_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let v = volume(dir.path());
        v.write(0, &vec![9u8; 2 << 20], false).unwrap();
        v.write_zeroes(4096, 4096, false, false).unwrap();
        v.trim(1 << 20, 1 << 20, false).unwrap();
        let mut buf = vec![1u8; 2 << 20];
        v.read(0, &mut buf, false).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 9));
        assert!(buf[4096..8192].iter().all(|&b| b == 0));
        assert!(buf[8192..1 << 20].iter().all(|&b| b == 9));
        assert!(buf[1 << 20..].iter().all(|&b| b == 0));
        let runs = v.allocation(0, 8 << 20, 16).unwrap();
        assert!(!runs[0].hole);
        assert!(runs.last().unwrap().hole);
    }
}
