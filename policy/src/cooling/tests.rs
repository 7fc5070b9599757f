//! Known answers for the break-even, the adaptation, the thrash back-off,
//! the rehydration budget and the latency guard.

use super::*;
use crate::cost::Pricing;

const MIB: u64 = 1 << 20;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn econ(tier: &str) -> Economics {
    Economics::of(&Pricing::default(), tier, 4 * MIB).expect("a shipped tier")
}

fn uses(last_use: &[u64]) -> Vec<(u64, u64, f64)> {
    last_use
        .iter()
        .enumerate()
        .map(|(e, &u)| (e as u64, u, 1.0))
        .collect()
}

fn limits() -> Limits {
    Limits {
        min_ms: HOUR,
        max_ms: 183 * DAY,
        thrash_window_ms: DAY,
        max_cold_read_fraction: None,
        max_rehydrate_per_day: None,
        max_thrash_fraction: None,
        adaptive: true,
        fixed_ms: HOUR,
    }
}

#[test]
fn break_even_from_list_prices() {
    // S3 Standard against local $0.08/GB-month, 4 MiB extents: a PUT and a
    // GET ($5.4e-6) over the rent saved per day ((0.08 - 0.023) $/GB-month
    // for 4.19 MB, $7.97e-6 a day) is 0.6776 days, 16 h 15 min 45 s.
    let be = break_even(&econ("s3-standard")).expect("tiering pays");
    assert!((be - 58_545_564.35).abs() < 1.0, "{be}");
    // Standard-IA bills 30 days at least: past the minimum the break-even
    // would be 5.6 days, inside it; so all 30 days of remote storage and the
    // round trip (with its retrieval fee) over local storage: 9.42 days.
    let ia = break_even(&econ("s3-standard-ia")).expect("tiering pays");
    assert!((ia - 813_972_381.59).abs() < 1.0, "{ia}");
    // Local storage no dearer than remote: tiering never pays.
    let p = Pricing {
        local_gb_month: 0.02,
        ..Pricing::default()
    };
    let cheap = Economics::of(&p, "s3-standard", 4 * MIB).expect("tier");
    assert_eq!(break_even(&cheap), None);
    let mut t = Tuner::new(0);
    assert_eq!(
        t.on_pass(DAY, uses(&[]), &limits(), Some(&cheap)).volume_ms,
        183 * DAY
    );
    // A bigger extent spreads the request price over more bytes.
    let big = Economics::of(&Pricing::default(), "s3-standard", 64 * MIB).expect("tier");
    assert!(break_even(&big).expect("pays") < be / 15.0);
}

#[test]
fn an_overlay_class_that_never_brings_back_prices_a_return_as_one_ranged_get() {
    use crate::class::{RetrievalPolicy, TieringPolicy};
    let p = Pricing::default();
    let mut c = ClassConfig::with_policies(TieringPolicy::Auto, None, RetrievalPolicy::Never);
    let plain = Economics::of_class(&p, "s3-standard", 4 * MIB, &c).expect("tier");
    assert_eq!(plain, econ("s3-standard"), "no overlay: the round trip");
    c.write_overlay = true;
    let e = Economics::of_class(&p, "s3-standard", 4 * MIB, &c).expect("tier");
    // S3 Standard: $0.0004 per 1000 GETs and no retrieval fee.
    assert!((e.round_trip - 4e-7).abs() < 1e-15, "{}", e.round_trip);
    // A re-access 13.5 times cheaper: tiering pays 13.5 times sooner.
    let (be, be_plain) = (
        break_even(&e).expect("pays"),
        break_even(&plain).expect("pays"),
    );
    assert!((be_plain / be - 13.5).abs() < 1e-9, "{be} {be_plain}");
    // A class that brings extents back on reads pays the round trip still.
    c.retrieval_policy = RetrievalPolicy::Default;
    let back = Economics::of_class(&p, "s3-standard", 4 * MIB, &c).expect("tier");
    assert_eq!(back.round_trip, plain.round_trip);
    // Standard-IA: the ranged GET pays retrieval for one 64 KiB frame.
    c.retrieval_policy = RetrievalPolicy::Never;
    let ia = Economics::of_class(&p, "s3-standard-ia", 4 * MIB, &c).expect("tier");
    let want = 0.001 / 1000.0 + 0.01 * 65_536.0 / 1e9;
    assert!((ia.round_trip - want).abs() < 1e-15, "{}", ia.round_trip);
}

#[test]
fn merging_an_overlay_breaks_even_on_its_local_rent() {
    // A GET and a PUT ($5.4e-6) over the local rent of a whole 4 MiB
    // extent ($0.08/GB-month for 4.19 MB: $1.1185e-5 a day): 11.59 hours.
    let e = econ("s3-standard");
    let ms = e.merge_break_even().expect("local storage costs");
    assert!((ms - 41_713_714.6).abs() < 1.0, "{ms}");
    assert_eq!(crate::overlay::merge_ms(Some(&e)), ms as u64);
    assert_eq!(crate::overlay::merge_ms(None), 0);
}

#[test]
fn gap_cost_charges_the_minimum_duration() {
    let e = econ("s3-standard-ia");
    // Back after a day with a 1 h threshold: 1 h local, the round trip and
    // 30 days of remote storage (the minimum), not 23 h of it.
    let c = e.gap_cost(HOUR as f64, DAY as f64);
    let want = e.local_per_ms * HOUR as f64 + e.round_trip + e.remote_per_ms * 30.0 * DAY as f64;
    assert!((c - want).abs() < 1e-15, "{c} {want}");
    assert_eq!(
        e.gap_cost(2.0 * DAY as f64, DAY as f64),
        e.local_per_ms * DAY as f64
    );
}

/// Feeds `n` extents that each come back every `gap_ms`, `rounds` times,
/// through passes every hour; returns the tuner's cooling after the last.
fn adapt(t: &mut Tuner, start: u64, n: usize, gap_ms: u64, rounds: u64) -> u64 {
    let e = econ("s3-standard");
    let mut last_use = vec![0u64; n];
    let mut cooling = 0;
    let mut now = start;
    let end = start + gap_ms * rounds;
    while now <= end {
        for (i, u) in last_use.iter_mut().enumerate() {
            // Extent i is used at start + i + k * gap for k = 0, 1, ...
            let first = start + i as u64;
            if now >= first {
                *u = first + (now - first) / gap_ms * gap_ms;
            }
        }
        cooling = t
            .on_pass(now, uses(&last_use), &limits(), Some(&e))
            .volume_ms;
        now += HOUR;
    }
    cooling
}

#[test]
fn without_evidence_a_volume_starts_at_the_break_even() {
    let mut t = Tuner::new(0);
    let e = econ("s3-standard");
    let c = t
        .on_pass(HOUR, uses(&[0, 0, 0]), &limits(), Some(&e))
        .volume_ms;
    assert_eq!(c, 58_545_564, "16 h 15 min 45 s");
    assert_eq!(t.cooling_ms(&limits(), Some(&e)), c);
    // Three gaps and three idle periods are not enough to trust.
    let c = adapt(&mut Tuner::new(0), DAY, 3, 2 * DAY, 1);
    assert_eq!(c, 58_545_564);
}

#[test]
fn long_gaps_tier_at_once_and_short_ones_wait_just_past_them() {
    // Extents that come back every 2 days: tiering at once and paying the
    // round trip beats keeping them local for the gap, so cooling falls to
    // the 1 h minimum.
    assert_eq!(adapt(&mut Tuner::new(0), DAY, 32, 2 * DAY, 6), HOUR);
    // Extents that come back every 10 h, under the break-even: tiering
    // them is a loss, so cooling rises just past the gap, below 16 h.
    let c = adapt(&mut Tuner::new(0), DAY, 32, 10 * HOUR, 12);
    assert!(c > 10 * HOUR && c < 13 * HOUR, "{}", c as f64 / HOUR as f64);
    // Every 3 hours: waits just past 3 h.
    let c = adapt(&mut Tuner::new(0), DAY, 32, 3 * HOUR, 20);
    assert!(c > 3 * HOUR && c < 4 * HOUR, "{}", c as f64 / HOUR as f64);
}

#[test]
fn a_shift_in_the_workload_is_followed() {
    let mut t = Tuner::new(0);
    assert_eq!(adapt(&mut t, DAY, 32, 2 * DAY, 6), HOUR);
    // Six weeks of 10-hour gaps outweigh the faded 2-day ones.
    let c = adapt(&mut t, 14 * DAY, 32, 10 * HOUR, 100);
    assert!(c > 10 * HOUR && c < 13 * HOUR, "{}", c as f64 / HOUR as f64);
}

#[test]
fn thrash_doubles_personal_cooling_and_a_long_absence_halves_it() {
    let l = limits();
    let mut t = Tuner::new(0);
    let base = 10 * HOUR;
    assert_eq!(t.cooling_of(7, base, &l), base);
    t.on_tiered(7, 0, &l);
    assert!(t.on_returned(7, 5 * HOUR, &l), "back within a day");
    assert_eq!(t.cooling_of(7, base, &l), 2 * base);
    t.on_tiered(7, 6 * HOUR, &l);
    assert!(t.on_returned(7, 20 * HOUR, &l));
    assert_eq!(t.cooling_of(7, base, &l), 4 * base);
    assert_eq!(t.cooling_of(8, base, &l), base, "only that extent");
    // Back after two days: it had stayed cold; the back-off halves.
    t.on_tiered(7, DAY, &l);
    assert!(!t.on_returned(7, 3 * DAY, &l));
    assert_eq!(t.cooling_of(7, base, &l), 2 * base);
    t.on_tiered(7, 4 * DAY, &l);
    assert!(!t.on_returned(7, 9 * DAY, &l));
    assert_eq!(t.cooling_of(7, base, &l), base);
    assert_eq!(t.thrash, 2);
    // Capped at max_cooling.
    for i in 0..30 {
        t.on_tiered(9, i * DAY, &l);
        t.on_returned(9, i * DAY + 1, &l);
    }
    assert_eq!(t.cooling_of(9, base, &l), 183 * DAY);
    // Returning without having been tiered (a fresh tuner after a restart
    // forgot it) is no thrash.
    assert!(!t.on_returned(11, 5, &l));
    // A fixed cooling period has no personal back-off.
    let fixed = Limits {
        adaptive: false,
        ..l
    };
    assert_eq!(t.cooling_of(9, base, &fixed), base);
}

#[test]
fn the_rehydrate_budget_refills_over_a_day() {
    let l = Limits {
        max_rehydrate_per_day: Some(10 * MIB),
        ..limits()
    };
    let mut t = Tuner::new(0);
    assert!(t.allow_bring_back(4 * MIB, 0, &l));
    assert!(t.allow_bring_back(4 * MIB, 1, &l));
    assert!(!t.allow_bring_back(4 * MIB, 2, &l), "2 MiB left");
    // Half a day refills 5 MiB: 7 MiB left.
    assert!(t.allow_bring_back(4 * MIB, DAY / 2 + 2, &l));
    assert!(!t.allow_bring_back(4 * MIB, DAY / 2 + 3, &l));
    let s = t.status(DAY / 2 + 3, &l, None);
    assert_eq!(s.rehydrations_refused, 2);
    assert_eq!(s.rehydrate_budget_left, Some(3 * MIB));
    // Without a budget everything may come back.
    assert!(t.allow_bring_back(u64::MAX, 0, &limits()));
}

#[test]
fn too_many_cold_reads_lengthen_cooling_until_they_stop() {
    let l = Limits {
        max_cold_read_fraction: Some(0.01),
        ..limits()
    };
    let e = econ("s3-standard");
    let mut t = Tuner::new(0);
    let base = t.on_pass(HOUR, uses(&[]), &l, Some(&e)).volume_ms;
    // 100 reads in the hour, 5 of them cold: 5% > 1%.
    for i in 0..100 {
        t.on_read(HOUR + i * 1000, i % 20 == 0);
    }
    assert_eq!(
        t.on_pass(2 * HOUR, uses(&[]), &l, Some(&e)).volume_ms,
        2 * base
    );
    // The guard moves at most once an hour.
    assert_eq!(
        t.on_pass(2 * HOUR + 60_000, uses(&[]), &l, Some(&e))
            .volume_ms,
        2 * base
    );
    // Two quiet hours of warm reads: back to the break-even.
    for i in 0..100 {
        t.on_read(4 * HOUR + i * 1000, false);
    }
    assert_eq!(t.on_pass(5 * HOUR, uses(&[]), &l, Some(&e)).volume_ms, base);
    assert_eq!(t.status(5 * HOUR, &l, Some(&e)).latency_factor, 1);
    // Too few reads to judge: nothing moves.
    t.on_read(7 * HOUR, true);
    assert_eq!(t.on_pass(8 * HOUR, uses(&[]), &l, Some(&e)).volume_ms, base);
}

#[test]
fn a_fixed_period_stays_fixed() {
    let l = Limits {
        adaptive: false,
        fixed_ms: 31 * DAY,
        ..limits()
    };
    let mut t = Tuner::new(0);
    assert_eq!(
        t.on_pass(DAY, uses(&[5, 6]), &l, Some(&econ("s3-standard")))
            .volume_ms,
        31 * DAY
    );
    assert_eq!(t.status(DAY, &l, None).mode, "fixed");
}

#[test]
fn state_survives_a_round_trip_through_json() {
    let mut t = Tuner::new(5);
    adapt(&mut t, DAY, 16, 2 * DAY, 3);
    t.on_tiered(3, 10, &limits());
    let text = serde_json::to_string(&t).expect("json");
    let back: Tuner = serde_json::from_str(&text).expect("parse");
    assert_eq!(
        back.cooling_ms(&limits(), None),
        t.cooling_ms(&limits(), None)
    );
    assert_eq!(back.tiered_at, t.tiered_at);
    assert_eq!(back.gaps, t.gaps);
}

#[test]
fn extents_as_hot_as_each_other_get_their_own_period() {
    // 32 extents go idle hot (temperature 20 at their last use) and come
    // back after 10 h; 32 go idle cold (temperature 1) and come back after
    // 2 days. One period for all would have to give; by heat band, the cold
    // ones tier after the 1 h minimum and the hot ones wait just past 10 h.
    let e = econ("s3-standard");
    let l = limits();
    let mut t = Tuner::new(0);
    let mut th = Thresholds::default();
    let mut now = DAY;
    while now <= 20 * DAY {
        let mut u = Vec::new();
        for i in 0..32u64 {
            let hot_last = DAY + (now - DAY) / (10 * HOUR) * (10 * HOUR);
            u.push((i, hot_last, 20.0));
            let cold_last = DAY + (now - DAY) / (2 * DAY) * (2 * DAY);
            u.push((100 + i, cold_last, 1.0));
        }
        th = t.on_pass(now, u, &l, Some(&e));
        now += HOUR;
    }
    assert_eq!(th.for_heat(1.0), HOUR);
    let hot = th.for_heat(20.0);
    assert!(
        hot > 10 * HOUR && hot < 13 * HOUR,
        "{}",
        hot as f64 / HOUR as f64
    );
    assert_eq!(th.floor_ms(), HOUR);
    // A band with no gaps of its own follows the volume's period.
    assert_eq!(th.for_heat(4.0), th.volume_ms);
    assert_eq!(band_of(1.0), 0);
    assert_eq!(band_of(12.0), 4);
    // Undoing a day of decay with a one-day half-life doubles it.
    assert!((heat_at_use(2.0, 0, DAY, DAY as f64) - 4.0).abs() < 1e-12);
}

#[test]
fn extents_that_never_come_back_pull_cooling_down() {
    // 16 extents come back every 10 h: alone they would keep cooling just
    // past 10 h. 1,000 extents written once and idle for two weeks say that
    // most data never comes back: tiering after the 1 h minimum is cheaper.
    let e = econ("s3-standard");
    let l = limits();
    let mut t = Tuner::new(0);
    let mut th = Thresholds::default();
    let mut now = DAY;
    while now <= 15 * DAY {
        let mut u: Vec<(u64, u64, f64)> = (0..16u64)
            .map(|i| (i, DAY + (now - DAY) / (10 * HOUR) * (10 * HOUR), 1.0))
            .collect();
        u.extend((0..1000u64).map(|i| (100 + i, DAY, 1.0)));
        th = t.on_pass(now, u, &l, Some(&e));
        now += HOUR;
    }
    assert_eq!(th.volume_ms, HOUR);
    let mut alone = Tuner::new(0);
    assert!(adapt(&mut alone, DAY, 16, 10 * HOUR, 30) > 10 * HOUR);
}
