//! Crash safety of snapshots, clones, revert and redirect-on-write: the
//! daemon is killed (a failpoint aborts it like `kill -9`) inside each
//! operation; after a restart every volume, snapshot and clone reads exactly
//! what it should (qemu-img compare), and GC then deletes nothing still
//! referred to.

use std::process::Command;
use std::time::Duration;

use tierd_e2e::backends::{spec, Kind, Spec};
use tierd_e2e::{random_bytes, run, Daemon};

const MIB: usize = 1 << 20;
const SIZE: usize = 8 * MIB;

fn daemon(s: &Spec) -> Daemon {
    // Class `all`: the data sits in the object store before the snapshot,
    // so the writes after it fill partial blocks from remote frames.
    Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\ngc_grace = \"0s\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n",
        s.toml
    ))
}

fn snapshots(d: &Daemon) -> Vec<String> {
    d.get_json("/v1/volumes/v/snapshots")["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

/// v holds `d0`, tiered; snapshot s0; then v is rewritten in places
/// (partial blocks included) and cleanly restarted, so it holds `d1`.
fn prepare(d: &mut Daemon) -> (Vec<u8>, Vec<u8>) {
    d.create_volume_in("v", "8MiB", Some("1MiB"), "c");
    let d0 = random_bytes(SIZE, 4242);
    d.write_image("v", &d0);
    let (st, r) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(st, 200, "{r}");
    d.cli_ok(&["snapshot", "create", "v", "s0"]);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x21 0 2M",
            "-c",
            "write -P 0x22 3145728 4096",
            "-c",
            "write -P 0x23 5243392 1024",
            &d.uri("v"),
        ],
    );
    let mut d1 = d0.clone();
    d1[..2 * MIB].fill(0x21);
    d1[3 * MIB..3 * MIB + 4096].fill(0x22);
    d1[5243392..5243392 + 1024].fill(0x23);
    assert!(d.stop().success());
    d.restart();
    (d0, d1)
}

/// Arms `point`, runs the CLI command `op` (the daemon dies in it), and
/// restarts without failpoints.
fn crash_in(d: &mut Daemon, point: &str, op: &[&str]) {
    d.crash_at(point, 30, |d| {
        let _ = d.cli(op);
    });
}

/// After GC, everything still reads the same.
fn gc_keeps(d: &Daemon, checks: &[(&str, &str)], what: &str) {
    let (st, r) = d.post("/v1/gc");
    assert_eq!(st, 200, "{r}");
    assert!(r["errors"].as_array().is_none_or(|e| e.is_empty()), "{r}");
    for (export, file) in checks {
        d.assert_same(export, file, &format!("{what}, after GC"));
    }
}

fn scenario(kind: Kind, point: &str) {
    let Some(s) = spec(kind) else { return };
    let mut d = daemon(&s);
    let (d0, d1) = prepare(&mut d);
    let f0 = d.raw_file("d0.raw", &d0);
    let f1 = d.raw_file("d1.raw", &d1);
    let what = format!("after a crash at {point}");
    match point {
        "snapshot-before-commit" | "snapshot-after-commit" => {
            crash_in(&mut d, point, &["snapshot", "create", "v", "s1"]);
            d.assert_same("v", &f1, &what);
            d.assert_same("v@s0", &f0, &what);
            if point == "snapshot-after-commit" {
                assert_eq!(snapshots(&d), vec!["s0", "s1"], "{what}");
                d.assert_same("v@s1", &f1, &what);
                gc_keeps(&d, &[("v", &f1), ("v@s0", &f0), ("v@s1", &f1)], &what);
            } else {
                assert_eq!(snapshots(&d), vec!["s0"], "{what}");
                gc_keeps(&d, &[("v", &f1), ("v@s0", &f0)], &what);
            }
            // Writes after it land in the right layer.
            run(
                "qemu-io",
                &["-f", "raw", "-c", "write -P 0x55 0 4k", &d.uri("v")],
            );
            d.assert_same("v@s0", &f0, &what);
        }
        "snapshot-delete-before-commit" => {
            crash_in(&mut d, point, &["snapshot", "delete", "v", "s0"]);
            assert_eq!(snapshots(&d), vec!["s0"], "{what}");
            gc_keeps(&d, &[("v", &f1), ("v@s0", &f0)], &what);
        }
        "clone-before-commit" => {
            crash_in(&mut d, point, &["volume", "clone", "v@s0", "c1"]);
            let names: Vec<String> = d.get_json("/v1/volumes")["volumes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect();
            assert_eq!(names, vec!["v"], "{what}");
            gc_keeps(&d, &[("v", &f1), ("v@s0", &f0)], &what);
            // And the clone can be made after all.
            d.cli_ok(&["volume", "clone", "v@s0", "c1"]);
            d.assert_same("c1", &f0, &what);
        }
        "revert-before-commit" => {
            crash_in(&mut d, point, &["volume", "revert", "v", "s0"]);
            d.assert_same("v", &f1, &what);
            gc_keeps(&d, &[("v", &f1), ("v@s0", &f0)], &what);
            d.cli_ok(&["volume", "revert", "v", "s0"]);
            d.assert_same("v", &f0, &what);
        }
        "flush-blocks-before-commit" => {
            // A write after the snapshot, then a flush that dies before the
            // blocks it wrote are recorded: each block reads the old bytes or
            // the new ones, never anything else.
            d.crash_at(point, 30, |d| {
                let _ = Command::new("qemu-io")
                    .args([
                        "-f",
                        "raw",
                        "-c",
                        "write -P 0x66 6M 16k",
                        "-c",
                        "flush",
                        &d.uri("v"),
                    ])
                    .output();
            });
            let back = d.read_image("v");
            for (i, block) in back.chunks(4096).enumerate() {
                let old = &d1[i * 4096..(i + 1) * 4096];
                let in_write = (6 * MIB..6 * MIB + 16384).contains(&(i * 4096));
                assert!(
                    block == old || (in_write && block.iter().all(|&b| b == 0x66)),
                    "{what}: block {i} is neither the old nor the new data"
                );
            }
            d.assert_same("v@s0", &f0, &what);
            let (st, r) = d.post("/v1/gc");
            assert_eq!(st, 200, "{r}");
            d.assert_same("v@s0", &f0, &format!("{what}, after GC"));
        }
        other => panic!("no scenario for {other}"),
    }
    std::thread::sleep(Duration::from_millis(10));
}

macro_rules! points {
    ($($name:ident: $kind:expr, $point:expr;)*) => {
        $(#[test] fn $name() { scenario($kind, $point) })*
    };
}

points! {
    fs_snapshot_before_commit: Kind::Fs, "snapshot-before-commit";
    fs_snapshot_after_commit: Kind::Fs, "snapshot-after-commit";
    fs_snapshot_delete_before_commit: Kind::Fs, "snapshot-delete-before-commit";
    fs_clone_before_commit: Kind::Fs, "clone-before-commit";
    fs_revert_before_commit: Kind::Fs, "revert-before-commit";
    fs_flush_blocks_before_commit: Kind::Fs, "flush-blocks-before-commit";
    s3_snapshot_after_commit: Kind::S3, "snapshot-after-commit";
    azure_revert_before_commit: Kind::Azure, "revert-before-commit";
}
