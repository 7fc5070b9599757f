//! The backend goes away during a tier pass: nothing is lost, migration pauses
//! with the reason in the volume's status, and resumes once the backend is
//! back. In its own test binary because it stops an emulator.

use std::time::{Duration, Instant};

use tierd_e2e::backends::{spec, Kind};
use tierd_e2e::{random_bytes, Daemon};

fn ctl(script: &str, action: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../localstack")
        .join(script);
    let out = std::process::Command::new("bash")
        .arg(root)
        .arg(action)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn azure_outage_during_a_pass_loses_nothing_and_resumes() {
    let Some(s) = spec(Kind::Azure) else { return };
    if std::env::var("TIERD_EMU_RUN").is_err() {
        return;
    }
    let d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\nbreaker_failures = 2\nbreaker_pause = \"3s\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n",
        s.toml
    ));
    d.cli_ok(&[
        "volume",
        "create",
        "v",
        "--size",
        "16MiB",
        "--class",
        "c",
        "--extent-size",
        "1MiB",
    ]);
    let data = random_bytes(16 << 20, 5);
    d.write_image("v", &data);

    ctl("azurite.sh", "stop");
    let (st, report) = d.post("/v1/volumes/v/tier?wait=true");
    let status = d.get_json("/v1/volumes/v");
    // Once the pause is over, the CLI's pass fails again and is cut short
    // by the breaker: its report says what it did and why it stopped, and
    // it exits non-zero (Unavailable).
    std::thread::sleep(Duration::from_millis(3500));
    let out = d.cli(&["tier", "v", "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(6), "{text}{err}");
    assert!(
        text.contains("16 candidates, 0 tiered")
            && !text.contains(" 0 failed")
            && text.contains("stopped early")
            && text.contains("of 16 candidates not tried"),
        "{text}"
    );
    assert!(
        err.contains("failed") && err.contains("stopped early"),
        "{err}"
    );
    ctl("azurite.sh", "start");
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["tiered"], 0, "{report}");
    assert!(report["failed"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["held"].as_str().unwrap_or("").contains("paused"),
        "the breaker opened: {report}"
    );
    assert_eq!(status["extents_remote"], 0);
    assert!(status["status"].to_string().contains("paused"), "{status}");

    // Everything is still local and intact.
    assert!(d.read_image("v") == data);

    // Once the pause ends, a pass tiers everything.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = d.post("/v1/volumes/v/tier?wait=true");
        if r["held"].is_null() && r["tiered"].as_u64() == Some(16) {
            break;
        }
        assert!(Instant::now() < deadline, "migration never resumed: {r}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(d.read_image("v") == data);
}
