//! Lifecycle and safety of the daemon: SIGTERM drains (uploads in flight
//! finish, nothing new starts) and a second signal exits at once, both with
//! nothing lost; JSON logs carry volume fields; secrets never reach a log
//! line; the admin API's bearer token and its refusal to listen beyond
//! loopback without one.

use tierd_e2e::backends::{spec, Kind};
use tierd_e2e::{random_bytes, run, tierd_bin, Daemon};

const MIB: usize = 1 << 20;

fn fs_daemon(extra: &str) -> Daemon {
    let s = spec(Kind::Fs).expect("fs backend");
    Daemon::start_with(&format!(
        "{extra}\n[tiering]\nscan_interval = \"1h\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\nmax_concurrent_uploads = 1\n",
        s.toml
    ))
}

/// Volume `v` of 8 extents of 1 MiB, all written; returns the data.
fn filled(d: &Daemon) -> Vec<u8> {
    d.create_volume_in("v", "8MiB", Some("1MiB"), "c");
    let data = random_bytes(8 * MIB, 99);
    d.write_image("v", &data);
    data
}

/// Restarts with the first upload of the next pass pausing for `ms`, starts a
/// pass, and waits until that upload is paused.
fn pass_with_slow_upload(d: &mut Daemon, ms: u64) {
    assert!(d.stop().success());
    d.env = vec![(
        "TIERD_FAILPOINTS".into(),
        format!("before-upload:1:pause={ms}"),
    )];
    d.restart();
    let (status, body) = d.post("/v1/volumes/v/tier");
    assert_eq!(status, 202, "{body}");
    d.wait_log("failpoint before-upload: pausing");
}

#[test]
fn sigterm_finishes_the_upload_in_flight_and_starts_no_more() {
    let mut d = fs_daemon("");
    let data = filled(&d);
    pass_with_slow_upload(&mut d, 1500);
    d.signal(libc::SIGTERM);
    let status = d.wait_exit_status(20).expect("exit within the drain bound");
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(
        d.log().contains("heat flushed and volumes synced"),
        "{}",
        d.log()
    );

    d.env.clear();
    d.restart();
    let info = d.get_json("/v1/volumes/v");
    // The paused upload finished and committed; the pass took no other extent.
    assert_eq!(info["extents_remote"], 1, "{info}");
    assert_eq!(info["extents_local"], 7, "{info}");
    assert!(
        d.read_image("v") == data,
        "data differs after the drained shutdown"
    );
}

#[test]
fn a_second_signal_exits_at_once_and_loses_nothing() {
    let mut d = fs_daemon("");
    let data = filled(&d);
    pass_with_slow_upload(&mut d, 120_000);
    d.signal(libc::SIGTERM);
    // The first signal waits for the upload in flight...
    assert!(
        d.wait_exit_status(2).is_none(),
        "exited before the upload finished"
    );
    // ...the second does not.
    d.signal(libc::SIGINT);
    let status = d
        .wait_exit_status(5)
        .expect("exit soon after the second signal");
    assert!(status.success(), "{status}\n{}", d.log());
    let log = d.log();
    assert!(log.contains("second signal"), "{log}");
    assert!(log.contains("heat flushed and volumes synced"), "{log}");

    d.env.clear();
    d.restart();
    let info = d.get_json("/v1/volumes/v");
    assert_eq!(
        info["extents_remote"], 0,
        "the dropped upload must not count: {info}"
    );
    assert!(
        d.read_image("v") == data,
        "data differs after the hurried shutdown"
    );
    // Heat written before the stop survived it.
    let heat = d.get_json("/v1/volumes/v/heat");
    assert!(heat.to_string().contains("\"writes\""), "{heat}");
}

#[test]
fn json_logs_are_one_object_per_line_with_volume_fields() {
    let d = fs_daemon("[log]\nformat = \"json\"\n");
    filled(&d);
    let (status, _) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200);
    let log = d.log();
    let mut with_volume = 0;
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["volume"] == "v" {
            with_volume += 1;
        }
    }
    assert!(
        with_volume >= 2,
        "no log line carries the volume field:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("\"message\":\"tier pass done\"") && l.contains("\"tiered\":8")),
        "{log}"
    );
}

#[test]
fn secrets_never_reach_a_log_line() {
    let (Some(s3), Some(az)) = (spec(Kind::S3), spec(Kind::Azure)) else {
        return; // skipped: the emulators are not running (and not required)
    };
    // LocalStack accepts any secret, so a recognisable one exercises every
    // path that could print it; the Azure key is the emulator's, a real one.
    let secret = "tierdSECRET-7f3a9c1e5b";
    let s3_toml = s3
        .toml
        .replace(
            "secret_access_key = \"test\"",
            &format!("secret_access_key = \"{secret}\""),
        )
        .replace("[backends.store", "[backends.s3");
    assert!(s3_toml.contains(secret));
    let az_toml = az.toml.replace("[backends.store", "[backends.az");
    let az_key = az_toml
        .lines()
        .find_map(|l| l.strip_prefix("access_key = \""))
        .map(|k| k.trim_end_matches('"').to_string())
        .expect("azure key in the spec");
    // A third backend that cannot be reached, so errors get logged too.
    let dead = format!(
        "[backends.dead]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\npath_style = true\naccess_key_id = \"test\"\nsecret_access_key = \"{secret}\"\n[backends.dead.limits]\nmax_attempts = 2\nattempt_timeout = \"1s\"\ndeadline = \"2s\"\n"
    );
    let classes = "[classes.a]\nbackend = \"s3\"\ntiering_policy = \"all\"\n[classes.b]\nbackend = \"az\"\ntiering_policy = \"all\"\n[classes.d]\nbackend = \"dead\"\ntiering_policy = \"all\"\n";
    let mut d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\n{s3_toml}\n{az_toml}\n{dead}\n{classes}"
    ));
    assert!(d.stop().success());
    d.env = vec![("TIERD_LOG".into(), "debug".into())];
    d.restart();
    for (vol, class) in [("va", "a"), ("vb", "b"), ("vd", "d")] {
        d.create_volume_in(vol, "2MiB", Some("1MiB"), class);
        d.write_image(vol, &random_bytes(2 * MIB, 5));
        let _ = d.post(&format!("/v1/volumes/{vol}/tier?wait=true"));
        run(
            "qemu-io",
            &["-f", "raw", "-r", &d.uri(vol), "-c", "read 4096 4096"],
        );
    }
    let _ = d.post("/v1/config/reload");
    d.signal(libc::SIGHUP);
    let _ = d.post("/v1/gc");
    assert!(d.stop().success());
    let log = d.log();
    assert!(
        log.contains("tier pass done"),
        "the scenario did not run:\n{log}"
    );
    assert!(!log.contains(secret), "the S3 secret reached the log");
    assert!(!log.contains(&az_key), "the Azure key reached the log");
    assert!(
        !log.contains(&az_key[..16]),
        "part of the Azure key reached the log"
    );
    let check = d.cli(&[
        "check",
        "--config",
        d.config.to_str().unwrap_or_default(),
        "--json",
    ]);
    let text = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(!text.contains(secret) && !text.contains(&az_key), "{text}");
}

#[test]
fn the_admin_api_requires_the_bearer_token_when_one_is_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "0123456789abcdef-token";
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).expect("write token");
    let d = Daemon::start_with(&format!("admin_token_file = \"{}\"\n", file.display()));
    let c = reqwest::blocking::Client::new();
    let get = |auth: Option<&str>, path: &str| {
        let mut r = c.get(format!("{}{path}", d.api()));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send().expect("GET")
    };
    assert_eq!(get(None, "/healthz").status().as_u16(), 200);
    assert_eq!(get(None, "/readyz").status().as_u16(), 200);
    for path in ["/v1/volumes", "/metrics", "/v1/volumes/x/map"] {
        let r = get(None, path);
        assert_eq!(r.status().as_u16(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let e: serde_json::Value = r.json().expect("JSON error");
        assert_eq!(e["error"]["code"], "unauthorized");
        assert_eq!(
            get(Some("Bearer wrong-token-0123456789"), path)
                .status()
                .as_u16(),
            401
        );
    }
    assert_eq!(
        get(Some(&format!("Bearer {token}")), "/v1/volumes")
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        get(Some(&format!("Bearer {token}")), "/metrics")
            .status()
            .as_u16(),
        200
    );
    // The scheme is case-insensitive (RFC 7235); the token is not.
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        assert_eq!(
            get(Some(&format!("{scheme} {token}")), "/v1/volumes")
                .status()
                .as_u16(),
            200,
            "{scheme}"
        );
    }
    assert_eq!(
        get(
            Some(&format!("Bearer {}", token.to_uppercase())),
            "/v1/volumes"
        )
        .status()
        .as_u16(),
        401
    );

    let refused = d.cli(&["volume", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("token"));
    let f = file.to_str().unwrap_or_default();
    d.cli_ok(&["volume", "create", "v", "--size", "1MiB", "--token-file", f]);
    assert!(d
        .cli_ok(&["volume", "list", "--token-file", f])
        .contains('v'));
}

#[test]
fn check_refuses_a_backend_root_that_cannot_be_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write file");
    let cfg = dir.path().join("t.toml");
    let base = format!(
        "[server]\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(
        &cfg,
        format!(
            "{base}[backends.cold]\nkind = \"fs\"\nroot = \"{}\"\n",
            file.join("objects").display()
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(tierd_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run tierd");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("backends.cold.root") && err.contains("a-file is not a directory"),
        "{err}"
    );
    // A root that does not exist yet but can be made passes.
    std::fs::write(
        &cfg,
        format!(
            "{base}[backends.cold]\nkind = \"fs\"\nroot = \"{}\"\n",
            dir.path().join("new/objects").display()
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(tierd_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run tierd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("new").exists(), "check creates nothing");
}

#[test]
fn nbd_refuses_non_loopback_addresses_unless_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("t.toml");
    let base = format!(
        "[server]\ndata_dir = \"{}\"\nnbd_listen = \"0.0.0.0:10809\"\n",
        dir.path().display()
    );
    std::fs::write(&cfg, &base).expect("write config");
    for args in [vec!["check", "--config"], vec!["serve", "--config"]] {
        let out = std::process::Command::new(tierd_bin())
            .args(&args)
            .arg(&cfg)
            .output()
            .expect("run tierd");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("server.nbd_listen") && err.contains("allow_insecure_nbd"),
            "{err}"
        );
    }
    // Explicitly allowed, or with TLS: valid (checked, never served beyond
    // loopback).
    for extra in [
        "allow_insecure_nbd = true\n",
        "tls_cert_file = \"/etc/tierd/cert.pem\"\ntls_key_file = \"/etc/tierd/key.pem\"\n",
    ] {
        std::fs::write(&cfg, format!("{base}{extra}")).expect("write config");
        let out = std::process::Command::new(tierd_bin())
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .expect("run tierd");
        assert!(
            out.status.success(),
            "{extra}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A key without a certificate is an error naming both.
    std::fs::write(&cfg, format!("{base}tls_key_file = \"/k.pem\"\n")).expect("write config");
    let out = std::process::Command::new(tierd_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run tierd");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls_cert_file") && err.contains("tls_key_file"),
        "{err}"
    );
}

#[test]
fn the_admin_api_refuses_non_loopback_addresses_without_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("t.toml");
    let base = format!(
        "[server]\ndata_dir = \"{}\"\nhttp_listen = \"0.0.0.0:9464\"\n",
        dir.path().display()
    );
    std::fs::write(&cfg, &base).expect("write config");
    for args in [vec!["check", "--config"], vec!["serve", "--config"]] {
        let out = std::process::Command::new(tierd_bin())
            .args(&args)
            .arg(&cfg)
            .output()
            .expect("run tierd");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("server.http_listen") && err.contains("admin_token_file"),
            "{err}"
        );
    }
    // Explicitly allowed: the configuration is valid (checked, not served,
    // so no test ever listens beyond loopback).
    std::fs::write(&cfg, format!("{base}allow_insecure_admin = true\n")).expect("write config");
    let out = std::process::Command::new(tierd_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run tierd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
