//! Crash safety of backups: the daemon is killed (a failpoint aborts it
//! like `kill -9`) at each step of `tierd backup create`, during the
//! uploads, before the layer index, before and after the manifest. After a
//! restart the previous backup still restores exactly, the half-made one is
//! invisible (or, once its manifest landed, whole), the volume reads what
//! it should, the next backup completes, and GC deletes nothing a backup
//! names.

use tierd_e2e::backends::{spec, Kind, Spec};
use tierd_e2e::{random_bytes, Daemon};

const MIB: usize = 1 << 20;

fn daemon(s: &Spec) -> Daemon {
    Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\ngc_grace = \"0s\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"snapshot-only\"\ncooling_period = \"2d\"\n",
        s.toml
    ))
}

fn ids(d: &Daemon) -> Vec<String> {
    let out = d.cli_ok(&["backup", "list", "--volume", "v", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("backup list JSON");
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    v["backups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|b| b["id"].as_str().map(str::to_string))
        .collect()
}

fn restore(d: &Daemon, id: &str, name: &str) {
    d.cli_ok(&[
        "volume",
        "restore",
        "--backend",
        "store",
        "--volume",
        "v",
        "--backup",
        id,
        "--as",
        name,
    ]);
}

fn scenario(kind: Kind, point: &str) {
    let Some(s) = spec(kind) else { return };
    let mut d = daemon(&s);
    d.create_volume_in("v", "8MiB", Some("1MiB"), "c");
    let d0 = random_bytes(8 * MIB, 3);
    d.write_image("v", &d0);
    d.cli_ok(&["backup", "create", "v"]);
    let first = ids(&d);
    assert_eq!(first.len(), 1);
    let out = d.qemu_io("v", "write -P 0x61 1M 3M");
    assert!(out.status.success(), "{out:?}");
    let mut d1 = d0.clone();
    d1[MIB..4 * MIB].fill(0x61);
    let f0 = d.raw_file("d0.raw", &d0);
    let f1 = d.raw_file("d1.raw", &d1);

    d.crash_at(point, 30, |d| {
        let _ = d.cli(&["backup", "create", "v"]);
    });

    let what = format!("after a crash at {point}");
    let after = ids(&d);
    if point == "backup-after-manifest" {
        assert_eq!(after.len(), 2, "{what}: the committed backup is listed");
        restore(&d, &after[1], "half");
        d.assert_same("half", &f1, &what);
    } else {
        assert_eq!(after, first, "{what}: the half-made backup is invisible");
    }
    d.assert_same("v", &f1, &what);
    restore(&d, &first[0], "r0");
    d.assert_same("r0", &f0, &what);

    // The next backup completes and restores exactly; the crashed one's
    // snapshot is gone.
    d.cli_ok(&["backup", "create", "v"]);
    let last = ids(&d);
    restore(&d, last.last().expect("a backup"), "r1");
    d.assert_same("r1", &f1, &what);
    let snaps = d.cli_ok(&["snapshot", "list", "v", "--json"]);
    assert!(!snaps.contains("backup-"), "{what}: {snaps}");

    // GC deletes nothing a backup names: every backup restores after it.
    let (st, r) = d.post("/v1/gc");
    assert_eq!(st, 200, "{r}");
    for (i, id) in last.iter().enumerate() {
        let name = format!("g{i}");
        restore(&d, id, &name);
        let want = if i == 0 { &f0 } else { &f1 };
        d.assert_same(&name, want, &format!("{what}, backup {id} after GC"));
    }
}

#[test]
fn fs_during_uploads() {
    scenario(Kind::Fs, "before-upload:2");
}

#[test]
fn fs_before_index() {
    scenario(Kind::Fs, "backup-before-index");
}

#[test]
fn fs_before_manifest() {
    scenario(Kind::Fs, "backup-before-manifest");
}

#[test]
fn fs_after_manifest() {
    scenario(Kind::Fs, "backup-after-manifest");
}

#[test]
fn s3_before_manifest() {
    scenario(Kind::S3, "backup-before-manifest");
}

#[test]
fn azure_during_uploads() {
    scenario(Kind::Azure, "before-upload:2");
}
