//! Snapshots, clones and revert end to end, on each backend (local
//! directory, LocalStack S3, Azurite), with the real clients: qemu-img and
//! qemu-io write and compare, nbdinfo lists the exports. `snapshot-only`
//! tiers exactly what only the snapshot holds, reading a snapshot brings
//! nothing back, clones are independent and outlive their origin, revert
//! rolls back, and GC deletes an object only when nothing refers to it.

use tierd_e2e::backends::{spec, Kind, Spec};
use tierd_e2e::raw_nbd::{RawNbd, CMD_WRITE};
use tierd_e2e::{random_bytes, run, Daemon};

const MIB: usize = 1 << 20;
const SIZE: usize = 16 * MIB;

fn daemon(s: &Spec) -> Daemon {
    Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\ngc_grace = \"0s\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"snapshot-only\"\ncooling_period = \"2s\"\n[classes.other]\nbackend = \"store\"\ntiering_policy = \"none\"\n",
        s.toml
    ))
}

fn tier(d: &Daemon, volume: &str) -> serde_json::Value {
    let (status, report) = d.post(&format!("/v1/volumes/{volume}/tier?wait=true"));
    assert_eq!(status, 200, "{report}");
    report
}

fn gc(d: &Daemon) -> serde_json::Value {
    let (status, report) = d.post("/v1/gc");
    assert_eq!(status, 200, "{report}");
    report
}

fn fails_with(d: &Daemon, args: &[&str], code: i32, needle: &str) {
    let out = d.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "tierd {args:?}: {err}");
    assert!(err.contains(needle), "tierd {args:?}: {err}");
}

/// NBD's EPERM (Linux's errno value, which NBD uses).
fn libc_eperm() -> u32 {
    1
}

fn lifecycle(kind: Kind) {
    let Some(s) = spec(kind) else { return };
    let d = daemon(&s);
    d.create_volume_in("v", "16MiB", Some("1MiB"), "c");
    let original = random_bytes(SIZE, 77);
    let original_file = d.raw_file("original.raw", &original);
    d.write_image("v", &original);

    // Before any snapshot, snapshot-only says why it tiers nothing.
    let r = tier(&d, "v");
    assert!(
        r["held"].as_str().unwrap_or("").contains("no snapshots"),
        "{r}"
    );

    let out = d.cli_ok(&["snapshot", "create", "v", "s1"]);
    assert!(out.contains("v@s1"), "{out}");
    let list = run(
        "nbdinfo",
        &["--list", &format!("nbd://127.0.0.1:{}", d.nbd_port)],
    );
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("v@s1"),
        "nbdinfo --list shows the snapshot:\n{list}"
    );

    // The volume moves on: 4 MiB rewritten whole, one block of extent 5.
    run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x5a 0 4M", &d.uri("v")],
    );
    run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x33 5M 4k", &d.uri("v")],
    );
    let mut now = original.clone();
    now[..4 * MIB].fill(0x5a);
    now[5 * MIB..5 * MIB + 4096].fill(0x33);
    let now_file = d.raw_file("now.raw", &now);
    d.assert_same("v@s1", &original_file, "snapshot lifecycle");
    d.assert_same("v", &now_file, "snapshot lifecycle");

    // Who holds what: the rewritten 4 MiB and 4 KiB twice (the volume's and
    // the snapshot's), the rest once, shared.
    d.cli_ok(&["volume", "show", "v"]); // flushes nothing, but must not fail
    let space = &d.get_json("/v1/volumes/v")["space"];
    let changed = 4 * MIB + 4096;
    assert_eq!(space["bytes_owned"], changed as u64, "{space}");
    assert_eq!(space["bytes_shared"], (SIZE - changed) as u64, "{space}");
    assert_eq!(space["snapshots"][0][1], changed as u64, "{space}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", d.api()))
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        metrics.contains(&format!(
            "tierd_volume_held_bytes{{holder=\"snapshots\",volume=\"v\"}} {changed}"
        )),
        "{metrics}"
    );

    // The snapshot's export is read-only: qemu refuses to open it for
    // writing, a client that writes anyway gets EPERM, and nothing changes.
    let w = d.qemu_io("v@s1", "write -P 0x11 0 4k");
    let text = String::from_utf8_lossy(&w.stderr);
    assert!(
        !w.status.success() && text.contains("Permission denied"),
        "a write to a snapshot export must fail: {text}"
    );
    let mut raw = RawNbd::connect(d.nbd_port, "v@s1").expect("NBD connect");
    raw.send(CMD_WRITE, 1, 0, 4096, &[0x11; 4096])
        .expect("send");
    assert_eq!(raw.reply(0).expect("reply").error, libc_eperm());
    drop(raw);
    d.assert_same("v@s1", &original_file, "snapshot lifecycle");

    // After the cooling period, snapshot-only tiers the 4 extents only the
    // snapshot holds; extent 5 is still mostly the volume's, so it stays.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let r = tier(&d, "v");
    assert_eq!(r["tiered"], 4, "{r}");
    let info = d.get_json("/v1/volumes/v");
    assert_eq!(
        info["extents_remote"], 0,
        "the volume's own data stays local: {info}"
    );
    d.assert_same("v@s1", &original_file, "snapshot lifecycle");
    d.assert_same("v", &now_file, "snapshot lifecycle");

    // A clone in another class shares everything, then goes its own way.
    let out = d.cli_ok(&["volume", "clone", "v@s1", "c1", "--class", "other"]);
    assert!(out.contains("c1"), "{out}");
    d.assert_same("c1", &original_file, "snapshot lifecycle");
    run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x77 1M 64k", &d.uri("c1")],
    );
    let mut clone = original.clone();
    clone[MIB..MIB + 65536].fill(0x77);
    let clone_file = d.raw_file("clone.raw", &clone);
    d.assert_same("c1", &clone_file, "snapshot lifecycle");
    d.assert_same("v", &now_file, "snapshot lifecycle");
    d.assert_same("v@s1", &original_file, "snapshot lifecycle");

    // Revert: refused while a client is connected, then done.
    let held = RawNbd::connect(d.nbd_port, "v").expect("NBD connect");
    fails_with(&d, &["volume", "revert", "v", "s1"], 5, "in use");
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(200));
    d.cli_ok(&["volume", "revert", "v", "s1"]);
    d.assert_same("v", &original_file, "snapshot lifecycle");
    d.assert_same("c1", &clone_file, "snapshot lifecycle");

    // Bad input names the problem and changes nothing.
    fails_with(
        &d,
        &["snapshot", "create", "v", "s1"],
        5,
        "already has a snapshot",
    );
    fails_with(&d, &["snapshot", "delete", "v", "nope"], 4, "snapshots: s1");
    fails_with(
        &d,
        &["snapshot", "create", "v", "bad/name"],
        3,
        "path separator",
    );
    fails_with(&d, &["volume", "clone", "v@nope", "c2"], 4, "no snapshot");
    fails_with(&d, &["volume", "delete", "v"], 5, "--keep-clones");
    d.assert_same("v", &original_file, "snapshot lifecycle");

    // Deleting the snapshot and its origin: the clone still reads what it
    // shares, and GC keeps every object the clone needs.
    d.cli_ok(&["snapshot", "delete", "v", "s1"]);
    d.cli_ok(&["volume", "delete", "v", "--keep-clones"]);
    let r = gc(&d);
    assert_eq!(r["deleted"], 0, "nothing the clone reads is deleted: {r}");
    d.assert_same("c1", &clone_file, "snapshot lifecycle");
    // With the clone gone too, nothing refers to the tiered objects.
    d.cli_ok(&["volume", "delete", "c1"]);
    let r = gc(&d);
    assert_eq!(r["deleted"], 4, "{r}");
    let files = std::fs::read_dir(d.data_dir().join("volumes"))
        .expect("volumes dir")
        .count();
    assert_eq!(files, 0, "every layer file is gone");
}

mod lifecycle {
    use super::*;
    #[test]
    fn fs() {
        lifecycle(Kind::Fs)
    }
    #[test]
    fn s3() {
        lifecycle(Kind::S3)
    }
    #[test]
    fn azure() {
        lifecycle(Kind::Azure)
    }
}

/// A class's snapshot schedule takes snapshots and keeps the newest
/// `snapshot_retention`; a snapshot taken by hand stays.
#[test]
fn a_schedule_takes_and_prunes_snapshots() {
    let d = Daemon::start_with(
        "[classes.hourly]\ntiering_policy = \"snapshot-only\"\nsnapshot_schedule = \"2s\"\nsnapshot_retention = 2\n",
    );
    d.create_volume_in("v", "8MiB", None, "hourly");
    d.cli_ok(&["snapshot", "create", "v", "mine"]);
    let data = random_bytes(MIB, 5);
    d.write_image("v", &data);
    let scheduled = |d: &Daemon| -> Vec<String> {
        d.get_json("/v1/volumes/v/snapshots")["snapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let names = scheduled(&d);
        let auto = names.iter().filter(|n| n.starts_with("auto-")).count();
        // Three or more taken means at least one was pruned.
        if auto == 2 && d.log().matches("snapshot deleted").count() >= 1 {
            assert!(names.contains(&"mine".to_string()), "{names:?}");
            break;
        }
        // One more may show between a take and its prune.
        assert!(auto <= 3, "retention 2 exceeded: {names:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "{names:?}\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A scheduled snapshot is a snapshot like any other.
    let names = scheduled(&d);
    let last = names
        .iter()
        .rfind(|n| n.starts_with("auto-"))
        .expect("a scheduled one");
    let back = d.read_image(&format!("v@{last}"));
    assert!(
        back[..MIB] == data[..],
        "the scheduled snapshot holds the data"
    );
}
