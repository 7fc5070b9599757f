//! Tiering end to end, for each backend (local directory, LocalStack S3,
//! Azurite): cold extents leave the local disk and every byte still reads back;
//! retrieval policies do what they say; writes, trims and policy edits on cold
//! data; tampered objects give EIO, never wrong bytes.

use std::time::Duration;

use tierd_e2e::backends::{spec, tamper, Kind, Spec, Tamper};
use tierd_e2e::{random_bytes, run, Daemon};

macro_rules! for_each_backend {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;
            #[test]
            fn fs() {
                super::$scenario(Kind::Fs)
            }
            #[test]
            fn s3() {
                super::$scenario(Kind::S3)
            }
            #[test]
            fn azure() {
                super::$scenario(Kind::Azure)
            }
        }
    };
}

const MIB: u64 = 1 << 20;

/// A daemon whose class `c` uses the backend under test with `class_toml`.
fn daemon(s: &Spec, class_toml: &str) -> Daemon {
    Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\n{}\n[classes.c]\nbackend = \"store\"\n{class_toml}\n",
        s.toml
    ))
}

/// Creates volume `v` of `size_mib` in class `c` and fills its first
/// `data_mib` with random bytes; returns those bytes.
fn filled(d: &Daemon, size_mib: u64, data_mib: u64) -> Vec<u8> {
    d.cli_ok(&[
        "volume",
        "create",
        "v",
        "--size",
        &format!("{size_mib}MiB"),
        "--class",
        "c",
    ]);
    let data = random_bytes((data_mib * MIB) as usize, size_mib * 31 + data_mib);
    d.write_image("v", &data);
    data
}

/// Reads the whole volume and checks it against `data` followed by zeros.
fn verify(d: &Daemon, data: &[u8], size_mib: u64) {
    let back = d.read_image("v");
    assert_eq!(back.len() as u64, size_mib * MIB);
    assert!(back[..data.len()] == *data, "data differs after tiering");
    assert!(
        back[data.len()..].iter().all(|&b| b == 0),
        "the unwritten tail is not zero"
    );
}

fn info(d: &Daemon) -> serde_json::Value {
    d.get_json("/v1/volumes/v")
}

fn tier(d: &Daemon) -> serde_json::Value {
    let (status, report) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    report
}

fn keys(d: &Daemon) -> Vec<(u64, String)> {
    d.get_json("/v1/volumes/v/extents")["extents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["extent"].as_u64()?, e["key"].as_str()?.to_string())))
        .collect()
}

fn tier_and_read_back(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let mut d = daemon(&s, "tiering_policy = \"all\"\n");
    let data = filled(&d, 24, 20);
    let before = info(&d)["bytes_local"].as_u64().unwrap();
    assert!(before >= 20 * MIB, "{before}");
    let report = tier(&d);
    assert_eq!(report["tiered"], 5, "{report}");
    let v = info(&d);
    assert_eq!(v["extents_remote"], 5, "{v}");
    assert_eq!(v["bytes_remote"], 20 * MIB);
    let after = v["bytes_local"].as_u64().unwrap();
    assert!(
        after < MIB,
        "local disk use did not fall: {after} bytes still allocated"
    );
    // The objects exist in the store, and each is referenced by exactly one extent.
    let (_, gc) = d.post("/v1/gc");
    assert_eq!(gc["referenced"], 5, "{gc}");
    assert_eq!(gc["deleted"], 0, "{gc}");
    verify(&d, &data, 24);

    // Small random reads of cold data fetch frames, not extents. Restart first:
    // the full read above left every extent in the memory cache.
    assert!(d.stop().success());
    d.restart();
    let fetched0 = info(&d)["bytes_fetched"].as_u64().unwrap();
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read 1M 4k",
            "-c",
            "read 9437184 4k",
            "-c",
            "read 17M 4k",
            &d.uri("v"),
        ],
    );
    let fetched = info(&d)["bytes_fetched"].as_u64().unwrap() - fetched0;
    assert!(fetched > 0, "the reads must have fetched something");
    assert!(
        fetched <= 3 * 128 * 1024,
        "3 random 4 KiB reads fetched {fetched} bytes (an extent is 4 MiB)"
    );
    assert_eq!(
        info(&d)["extents_remote"],
        5,
        "class all with default retrieval keeps data cold"
    );
}
for_each_backend!(tier_and_read_back);

fn auto_scans_stay_cold_random_reads_come_back(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let d = daemon(&s, "tiering_policy = \"auto\"\ncooling_period = \"1s\"\n");
    let data = filled(&d, 16, 16);
    // Nothing has cooled yet.
    assert_eq!(tier(&d)["tiered"], 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(tier(&d)["tiered"], 4);
    // A sequential scan (qemu-img reads 2 MiB at a time) leaves everything cold.
    verify(&d, &data, 16);
    let v = info(&d);
    assert_eq!(
        (v["extents_remote"].as_u64(), v["rehydrations"].as_u64()),
        (Some(4), Some(0)),
        "{v}"
    );
    // Random small reads bring their extents back.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read 4100k 4k",
            "-c",
            "read 9000k 4k",
            &d.uri("v"),
        ],
    );
    let v = info(&d);
    assert_eq!(
        (v["extents_remote"].as_u64(), v["rehydrations"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    verify(&d, &data, 16);
}
for_each_backend!(auto_scans_stay_cold_random_reads_come_back);

fn retrieval_policies(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    // on-read: even a scan brings data back.
    let d = daemon(
        &s,
        "tiering_policy = \"all\"\nretrieval_policy = \"on-read\"\n",
    );
    let data = filled(&d, 8, 8);
    assert_eq!(tier(&d)["tiered"], 2);
    verify(&d, &data, 8);
    assert_eq!(
        info(&d)["extents_remote"],
        0,
        "on-read brings every read extent back"
    );
    drop(d);
    // never: random reads leave it cold.
    let Some(s) = spec(kind) else { return };
    let d = daemon(
        &s,
        "tiering_policy = \"auto\"\ncooling_period = \"1s\"\nretrieval_policy = \"never\"\n",
    );
    let data = filled(&d, 8, 8);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(tier(&d)["tiered"], 2);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read 100k 4k",
            "-c",
            "read 5000k 4k",
            &d.uri("v"),
        ],
    );
    assert_eq!(info(&d)["extents_remote"], 2, "never keeps data cold");
    // promote: a pass brings the whole volume back.
    let (status, report) = d.post("/v1/volumes/v/promote?wait=true");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rehydrated"], 2, "{report}");
    let v = info(&d);
    assert_eq!(v["extents_remote"], 0, "{v}");
    assert!(v["bytes_local"].as_u64().unwrap() >= 8 * MIB);
    verify(&d, &data, 8);
}
for_each_backend!(retrieval_policies);

fn writes_and_trims_on_cold_extents(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let d = daemon(&s, "tiering_policy = \"all\"\n");
    let mut data = filled(&d, 20, 20);
    assert_eq!(tier(&d)["tiered"], 5);
    // Partial write into extent 1 (read-modify-write), full write of extent 2
    // (no fetch), trim of all of extent 3 (becomes a zero extent), trim of part
    // of extent 4.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x42 5M 8k",
            "-c",
            "write -P 0x43 8M 4M",
            "-c",
            "discard 12M 4M",
            "-c",
            "discard 17M 1M",
            &d.uri("v"),
        ],
    );
    data[5 * MIB as usize..5 * MIB as usize + 8192].fill(0x42);
    data[8 * MIB as usize..12 * MIB as usize].fill(0x43);
    data[12 * MIB as usize..16 * MIB as usize].fill(0);
    data[17 * MIB as usize..18 * MIB as usize].fill(0);
    verify(&d, &data, 20);
    let states: Vec<(u64, String)> = d.get_json("/v1/volumes/v/extents")["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["extent"].as_u64().unwrap(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![(0, "remote".into()), (3, "zero".into())],
        "extents 1, 2 and 4 became local, 3 a zero extent"
    );
    // Tiering again tiers the rewritten extents; the old objects are garbage.
    assert_eq!(tier(&d)["tiered"], 3);
    verify(&d, &data, 20);
}
for_each_backend!(writes_and_trims_on_cold_extents);

/// The extents of volume `v` in `state`.
fn in_state(d: &Daemon, state: &str) -> Vec<u64> {
    d.get_json("/v1/volumes/v/extents")["extents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == state)
        .filter_map(|e| e["extent"].as_u64())
        .collect()
}

fn write_overlays_on_cold_extents(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let mut d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\ngc_grace = \"0s\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\nretrieval_policy = \"never\"\nwrite_overlay = true\n",
        s.toml
    ));
    let mut data = filled(&d, 16, 16);
    assert_eq!(tier(&d)["tiered"], 4);
    // Partial writes to three cold extents (4 MiB each), one not aligned to
    // blocks, and a discard of part of another: each keeps what it writes
    // local beside the object.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x42 5M 8k",
            "-c",
            "write -P 0x43 9437194 100",
            "-c",
            "discard 13M 8k",
            &d.uri("v"),
        ],
    );
    data[5 * MIB as usize..5 * MIB as usize + 8192].fill(0x42);
    data[9_437_194..9_437_294].fill(0x43);
    data[13 * MIB as usize..13 * MIB as usize + 8192].fill(0);
    verify(&d, &data, 16);
    assert_eq!(in_state(&d, "overlay"), vec![1, 2, 3]);
    assert_eq!(in_state(&d, "remote"), vec![0]);
    let v = info(&d);
    assert_eq!(v["extents_overlay"], 3, "{v}");
    assert!(
        v["bytes_local"].as_u64().unwrap() <= 64 << 10,
        "only the blocks written: {v}"
    );
    assert_eq!(v["rehydrations"], 0, "{v}");
    // GC keeps the objects the overlays read from.
    let (_, gc) = d.post("/v1/gc");
    assert_eq!(
        (gc["referenced"].as_u64(), gc["deleted"].as_u64()),
        (Some(4), Some(0)),
        "{gc}"
    );
    // What qemu-io flushed survives a kill.
    d.kill9();
    d.restart();
    assert_eq!(in_state(&d, "overlay"), vec![1, 2, 3]);
    verify(&d, &data, 16);
    // A pass under `all` merges every overlay into a new object; the old
    // ones are then garbage.
    let r = tier(&d);
    assert_eq!(
        (r["merged"].as_u64(), r["failed"].as_u64()),
        (Some(3), Some(0)),
        "{r}"
    );
    assert_eq!(in_state(&d, "remote"), vec![0, 1, 2, 3]);
    assert!(
        info(&d)["bytes_local"].as_u64().unwrap() == 0,
        "{}",
        info(&d)
    );
    verify(&d, &data, 16);
    let (_, gc) = d.post("/v1/gc");
    assert_eq!(
        (gc["referenced"].as_u64(), gc["deleted"].as_u64()),
        (Some(4), Some(3)),
        "{gc}"
    );
    verify(&d, &data, 16);
}
for_each_backend!(write_overlays_on_cold_extents);

fn tampered_objects_give_eio(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let d = daemon(
        &s,
        "tiering_policy = \"all\"\nretrieval_policy = \"never\"\n",
    );
    filled(&d, 8, 8);
    assert_eq!(tier(&d)["tiered"], 2);
    let k = keys(&d);
    tamper(&s, &d, &k[0].1, Tamper::Corrupt);
    tamper(&s, &d, &k[1].1, Tamper::Delete);
    // The corrupted byte is mid-object (the header before the frames puts
    // it just before 2M): read the frames around it.
    for (off, len) in [("1984k", "128k"), ("4M", "64k")] {
        let out = std::process::Command::new("qemu-io")
            .args(["-f", "raw", "-c", &format!("read {off} {len}"), &d.uri("v")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Input/output error"),
            "read at {off} must fail with EIO: {text}"
        );
    }
    assert!(info(&d)["integrity_errors"].as_u64().unwrap() >= 1);
    let log = d.log();
    assert!(
        log.contains(&k[0].1) && log.contains(&k[1].1),
        "the log names the keys"
    );
}
for_each_backend!(tampered_objects_give_eio);

fn policy_edit_and_sighup(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let d = daemon(&s, "tiering_policy = \"none\"\n");
    let data = filled(&d, 8, 8);
    let report = tier(&d);
    assert!(
        report["held"].as_str().unwrap_or("").contains("none"),
        "{report}"
    );
    // An invalid edit is refused and the old policy stays.
    d.rewrite_config(&format!(
        "{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"eventually\"\n",
        s.toml
    ));
    d.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.log().contains("configuration refused"), "{}", d.log());
    assert!(tier(&d)["held"].is_string());
    // A valid edit applies to the existing volume at the next pass.
    d.rewrite_config(&format!(
        "[tiering]\nscan_interval = \"1h\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n",
        s.toml
    ));
    d.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !d.log().contains("configuration reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tier(&d)["tiered"], 2);
    verify(&d, &data, 8);
}
for_each_backend!(policy_edit_and_sighup);

fn garbage_is_collected(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\ngc_grace = \"0s\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n",
        s.toml
    ));
    let mut data = filled(&d, 12, 12);
    assert_eq!(tier(&d)["tiered"], 3);
    let old = keys(&d);
    // Rewriting extent 1 entirely and trimming extent 2 leaves two objects no
    // extent refers to.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x11 4M 4M",
            "-c",
            "discard 8M 4M",
            &d.uri("v"),
        ],
    );
    data[4 * MIB as usize..8 * MIB as usize].fill(0x11);
    data[8 * MIB as usize..].fill(0);
    let (_, gc) = d.post("/v1/gc");
    assert_eq!(
        (gc["referenced"].as_u64(), gc["deleted"].as_u64()),
        (Some(1), Some(2)),
        "{gc}"
    );
    verify(&d, &data, 12);
    let (_, again) = d.post("/v1/gc");
    assert_eq!(
        (again["listed"].as_u64(), again["deleted"].as_u64()),
        (Some(1), Some(0)),
        "{again}"
    );
    assert_eq!(keys(&d), vec![old[0].clone()], "extent 0 keeps its object");
    // A deleted volume's objects are all garbage.
    d.cli_ok(&["volume", "delete", "v"]);
    let (_, last) = d.post("/v1/gc");
    assert_eq!(
        (last["deleted"].as_u64(), last["referenced"].as_u64()),
        (Some(1), Some(0)),
        "{last}"
    );
}
for_each_backend!(garbage_is_collected);

fn compressed_extents(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let mut d = daemon(&s, "tiering_policy = \"all\"\ncompression = \"zstd\"\n");
    d.cli_ok(&["volume", "create", "v", "--size", "8MiB", "--class", "c"]);
    // Extent 0 compressible text, extent 1 random.
    let mut data: Vec<u8> = b"tierd keeps hot extents local and cold ones in the object store. "
        .iter()
        .cycle()
        .take(4 * MIB as usize)
        .copied()
        .collect();
    data.extend(random_bytes(4 * MIB as usize, 77));
    d.write_image("v", &data);
    assert_eq!(tier(&d)["tiered"], 2);
    let ext = d.get_json("/v1/volumes/v/extents");
    let stored: Vec<u64> = ext["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stored_size"].as_u64().unwrap())
        .collect();
    assert!(stored[0] < MIB / 4, "text compresses: {stored:?}");
    assert!(
        stored[1] >= 4 * MIB - 64 * 1024,
        "random data does not: {stored:?}"
    );
    verify(&d, &data, 8);
    // A small read of the compressed extent fetches one compressed frame.
    assert!(d.stop().success());
    d.restart();
    let before = info(&d)["bytes_fetched"].as_u64().unwrap();
    run("qemu-io", &["-f", "raw", "-c", "read 2M 4k", &d.uri("v")]);
    let fetched = info(&d)["bytes_fetched"].as_u64().unwrap() - before;
    assert!(
        fetched > 0 && fetched < 16 * 1024,
        "one compressed 64 KiB frame: fetched {fetched}"
    );
}
for_each_backend!(compressed_extents);
