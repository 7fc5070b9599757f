//! The policy passes with snapshots: `snapshot-only` tiers exactly the data
//! only snapshots hold once it has cooled, `auto` tiers it at once, and the
//! volume and its snapshots read the same bytes before and after.

use std::collections::BTreeMap;
use std::sync::Arc;

use backends::{MemoryStore, ObjectStore};
use heatmap::{Clock, HeatConfig, HeatMap, ManualClock};
use policy::{ClassConfig, RetrievalPolicy, TieringPolicy};

use crate::config::Config;
use crate::extent_map::Slot;
use crate::volume::{CreateVolume, Volume, Volumes};

const MIB: u64 = 1 << 20;
const DAY: u64 = 86_400_000;

struct Setup {
    _dir: tempfile::TempDir,
    vols: Volumes,
    engine: Arc<crate::engine::Engine>,
    clock: Arc<ManualClock>,
    store: Arc<dyn ObjectStore>,
    data_dir: std::path::PathBuf,
}

fn setup(policy: TieringPolicy) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded();
    config.classes.insert(
        "c".into(),
        ClassConfig {
            backend: Some("local".into()),
            cooling_period: Some(policy::CoolingPeriod::Fixed(
                std::time::Duration::from_millis(2 * DAY),
            )),
            ..ClassConfig::with_policies(policy, None, RetrievalPolicy::Default)
        },
    );
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
    let engine = crate::engine::tests::engine_with(
        config.clone(),
        BTreeMap::from([("local".to_string(), store.clone())]),
    );
    let cfg = HeatConfig::default();
    let db = crate::db::open(&dir.path().join("db"), &cfg).expect("db");
    let clock = Arc::new(ManualClock::new(DAY));
    let c: Arc<dyn Clock> = clock.clone();
    let heat = Arc::new(HeatMap::new(db.clone(), c.clone(), &cfg).expect("heat"));
    let vols = Volumes::open(db, heat, engine.clone(), c, dir.path()).expect("volumes");
    vols.create(
        CreateVolume {
            name: "v".into(),
            size: 4 * MIB,
            class: "c".into(),
            extent_size: Some(MIB),
        },
        &config,
    )
    .expect("create");
    Setup {
        data_dir: dir.path().to_path_buf(),
        _dir: dir,
        vols,
        engine,
        clock,
        store,
    }
}

fn read(v: &Arc<Volume>, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    v.read(off, &mut b, policy::ReadPattern::RANDOM)
        .expect("read");
    b
}

fn pass(s: &Setup, v: &Arc<Volume>) -> crate::migrate::PassReport {
    s.vols
        .get("v")
        .expect("volume")
        .heat()
        .flush()
        .expect("heat flush");
    let held = s.vols.held_layers(v);
    crate::migrate::run_pass(v, &s.data_dir, &held).expect("pass")
}

/// Writes 4 extents, snapshots, then overwrites extent 0 whole and one
/// block of extent 1: extent 0 of the snapshot is held only by it.
fn scenario(s: &Setup) -> (Arc<Volume>, Vec<u8>) {
    let v = s.vols.get("v").expect("volume");
    let old: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
    v.write(0, &old, true).expect("write");
    s.vols.snapshot_create("v", "s").expect("snapshot");
    v.write(0, &vec![5u8; MIB as usize], false)
        .expect("overwrite");
    v.write(MIB, &[6u8; 4096], false).expect("small write");
    v.flush().expect("flush");
    (v, old)
}

fn snapshot_slots(s: &Setup) -> Vec<Slot> {
    let snap = s.vols.export("v@s").expect("snapshot export");
    let layer = snap.top();
    let map = layer.map.read();
    (0..4).map(|e| map.slot(e)).collect()
}

#[test]
fn snapshot_only_tiers_what_only_snapshots_hold_after_cooling() {
    let s = setup(TieringPolicy::SnapshotOnly);
    let (v, old) = scenario(&s);
    // Not cooled yet: nothing moves.
    let r = pass(&s, &v);
    assert_eq!(r.tiered, 0, "{r:?}");
    s.clock.advance_ms(3 * DAY);
    let r = pass(&s, &v);
    assert_eq!((r.tiered, r.held.clone()), (1, None), "{r:?}");
    assert_eq!(
        snapshot_slots(&s),
        vec![Slot::Remote, Slot::Local, Slot::Local, Slot::Local],
        "only extent 0, which the volume overwrote whole, left"
    );
    // The volume's own data never moves under snapshot-only.
    assert_eq!(v.extent_slot(0), Slot::Local);
    // Both still read what they should; the snapshot's read stays remote.
    let snap = s.vols.export("v@s").expect("snapshot export");
    assert!(read(&snap, 0, 4 * MIB as usize) == old);
    assert_eq!(
        snapshot_slots(&s)[0],
        Slot::Remote,
        "reading a snapshot brings nothing back"
    );
    let mut want = old.clone();
    want[..MIB as usize].fill(5);
    want[MIB as usize..MIB as usize + 4096].fill(6);
    assert!(read(&v, 0, 4 * MIB as usize) == want);
    // The object is referred to: GC keeps it.
    let gc = s.engine.block_on(crate::gc::collect(
        &s.engine,
        &s.vols,
        s.clock.now_ms() + 30 * DAY,
        std::time::Duration::ZERO,
    ));
    let gc = gc.expect("gc");
    assert_eq!((gc.referenced, gc.deleted), (1, 0), "{gc:?}");
    // Deleting the snapshot drops the last reference: GC deletes the object.
    s.vols.snapshot_delete("v", "s").expect("delete snapshot");
    let gc = s
        .engine
        .block_on(crate::gc::collect(
            &s.engine,
            &s.vols,
            s.clock.now_ms() + 30 * DAY,
            std::time::Duration::ZERO,
        ))
        .expect("gc");
    assert_eq!(gc.deleted, 1, "{gc:?}");
    assert!(
        read(&v, 0, 4 * MIB as usize) == want,
        "the volume never needed it"
    );
    drop(s.store.clone());
}

#[test]
fn auto_tiers_snapshot_only_data_at_once() {
    let s = setup(TieringPolicy::Auto);
    let (v, old) = scenario(&s);
    let r = pass(&s, &v);
    assert_eq!(r.tiered, 1, "{r:?}");
    assert_eq!(snapshot_slots(&s)[0], Slot::Remote);
    // After the cooling period, the live data the snapshot still holds for
    // the volume goes too (extents 2 and 3; extent 1 is partly rewritten, so
    // its held blocks stay until partial extents can move).
    s.clock.advance_ms(3 * DAY);
    let r = pass(&s, &v);
    assert!(r.tiered >= 2, "{r:?}");
    let snap = s.vols.export("v@s").expect("snapshot export");
    assert!(read(&snap, 0, 4 * MIB as usize) == old);
    let mut want = old.clone();
    want[..MIB as usize].fill(5);
    want[MIB as usize..MIB as usize + 4096].fill(6);
    assert!(read(&v, 0, 4 * MIB as usize) == want);
}

#[test]
fn a_snapshot_extent_held_in_part_moves_with_its_block_set() {
    let s = setup(TieringPolicy::Auto);
    let v = s.vols.get("v").expect("volume");
    let base: Vec<u8> = (0..4 * MIB).map(|i| (i % 241) as u8).collect();
    v.write(0, &base, true).expect("write");
    s.vols.snapshot_create("v", "s1").expect("s1");
    // Two blocks of extent 2 rewritten, then frozen by s2 (a partial extent
    // of s2's layer), then rewritten again: s2's two blocks are snapshot-only.
    v.write(2 * MIB, &[7u8; 8192], true).expect("write");
    s.vols.snapshot_create("v", "s2").expect("s2");
    v.write(2 * MIB, &[8u8; 8192], true).expect("write");
    let r = pass(&s, &v);
    assert!(r.failed == 0 && r.tiered >= 1, "{r:?}");
    let s2 = s.vols.export("v@s2").expect("s2 export");
    assert_eq!(
        s2.top().map.read().slot(2),
        Slot::Remote,
        "moved though held in part"
    );
    let mut want = base.clone();
    want[2 * MIB as usize..2 * MIB as usize + 8192].fill(7);
    assert!(
        read(&s2, 0, 4 * MIB as usize) == want,
        "blocks from the object, the rest below"
    );
    let mut live = base.clone();
    live[2 * MIB as usize..2 * MIB as usize + 8192].fill(8);
    assert!(read(&v, 0, 4 * MIB as usize) == live);
    // The object carries only those blocks: the rest of it is zeros, compressed.
    let rec = match s2.top().map.read().record(2).expect("record") {
        Some(crate::extent_map::ExtentRecord::Remote(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(rec.blocks.as_ref().map(|b| b.count()), Some(2));
    assert!(
        rec.stored_size() < 64 << 10,
        "{} bytes stored",
        rec.stored_size()
    );
}

/// Data objects in the store.
fn objects(s: &Setup) -> usize {
    use futures::TryStreamExt;
    let metas: Vec<backends::ObjectMeta> = s
        .engine
        .block_on(s.store.list(crate::keys::DATA_PREFIX).try_collect())
        .expect("list");
    metas.len()
}

#[test]
fn data_brought_up_from_a_snapshot_tiers_again_without_an_upload_until_written() {
    use crate::extent_map::ExtentRecord;
    let s = setup(TieringPolicy::Auto);
    let v = s.vols.get("v").expect("volume");
    let base: Vec<u8> = (0..4 * MIB).map(|i| (i % 239) as u8).collect();
    v.write(0, &base, true).expect("write");
    s.vols.snapshot_create("v", "s").expect("snapshot");
    // Cooled: the snapshot's layer moves what the volume reads through it.
    s.clock.advance_ms(3 * DAY);
    let r = pass(&s, &v);
    assert_eq!((r.tiered, r.failed), (4, 0), "{r:?}");
    let objects_before = objects(&s);
    // A random read under auto brings extent 2 up into the volume's layer,
    // recorded as backed by the snapshot layer's object.
    assert!(read(&v, 2 * MIB + 4096, 4096) == base[(2 * MIB + 4096) as usize..][..4096]);
    assert_eq!(v.extent_slot(2), Slot::Local);
    let Ok(Some(ExtentRecord::Backed(backed))) = v.extent_record(2) else {
        panic!("extent 2: {:?}", v.extent_record(2));
    };
    // Cooled again, it tiers by pointing at that object: nothing uploaded.
    s.clock.advance_ms(3 * DAY);
    let r = pass(&s, &v);
    assert_eq!((r.tiered, r.bytes_uploaded), (1, 0), "{r:?}");
    assert_eq!(objects(&s), objects_before, "no new object");
    assert!(matches!(v.extent_record(2), Ok(Some(ExtentRecord::Remote(r))) if r.key == backed.key));
    assert!(read(&v, 0, 4 * MIB as usize) == base);
    // Extent 3 brought up and then written: the record is plain local
    // before the data changes, so the next tiering uploads the new bytes.
    read(&v, 3 * MIB, 4096);
    assert!(matches!(
        v.extent_record(3),
        Ok(Some(ExtentRecord::Backed(_)))
    ));
    v.write(3 * MIB, &[9u8; 4096], true).expect("write");
    assert!(matches!(v.extent_record(3), Ok(Some(ExtentRecord::Local))));
    let mut want = base.clone();
    want[3 * MIB as usize..3 * MIB as usize + 4096].fill(9);
    // The whole read above brought 0 and 1 up (backed) and extent 2 back
    // (its own record, so plain local). Of the four tiered now, only 2 and
    // the written 3 upload.
    s.clock.advance_ms(3 * DAY);
    let r = pass(&s, &v);
    assert_eq!((r.tiered, r.failed), (4, 0), "{r:?}");
    assert!(
        r.bytes_uploaded > MIB && r.bytes_uploaded < 3 * MIB,
        "{r:?}"
    );
    assert_eq!(objects(&s), objects_before + 2);
    assert!(read(&v, 0, 4 * MIB as usize) == want);
    let snap = s.vols.export("v@s").expect("snapshot export");
    assert!(read(&snap, 0, 4 * MIB as usize) == base);
}

#[test]
fn read_ahead_fetches_the_copy_the_volume_reads_not_an_older_one_below() {
    let s = setup(TieringPolicy::All);
    let v = s.vols.get("v").expect("volume");
    let old: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
    v.write(0, &old, true).expect("write");
    assert_eq!(pass(&s, &v).tiered, 4);
    // The snapshot's layer holds the four old objects; the volume rewrites
    // extent 1 and tiers it again, so extent 1 has a newer object above.
    s.vols.snapshot_create("v", "s").expect("snapshot");
    v.write(MIB, &vec![9u8; MIB as usize], true)
        .expect("rewrite");
    assert_eq!(pass(&s, &v).tiered, 1);
    let mut want = old.clone();
    want[MIB as usize..2 * MIB as usize].fill(9);
    let fetches = || v.stats.fetches.load(std::sync::atomic::Ordering::SeqCst);
    let before = fetches();
    // A stream through the first three extents reads ahead two extents
    // from each read (so up to extent 3), each from the layer the volume
    // reads it in: extent 1 from the top layer, the others from below.
    let mut tracker = policy::ReadTracker::new();
    for e in 0..3u64 {
        let mut buf = vec![0u8; MIB as usize];
        let pattern = tracker.observe(e * MIB, MIB);
        v.read(e * MIB, &mut buf, pattern).expect("read");
        assert!(buf[..] == want[(e * MIB) as usize..((e + 1) * MIB) as usize]);
        while s.engine.tasks().running() > 0 {
            std::thread::yield_now();
        }
    }
    assert_eq!(
        fetches() - before,
        4,
        "extents 0-3 fetched once each, none of an older copy"
    );
}
