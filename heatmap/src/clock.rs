//! Time as the heat map and the policy engine see it: milliseconds since the Unix
//! epoch, from a clock that is injected so that tests and simulation control it.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    fn now_ms(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to: for unit tests and simulation.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(start_ms),
        }
    }
    pub fn set_ms(&self, t: u64) {
        self.now_ms.store(t, Ordering::SeqCst);
    }
    pub fn advance_ms(&self, d: u64) {
        self.now_ms.fetch_add(d, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Real time running `factor` times faster, starting from the real "now".
/// Lets an end-to-end test live through a cooling period of days in seconds.
#[derive(Debug)]
pub struct ScaledClock {
    start: Instant,
    start_ms: u64,
    factor: f64,
}

impl ScaledClock {
    pub fn new(factor: f64) -> Self {
        Self {
            start: Instant::now(),
            start_ms: SystemClock.now_ms(),
            factor,
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> u64 {
        let elapsed = self.start.elapsed().as_secs_f64() * 1000.0 * self.factor;
        self.start_ms + elapsed as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance_ms(500);
        assert_eq!(c.now_ms(), 1_500);
        c.set_ms(10);
        assert_eq!(c.now_ms(), 10);
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let c = ScaledClock::new(1000.0);
        let a = c.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = c.now_ms();
        // 20 ms of real time is at least 20 s of scaled time.
        assert!(b - a >= 20_000, "scaled clock advanced only {} ms", b - a);
    }
}
