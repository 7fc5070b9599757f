//! The policy decision: given a volume's extents (state, whether the local
//! copy holds data, heat), the time and how full the local filesystem is,
//! which extents should leave the local tier, coldest first. It takes its
//! clock and data as inputs so the daemon and the simulator run the same code.

use heatmap::ExtentHeat;

use crate::class::{ClassConfig, TieringPolicy};
use crate::extent::ExtentState;

/// How full the filesystem holding the local tier is. The daemon reads it
/// with statvfs; the simulator counts the bytes its volumes hold against the
/// capacity it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fullness {
    pub used_bytes: u64,
    pub capacity_bytes: u64,
}

impl Fullness {
    /// Used space as a whole percentage, rounded (0 for an unknown capacity).
    pub fn percent(&self) -> u8 {
        if self.capacity_bytes == 0 {
            return 0;
        }
        let pct = self.used_bytes as f64 * 100.0 / self.capacity_bytes as f64;
        pct.round().min(100.0) as u8
    }

    /// A filesystem with nothing known about it: never above any threshold.
    pub fn unknown() -> Self {
        Fullness {
            used_bytes: 0,
            capacity_bytes: 0,
        }
    }
}

/// One extent as the policy sees it.
#[derive(Debug, Clone)]
pub struct ExtentView<'a> {
    pub extent: u64,
    pub state: ExtentState,
    /// The local copy holds data (not a hole).
    pub allocated: bool,
    pub heat: Option<&'a ExtentHeat>,
    /// For an overlay, the share of the extent's blocks it holds (above 0,
    /// below 1); 0 otherwise.
    pub overlay_share: f64,
}

/// Why a pass tiers nothing, when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    PolicyNone,
    NoSnapshots,
    BelowFullness { used_pct: u8, threshold: u8 },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::PolicyNone => write!(f, "tiering policy none"),
            Hold::NoSnapshots => write!(
                f,
                "tiering policy snapshot-only and the volume has no snapshots"
            ),
            Hold::BelowFullness {
                used_pct,
                threshold,
            } => {
                write!(
                    f,
                    "local tier {used_pct}% full, below the {threshold}% threshold"
                )
            }
        }
    }
}

/// How long each extent must idle before it is cold, and what counts as a
/// use: the class's fixed period, or a volume's tuned one with personal
/// back-offs (see [`crate::cooling::Tuner`]).
#[derive(Clone, Copy)]
pub struct Cooling<'a> {
    /// The volume's cooling period, in ms.
    pub base_ms: u64,
    /// The shortest period any extent has (`per_extent` never goes below it).
    pub floor_ms: u64,
    /// Reads of sequential scans count as use (`[heat] scans_warm`).
    pub scans_warm: bool,
    /// How long an overlay holding every block of its extent would idle
    /// before a pass merges it (see `period`); never less than the
    /// extent's own period.
    pub merge_ms: u64,
    /// An extent's own period, when some extents have one.
    pub per_extent: Option<&'a dyn Fn(u64) -> u64>,
}

impl std::fmt::Debug for Cooling<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cooling")
            .field("base_ms", &self.base_ms)
            .field("floor_ms", &self.floor_ms)
            .field("scans_warm", &self.scans_warm)
            .field("merge_ms", &self.merge_ms)
            .field("per_extent", &self.per_extent.is_some())
            .finish()
    }
}

impl Cooling<'static> {
    /// The class's own period for every extent (none under `all`).
    pub fn of_class(class: &ClassConfig, scans_warm: bool) -> Self {
        let base_ms = match class.tiering_policy {
            TieringPolicy::All => 0,
            _ => class.cooling().as_millis() as u64,
        };
        Cooling {
            base_ms,
            floor_ms: base_ms,
            scans_warm,
            merge_ms: base_ms,
            per_extent: None,
        }
    }
}

impl Cooling<'_> {
    /// The cooling period of extent `e`, in ms.
    pub fn of(&self, e: u64) -> u64 {
        match self.per_extent {
            Some(f) => f(e),
            None => self.base_ms,
        }
    }

    /// When an extent counts as last used: its last access (or last warm
    /// access, when scans do not warm), or (never accessed since tracking
    /// began) the volume's creation.
    pub fn last_use(&self, heat: Option<&ExtentHeat>, created_ms: u64) -> u64 {
        match heat {
            Some(h) if self.scans_warm => h.last_access_ms,
            Some(h) => h.last_warm_ms.max(created_ms.min(h.last_access_ms)),
            None => created_ms,
        }
    }

    fn temperature(&self, heat: Option<&ExtentHeat>) -> f64 {
        match heat {
            Some(h) if self.scans_warm => h.temperature,
            Some(h) => h.warm_temperature,
            None => 0.0,
        }
    }
}

/// Whether the class tiers anything at all, and if not why.
pub fn tiers(class: &ClassConfig) -> Result<(), Hold> {
    match class.tiering_policy {
        TieringPolicy::None => Err(Hold::PolicyNone),
        TieringPolicy::SnapshotOnly => Err(Hold::NoSnapshots),
        TieringPolicy::Auto | TieringPolicy::All => Ok(()),
    }
}

/// Extents last used at or before this time are cold at `now_ms` (for an
/// extent with the volume's own period).
pub fn cold_cutoff(class: &ClassConfig, cooling: &Cooling, now_ms: u64) -> u64 {
    if class.tiering_policy == TieringPolicy::All {
        return now_ms;
    }
    now_ms.saturating_sub(cooling.base_ms)
}

/// Whether a pass at `now_ms` could tier anything, knowing only that no local
/// extent was last used (as `cooling` counts use) before
/// `earliest_local_use_ms`: lets a caller with many volumes skip building the
/// views. `select` decides the same way (no extent's period is shorter
/// than `cooling.floor_ms`).
pub fn may_tier(
    class: &ClassConfig,
    cooling: &Cooling,
    earliest_local_use_ms: Option<u64>,
    now_ms: u64,
) -> bool {
    let cutoff = if class.tiering_policy == TieringPolicy::All {
        now_ms
    } else {
        now_ms.saturating_sub(cooling.floor_ms)
    };
    tiers(class).is_ok() && earliest_local_use_ms.is_some_and(|t| t <= cutoff)
}

/// Whether a pass may move `v` once it is cold: local data, or an overlay
/// (which the pass merges into a new object; see [`crate::overlay`]).
fn candidate(v: &ExtentView) -> bool {
    (v.state == ExtentState::Local && v.allocated) || v.state == ExtentState::Overlay
}

/// How long `v` must idle before a pass moves it. An overlay holding a
/// share `f` of its extent waits `1/f` times `merge_ms` (or the extent's
/// own period, if longer): a merge costs a GET and a PUT whatever the
/// overlay holds, while keeping the overlay costs only `f` of keeping the
/// extent local, so it pays to wait until the rent paid would have bought
/// the merge (ski rental, with the rent scaled by the share).
fn period(cooling: &Cooling, v: &ExtentView) -> u64 {
    let base = cooling.of(v.extent);
    if v.state != ExtentState::Overlay {
        return base;
    }
    let base = base.max(cooling.merge_ms);
    let share = v.overlay_share.clamp(1e-6, 1.0);
    (base as f64 / share).min(u64::MAX as f64 / 2.0) as u64
}

/// Extents to tier now, coldest first, or why none. Overlays among them
/// are to be merged into a new object rather than uploaded whole from the
/// local tier.
pub fn select(
    class: &ClassConfig,
    cooling: &Cooling,
    extents: &[ExtentView],
    now_ms: u64,
    created_ms: u64,
    fullness: Fullness,
) -> Result<Vec<u64>, Hold> {
    tiers(class)?;
    let local_used_pct = fullness.percent();
    if class.local_fullness_threshold > 0 && local_used_pct <= class.local_fullness_threshold {
        return Err(Hold::BelowFullness {
            used_pct: local_used_pct,
            threshold: class.local_fullness_threshold,
        });
    }
    let all = class.tiering_policy == TieringPolicy::All;
    let mut chosen: Vec<(&ExtentView, u64)> = extents
        .iter()
        .filter(|v| candidate(v))
        .map(|v| (v, cooling.last_use(v.heat, created_ms)))
        .filter(|&(v, used)| all || used <= now_ms.saturating_sub(period(cooling, v)))
        .collect();
    chosen.sort_by(|(a, ua), (b, ub)| {
        let ta = cooling.temperature(a.heat);
        let tb = cooling.temperature(b.heat);
        ta.total_cmp(&tb)
            .then(ua.cmp(ub))
            .then(a.extent.cmp(&b.extent))
    });
    Ok(chosen.into_iter().map(|(v, _)| v.extent).collect())
}

/// Local extents idle past the cooling period that are still local: FabricPool's
/// "inactive data". Counted in extents.
pub fn inactive(
    class: &ClassConfig,
    cooling: &Cooling,
    extents: &[ExtentView],
    now_ms: u64,
    created_ms: u64,
) -> usize {
    // Classes without a cooling period (none, all) report against
    // FabricPool's default of 31 days, as its inactive data reporting does.
    let period = match class.cooling_period {
        Some(_) => cooling.base_ms,
        None => crate::class::AUTO_DEFAULT_COOLING.as_millis() as u64,
    };
    let cutoff = now_ms.saturating_sub(period);
    extents
        .iter()
        .filter(|v| {
            v.state == ExtentState::Local
                && v.allocated
                && cooling.last_use(v.heat, created_ms) <= cutoff
        })
        .count()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::class::CoolingPeriod;

    fn heat(extent: u64, last: u64, temp: f64) -> ExtentHeat {
        ExtentHeat {
            extent,
            reads: 1,
            writes: 0,
            read_bytes: 1,
            write_bytes: 0,
            sequential_reads: 0,
            random_reads: 1,
            last_access_ms: last,
            last_read_ms: last,
            last_write_ms: 0,
            temperature: temp,
            last_warm_ms: last,
            warm_temperature: temp,
            sequential_ratio: Some(0.0),
        }
    }

    fn sel(
        c: &ClassConfig,
        v: &[ExtentView],
        now: u64,
        created: u64,
        f: Fullness,
    ) -> Result<Vec<u64>, Hold> {
        select(c, &Cooling::of_class(c, true), v, now, created, f)
    }

    fn inact(c: &ClassConfig, v: &[ExtentView], now: u64, created: u64) -> usize {
        inactive(c, &Cooling::of_class(c, true), v, now, created)
    }

    fn may(c: &ClassConfig, earliest: Option<u64>, now: u64) -> bool {
        may_tier(c, &Cooling::of_class(c, true), earliest, now)
    }

    fn pct(used: u64) -> Fullness {
        Fullness {
            used_bytes: used,
            capacity_bytes: 100,
        }
    }

    fn class(p: TieringPolicy, cooling_s: u64) -> ClassConfig {
        ClassConfig {
            tiering_policy: p,
            cooling_period: Some(CoolingPeriod::Fixed(Duration::from_secs(cooling_s))),
            ..Default::default()
        }
    }

    #[test]
    fn auto_tiers_only_what_cooled_coldest_first() {
        let h = [
            heat(0, 1_000, 0.5),
            heat(1, 95_000, 3.0),
            heat(2, 2_000, 0.1),
        ];
        let views: Vec<ExtentView> = vec![
            ExtentView {
                extent: 0,
                state: ExtentState::Local,
                allocated: true,
                heat: Some(&h[0]),
                overlay_share: 0.0,
            },
            ExtentView {
                extent: 1,
                state: ExtentState::Local,
                allocated: true,
                heat: Some(&h[1]),
                overlay_share: 0.0,
            },
            ExtentView {
                extent: 2,
                state: ExtentState::Local,
                allocated: true,
                heat: Some(&h[2]),
                overlay_share: 0.0,
            },
            ExtentView {
                extent: 3,
                state: ExtentState::Remote,
                allocated: false,
                heat: None,
                overlay_share: 0.0,
            },
            ExtentView {
                extent: 4,
                state: ExtentState::Local,
                allocated: false,
                heat: None,
                overlay_share: 0.0,
            },
            ExtentView {
                extent: 5,
                state: ExtentState::Local,
                allocated: true,
                heat: None,
                overlay_share: 0.0,
            },
        ];
        // Cooling 60 s at t = 100 s: extents 0, 2 and the never-accessed 5 (created at 0) are cold.
        let got = sel(&class(TieringPolicy::Auto, 60), &views, 100_000, 0, pct(50)).unwrap();
        assert_eq!(got, vec![5, 2, 0]);
        let all = sel(&class(TieringPolicy::All, 60), &views, 100_000, 0, pct(50)).unwrap();
        assert_eq!(all, vec![5, 2, 0, 1]);
        assert_eq!(
            inact(&class(TieringPolicy::Auto, 60), &views, 100_000, 0),
            3
        );
        // Without a cooling period (none, all), inactive means idle 31 days.
        let none = ClassConfig::default();
        assert_eq!(inact(&none, &views, 100_000, 50_000), 0);
        assert_eq!(inact(&none, &views, 32 * 86_400_000, 50_000), 4);
    }

    #[test]
    fn holds_say_why() {
        assert_eq!(
            sel(&class(TieringPolicy::None, 1), &[], 0, 0, pct(99)),
            Err(Hold::PolicyNone)
        );
        assert_eq!(
            sel(&class(TieringPolicy::SnapshotOnly, 1), &[], 0, 0, pct(99)),
            Err(Hold::NoSnapshots)
        );
        let mut c = class(TieringPolicy::All, 1);
        c.local_fullness_threshold = 80;
        assert_eq!(
            sel(&c, &[], 0, 0, pct(42)),
            Err(Hold::BelowFullness {
                used_pct: 42,
                threshold: 80
            })
        );
        assert!(sel(&c, &[], 0, 0, pct(81)).is_ok());
        assert_eq!(
            Fullness {
                used_bytes: 805,
                capacity_bytes: 1000
            }
            .percent(),
            81,
            "rounded, as the daemon's statvfs reading was"
        );
        assert_eq!(Fullness::unknown().percent(), 0);
    }

    #[test]
    fn may_tier_agrees_with_the_cutoff() {
        let c = class(TieringPolicy::Auto, 60);
        assert!(!may(&c, None, 100_000));
        assert!(may(&c, Some(40_000), 100_000));
        assert!(!may(&c, Some(40_001), 100_000));
        assert!(!may(&class(TieringPolicy::None, 60), Some(0), 100_000));
        assert!(may(&class(TieringPolicy::All, 60), Some(100_000), 100_000));
    }

    #[test]
    fn scans_that_do_not_warm_leave_extents_cold_and_backoffs_hold_them() {
        // Extent 0 was scanned at 90 s but last written at 1 s; extent 1 was
        // written at 2 s and has a personal period of 4 minutes.
        let mut scanned = heat(0, 90_000, 2.0);
        scanned.last_warm_ms = 1_000;
        scanned.warm_temperature = 0.1;
        let written = heat(1, 2_000, 0.5);
        let views = [
            ExtentView {
                extent: 0,
                state: ExtentState::Local,
                allocated: true,
                heat: Some(&scanned),
                overlay_share: 0.0,
            },
            ExtentView {
                extent: 1,
                state: ExtentState::Local,
                allocated: true,
                heat: Some(&written),
                overlay_share: 0.0,
            },
        ];
        let c = class(TieringPolicy::Auto, 60);
        let warm = Cooling::of_class(&c, true);
        assert_eq!(
            select(&c, &warm, &views, 100_000, 0, pct(0)).unwrap(),
            vec![1]
        );
        let cold = Cooling::of_class(&c, false);
        assert_eq!(
            select(&c, &cold, &views, 100_000, 0, pct(0)).unwrap(),
            vec![0, 1],
            "coldest first by the temperature without scans"
        );
        let personal = |e: u64| if e == 1 { 240_000 } else { 60_000 };
        let backed_off = Cooling {
            per_extent: Some(&personal),
            ..cold
        };
        assert_eq!(
            select(&c, &backed_off, &views, 100_000, 0, pct(0)).unwrap(),
            vec![0]
        );
        assert_eq!(
            select(&c, &backed_off, &views, 242_000, 0, pct(0)).unwrap(),
            vec![0, 1]
        );
        assert_eq!(inactive(&c, &cold, &views, 100_000, 0), 2);
        assert_eq!(inactive(&c, &warm, &views, 100_000, 0), 1);
    }

    #[test]
    fn an_overlay_is_merged_once_its_rent_would_have_paid_for_the_merge() {
        // Three overlays last written at 1 s: a quarter, half and all but
        // one block of their extents; a 60 s cooling and a 100 s merge
        // break-even. They wait 400 s, 200 s and (never less than the
        // break-even) 100 s.
        let h: Vec<ExtentHeat> = (0..3).map(|e| heat(e, 1_000, 1.0)).collect();
        let views: Vec<ExtentView> = [0.25, 0.5, 255.0 / 256.0]
            .iter()
            .enumerate()
            .map(|(e, &share)| ExtentView {
                extent: e as u64,
                state: ExtentState::Overlay,
                allocated: false,
                heat: Some(&h[e]),
                overlay_share: share,
            })
            .collect();
        let c = class(TieringPolicy::Auto, 60);
        let cooling = Cooling {
            merge_ms: 100_000,
            ..Cooling::of_class(&c, true)
        };
        let at = |now| select(&c, &cooling, &views, now, 0, pct(0)).unwrap();
        assert!(at(100_999).is_empty());
        assert_eq!(at(101_400), vec![2]);
        assert_eq!(at(201_000), vec![1, 2]);
        assert_eq!(at(401_000), vec![0, 1, 2]);
        // Without prices the extent's own period stands for the break-even.
        let plain = Cooling::of_class(&c, true);
        assert_eq!(
            select(&c, &plain, &views, 121_000, 0, pct(0)).unwrap(),
            vec![1, 2]
        );
        // Under `all` every overlay goes at the next pass.
        let all = class(TieringPolicy::All, 60);
        assert_eq!(
            select(&all, &Cooling::of_class(&all, true), &views, 1, 0, pct(0)).unwrap(),
            vec![0, 1, 2]
        );
    }
}
