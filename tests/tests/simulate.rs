//! `tierd simulate` through the real binary: both trace formats give the same
//! known answers, a trace the daemon records replays, bad input is refused
//! with a clear message, and the simulator agrees with the daemon: the same
//! trace replayed live over NBD against LocalStack, on a compressed clock,
//! leaves the same extents tiered after the same GETs and PUTs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tierd_e2e::backends::{spec, Kind};
use tierd_e2e::raw_nbd::{RawNbd, CMD_READ, CMD_WRITE};
use tierd_e2e::{random_bytes, run, tierd_bin, Daemon};

const CMD_TRIM: u16 = 4;
const MIB: u64 = 1 << 20;
const DAY_MS: f64 = 86_400_000.0;

#[derive(Clone, Copy, Debug)]
enum Op {
    Read,
    Write,
    Trim,
}

/// (day, op, offset, length)
type Trace = Vec<(f64, Op, u64, u64)>;

/// Windows filetime (100 ns ticks since 1601) of a day offset, from 2026-01-01.
fn filetime(day: f64) -> u64 {
    const START: u64 = 134_115_840_000_000_000;
    START + (day * DAY_MS * 10_000.0) as u64
}

fn write_msr(path: &Path, t: &Trace) {
    let mut s = String::new();
    for (day, op, off, len) in t {
        let kind = match op {
            Op::Read => "Read",
            Op::Write => "Write",
            Op::Trim => panic!("MSR traces have no trims"),
        };
        s += &format!("{},host,0,{kind},{off},{len},120\n", filetime(*day));
    }
    std::fs::write(path, s).expect("write trace");
}

fn write_blkparse(path: &Path, t: &Trace) {
    let mut s = String::new();
    for (i, (day, op, off, len)) in t.iter().enumerate() {
        let rwbs = match op {
            Op::Read => "R",
            Op::Write => "W",
            Op::Trim => "D",
        };
        let secs = day * 86_400.0;
        // A queue event, with the events blkparse prints around it.
        s += &format!(
            "  8,16   1 {:>8} {secs:>14.9}  4242  Q  {rwbs} {} + {} [fio]\n",
            2 * i + 1,
            off / 512,
            len / 512
        );
        s += &format!(
            "  8,16   1 {:>8} {secs:>14.9}  4242  D  {rwbs} {} + {} [fio]\n",
            2 * i + 2,
            off / 512,
            len / 512
        );
    }
    s += "CPU1 (8,16):\n Reads Queued:           1,        4KiB\t Writes Queued:           1,        4KiB\n";
    std::fs::write(path, s).expect("write trace");
}

fn simulate(args: &[&str]) -> serde_json::Value {
    let out = Command::new(tierd_bin())
        .arg("simulate")
        .args(args)
        .arg("--json")
        .output()
        .expect("run tierd simulate");
    assert!(
        out.status.success(),
        "tierd simulate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// 32 extents of 4 MiB written on day 0.1, scanned sequentially every week.
fn scans() -> Trace {
    let mut t: Trace = (0..32)
        .map(|i| (0.1, Op::Write, i * 4 * MIB, 4 * MIB))
        .collect();
    for week in 1..=4 {
        for k in 0..128 {
            t.push((week as f64 * 7.0 + k as f64 * 1e-6, Op::Read, k * MIB, MIB));
        }
    }
    t
}

#[test]
fn both_trace_formats_give_the_known_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (msr, blk) = (dir.path().join("t.csv"), dir.path().join("t.blktrace.txt"));
    write_msr(&msr, &scans());
    write_blkparse(&blk, &scans());
    let chart = dir.path().join("local.png");
    let mut reports = Vec::new();
    for f in [&msr, &blk] {
        reports.push(simulate(&[
            "--trace",
            f.to_str().unwrap_or_default(),
            "--class",
            "auto:2d",
            "--class",
            "auto:2d/on-read",
            "--scan-interval",
            "1h",
            "--chart",
            chart.to_str().unwrap_or_default(),
        ]));
    }
    for r in &reports {
        assert_eq!(r["events"], 32 + 4 * 128);
        let (auto, on_read) = (&r["policies"][0], &r["policies"][1]);
        // auto: tiered once; scans stream from the store without coming back.
        assert_eq!(auto["puts"], 32, "{auto}");
        assert_eq!(auto["rehydrations"], 0);
        assert_eq!(
            auto["gets"], 32,
            "the fetch cache holds the volume after the first scan"
        );
        // on-read: every scan brings it all back, and it is tiered again.
        assert_eq!(on_read["rehydrations"], 4 * 32, "{on_read}");
        assert_eq!(on_read["thrash"], 4 * 32);
        assert_eq!(on_read["puts"], 32 + 3 * 32);
        assert!(on_read["cost"]["total"].as_f64() > auto["cost"]["total"].as_f64());
        assert!(r["optimum"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("optimum"));
    }
    // Timestamps round differently (100 ns ticks against nanoseconds), so
    // the byte-time integrals differ in their last digits; the counts do not.
    let (a, b) = (&reports[0]["policies"], &reports[1]["policies"]);
    for i in 0..2 {
        for key in [
            "puts",
            "gets",
            "rehydrations",
            "thrash",
            "cold_reads",
            "remote_extents",
            "local_peak_bytes",
        ] {
            assert_eq!(a[i][key], b[i][key], "the formats disagree on {key}");
        }
    }
    let png = std::fs::read(&chart).expect("chart written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn bad_input_is_refused_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("t.csv");
    write_msr(&trace, &scans());
    let bad_line = dir.path().join("bad.csv");
    std::fs::write(
        &bad_line,
        "134115840000000000,h,0,Read,0,4096,1\n134115840000000001,h,0,Jump,0,4096,1\n",
    )
    .expect("write");
    let t = trace.to_str().unwrap_or_default();
    for (args, needle) in [
        (vec!["--trace", t, "--class", "sometimes"], "sometimes"),
        (vec!["--trace", t, "--class", "auto:soon"], "soon"),
        (
            vec!["--trace", "/nonexistent/t.csv", "--class", "auto"],
            "/nonexistent/t.csv",
        ),
        (
            vec![
                "--trace",
                bad_line.to_str().unwrap_or_default(),
                "--class",
                "auto",
            ],
            "bad.csv:2",
        ),
        (
            vec![
                "--trace",
                t,
                "--class",
                "auto",
                "--pricing-tier",
                "gold-plated",
            ],
            "gold-plated",
        ),
        (
            vec!["--trace", t, "--class", "auto", "--extent-size", "3MiB"],
            "extent-size",
        ),
    ] {
        let out = Command::new(tierd_bin())
            .arg("simulate")
            .args(&args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn a_trace_the_daemon_records_replays() {
    let d = Daemon::start_with("[classes.default]\ntiering_policy = \"none\"\n[classes.traced]\ntiering_policy = \"none\"\nrecord_trace = true\n");
    d.cli_ok(&[
        "volume", "create", "v", "--size", "16MiB", "--class", "traced",
    ]);
    d.cli_ok(&["volume", "create", "w", "--size", "16MiB"]);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &d.uri("v"),
            "-c",
            "write -P 7 0 1M",
            "-c",
            "read 0 4k",
            "-c",
            "read 8M 64k",
        ],
    );
    // Switched on for one volume of an untraced class through the API.
    let r = reqwest::blocking::Client::new()
        .patch(format!("{}/v1/volumes/w", d.api()))
        .json(&serde_json::json!({"record_trace": true}))
        .send()
        .expect("PATCH");
    assert_eq!(r.status().as_u16(), 200);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &d.uri("w"),
            "-c",
            "write -P 1 4M 4k",
            "-c",
            "discard 4M 4k",
        ],
    );
    let mut d = d;
    assert!(d.stop().success());
    let traces = d.data_dir().join("traces");
    let v = simulate(&[
        "--trace",
        traces.join("v.trace").to_str().unwrap_or_default(),
        "--class",
        "all",
    ]);
    assert_eq!(v["events"], 3, "{v}");
    assert_eq!(v["policies"][0]["puts"], 1, "the one written extent");
    let w = simulate(&[
        "--trace",
        traces.join("w.trace").to_str().unwrap_or_default(),
        "--class",
        "all",
    ]);
    assert_eq!(w["events"], 2, "{w}");
}

/// Sends one request and checks it succeeded.
fn request(c: &mut RawNbd, handle: u64, op: Op, off: u64, len: u64, payload: &[u8]) {
    let cmd = match op {
        Op::Read => CMD_READ,
        Op::Write => CMD_WRITE,
        Op::Trim => CMD_TRIM,
    };
    c.send(cmd, handle, off, len as u32, payload).expect("send");
    let read_len = if matches!(op, Op::Read) {
        len as usize
    } else {
        0
    };
    let r = c.reply(read_len).expect("reply");
    assert_eq!((r.handle, r.error), (handle, 0), "{op:?} at {off}");
}

fn backend_requests(d: &Daemon, ops: &[&str]) -> u64 {
    let text = reqwest::blocking::get(format!("{}/metrics", d.api()))
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("tierd_backend_requests_total{"))
        .filter(|l| ops.iter().any(|op| l.contains(&format!("op=\"{op}\""))))
        .filter(|l| l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// Request limits 43200 times longer: what the backend toml's real-time
/// limits are on a clock running that much faster.
fn scaled_limits(toml: &str) -> String {
    toml.replace("initial_backoff = \"20ms\"", "initial_backoff = \"15m\"")
        .replace("max_backoff = \"200ms\"", "max_backoff = \"2h\"")
        .replace("attempt_timeout = \"5s\"", "attempt_timeout = \"3d\"")
        .replace("deadline = \"20s\"", "deadline = \"10d\"")
}

#[test]
fn the_simulator_agrees_with_the_daemon() {
    let Some(s3) = spec(Kind::S3) else { return };
    // One simulated day is two real seconds; the daemon's own policy loop
    // runs once a simulated day, as the simulation's passes do. Every timer
    // runs on the daemon's clock, so the backend's request limits are given
    // in simulated time too (the same real seconds as elsewhere), and GC,
    // which the simulation leaves out, runs only after the replay. Read-ahead
    // stays at two extents, so the hand count below holds (growing read-ahead
    // is checked alike in the daemon's agreement unit tests).
    let d = Daemon::start_with(&format!(
        "clock_speed = 43200\n[tiering]\nscan_interval = \"1d\"\ngc_interval = \"30d\"\nreadahead_max_extents = 2\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"auto\"\ncooling_period = \"2d\"\n",
        scaled_limits(&s3.toml)
    ));
    d.create_volume_in("v", "16MiB", Some("1MiB"), "c");
    // Every access falls either within the 2-day cooling period of the
    // previous one or more than a day after the extent became eligible, so
    // the phase of the daemon's passes cannot change what they do.
    let mut t: Trace = (0..16).map(|i| (0.25, Op::Write, i * MIB, MIB)).collect();
    t.extend((0..4).map(|i| (0.5, Op::Read, i * MIB + 8192, 4096)));
    t.push((4.0, Op::Read, 5 * MIB + 4096, 4096)); // random: brought back
    t.push((4.2, Op::Write, 4096, 4096)); // partial write: fetched, local
    t.push((4.4, Op::Write, MIB, MIB)); // full overwrite: no fetch
    t.extend((8..10).map(|e| (4.6, Op::Read, e * MIB, MIB))); // a scan with read-ahead
    t.push((5.0, Op::Trim, 2 * MIB, MIB)); // a zero extent, no object
    t.push((8.5, Op::Read, 15 * MIB + 4096, 4096));

    let (remote, puts, gets) = replay(&d, "v", &t, 9.5);
    let r = simulate_as_daemon(&d, &t);
    let p = &r["policies"][0];
    agrees(&d, p, &remote, puts, gets);
    // And both match the hand count: 16 tiered, 3 of them again; GETs for
    // the random read, the partial write, the scan of 8 and 9 with read-ahead
    // of 10 and 11, and the last read.
    assert_eq!(remote, vec![0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert_eq!((puts, gets), (19, 7));
}

/// Replays `t` (one simulated day every two real seconds) over NBD into
/// volume `vol` of `d`, then waits until day `end` (the simulation's end: one
/// pass interval after the last event). Returns the extents remote then and
/// the PUTs and GETs the backend answered.
fn replay(d: &Daemon, vol: &str, t: &Trace, end: f64) -> (Vec<u64>, u64, u64) {
    let payloads: Vec<Vec<u8>> = t
        .iter()
        .enumerate()
        .map(|(i, (_, op, off, len))| match op {
            Op::Write => random_bytes(*len as usize, off ^ (i as u64 + 1)),
            _ => Vec::new(),
        })
        .collect();
    let mut c = RawNbd::connect(d.nbd_port, vol).expect("NBD connect");
    let start = Instant::now();
    for (i, (day, op, off, len)) in t.iter().enumerate() {
        let at = Duration::from_secs_f64(day * 2.0);
        let now = start.elapsed();
        // Events at the same moment go as one batch, one after another; only
        // a batch's first event must start on time (the next batch's check
        // catches a batch that overran).
        let batch_start = i == 0 || t[i - 1].0 != *day;
        assert!(
            !batch_start || now < at + Duration::from_millis(400),
            "replay fell behind at event {i} (day {day}): {now:?} against {at:?}"
        );
        std::thread::sleep(at.saturating_sub(now));
        request(&mut c, i as u64 + 1, *op, *off, *len, &payloads[i]);
    }
    std::thread::sleep(Duration::from_secs_f64(end * 2.0).saturating_sub(start.elapsed()));
    let remote: Vec<u64> = d.get_json(&format!("/v1/volumes/{vol}/extents"))["extents"]
        .as_array()
        .expect("extents")
        .iter()
        .filter(|e| e["state"] == "remote")
        .filter_map(|e| e["extent"].as_u64())
        .collect();
    (
        remote,
        backend_requests(d, &["put"]),
        backend_requests(d, &["get", "get_range"]),
    )
}

/// Checks the simulation's policy report `p` ends with the `remote`
/// extents, `puts` and `gets` the daemon `d` ended with.
fn agrees(d: &Daemon, p: &serde_json::Value, remote: &[u64], puts: u64, gets: u64) {
    let sim_remote: Vec<u64> = p["remote_extents"][0]
        .as_array()
        .expect("remote extents")
        .iter()
        .filter_map(|e| e.as_u64())
        .collect();
    assert_eq!(sim_remote, remote, "tiered extents differ\n{}", d.log());
    assert_eq!(p["puts"], puts, "PUTs differ");
    assert_eq!(p["gets"], gets, "GETs differ");
}

/// The same trace through the simulator, with the daemon's configuration
/// and its class `c`.
fn simulate_as_daemon(d: &Daemon, t: &Trace) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("agree.blktrace.txt");
    write_blkparse(&trace, t);
    simulate(&[
        "--trace",
        trace.to_str().unwrap_or_default(),
        "--config",
        d.config.to_str().unwrap_or_default(),
        "--class",
        "c",
        "--extent-size",
        "1MiB",
        "--scan-interval",
        "1d",
    ])
}

#[test]
fn an_auto_cooling_period_agrees_with_the_daemon() {
    let Some(s3) = spec(Kind::S3) else { return };
    // As above, one simulated day is two real seconds. The class derives its
    // cooling period: 1 MiB extents at the default S3 Standard prices break
    // even after 2.7 days; the gaps and idle periods seen decide per heat band.
    let d = Daemon::start_with(&format!(
        "clock_speed = 43200\n[tiering]\nscan_interval = \"1d\"\ngc_interval = \"30d\"\nreadahead_max_extents = 2\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"auto\"\ncooling_period = \"auto\"\nmin_cooling = \"1h\"\n",
        scaled_limits(&s3.toml)
    ));
    d.create_volume_in("v", "16MiB", Some("1MiB"), "c");
    // Extents 0-7 are hot: twenty small writes each, every 1.5 days. Extents
    // 8-15 are written once. Events sit away from day boundaries, and the
    // daemon's passes may run up to 0.4 day before the simulation's without
    // changing a decision (its clock starts before the replay).
    let mut t: Trace = (0..16).map(|i| (0.1, Op::Write, i * MIB, MIB)).collect();
    for day in [0.2, 1.45, 2.95, 4.45, 5.95, 7.45] {
        for e in 0..8u64 {
            for k in 0..20u64 {
                t.push((day, Op::Write, e * MIB + k * 40_960, 4096));
            }
        }
    }
    t.push((5.3, Op::Read, 12 * MIB + 8192, 4096)); // random: brought back
    t.extend((8..12).map(|e| (6.5, Op::Read, e * MIB, MIB))); // a scan: stays remote, warms nothing
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (remote, puts, gets) = replay(&d, "v", &t, 8.5);
    let r = simulate_as_daemon(&d, &t);
    let p = &r["policies"][0];
    agrees(&d, p, &remote, puts, gets);
    // By hand: a 1 MiB extent pays for its PUT only after 2.7 idle days, so
    // nothing young is tiered. The hot extents come back after 1.25-1.5
    // days, below that, so their band cools past their gaps and they stay
    // local (never tiered, no thrash); the written-once extents tier once
    // their idle periods say so (their band goes to the 1 h minimum), and
    // extent 12, read back at random, goes again.
    assert_eq!(remote, (8..16).collect::<Vec<u64>>());
    let show = d.get_json("/v1/volumes/v");
    let cooling = &show["cooling"];
    assert_eq!(cooling["mode"], "auto", "{show}");
    assert_eq!(cooling["thrash"], 0, "{show}");
    assert_eq!(cooling["break_even_ms"], 234_182_257, "2.71 days: {show}");
    let hot_band = cooling["band_cooling_ms"][4].as_u64().unwrap_or(0);
    assert!(hot_band > 129_600_000, "past 1.5 days: {show}");
    assert_eq!(cooling["band_cooling_ms"][0], 3_600_000, "{show}");
    assert_eq!(show["rehydrations"], 1, "{show}");
    let sim_cooling = p["cooling_ms"][0].as_u64().unwrap_or(0);
    assert!(sim_cooling > 129_600_000, "{p}");
    assert!(show["cost"]["now"].as_f64().unwrap_or(0.0) > 0.0, "{show}");
}

/// The extents of volume `vol` of `d` in `state` (as its extent list says).
fn extents_in(d: &Daemon, vol: &str, state: &str) -> Vec<u64> {
    d.get_json(&format!("/v1/volumes/{vol}/extents"))["extents"]
        .as_array()
        .expect("extents")
        .iter()
        .filter(|e| e["state"] == state)
        .filter_map(|e| e["extent"].as_u64())
        .collect()
}

/// What `t` leaves in a `size`-byte volume, with the payloads `replay` sends.
fn expected_content(t: &Trace, size: u64) -> Vec<u8> {
    let mut data = vec![0u8; size as usize];
    for (i, (_, op, off, len)) in t.iter().enumerate() {
        let r = *off as usize..(*off + *len) as usize;
        match op {
            Op::Write => {
                data[r].copy_from_slice(&random_bytes(*len as usize, off ^ (i as u64 + 1)))
            }
            Op::Trim => data[r].fill(0),
            Op::Read => {}
        }
    }
    data
}

#[test]
fn write_overlays_agree_with_the_daemon() {
    let Some(s3) = spec(Kind::S3) else { return };
    // As above, one simulated day is two real seconds. The class keeps
    // write overlays and never brings extents back: partial writes to
    // tiered extents stay local beside their objects, reads fetch ranges.
    let d = Daemon::start_with(&format!(
        "clock_speed = 43200\n[tiering]\nscan_interval = \"1d\"\ngc_interval = \"30d\"\nreadahead_max_extents = 2\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"auto\"\ncooling_period = \"2d\"\nretrieval_policy = \"never\"\nwrite_overlay = true\n",
        scaled_limits(&s3.toml)
    ));
    d.create_volume_in("v", "16MiB", Some("1MiB"), "c");
    let mut t: Trace = (0..16).map(|i| (0.1, Op::Write, i * MIB, MIB)).collect();
    // Day 3.5, everything tiered (cold after 2 days, the pass of day 3):
    t.push((3.5, Op::Write, MIB + 8192, 4096)); // one block of 1: an overlay, no GET
    t.push((3.5, Op::Write, 2 * MIB + 5120, 512)); // inside a block of 2: one ranged GET
    t.push((3.5, Op::Write, 3 * MIB, MIB / 2)); // half of 3: an overlay merged later
    t.push((3.5, Op::Write, 4 * MIB, MIB / 2)); // half of 4...
    t.push((3.5, Op::Write, 4 * MIB + MIB / 2, MIB / 2)); // ...then the rest: local, no GET
    t.push((3.5, Op::Write, 5 * MIB + 4096, 4096)); // an overlay of 5...
    t.push((3.6, Op::Trim, 5 * MIB, MIB)); // ...trimmed whole: a zero extent
    t.push((3.7, Op::Read, MIB + 8192, 4096)); // the overlay's own block: no GET
    t.push((3.8, Op::Read, 6 * MIB + 8192, 4096)); // a tiered extent: a ranged GET
    t.push((8.5, Op::Read, 15 * MIB + 4096, 4096)); // the simulation runs to day 9.5
    let (remote, puts, gets) = replay(&d, "v", &t, 9.5);
    let overlays = extents_in(&d, "v", "overlay");
    let r = simulate_as_daemon(&d, &t);
    let p = &r["policies"][0];
    agrees(&d, p, &remote, puts, gets);
    assert_eq!(p["overlay_extents"][0], serde_json::json!(overlays), "{p}");
    // By hand: a merge costs a GET and a PUT, worth it once the local space
    // the overlay takes has cost as much: 1.93 days for a whole 1 MiB
    // extent at these prices (but never sooner than the 2-day cooling),
    // twice that for half of one, so extent 3 (last written on day 3.5) is
    // merged by the pass of day 8; one block of 256 would wait 512 days.
    // Extent 4, local again once its overlay held every block, cools and
    // goes again on day 6. 16 PUTs, a merge and extent 4's; GETs for the
    // edge block of 2, the reads of 6 and 15, and the merge of 3.
    assert_eq!(overlays, vec![1, 2]);
    assert_eq!(remote, vec![0, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!((puts, gets), (18, 4));
    assert_eq!(p["merges"], 1, "{p}");
    assert_eq!(p["rehydrations"], 0, "{p}");
    // Every byte reads as written, overlays and all.
    assert!(
        d.read_image("v") == expected_content(&t, 16 * MIB),
        "the volume differs from what was written"
    );
}

/// `--snapshot-every` prices the data snapshots hold: with hourly snapshots
/// of a volume rewritten in place, `none` keeps more on local disk than
/// `snapshot-only`, which moves the snapshots' old data once it cools.
#[test]
fn a_snapshot_schedule_prices_what_snapshots_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("rewrites.blktrace.txt");
    // 64 MiB written on day 0, then rewritten whole every 6 hours for 3 days.
    let mut t: Trace = vec![(0.0, Op::Write, 0, 64 * MIB)];
    t.extend((1..12).map(|i| (i as f64 * 0.25, Op::Write, 0, 64 * MIB)));
    write_blkparse(&trace, &t);
    let r = simulate(&[
        "--trace",
        trace.to_str().unwrap_or_default(),
        "--class",
        "none",
        "--class",
        "snapshot-only:2h",
        "--scan-interval",
        "1h",
        "--snapshot-every",
        "1h",
        "--snapshot-keep",
        "24",
    ]);
    let p = &r["policies"];
    assert!(
        p[0]["snapshots"].as_u64().unwrap_or(0) >= 60,
        "one an hour: {r}"
    );
    assert_eq!(p[0]["puts"], 0, "{r}");
    assert!(p[1]["puts"].as_u64().unwrap_or(0) > 0, "{r}");
    let local = |i: usize| p[i]["local_mean_bytes"].as_f64().unwrap_or(0.0);
    assert!(
        local(0) > local(1) * 1.5,
        "none holds the snapshots' data locally: {r}"
    );
    let out = Command::new(tierd_bin())
        .args([
            "simulate",
            "--trace",
            trace.to_str().unwrap_or_default(),
            "--class",
            "auto",
        ])
        .args(["--snapshot-every", "0s"])
        .output()
        .expect("run tierd simulate");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("snapshot-every"));
}
