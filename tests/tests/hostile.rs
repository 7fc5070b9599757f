//! Hostile and careless NBD clients against the real binary: one that sends
//! requests and never reads the replies holds no more memory than its
//! budget while another client keeps being served, and once it goes away
//! the daemon stops working for it within seconds.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use serde_json::json;
use tierd_e2e::raw_nbd::RawNbd;
use tierd_e2e::{random_bytes, Daemon};

const MIB: u64 = 1 << 20;
const CMD_READ: u16 = 0;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// CPU time process `pid` has used (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    field(11) + field(12)
}

/// A client that pipelines `n` reads of `len` bytes each and reads nothing.
fn hog(d: &Daemon, export: &str, n: u64, len: u32, size: u64) -> RawNbd {
    let mut c = RawNbd::connect(d.nbd_port, export).expect("connect");
    c.s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let mut batch = Vec::new();
    for i in 0..n {
        let offset = (i * len as u64) % (size - len as u64 + 1);
        batch.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        batch.extend_from_slice(&0u16.to_be_bytes());
        batch.extend_from_slice(&CMD_READ.to_be_bytes());
        batch.extend_from_slice(&(i + 1).to_be_bytes());
        batch.extend_from_slice(&offset.to_be_bytes());
        batch.extend_from_slice(&len.to_be_bytes());
    }
    // The daemon stops reading once the budget is spent; what it has not
    // read waits in the socket buffers (or the write times out: fine too).
    let _ = c.s.write_all(&batch);
    c
}

fn peak_rss(pid: u32, over: Duration) -> u64 {
    let end = Instant::now() + over;
    let mut peak = 0;
    while Instant::now() < end {
        peak = peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    peak
}

#[test]
fn a_client_that_never_reads_replies_holds_only_its_budget() {
    let d = Daemon::start_with("nbd_connection_buffer = \"32MiB\"\nnbd_total_buffer = \"128MiB\"");
    d.create_volume("v", "256MiB", None);
    let data = random_bytes(64 * MIB as usize, 7);
    let mut w = RawNbd::connect(d.nbd_port, "v").expect("connect");
    for (i, chunk) in data.chunks(4 * MIB as usize).enumerate() {
        let off = i as u64 * 4 * MIB;
        w.send(1, i as u64, off, chunk.len() as u32, chunk)
            .expect("write");
        assert_eq!(w.reply(0).expect("reply").error, 0);
    }
    let pid = d.pid();
    let before = peak_rss(pid, Duration::from_millis(300));

    // Two clients each ask for 200 reads of 32 MiB (6.4 GB) and read nothing.
    let hogs: Vec<RawNbd> = (0..2)
        .map(|_| hog(&d, "v", 200, 32 << 20, 256 * MIB))
        .collect();
    let peak = peak_rss(pid, Duration::from_secs(3));
    // Meanwhile another client reads 64 MiB and gets the right bytes.
    let mut good = RawNbd::connect(d.nbd_port, "v").expect("connect");
    for i in 0..16u64 {
        good.send(CMD_READ, i, i * 4 * MIB, 4 * MIB as u32, &[])
            .expect("read");
        let r = good.reply(4 * MIB as usize).expect("reply");
        assert_eq!(r.error, 0);
        assert!(
            r.data == data[(i * 4 * MIB) as usize..((i + 1) * 4 * MIB) as usize],
            "read {i} returned other bytes"
        );
    }
    let peak = peak.max(peak_rss(pid, Duration::from_millis(500)));
    // The two hogs hold at most their 32 MiB each, plus what any daemon
    // allocates along the way (reply buffers of the good client, pools).
    let grown = peak.saturating_sub(before);
    assert!(
        grown < (2 * 32 + 64) * MIB,
        "RSS grew by {} MiB with two clients not reading replies",
        grown / MIB
    );
    let m = reqwest::blocking::get(format!("{}/metrics", d.api()))
        .and_then(|r| r.text())
        .unwrap_or_default();
    let buffered: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("tierd_nbd_buffered_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0);
    // Each hog holds its whole budget, one reply it cannot send.
    assert_eq!(buffered, (2 * 32 * MIB) as f64, "tierd_nbd_buffered_bytes");
    drop(hogs);
}

#[test]
fn a_client_gone_with_requests_queued_leaves_no_work_behind() {
    let d = Daemon::start_with("nbd_connection_buffer = \"64MiB\"");
    d.create_volume("v", "256MiB", None);
    let pid = d.pid();
    // 3,000 reads of 32 MiB (about 100 GB of copying) queued, then the
    // client closes without reading a byte of them.
    let c = hog(&d, "v", 3000, 32 << 20, 256 * MIB);
    std::thread::sleep(Duration::from_millis(500));
    let _ = c.s.shutdown(Shutdown::Both);
    drop(c);
    d.wait_log("NBD connection closed");
    // Within seconds the daemon is idle: under 10% of a core over 2 s.
    std::thread::sleep(Duration::from_secs(2));
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - t0;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    assert!(
        used * 10 < 2 * hz,
        "{used} ticks of CPU ({hz}/s) in the 2 s after the client left\n{}",
        d.log()
    );
}

fn post_json(d: &Daemon, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{path}", d.api()))
        .json(&body)
        .send()
        .expect("POST");
    (
        r.status().as_u16(),
        r.json().unwrap_or(serde_json::Value::Null),
    )
}

/// Files the daemon keeps for volumes (`*.img` under its data directory).
fn volume_files(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![d.data_dir()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "img") {
                out.push(p.display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_create_the_local_filesystem_cannot_hold_is_refused_and_leaves_nothing() {
    let mut d = Daemon::start();
    d.create_volume("a", "1MiB", None);
    let files = volume_files(&d);
    // 1 PiB passes the volume-size check but no ext4 file holds it: a 400
    // that names the limit, twice, and nothing left behind.
    for _ in 0..2 {
        let (s, v) = post_json(&d, "/v1/volumes", json!({"name": "huge", "size": "1PiB"}));
        assert_eq!(s, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("huge") && msg.contains("largest is"), "{msg}");
        assert_eq!(volume_files(&d), files, "nothing left behind");
    }
    // The next create works (before: "File exists" for every later create).
    let (s, v) = post_json(&d, "/v1/volumes", json!({"name": "b", "size": "1MiB"}));
    assert_eq!(s, 201, "{v}");
    // A per-process file size limit is named too, before the file is made.
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &d.pid().to_string(), "--fsize=1073741824"])
        .output()
        .expect("prlimit");
    assert!(out.status.success(), "{out:?}");
    let (s, v) = post_json(&d, "/v1/volumes", json!({"name": "c", "size": "2GiB"}));
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("RLIMIT_FSIZE"), "{msg}");
    let (s, v) = post_json(&d, "/v1/volumes", json!({"name": "c", "size": "512MiB"}));
    assert_eq!(s, 201, "{v}");
    // And the daemon restarts with what it has.
    d.stop();
    d.restart();
    let list = d.get_json("/v1/volumes");
    let names: Vec<&str> = list["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

/// Creates volumes `names` through the API, 8 at a time; the statuses.
fn create_many(d: &Daemon, names: &[String]) -> Vec<(u16, serde_json::Value)> {
    let chunks: Vec<&[String]> = names.chunks(names.len().div_ceil(8).max(1)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|n| post_json(d, "/v1/volumes", json!({"name": n, "size": "1MiB"})))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("create thread"))
            .collect()
    })
}

fn volume_count(d: &Daemon) -> usize {
    d.get_json("/v1/volumes")["volumes"]
        .as_array()
        .map(|v| v.len())
        .unwrap_or(0)
}

#[test]
fn thousands_of_volumes_under_a_soft_open_file_limit_of_1024() {
    let mut d = Daemon::start();
    d.stop();
    // Soft 1,024 (the usual default), hard 8,192: the daemon raises it.
    d.nofile = Some((1024, 8192));
    d.restart();
    d.wait_log("raised the open-file limit");
    let names: Vec<String> = (0..5000).map(|i| format!("v{i:04}")).collect();
    for (s, v) in create_many(&d, &names) {
        assert_eq!(s, 201, "{v}");
    }
    // It restarts with them all (one open file each), under the same limits.
    d.stop();
    d.restart();
    assert_eq!(volume_count(&d), 5000);
    let out = d.qemu_io("v4999", "write -P 0x42 0 4k");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_create_past_the_open_file_limit_is_refused_and_the_daemon_restarts() {
    let mut d = Daemon::start();
    d.stop();
    // Hard 1,024: 512 kept for RocksDB and connections, 512 layer files.
    d.nofile = Some((1024, 1024));
    d.restart();
    let names: Vec<String> = (0..600).map(|i| format!("v{i:03}")).collect();
    let results = create_many(&d, &names);
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 512, "created before the limit");
    for (s, v) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*s, 507, "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("RLIMIT_NOFILE 1024"), "{msg}");
    }
    d.stop();
    d.restart();
    assert_eq!(volume_count(&d), 512);
    assert!(d.log().contains("near the open-file limit"), "{}", d.log());
}
