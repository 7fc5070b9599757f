//! MSR Cambridge / SNIA block I/O CSV:
//! `Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime`.
//!
//! Owns the parsing of one line into a [`Raw`] access. Timestamp is a Windows
//! filetime (100 ns ticks since 1601-01-01), turned into whole milliseconds;
//! Type is `Read` or `Write` in any case; Offset and Size are bytes; the
//! device is `Hostname/DiskNumber`. ResponseTime is not used (and may be
//! missing). Invariant: a header line is accepted only as the first non-blank
//! line; anything else that is not a record is an error.

use std::fmt::Write as _;

use super::{Devices, Op, Raw};

/// 100 ns filetime ticks per millisecond.
const TICKS_PER_MS: u64 = 10_000;
const FIELDS: usize = 7;

#[derive(Default)]
pub(crate) struct State {
    seen_content: bool,
    /// Reused `Hostname/DiskNumber` key so the steady state does not allocate.
    key: String,
    /// The previous line's device: consecutive lines are nearly always the
    /// same disk, and skipping the key build and hash lookup for them is most
    /// of the parse time saved.
    last_host: String,
    last_disk: u32,
    last_device: Option<u32>,
}

/// Splits into at most [`FIELDS`] trimmed fields; `None` if there are more.
fn split(line: &str) -> Option<([&str; FIELDS], usize)> {
    let mut fields = [""; FIELDS];
    let mut n = 0;
    for part in line.split(',') {
        if n == FIELDS {
            return None;
        }
        fields[n] = part.trim_ascii();
        n += 1;
    }
    Some((fields, n))
}

fn is_header(first_field: &str) -> bool {
    first_field.eq_ignore_ascii_case("timestamp")
}

/// True if `line` is an MSR record or the MSR header (for [`super::detect`]).
pub(crate) fn looks_like(line: &str) -> bool {
    let Some((f, n)) = split(line.trim_ascii()) else {
        return false;
    };
    if n < FIELDS - 1 {
        return false;
    }
    is_header(f[0])
        || (f[0].parse::<u64>().is_ok()
            && (f[3].eq_ignore_ascii_case("read") || f[3].eq_ignore_ascii_case("write")))
}

impl State {
    /// `Ok(None)` for a blank line or the header.
    pub(crate) fn parse(
        &mut self,
        line: &str,
        devices: &mut Devices,
    ) -> Result<Option<Raw>, String> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(None);
        }
        let first_content = !self.seen_content;
        self.seen_content = true;
        let Some((f, n)) = split(line) else {
            return Err(format!(
                "more than {FIELDS} comma-separated fields \
                 (expected Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime)"
            ));
        };
        if first_content && is_header(f[0]) {
            return Ok(None);
        }
        if n < FIELDS - 1 {
            return Err(format!(
                "{n} comma-separated fields, expected {FIELDS} \
                 (Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime)"
            ));
        }
        let ticks: u64 = f[0]
            .parse()
            .map_err(|_| format!("Timestamp {:?} is not a Windows filetime", f[0]))?;
        let host = f[1];
        if host.is_empty() {
            return Err("empty Hostname".to_string());
        }
        let disk: u32 = f[2]
            .parse()
            .map_err(|_| format!("DiskNumber {:?} is not a number", f[2]))?;
        let op = if f[3].eq_ignore_ascii_case("read") {
            Op::Read
        } else if f[3].eq_ignore_ascii_case("write") {
            Op::Write
        } else {
            return Err(format!("Type {:?} is neither Read nor Write", f[3]));
        };
        let offset: u64 = f[4]
            .parse()
            .map_err(|_| format!("Offset {:?} is not a byte count", f[4]))?;
        let len: u64 = f[5]
            .parse()
            .map_err(|_| format!("Size {:?} is not a byte count", f[5]))?;
        if offset.checked_add(len).is_none() {
            return Err(format!("Offset {offset} + Size {len} overflows"));
        }
        let device = match self.last_device {
            Some(id) if self.last_disk == disk && self.last_host == host => id,
            _ => {
                self.key.clear();
                // Writing to a String cannot fail.
                let _ = write!(self.key, "{host}/{disk}");
                let id = devices.intern(&self.key)?;
                self.last_host.clear();
                self.last_host.push_str(host);
                self.last_disk = disk;
                self.last_device = Some(id);
                id
            }
        };
        Ok(Some(Raw {
            abs_ms: ticks / TICKS_PER_MS,
            device,
            op,
            offset,
            len,
        }))
    }
}
