//! The daemon's cold-read path and the simulator take the same decisions:
//! one short trace of reads of tiered extents goes through a real volume
//! (engine, in-memory object store) and through `sim`'s volume, and after
//! every request the two agree on what was fetched (whole object, frames or
//! nothing, read-ahead included, in bytes), which extents came back, and
//! which objects sit in the fetch cache.

use std::collections::BTreeMap;
use std::sync::Arc;

use backends::{MemoryStore, ObjectStore};
use policy::trace::{Event, Op};
use policy::{ClassConfig, ReadTracker, RetrievalPolicy, TieringPolicy};
use sim::volume::{Counters, Latency, SimVolume, VolumeParams};

use super::tests::volume_with;
use crate::config::Config;
use crate::extent_map::ExtentState;

const MIB: u64 = 1 << 20;
const EXTENTS: u64 = 8;

/// What one request did, as both sides can tell it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    bytes_fetched: u64,
    remote: Vec<u64>,
}

fn class(t: TieringPolicy) -> ClassConfig {
    ClassConfig {
        backend: Some("mem".into()),
        ..ClassConfig::with_policies(t, None, RetrievalPolicy::Default)
    }
}

/// Reads of 1 MiB extents 0..8 (all tiered): random small reads, a stream of
/// small sequential reads, a large read, and reads that hit what a
/// read-ahead or an earlier fetch cached.
fn reads() -> Vec<(u64, u64)> {
    vec![
        (2 * MIB + 4096, 4096),         // random, one frame
        (2 * MIB + 65536 - 512, 1024),  // random, straddles two frames
        (4 * MIB, 4096),                // random
        (4 * MIB + 4096, 4096),         // continues: sequential, reads ahead 5 and 6
        (5 * MIB + 8192, 4096),         // random, but extent 5 is cached now
        (7 * MIB, MIB),                 // large: streams
        (MIB + 100 * 4096, 600 * 1024), // over half an extent
        (0, 4096),                      // random
    ]
}

fn agree_under(t: TieringPolicy) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded();
    config.classes.insert("c".into(), class(t));
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
    let engine = crate::engine::tests::engine_with(
        config.clone(),
        BTreeMap::from([("mem".to_string(), store.clone())]),
    );
    let vol = volume_with(dir.path(), engine.clone(), "c");
    let data: Vec<u8> = (0..EXTENTS * MIB).map(|i| (i % 253) as u8).collect();
    vol.write(0, &data, true).expect("write");
    for e in 0..EXTENTS {
        vol.tier_extent(e, &class(TieringPolicy::All), "mem", &store)
            .expect("tier");
    }

    let params = VolumeParams {
        extent_size: MIB,
        frame_size: config.tiering.frame_size.bytes(),
        half_life_ms: config.heat.half_life.0.as_millis() as f64,
        readahead_extents: config.tiering.readahead_extents,
        cache_entries: policy::access::cache_entries(config.tiering.cache_bytes()),
        thrash_window_ms: 1,
        gc_grace_ms: 1,
        latency: Latency {
            first_byte_ms: 1.0,
            bytes_per_ms: 1.0,
        },
    };
    let mut simv = SimVolume::new(&params);
    let mut counters = Counters::default();
    let write_all = Event {
        t_ms: 1,
        device: 0,
        op: Op::Write,
        offset: 0,
        len: EXTENTS * MIB,
    };
    simv.apply(&write_all, &class(t), &params, &mut counters);
    simv.pass(
        1_000,
        &class(TieringPolicy::All),
        policy::Fullness::unknown(),
        &params,
        &mut counters,
    );
    assert_eq!(simv.tiered_extents(), (0..EXTENTS).collect::<Vec<_>>());

    let mut tracker = ReadTracker::new();
    for (i, (offset, len)) in reads().into_iter().enumerate() {
        let before_daemon = vol
            .stats
            .bytes_fetched
            .load(std::sync::atomic::Ordering::SeqCst);
        let sequential = tracker.observe(offset, len);
        let mut buf = vec![0u8; len as usize];
        vol.read(offset, &mut buf, sequential).expect("cold read");
        assert_eq!(
            buf,
            data[offset as usize..(offset + len) as usize],
            "read {i}"
        );
        // Read-ahead runs as tracked tasks: let them finish.
        while engine.tasks().running() > 0 {
            std::thread::yield_now();
        }
        let daemon = Seen {
            bytes_fetched: vol
                .stats
                .bytes_fetched
                .load(std::sync::atomic::Ordering::SeqCst)
                - before_daemon,
            remote: (0..EXTENTS)
                .filter(|&e| vol.extent_state(e) == ExtentState::Remote)
                .collect(),
        };
        let before_sim = counters.bytes_fetched;
        let ev = Event {
            t_ms: 2_000 + i as u64,
            device: 0,
            op: Op::Read,
            offset,
            len,
        };
        simv.apply(&ev, &class(t), &params, &mut counters);
        let simulated = Seen {
            bytes_fetched: counters.bytes_fetched - before_sim,
            remote: simv.tiered_extents(),
        };
        assert_eq!(daemon, simulated, "{t:?}: read {i} ({offset}+{len})");
        for e in 0..EXTENTS {
            if let Ok(Some(crate::extent_map::ExtentRecord::Remote(r))) = vol.extent_record(e) {
                assert_eq!(
                    engine.cached(&(vol.id(), e, r.generation)),
                    simv.cached(e),
                    "{t:?}: read {i}: extent {e} cached"
                );
            }
        }
    }
}

#[test]
fn daemon_and_simulator_decide_alike_under_all() {
    // Nothing comes back: small random reads fetch frames, streams read ahead.
    agree_under(TieringPolicy::All);
}

#[test]
fn daemon_and_simulator_decide_alike_under_auto() {
    // Random reads bring their extent back (whole fetch); scans do not.
    agree_under(TieringPolicy::Auto);
}
