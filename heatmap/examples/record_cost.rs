//! What one [`HeatMap::record`] costs on the I/O path: nanoseconds per
//! access, from 1 and 2 threads recording 4 KiB random reads over the
//! extents of a 1 GiB volume (4 MiB extents), with the real clock. For
//! BENCHMARKS.md, next to the time an NBD request takes.
//! Usage: record_cost [ACCESSES_PER_THREAD]
// Measures real elapsed time of real I/O: the wall clock is the point here.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Instant;

use heatmap::{Access, AccessKind, HeatConfig, HeatMap, SystemClock};
use rocksdb::{Options, DB};

fn main() {
    let per_thread: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ACCESSES_PER_THREAD is a number"))
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = HeatConfig::default();
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let db = Arc::new(
        DB::open_cf_descriptors(&opts, dir.path(), vec![HeatMap::column_family(&cfg)])
            .expect("open RocksDB"),
    );
    let heat = Arc::new(HeatMap::new(db, Arc::new(SystemClock), &cfg).expect("heat map"));
    for threads in [1u64, 2] {
        let t0 = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let heat = heat.clone();
                std::thread::spawn(move || {
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                    for _ in 0..per_thread {
                        // xorshift: a random extent of 256, as random 4 KiB reads land.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let access = Access {
                            kind: AccessKind::Read,
                            bytes: 4096,
                            sequential: false,
                        };
                        heat.record(1, x % 256, access);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        let secs = t0.elapsed().as_secs_f64();
        let total = per_thread * threads;
        println!(
            "{{\"threads\": {threads}, \"accesses\": {total}, \"ns_per_access_per_thread\": {:.1}, \"million_per_s\": {:.2}}}",
            secs * 1e9 / per_thread as f64,
            total as f64 / secs / 1e6
        );
        heat.flush().expect("flush");
    }
}
