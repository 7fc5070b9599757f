//! The conformance suite against the in-memory store, bare and through the
//! layers `build` puts around every backend with faults injected below them:
//! what the retry layer absorbs, the caller never sees.

use std::sync::Arc;
use std::time::Duration;

use backends::faulty::FaultyStore;
use backends::{
    conformance, layered, BackendMetrics, BuildEnv, ErrorKind, MemoryStore, ObjectStore, Op,
    RequestLimits,
};

#[tokio::test]
async fn memory_conformance() {
    let s = MemoryStore::new("mem");
    conformance::run_all(&s, "t1/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_conformance_through_the_layers_with_faults() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new("mem"))));
    for op in [Op::Put, Op::Get, Op::GetRange, Op::Head, Op::Delete] {
        faulty.fail_next(op, 2, ErrorKind::Throttled);
        faulty.fail_next(op, 1, ErrorKind::Transient);
    }
    // A put that landed but whose answer was lost is sent again: puts are
    // idempotent, so the suite still sees exactly what it wrote.
    faulty.lose_next_answers(Op::Put, 2, ErrorKind::Transient);
    let limits = RequestLimits {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..Default::default()
    };
    let metrics = BackendMetrics::unregistered();
    let s: Arc<dyn ObjectStore> = layered(faulty.clone(), &limits, &BuildEnv::new(metrics.clone()));
    conformance::run_all(s.as_ref(), "t1/").await;
    for op in [Op::Put, Op::Get, Op::GetRange, Op::Head, Op::Delete] {
        assert_eq!(faulty.pending(op), Some(0), "{op:?}: every fault struck");
    }
    assert_eq!(faulty.injected(Op::Put), 5);
    assert_eq!(
        metrics.retries.with_label_values(&["mem", "put"]).get(),
        5,
        "one retry per injected put fault"
    );
}
