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

use super::tests::volume_sized;
use crate::config::Config;
use crate::extent_map::ExtentState;

const MIB: u64 = 1 << 20;

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

/// A stream of 1 MiB reads from the start of 32 tiered extents: read-ahead
/// grows with it (twice what the stream has read).
fn stream() -> Vec<(u64, u64)> {
    (0..4).map(|i| (i * MIB, MIB)).collect()
}

fn agree_under(t: TieringPolicy) {
    agree_on(t, 8, &reads());
}

#[test]
fn read_ahead_grows_with_a_stream_alike() {
    // Windows of 2, 4, 6 and 8 extents after reads of 1, 2, 3 and 4 MiB:
    // extents 0 to 11 fetched, where a fixed window of 2 fetches 0 to 5.
    for t in [TieringPolicy::All, TieringPolicy::Auto] {
        assert_eq!(agree_on(t, 32, &stream()), 12, "{t:?}");
    }
}

/// Runs `reads` of a volume of `extents` tiered 1 MiB extents through the
/// daemon and the simulator, checking after each that they agree; returns
/// the GETs made in all.
fn agree_on(t: TieringPolicy, extents: u64, reads: &[(u64, u64)]) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded();
    config.classes.insert("c".into(), class(t));
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
    let engine = crate::engine::tests::engine_with(
        config.clone(),
        BTreeMap::from([("mem".to_string(), store.clone())]),
    );
    let vol = volume_sized(dir.path(), engine.clone(), "c", extents * MIB);
    let data: Vec<u8> = (0..extents * MIB).map(|i| (i % 253) as u8).collect();
    vol.write(0, &data, true).expect("write");
    for e in 0..extents {
        vol.tier_extent(e, &class(TieringPolicy::All), "mem", &store)
            .expect("tier");
    }

    let params = VolumeParams {
        extent_size: MIB,
        frame_size: config.tiering.frame_size.bytes(),
        half_life_ms: config.heat.half_life.0.as_millis() as f64,
        readahead: config.tiering.readahead(),
        cache_entries: policy::access::cache_entries(config.tiering.cache_bytes()),
        thrash_window_ms: 1,
        gc_grace_ms: 1,
        latency: Latency {
            first_byte_ms: 1.0,
            bytes_per_ms: 1.0,
        },
        scans_warm: config.heat.scans_warm,
    };
    let mut simv = SimVolume::new(&params, None);
    let mut counters = Counters::default();
    let write_all = Event {
        t_ms: 1,
        device: 0,
        op: Op::Write,
        offset: 0,
        len: extents * MIB,
    };
    simv.apply(&write_all, &class(t), &params, &mut counters);
    simv.pass(
        1_000,
        &class(TieringPolicy::All),
        policy::Fullness::unknown(),
        &params,
        &mut counters,
    );
    assert_eq!(simv.tiered_extents(), (0..extents).collect::<Vec<_>>());

    let mut tracker = ReadTracker::new();
    for (i, &(offset, len)) in reads.iter().enumerate() {
        let before_daemon = vol
            .stats
            .bytes_fetched
            .load(std::sync::atomic::Ordering::SeqCst);
        let pattern = tracker.observe(offset, len);
        let mut buf = vec![0u8; len as usize];
        vol.read(offset, &mut buf, pattern).expect("cold read");
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
            remote: (0..extents)
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
        for e in 0..extents {
            if let Ok(Some(crate::extent_map::ExtentRecord::Remote(r))) = vol.extent_record(e) {
                assert_eq!(
                    engine.cached(&(vol.id(), e, r.generation)),
                    simv.cached(e),
                    "{t:?}: read {i}: extent {e} cached"
                );
            }
        }
    }
    let fetches = vol.stats.fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetches, counters.gets, "{t:?}: GETs");
    fetches
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
