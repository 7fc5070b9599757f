//! A volume's access trace, when recording is on (per class with
//! `record_trace`, or per volume): every read, write and trim, with its time,
//! to a rotated file under `DATA_DIR/traces` that `tierd simulate` replays.
//!
//! Invariant: the I/O path pays one relaxed atomic load while recording is
//! off; a recording that fails (disk full) turns itself off with one warning
//! and never fails the I/O it describes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use policy::trace::Op;
use sim::trace::Recorder;

#[derive(Debug)]
pub struct TraceLog {
    on: AtomicBool,
    recorder: Mutex<Option<Recorder>>,
}

/// Where and how much a recording keeps.
#[derive(Debug, Clone)]
pub struct TraceTarget {
    pub dir: PathBuf,
    pub volume: String,
    pub max_bytes: u64,
    pub keep: usize,
}

impl Default for TraceLog {
    fn default() -> Self {
        Self {
            on: AtomicBool::new(false),
            recorder: Mutex::new(None),
        }
    }
}

impl TraceLog {
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Starts (opening the file) or stops recording.
    pub fn set(&self, target: Option<TraceTarget>) {
        let mut rec = self.recorder.lock();
        match target {
            None => {
                if let Some(mut r) = rec.take() {
                    let _ = r.flush();
                }
                self.on.store(false, Ordering::Relaxed);
            }
            Some(_) if rec.is_some() => {}
            Some(t) => {
                if let Err(e) = std::fs::create_dir_all(&t.dir) {
                    tracing::warn!(volume = %t.volume, error = %e, dir = %t.dir.display(), "cannot record the access trace");
                    return;
                }
                match Recorder::create(&t.dir, &t.volume, t.max_bytes, t.keep) {
                    Ok(r) => {
                        tracing::info!(volume = %t.volume, dir = %t.dir.display(), "recording the access trace");
                        *rec = Some(r);
                        self.on.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(volume = %t.volume, error = %e, "cannot record the access trace")
                    }
                }
            }
        }
    }

    pub fn log(&self, t_ms: u64, op: Op, offset: u64, len: u64) {
        if !self.is_on() {
            return;
        }
        let mut rec = self.recorder.lock();
        if let Some(r) = rec.as_mut() {
            if let Err(e) = r.record(t_ms, op, offset, len) {
                tracing::warn!(error = %e, "access trace recording failed; stopped");
                *rec = None;
                self.on.store(false, Ordering::Relaxed);
            }
        }
    }

    pub fn flush(&self) {
        if let Some(r) = self.recorder.lock().as_mut() {
            if let Err(e) = r.flush() {
                tracing::warn!(error = %e, "cannot flush the access trace");
            }
        }
    }
}
