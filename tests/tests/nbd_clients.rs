//! Real NBD clients (nbdinfo, qemu-io, qemu-img, nbdcopy) against the real daemon.

use std::process::Command;
use std::thread;

use tierd_e2e::{random_bytes, run, Daemon};

fn stdout(o: std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn nbdinfo_lists_exports_sizes_and_allocation_map() {
    let d = Daemon::start();
    d.create_volume("alpha", "64MiB", None);
    d.create_volume("beta", "8MiB", None);
    let list = stdout(run(
        "nbdinfo",
        &[
            "--list",
            "--json",
            &format!("nbd://127.0.0.1:{}", d.nbd_port),
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&list).expect("nbdinfo JSON");
    let mut names: Vec<String> = v["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["export-name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["alpha", "beta"]);
    assert_eq!(
        stdout(run("nbdinfo", &["--size", &d.uri("alpha")])).trim(),
        (64u64 << 20).to_string()
    );

    // Write 1 MiB at 8 MiB; the map must show exactly that as data.
    run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x5a 8M 1M", &d.uri("alpha")],
    );
    let map = stdout(run("nbdinfo", &["--map", "--json", &d.uri("alpha")]));
    let map: serde_json::Value = serde_json::from_str(&map).expect("map JSON");
    let runs: Vec<(u64, u64, u64)> = map
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["offset"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["type"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            (0, 8 << 20, 3),
            (8 << 20, 1 << 20, 0),
            (9 << 20, 55 << 20, 3)
        ],
        "{runs:?}"
    );
}

#[test]
fn qemu_io_patterns_at_many_offsets_unaligned_and_spanning_extents() {
    let d = Daemon::start();
    // 1 MiB extents so that many writes straddle extent boundaries.
    d.create_volume("v", "16MiB", Some("1MiB"));
    let cases: &[(u64, u64, u8)] = &[
        (0, 4096, 0x01),
        (4096, 512, 0x02),
        (1_048_000, 1_000, 0x03), // straddles extent 0/1, unaligned
        (3 * 1_048_576 - 7, 2_097_169, 0x04), // spans three extents, odd length
        (9_999_999, 1, 0x05),
        (16 * 1_048_576 - 4096, 4096, 0x06), // the last block
        (7_340_032, 65_536, 0x07),
    ];
    let mut args: Vec<String> = vec!["-f".into(), "raw".into()];
    for (off, len, pat) in cases {
        args.push("-c".into());
        args.push(format!("write -P {pat} {off} {len}"));
    }
    args.push(d.uri("v"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run("qemu-io", &a);
    // Read back in a separate connection; qemu-io exits non-zero on a pattern mismatch.
    let mut args: Vec<String> = vec!["-f".into(), "raw".into()];
    for (off, len, pat) in cases {
        args.push("-c".into());
        args.push(format!("read -P {pat} {off} {len}"));
    }
    // Untouched space reads as zeros.
    args.push("-c".into());
    args.push("read -P 0 12M 1M".into());
    args.push(d.uri("v"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = stdout(run("qemu-io", &a));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert_eq!(out.matches("read ").count(), cases.len() + 1, "{out}");
}

#[test]
fn qemu_img_convert_round_trips_a_random_image() {
    let d = Daemon::start();
    d.create_volume("img", "48MiB", None);
    let data = random_bytes(48 << 20, 42);
    // Both helpers are `qemu-img convert`: into the export, then out of it.
    d.write_image("img", &data);
    assert!(
        d.read_image("img") == data,
        "image read back differs from what was written"
    );
}

#[test]
fn nbdcopy_round_trips_and_two_clients_work_at_once() {
    let d = Daemon::start();
    d.create_volume("a", "32MiB", None);
    d.create_volume("b", "32MiB", None);
    let src_a = d.dir.path().join("a.raw");
    let src_b = d.dir.path().join("b.raw");
    let da = random_bytes(32 << 20, 1);
    let db = random_bytes(32 << 20, 2);
    std::fs::write(&src_a, &da).unwrap();
    std::fs::write(&src_b, &db).unwrap();
    // Two nbdcopy clients (each with several connections) write concurrently.
    let (ua, ub) = (d.uri("a"), d.uri("b"));
    let (pa, pb) = (src_a.clone(), src_b.clone());
    let t1 = thread::spawn(move || run("nbdcopy", &[pa.to_str().unwrap(), &ua]));
    let t2 = thread::spawn(move || run("nbdcopy", &[pb.to_str().unwrap(), &ub]));
    t1.join().unwrap();
    t2.join().unwrap();
    let out_a = d.dir.path().join("a.out");
    let out_b = d.dir.path().join("b.out");
    run("nbdcopy", &[&d.uri("a"), out_a.to_str().unwrap()]);
    run("nbdcopy", &[&d.uri("b"), out_b.to_str().unwrap()]);
    assert!(std::fs::read(&out_a).unwrap() == da, "volume a differs");
    assert!(std::fs::read(&out_b).unwrap() == db, "volume b differs");
}

#[test]
fn unix_socket_serves_the_same_volume() {
    let d = Daemon::start();
    d.create_volume("u", "8MiB", None);
    let uri = format!("nbd+unix:///u?socket={}", d.socket().display());
    run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x77 1M 64k", &uri],
    );
    run(
        "qemu-io",
        &["-f", "raw", "-c", "read -P 0x77 1M 64k", &d.uri("u")],
    );
}

#[test]
fn trim_and_write_zeroes_read_back_as_zero() {
    let d = Daemon::start();
    d.create_volume("z", "8MiB", None);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x33 0 4M",
            "-c",
            "discard 1M 1M",
            "-c",
            "write -z 3M 4k",
            "-c",
            "read -P 0x33 0 1M",
            "-c",
            "read -P 0 1M 1M",
            "-c",
            "read -P 0x33 2M 1M",
            "-c",
            "read -P 0 3M 4k",
            &d.uri("z"),
        ],
    );
    // The trimmed megabyte is a hole again.
    let map = stdout(run("nbdinfo", &["--map", &d.uri("z")]));
    assert!(map.contains("1048576     1048576    3  hole,zero"), "{map}");
}

#[test]
fn unknown_export_is_refused_with_the_export_list() {
    let d = Daemon::start();
    d.create_volume("real", "4MiB", None);
    let out = Command::new("nbdinfo")
        .arg(d.uri("imaginary"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imaginary"), "{err}");
    // libnbd does not print the server's message; the daemon's log carries it.
    assert!(
        d.log()
            .contains(r#"no export named \"imaginary\"; exports: real"#),
        "{}",
        d.log()
    );
}
