//! Write overlays (`write_overlay`): a write to part of a tiered extent
//! keeps its blocks local and the rest in the object. These tests drive a
//! volume on an in-memory object store through writes, reads, flushes,
//! restarts, merges, bring-backs, trims, snapshots and backups, and check
//! every byte read back against what was written.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use backends::{MemoryStore, ObjectStore};
use heatmap::{Clock, HeatConfig, HeatMap, ManualClock};
use policy::{ClassConfig, RetrievalPolicy, TieringPolicy};

use crate::config::Config;
use crate::extent_map::{ExtentRecord, Slot};
use crate::migrate::Outcome;
use crate::volume::{CreateVolume, Volume, Volumes};

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;

struct Setup {
    dir: tempfile::TempDir,
    config: Config,
    class: ClassConfig,
    engine: Arc<crate::engine::Engine>,
    store: Arc<dyn ObjectStore>,
}

fn setup(retrieval: RetrievalPolicy) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::embedded();
    let class = ClassConfig {
        backend: Some("local".into()),
        write_overlay: true,
        ..ClassConfig::with_policies(TieringPolicy::All, None, retrieval)
    };
    config.classes.insert("c".into(), class.clone());
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
    let engine = crate::engine::tests::engine_with(
        config.clone(),
        BTreeMap::from([("local".to_string(), store.clone())]),
    );
    Setup {
        dir,
        config,
        class,
        engine,
        store,
    }
}

/// Opens the volumes of `s` (again, after a drop: a restart).
fn open(s: &Setup) -> Volumes {
    let cfg = HeatConfig::default();
    let db = crate::db::open(&s.dir.path().join("db"), &cfg).expect("db");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1000));
    let heat = Arc::new(HeatMap::new(db.clone(), clock.clone(), &cfg).expect("heat"));
    Volumes::open(db, heat, s.engine.clone(), clock, s.dir.path()).expect("volumes")
}

/// A 4 MiB volume of 1 MiB extents holding a pattern, every extent tiered.
fn tiered_volume(s: &Setup, vols: &Volumes) -> (Arc<Volume>, Vec<u8>) {
    vols.create(
        CreateVolume {
            name: "v".into(),
            size: 4 * MIB,
            class: "c".into(),
            extent_size: Some(MIB),
        },
        &s.config,
    )
    .expect("create");
    let v = vols.get("v").expect("volume");
    let data: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
    v.write(0, &data, true).expect("write");
    for e in 0..4 {
        let r = v.tier_extent(e, &s.class, "local", &s.store).expect("tier");
        assert!(matches!(r, Outcome::Tiered { .. }), "{r:?}");
    }
    (v, data)
}

fn read(v: &Arc<Volume>, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    v.read(off, &mut b, policy::ReadPattern::RANDOM)
        .expect("read");
    b
}

fn write(v: &Arc<Volume>, want: &mut [u8], off: u64, bytes: &[u8]) {
    v.write(off, bytes, false).expect("write");
    want[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
}

fn fetches(v: &Volume) -> u64 {
    v.stats.fetches.load(Ordering::SeqCst)
}

fn slot(v: &Volume, e: u64) -> Slot {
    v.top().map.read().slot(e)
}

/// Bytes the top layer's file holds in extent `e`.
fn local_bytes(v: &Volume, e: u64) -> u64 {
    v.top()
        .tier
        .allocation(e * MIB, MIB, usize::MAX)
        .expect("allocation")
        .iter()
        .filter(|a| !a.hole)
        .map(|a| a.len)
        .sum()
}

#[test]
fn partial_writes_land_in_an_overlay_and_read_back_merged() {
    let s = setup(RetrievalPolicy::Never);
    let vols = open(&s);
    let (v, mut want) = tiered_volume(&s, &vols);
    let f0 = fetches(&v);
    // A whole block: nothing to fetch, the extent stays tiered.
    write(&v, &mut want, MIB + 2 * BLOCK, &[7u8; BLOCK as usize]);
    assert_eq!(slot(&v, 1), Slot::Overlay);
    assert_eq!(fetches(&v), f0, "a whole-block write fetches nothing");
    assert_eq!(local_bytes(&v, 1), BLOCK, "only the block written is local");
    // A read of the overlay's own block needs no object.
    assert_eq!(
        read(&v, MIB + 2 * BLOCK, 4096),
        want[(MIB + 2 * BLOCK) as usize..][..4096]
    );
    assert_eq!(fetches(&v), f0);
    // 100 bytes inside a block: that block is filled from the object first.
    write(&v, &mut want, 2 * MIB + 3 * BLOCK + 10, &[9u8; 100]);
    assert_eq!(fetches(&v), f0 + 1, "one ranged GET for the edge block");
    assert_eq!(slot(&v, 2), Slot::Overlay);
    // Every byte of the volume reads as written.
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
    assert_eq!(v.info().extents_overlay, 2);
    assert_eq!(v.info().extents_remote, 2);
    // The record names the blocks only once a flush made them durable.
    let rec = |e| v.top().map.read().record(e).expect("record");
    assert!(matches!(rec(1), Some(ExtentRecord::Remote(_))));
    v.flush().expect("flush");
    match rec(1) {
        Some(ExtentRecord::Overlay { blocks, .. }) => {
            assert_eq!(blocks.count(), 1);
            assert!(blocks.contains(2));
        }
        other => panic!("extent 1 after a flush: {other:?}"),
    }
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
}

#[test]
fn a_restart_keeps_flushed_overlay_blocks_and_frees_unflushed_ones() {
    let s = setup(RetrievalPolicy::Never);
    let vols = open(&s);
    let (v, data) = tiered_volume(&s, &vols);
    let mut want = data.clone();
    write(&v, &mut want, MIB, &[1u8; 8192]);
    v.flush().expect("flush");
    // Not flushed: lost at the crash, as a disk's write cache would lose
    // them, and never read back from the file as if held.
    v.write(MIB + 5 * BLOCK, &[2u8; 4096], false)
        .expect("write");
    v.write(3 * MIB, &[3u8; 4096], false).expect("write");
    drop(v);
    drop(vols);
    let vols = open(&s);
    let v = vols.get("v").expect("volume");
    assert_eq!(slot(&v, 1), Slot::Overlay);
    assert_eq!(slot(&v, 3), Slot::Remote);
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
    assert_eq!(
        local_bytes(&v, 3),
        0,
        "stray blocks of a remote extent are punched"
    );
}

#[test]
fn a_pass_merges_an_overlay_into_a_new_object() {
    let s = setup(RetrievalPolicy::Never);
    let vols = open(&s);
    let (v, mut want) = tiered_volume(&s, &vols);
    let old_key = |v: &Volume| match v.top().map.read().record(1).expect("record") {
        Some(r) => r.remote().map(|r| r.key.clone()),
        None => None,
    };
    let before = old_key(&v);
    write(&v, &mut want, MIB + 10 * BLOCK, &[4u8; 3 * BLOCK as usize]);
    let r = v
        .tier_extent(1, &s.class, "local", &s.store)
        .expect("merge");
    assert!(matches!(r, Outcome::Merged { .. }), "{r:?}");
    assert_eq!(slot(&v, 1), Slot::Remote);
    assert_ne!(old_key(&v), before, "a new object");
    assert_eq!(local_bytes(&v, 1), 0, "the overlay's blocks are freed");
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
    // A merge of an extent that is not an overlay moves nothing.
    let r = v.tier_extent(1, &s.class, "local", &s.store).expect("tier");
    assert_eq!(r, Outcome::NotLocal);
}

#[test]
fn bringing_an_overlay_back_keeps_its_blocks() {
    let s = setup(RetrievalPolicy::OnRead);
    let vols = open(&s);
    let (v, mut want) = tiered_volume(&s, &vols);
    write(&v, &mut want, MIB + 4 * BLOCK, &[5u8; 4096]);
    write(&v, &mut want, 2 * MIB, &[6u8; 4096]);
    v.flush().expect("flush");
    // A read of a block the overlay lacks brings the extent back, merged.
    assert_eq!(read(&v, MIB, 4096), want[MIB as usize..][..4096]);
    assert_eq!(slot(&v, 1), Slot::Local);
    assert_eq!(
        read(&v, MIB, MIB as usize),
        want[MIB as usize..][..MIB as usize]
    );
    // Promote brings back the other, merged too.
    let r = crate::migrate::promote(&v).expect("promote");
    assert!(r.rehydrated >= 1, "{r:?}");
    assert_eq!(slot(&v, 2), Slot::Local);
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
}

#[test]
fn an_overlay_written_whole_is_local_and_one_trimmed_whole_is_zero() {
    let s = setup(RetrievalPolicy::Never);
    let vols = open(&s);
    let (v, mut want) = tiered_volume(&s, &vols);
    let f0 = fetches(&v);
    for b in 0..MIB / BLOCK {
        write(&v, &mut want, 2 * MIB + b * BLOCK, &[(b % 200) as u8; 4096]);
    }
    assert_eq!(slot(&v, 2), Slot::Local, "every block written: local");
    assert_eq!(fetches(&v), f0, "and nothing was fetched");
    assert!(matches!(
        v.top().map.read().record(2).expect("record"),
        None | Some(ExtentRecord::Local)
    ));
    write(&v, &mut want, 3 * MIB + BLOCK, &[8u8; 4096]);
    v.trim(3 * MIB, MIB, false).expect("trim");
    want[3 * MIB as usize..].fill(0);
    assert_eq!(slot(&v, 3), Slot::Zero);
    assert_eq!(local_bytes(&v, 3), 0, "the overlay's blocks went with it");
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
    // A partial trim lands in the overlay like any write of zeros.
    v.trim(MIB + 8 * BLOCK, 2 * BLOCK, false).expect("trim");
    want[(MIB + 8 * BLOCK) as usize..(MIB + 10 * BLOCK) as usize].fill(0);
    assert_eq!(slot(&v, 1), Slot::Overlay);
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
}

#[test]
fn snapshots_and_backups_read_overlays_as_written() {
    let s = setup(RetrievalPolicy::Never);
    let vols = open(&s);
    let (v, mut want) = tiered_volume(&s, &vols);
    write(&v, &mut want, MIB + 6 * BLOCK, &[1u8; 4096]);
    vols.snapshot_create("v", "s").expect("snapshot");
    let at_snapshot = want.clone();
    // The new top layer inherits the overlay; a write that covers part of
    // a block is filled from it (its block, then the object's).
    write(&v, &mut want, MIB + 6 * BLOCK + 100, &[2u8; 50]);
    write(&v, &mut want, MIB + 9 * BLOCK + 7, &[3u8; 10]);
    let snap = vols.export("v@s").expect("snapshot export");
    assert_eq!(read(&snap, 0, 4 * MIB as usize), at_snapshot);
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
    // A backup lists whole objects: the frozen overlay is merged first.
    crate::backup::create(&vols, "v").expect("backup");
    assert_eq!(snap.top().map.read().slot(1), Slot::Remote);
    assert_eq!(read(&snap, 0, 4 * MIB as usize), at_snapshot);
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
}

#[test]
fn a_pass_merges_the_overlays_a_snapshot_froze() {
    let s = setup(RetrievalPolicy::Never);
    let vols = open(&s);
    let (v, mut want) = tiered_volume(&s, &vols);
    write(&v, &mut want, 2 * MIB + 3 * BLOCK, &[4u8; 8192]);
    vols.snapshot_create("v", "s").expect("snapshot");
    let snap = vols.export("v@s").expect("snapshot export");
    assert_eq!(snap.top().map.read().slot(2), Slot::Overlay);
    let held = vols.held_layers(&v);
    let r = crate::migrate::run_pass(&v, s.dir.path(), &held).expect("pass");
    assert_eq!((r.merged, r.failed), (1, 0), "{r:?}");
    assert_eq!(snap.top().map.read().slot(2), Slot::Remote);
    assert_eq!(
        local_bytes(&snap, 2),
        0,
        "the frozen overlay's blocks are freed"
    );
    assert_eq!(read(&snap, 0, 4 * MIB as usize), want);
    assert_eq!(read(&v, 0, 4 * MIB as usize), want);
}
