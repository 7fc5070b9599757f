//! What survives a crash: flushed data and heat.

use std::time::Duration;

use tierd_e2e::{run, Daemon};

#[test]
fn flushed_data_survives_kill_9() {
    let mut d = Daemon::start();
    d.create_volume("v", "32MiB", None);
    // qemu-io flushes before it exits, and we flush explicitly too.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0xc4 5M 3M",
            "-c",
            "write -P 0x3c 20M 4k",
            "-c",
            "flush",
            &d.uri("v"),
        ],
    );
    d.kill9();
    d.restart();
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read -P 0xc4 5M 3M",
            "-c",
            "read -P 0x3c 20M 4k",
            "-c",
            "read -P 0 0 5M",
            &d.uri("v"),
        ],
    );
    let v = d.get_json("/v1/volumes/v");
    assert_eq!(v["size"], 32u64 << 20);
}

fn heat_reads(d: &Daemon, vol: &str) -> Vec<(u64, u64, u64)> {
    let h = d.get_json(&format!("/v1/volumes/{vol}/heat?order=extent"));
    h["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["extent"].as_u64().unwrap(),
                e["reads"].as_u64().unwrap(),
                e["writes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn heat_survives_a_clean_restart() {
    let mut d = Daemon::start_with("[heat]\nflush_interval = \"1h\"\n");
    d.create_volume("h", "16MiB", None);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 1 0 4k",
            "-c",
            "read 0 4k",
            "-c",
            "read 0 4k",
            "-c",
            "read 9M 4k",
            &d.uri("h"),
        ],
    );
    // With an hour-long flush interval only the shutdown flush can persist this.
    assert!(d.stop().success(), "{}", d.log());
    d.restart();
    assert_eq!(heat_reads(&d, "h"), vec![(0, 2, 1), (2, 1, 0)]);
}

#[test]
fn heat_flushed_on_interval_survives_kill_9() {
    let mut d = Daemon::start_with("[heat]\nflush_interval = \"200ms\"\n");
    d.create_volume("h", "16MiB", None);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read 4M 8k",
            "-c",
            "read 13M 4k",
            &d.uri("h"),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    d.restart();
    assert_eq!(heat_reads(&d, "h"), vec![(1, 1, 0), (3, 1, 0)]);
}

#[test]
fn sequential_and_random_reads_are_told_apart() {
    let d = Daemon::start();
    d.create_volume("s", "16MiB", None);
    // One connection reading extent 0 front to back, then hopping around extent 2.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read 0 64k",
            "-c",
            "read 64k 64k",
            "-c",
            "read 128k 64k",
            "-c",
            "read 192k 64k",
            "-c",
            "read 9M 4k",
            "-c",
            "read 11M 4k",
            "-c",
            "read 8200k 4k",
            &d.uri("s"),
        ],
    );
    let h = d.get_json("/v1/volumes/s/heat?order=extent");
    let ex = h["extents"].as_array().unwrap();
    assert_eq!(ex[0]["extent"], 0);
    assert_eq!(ex[0]["sequential_reads"], 3);
    assert_eq!(ex[0]["random_reads"], 1);
    assert_eq!(ex[1]["extent"], 2);
    assert_eq!(ex[1]["sequential_reads"], 0);
    assert_eq!(ex[1]["random_reads"], 3);
}
