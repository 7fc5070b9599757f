//! Hostile and careless NBD clients against the real binary: one that sends
//! requests and never reads the replies holds no more memory than its
//! budget while another client keeps being served, and once it goes away
//! the daemon stops working for it within seconds.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

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
