//! The admin API, the CLI and configuration errors, through the real binary.

use std::process::Command;

use serde_json::json;
use tierd_e2e::{run, tierd_bin, Daemon};

fn post(d: &Daemon, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{}", d.api(), path))
        .json(&body)
        .send()
        .unwrap();
    (
        r.status().as_u16(),
        r.json().unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn volume_lifecycle_through_the_api() {
    let d = Daemon::start();
    let (s, v) = post(
        &d,
        "/v1/volumes",
        json!({"name": "db-0", "size": "1GiB", "extent_size": "8MiB"}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["size"], 1u64 << 30);
    assert_eq!(v["extent_size"], 8u64 << 20);
    assert_eq!(v["extents"], 128);
    assert_eq!(v["class"], "default");
    let list = d.get_json("/v1/volumes");
    assert_eq!(list["volumes"].as_array().unwrap().len(), 1);

    let c = reqwest::blocking::Client::new();
    let r = c
        .patch(format!("{}/v1/volumes/db-0", d.api()))
        .json(&json!({"size": "2GiB"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        run("nbdinfo", &["--size", &d.uri("db-0")]).stdout,
        format!("{}\n", 2u64 << 30).into_bytes()
    );
    let r = c
        .patch(format!("{}/v1/volumes/db-0", d.api()))
        .json(&json!({"size": "1GiB"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: serde_json::Value = r.json().unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shrinking"),
        "{e}"
    );

    let r = c
        .delete(format!("{}/v1/volumes/db-0", d.api()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = c
        .get(format!("{}/v1/volumes/db-0", d.api()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "volume_not_found");
}

#[test]
fn bad_requests_get_json_errors_naming_the_problem() {
    let d = Daemon::start();
    for (body, code, needle) in [
        (json!({"name": "", "size": 4096}), "invalid_name", "empty"),
        (
            json!({"name": "../etc", "size": 4096}),
            "invalid_name",
            "path separator",
        ),
        (
            json!({"name": "x".repeat(200), "size": 4096}),
            "invalid_name",
            "at most",
        ),
        (
            json!({"name": "ok", "size": "12 parsecs"}),
            "invalid_argument",
            "unknown size unit",
        ),
        (
            json!({"name": "ok", "size": 1000}),
            "invalid_argument",
            "multiple",
        ),
        (
            json!({"name": "ok", "size": 4096, "class": "platinum"}),
            "unknown_class",
            "platinum",
        ),
        (
            json!({"name": "ok", "size": 4096, "extent_size": "3MiB"}),
            "invalid_argument",
            "power of two",
        ),
        (
            json!({"name": "ok", "size": 4096, "colour": "red"}),
            "invalid_json",
            "colour",
        ),
    ] {
        let (s, v) = post(&d, "/v1/volumes", body.clone());
        assert_eq!(s, 400, "{body} -> {v}");
        assert_eq!(v["error"]["code"], code, "{body} -> {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body} -> {v}"
        );
    }
    let (s, _) = post(&d, "/v1/volumes", json!({"name": "dup", "size": 4096}));
    assert_eq!(s, 201);
    let (s, v) = post(&d, "/v1/volumes", json!({"name": "dup", "size": 4096}));
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("volume_exists"))
    );
}

#[test]
fn cli_tables_and_json() {
    let d = Daemon::start();
    d.cli_ok(&["volume", "create", "web", "--size", "64MiB"]);
    let table = d.cli_ok(&["volume", "list"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("CLASS"),
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], &["web", "64", "MiB", "default"], "{table}");
    let js: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["volume", "show", "web", "--json"])).unwrap();
    assert_eq!(js["size"], 64u64 << 20);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 1 0 1M",
            "-c",
            "read 0 4k",
            "-c",
            "read 64k 4k",
            "-c",
            "read 4M 4k",
            &d.uri("web"),
        ],
    );
    let heat = d.cli_ok(&["heat", "web", "--top", "5"]);
    assert!(heat.contains("2 of 16 extents accessed"), "{heat}");
    let hj: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["heat", "web", "--json"])).unwrap();
    assert_eq!(
        hj["extents"][0]["extent"], 0,
        "extent 0 was touched most: {hj}"
    );
    d.cli_ok(&["volume", "grow", "web", "--size", "128MiB"]);
    let out = d.cli(&["volume", "create", "web", "--size", "1GiB"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    d.cli_ok(&["volume", "delete", "web"]);
    assert!(d.cli_ok(&["volume", "list", "--json"]).contains("[]"));
}

#[test]
fn cli_explains_an_unreachable_daemon() {
    let out = Command::new(tierd_bin())
        .args(["volume", "list", "--endpoint", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach tierd"));
}

#[test]
fn deleting_a_volume_frees_its_space_and_refuses_while_connected() {
    let d = Daemon::start();
    d.create_volume("big", "64MiB", None);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 7 0 32M",
            "-c",
            "flush",
            &d.uri("big"),
        ],
    );
    let local = d.get_json("/v1/volumes/big")["bytes_local"]
        .as_u64()
        .unwrap();
    assert!(local >= 32 << 20, "{local}");
    let files = || {
        std::fs::read_dir(d.data_dir().join("volumes"))
            .unwrap()
            .count()
    };
    assert_eq!(files(), 1);

    let conn = tierd_e2e::raw_nbd::RawNbd::connect(d.nbd_port, "big").unwrap();
    let out = d.cli(&["volume", "delete", "big"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by 1 NBD connection"));
    drop(conn);
    // The server notices the hang-up asynchronously.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.get_json("/v1/volumes/big")["connections"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connection never released"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    d.cli_ok(&["volume", "delete", "big"]);
    assert_eq!(files(), 0);
}

#[test]
fn config_errors_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[server]\nnbd_lisen = \"127.0.0.1:1\"\n", "nbd_lisen"),
        ("[heat]\nhalf_life = \"forever\"\n", "forever"),
        (
            "[server]\nhttp_listen = \"everywhere\"\n",
            "server.http_listen",
        ),
        (
            "[classes.gold]\ntiering_policy = \"sometimes\"\n",
            "sometimes",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(tierd_bin())
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.toml") && err.contains(needle),
            "{text}: {err}"
        );
    }
    let out = Command::new(tierd_bin())
        .args(["serve", "--config", "/nonexistent/tierd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn serve_on_embedded_defaults_uses_the_documented_ports() {
    // Only when the default ports are free (another tierd may be running here).
    let free = |p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    if !(free(10809) && free(9464)) {
        eprintln!("default ports busy; embedded defaults are covered by the config unit tests");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(tierd_bin())
        .arg("serve")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut ok = false;
    while std::time::Instant::now() < deadline {
        if reqwest::blocking::get("http://127.0.0.1:9464/readyz")
            .is_ok_and(|r| r.status().is_success())
        {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let nbd = std::net::TcpStream::connect(("127.0.0.1", 10809)).is_ok();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        ok,
        "daemon on embedded defaults never became ready on 127.0.0.1:9464"
    );
    assert!(nbd, "no NBD listener on 127.0.0.1:10809");
    assert!(status.success());
    assert!(
        dir.path().join("tierd-data").join("db").exists(),
        "data not in ./tierd-data"
    );
}

#[test]
fn storage_classes_come_from_kubernetes_manifests() {
    let manifests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let d = Daemon::start_with(&format!(
        "[kubernetes]\nstorage_class_dir = \"{}\"\n[backends.s3]\nkind = \"fs\"\n[backends.azure]\nkind = \"fs\"\n",
        manifests.display()
    ));
    d.cli_ok(&[
        "volume", "create", "a", "--size", "4MiB", "--class", "archive",
    ]);
    d.cli_ok(&["volume", "create", "g", "--size", "4MiB", "--class", "gold"]);
    let out = d.cli(&[
        "volume", "create", "x", "--size", "4MiB", "--class", "platinum",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("archive, gold, standard"), "{err}");
    // gold tiers nothing and says so.
    let (_, report) = d.post("/v1/volumes/g/tier?wait=true");
    assert!(
        report["held"].as_str().unwrap_or("").contains("none"),
        "{report}"
    );
}
