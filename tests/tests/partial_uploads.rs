//! Uploads cut short by a crash leave pieces in the backend (a temporary
//! file, a multipart upload, uncommitted blocks); GC reclaims those older
//! than `gc_grace`, on fs, LocalStack and Azurite. The daemon is killed (a
//! failpoint aborts it like `kill -9`) in the middle of a large upload, after
//! its data went out and before it was committed.

use std::time::Duration;

use tierd_e2e::backends::{partial_uploads, spec, Kind};
use tierd_e2e::{random_bytes, Daemon};

const MIB: usize = 1 << 20;

fn killed_mid_upload(kind: Kind, point: &str) {
    let Some(s) = spec(kind) else { return };
    // 16 MiB extents: above the S3 multipart and Azure block thresholds.
    let mut d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\ngc_interval = \"1h\"\ngc_grace = \"5s\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n",
        s.toml
    ));
    d.create_volume_in("v", "64MiB", Some("16MiB"), "c");
    let data = random_bytes(64 * MIB, 11);
    d.write_image("v", &data);
    assert_eq!(partial_uploads(&s, &d), 0);

    d.crash_at(point, 60, |d| {
        let _ = d.cli(&["tier", "v", "--wait"]);
    });
    let left = partial_uploads(&s, &d);
    assert!(left >= 1, "the kill left no partial upload to reclaim");

    // Young pieces stay (an upload may still be running) ...
    let (status, gc) = d.post("/v1/gc");
    assert_eq!(status, 200, "{gc}");
    assert_eq!(gc["partial_uploads"], 0, "{gc}");
    assert_eq!(partial_uploads(&s, &d), left);
    // ... and once older than gc_grace they go.
    std::thread::sleep(Duration::from_millis(5500));
    let (_, gc) = d.post("/v1/gc");
    assert_eq!(gc["partial_uploads"], left as u64, "{gc}");
    assert_eq!(gc["errors"], serde_json::json!([]), "{gc}");
    assert_eq!(partial_uploads(&s, &d), 0, "reclaimed in the backend");

    // Nothing committed was touched: the volume reads the same, tiers, and
    // reads the same from the backend.
    assert!(d.read_image("v") == data);
    d.cli_ok(&["tier", "v", "--wait"]);
    let show = d.get_json("/v1/volumes/v");
    assert_eq!(show["extents_remote"], 4, "{show}");
    assert!(d.read_image("v") == data);
}

#[test]
fn fs_temp_files_are_reclaimed() {
    killed_mid_upload(Kind::Fs, "fs-put-before-rename");
}

#[test]
fn s3_multipart_uploads_are_reclaimed() {
    killed_mid_upload(Kind::S3, "s3-multipart-before-complete");
}

#[test]
fn azure_uncommitted_blocks_are_reclaimed() {
    killed_mid_upload(Kind::Azure, "azure-blocks-before-commit");
}
