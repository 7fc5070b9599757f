//! The daemon's cold-read path and the simulator take the same decisions:
//! one short trace of reads of tiered extents goes through a real volume
//! (engine, in-memory object store) and through `sim`'s volume, and after
//! every request the two agree on what was fetched (whole object, frames or
//! nothing, read-ahead included, in bytes), which extents came back, and
//! which objects sit in the fetch cache. With `write_overlay`, a trace of
//! writes and reads also agrees on which extents are overlays.

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
    overlays: Vec<u64>,
}

fn class(t: TieringPolicy) -> ClassConfig {
    ClassConfig {
        backend: Some("mem".into()),
        ..ClassConfig::with_policies(t, None, RetrievalPolicy::Default)
    }
}

fn overlay_class(t: TieringPolicy) -> ClassConfig {
    ClassConfig {
        write_overlay: true,
        ..class(t)
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
    let ops: Vec<_> = reads().into_iter().map(|(o, l)| (Op::Read, o, l)).collect();
    agree_on(&class(t), 8, &ops);
}

/// Writes and trims of tiered extents among reads, for `write_overlay`.
fn overlay_ops() -> Vec<(Op, u64, u64)> {
    vec![
        (Op::Write, MIB + 4096, 4096),     // a whole block: overlay, no fetch
        (Op::Write, 3 * MIB + 100, 200),   // inside a block: one frame first
        (Op::Read, MIB + 4096, 4096),      // the overlay's own block: local
        (Op::Read, MIB + 40 * 4096, 4096), // a block it lacks: cold
        (Op::Write, 3 * MIB + 8192, 3 * 4096), // grows the overlay
        (Op::Read, 3 * MIB, 5 * 4096),     // partly covered: cold
        (Op::Write, 5 * MIB, MIB),         // whole: local, no fetch
        (Op::Write, 6 * MIB + 4096, 4096), // an overlay...
        (Op::Trim, 6 * MIB, MIB),          // ...trimmed whole: zero
        (Op::Trim, 7 * MIB + 4096, 2 * 4096), // a partial trim: an overlay
        (Op::Read, 7 * MIB, MIB),          // a large read of it
    ]
}

#[test]
fn daemon_and_simulator_keep_overlays_alike() {
    // Under auto, a cold random read brings its overlay back (merged);
    // under all nothing comes back.
    for t in [TieringPolicy::Auto, TieringPolicy::All] {
        let (_, end) = agree_on(&overlay_class(t), 8, &overlay_ops());
        let want = match t {
            // Extents 1 and 3 came back with their overlays on cold reads.
            TieringPolicy::Auto => (vec![0, 2, 4], vec![7]),
            _ => (vec![0, 2, 4], vec![1, 3, 7]),
        };
        assert_eq!((end.remote, end.overlays), want, "{t:?}");
    }
}

#[test]
fn read_ahead_grows_with_a_stream_alike() {
    // Windows of 2, 4, 6 and 8 extents after reads of 1, 2, 3 and 4 MiB:
    // extents 0 to 11 fetched, where a fixed window of 2 fetches 0 to 5.
    for t in [TieringPolicy::All, TieringPolicy::Auto] {
        let ops: Vec<_> = stream()
            .into_iter()
            .map(|(o, l)| (Op::Read, o, l))
            .collect();
        assert_eq!(agree_on(&class(t), 32, &ops).0, 12, "{t:?}");
    }
}

/// Runs `ops` on a volume of `extents` tiered 1 MiB extents of class `c`
/// through the daemon and the simulator, checking after each that they
/// agree; returns the GETs made in all and where the extents are at the end.
fn agree_on(c: &ClassConfig, extents: u64, ops: &[(Op, u64, u64)]) -> (u64, Seen) {
    let t = c.tiering_policy;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded();
    config.classes.insert("c".into(), c.clone());
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
    let engine = crate::engine::tests::engine_with(
        config.clone(),
        BTreeMap::from([("mem".to_string(), store.clone())]),
    );
    let vol = volume_sized(dir.path(), engine.clone(), "c", extents * MIB);
    let mut data: Vec<u8> = (0..extents * MIB).map(|i| (i % 253) as u8).collect();
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
    simv.apply(&write_all, c, &params, &mut counters);
    simv.pass(
        1_000,
        &class(TieringPolicy::All),
        policy::Fullness::unknown(),
        &params,
        &mut counters,
    );
    assert_eq!(simv.tiered_extents(), (0..extents).collect::<Vec<_>>());

    let mut tracker = ReadTracker::new();
    let mut last = None;
    for (i, &(op, offset, len)) in ops.iter().enumerate() {
        let before_daemon = vol
            .stats
            .bytes_fetched
            .load(std::sync::atomic::Ordering::SeqCst);
        let range = offset as usize..(offset + len) as usize;
        match op {
            Op::Read => {
                let pattern = tracker.observe(offset, len);
                let mut buf = vec![0u8; len as usize];
                vol.read(offset, &mut buf, pattern).expect("cold read");
                assert_eq!(buf, data[range], "read {i}");
            }
            Op::Write => {
                let bytes: Vec<u8> = (0..len).map(|j| (j % 7 + i as u64) as u8).collect();
                vol.write(offset, &bytes, false).expect("write");
                data[range].copy_from_slice(&bytes);
            }
            Op::Trim => {
                vol.trim(offset, len, false).expect("trim");
                data[range].fill(0);
            }
        }
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
            overlays: (0..extents)
                .filter(|&e| vol.extent_state(e) == ExtentState::Overlay)
                .collect(),
        };
        let before_sim = counters.bytes_fetched;
        let ev = Event {
            t_ms: 2_000 + i as u64,
            device: 0,
            op,
            offset,
            len,
        };
        simv.apply(&ev, c, &params, &mut counters);
        let simulated = Seen {
            bytes_fetched: counters.bytes_fetched - before_sim,
            remote: simv.tiered_extents(),
            overlays: simv.overlay_extents(),
        };
        assert_eq!(daemon, simulated, "{t:?}: {op:?} {i} ({offset}+{len})");
        last = Some(simulated);
        for e in 0..extents {
            let rec = vol.extent_record(e).ok().flatten();
            if let Some(r) = rec.as_ref().and_then(|r| r.remote()) {
                assert_eq!(
                    engine.cached(&(vol.id(), e, r.generation)),
                    simv.cached(e),
                    "{t:?}: {op:?} {i}: extent {e} cached"
                );
            }
        }
    }
    let fetches = vol.stats.fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetches, counters.gets, "{t:?}: GETs");
    let mut all = vec![0u8; data.len()];
    vol.read(0, &mut all, policy::ReadPattern::RANDOM)
        .expect("read all");
    assert!(all == data, "{t:?}: the volume reads as written");
    (
        fetches,
        last.unwrap_or(Seen {
            bytes_fetched: 0,
            remote: Vec::new(),
            overlays: Vec::new(),
        }),
    )
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
