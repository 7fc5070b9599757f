//! Known answers: synthetic traces whose outcome under each policy can be
//! worked out by hand.

use super::trace::{Event, Op};
use super::volume::{Latency, VolumeParams};
use super::*;

const MIB: u64 = 1 << 20;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn options() -> Options {
    Options {
        volume: VolumeParams {
            extent_size: 4 * MIB,
            frame_size: 64 << 10,
            half_life_ms: DAY as f64,
            readahead: policy::Readahead::new(2, 32, 64),
            cache_entries: 64,
            thrash_window_ms: 7 * DAY,
            gc_grace_ms: HOUR,
            latency: Latency {
                first_byte_ms: 30.0,
                bytes_per_ms: 100.0 * MIB as f64 / 1000.0,
            },
            scans_warm: None,
        },
        scan_interval_ms: HOUR,
        bucket_ms: HOUR,
        pricing: cost::Pricing::default(),
        local_capacity: None,
        snapshots: None,
    }
}

/// The classes of tierd's embedded configuration: one, `default`.
fn known() -> BTreeMap<String, Policy> {
    let class = ClassConfig::default();
    BTreeMap::from([(
        "default".to_string(),
        Policy {
            name: "default".into(),
            price_tier: price_tier("fs", None),
            class,
        },
    )])
}

fn policy(arg: &str) -> Policy {
    policy_from_arg(&known(), arg).expect("policy")
}

fn ev(t_ms: u64, op: Op, offset: u64, len: u64) -> Event {
    Event {
        t_ms,
        device: 0,
        op,
        offset,
        len,
    }
}

fn simulate(events: Vec<Event>, policies: &[&str]) -> Report {
    let ps: Vec<Policy> = policies.iter().map(|p| policy(p)).collect();
    let r = run(events.into_iter().map(Ok), &ps, &options()).expect("simulation");
    // No policy beats the offline optimum of its price list.
    for p in &r.policies {
        let o = r
            .optimum
            .iter()
            .find(|o| o.price_tier == p.price_tier)
            .expect("optimum");
        assert!(
            o.cost.total <= p.cost.total + 1e-9,
            "{} beats the optimum: {} < {}",
            p.name,
            p.cost.total,
            o.cost.total
        );
    }
    r
}

/// 16 extents written once at time 0, never read again; the trace ends at
/// day 10 with a read of a never-written extent.
fn written_once() -> Vec<Event> {
    let mut e: Vec<Event> = (0..16)
        .map(|i| ev(0, Op::Write, i * 4 * MIB, 4 * MIB))
        .collect();
    e.push(ev(10 * DAY, Op::Read, 100 * 4 * MIB, 4096));
    e
}

#[test]
fn data_written_once_is_all_tiered_after_the_cooling_period() {
    let r = simulate(written_once(), &["auto:2d", "none"]);
    let auto = &r.policies[0];
    assert_eq!(auto.extents_tiered, 16);
    assert_eq!((auto.puts, auto.gets, auto.rehydrations), (16, 0, 0));
    assert_eq!(auto.remote_extents, vec![(0..16).collect::<Vec<u64>>()]);
    assert_eq!(auto.local_peak_bytes, Some((64 * MIB) as f64));
    // Local for the 2-day cooling period (+ the time to the pass), out of 10 days and an hour.
    let expected_mean = (64 * MIB) as f64 * (2 * DAY) as f64 / (10 * DAY + HOUR) as f64;
    assert!(
        (auto.local_mean_bytes - expected_mean).abs() / expected_mean < 0.01,
        "{}",
        auto.local_mean_bytes
    );
    let none = &r.policies[1];
    assert_eq!((none.puts, none.extents_tiered), (0, 0));
    assert!(none.remote_extents[0].is_empty());
    assert_eq!(none.cost.remote_storage, 0.0);
    // Keeping 64 MiB on local disk costs more than tiering it after two days.
    assert!(auto.cost.total < none.cost.total);
    // The optimum tiers every extent at once.
    assert_eq!(r.optimum[0].extents_tiered, 16);
}

#[test]
fn a_hot_working_set_that_never_cools_is_never_tiered() {
    let mut e: Vec<Event> = (0..8)
        .map(|i| ev(i, Op::Write, i * 4 * MIB, 4 * MIB))
        .collect();
    for k in 1..=20u64 {
        for i in 0..8 {
            e.push(ev(
                k * 12 * HOUR + i,
                Op::Read,
                i * 4 * MIB + 4096 * k,
                4096,
            ));
        }
    }
    let r = simulate(e, &["auto:2d", "auto:2d/on-read"]);
    for p in &r.policies {
        assert_eq!(
            (p.puts, p.gets, p.extents_tiered, p.cold_reads),
            (0, 0, 0, 0),
            "{}",
            p.name
        );
        assert!(p.local_mean_bytes > 0.0);
    }
    // With hindsight, though, 4 MiB read twice a day costs less in S3 Standard
    // (read in place by ranged GETs) than on local disk: the optimum tiers it.
    let opt = &r.optimum[0];
    assert_eq!((opt.puts, opt.gets, opt.rehydrations), (8, 8 * 20, 0));
    assert!(opt.cost.total < r.policies[0].cost.total);
}

/// 32 extents written at time 0, then a full sequential scan (1 MiB reads)
/// every 7 days, five times.
fn weekly_scans() -> Vec<Event> {
    let mut e: Vec<Event> = (0..32)
        .map(|i| ev(i, Op::Write, i * 4 * MIB, 4 * MIB))
        .collect();
    for week in 1..=5u64 {
        for k in 0..128u64 {
            e.push(ev(week * 7 * DAY + k, Op::Read, k * MIB, MIB));
        }
    }
    e
}

#[test]
fn periodic_scans_stay_remote_under_auto_and_thrash_under_on_read() {
    let r = simulate(weekly_scans(), &["auto:2d", "auto:2d/on-read"]);
    let (auto, on_read) = (&r.policies[0], &r.policies[1]);
    // auto: tiered once at day 2; scans read from the object store and do
    // not bring data back; the fetch cache (64 extents) holds the volume
    // after the first scan, so only that one goes to the store.
    assert_eq!((auto.puts, auto.rehydrations, auto.thrash), (32, 0, 0));
    assert_eq!(auto.gets, 32);
    assert_eq!(auto.cold_reads, 5 * 128);
    assert_eq!(auto.remote_extents[0].len(), 32);
    // on-read: every scan brings the volume back and the next passes tier it
    // again two days later, except after the last scan (the trace ends).
    assert_eq!(on_read.rehydrations, 5 * 32);
    assert_eq!(
        on_read.thrash,
        5 * 32,
        "each return comes 5 days after tiering"
    );
    assert_eq!(on_read.puts, 32 + 4 * 32);
    assert_eq!(on_read.gets, 5 * 32);
    assert!(on_read.remote_extents[0].is_empty());
    assert!(on_read.cost.requests > auto.cost.requests);
    assert!(on_read.local_mean_bytes > auto.local_mean_bytes);
}

#[test]
fn random_reads_bring_cold_extents_back_under_auto() {
    let mut e: Vec<Event> = (0..4)
        .map(|i| ev(i, Op::Write, i * 4 * MIB, 4 * MIB))
        .collect();
    // Day 3: a random 4 KiB read of extent 1 (tiered at day 2) and a partial write to extent 2.
    e.push(ev(3 * DAY, Op::Read, 4 * MIB + 8192, 4096));
    e.push(ev(3 * DAY + 10, Op::Write, 8 * MIB + 512, 512));
    // Day 3: a full overwrite of extent 3 needs no fetch; a trim of extent 0 frees it.
    e.push(ev(3 * DAY + 20, Op::Write, 12 * MIB, 4 * MIB));
    e.push(ev(3 * DAY + 30, Op::Trim, 0, 4 * MIB));
    e.push(ev(4 * DAY, Op::Read, 4 * MIB, 4096));
    let r = simulate(e, &["auto:2d", "auto:2d/never"]);
    let (auto, never) = (&r.policies[0], &r.policies[1]);
    assert_eq!(auto.puts, 4);
    assert_eq!(
        auto.rehydrations, 2,
        "the random read and the partial write"
    );
    assert_eq!(auto.gets, 2);
    assert!(auto.remote_extents[0].is_empty());
    // never: the read is served by a ranged GET and the extent stays remote;
    // writes still bring theirs back.
    assert_eq!(never.rehydrations, 1);
    assert_eq!(
        never.gets, 3,
        "two ranged reads of extent 1, one fetch for the partial write"
    );
    assert_eq!(never.remote_extents[0], vec![1]);
    assert!(never.bytes_fetched < auto.bytes_fetched);
}

#[test]
fn write_overlays_keep_partial_writes_local_and_merge_when_their_rent_pays() {
    let mut e: Vec<Event> = (0..4)
        .map(|i| ev(i, Op::Write, i * 4 * MIB, 4 * MIB))
        .collect();
    // Day 3, all four tiered: one block of extent 1, 512 bytes inside a
    // block of extent 2, half of extent 3, then a read of extent 1's block.
    e.push(ev(3 * DAY, Op::Write, 4 * MIB + 8192, 4096));
    e.push(ev(3 * DAY + 10, Op::Write, 8 * MIB + 512, 512));
    e.push(ev(3 * DAY + 20, Op::Write, 12 * MIB, 2 * MIB));
    e.push(ev(3 * DAY + 30, Op::Read, 4 * MIB + 8192, 4096));
    // Day 8: a random read of extent 0 (ends the trace).
    e.push(ev(8 * DAY, Op::Read, 4096, 4096));
    let r = simulate(e, &["auto:2d/never+overlay", "auto:2d/never"]);
    let (overlay, plain) = (&r.policies[0], &r.policies[1]);
    // A merge costs a GET and a PUT: it pays once the overlay's local space
    // has cost as much, 11.6 h for a whole 4 MiB extent (but never before
    // the 2-day cooling), 4 days for half of one. Extent 3 (last written
    // on day 3) is merged on day 7; one block of 1024 would wait 5.6 years.
    assert_eq!(overlay.merges, 1);
    assert_eq!(overlay.puts, 4 + 1);
    assert_eq!(
        overlay.gets, 3,
        "the edge block of extent 2, the merge of 3, the read of 0"
    );
    assert_eq!((overlay.rehydrations, overlay.thrash), (0, 0));
    assert_eq!(overlay.remote_extents[0], vec![0, 3]);
    assert_eq!(overlay.overlay_extents[0], vec![1, 2]);
    assert_eq!(
        overlay.cold_read_requests, 1,
        "extent 1's block read locally"
    );
    // Without overlays each partial write brings its extent back (a GET),
    // and the pass two days later tiers it again (a PUT): thrash.
    assert_eq!((plain.rehydrations, plain.thrash), (3, 3));
    assert_eq!((plain.puts, plain.gets), (4 + 3, 3 + 1));
    assert!(plain.overlay_extents.is_empty());
    assert!(overlay.cost.total < plain.cost.total);
    assert!(overlay.local_mean_bytes < plain.local_mean_bytes);
    // The optimum may keep overlays too, and is no dearer than either.
    let opt = r.optimum[0].cost.total;
    assert!(
        opt <= overlay.cost.total && opt <= plain.cost.total,
        "{opt}"
    );
}

#[test]
fn policies_parse_from_classes_and_specs() {
    let c = known();
    assert_eq!(
        policy("auto").class.cooling(),
        std::time::Duration::from_secs(31 * 86_400)
    );
    assert_eq!(
        policy("auto:7d/on-read").class.retrieval_policy,
        RetrievalPolicy::OnRead
    );
    assert_eq!(policy("all").class.tiering_policy, TieringPolicy::All);
    let o = policy("auto:auto/never+overlay").class;
    assert!(o.write_overlay && o.cooling_is_auto());
    assert_eq!(o.retrieval_policy, RetrievalPolicy::Never);
    assert!(!policy("auto:auto/never").class.write_overlay);
    let e = policy_from_arg(&c, "sometimes").unwrap_err().to_string();
    assert!(
        e.contains("sometimes") && e.contains("POLICY[:COOLING]"),
        "{e}"
    );
    assert!(policy_from_arg(&c, "auto:soon").is_err());
    assert!(policy_from_arg(&c, "auto/eventually").is_err());
}

/// A volume written whole, then rewritten a quarter at a time, with a
/// snapshot every hour and four kept: `none` keeps what the snapshots hold on
/// local disk, `snapshot-only` moves it once cooled, `auto` at once; and
/// retention frees it (a snapshot-only cooling longer than the retention
/// would move nothing).
#[test]
fn snapshot_schedules_price_what_snapshots_hold() {
    let mut o = options();
    o.snapshots = Some(snapshots::Schedule {
        every_ms: HOUR,
        keep: 4,
    });
    let ev = |t: u64, off: u64, len: u64| Event {
        t_ms: t,
        device: 0,
        op: Op::Write,
        offset: off,
        len,
    };
    // 16 MiB written at t=0; each hour from 1h30 a different quarter (one
    // extent) is rewritten whole.
    let mut trace = vec![ev(0, 0, 16 * MIB)];
    for h in 0..4u64 {
        trace.push(ev(h * HOUR + 90 * 60_000, h * 4 * MIB, 4 * MIB));
    }
    trace.push(ev(30 * HOUR, 0, 4096));
    let policies: Vec<Policy> = ["none", "snapshot-only:2h", "auto:30d"]
        .iter()
        .map(|a| policy_from_arg(&known(), a).expect("policy"))
        .collect();
    let r = run(trace.into_iter().map(Ok), &policies, &o).expect("run");
    let by = |n: &str| r.policies.iter().find(|p| p.name == n).expect("policy");
    let (none, snap, auto) = (by("none"), by("snapshot-only:2h"), by("auto:30d"));
    assert!(none.snapshots >= 30, "{}", none.snapshots);
    assert_eq!(none.puts, 0);
    // Each rewritten extent's old version is held by a snapshot: moved by
    // snapshot-only (after 2h) and auto (at once), one object each.
    assert_eq!((snap.puts, auto.puts), (4, 4));
    assert!(auto.remote_mean_bytes > snap.remote_mean_bytes);
    assert!(none.local_mean_bytes > snap.local_mean_bytes);
    // Freed within hours by retention, so little is remote on average.
    assert!(
        snap.remote_mean_bytes < 4.0 * MIB as f64,
        "{}",
        snap.remote_mean_bytes
    );
    let long = policy_from_arg(&known(), "snapshot-only:5h").expect("policy");
    let r = run(
        vec![
            ev(0, 0, 16 * MIB),
            ev(90 * 60_000, 0, 4 * MIB),
            ev(30 * HOUR, 0, 4096),
        ]
        .into_iter()
        .map(Ok),
        &[long],
        &o,
    )
    .expect("run");
    assert_eq!(r.policies[0].puts, 0, "freed before it cooled");
}
