//! The write side of a volume's I/O path: writes, zeroing and trim, and
//! flush.
//!
//! Invariants kept here: a write lands only in an extent that is local (a
//! remote one is brought back first, or replaced outright when the write
//! covers all of it, durably before its record changes); every write bumps its
//! stripe's sequence number under the stripe lock, so a migration that read
//! the extent earlier cannot commit over it; a whole remote extent that is
//! zeroed becomes a zero extent without a fetch.

use std::sync::atomic::Ordering;

use heatmap::AccessKind;

use super::Volume;
use crate::error::Result;
use crate::extent_map::{ExtentRecord, ExtentState};

impl Volume {
    /// Takes extent `e` out of the remote or zero state so it can be written
    /// locally. `covering` is the part the caller is about to overwrite
    /// completely, if it is the whole extent (then no fetch is needed).
    fn make_writable(&self, e: u64, whole_overwrite: Option<&[u8]>) -> Result<()> {
        let stripe = self.stripe(e);
        let state = self.map.read().state(e);
        match state {
            ExtentState::Local => Ok(()),
            ExtentState::Zero => {
                let _g = stripe.lock.write();
                // The local range is a hole, which reads as the zeros the record promises.
                if self.map.read().state(e) == ExtentState::Zero {
                    self.map.read().make_local(e)?;
                }
                Ok(())
            }
            ExtentState::Remote => match whole_overwrite {
                Some(data) => {
                    let _g = stripe.lock.write();
                    if self.map.read().state(e) != ExtentState::Remote {
                        return Ok(());
                    }
                    self.write_extent_durably(e, data, "write")?;
                    self.map.read().make_local(e)?;
                    stripe.seq.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
                None => self.rehydrate(e).map(|_| ()),
            },
        }
    }

    /// Writes `data` at `offset`; with `fua` it is durable before this returns.
    pub fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.check_range(offset, data.len() as u64)?;
        let mut pos = 0usize;
        for (e, start, n) in self.pieces(offset, data.len() as u64) {
            let chunk = &data[pos..pos + n as usize];
            pos += n as usize;
            let whole = (n == self.extent_range(e).1).then_some(chunk);
            loop {
                {
                    let stripe = self.stripe(e);
                    let _g = stripe.lock.read();
                    if self.map.read().state(e) == ExtentState::Local {
                        stripe.seq.fetch_add(1, Ordering::SeqCst);
                        self.tier
                            .write_at(chunk, start)
                            .map_err(|err| self.io_err("write", err))?;
                        break;
                    }
                }
                self.make_writable(e, whole)?;
            }
        }
        self.trace(policy::trace::Op::Write, offset, data.len() as u64);
        self.record(AccessKind::Write, offset, data.len() as u64, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Zeroes a range, freeing its space when `may_punch`. A whole remote
    /// extent becomes a zero extent without a fetch.
    fn zero(&self, offset: u64, len: u64, may_punch: bool, op: &'static str) -> Result<()> {
        for (e, start, n) in self.pieces(offset, len) {
            let whole = n == self.extent_range(e).1;
            loop {
                let stripe = self.stripe(e);
                let state = self.map.read().state(e);
                if state == ExtentState::Zero {
                    break;
                }
                if state == ExtentState::Remote && whole {
                    let _g = stripe.lock.write();
                    if self.map.read().state(e) == ExtentState::Remote {
                        // The local range is already a hole; the old object becomes garbage.
                        self.map.read().commit(e, &ExtentRecord::Zero)?;
                        stripe.seq.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                if state == ExtentState::Remote {
                    self.rehydrate(e)?;
                    continue;
                }
                let _g = stripe.lock.read();
                if self.map.read().state(e) != ExtentState::Local {
                    continue;
                }
                stripe.seq.fetch_add(1, Ordering::SeqCst);
                let r = if may_punch {
                    self.tier.punch_hole(start, n)
                } else {
                    self.tier.zero_range(start, n)
                };
                r.map_err(|err| self.io_err(op, err))?;
                break;
            }
        }
        Ok(())
    }

    /// Discards a range: it reads as zeros afterwards and its space is freed.
    pub fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.check_range(offset, len)?;
        self.zero(offset, len, true, "trim")?;
        self.trace(policy::trace::Op::Trim, offset, len);
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
        self.zero(offset, len, may_punch, "write zeroes")?;
        self.trace(policy::trace::Op::Write, offset, len);
        self.record(AccessKind::Write, offset, len, false);
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every completed write durable.
    /// Pushes the buffered access trace, if recording, to its file.
    pub fn flush_trace(&self) {
        self.trace_log.flush();
    }

    pub fn flush(&self) -> Result<()> {
        self.trace_log.flush();
        self.tier.sync().map_err(|e| self.io_err("fdatasync", e))
    }
}
