//! Snapshots, clones and revert through the registry: what each reads
//! after writes, restarts, deletions and bad requests, and what deleting a
//! snapshot frees.

use std::sync::Arc;

use super::registry::tests::open;
use super::{CloneVolume, CreateVolume, Space, Volume, Volumes};
use crate::config::Config;
use crate::error::TierError;

const MIB: u64 = 1 << 20;

fn create(vols: &Volumes, name: &str) -> Arc<Volume> {
    vols.create(
        CreateVolume {
            name: name.into(),
            size: 8 * MIB,
            class: "default".into(),
            extent_size: Some(MIB),
        },
        &Config::embedded(),
    )
    .unwrap()
}

fn read(v: &Arc<Volume>, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    v.read(off, &mut b, policy::ReadPattern::RANDOM).unwrap();
    b
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn a_snapshot_keeps_what_was_written_before_it_and_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let vols = open(dir.path());
    let v = create(&vols, "v");
    let old = pattern(3 * MIB as usize, 1);
    v.write(0, &old, false).unwrap();
    vols.snapshot_create("v", "s1").unwrap();
    // Whole blocks, a sub-block write straddling two blocks, a trim.
    v.write(4096, &[7u8; 8192], false).unwrap();
    v.write(MIB + 1000, &[9u8; 5000], false).unwrap();
    v.trim(2 * MIB, MIB, false).unwrap();
    let snap = vols.export("v@s1").unwrap();
    assert!(snap.is_read_only());
    assert!(
        read(&snap, 0, 3 * MIB as usize) == old,
        "the snapshot reads the old bytes"
    );
    let mut want = old.clone();
    want[4096..12288].fill(7);
    want[MIB as usize + 1000..MIB as usize + 6000].fill(9);
    want[2 * MIB as usize..3 * MIB as usize].fill(0);
    assert!(
        read(&v, 0, 3 * MIB as usize) == want,
        "the volume reads the new bytes"
    );
    // A write to the snapshot's export is refused, naming it.
    let e = snap.write(0, &[1u8; 4096], false).unwrap_err();
    assert!(matches!(e, TierError::ReadOnly { .. }), "{e}");
    assert_eq!(e.kind().nbd_errno(), libc::EPERM as u32);
    // Only the blocks written since take space in the new top layer.
    v.flush().unwrap();
    let own = v.top().tier.allocated_bytes().unwrap();
    assert!(
        own <= 8192 + 8192 + 4096 * 2,
        "{own} bytes in the top layer"
    );
    // After a restart, both still read the same.
    drop((v, snap));
    drop(vols);
    let vols = open(dir.path());
    let v = vols.get("v").unwrap();
    assert!(read(&v, 0, 3 * MIB as usize) == want);
    let snap = vols.export("v@s1").unwrap();
    assert!(read(&snap, 0, 3 * MIB as usize) == old);
    assert_eq!(vols.export_names(), vec!["v", "v@s1"]);
}

#[test]
fn clones_are_independent_and_outlive_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let vols = open(dir.path());
    let config = Config::embedded();
    let v = create(&vols, "v");
    let base = pattern(2 * MIB as usize, 3);
    v.write(0, &base, false).unwrap();
    vols.snapshot_create("v", "s").unwrap();
    let c = vols
        .clone_volume(
            CloneVolume {
                source: "v@s".into(),
                name: "c".into(),
                class: None,
            },
            &config,
        )
        .unwrap();
    assert!(
        read(&c, 0, 2 * MIB as usize) == base,
        "a clone starts as the snapshot"
    );
    c.write(0, &[1u8; 4096], false).unwrap();
    v.write(8192, &[2u8; 4096], false).unwrap();
    assert_eq!(read(&c, 0, 4096), vec![1u8; 4096]);
    assert!(
        read(&c, 8192, 4096) == base[8192..12288],
        "origin writes stay out of the clone"
    );
    assert!(
        read(&v, 0, 4096) == base[..4096],
        "clone writes stay out of the origin"
    );
    // The origin cannot go while its clone reads through it, unless asked.
    let e = vols.delete("v", false, false).unwrap_err();
    assert!(
        matches!(&e, TierError::HasClones { clones, .. } if clones == &["c"]),
        "{e}"
    );
    vols.delete("v", false, true).unwrap();
    assert!(vols.export("v@s").is_err());
    c.flush().unwrap();
    drop((c, v));
    drop(vols);
    let vols = open(dir.path());
    let c = vols.get("c").unwrap();
    let mut want = base.clone();
    want[..4096].fill(1);
    assert!(
        read(&c, 0, 2 * MIB as usize) == want,
        "the clone kept its data"
    );
    // With the clone gone, nothing holds the old layers: their files go.
    vols.delete("c", false, false).unwrap();
    let files = std::fs::read_dir(dir.path().join("volumes"))
        .unwrap()
        .count();
    assert_eq!(files, 0, "every layer file was released");
}

#[test]
fn deleting_a_snapshot_frees_exactly_what_only_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let vols = open(dir.path());
    let v = create(&vols, "v");
    let old = pattern(2 * MIB as usize, 5);
    v.write(0, &old, true).unwrap();
    vols.snapshot_create("v", "s").unwrap();
    // Extent 0 rewritten whole, one block of extent 1.
    v.write(0, &vec![1u8; MIB as usize], false).unwrap();
    v.write(MIB, &[2u8; 4096], false).unwrap();
    v.flush().unwrap();
    let space = vols.space(&v);
    assert_eq!(
        space,
        Space {
            bytes_owned: MIB + 4096,
            bytes_shared: MIB - 4096,
            snapshots: vec![("s".into(), MIB + 4096)],
        }
    );
    let below = v.top().parent().cloned().unwrap();
    let before = below.tier.allocated_bytes().unwrap();
    assert!(before >= 2 * MIB, "{before}");
    vols.snapshot_delete("v", "s").unwrap();
    let after = below.tier.allocated_bytes().unwrap();
    assert_eq!(
        before - after,
        MIB + 4096,
        "extent 0 and one block of extent 1 freed"
    );
    let mut want = old.clone();
    want[..MIB as usize].fill(1);
    want[MIB as usize..MIB as usize + 4096].fill(2);
    assert!(read(&v, 0, 2 * MIB as usize) == want);
    drop((v, below));
    drop(vols);
    let vols = open(dir.path());
    assert!(read(&vols.get("v").unwrap(), 0, 2 * MIB as usize) == want);
}

#[test]
fn revert_rolls_back_and_bad_requests_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let vols = open(dir.path());
    let v = create(&vols, "v");
    v.write(0, &[1u8; 4096], false).unwrap();
    vols.snapshot_create("v", "a").unwrap();
    v.write(0, &[2u8; 4096], false).unwrap();
    vols.snapshot_create("v", "b").unwrap();
    v.write(0, &[3u8; 4096], false).unwrap();
    let attached = v.attach();
    assert!(matches!(
        vols.revert("v", "a", false),
        Err(TierError::VolumeBusy { .. })
    ));
    drop(attached);
    vols.revert("v", "a", false).unwrap();
    assert_eq!(read(&v, 0, 4096), vec![1u8; 4096]);
    assert_eq!(read(&vols.export("v@b").unwrap(), 0, 4096), vec![2u8; 4096]);
    v.write(0, &[4u8; 4096], false).unwrap();
    assert_eq!(read(&vols.export("v@a").unwrap(), 0, 4096), vec![1u8; 4096]);
    let names: Vec<String> = vols
        .snapshot_list("v")
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    // Deleting b: nothing reads through it any more, so its layer goes.
    let before = std::fs::read_dir(dir.path().join("volumes"))
        .unwrap()
        .count();
    vols.snapshot_delete("v", "b").unwrap();
    let after = std::fs::read_dir(dir.path().join("volumes"))
        .unwrap()
        .count();
    assert_eq!(after, before - 1);
    let e = vols.snapshot_create("v", "a").unwrap_err();
    assert!(matches!(e, TierError::SnapshotExists { .. }), "{e}");
    let e = vols.snapshot_delete("v", "zz").unwrap_err();
    assert!(e.to_string().contains("snapshots: a"), "{e}");
    assert!(matches!(
        vols.snapshot_create("v", "no/slash"),
        Err(TierError::InvalidName { .. })
    ));
    assert!(matches!(
        vols.export("v@zz"),
        Err(TierError::SnapshotNotFound { .. })
    ));
    assert!(matches!(
        vols.revert("nope", "a", false),
        Err(TierError::VolumeNotFound(_))
    ));
}
