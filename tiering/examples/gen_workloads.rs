//! Writes the synthetic 90-day workloads of `bench/policies.sh` as MSR
//! Cambridge / SNIA CSV traces: `gen_workloads DIR` makes
//! `archive.csv`, `database.csv`, `vm.csv` and `batch.csv` in DIR.
//! Deterministic (xorshift with fixed seeds), so runs compare.
//!
//! - archive: a write-once archive. Every working day 340 MiB arrive as
//!   1 MiB appends with catalog updates; every ten days or so a restore
//!   reads back 256 MiB of old data and looks it up in the catalog.
//! - database: 16 GiB of tables read and written at random (8 KiB pages,
//!   zipf-skewed over the 4 MiB extents, hot extents scattered over the
//!   disk), busier by day, with the backup job reading the whole disk end to
//!   end every Sunday night.
//! - vm: eight 8 GiB VM images; each two weeks the guests' working set moves
//!   to another 5% of their disks; boot regions are read at weekly reboots.
//! - batch: a nightly batch job. By day raw data lands in a daily partition;
//!   at 02:00 the job reads yesterday's partition end to end, looks rows up
//!   in 256 MiB of dimension tables, and writes its output; every Monday a
//!   report reads the week's outputs.

use std::io::{BufWriter, Write};
use std::path::Path;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const MS: u64 = 10_000; // filetime ticks per ms
const SEC: u64 = 1000 * MS;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const DAYS: u64 = 90;
/// 2026-01-05 (a Monday) in filetime.
const START: u64 = 134_119_296_000_000_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A zipf-like rank in 0..n (exponent about 1.1), by inverse transform
    /// of a continuous power law.
    fn zipf(&mut self, n: u64) -> u64 {
        let s = 1.1f64;
        let u = self.unit();
        let nmax = n as f64;
        // CDF of x^-s on [1, n+1): F(x) = (1 - x^(1-s)) / (1 - (n+1)^(1-s)).
        let a = 1.0 - (nmax + 1.0).powf(1.0 - s);
        let x = (1.0 - u * a).powf(1.0 / (1.0 - s));
        (x as u64).saturating_sub(1).min(n - 1)
    }
}

type Event = (u64, bool, u64, u64); // (ticks from start, write, offset, size)

fn write(dir: &Path, name: &str, mut evs: Vec<Event>) -> std::io::Result<()> {
    evs.sort_by_key(|e| e.0);
    let path = dir.join(name);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    for (t, w, off, size) in &evs {
        let kind = if *w { "Write" } else { "Read" };
        writeln!(
            out,
            "{},{},0,{kind},{off},{size},100",
            START + t,
            name.trim_end_matches(".csv")
        )?;
    }
    out.flush()?;
    eprintln!("{}: {} events", path.display(), evs.len());
    Ok(())
}

/// A sequential run of `size`-byte requests over `off..off+len` from `t`,
/// `gap` ticks apart.
fn run(evs: &mut Vec<Event>, t: u64, write: bool, off: u64, len: u64, size: u64, gap: u64) {
    let mut i = 0;
    while i * size < len {
        evs.push((t + i * gap, write, off + i * size, size.min(len - i * size)));
        i += 1;
    }
}

fn archive() -> Vec<Event> {
    let mut r = Rng(0x5EED_A7C1);
    let mut evs = Vec::new();
    let catalog = 64 * MIB;
    let mut tail = catalog; // appends go after the catalog
    for day in 0..DAYS {
        let weekday = day % 7;
        if weekday < 5 {
            // 340 MiB of 1 MiB appends through the working day, in batches.
            let t0 = day * DAY + 9 * HOUR;
            for batch in 0..17 {
                let tb = t0 + batch * 30 * MIN;
                run(&mut evs, tb, true, tail, 20 * MIB, MIB, 50 * MS);
                tail += 20 * MIB;
                for k in 0..8 {
                    let off = r.below(catalog / (4 * KIB)) * 4 * KIB;
                    evs.push((tb + 2 * SEC + k * SEC, true, off, 4 * KIB));
                }
            }
        }
        // A restore every ten days or so: catalog lookups, then 256 MiB read back.
        if day > 5 && r.below(10) == 0 {
            let t0 = day * DAY + 14 * HOUR + r.below(2 * HOUR);
            for k in 0..40 {
                let off = r.below(catalog / (4 * KIB)) * 4 * KIB;
                evs.push((t0 + k * 200 * MS, false, off, 4 * KIB));
            }
            let data = tail - catalog;
            let from = catalog + r.below(data.saturating_sub(256 * MIB) / MIB) * MIB;
            run(
                &mut evs,
                t0 + 10 * SEC,
                false,
                from,
                256 * MIB,
                MIB,
                20 * MS,
            );
        }
    }
    evs
}

fn database() -> Vec<Event> {
    let mut r = Rng(0xDA7A_BA5E);
    let mut evs = Vec::new();
    let disk = 16 * GIB;
    let extents = disk / (4 * MIB);
    // Rank -> extent: hot extents scattered.
    let mut order: Vec<u64> = (0..extents).collect();
    for i in (1..order.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    for day in 0..DAYS {
        // 12,000 page accesses by day (08-20), 3,000 by night.
        for (from, to, n) in [
            (8 * HOUR, 20 * HOUR, 12_000u64),
            (20 * HOUR, 32 * HOUR, 3_000),
        ] {
            for _ in 0..n {
                let t = day * DAY + from + r.below(to - from);
                if t >= DAYS * DAY {
                    continue;
                }
                let e = order[r.zipf(extents) as usize];
                let page = r.below(4 * MIB / (8 * KIB));
                let write = r.below(10) < 3;
                evs.push((t, write, e * 4 * MIB + page * 8 * KIB, 8 * KIB));
            }
        }
        // Sunday 01:00: the backup job reads the whole disk (about 1 GiB a minute).
        if day % 7 == 6 {
            run(&mut evs, day * DAY + HOUR, false, 0, disk, MIB, 60 * MS);
        }
    }
    evs
}

fn vm() -> Vec<Event> {
    let mut r = Rng(0x0F1C_E5E7);
    let mut evs = Vec::new();
    let vms = 8u64;
    let image = 8 * GIB;
    let per_vm = image / (4 * MIB);
    let mut sets: Vec<Vec<u64>> = Vec::new();
    for day in 0..DAYS {
        if day % 14 == 0 {
            // Each guest's working set moves: 5% of its extents.
            sets = (0..vms)
                .map(|v| {
                    (0..per_vm / 20)
                        .map(|_| v * per_vm + r.below(per_vm))
                        .collect()
                })
                .collect();
        }
        for v in 0..vms {
            let set = &sets[v as usize];
            for _ in 0..1_500 {
                let t = day * DAY + r.below(DAY);
                let e = set[r.below(set.len() as u64) as usize];
                let block = r.below(4 * MIB / (4 * KIB));
                let write = r.below(10) < 4;
                evs.push((t, write, e * 4 * MIB + block * 4 * KIB, 4 * KIB));
            }
            // A weekly reboot reads the first 512 MiB (kernel, libraries) at random.
            if day % 7 == v % 7 {
                let t0 = day * DAY + 3 * HOUR + v * 10 * MIN;
                for k in 0..600 {
                    let off = v * image + r.below(512 * MIB / (64 * KIB)) * 64 * KIB;
                    evs.push((t0 + k * 100 * MS, false, off, 64 * KIB));
                }
            }
        }
    }
    evs
}

fn batch() -> Vec<Event> {
    let mut r = Rng(0xBA7C_4000);
    let mut evs = Vec::new();
    let dims = 256 * MIB;
    let raw_base = dims;
    let raw_day = 256 * MIB;
    let out_base = raw_base + DAYS * raw_day;
    let out_day = 32 * MIB;
    for day in 0..DAYS {
        // By day: the partition fills with 64 KiB writes (08-18).
        let part = raw_base + day * raw_day;
        for i in 0..raw_day / (64 * KIB) {
            let t = day * DAY + 8 * HOUR + i * (10 * HOUR / (raw_day / (64 * KIB)));
            evs.push((t, true, part + i * 64 * KIB, 64 * KIB));
        }
        if day == 0 {
            continue;
        }
        // 02:00: yesterday's partition end to end, lookups, output.
        let t0 = day * DAY + 2 * HOUR + r.below(10 * MIN);
        run(&mut evs, t0, false, part - raw_day, raw_day, MIB, 100 * MS);
        for k in 0..2_000 {
            let off = r.below(dims / (16 * KIB)) * 16 * KIB;
            evs.push((t0 + k * 15 * MS, false, off, 16 * KIB));
        }
        run(
            &mut evs,
            t0 + 40 * SEC,
            true,
            out_base + day * out_day,
            out_day,
            MIB,
            100 * MS,
        );
        // Monday 07:00: the weekly report reads the last seven outputs.
        if day % 7 == 0 && day >= 7 {
            let from = out_base + (day - 6) * out_day;
            run(
                &mut evs,
                day * DAY + 7 * HOUR,
                false,
                from,
                7 * out_day,
                MIB,
                50 * MS,
            );
        }
    }
    evs
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    write(dir, "archive.csv", archive())?;
    write(dir, "database.csv", database())?;
    write(dir, "vm.csv", vm())?;
    write(dir, "batch.csv", batch())?;
    Ok(())
}
