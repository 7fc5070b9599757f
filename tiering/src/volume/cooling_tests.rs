//! The daemon's side of the cooling tuner: a real volume (engine, in-memory
//! object store) feeds it its reads, returns and tiers, and its class's
//! rehydration budget decides what a cold read brings back.

use std::collections::BTreeMap;
use std::sync::Arc;

use backends::{MemoryStore, ObjectStore};
use policy::{ClassConfig, CoolingPeriod, HumanSize, ReadPattern, TieringPolicy};

use super::tests::volume_sized;
use crate::config::Config;
use crate::extent_map::ExtentState;

const MIB: u64 = 1 << 20;

fn class(budget: Option<&str>) -> ClassConfig {
    let mut c =
        ClassConfig::with_policies(TieringPolicy::Auto, None, policy::RetrievalPolicy::Default);
    c.cooling_period = Some(CoolingPeriod::Auto);
    c.backend = Some("mem".into());
    c.max_rehydrate_per_day = budget.map(|b| b.parse::<HumanSize>().expect("size"));
    c
}

#[test]
fn a_spent_rehydration_budget_leaves_cold_extents_remote_and_returns_are_thrash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded();
    config.classes.insert("c".into(), class(Some("1MiB")));
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
    let engine = crate::engine::tests::engine_with(
        config,
        BTreeMap::from([("mem".to_string(), store.clone())]),
    );
    let vol = volume_sized(dir.path(), engine, "c", 4 * MIB);
    let data: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
    vol.write(0, &data, true).expect("write");
    for e in 0..4 {
        vol.tier_extent(e, &class(None), "mem", &store)
            .expect("tier");
        assert_eq!(vol.extent_state(e), ExtentState::Remote);
    }
    // A random read of extent 0 brings it back: the day's 1 MiB is spent.
    let mut buf = vec![0u8; 4096];
    vol.read(8192, &mut buf, ReadPattern::RANDOM).expect("read");
    assert_eq!(buf, data[8192..8192 + 4096]);
    assert_eq!(vol.extent_state(0), ExtentState::Local);
    // Extent 1 is read right, from the object store, and stays there.
    vol.read(MIB + 4096, &mut buf, ReadPattern::RANDOM)
        .expect("read");
    assert_eq!(buf, data[(MIB + 4096) as usize..(MIB + 8192) as usize]);
    assert_eq!(vol.extent_state(1), ExtentState::Remote);
    // And a local read.
    vol.read(0, &mut buf, ReadPattern::RANDOM).expect("read");

    let s = vol.cooling_status().expect("status");
    assert_eq!(s.mode, "auto");
    assert_eq!(s.rehydrations_refused, 1);
    assert_eq!(s.rehydrate_budget_left, Some(0));
    // The clock did not move: extent 0 came back within the thrash window,
    // so it now cools twice as long as its band.
    assert_eq!(s.thrash, 1);
    assert_eq!(s.extents_backed_off, 1);
    // Two of the three reads touched the object store.
    let f = s.cold_read_fraction.expect("reads seen");
    assert!((f - 2.0 / 3.0).abs() < 1e-9, "{f}");
    let pc = vol.current_cooling(&class(Some("1MiB")));
    assert_eq!(pc.of(0), 2 * pc.of(2));
    let m = &vol.engine.metrics;
    assert_eq!(m.rehydrations_refused.with_label_values(&["v"]).get(), 1);
    assert_eq!(m.cooling_thrash.with_label_values(&["v"]).get(), 1);
    // The cost now, by hand at S3 Standard list prices: 1 MiB local
    // ($0.08/GB-month), 3 MiB remote ($0.023), and the 4 PUTs ($0.005/1000)
    // and 2 GETs ($0.0004/1000, the whole extent 0 and extent 1, fetched
    // whole before the budget said no) of less than a day, counted as a
    // day's and scaled to 30. Tiering 4 MiB for a day of requests costs more
    // than it saves, and the report says so.
    let cost = vol.cost_now(MIB, 3 * MIB).expect("cost");
    let gb = MIB as f64 / 1e9;
    let want = gb * 0.08 + 3.0 * gb * 0.023 + 30.0 * (4.0 * 0.005 + 2.0 * 0.0004) / 1000.0;
    assert!((cost.now - want).abs() < 1e-12, "{cost:?} against {want}");
    assert!((cost.all_local - 4.0 * gb * 0.08).abs() < 1e-15, "{cost:?}");
    assert!(cost.savings < 0.0);
    assert_eq!(cost.price_tier, "s3-standard");
}
