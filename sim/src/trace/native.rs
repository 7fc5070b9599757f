//! tierd's own recorded trace format, its reader and the daemon's [`Recorder`].
//!
//! File layout (one volume per file):
//!
//! ```text
//! header:  b"TIERDTR1"  start_ms: u64 little-endian
//! record:  varint(delta_ms)  op: u8  varint(offset)  varint(len)
//! ```
//!
//! `delta_ms` is the time since the previous record (the first record's is
//! from `start_ms`). The op byte's low two bits are 0 = Read, 1 = Write,
//! 2 = Trim; its top bit ([`BYTE_UNITS`]) says offset and len are in bytes,
//! otherwise they are in 512-byte sectors (tierd's I/O is sector aligned, so
//! the flag is rare but keeps any value exact). Other bits must be zero.
//! Varints are unsigned LEB128 (7 bits a byte, low first, at most 10 bytes).
//!
//! The [`Recorder`] writes `VOLUME.trace`, rotating it to `VOLUME.trace.1`,
//! `.1` to `.2` and so on, deleting what would pass `.KEEP`. Invariants:
//! - every file starts with its own header, whose `start_ms` is the time of
//!   its first record, so each file is readable alone with absolute times;
//! - a file is rotated before a record would take it past `max_bytes`, so no
//!   file exceeds `max_bytes` unless it holds a single record, and the files
//!   together take at most `(keep + 1) * max_bytes` (+ one record);
//! - record times never go backwards (a clock step back is recorded as a
//!   zero delta).
//!
//! Reading tolerates a file that ends inside a record (the daemon stopped
//! mid-write): the partial record is dropped and counted as a torn tail.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{io_error, Devices, Op, Raw, TraceError, TraceReader};

pub(crate) const MAGIC: &[u8; 8] = b"TIERDTR1";
const HEADER_LEN: u64 = 16;
const SECTOR: u64 = 512;
/// Op-byte flag: offset and len are in bytes, not sectors. With it cleared,
/// the byte must be exactly 0, 1 or 2.
const BYTE_UNITS: u8 = 0x80;
const MAX_VARINT: usize = 10;
/// Longest encoded record: three varints and the op byte.
const MAX_RECORD: usize = 3 * MAX_VARINT + 1;

fn op_code(op: Op) -> u8 {
    match op {
        Op::Read => 0,
        Op::Write => 1,
        Op::Trim => 2,
    }
}

fn put_varint(buf: &mut [u8; MAX_RECORD], mut pos: usize, mut v: u64) -> usize {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[pos] = byte;
            return pos + 1;
        }
        buf[pos] = byte | 0x80;
        pos += 1;
    }
}

/// Encodes one record into `buf`, returning its length.
fn encode(buf: &mut [u8; MAX_RECORD], delta_ms: u64, op: Op, offset: u64, len: u64) -> usize {
    let exact_sectors = offset.is_multiple_of(SECTOR) && len.is_multiple_of(SECTOR);
    let (code, offset, len) = if exact_sectors {
        (op_code(op), offset / SECTOR, len / SECTOR)
    } else {
        (op_code(op) | BYTE_UNITS, offset, len)
    };
    let mut pos = put_varint(buf, 0, delta_ms);
    buf[pos] = code;
    pos += 1;
    pos = put_varint(buf, pos, offset);
    put_varint(buf, pos, len)
}

/// `DIR/VOLUME.trace` for index 0, `DIR/VOLUME.trace.N` after N rotations.
fn trace_path(dir: &Path, volume: &str, index: usize) -> PathBuf {
    if index == 0 {
        dir.join(format!("{volume}.trace"))
    } else {
        dir.join(format!("{volume}.trace.{index}"))
    }
}

/// The rotation index of `file_name` if it is one of `volume`'s rotated files.
fn rotated_index(file_name: &str, volume: &str) -> Option<usize> {
    let rest = file_name.strip_prefix(volume)?.strip_prefix(".trace.")?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Rotated files of `volume` in `dir` with their index, in no order.
fn rotated_files(dir: &Path, volume: &str) -> io::Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(index) = entry
            .file_name()
            .to_str()
            .and_then(|n| rotated_index(n, volume))
        {
            found.push((index, entry.path()));
        }
    }
    Ok(found)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Volume name for a recorded file: `vol1.trace.3` and `vol1.trace` give
/// `vol1`; any other name gives its stem.
pub(crate) fn volume_from_path(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut base = name.as_str();
    if let Some((head, tail)) = base.rsplit_once('.') {
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            base = head;
        }
    }
    if let Some(volume) = base.strip_suffix(".trace") {
        return volume.to_string();
    }
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(name)
}

/// Per-volume access recorder for the daemon; see the module doc for the
/// file layout and the disk-use bound.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    volume: String,
    max_bytes: u64,
    keep: usize,
    out: BufWriter<File>,
    /// Bytes written to the current file, header included.
    file_bytes: u64,
    /// Time of the previous record in the current file (`None` before its
    /// header is written).
    file_prev_ms: Option<u64>,
    /// Time of the previous record across files, to keep time monotonic.
    last_ms: Option<u64>,
    /// Set after a failed write: the file may end in a partial record, and
    /// appending to it would make the rest unreadable.
    broken: bool,
}

impl Recorder {
    /// Starts recording `volume` into `dir` (created if missing). An existing
    /// non-empty `VOLUME.trace` from an earlier run is rotated away first, so
    /// a new run never appends after a possibly torn record, and rotated
    /// files beyond `keep` (left by a larger earlier `keep`) are deleted.
    pub fn create(
        dir: &Path,
        volume: &str,
        max_bytes: u64,
        keep: usize,
    ) -> Result<Self, TraceError> {
        if volume.is_empty()
            || volume == "."
            || volume == ".."
            || volume.contains(['/', '\\', '\0'])
        {
            return Err(io_error(
                &dir.join(volume),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "volume name is not usable as a file name",
                ),
            ));
        }
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let stale = rotated_files(dir, volume).map_err(|e| io_error(dir, e))?;
        for (index, path) in stale {
            if index > keep {
                remove_if_exists(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        let current = trace_path(dir, volume, 0);
        match fs::metadata(&current) {
            Ok(meta) if meta.len() > 0 => shift(dir, volume, keep)?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&current, e)),
        }
        let out = create_file(&current)?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            volume: volume.to_string(),
            max_bytes,
            keep,
            out,
            file_bytes: 0,
            file_prev_ms: None,
            last_ms: None,
            broken: false,
        })
    }

    /// The file being written.
    pub fn path(&self) -> PathBuf {
        trace_path(&self.dir, &self.volume, 0)
    }

    /// Records one access at `t_ms` (any millisecond clock; the daemon passes
    /// wall-clock ms since the Unix epoch, which then becomes each file's
    /// header start). Buffered: call [`Recorder::flush`] to push it to disk.
    pub fn record(&mut self, t_ms: u64, op: Op, offset: u64, len: u64) -> Result<(), TraceError> {
        if self.broken {
            return Err(io_error(
                &self.path(),
                io::Error::other("an earlier write failed; create a new recorder"),
            ));
        }
        let t_ms = self.last_ms.map_or(t_ms, |last| t_ms.max(last));
        let mut buf = [0u8; MAX_RECORD];
        let result = self.write_record(&mut buf, t_ms, op, offset, len);
        if result.is_err() {
            self.broken = true;
        } else {
            self.last_ms = Some(t_ms);
        }
        result
    }

    fn write_record(
        &mut self,
        buf: &mut [u8; MAX_RECORD],
        t_ms: u64,
        op: Op,
        offset: u64,
        len: u64,
    ) -> Result<(), TraceError> {
        let mut n = match self.file_prev_ms {
            Some(prev) => encode(buf, t_ms - prev, op, offset, len),
            None => 0,
        };
        if self.file_prev_ms.is_some() && self.file_bytes + n as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file_prev_ms.is_none() {
            // First record of this file: the header carries its time, so the
            // file stands alone.
            let mut header = [0u8; HEADER_LEN as usize];
            header[..8].copy_from_slice(MAGIC);
            header[8..].copy_from_slice(&t_ms.to_le_bytes());
            self.write_all(&header)?;
            self.file_bytes += HEADER_LEN;
            self.file_prev_ms = Some(t_ms);
            n = encode(buf, 0, op, offset, len);
        }
        self.write_all(&buf[..n])?;
        self.file_bytes += n as u64;
        self.file_prev_ms = Some(t_ms);
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), TraceError> {
        self.out
            .write_all(bytes)
            .map_err(|e| io_error(&self.path(), e))
    }

    fn rotate(&mut self) -> Result<(), TraceError> {
        self.flush()?;
        shift(&self.dir, &self.volume, self.keep)?;
        self.out = create_file(&self.path())?;
        self.file_bytes = 0;
        self.file_prev_ms = None;
        Ok(())
    }

    /// Pushes buffered records to the file.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.out.flush().map_err(|e| io_error(&self.path(), e))
    }
}

fn create_file(path: &Path) -> Result<BufWriter<File>, TraceError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    Ok(BufWriter::new(file))
}

/// Moves `VOLUME.trace` to `.1`, `.N` to `.N+1`, dropping what would pass
/// `.keep` (with `keep == 0` the current file is simply deleted).
fn shift(dir: &Path, volume: &str, keep: usize) -> Result<(), TraceError> {
    let oldest = trace_path(dir, volume, keep);
    remove_if_exists(&oldest).map_err(|e| io_error(&oldest, e))?;
    for index in (0..keep).rev() {
        let from = trace_path(dir, volume, index);
        let to = trace_path(dir, volume, index + 1);
        match fs::rename(&from, &to) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&from, e)),
            _ => {}
        }
    }
    Ok(())
}

/// Reads everything recorded for `volume` in `dir`: the kept rotated files
/// oldest first (`.KEEP` … `.1`), then `VOLUME.trace`, as one stream whose
/// time is continuous across files (each file's header carries absolute
/// time). All files are opened here, so a rotation happening while reading
/// neither skips nor repeats a file; flush the recorder first to include its
/// buffered records.
pub fn read_recorded(dir: &Path, volume: &str) -> Result<TraceReader, TraceError> {
    let mut rotated = rotated_files(dir, volume).map_err(|e| io_error(dir, e))?;
    rotated.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
    let mut paths: Vec<PathBuf> = rotated.into_iter().map(|(_, path)| path).collect();
    let current = trace_path(dir, volume, 0);
    if current.exists() || paths.is_empty() {
        // When nothing exists this makes the error name the file expected.
        paths.push(current);
    }
    let mut devices = Devices::default();
    devices.intern(volume).map_err(|reason| TraceError::Parse {
        path: dir.display().to_string(),
        line: 0,
        reason,
    })?;
    Ok(TraceReader::new(
        super::Source::Native(Chain::open(&paths)?),
        devices,
    ))
}

/// The recorded files of one stream, read in order.
pub(crate) struct Chain {
    files: VecDeque<RecordedFile>,
    torn_tails: u64,
    dead: bool,
}

impl Chain {
    pub(crate) fn open(paths: &[PathBuf]) -> Result<Self, TraceError> {
        let mut files = VecDeque::with_capacity(paths.len());
        for path in paths {
            let file = File::open(path).map_err(|e| io_error(path, e))?;
            files.push_back(RecordedFile {
                path: path.display().to_string(),
                reader: BufReader::with_capacity(64 * 1024, file),
                started: false,
                t_ms: 0,
                record: 0,
                pos: 0,
            });
        }
        Ok(Chain {
            files,
            torn_tails: 0,
            dead: false,
        })
    }

    pub(crate) fn torn_tails(&self) -> u64 {
        self.torn_tails
    }

    pub(crate) fn next_raw(&mut self) -> Result<Option<Raw>, TraceError> {
        while !self.dead {
            let Some(file) = self.files.front_mut() else {
                return Ok(None);
            };
            match file.next_record() {
                Ok(Next::Record(raw)) => return Ok(Some(raw)),
                Ok(Next::End) => {
                    self.files.pop_front();
                }
                Ok(Next::Torn) => {
                    self.torn_tails += 1;
                    self.files.pop_front();
                }
                Err(e) => {
                    // A binary stream cannot be resynchronised after a bad byte.
                    self.dead = true;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }
}

enum Next {
    Record(Raw),
    /// Clean end of file.
    End,
    /// The file ends inside its header or a record.
    Torn,
}

struct RecordedFile {
    path: String,
    reader: BufReader<File>,
    started: bool,
    /// Absolute time of the previous record (the header start before any).
    t_ms: u64,
    /// 1-based number of the record being read.
    record: u64,
    /// Byte position, for error messages.
    pos: u64,
}

impl RecordedFile {
    fn error(&self, reason: String) -> TraceError {
        TraceError::Parse {
            path: self.path.clone(),
            line: self.record,
            reason,
        }
    }

    fn byte(&mut self) -> Result<Option<u8>, TraceError> {
        let buf = match self.reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) => return Err(io_error(Path::new(&self.path), e)),
        };
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.reader.consume(1);
        self.pos += 1;
        Ok(Some(b))
    }

    /// A varint whose first byte may already have been read; `Ok(None)` if
    /// the file ends inside it.
    fn varint(&mut self, first: Option<u8>, what: &str) -> Result<Option<u64>, TraceError> {
        let start = self.pos - u64::from(first.is_some());
        let mut value = 0u64;
        let mut pending = first;
        for i in 0..MAX_VARINT {
            let b = match pending.take() {
                Some(b) => b,
                None => match self.byte()? {
                    Some(b) => b,
                    None => return Ok(None),
                },
            };
            let bits = u64::from(b & 0x7f);
            // The 10th byte may only hold the top bit of a u64.
            if i == MAX_VARINT - 1 && bits > 1 {
                break;
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(self.error(format!("{what} varint at byte {start} overflows 64 bits")))
    }

    fn header(&mut self) -> Result<bool, TraceError> {
        let mut header = [0u8; HEADER_LEN as usize];
        let mut got = 0;
        while got < header.len() {
            match self.reader.read(&mut header[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(Path::new(&self.path), e)),
            }
        }
        self.pos = got as u64;
        if got < header.len() && MAGIC.starts_with(&header[..got.min(MAGIC.len())]) {
            // Empty (a recorder that has not recorded yet) or cut short.
            return Ok(false);
        }
        if &header[..8] != MAGIC {
            return Err(self.error("not a tierd trace: bad magic (expected TIERDTR1)".to_string()));
        }
        let mut start = [0u8; 8];
        start.copy_from_slice(&header[8..]);
        self.t_ms = u64::from_le_bytes(start);
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Next, TraceError> {
        if !self.started {
            self.started = true;
            let whole = self.header()?;
            if !whole {
                return Ok(if self.pos == 0 { Next::End } else { Next::Torn });
            }
        }
        let Some(first) = self.byte()? else {
            return Ok(Next::End);
        };
        self.record += 1;
        let Some(delta) = self.varint(Some(first), "time delta")? else {
            return Ok(Next::Torn);
        };
        let op_at = self.pos;
        let Some(code) = self.byte()? else {
            return Ok(Next::Torn);
        };
        let op = match code & !BYTE_UNITS {
            0 => Op::Read,
            1 => Op::Write,
            2 => Op::Trim,
            _ => {
                return Err(self.error(format!("unknown op byte {code:#04x} at byte {op_at}")));
            }
        };
        let Some(offset) = self.varint(None, "offset")? else {
            return Ok(Next::Torn);
        };
        let Some(len) = self.varint(None, "length")? else {
            return Ok(Next::Torn);
        };
        let unit = if code & BYTE_UNITS != 0 { 1 } else { SECTOR };
        let (Some(offset), Some(len)) = (offset.checked_mul(unit), len.checked_mul(unit)) else {
            return Err(self.error("offset or length overflows 64 bits".to_string()));
        };
        self.t_ms = self
            .t_ms
            .checked_add(delta)
            .ok_or_else(|| self.error("time overflows 64 bits".to_string()))?;
        Ok(Next::Record(Raw {
            abs_ms: self.t_ms,
            device: 0,
            op,
            offset,
            len,
        }))
    }
}
