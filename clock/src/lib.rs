//! The one clock of tierd: what time it is and how to wait, behind a trait
//! that every time-dependent part takes as an input (heat decay, cooling, the
//! circuit breaker, upload pacing, backend deadlines and backoff sleeps).
//!
//! Invariant: a clock's `now_ms` never goes backwards, and `sleep(d)` ends no
//! earlier than the moment `now_ms` has advanced by `d`. Time is counted in
//! the clock's own milliseconds since the Unix epoch, so heat records persist
//! meaningfully across restarts, and a scaled clock (`server.clock_speed`)
//! makes every timer in the daemon run faster together.
//!
//! This is the only module that may read the system's clocks or block a
//! thread on time; the workspace's clippy configuration forbids it elsewhere.
#![allow(clippy::disallowed_methods)]

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// A sleep in progress; it owns everything it needs.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of monotonic time, and of sleeps measured in that time.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch, as this clock counts them; never
    /// smaller than an earlier reading.
    fn now_ms(&self) -> u64;
    /// Ends once `d` of this clock's time has passed.
    fn sleep(&self, d: Duration) -> Sleep;
    /// Time since an earlier reading of [`Clock::now_ms`].
    fn since(&self, earlier_ms: u64) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(earlier_ms))
    }
}

/// Where real time started for this process: the wall clock read once, then
/// advanced by the monotonic clock, so readings never step back even when the
/// system's wall clock does.
fn origin() -> (Instant, u64) {
    static ORIGIN: OnceLock<(Instant, u64)> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (Instant::now(), wall)
    })
}

/// Real time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let (start, wall) = origin();
        wall + start.elapsed().as_millis() as u64
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Real time running `factor` times faster, from the real "now". Lets an
/// end-to-end test live through days of cooling in seconds; every sleep is
/// shortened by the same factor.
#[derive(Debug)]
pub struct ScaledClock {
    start: Instant,
    start_ms: u64,
    factor: f64,
}

impl ScaledClock {
    /// A clock `factor` times faster than real time; `factor` must be positive.
    pub fn new(factor: f64) -> Self {
        Self {
            start: Instant::now(),
            start_ms: SystemClock.now_ms(),
            factor: if factor > 0.0 { factor } else { 1.0 },
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> u64 {
        let elapsed = self.start.elapsed().as_secs_f64() * 1000.0 * self.factor;
        self.start_ms + elapsed as u64
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d.div_f64(self.factor)))
    }
}

/// Real elapsed time, for latency metrics and reports only: what an operator
/// measures with a watch, whatever `server.clock_speed` says. Decisions use
/// a [`Clock`].
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The real clock for a speed: [`SystemClock`] at 1, else a [`ScaledClock`].
pub fn real(speed: f64) -> Arc<dyn Clock> {
    if speed == 1.0 {
        Arc::new(SystemClock)
    } else {
        Arc::new(ScaledClock::new(speed))
    }
}

/// A clock that moves only when told to: for tests and simulation. Its sleeps
/// end when [`ManualClock::advance_ms`] or [`ManualClock::set_ms`] moves it
/// past their deadline, so a test advances time instead of waiting for it.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
    sleepers: Arc<Mutex<Vec<(u64, Waker)>>>,
}

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
            sleepers: Default::default(),
        }
    }

    /// Sets the time; moving it backwards is ignored (the clock is monotonic).
    pub fn set_ms(&self, t: u64) {
        self.now_ms.fetch_max(t, Ordering::SeqCst);
        self.wake();
    }

    pub fn advance_ms(&self, d: u64) {
        self.now_ms.fetch_add(d, Ordering::SeqCst);
        self.wake();
    }

    pub fn advance(&self, d: Duration) {
        self.advance_ms(d.as_millis() as u64);
    }

    /// Sleeps waiting for the clock to move (those polled at least once).
    pub fn sleepers(&self) -> usize {
        self.sleepers.lock().len()
    }

    fn wake(&self) {
        let now = self.now_ms.load(Ordering::SeqCst);
        self.sleepers.lock().retain(|(deadline, waker)| {
            if *deadline <= now {
                waker.wake_by_ref();
                false
            } else {
                true
            }
        });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(ManualSleep {
            deadline: self.now_ms().saturating_add(d.as_millis() as u64),
            now_ms: self.now_ms.clone(),
            sleepers: self.sleepers.clone(),
        })
    }
}

struct ManualSleep {
    deadline: u64,
    now_ms: Arc<AtomicU64>,
    sleepers: Arc<Mutex<Vec<(u64, Waker)>>>,
}

impl Future for ManualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Registered under the lock that `wake` takes after moving the time,
        // so an advance between the check and the registration is not missed.
        let mut s = self.sleepers.lock();
        if self.now_ms.load(Ordering::SeqCst) >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        s.retain(|(d, w)| !(*d == deadline && w.will_wake(cx.waker())));
        s.push((self.deadline, cx.waker().clone()));
        Poll::Pending
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
        assert_eq!(c.now_ms(), 1_500, "a manual clock never steps back");
        c.set_ms(2_000);
        assert_eq!(c.since(1_000), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn manual_sleeps_end_when_time_is_advanced_past_them() {
        let c = Arc::new(ManualClock::new(0));
        let sleeper = {
            let c = c.clone();
            tokio::spawn(async move { c.sleep(Duration::from_secs(60)).await })
        };
        while c.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        c.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "59 s of a 60 s sleep");
        c.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("the sleep ends once the clock passes its deadline")
            .expect("sleeper task");
        assert_eq!(c.sleepers(), 0);
    }

    #[test]
    fn system_clock_never_steps_back() {
        let a = SystemClock.now_ms();
        let b = SystemClock.now_ms();
        assert!(b >= a);
        assert!(a > 1_600_000_000_000, "milliseconds since the epoch");
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let c = ScaledClock::new(1000.0);
        let a = c.now_ms();
        std::thread::sleep(Duration::from_millis(20));
        let b = c.now_ms();
        // 20 ms of real time is at least 20 s of scaled time.
        assert!(b - a >= 20_000, "scaled clock advanced only {} ms", b - a);
    }

    #[tokio::test]
    async fn scaled_sleeps_are_shortened_by_the_factor() {
        let c = ScaledClock::new(1000.0);
        let t0 = Instant::now();
        let before = c.now_ms();
        c.sleep(Duration::from_secs(10)).await;
        assert!(c.now_ms() - before >= 10_000);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
}
