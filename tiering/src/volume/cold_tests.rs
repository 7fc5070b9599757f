//! Read-ahead across streams stays within `max_readahead_fetches`: a stream
//! whose window is wider than the free slots fetches ahead only as many
//! extents as there are slots, and the read itself is never held back.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use backends::{MemoryStore, ObjectStore};
use policy::{ClassConfig, ReadTracker, RetrievalPolicy, TieringPolicy};

use super::tests::volume_sized;
use crate::config::Config;

const MIB: u64 = 1 << 20;

#[test]
fn read_ahead_takes_no_more_fetches_than_the_engine_allows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded();
    config.tiering.max_readahead_fetches = 3;
    let class = ClassConfig {
        backend: Some("mem".into()),
        ..ClassConfig::with_policies(TieringPolicy::All, None, RetrievalPolicy::Never)
    };
    config.classes.insert("c".into(), class.clone());
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
    let engine = crate::engine::tests::engine_with(
        config,
        BTreeMap::from([("mem".to_string(), store.clone())]),
    );
    let vol = volume_sized(dir.path(), engine.clone(), "c", 32 * MIB);
    let data: Vec<u8> = (0..32 * MIB).map(|i| (i % 251) as u8).collect();
    vol.write(0, &data, true).expect("write");
    for e in 0..32 {
        vol.tier_extent(e, &class, "mem", &store).expect("tier");
    }
    let settle = || {
        while engine.tasks().running() > 0 {
            std::thread::yield_now();
        }
    };
    let fetches = || vol.stats.fetches.load(Ordering::SeqCst);
    let mut tracker = ReadTracker::new();
    let mut read = |offset: u64, len: u64| {
        let mut buf = vec![0u8; len as usize];
        vol.read(offset, &mut buf, tracker.observe(offset, len))
            .expect("cold read");
        assert_eq!(buf, data[offset as usize..(offset + len) as usize]);
    };

    // Another stream holds two of the three slots: a 1 MiB read (a window
    // of 2 extents) fetches its own extent and reads ahead one.
    let held = [engine.readahead_slot(), engine.readahead_slot()];
    assert!(held.iter().all(Option::is_some));
    read(0, MIB);
    settle();
    assert_eq!(fetches(), 2, "extent 0 and one read ahead (extent 1)");
    // All three taken: the stream reads on, fetching only what it reads.
    let third = engine.readahead_slot();
    assert!(third.is_some() && engine.readahead_slot().is_none());
    read(MIB, MIB); // cached by the read-ahead
    read(2 * MIB, MIB);
    settle();
    assert_eq!(fetches(), 3, "extent 2 only: no slot was free");
    // Slots free again: of the window (8 extents, twice the 4 MiB the stream
    // has read) three are fetched ahead, the limit.
    drop(held);
    drop(third);
    read(3 * MIB, MIB);
    settle();
    assert_eq!(fetches(), 4 + 3, "extent 3 and three read ahead");
}
