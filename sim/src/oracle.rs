//! The offline optimum a policy is measured against: an oracle that knows
//! every future access and, for each extent, picks the cheapest sequence of
//! local and remote states under the same prices.
//!
//! Per extent it keeps the cheapest way to be local and the cheapest way to
//! be remote after the accesses seen so far (a two-state dynamic program,
//! exact because extents are priced independently). Between accesses an
//! extent stays local (local storage), is tiered at the start of the gap (a
//! PUT, then remote storage) or stays remote. At a read a remote extent is
//! either read in place (a ranged GET of the bytes read) or brought back (a
//! GET of the extent); writes need it local. Early-deletion charges apply when
//! an object goes away before the tier's minimum storage duration. The oracle
//! has no fetch cache, so a policy whose cache absorbs repeated cold reads can
//! in principle come out cheaper; the report shows the difference either way.
//!
//! One streaming pass; memory is one small record per extent seen.

use std::collections::HashMap;

use super::cost::Price;
use super::trace::{Event, Op};
use super::volume::Counters;

const MONTH_MS: f64 = 30.0 * 86_400_000.0;
const FRAME: u64 = 64 << 10;

/// The cheapest history ending in one state, and what it did.
#[derive(Debug, Clone, Copy, Default)]
struct Path {
    cost: f64,
    /// For the remote state: when its object was written.
    tiered_at: u64,
    puts: u32,
    gets: u32,
    rehydrations: u32,
    /// Returns within the thrash window of the tiering.
    thrash: u32,
    fetched: u64,
    local_ms: u64,
    remote_ms: u64,
    /// Storage time still owed for objects deleted before the minimum duration.
    owed_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Extent {
    last: u64,
    local: Path,
    remote: Option<Path>,
}

#[derive(Debug)]
pub struct Oracle {
    shift: u32,
    extent_size: u64,
    local_gb_month: f64,
    price: Price,
    thrash_window_ms: u64,
    extents: HashMap<(u32, u64), Extent>,
    pub counters: Counters,
    pub local_byte_ms: f64,
    pub remote_byte_ms: f64,
}

impl Oracle {
    pub fn new(extent_size: u64, local_gb_month: f64, price: Price, thrash_window_ms: u64) -> Self {
        Self {
            thrash_window_ms,
            shift: extent_size.trailing_zeros(),
            extent_size,
            local_gb_month,
            price,
            extents: HashMap::new(),
            counters: Counters::default(),
            local_byte_ms: 0.0,
            remote_byte_ms: 0.0,
        }
    }

    fn gb(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e9
    }

    fn keep(&self, ms: u64) -> f64 {
        self.local_gb_month * self.gb(self.extent_size) * ms as f64 / MONTH_MS
    }

    fn store(&self, ms: u64) -> f64 {
        self.price.storage_gb_month * self.gb(self.extent_size) * ms as f64 / MONTH_MS
    }

    fn get(&self, bytes: u64) -> f64 {
        self.price.get_per_1000 / 1000.0 + self.price.retrieval_per_gb * self.gb(bytes)
    }

    fn min_ms(&self) -> u64 {
        (self.price.min_storage_days * 86_400_000.0) as u64
    }

    /// Storage time owed when an object written at `tiered_at` goes at `now`.
    fn owed(&self, tiered_at: u64, now: u64) -> u64 {
        self.min_ms().saturating_sub(now.saturating_sub(tiered_at))
    }

    /// The two states after an idle gap `[from, to)`.
    fn gap(&self, x: &Extent, to: u64) -> (Path, Path) {
        let g = to.saturating_sub(x.last);
        let mut local = x.local;
        local.cost += self.keep(g);
        local.local_ms += g;
        let mut tiered = x.local;
        tiered.cost += self.price.put_per_1000 / 1000.0 + self.store(g);
        tiered.puts += 1;
        tiered.remote_ms += g;
        tiered.tiered_at = x.last;
        let remote = match x.remote {
            Some(r) => {
                let mut stay = r;
                stay.cost += self.store(g);
                stay.remote_ms += g;
                if stay.cost < tiered.cost {
                    stay
                } else {
                    tiered
                }
            }
            None => tiered,
        };
        (local, remote)
    }

    /// Brings a remote path back at `now`, with (`fetch`) or without a GET.
    fn back(&self, mut r: Path, now: u64, fetch: bool) -> Path {
        let owed = self.owed(r.tiered_at, now);
        r.cost += self.store(owed);
        r.owed_ms += owed;
        if fetch {
            r.cost += self.get(self.extent_size);
            r.gets += 1;
            r.fetched += self.extent_size;
        }
        r.rehydrations += 1;
        if now.saturating_sub(r.tiered_at) <= self.thrash_window_ms {
            r.thrash += 1;
        }
        r
    }

    fn cheaper(a: Path, b: Path) -> Path {
        if b.cost < a.cost {
            b
        } else {
            a
        }
    }

    pub fn apply(&mut self, ev: &Event) {
        if ev.len == 0 {
            return;
        }
        let end = ev.offset.saturating_add(ev.len);
        let (first, last) = (ev.offset >> self.shift, (end - 1) >> self.shift);
        for e in first..=last {
            let s = (e << self.shift).max(ev.offset);
            let t = ((e + 1) << self.shift).min(end);
            let whole = t - s == self.extent_size;
            let key = (ev.device, e);
            let Some(x) = self.extents.get(&key).copied() else {
                // Data exists from its first write; reads and trims of
                // never-written extents touch no storage.
                if ev.op == Op::Write {
                    self.extents.insert(
                        key,
                        Extent {
                            last: ev.t_ms,
                            local: Path::default(),
                            remote: None,
                        },
                    );
                }
                continue;
            };
            let (local, remote) = self.gap(&x, ev.t_ms);
            let now = ev.t_ms;
            let next = match ev.op {
                Op::Read => {
                    let mut in_place = remote;
                    let frames = (t - s).div_ceil(FRAME) * FRAME;
                    in_place.cost += self.get(frames.min(self.extent_size));
                    in_place.gets += 1;
                    in_place.fetched += frames.min(self.extent_size);
                    Extent {
                        last: now,
                        local: Self::cheaper(local, self.back(remote, now, true)),
                        remote: Some(in_place),
                    }
                }
                Op::Write => Extent {
                    last: now,
                    local: Self::cheaper(local, self.back(remote, now, !whole)),
                    remote: None,
                },
                Op::Trim if whole => {
                    // The data is gone: settle this extent's history.
                    let done = Self::cheaper(local, self.back(remote, now, false));
                    self.settle(done);
                    self.extents.remove(&key);
                    continue;
                }
                Op::Trim => Extent {
                    last: now,
                    local: Self::cheaper(local, self.back(remote, now, true)),
                    remote: None,
                },
            };
            self.extents.insert(key, next);
        }
    }

    fn settle(&mut self, p: Path) {
        let extent_size = self.extent_size;
        let min = self.min_ms();
        let c = &mut self.counters;
        c.puts += p.puts as u64;
        c.extents_tiered += p.puts as u64;
        c.bytes_uploaded += p.puts as u64 * extent_size;
        c.gets += p.gets as u64;
        c.bytes_fetched += p.fetched;
        c.rehydrations += p.rehydrations as u64;
        c.thrash += p.thrash as u64;
        self.local_byte_ms += p.local_ms as f64 * self.extent_size as f64;
        self.remote_byte_ms += p.remote_ms as f64 * self.extent_size as f64;
        // As deleted objects, so the cost model charges what is owed: whole
        // minimum durations, then the rest.
        if min > 0 {
            let mut owed = p.owed_ms;
            while owed > 0 {
                let part = owed.min(min);
                c.deleted.add(extent_size, min - part);
                owed -= part;
            }
        }
    }

    /// Closes every extent's last gap at the end of the trace.
    pub fn finish(&mut self, end: u64) {
        let all: Vec<Extent> = self.extents.drain().map(|(_, x)| x).collect();
        for x in all {
            let (local, remote) = self.gap(&x, end);
            self.settle(Self::cheaper(local, remote));
        }
    }
}
