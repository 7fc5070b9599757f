//! What every volume shares for tiering: the configuration in force, the
//! backends by name, the cache of recently fetched cold extents, the map of
//! fetches in flight (so concurrent readers of one cold extent share one GET),
//! object generations, upload slots and the per-backend circuit breakers.
//!
//! The volume I/O path runs on blocking threads; it reaches the async backends
//! through [`Engine::block_on`]. Fetched data is verified frame by frame before
//! anything is cached or served: a mismatch is an error, never data.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backends::{BackendError, Body, ObjectStore};
use clock::Clock;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::{OnceCell, Semaphore};

use crate::codec;
use crate::config::{ClassConfig, Config};
use crate::error::{Result, TierError};
use crate::extent_map::{Compression, RemoteExtent};
use crate::metrics::TierMetrics;
use crate::tasks::Tasks;

/// Identifies one immutable object version: (volume id, extent, generation).
pub type FetchKey = (u64, u64, u64);

type Inflight = Arc<OnceCell<std::result::Result<Body, FetchFailure>>>;

/// Why a fetch failed, shared by every waiter of one fetch. A backend
/// failure keeps its kind (throttled, not found, transient, permanent).
#[derive(Debug, Clone)]
pub enum FetchFailure {
    Integrity(String),
    Backend(Arc<BackendError>),
}

/// Counters the API and metrics read.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub integrity_errors: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub gc_objects_deleted: AtomicU64,
}

/// Pauses migration to a backend after repeated failures (of uploads and
/// of reads alike), in the engine clock's time.
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until_ms: Option<u64>,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct Engine {
    config: RwLock<Arc<Config>>,
    backends: RwLock<BTreeMap<String, Arc<dyn ObjectStore>>>,
    rt: Handle,
    cache: Mutex<lru::LruCache<FetchKey, Body>>,
    inflight: Mutex<HashMap<FetchKey, Inflight>>,
    last_generation: AtomicU64,
    pub upload_slots: Arc<Semaphore>,
    /// Read-ahead fetches in flight, across every stream.
    readahead_slots: Arc<Semaphore>,
    breakers: Mutex<HashMap<String, Breaker>>,
    pub stats: EngineStats,
    pub metrics: TierMetrics,
    /// Background work; cancelled at shutdown (passes stop between extents).
    tasks: Tasks,
    clock: Arc<dyn Clock>,
}

impl Engine {
    /// An engine whose I/O and background work run on `tasks`' runtime.
    pub fn new(
        config: Arc<Config>,
        backends: BTreeMap<String, Arc<dyn ObjectStore>>,
        tasks: Tasks,
        metrics: TierMetrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let rt = tasks.runtime().clone();
        let entries = policy::access::cache_entries(config.tiering.cache_bytes());
        let uploads = config.tiering.max_concurrent_uploads;
        let readahead_fetches = config.tiering.max_readahead_fetches;
        Self {
            config: RwLock::new(config),
            backends: RwLock::new(backends),
            tasks,
            clock,
            rt,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN),
            )),
            inflight: Mutex::new(HashMap::new()),
            last_generation: AtomicU64::new(0),
            upload_slots: Arc::new(Semaphore::new(uploads)),
            readahead_slots: Arc::new(Semaphore::new(readahead_fetches)),
            breakers: Mutex::new(HashMap::new()),
            stats: EngineStats::default(),
            metrics,
        }
    }

    /// The daemon's tracked background tasks and its shutdown token.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// True once shutdown has begun: passes stop between extents.
    pub fn is_stopping(&self) -> bool {
        self.tasks.is_cancelled()
    }

    /// The clock every timer of the engine runs on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// Replaces the configuration and the backends it names (after a reload).
    pub fn replace(&self, config: Arc<Config>, backends: BTreeMap<String, Arc<dyn ObjectStore>>) {
        *self.backends.write() = backends;
        *self.config.write() = config;
    }

    /// Runs a future from a blocking thread (the volume I/O path).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn class(&self, name: &str) -> Result<ClassConfig> {
        let c = self.config.read();
        c.classes
            .get(name)
            .cloned()
            .ok_or_else(|| TierError::UnknownClass {
                class: name.to_string(),
                known: c.class_names(),
            })
    }

    pub fn backend(&self, name: &str) -> Result<Arc<dyn ObjectStore>> {
        self.backends.read().get(name).cloned().ok_or_else(|| {
            TierError::InvalidArgument(format!("no backend named {name:?} is configured"))
        })
    }

    /// A fresh generation: milliseconds since the epoch, strictly increasing, so
    /// object keys are unique and their age can be read off the key.
    pub fn next_generation(&self, now_ms: u64) -> u64 {
        let mut cur = self.last_generation.load(Ordering::SeqCst);
        loop {
            let next = now_ms.max(cur + 1);
            match self.last_generation.compare_exchange(
                cur,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    /// The whole uncompressed extent, from the cache or one shared fetch. The
    /// flag says whether this call is the one that performed the GET.
    pub fn fetch_extent(
        &self,
        fk: FetchKey,
        rec: &RemoteExtent,
        extent_len: usize,
    ) -> std::result::Result<(Body, bool), FetchFailure> {
        if let Some(b) = self.cache.lock().get(&fk) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((b.clone(), false));
        }
        self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let cell = self.inflight.lock().entry(fk).or_default().clone();
        let mut performed = false;
        let result = self.block_on(cell.get_or_init(|| async {
            performed = true;
            let store = self.fetch_backend(&rec.backend)?;
            let stored = self
                .get_on_workers(store, &rec.backend, &rec.key, None)
                .await;
            self.record_backend_result(&rec.backend, stored.as_ref().map(|_| ()));
            let stored = stored.map_err(|e| FetchFailure::Backend(Arc::new(e)))?;
            if stored.len() < rec.header_len as usize {
                return Err(FetchFailure::Integrity(format!(
                    "object is {} bytes, shorter than its {}-byte header",
                    stored.len(),
                    rec.header_len
                )));
            }
            let data = codec::decode_whole(
                stored.slice(rec.header_len as usize..stored.len()),
                &rec.frames,
                rec.frame_size as usize,
                extent_len,
                rec.compression,
            )
            .map_err(FetchFailure::Integrity)?;
            // Uncompressed, the frames just checked are the extent, so a
            // second hash of all of it proves nothing more; decompressed
            // bytes are checked against the extent's own checksum.
            if rec.compression != Compression::None && codec::body_checksum(&data) != rec.checksum {
                return Err(FetchFailure::Integrity(
                    "whole-extent checksum mismatch".into(),
                ));
            }
            Ok(data)
        }));
        let out = result.clone();
        if let Ok(b) = &out {
            self.cache.lock().put(fk, b.clone());
        }
        self.inflight.lock().remove(&fk);
        out.map(|b| (b, performed))
    }

    /// Uncompressed frames `first..last` of an extent, with one ranged GET.
    pub fn fetch_frames(
        &self,
        rec: &RemoteExtent,
        first: usize,
        last: usize,
        extent_len: usize,
    ) -> std::result::Result<Vec<u8>, FetchFailure> {
        let start = rec.frame_offset(first);
        let end = rec.frame_offset(last);
        let store = self.fetch_backend(&rec.backend)?;
        let stored =
            self.block_on(self.get_on_workers(store, &rec.backend, &rec.key, Some(start..end)));
        self.record_backend_result(&rec.backend, stored.as_ref().map(|_| ()));
        let stored = stored.map_err(|e| FetchFailure::Backend(Arc::new(e)))?;
        codec::decode(
            &stored.into_bytes(),
            &rec.frames[first..last],
            first,
            rec.frame_size as usize,
            extent_len,
            rec.compression,
        )
        .map_err(FetchFailure::Integrity)
    }

    /// A GET (whole, or of `range`) run as a task on the runtime's workers,
    /// where the I/O driver is: the response body then streams in without
    /// waking the blocking caller for every chunk (a whole 4 MiB object is
    /// dozens of socket reads); the caller sleeps once, until it is all here.
    async fn get_on_workers(
        &self,
        store: Arc<dyn ObjectStore>,
        backend: &str,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> std::result::Result<Body, BackendError> {
        let owned = key.to_string();
        let task = self.rt.spawn(async move {
            match range {
                Some(r) => store.get_range(&owned, r).await.map(Body::from),
                None => store.get(&owned).await,
            }
        });
        task.await.unwrap_or_else(|e| {
            Err(BackendError::Transient(backends::ErrorContext {
                backend: backend.to_string(),
                op: "get",
                key: key.to_string(),
                message: format!("the fetch task ended early: {e}"),
            }))
        })
    }

    /// [`Engine::backend`] for a fetch: a backend the record names but the
    /// configuration no longer has is a Permanent backend failure.
    fn fetch_backend(&self, name: &str) -> std::result::Result<Arc<dyn ObjectStore>, FetchFailure> {
        self.backend(name).map_err(|e| {
            FetchFailure::Backend(Arc::new(BackendError::Permanent(backends::ErrorContext {
                backend: name.to_string(),
                op: "get",
                key: String::new(),
                message: e.to_string(),
            })))
        })
    }

    /// Whether a cached copy exists (readahead skips those).
    pub fn cached(&self, fk: &FetchKey) -> bool {
        self.cache.lock().contains(fk)
    }

    /// Whether a copy is cached or a fetch of it is under way (readahead
    /// skips both rather than park a thread on the fetch).
    pub fn cached_or_fetching(&self, fk: &FetchKey) -> bool {
        self.cached(fk) || self.inflight.lock().contains_key(fk)
    }

    /// A slot for one read-ahead fetch, or None while the limit is reached
    /// (read-ahead is a head start: skipping it never fails a read).
    pub fn readahead_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.readahead_slots.clone().try_acquire_owned().ok()
    }

    /// How far sequential cold reads read ahead, from the configuration.
    pub fn readahead(&self) -> policy::Readahead {
        self.config().tiering.readahead()
    }

    pub fn forget(&self, fk: &FetchKey) {
        self.cache.lock().pop(fk);
    }

    /// `Some(reason)` while migration to `backend` is paused.
    pub fn breaker_open(&self, backend: &str) -> Option<String> {
        let b = self.breakers.lock();
        let br = b.get(backend)?;
        let now = self.clock.now_ms();
        match br.open_until_ms {
            Some(t) if now < t => Some(format!(
                "migration to backend {backend:?} paused for {}s after {} consecutive failures: {}",
                (t - now) / 1000 + 1,
                br.failures,
                br.last_error.as_deref().unwrap_or("?")
            )),
            _ => None,
        }
    }

    /// Counts an upload's or a read's outcome toward the backend's breaker.
    /// A missing object says nothing about the backend's health.
    pub fn record_backend_result(
        &self,
        backend: &str,
        result: std::result::Result<(), &BackendError>,
    ) {
        if matches!(result, Err(BackendError::NotFound(_))) {
            return;
        }
        let (limit, pause) = {
            let c = self.config.read();
            (c.tiering.breaker_failures.max(1), c.tiering.breaker_pause.0)
        };
        let mut b = self.breakers.lock();
        let br = b.entry(backend.to_string()).or_default();
        match result {
            Ok(()) => *br = Breaker::default(),
            Err(e) => {
                br.failures += 1;
                br.last_error = Some(e.to_string());
                if br.failures >= limit {
                    br.open_until_ms = Some(self.clock.now_ms() + pause.as_millis() as u64);
                }
            }
        }
    }

    pub fn pause(&self) -> Duration {
        self.config.read().tiering.breaker_pause.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An engine on the embedded configuration, for unit tests. Its runtime
    /// lives for the rest of the test process.
    pub(crate) fn engine() -> Arc<Engine> {
        engine_with(Config::embedded(), BTreeMap::new())
    }

    /// An engine on the embedded configuration whose clock is `clock`.
    pub(crate) fn engine_on(clock: Arc<dyn Clock>) -> Arc<Engine> {
        engine_full(Config::embedded(), BTreeMap::new(), clock)
    }

    pub(crate) fn engine_with(
        config: Config,
        backends: BTreeMap<String, Arc<dyn ObjectStore>>,
    ) -> Arc<Engine> {
        engine_full(config, backends, Arc::new(clock::ManualClock::new(1_000)))
    }

    fn engine_full(
        config: Config,
        backends: BTreeMap<String, Arc<dyn ObjectStore>>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Engine> {
        static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let rt = RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("test runtime")
        });
        Arc::new(Engine::new(
            Arc::new(config),
            backends,
            Tasks::new(rt.handle().clone()),
            TierMetrics::unregistered().expect("metric definitions"),
            clock,
        ))
    }

    fn failure(kind: &str) -> BackendError {
        let ctx = backends::ErrorContext {
            backend: "b".into(),
            op: "get",
            key: "k".into(),
            message: kind.into(),
        };
        match kind {
            "missing" => BackendError::NotFound(ctx),
            _ => BackendError::Transient(ctx),
        }
    }

    #[test]
    fn the_breaker_opens_after_failures_and_closes_after_its_pause_on_the_clock() {
        let clock = Arc::new(clock::ManualClock::new(1_000_000));
        let e = engine_on(clock.clone());
        let limit = e.config().tiering.breaker_failures;
        let pause = e.config().tiering.breaker_pause.0;
        // Missing objects say nothing about the backend's health.
        for _ in 0..limit * 2 {
            e.record_backend_result("b", Err(&failure("missing")));
        }
        assert_eq!(e.breaker_open("b"), None);
        for _ in 0..limit - 1 {
            e.record_backend_result("b", Err(&failure("timeout")));
        }
        assert_eq!(e.breaker_open("b"), None, "one failure short of the limit");
        e.record_backend_result("b", Err(&failure("timeout")));
        let why = e.breaker_open("b").expect("open at the limit");
        assert!(
            why.contains("timeout") && why.contains(&format!("{limit} consecutive")),
            "{why}"
        );
        // Time moves on the engine's clock, not the wall's.
        clock.advance(pause - Duration::from_millis(1));
        assert!(e.breaker_open("b").is_some());
        clock.advance(Duration::from_millis(1));
        assert_eq!(e.breaker_open("b"), None);
        // A success (an upload or a read) resets the count.
        for _ in 0..limit - 1 {
            e.record_backend_result("b", Err(&failure("timeout")));
        }
        e.record_backend_result("b", Ok(()));
        e.record_backend_result("b", Err(&failure("timeout")));
        assert_eq!(e.breaker_open("b"), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn generations_strictly_increase() {
        let e = Engine::new(
            Arc::new(Config::embedded()),
            BTreeMap::new(),
            Tasks::new(Handle::current()),
            TierMetrics::unregistered().expect("metric definitions"),
            Arc::new(clock::ManualClock::new(0)),
        );
        let a = e.next_generation(1000);
        let b = e.next_generation(1000);
        let c = e.next_generation(500);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(e.next_generation(5000), 5000);
    }
}
