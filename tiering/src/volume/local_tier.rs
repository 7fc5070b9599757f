//! The local tier of one volume: a sparse file the size of the volume.
//!
//! Unwritten and punched ranges read as zeros and take no disk space. All I/O is
//! positional (pread/pwrite), so one file handle serves every connection at once
//! without a lock; durability comes only from [`LocalTier::sync`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A run of the file that is either allocated data or a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub offset: u64,
    pub len: u64,
    pub hole: bool,
}

#[derive(Debug)]
pub struct LocalTier {
    file: File,
    path: PathBuf,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The soft `RLIMIT_FSIZE`, if there is one.
fn file_size_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut r) };
    (ret == 0 && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

/// The largest length below `over` that `file` can be set to (a binary
/// search of sparse `set_len` calls, block-aligned), to name the limit.
fn largest_len(file: &File, over: u64) -> u64 {
    let (mut ok, mut bad) = (0u64, over);
    while bad - ok > 4096 {
        let mid = ok + (bad - ok) / 2;
        if file.set_len(mid).is_ok() {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    ok / 4096 * 4096
}

impl LocalTier {
    /// Creates the file with the given size, or fails if it exists. A size
    /// beyond what this process may write (`RLIMIT_FSIZE`) or the filesystem
    /// holds in one file fails as `InvalidInput` naming the limit; on any
    /// failure the file is removed again, so nothing is left behind.
    pub fn create(path: &Path, size: u64) -> io::Result<Self> {
        // Growing a file past RLIMIT_FSIZE would raise SIGXFSZ, which ends
        // the process: refuse first.
        if let Some(limit) = file_size_limit().filter(|&l| size > l) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{size} bytes is more than this process may write to one file \
                     (RLIMIT_FSIZE {limit} bytes)"
                ),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        if let Err(e) = file.set_len(size).and_then(|_| file.sync_all()) {
            let e = if e.raw_os_error() == Some(libc::EFBIG) {
                let largest = largest_len(&file, size);
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{size} bytes is more than the filesystem holding {} allows in one file \
                         (the largest is {largest} bytes)",
                        path.parent().unwrap_or(path).display()
                    ),
                )
            } else {
                e
            };
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length (the volume's size once created or resized).
    pub fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn set_len(&self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        self.file.sync_all()
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Reads `buf` at `offset` only if that needs no waiting: every byte is
    /// in the page cache (`preadv2` with `RWF_NOWAIT`). `Ok(false)` means it
    /// would have waited (or the file system cannot tell): read with
    /// [`LocalTier::read_at`] where blocking is fine. Lets an async task serve
    /// a cached read in place, without handing its thread over.
    pub fn read_at_nowait(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let Ok(off) = libc::off_t::try_from(offset) else {
            return Ok(false);
        };
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: one iovec over `buf`, valid and exclusively borrowed for
        // the call; the fd is open for as long as `self`.
        let n = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(false),
                _ => Err(e),
            };
        }
        // A short read is part cached, part not: the caller reads it all again.
        Ok(n as usize == buf.len())
    }

    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// Makes written data durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocates a range; it then reads as zeros. Partial filesystem blocks at
    /// the edges are zeroed by the kernel.
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        match check(r) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.write_zeros(offset, len),
            other => other,
        }
    }

    /// Zeroes a range while keeping it allocated (so later writes cannot fail for space).
    pub fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        match check(r) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.write_zeros(offset, len),
            other => other,
        }
    }

    fn write_zeros(&self, mut offset: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let end = offset + len;
        while offset < end {
            let n = (end - offset).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }

    /// Bytes of disk the file really occupies.
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata()?.blocks() * 512)
    }

    fn seek(&self, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), offset as libc::off_t, whence) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(r as u64))
    }

    /// Data and hole runs covering `[offset, offset + len)`, at most `max_runs`
    /// of them (the last run then ends early; callers ask again from there).
    pub fn allocation(
        &self,
        offset: u64,
        len: u64,
        max_runs: usize,
    ) -> io::Result<Vec<Allocation>> {
        let end = offset + len;
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end && out.len() < max_runs {
            let data = self.seek(pos, libc::SEEK_DATA)?.unwrap_or(end).min(end);
            if data > pos {
                out.push(Allocation {
                    offset: pos,
                    len: data - pos,
                    hole: true,
                });
                pos = data;
                continue;
            }
            let hole = self.seek(pos, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
            // SEEK_HOLE at pos inside data always moves forward; guard anyway so a
            // surprising filesystem cannot make this loop spin.
            let hole = hole.max(pos + 1).min(end);
            out.push(Allocation {
                offset: pos,
                len: hole - pos,
                hole: false,
            });
            pos = hole;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nowait_reads_serve_cached_bytes_and_decline_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTier::create(&dir.path().join("v.img"), 16 << 20).unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        t.write_at(&data, 4 << 20).unwrap();
        // Just written, so cached: served, and the bytes are the ones written.
        let mut buf = vec![0u8; 64 << 10];
        assert!(t.read_at_nowait(&mut buf, (4 << 20) + 4096).unwrap());
        assert!(buf[..] == data[4096..4096 + (64 << 10)]);
        // Dropped from the cache: declined (where the file system can drop
        // pages and tell), or if served, served right; never other bytes.
        t.sync().unwrap();
        // SAFETY: plain advice on an open fd.
        let r = unsafe { libc::posix_fadvise(t.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0);
        let mut buf = vec![0u8; 64 << 10];
        if t.read_at_nowait(&mut buf, 4 << 20).unwrap() {
            assert!(buf[..] == data[..64 << 10]);
        }
        // Past the end of the file: declined, the blocking read reports it.
        let mut buf = vec![0u8; 8192];
        assert!(!t.read_at_nowait(&mut buf, (16 << 20) - 4096).unwrap());
    }

    #[test]
    fn sparse_reads_zero_and_punch_frees() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTier::create(&dir.path().join("v.img"), 64 << 20).unwrap();
        assert!(t.allocated_bytes().unwrap() < 1 << 20);
        let mut buf = vec![7u8; 8192];
        t.read_at(&mut buf, 10 << 20).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        t.write_at(&vec![0xAB; 4 << 20], 8 << 20).unwrap();
        assert!(t.allocated_bytes().unwrap() >= 4 << 20);
        let runs = t.allocation(0, 64 << 20, 100).unwrap();
        assert_eq!(
            runs,
            vec![
                Allocation {
                    offset: 0,
                    len: 8 << 20,
                    hole: true
                },
                Allocation {
                    offset: 8 << 20,
                    len: 4 << 20,
                    hole: false
                },
                Allocation {
                    offset: 12 << 20,
                    len: 52 << 20,
                    hole: true
                },
            ]
        );
        assert_eq!(t.allocation(0, 64 << 20, 1).unwrap().len(), 1);
        t.punch_hole(8 << 20, 4 << 20).unwrap();
        assert!(t.allocated_bytes().unwrap() < 1 << 20);
        t.read_at(&mut buf, 8 << 20).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        t.write_at(&[1u8; 4096], 0).unwrap();
        t.zero_range(0, 4096).unwrap();
        t.read_at(&mut buf[..4096], 0).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 0));
    }
}
