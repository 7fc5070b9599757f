//! Backups in the bucket and recovery on a new node, end to end, on each
//! backend (a local directory both nodes share, LocalStack S3, Azurite),
//! with the real clients. Node A writes known patterns with qemu-img and
//! qemu-io, backs up, writes more, backs up again, and loses its data
//! directory. Node B, fresh, on the same bucket, lists the backups and
//! restores the newest and the first: qemu-img compare finds both exact.
//! A, restarted on a copy of its old metadata, is fenced: it refuses to
//! back up, tier or accept writes, its GC deletes nothing, and B's volume
//! still reads exactly.

use tierd_e2e::backends::{spec, tamper, Kind, Spec, Tamper};
use tierd_e2e::{random_bytes, Daemon};

const MIB: usize = 1 << 20;
const SIZE: usize = 16 * MIB;

/// A node on `s`'s bucket (for fs, the shared directory `root`).
fn node(s: &Spec, root: &std::path::Path) -> Daemon {
    node_with(s, root, "")
}

/// The same, with `class` appended to class `c`'s settings.
fn node_with(s: &Spec, root: &std::path::Path, class: &str) -> Daemon {
    let backend = s.toml.replacen(
        "kind = \"fs\"\n",
        &format!("kind = \"fs\"\nroot = \"{}\"\n", root.display()),
        1,
    );
    Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\ngc_grace = \"0s\"\n{backend}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"snapshot-only\"\ncooling_period = \"2d\"\n{class}"
    ))
}

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = d.cli_ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tierd {args:?}: {e}: {out}"))
}

fn backup(d: &Daemon, volume: &str) -> serde_json::Value {
    json(d, &["backup", "create", volume])
}

fn recovery(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let shared = tempfile::tempdir().expect("shared dir");
    let mut a = node(&s, shared.path());
    a.create_volume_in("v", "16MiB", Some("1MiB"), "c");
    let first = random_bytes(SIZE, 21);
    a.write_image("v", &first);
    let b1 = backup(&a, "v");
    assert_eq!(b1["volume"], "v", "{b1}");
    assert_eq!(
        b1["objects_uploaded"], 16,
        "every extent goes up once: {b1}"
    );
    let id1 = b1["id"].as_str().expect("backup id").to_string();

    // 4 MiB rewritten whole and one block of extent 5: five extents changed.
    for cmd in ["write -P 0x5a 0 4M", "write -P 0x33 5M 4k"] {
        let out = a.qemu_io("v", cmd);
        assert!(out.status.success(), "{cmd}: {out:?}");
    }
    let mut second = first.clone();
    second[..4 * MIB].fill(0x5a);
    second[5 * MIB..5 * MIB + 4096].fill(0x33);
    let b2 = backup(&a, "v");
    let id2 = b2["id"].as_str().expect("backup id").to_string();
    assert!(id2 > id1, "{id1} then {id2}");
    assert_eq!(b2["objects_uploaded"], 5, "incremental: {b2}");
    let changed = 4 * MIB + 4096;
    let up = b2["bytes_uploaded"].as_u64().unwrap_or(0) as usize;
    assert!(
        up < changed + changed / 10,
        "the second backup uploaded {up} bytes for {changed} changed: {b2}"
    );
    let snaps = json(&a, &["snapshot", "list", "v"]);
    assert_eq!(
        snaps["snapshots"],
        serde_json::json!([]),
        "backup snapshots are not kept"
    );

    // A loses its data directory; a copy of its metadata from now survives.
    a.stop();
    let stale = tempfile::tempdir().expect("stale copy");
    copy_dir(&a.data_dir(), stale.path());
    std::fs::remove_dir_all(a.data_dir()).expect("delete A's data directory");

    // B: a fresh node on the same bucket.
    let b = node(&s, shared.path());
    let list = json(&b, &["backup", "list", "--volume", "v"]);
    let ids: Vec<&str> = list["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert_eq!(ids, [id1.as_str(), id2.as_str()], "{list}");
    let r = json(
        &b,
        &["volume", "restore", "--backend", "store", "--volume", "v"],
    );
    assert_eq!(r["restored"][0]["backup"], id2.as_str(), "{r}");
    assert_eq!(
        r["restored"][0]["generation"], 2,
        "B takes the next generation: {r}"
    );
    let r1 = json(
        &b,
        &[
            "volume",
            "restore",
            "--backend",
            "store",
            "--volume",
            "v",
            "--backup",
            &id1,
            "--as",
            "v1",
        ],
    );
    assert_eq!(r1["restored"][0]["volume"], "v1", "{r1}");
    let second_file = b.raw_file("second.raw", &second);
    let first_file = b.raw_file("first.raw", &first);
    b.assert_same("v", &second_file, "the newest backup restored");
    // The hot set the manifest names comes local in the background.
    b.wait_log("hot set prefetched");
    b.assert_same("v", &second_file, "after the hot set came local");
    b.assert_same("v1", &first_file, "the first backup restored as a copy");

    // Bad input: over an existing name, an unknown backup, a volume with none.
    b.cli_fails(
        &["volume", "restore", "--backend", "store", "--volume", "v"],
        3,
        "--as",
    );
    b.cli_fails(
        &[
            "volume",
            "restore",
            "--backend",
            "store",
            "--volume",
            "v",
            "--backup",
            "nope",
            "--as",
            "x",
        ],
        4,
        &id1,
    );
    b.cli_fails(
        &[
            "volume",
            "restore",
            "--backend",
            "store",
            "--volume",
            "ghost",
        ],
        4,
        "holds no backup",
    );

    // B owns v now: it writes and backs up under its generation.
    let out = b.qemu_io("v", "write -P 0x77 8M 1M");
    assert!(out.status.success(), "{out:?}");
    let mut third = second.clone();
    third[8 * MIB..9 * MIB].fill(0x77);
    let third_file = b.raw_file("third.raw", &third);
    let b3 = backup(&b, "v");
    assert_eq!(b3["generation"], 2, "{b3}");
    assert_eq!(b3["objects_uploaded"], 1, "only what B wrote: {b3}");

    // A comes back on its stale metadata. Its GC deletes nothing of B's.
    copy_dir(stale.path(), &a.data_dir());
    a.restart();
    let (status, gc) = a.post("/v1/gc");
    assert_eq!(status, 200, "{gc}");
    assert_eq!(gc["deleted"], 0, "a stale node deletes nothing: {gc}");
    // Its next backup or pass finds the newer generation: fenced.
    a.cli_fails(&["backup", "create", "v"], 1, "fenced");
    let (status, pass) = a.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200, "{pass}");
    assert!(
        pass["held"].as_str().unwrap_or("").contains("fenced"),
        "{pass}"
    );
    let show = json(&a, &["volume", "show", "v"]);
    assert_eq!(show["fenced"], true, "{show}");
    let out = a.qemu_io("v", "write -P 0x11 0 64k");
    assert!(
        !out.status.success(),
        "a fenced volume refuses writes: {out:?}"
    );
    // A restart does not unfence it.
    a.stop();
    a.restart();
    assert_eq!(json(&a, &["volume", "show", "v"])["fenced"], true);

    // B's data is untouched, after B's own GC too.
    let (status, gc) = b.post("/v1/gc");
    assert_eq!(status, 200, "{gc}");
    b.assert_same("v", &third_file, "B's volume after A's return");
    b.assert_same("v1", &first_file, "B's copy after A's return");
    // And every backup still restores on a third node.
    let c = node(&s, shared.path());
    for (id, file, name) in [(&id1, &first_file, "c1"), (&id2, &second_file, "c2")] {
        json(
            &c,
            &[
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
            ],
        );
        c.assert_same(name, file, "a backup restored after GC on both nodes");
    }

    // Every manifest lost: the scavenger rebuilds v from the objects' headers.
    let uid = json(&b, &["volume", "show", "v"])["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let id3 = b3["id"].as_str().expect("id").to_string();
    for id in [&id1, &id2, &id3] {
        let key = format!("backups/v/{uid}/{id}.json");
        if s.kind == Kind::Fs {
            std::fs::remove_file(shared.path().join(&key)).expect("delete manifest");
        } else {
            tamper(&s, &b, &key, Tamper::Delete);
        }
    }
    c.cli_fails(
        &[
            "volume",
            "restore",
            "--backend",
            "store",
            "--volume",
            "v",
            "--as",
            "lost",
        ],
        4,
        "holds no backup",
    );
    let r = json(
        &c,
        &[
            "recover",
            "scan",
            "--backend",
            "store",
            "--volume",
            "v",
            "--as",
            "vs",
            "--class",
            "c",
        ],
    );
    assert_eq!(r["rebuilt"][0]["layers"], 3, "{r}");
    let third_c = c.raw_file("third.raw", &third);
    c.assert_same("vs", &third_c, "v rebuilt from object headers alone");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let out = std::process::Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", from.display()),
            &to.display().to_string(),
        ])
        .output()
        .expect("cp");
    if !to.exists() {
        std::fs::create_dir_all(to).expect("mkdir");
    }
    assert!(out.status.success(), "cp: {out:?}");
}

#[test]
fn recovery_fs() {
    recovery(Kind::Fs);
}

#[test]
fn recovery_s3() {
    recovery(Kind::S3);
}

#[test]
fn recovery_azure() {
    recovery(Kind::Azure);
}

/// A damaged newest manifest is refused by name and the older backup
/// still restores; a missing object fails only the extent it held.
#[test]
fn damaged_manifest_and_missing_object() {
    let s = spec(Kind::Fs).expect("fs");
    let shared = tempfile::tempdir().expect("shared dir");
    let a = node(&s, shared.path());
    a.create_volume_in("v", "8MiB", Some("1MiB"), "c");
    let data = random_bytes(8 * MIB, 5);
    a.write_image("v", &data);
    let id1 = backup(&a, "v")["id"].as_str().expect("id").to_string();
    let out = a.qemu_io("v", "write -P 0x44 0 1M");
    assert!(out.status.success());
    let id2 = backup(&a, "v")["id"].as_str().expect("id").to_string();
    let manifests = find(shared.path(), ".json");
    let newest = manifests
        .iter()
        .find(|p| p.to_string_lossy().contains(&id2))
        .expect("newest manifest");
    let bytes = std::fs::read(newest).expect("read manifest");
    std::fs::write(newest, &bytes[..bytes.len() / 2]).expect("truncate manifest");
    a.cli_fails(
        &[
            "volume",
            "restore",
            "--backend",
            "store",
            "--volume",
            "v",
            "--as",
            "w",
        ],
        1,
        &id1,
    );
    json(
        &a,
        &[
            "volume",
            "restore",
            "--backend",
            "store",
            "--volume",
            "v",
            "--backup",
            &id1,
            "--as",
            "w",
        ],
    );
    let file = a.raw_file("data.raw", &data);
    a.assert_same(
        "w",
        &file,
        "the older backup after the newer one was damaged",
    );

    // One object of the first backup goes missing: that extent reads EIO,
    // the others still read.
    let objects = find(&shared.path().join("data"), "");
    let victim = objects
        .iter()
        .find(|p| p.to_string_lossy().contains("/000000000003/"))
        .expect("an object of extent 3");
    std::fs::remove_file(victim).expect("remove object");
    json(
        &a,
        &[
            "volume",
            "restore",
            "--backend",
            "store",
            "--volume",
            "v",
            "--backup",
            &id1,
            "--as",
            "x",
        ],
    );
    let bad = a.qemu_io("x", "read 3M 4k");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(
        !bad.status.success() || said.contains("error"),
        "a missing object reads as an error: {said}"
    );
    let good = a.qemu_io("x", "read 7M 4k");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        good.status.success() && !said.contains("error") && !said.contains("fail"),
        "{said}"
    );
}

fn find(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out
}

/// A class with `backup_interval` backs its volumes up on schedule and keeps
/// `backup_keep` scheduled backups; one taken by hand is never pruned, and
/// the backup age is a metric.
#[test]
fn a_schedule_backs_up_and_prunes() {
    let s = spec(Kind::Fs).expect("fs");
    let shared = tempfile::tempdir().expect("shared dir");
    let d = node_with(
        &s,
        shared.path(),
        "backup_interval = \"2s\"\nbackup_keep = 2\n",
    );
    d.create_volume_in("v", "4MiB", Some("1MiB"), "c");
    d.write_image("v", &random_bytes(4 * MIB, 9));
    let manual = backup(&d, "v")["id"].as_str().expect("id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let list = json(&d, &["backup", "list", "--volume", "v"]);
        let ids: Vec<String> = list["backups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|b| b["id"].as_str().map(str::to_string))
            .collect();
        if d.log().contains("scheduled backups pruned") && ids.len() == 3 {
            assert!(
                ids.contains(&manual),
                "the backup taken by hand stays: {ids:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup pruned within 90 s: {ids:?}\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let metrics = reqwest::blocking::get(format!("{}/metrics", d.api()))
        .expect("GET /metrics")
        .text()
        .expect("metrics text");
    let age: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tierd_volume_backup_age_seconds{volume=\"v\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no backup age metric:\n{metrics}"));
    assert!(age < 30.0, "the newest backup is seconds old, not {age}");
    assert!(
        metrics.contains("tierd_volume_fenced{volume=\"v\"} 0"),
        "{metrics}"
    );
}
