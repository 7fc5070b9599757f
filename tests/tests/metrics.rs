//! `/metrics`: accepted by `promtool check metrics`, counting the real I/O real
//! clients do, and scraped by a real Prometheus server whose query API then
//! returns the same series and values.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tierd_e2e::backends::{spec, Kind};
use tierd_e2e::raw_nbd::{RawNbd, CMD_READ, EINVAL};
use tierd_e2e::{free_port, random_bytes, run, Daemon};

const MIB: usize = 1 << 20;

/// A daemon with class `c` tiering everything to a local-directory backend,
/// and volume `v` (16 MiB in 1 MiB extents) whose first 8 MiB are random.
fn daemon_with_data() -> (Daemon, Vec<u8>) {
    let s = spec(Kind::Fs).expect("fs backend");
    let d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n",
        s.toml
    ));
    d.create_volume_in("v", "16MiB", Some("1MiB"), "c");
    let data = random_bytes(8 * MIB, 7);
    d.write_image("v", &data);
    (d, data)
}

fn scrape(d: &Daemon) -> String {
    let r = reqwest::blocking::get(format!("{}/metrics", d.api())).expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().expect("metrics body")
}

/// The value of the sample `name` whose labels include all of `labels`
/// (summed when several series match), or None when none does.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n != name
            || !labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let v: f64 = value.parse().expect("sample value");
        found = Some(found.unwrap_or(0.0) + v);
    }
    found
}

fn qemu_io(d: &Daemon, cmds: &[&str]) {
    let uri = d.uri("v");
    let mut args = vec!["-f", "raw", &uri];
    for c in cmds {
        args.extend(["-c", c]);
    }
    run("qemu-io", &args);
}

#[test]
fn metrics_pass_promtool_and_count_real_io() {
    let (d, data) = daemon_with_data();
    let (status, report) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tiered"], 8, "{report}");

    let before = scrape(&d);
    // Three random 4 KiB reads of cold extents, each checked against what was written.
    for off in [0usize, 3 * MIB + 4096, 7 * MIB] {
        let pattern = format!("read -v {off} 512");
        let out = run("qemu-io", &["-f", "raw", "-r", &d.uri("v"), "-c", &pattern]);
        let dump = String::from_utf8_lossy(&out.stdout);
        let first = format!("{:02x}", data[off]);
        assert!(dump.contains(&first), "{dump}");
    }
    let after = scrape(&d);

    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(after.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run promtool (Debian package prometheus)");
    assert!(
        check.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let info = d.get_json("/v1/volumes/v");
    let v = |name, labels: &[(&str, &str)]| sample(&after, name, labels);
    assert_eq!(
        v("tierd_volume_bytes", &[("volume", "v"), ("tier", "remote")]),
        info["bytes_remote"].as_f64()
    );
    assert_eq!(
        v("tierd_volume_bytes", &[("volume", "v"), ("tier", "local")]),
        info["bytes_local"].as_f64()
    );
    for state in ["local", "remote", "zero"] {
        assert_eq!(
            v("tierd_extents", &[("volume", "v"), ("state", state)]),
            info[&format!("extents_{state}")].as_f64(),
            "{state}"
        );
    }
    assert_eq!(
        v("tierd_extents", &[("volume", "v"), ("state", "remote")]),
        Some(8.0)
    );
    assert_eq!(
        v(
            "tierd_migrations_total",
            &[("direction", "tier"), ("result", "ok")]
        ),
        Some(8.0)
    );
    assert_eq!(
        v("tierd_migration_bytes_total", &[("direction", "tier")]),
        report["bytes_uploaded"].as_f64()
    );
    assert_eq!(
        v("tierd_policy_pass_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert!(
        v(
            "tierd_backend_requests_total",
            &[("backend", "store"), ("op", "put")]
        )
        .unwrap_or(0.0)
            >= 8.0
    );
    assert!(v("tierd_build_info", &[]).is_some());

    // Exactly the three client reads were counted, timed as remote reads.
    let delta = |name, labels: &[(&str, &str)]| {
        sample(&after, name, labels).unwrap_or(0.0) - sample(&before, name, labels).unwrap_or(0.0)
    };
    assert_eq!(
        delta(
            "tierd_nbd_requests_total",
            &[("volume", "v"), ("op", "read"), ("result", "ok")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "tierd_nbd_request_duration_seconds_count",
            &[("op", "read"), ("tier", "remote")]
        ),
        3.0
    );
    assert!(delta("tierd_rehydration_cache_misses_total", &[]) >= 1.0);
    assert!(
        v("tierd_volume_extent_temperature_count", &[("volume", "v")]).unwrap_or(0.0) >= 8.0,
        "every written extent has a temperature"
    );

    // A request the server refuses is counted by its errno.
    let mut raw = RawNbd::connect(d.nbd_port, "v").expect("NBD connect");
    raw.send(CMD_READ, 1, 16 * MIB as u64 - 512, 4096, &[])
        .expect("send");
    assert_eq!(raw.reply(4096).expect("reply").error, EINVAL);
    let text = scrape(&d);
    assert_eq!(
        sample(
            &text,
            "tierd_nbd_requests_total",
            &[("volume", "v"), ("op", "read"), ("result", "einval")]
        ),
        Some(1.0)
    );
}

/// A Prometheus server on loopback, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tierd\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package prometheus)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The instant vector of `query`, as (labels, value) pairs.
    fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let Ok(r) = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", query)])
            .send()
        else {
            return Vec::new();
        };
        let Ok(body) = r.json::<serde_json::Value>() else {
            return Vec::new();
        };
        body["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let v = s["value"][1]
                            .as_str()
                            .and_then(|x| x.parse().ok())
                            .unwrap_or(f64::NAN);
                        (s["metric"].clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `query` until its single value is `want` (60 s at most).
    fn wait_for(&self, query: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.query(query);
            if last.len() == 1 && last[0].1 == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("Prometheus query {query} never gave {want}; last answer {last:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_tierd_during_io() {
    let (d, _) = daemon_with_data();
    let prom = Prometheus::start(d.http_port);
    prom.wait_for("up{job=\"tierd\"}", 1.0);

    // I/O while Prometheus scrapes: writes, a tier pass, cold reads.
    qemu_io(
        &d,
        &[
            "write -P 0x11 9M 64k",
            "write -P 0x22 10M 64k",
            "write -P 0x33 11M 64k",
        ],
    );
    let (status, report) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    let tiered = report["tiered"].as_f64().expect("tiered count");
    assert!(tiered >= 8.0, "{report}");
    qemu_io(&d, &["read -P 0x22 10M 64k", "read 1M 4k"]);

    let text = scrape(&d);
    let writes = sample(
        &text,
        "tierd_nbd_requests_total",
        &[("volume", "v"), ("op", "write"), ("result", "ok")],
    )
    .expect("write counter");
    let remote = d.get_json("/v1/volumes/v")["bytes_remote"]
        .as_f64()
        .expect("bytes_remote");

    prom.wait_for(
        "sum(tierd_nbd_requests_total{job=\"tierd\",volume=\"v\",op=\"write\",result=\"ok\"})",
        writes,
    );
    prom.wait_for(
        "tierd_migrations_total{job=\"tierd\",direction=\"tier\",result=\"ok\"}",
        tiered,
    );
    prom.wait_for(
        "tierd_volume_bytes{job=\"tierd\",volume=\"v\",tier=\"remote\"}",
        remote,
    );
    prom.wait_for(
        "sum(tierd_nbd_request_duration_seconds_count{job=\"tierd\",op=\"read\",tier=\"remote\"})",
        2.0,
    );
    // Histograms are usable as Prometheus histograms.
    let p99 = prom.query(
        "histogram_quantile(0.99, sum by (le) (tierd_nbd_request_duration_seconds_bucket{op=\"read\",tier=\"remote\"}))",
    );
    assert_eq!(p99.len(), 1, "{p99:?}");
    assert!(p99[0].1 > 0.0 && p99[0].1.is_finite(), "{p99:?}");
    let build = prom.query("tierd_build_info");
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(build[0].0["version"], env!("CARGO_PKG_VERSION"));
}
