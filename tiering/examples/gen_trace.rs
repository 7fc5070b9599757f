//! Writes a synthetic MSR Cambridge / SNIA trace for the simulator benchmark:
//! `gen_trace EVENTS OUT.csv`. One 64 GiB disk over 30 days: a hot set of
//! 1 GiB read and written at random all the time, a warm 8 GiB read now and
//! then, a nightly sequential backup scan of 2 GiB, and cold data written
//! once. Deterministic (xorshift), so runs compare.

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let path = args.next().unwrap_or_else(|| "trace.csv".into());
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const GIB: u64 = 1 << 30;
    const START: u64 = 134_115_840_000_000_000; // 2026-01-01 in filetime
    let span = 30 * 86_400 * 10_000_000u64; // 30 days in 100 ns ticks
    let step = span / events.max(1);
    let mut scan_pos = 0u64;
    for i in 0..events {
        let t = START + i * step;
        let r = rnd() % 100;
        let (kind, offset, size) = if r < 55 {
            let kind = if rnd() % 3 == 0 { "Write" } else { "Read" };
            (kind, (rnd() % (GIB / 4096)) * 4096, 4096)
        } else if r < 75 {
            ("Read", GIB + (rnd() % (8 * GIB / 65536)) * 65536, 65536)
        } else if r < 90 {
            // The backup scan: 1 MiB reads through 2 GiB, over and over.
            scan_pos = (scan_pos + (1 << 20)) % (2 * GIB);
            ("Read", 10 * GIB + scan_pos, 1 << 20)
        } else {
            (
                "Write",
                16 * GIB + (rnd() % (48 * GIB / 65536)) * 65536,
                65536,
            )
        };
        writeln!(out, "{t},bench,0,{kind},{offset},{size},100")?;
    }
    out.flush()
}
