//! Crash safety: the daemon is killed at named points of the migration and
//! rehydration state machines (failpoints, which abort the process like
//! `kill -9`) and at random moments of tier passes; after each restart every
//! block must read back exactly as written, and tiering must resume.

use std::time::Duration;

use tierd_e2e::backends::{spec, Kind, Spec};
use tierd_e2e::{random_bytes, run, Daemon};

const MIB: u64 = 1 << 20;
const SIZE_MIB: u64 = 24;

fn daemon(s: &Spec, class: &str) -> Daemon {
    Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\n{}\n[classes.c]\nbackend = \"store\"\n{class}\n",
        s.toml
    ))
}

fn fill(d: &Daemon, seed: u64) -> Vec<u8> {
    d.cli_ok(&[
        "volume",
        "create",
        "v",
        "--size",
        &format!("{SIZE_MIB}MiB"),
        "--class",
        "c",
        "--extent-size",
        "1MiB",
    ]);
    let mut data = random_bytes((SIZE_MIB * MIB) as usize, seed);
    // Two all-zero extents: they become zero extents, not objects.
    data[3 * MIB as usize..5 * MIB as usize].fill(0);
    run(
        "qemu-io",
        &["-f", "raw", "-c", "write -z 3M 2M", &d.uri("v")],
    );
    d.write_image("v", &data);
    data
}

fn verify(d: &Daemon, data: &[u8], what: &str) {
    let back = d.read_image("v");
    if back != data {
        let first = back.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{what}: volume differs from what was written, first at byte {first}\n{}",
            d.log()
        );
    }
}

/// POSTs `path`, during which the daemon dies: the answer, if any, is moot.
fn post_dying(d: &Daemon, path: &str) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let _ = client.post(format!("{}{path}", d.api())).send();
}

/// Kills the daemon at failpoint `point` (its `nth` hit) during the operation
/// `op` (a POST path), restarts it, and checks every byte.
fn kill_at(kind: Kind, point: &str, nth: u32, op: &str, class: &str) {
    let Some(s) = spec(kind) else { return };
    let mut d = daemon(&s, class);
    let data = fill(&d, nth as u64 * 7 + point.len() as u64);
    if op.contains("promote") {
        let (st, r) = d.post("/v1/volumes/v/tier?wait=true");
        assert_eq!(st, 200, "{r}");
    }
    // Restart with the failpoint armed, then run the operation that hits it.
    d.crash_at(&format!("{point}:{nth}"), 30, |d| post_dying(d, op));
    verify(&d, &data, &format!("after a crash at {point}:{nth}"));
    // Tiering resumes and the result is still right.
    let (st, r) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(st, 200, "{r}");
    verify(
        &d,
        &data,
        &format!("after tiering again following {point}:{nth}"),
    );
    let v = d.get_json("/v1/volumes/v");
    if class == ALL {
        assert_eq!(
            v["extents_local"].as_u64().unwrap()
                + v["extents_remote"].as_u64().unwrap()
                + v["extents_zero"].as_u64().unwrap(),
            SIZE_MIB
        );
        assert!(v["bytes_local"].as_u64().unwrap() < MIB, "{v}");
    }
}

const ALL: &str = "tiering_policy = \"all\"";
const ON_READ: &str = "tiering_policy = \"all\"\nretrieval_policy = \"on-read\"";

macro_rules! kill_points {
    ($($name:ident: $kind:expr, $point:expr, $nth:expr, $op:expr, $class:expr;)*) => {
        $(#[test] fn $name() { kill_at($kind, $point, $nth, $op, $class) })*
    };
}

kill_points! {
    fs_before_upload_1: Kind::Fs, "before-upload", 1, "/v1/volumes/v/tier?wait=true", ALL;
    fs_before_upload_9: Kind::Fs, "before-upload", 9, "/v1/volumes/v/tier?wait=true", ALL;
    fs_after_upload_1: Kind::Fs, "after-upload", 1, "/v1/volumes/v/tier?wait=true", ALL;
    fs_after_upload_7: Kind::Fs, "after-upload", 7, "/v1/volumes/v/tier?wait=true", ALL;
    fs_after_commit_1: Kind::Fs, "after-commit", 1, "/v1/volumes/v/tier?wait=true", ALL;
    fs_after_commit_12: Kind::Fs, "after-commit", 12, "/v1/volumes/v/tier?wait=true", ALL;
    fs_after_punch_3: Kind::Fs, "after-punch", 3, "/v1/volumes/v/tier?wait=true", ALL;
    fs_after_punch_20: Kind::Fs, "after-punch", 20, "/v1/volumes/v/tier?wait=true", ALL;
    fs_rehydrate_before_commit_1: Kind::Fs, "rehydrate-before-commit", 1, "/v1/volumes/v/promote?wait=true", ON_READ;
    fs_rehydrate_before_commit_5: Kind::Fs, "rehydrate-before-commit", 5, "/v1/volumes/v/promote?wait=true", ON_READ;
    fs_rehydrate_after_commit_2: Kind::Fs, "rehydrate-after-commit", 2, "/v1/volumes/v/promote?wait=true", ON_READ;
    fs_rehydrate_after_commit_11: Kind::Fs, "rehydrate-after-commit", 11, "/v1/volumes/v/promote?wait=true", ON_READ;
    s3_after_upload_2: Kind::S3, "after-upload", 2, "/v1/volumes/v/tier?wait=true", ALL;
    s3_after_commit_4: Kind::S3, "after-commit", 4, "/v1/volumes/v/tier?wait=true", ALL;
    s3_rehydrate_before_commit_3: Kind::S3, "rehydrate-before-commit", 3, "/v1/volumes/v/promote?wait=true", ON_READ;
    azure_after_upload_5: Kind::Azure, "after-upload", 5, "/v1/volumes/v/tier?wait=true", ALL;
    azure_after_commit_2: Kind::Azure, "after-commit", 2, "/v1/volumes/v/tier?wait=true", ALL;
    azure_rehydrate_after_commit_4: Kind::Azure, "rehydrate-after-commit", 4, "/v1/volumes/v/promote?wait=true", ON_READ;
}

const OVERLAY: &str =
    "tiering_policy = \"all\"\nretrieval_policy = \"never\"\nwrite_overlay = true";

/// Kills the daemon at failpoint `point` (its `nth` hit) while a pass merges
/// write overlays (class `all`, so every overlay is merged at once),
/// restarts it, and checks every byte; a pass then merges what is left.
fn kill_during_merge(kind: Kind, point: &str, nth: u32) {
    let Some(s) = spec(kind) else { return };
    let mut d = daemon(&s, OVERLAY);
    let mut data = fill(&d, nth as u64 * 11 + point.len() as u64);
    let (st, r) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(st, 200, "{r}");
    // Overlays on eight tiered extents (1 MiB each).
    let mut args = vec!["-f".to_string(), "raw".to_string()];
    for e in [0u64, 1, 2, 6, 9, 13, 17, 22] {
        let off = e * MIB + 4096 * (e % 5);
        args.push("-c".into());
        args.push(format!("write -P {} {off} 8k", 0x30 + e));
        data[off as usize..off as usize + 8192].fill(0x30 + e as u8);
    }
    args.push(d.uri("v"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("qemu-io", &args);
    d.crash_at(&format!("{point}:{nth}"), 30, |d| {
        post_dying(d, "/v1/volumes/v/tier?wait=true")
    });
    verify(
        &d,
        &data,
        &format!("after a crash merging at {point}:{nth}"),
    );
    let (st, r) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(st, 200, "{r}");
    let v = d.get_json("/v1/volumes/v");
    assert_eq!(v["extents_overlay"], 0, "every overlay merged: {v}");
    assert!(v["bytes_local"].as_u64().unwrap() < MIB, "{v}");
    verify(
        &d,
        &data,
        &format!("after merging again following {point}:{nth}"),
    );
}

#[test]
fn fs_merge_before_upload_2() {
    kill_during_merge(Kind::Fs, "before-upload", 2);
}

#[test]
fn fs_merge_after_upload_3() {
    kill_during_merge(Kind::Fs, "after-upload", 3);
}

#[test]
fn fs_merge_after_commit_1() {
    kill_during_merge(Kind::Fs, "after-commit", 1);
}

#[test]
fn fs_merge_after_punch_5() {
    kill_during_merge(Kind::Fs, "after-punch", 5);
}

#[test]
fn s3_merge_after_commit_4() {
    kill_during_merge(Kind::S3, "after-commit", 4);
}

#[test]
fn azure_merge_after_upload_2() {
    kill_during_merge(Kind::Azure, "after-upload", 2);
}

/// Random kill -9 moments during tier passes and during reads that bring data
/// back, several rounds on one data directory.
fn random_kills(kind: Kind, rounds: u32) {
    let Some(s) = spec(kind) else { return };
    let mut d = daemon(&s, ON_READ);
    let data = fill(&d, 99);
    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ rounds as u64;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(5 + seed % 120);
        let api = d.api();
        let op = if round % 2 == 0 { "tier" } else { "promote" };
        let t = std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let _ = c.post(format!("{api}/v1/volumes/v/{op}?wait=true")).send();
        });
        std::thread::sleep(delay);
        d.kill9();
        let _ = t.join();
        d.restart();
        verify(
            &d,
            &data,
            &format!("after kill -9 {delay:?} into a {op} pass (round {round})"),
        );
    }
}

#[test]
fn fs_random_kills_during_passes() {
    random_kills(Kind::Fs, 6)
}

#[test]
fn s3_random_kills_during_passes() {
    random_kills(Kind::S3, 3)
}
