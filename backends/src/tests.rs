//! The layers stacked as [`crate::build`] stacks them, over a memory store
//! with injected faults, on a manual clock: retries, deadlines, cancellation
//! and the metrics they leave, with no real sleeping.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use clock::{Clock, ManualClock};
use tokio_util::sync::CancellationToken;

use crate::faulty::FaultyStore;
use crate::{
    layered, BackendError, BackendMetrics, BuildEnv, ErrorKind, MemoryStore, ObjectStore, Op,
    PutOptions, RequestLimits, RetryStore,
};

/// Advances of the clock after which a request is taken to never end.
const MAX_STEPS: u32 = 100_000;

/// Polls `fut` to its end, advancing `clock` by `step` each time it waits.
/// The stores below never wait on anything but the clock, so a request that
/// slept in real time would run out of steps at once. Polling after every
/// advance, rather than waiting to be woken, keeps the tests independent of
/// how the manual clock delivers wake-ups.
pub(crate) async fn drive<T>(
    clock: &ManualClock,
    step: Duration,
    fut: impl Future<Output = T>,
) -> T {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..MAX_STEPS {
        if let Poll::Ready(v) = futures::poll!(fut.as_mut()) {
            return v;
        }
        clock.advance(step);
        // Back to the runtime: refills tokio's cooperative budget, which the
        // limit layer's semaphore draws on.
        tokio::task::yield_now().await;
    }
    panic!("the request did not end after {MAX_STEPS} advances of {step:?}");
}

struct Stack {
    clock: Arc<ManualClock>,
    cancel: CancellationToken,
    faulty: Arc<FaultyStore>,
    metrics: BackendMetrics,
    store: Arc<dyn ObjectStore>,
}

/// The full stack over a faulty memory store called `name` holding `k` = "ok".
async fn stack(name: &str, limits: RequestLimits) -> Stack {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let memory = Arc::new(MemoryStore::new(name));
    memory
        .put("k", Bytes::from_static(b"ok"), &PutOptions::default())
        .await
        .expect("memory put");
    let faulty = Arc::new(FaultyStore::with_clock(memory, clock.clone()));
    let metrics = BackendMetrics::unregistered();
    let cancel = CancellationToken::new();
    let env = BuildEnv::new(metrics.clone())
        .with_clock(clock.clone())
        .with_cancel(cancel.clone());
    let store = layered(faulty.clone(), &limits, &env);
    Stack {
        clock,
        cancel,
        faulty,
        metrics,
        store,
    }
}

fn limits(max_attempts: u32) -> RequestLimits {
    RequestLimits {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..Default::default()
    }
}

const MS: Duration = Duration::from_millis(1);

#[tokio::test]
async fn retries_retryable_errors_until_success() {
    let s = stack("flaky", limits(5)).await;
    s.faulty.fail_next(Op::Get, 3, ErrorKind::Throttled);
    let got = drive(&s.clock, MS, s.store.get("k")).await;
    assert_eq!(got.unwrap().to_vec(), b"ok");
    assert_eq!(s.faulty.calls(Op::Get), 4);
    assert_eq!(
        s.metrics.retries.with_label_values(&["flaky", "get"]).get(),
        3
    );
    assert_eq!(
        s.metrics
            .requests
            .with_label_values(&["flaky", "get", "throttled"])
            .get(),
        3
    );
    assert_eq!(
        s.metrics
            .requests
            .with_label_values(&["flaky", "get", "ok"])
            .get(),
        1
    );
    assert_eq!(
        s.metrics
            .bytes
            .with_label_values(&["flaky", "download"])
            .get(),
        2,
        "payload bytes are counted once, for the attempt that succeeded"
    );
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_never_retries_permanent() {
    let s = stack("flaky", limits(3)).await;
    s.faulty.fail_always(Op::Get, ErrorKind::Throttled);
    let e = drive(&s.clock, MS, s.store.get("k")).await.unwrap_err();
    assert!(matches!(e, BackendError::Throttled(_)));
    assert!(e.to_string().contains("gave up after 3 attempt(s)"), "{e}");
    assert_eq!(s.faulty.calls(Op::Get), 3);

    let s = stack("flaky", limits(3)).await;
    s.faulty.fail_always(Op::Get, ErrorKind::Permanent);
    let r = drive(&s.clock, MS, s.store.get("k")).await;
    assert!(matches!(r, Err(BackendError::Permanent(_))));
    assert_eq!(s.faulty.calls(Op::Get), 1);
}

/// Throttled and Transient are retried; NotFound, PreconditionFailed and
/// Permanent are returned after one attempt, with no retry counted.
#[tokio::test]
async fn only_throttled_and_transient_are_retried() {
    for kind in ErrorKind::ALL {
        let s = stack("kinds", limits(4)).await;
        s.faulty.fail_next(Op::Put, 2, kind);
        let r = drive(
            &s.clock,
            MS,
            s.store
                .put("p", Bytes::from_static(b"x"), &PutOptions::default()),
        )
        .await;
        let retries = s.metrics.retries.with_label_values(&["kinds", "put"]).get();
        if kind.is_retryable() {
            assert!(r.is_ok(), "{kind:?}: {r:?}");
            assert_eq!(s.faulty.calls(Op::Put), 3, "{kind:?}");
            assert_eq!(retries, 2, "{kind:?}");
        } else {
            assert_eq!(r.unwrap_err().error_kind(), kind);
            assert_eq!(s.faulty.calls(Op::Put), 1, "{kind:?}");
            assert_eq!(retries, 0, "{kind:?}");
        }
    }
}

/// The deadline is measured on the injected clock: the request ends within
/// it although the clock is only ever advanced, never waited for (an hour of
/// backoffs takes no real time).
#[tokio::test]
async fn retry_gives_up_at_the_deadline() {
    let deadline = Duration::from_secs(3600);
    let max_backoff = Duration::from_secs(60);
    let s = stack(
        "slow",
        RequestLimits {
            max_attempts: 10_000,
            deadline,
            initial_backoff: Duration::from_secs(1),
            max_backoff,
            ..Default::default()
        },
    )
    .await;
    s.faulty.fail_always(Op::Get, ErrorKind::Transient);
    let step = Duration::from_secs(1);
    let t0 = s.clock.now_ms();
    let e = drive(&s.clock, step, s.store.get("k")).await.unwrap_err();
    let took = s.clock.since(t0);
    assert!(matches!(e, BackendError::Transient(_)), "{e}");
    assert!(e.to_string().contains("deadline reached"), "{e}");
    assert!(took <= deadline + step, "ended {took:?} after the start");
    assert!(
        took + max_backoff + step >= deadline,
        "gave up early, after {took:?}"
    );
    let calls = s.faulty.calls(Op::Get);
    assert!(calls > 10, "only {calls} attempts in an hour");
    assert_eq!(
        s.metrics.retries.with_label_values(&["slow", "get"]).get(),
        calls - 1
    );
}

/// An attempt still running at the deadline is abandoned there.
#[tokio::test]
async fn an_attempt_running_at_the_deadline_is_abandoned() {
    let clock = Arc::new(ManualClock::new(0));
    let faulty = Arc::new(FaultyStore::with_clock(
        Arc::new(MemoryStore::new("hung")),
        clock.clone(),
    ));
    faulty.delay(Op::Head, Duration::from_secs(3600));
    let l = RequestLimits {
        deadline: Duration::from_secs(10),
        ..Default::default()
    };
    let store = RetryStore::new(faulty.clone(), &l, clock.clone(), CancellationToken::new());
    let e = drive(&clock, Duration::from_secs(1), store.head("k"))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Transient(_)), "{e}");
    assert!(e.to_string().contains("deadline reached"), "{e}");
    assert_eq!(clock.now_ms(), 10_000);
    assert_eq!(faulty.calls(Op::Head), 1);
}

/// Attempts that exceed `attempt_timeout` are Transient, counted as such,
/// and retried.
#[tokio::test]
async fn attempt_timeouts_are_counted_and_retried() {
    let s = stack(
        "stuck",
        RequestLimits {
            attempt_timeout: Duration::from_secs(5),
            max_attempts: 3,
            ..limits(3)
        },
    )
    .await;
    s.faulty.delay(Op::Get, Duration::from_secs(3600));
    let e = drive(&s.clock, MS * 100, s.store.get("k"))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Transient(_)), "{e}");
    assert!(e.to_string().contains("timed out after 5s"), "{e}");
    assert!(e.to_string().contains("gave up after 3 attempt(s)"), "{e}");
    assert_eq!(
        s.metrics
            .requests
            .with_label_values(&["stuck", "get", "transient"])
            .get(),
        3
    );
}

/// Cancellation ends a backoff sleep at once, although the clock never moves.
#[tokio::test]
async fn backoff_sleep_is_cut_short_by_cancellation() {
    let s = stack(
        "down",
        RequestLimits {
            max_attempts: 10,
            deadline: Duration::from_secs(3600),
            initial_backoff: Duration::from_secs(600),
            max_backoff: Duration::from_secs(600),
            ..Default::default()
        },
    )
    .await;
    s.faulty.fail_always(Op::Get, ErrorKind::Throttled);
    let start = s.clock.now_ms();
    let mut get = std::pin::pin!(s.store.get("k"));
    assert!(
        futures::poll!(get.as_mut()).is_pending(),
        "in a backoff of up to 10 minutes"
    );
    // Full jitter may draw a sleep under a millisecond (which ends at once
    // on the manual clock); it is then in the next backoff.
    let before = s.faulty.calls(Op::Get);
    assert!((1..=3).contains(&before), "{before} attempts");
    s.cancel.cancel();
    let Poll::Ready(r) = futures::poll!(get.as_mut()) else {
        panic!("cancellation must end the backoff at once");
    };
    let e = r.unwrap_err();
    assert!(matches!(e, BackendError::Permanent(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("cancelled: shutting down"), "{msg}");
    assert!(msg.contains("throttled"), "names the last failure: {msg}");
    assert_eq!(
        s.faulty.calls(Op::Get),
        before,
        "no attempt after the cancel"
    );
    assert_eq!(s.clock.now_ms(), start, "the clock never moved");
}

/// After a shutdown began, a failed attempt is not retried.
#[tokio::test]
async fn no_retry_starts_once_cancelled() {
    let s = stack("down", limits(5)).await;
    s.cancel.cancel();
    s.faulty.fail_next(Op::Delete, 1, ErrorKind::Transient);
    let e = drive(&s.clock, MS, s.store.delete("k")).await.unwrap_err();
    assert!(matches!(e, BackendError::Permanent(_)), "{e}");
    assert!(e.to_string().contains("cancelled: shutting down"), "{e}");
    assert_eq!(s.faulty.calls(Op::Delete), 1);
    // A request that succeeds first time is not affected.
    let got = drive(&s.clock, MS, s.store.get("k")).await;
    assert_eq!(got.unwrap().to_vec(), b"ok");
}

#[tokio::test]
async fn listing_errors_and_completions_are_counted() {
    use futures::StreamExt;
    let s = stack("lister", limits(3)).await;
    s.faulty.fail_next(Op::List, 1, ErrorKind::Throttled);
    let failed: Vec<_> = s.store.list("").collect().await;
    assert!(matches!(failed[..], [Err(BackendError::Throttled(_))]));
    let listed: Vec<_> = s.store.list("").collect().await;
    assert_eq!(listed.len(), 1);
    let count = |r: &str| {
        s.metrics
            .requests
            .with_label_values(&["lister", "list", r])
            .get()
    };
    assert_eq!((count("ok"), count("throttled")), (1, 1));
}

#[test]
fn op_indexes_follow_op_all() {
    for (i, op) in Op::ALL.into_iter().enumerate() {
        assert_eq!(op.index(), i, "{op:?}");
    }
}
