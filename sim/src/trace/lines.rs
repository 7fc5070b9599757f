//! Line source for the text formats.
//!
//! Owns one reused line buffer over a buffered file. Invariant: the buffer
//! never holds more than [`MAX_LINE`] + 1 bytes, so memory stays bounded
//! however long the file (or a line in it) is; a line longer than that is a
//! fatal error, after which no more lines are returned.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{io_error, TraceError, MAX_LINE};

pub(crate) struct Lines {
    path: String,
    reader: BufReader<File>,
    buf: Vec<u8>,
    line_no: u64,
    dead: bool,
}

impl Lines {
    pub(crate) fn open(path: &Path) -> Result<Self, TraceError> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        Ok(Lines {
            path: path.display().to_string(),
            // A larger buffer than the 8 KiB default: fewer read syscalls on
            // multi-gigabyte traces, still a fixed cost.
            reader: BufReader::with_capacity(256 * 1024, file),
            buf: Vec::with_capacity(256),
            line_no: 0,
            dead: false,
        })
    }

    pub(crate) fn parse_error(&self, line: u64, reason: String) -> TraceError {
        TraceError::Parse {
            path: self.path.clone(),
            line,
            reason,
        }
    }

    /// The next line without its `\n` or `\r\n`, with its 1-based number.
    /// `Ok(None)` at end of file or after a fatal error.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, &str)>, TraceError> {
        if self.dead {
            return Ok(None);
        }
        self.buf.clear();
        let read = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf);
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.dead = true;
                return Err(io_error(Path::new(&self.path), e));
            }
        };
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            self.dead = true;
            return Err(self.parse_error(
                self.line_no,
                format!("line longer than {MAX_LINE} bytes; not a text trace"),
            ));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(line) => Ok(Some((self.line_no, line))),
            Err(e) => Err(TraceError::Parse {
                path: self.path.clone(),
                line: self.line_no,
                reason: format!("not UTF-8 text ({e})"),
            }),
        }
    }
}
