//! Block-access traces for `tierd simulate`.
//!
//! This module owns the event model ([`Event`]), format sniffing ([`detect`]),
//! the streaming readers for the three supported formats ([`open`],
//! [`read_recorded`]) and the daemon-side [`Recorder`] that writes tierd's own
//! binary format. Each format lives in its own submodule:
//!
//! - `msr`: MSR Cambridge / SNIA block I/O CSV
//!   (`Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime`).
//! - `blkparse`: the default text output of blkparse (only `Q` actions).
//! - `native`: tierd's recording (`TIERDTR1`), its reader and [`Recorder`].
//!
//! Invariants of a [`TraceReader`]:
//! - Memory is bounded whatever the trace length: one line buffer of at most
//!   [`MAX_LINE`] bytes (or one binary record) plus the interned device names
//!   (at most [`MAX_DEVICES`]).
//! - `t_ms` is relative to the first event, which is at 0, and never
//!   decreases: an event stamped earlier than the one before it (traces are
//!   merged from per-CPU or per-disk streams and are not always sorted) is
//!   taken at its predecessor's time and counted by
//!   [`TraceReader::out_of_order`]. The simulator can therefore treat events as
//!   a clock.
//! - `Event::device` indexes [`TraceReader::devices`]; names are interned in
//!   order of first appearance.
//! - A [`TraceError::Parse`] on a text line leaves the reader usable: the next
//!   call goes on with the next line, so a caller may choose to skip bad lines.
//!   I/O errors, over-long lines and every error in the binary format end the
//!   stream: `next()` returns `None` afterwards.

mod blkparse;
mod lines;
mod msr;
mod native;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::str::FromStr;

pub use native::{read_recorded, Recorder};

/// Longest text line accepted, in bytes. A longer "line" means the file is
/// not a text trace; refusing it keeps memory bounded.
pub const MAX_LINE: usize = 64 * 1024;

/// Most distinct devices one trace may name. MSR Cambridge has 36; the cap only
/// stops a corrupt file from growing the name table without bound.
pub const MAX_DEVICES: usize = 1 << 16;

/// How much of a file [`detect`] looks at.
const SNIFF_BYTES: u64 = 64 * 1024;
/// How many non-empty lines [`detect`] tries before giving up.
const SNIFF_LINES: usize = 16;

pub use policy::trace::{Event, Op};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Msr,
    Blkparse,
    Tierd,
}

impl Format {
    /// The name used on the command line (`msr`, `blkparse`, `tierd`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Msr => "msr",
            Format::Blkparse => "blkparse",
            Format::Tierd => "tierd",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "msr" | "snia" => Ok(Format::Msr),
            "blkparse" => Ok(Format::Blkparse),
            "tierd" | "native" => Ok(Format::Tierd),
            _ => Err(format!(
                "unknown trace format {s:?} (expected msr, blkparse or tierd)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `line` is the 1-based text line; for the binary tierd format it is the
    /// 1-based record number (0 for the file header).
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: String,
        line: u64,
        reason: String,
    },
    #[error("{path}: unknown trace format (expected MSR Cambridge CSV, blkparse text output or a tierd recording)")]
    UnknownFormat { path: String },
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> TraceError {
    TraceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Sniffs the format from the first bytes: the tierd magic, else the first
/// non-empty text lines that look like an MSR record (or its header) or a
/// blkparse event line. An empty file is [`TraceError::UnknownFormat`] (a
/// recorder file is empty until its first record; open it as
/// [`Format::Tierd`] to read it as an empty trace).
pub fn detect(path: &Path) -> Result<Format, TraceError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut head = Vec::new();
    BufReader::new(file)
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .map_err(|e| io_error(path, e))?;
    if head.starts_with(native::MAGIC) {
        return Ok(Format::Tierd);
    }
    // Lossy so that one stray byte does not hide an otherwise clear format;
    // the reader itself is strict.
    let text = String::from_utf8_lossy(&head);
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(SNIFF_LINES)
    {
        if msr::looks_like(line) {
            return Ok(Format::Msr);
        }
        if blkparse::looks_like(line) {
            return Ok(Format::Blkparse);
        }
    }
    Err(TraceError::UnknownFormat {
        path: path.display().to_string(),
    })
}

/// Opens `path` as a trace of the given format. Nothing is read beyond what
/// the first call to `next()` needs.
pub fn open(path: &Path, format: Format) -> Result<TraceReader, TraceError> {
    let mut devices = Devices::default();
    let source = match format {
        Format::Msr => Source::Msr {
            lines: lines::Lines::open(path)?,
            state: msr::State::default(),
        },
        Format::Blkparse => Source::Blkparse {
            lines: lines::Lines::open(path)?,
        },
        Format::Tierd => {
            // One volume per file: device 0, named after the file.
            devices
                .intern(&native::volume_from_path(path))
                .map_err(|reason| TraceError::Parse {
                    path: path.display().to_string(),
                    line: 0,
                    reason,
                })?;
            Source::Native(native::Chain::open(&[path.to_path_buf()])?)
        }
    };
    Ok(TraceReader::new(source, devices))
}

/// A parsed access before time is made relative: `abs_ms` is in the trace's
/// own time base (ms since 1601 for MSR, since tracing start for blkparse,
/// the recorder's clock for tierd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raw {
    pub abs_ms: u64,
    pub device: u32,
    pub op: Op,
    pub offset: u64,
    pub len: u64,
}

/// Device names interned to dense ids.
#[derive(Debug, Default)]
pub(crate) struct Devices {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Devices {
    /// Looks `name` up without allocating; allocates only for a new device.
    pub(crate) fn intern(&mut self, name: &str) -> Result<u32, String> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        if self.names.len() >= MAX_DEVICES {
            return Err(format!(
                "more than {MAX_DEVICES} distinct devices; refusing to grow the device table"
            ));
        }
        // Cannot truncate: MAX_DEVICES < u32::MAX.
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Ok(id)
    }
}

enum Source {
    Msr {
        lines: lines::Lines,
        state: msr::State,
    },
    Blkparse {
        lines: lines::Lines,
    },
    Native(native::Chain),
}

impl Source {
    /// Next access, `Ok(None)` at the end (or after a fatal error).
    fn next_raw(&mut self, devices: &mut Devices) -> Result<Option<Raw>, TraceError> {
        match self {
            Source::Msr { lines, state } => loop {
                let Some((line_no, line)) = lines.next_line()? else {
                    return Ok(None);
                };
                match state.parse(line, devices) {
                    Ok(Some(raw)) => return Ok(Some(raw)),
                    Ok(None) => continue,
                    Err(reason) => return Err(lines.parse_error(line_no, reason)),
                }
            },
            Source::Blkparse { lines } => loop {
                let Some((line_no, line)) = lines.next_line()? else {
                    return Ok(None);
                };
                match blkparse::parse(line, devices) {
                    Ok(Some(raw)) => return Ok(Some(raw)),
                    Ok(None) => continue,
                    Err(reason) => return Err(lines.parse_error(line_no, reason)),
                }
            },
            Source::Native(chain) => chain.next_raw(),
        }
    }
}

/// Streaming reader over one trace (or a chain of rotated recordings); see the
/// module doc for its invariants.
pub struct TraceReader {
    source: Source,
    devices: Devices,
    /// `abs_ms` of the first event: simulated time 0.
    base_ms: Option<u64>,
    last_t_ms: u64,
    out_of_order: u64,
}

impl TraceReader {
    fn new(source: Source, devices: Devices) -> Self {
        TraceReader {
            source,
            devices,
            base_ms: None,
            last_t_ms: 0,
            out_of_order: 0,
        }
    }

    /// Device names seen so far, indexed by `Event::device`.
    pub fn devices(&self) -> &[String] {
        &self.devices.names
    }

    /// Events so far whose timestamp was earlier than their predecessor's and
    /// were therefore moved forward to it.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Recorded (tierd-format) files so far that ended inside a record, as a
    /// file does when the daemon stopped mid-write; the partial record is
    /// dropped. Always 0 for the text formats.
    pub fn torn_tails(&self) -> u64 {
        match &self.source {
            Source::Native(chain) => chain.torn_tails(),
            _ => 0,
        }
    }

    fn stamp(&mut self, raw: Raw) -> Event {
        let base = *self.base_ms.get_or_insert(raw.abs_ms);
        let mut t_ms = raw.abs_ms.saturating_sub(base);
        if raw.abs_ms < base || t_ms < self.last_t_ms {
            self.out_of_order += 1;
            t_ms = t_ms.max(self.last_t_ms);
        }
        self.last_t_ms = t_ms;
        Event {
            t_ms,
            device: raw.device,
            op: raw.op,
            offset: raw.offset,
            len: raw.len,
        }
    }
}

impl Iterator for TraceReader {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.source.next_raw(&mut self.devices) {
            Ok(Some(raw)) => Some(Ok(self.stamp(raw))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests;
