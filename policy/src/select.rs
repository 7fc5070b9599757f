//! The policy decision: given a volume's extents (state, whether the local
//! copy holds data, heat), the time and how full the local filesystem is,
//! which extents should leave the local tier, coldest first. It takes its
//! clock and data as inputs so the daemon and the simulator run the same code.

use std::time::Duration;

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

/// When an extent counts as last used: its last access, or (never accessed
/// since tracking began) the volume's creation.
fn last_use(v: &ExtentView, created_ms: u64) -> u64 {
    v.heat.map(|h| h.last_access_ms).unwrap_or(created_ms)
}

/// Whether the class tiers anything at all, and if not why.
pub fn tiers(class: &ClassConfig) -> Result<(), Hold> {
    match class.tiering_policy {
        TieringPolicy::None => Err(Hold::PolicyNone),
        TieringPolicy::SnapshotOnly => Err(Hold::NoSnapshots),
        TieringPolicy::Auto | TieringPolicy::All => Ok(()),
    }
}

/// Extents last used at or before this time are cold at `now_ms`.
pub fn cold_cutoff(class: &ClassConfig, now_ms: u64) -> u64 {
    let cooling = if class.tiering_policy == TieringPolicy::All {
        Duration::ZERO
    } else {
        class.cooling()
    };
    now_ms.saturating_sub(cooling.as_millis() as u64)
}

/// Whether a pass at `now_ms` could tier anything, knowing only that no local
/// extent was last used before `earliest_local_use_ms`: lets a caller with
/// many volumes skip building the views. `select` decides the same way.
pub fn may_tier(class: &ClassConfig, earliest_local_use_ms: Option<u64>, now_ms: u64) -> bool {
    tiers(class).is_ok() && earliest_local_use_ms.is_some_and(|t| t <= cold_cutoff(class, now_ms))
}

/// Extents to tier now, coldest first, or why none.
pub fn select(
    class: &ClassConfig,
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
    let cutoff = cold_cutoff(class, now_ms);
    let mut chosen: Vec<&ExtentView> = extents
        .iter()
        .filter(|v| v.state == ExtentState::Local && v.allocated)
        .filter(|v| class.tiering_policy == TieringPolicy::All || last_use(v, created_ms) <= cutoff)
        .collect();
    chosen.sort_by(|a, b| {
        let ta = a.heat.map(|h| h.temperature).unwrap_or(0.0);
        let tb = b.heat.map(|h| h.temperature).unwrap_or(0.0);
        ta.total_cmp(&tb)
            .then(last_use(a, created_ms).cmp(&last_use(b, created_ms)))
            .then(a.extent.cmp(&b.extent))
    });
    Ok(chosen.into_iter().map(|v| v.extent).collect())
}

/// Local extents idle past the cooling period that are still local: FabricPool's
/// "inactive data". Counted in extents.
pub fn inactive(
    class: &ClassConfig,
    extents: &[ExtentView],
    now_ms: u64,
    created_ms: u64,
) -> usize {
    // Classes without a cooling period (none, all) report against
    // FabricPool's default of 31 days, as its inactive data reporting does.
    let cooling = class
        .cooling_period
        .map(|d| d.0)
        .unwrap_or(crate::class::AUTO_DEFAULT_COOLING);
    let cutoff = now_ms.saturating_sub(cooling.as_millis() as u64);
    extents
        .iter()
        .filter(|v| {
            v.state == ExtentState::Local && v.allocated && last_use(v, created_ms) <= cutoff
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::HumanDuration;

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
            sequential_ratio: Some(0.0),
        }
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
            cooling_period: Some(HumanDuration(Duration::from_secs(cooling_s))),
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
            },
            ExtentView {
                extent: 1,
                state: ExtentState::Local,
                allocated: true,
                heat: Some(&h[1]),
            },
            ExtentView {
                extent: 2,
                state: ExtentState::Local,
                allocated: true,
                heat: Some(&h[2]),
            },
            ExtentView {
                extent: 3,
                state: ExtentState::Remote,
                allocated: false,
                heat: None,
            },
            ExtentView {
                extent: 4,
                state: ExtentState::Local,
                allocated: false,
                heat: None,
            },
            ExtentView {
                extent: 5,
                state: ExtentState::Local,
                allocated: true,
                heat: None,
            },
        ];
        // Cooling 60 s at t = 100 s: extents 0, 2 and the never-accessed 5 (created at 0) are cold.
        let got = select(&class(TieringPolicy::Auto, 60), &views, 100_000, 0, pct(50)).unwrap();
        assert_eq!(got, vec![5, 2, 0]);
        let all = select(&class(TieringPolicy::All, 60), &views, 100_000, 0, pct(50)).unwrap();
        assert_eq!(all, vec![5, 2, 0, 1]);
        assert_eq!(
            inactive(&class(TieringPolicy::Auto, 60), &views, 100_000, 0),
            3
        );
        // Without a cooling period (none, all), inactive means idle 31 days.
        let none = ClassConfig::default();
        assert_eq!(inactive(&none, &views, 100_000, 50_000), 0);
        assert_eq!(inactive(&none, &views, 32 * 86_400_000, 50_000), 4);
    }

    #[test]
    fn holds_say_why() {
        assert_eq!(
            select(&class(TieringPolicy::None, 1), &[], 0, 0, pct(99)),
            Err(Hold::PolicyNone)
        );
        assert_eq!(
            select(&class(TieringPolicy::SnapshotOnly, 1), &[], 0, 0, pct(99)),
            Err(Hold::NoSnapshots)
        );
        let mut c = class(TieringPolicy::All, 1);
        c.local_fullness_threshold = 80;
        assert_eq!(
            select(&c, &[], 0, 0, pct(42)),
            Err(Hold::BelowFullness {
                used_pct: 42,
                threshold: 80
            })
        );
        assert!(select(&c, &[], 0, 0, pct(81)).is_ok());
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
        assert!(!may_tier(&c, None, 100_000));
        assert!(may_tier(&c, Some(40_000), 100_000));
        assert!(!may_tier(&c, Some(40_001), 100_000));
        assert!(!may_tier(&class(TieringPolicy::None, 60), Some(0), 100_000));
        assert!(may_tier(
            &class(TieringPolicy::All, 60),
            Some(100_000),
            100_000
        ));
    }
}
