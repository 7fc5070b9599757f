//! A wrapper that makes any [`ObjectStore`] fail, slow down and count, on
//! command: the fault-injection backend of tests (after Neon's
//! `simulate_failures.rs`), so no real backend carries test-only branches.
//! Available with the crate's `testing` feature.
//!
//! [`FaultyStore`] owns, per operation, a queue of planned faults, a delay
//! and call counters. Invariant: every call is counted once, when it is made;
//! planned faults are consumed in the order they were planned, one per call,
//! by calls in the order they are made; a call that draws no fault behaves
//! exactly as the wrapped store's. Delays are sleeps on the injected clock, so
//! a test on a `ManualClock` advances time instead of waiting.
//!
//! ```no_run
//! # async fn example() {
//! use std::sync::Arc;
//! use backends::faulty::FaultyStore;
//! use backends::{ErrorKind, MemoryStore, ObjectStore, Op};
//!
//! let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new("mem"))));
//! store.fail_next(Op::Get, 2, ErrorKind::Throttled);
//! assert!(store.get("k").await.is_err()); // throttled, store not asked
//! assert_eq!(store.calls(Op::Get), 1);
//! # }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use clock::{Clock, SystemClock};
use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;

use crate::error::{ctx, BackendError, ErrorKind, Result};
use crate::{Body, ObjectMeta, ObjectStore, Op, PutOptions};

/// When a planned fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strike {
    /// The call fails without reaching the wrapped store.
    Before,
    /// The call reaches the wrapped store (a put lands, a delete deletes),
    /// then fails as if its answer was lost on the way back.
    After,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    /// Calls still to fail; `None` until [`FaultyStore::clear`].
    remaining: Option<u32>,
    kind: ErrorKind,
    strike: Strike,
}

#[derive(Debug, Default)]
struct OpPlan {
    faults: VecDeque<Fault>,
    delay: Duration,
}

/// Injects failures and delays into an [`ObjectStore`] and counts its calls.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    /// By [`Op::index`].
    plans: Mutex<[OpPlan; Op::ALL.len()]>,
    calls: [AtomicU64; Op::ALL.len()],
    injected: [AtomicU64; Op::ALL.len()],
}

impl FaultyStore {
    /// Wraps `inner`; delays are real time.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self::with_clock(inner, Arc::new(SystemClock))
    }

    /// Wraps `inner`; delays are sleeps on `clock`.
    pub fn with_clock(inner: Arc<dyn ObjectStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            clock,
            plans: Mutex::new(Default::default()),
            calls: Default::default(),
            injected: Default::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The next `n` calls of `op` fail with an error of `kind`, without
    /// reaching the wrapped store. Queued after faults already planned.
    pub fn fail_next(&self, op: Op, n: u32, kind: ErrorKind) {
        self.plan(op, Some(n), kind, Strike::Before);
    }

    /// Every call of `op` fails with an error of `kind` (after faults already
    /// planned), until [`FaultyStore::clear`].
    pub fn fail_always(&self, op: Op, kind: ErrorKind) {
        self.plan(op, None, kind, Strike::Before);
    }

    /// The next `n` calls of `op` reach the wrapped store and take effect,
    /// then fail with an error of `kind` as if the answer was lost: a put that
    /// landed but was reported failed. Queued after faults already planned.
    pub fn lose_next_answers(&self, op: Op, n: u32, kind: ErrorKind) {
        self.plan(op, Some(n), kind, Strike::After);
    }

    /// Every later call of `op` first waits `delay` on the clock (zero: none).
    pub fn delay(&self, op: Op, delay: Duration) {
        self.plans.lock()[op.index()].delay = delay;
    }

    /// Drops every planned fault and delay; counters stay.
    pub fn clear(&self) {
        *self.plans.lock() = Default::default();
    }

    /// Calls of `op` made so far, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Calls of `op` that failed by a planned fault.
    pub fn injected(&self, op: Op) -> u64 {
        self.injected[op.index()].load(Ordering::SeqCst)
    }

    /// Faults of `op` still planned (`None`: one lasts until cleared).
    pub fn pending(&self, op: Op) -> Option<u64> {
        self.plans.lock()[op.index()]
            .faults
            .iter()
            .map(|f| f.remaining.map(u64::from))
            .sum()
    }

    fn plan(&self, op: Op, remaining: Option<u32>, kind: ErrorKind, strike: Strike) {
        if remaining == Some(0) {
            return;
        }
        self.plans.lock()[op.index()].faults.push_back(Fault {
            remaining,
            kind,
            strike,
        });
    }

    /// Counts a call of `op` and draws its fault and delay.
    fn begin(&self, op: Op) -> (Option<Fault>, Duration) {
        let mut plans = self.plans.lock();
        self.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        let plan = &mut plans[op.index()];
        let fault = plan.faults.front_mut().map(|f| {
            let drawn = *f;
            if let Some(n) = &mut f.remaining {
                *n -= 1;
            }
            drawn
        });
        if plan.faults.front().is_some_and(|f| f.remaining == Some(0)) {
            plan.faults.pop_front();
        }
        (fault, plan.delay)
    }

    fn injected_error(&self, op: Op, key: &str, fault: Fault) -> BackendError {
        self.injected[op.index()].fetch_add(1, Ordering::SeqCst);
        let message = match fault.strike {
            Strike::Before => "injected fault",
            Strike::After => "injected fault: the call took effect, its answer was lost",
        };
        BackendError::new(
            fault.kind,
            ctx(self.inner.name(), op.as_str(), key, message),
        )
    }

    async fn call<T>(&self, op: Op, key: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let (fault, delay) = self.begin(op);
        if !delay.is_zero() {
            self.clock.sleep(delay).await;
        }
        match fault {
            None => call.await,
            Some(f) if f.strike == Strike::Before => Err(self.injected_error(op, key, f)),
            Some(f) => {
                // What the store answered is what is lost.
                let _ = call.await;
                Err(self.injected_error(op, key, f))
            }
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<ObjectMeta> {
        self.call(Op::put(opts), key, self.inner.put(key, data, opts))
            .await
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.call(Op::Get, key, self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.call(Op::GetRange, key, self.inner.get_range(key, range))
            .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.call(Op::Head, key, self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.call(Op::Delete, key, self.inner.delete(key)).await
    }

    /// A fault before: the listing yields only the error. A lost answer: it
    /// yields the wrapped store's listing, then the error (a page that never
    /// came).
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let (fault, delay) = self.begin(Op::List);
        let wait = async move {
            if !delay.is_zero() {
                self.clock.sleep(delay).await;
            }
        };
        futures::stream::once(wait)
            .flat_map(move |()| match fault {
                None => self.inner.list(prefix),
                Some(f) if f.strike == Strike::Before => {
                    futures::stream::iter([Err(self.injected_error(Op::List, prefix, f))]).boxed()
                }
                Some(f) => self
                    .inner
                    .list(prefix)
                    .chain(futures::stream::once(async move {
                        Err(self.injected_error(Op::List, prefix, f))
                    }))
                    .boxed(),
            })
            .boxed()
    }

    async fn reclaim_partial(&self, before_ms: u64) -> Result<u64> {
        self.call(
            Op::ReclaimPartial,
            "",
            self.inner.reclaim_partial(before_ms),
        )
        .await
    }

    async fn create_container(&self) -> Result<()> {
        self.call(Op::CreateContainer, "", self.inner.create_container())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use futures::TryStreamExt;

    fn faulty() -> FaultyStore {
        FaultyStore::new(Arc::new(MemoryStore::new("mem")))
    }

    #[tokio::test]
    async fn planned_faults_strike_in_order_then_calls_pass() {
        let s = faulty();
        s.put("k", Bytes::from_static(b"v"), &PutOptions::default())
            .await
            .unwrap();
        s.fail_next(Op::Get, 2, ErrorKind::Throttled);
        s.fail_next(Op::Get, 1, ErrorKind::Permanent);
        assert_eq!(s.pending(Op::Get), Some(3));
        for want in [
            ErrorKind::Throttled,
            ErrorKind::Throttled,
            ErrorKind::Permanent,
        ] {
            let e = s.get("k").await.unwrap_err();
            assert_eq!(e.error_kind(), want, "{e}");
            assert!(e.to_string().contains("injected fault"), "{e}");
            assert!(e.to_string().contains("\"k\""), "names the key: {e}");
        }
        assert_eq!(s.get("k").await.unwrap().to_vec(), b"v");
        assert_eq!((s.calls(Op::Get), s.injected(Op::Get)), (4, 3));
        assert_eq!(s.calls(Op::Put), 1, "counted per operation");
        assert_eq!(s.pending(Op::Get), Some(0));
    }

    #[tokio::test]
    async fn a_lost_answer_took_effect() {
        let s = faulty();
        s.lose_next_answers(Op::Put, 1, ErrorKind::Transient);
        let e = s
            .put("k", Bytes::from_static(b"landed"), &PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Transient(_)), "{e}");
        assert_eq!(s.inner().get("k").await.unwrap().to_vec(), b"landed");
    }

    #[tokio::test]
    async fn failing_always_lasts_until_cleared() {
        let s = faulty();
        s.fail_always(Op::Head, ErrorKind::Transient);
        assert_eq!(s.pending(Op::Head), None);
        for _ in 0..5 {
            assert!(s.head("k").await.unwrap_err().is_retryable());
        }
        s.clear();
        assert!(s.head("k").await.unwrap_err().is_not_found());
        assert_eq!(s.injected(Op::Head), 5);
    }

    #[tokio::test]
    async fn listing_faults() {
        let s = faulty();
        for k in ["p/a", "p/b"] {
            s.put(k, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        }
        s.fail_next(Op::List, 1, ErrorKind::Throttled);
        let r: Vec<_> = s.list("p/").collect().await;
        assert!(matches!(r[..], [Err(BackendError::Throttled(_))]), "{r:?}");
        s.lose_next_answers(Op::List, 1, ErrorKind::Transient);
        let r: Vec<_> = s.list("p/").collect().await;
        assert_eq!(r.len(), 3);
        assert!(matches!(r[2], Err(BackendError::Transient(_))), "{r:?}");
        let keys: Vec<String> = s.list("p/").map_ok(|m| m.key).try_collect().await.unwrap();
        assert_eq!(keys, ["p/a", "p/b"]);
        assert_eq!(s.calls(Op::List), 3);
    }

    #[tokio::test]
    async fn delays_run_on_the_injected_clock() {
        let clock = Arc::new(clock::ManualClock::new(0));
        let s = FaultyStore::with_clock(Arc::new(MemoryStore::new("mem")), clock.clone());
        s.delay(Op::Delete, Duration::from_secs(60));
        let mut del = std::pin::pin!(s.delete("k"));
        assert!(futures::poll!(del.as_mut()).is_pending());
        assert_eq!(s.calls(Op::Delete), 1, "counted when made");
        clock.advance(Duration::from_secs(59));
        assert!(futures::poll!(del.as_mut()).is_pending(), "59 s of 60 s");
        clock.advance(Duration::from_secs(1));
        let std::task::Poll::Ready(r) = futures::poll!(del.as_mut()) else {
            panic!("the delay ends when the clock passes it");
        };
        r.expect("delete of a missing key succeeds");
    }
}
