//! Which data that snapshots hold leaves the local tier: the decision for
//! the frozen layers under a volume (see the daemon's `volume::layer`), as
//! `select` is for the volume's own top layer.
//!
//! A unit is one extent of one frozen layer. It is *snapshot-only* when no
//! live volume reads any of its blocks any more (each live volume above it
//! wrote over all of them): FabricPool's "blocks held only by snapshots".
//! - `snapshot-only` tiers snapshot-only units once they have idled for the
//!   cooling period, counted from the last write to that extent of the live
//!   volume (the latest moment the data could have become snapshot-only) or
//!   the snapshot, whichever is later;
//! - `auto` tiers snapshot-only units at once (no live volume will read them)
//!   and units the live volume still reads when that extent is cold, as it
//!   would tier the extent itself;
//! - `all` tiers every unit; `none` none.

use heatmap::ExtentHeat;

use crate::class::{ClassConfig, TieringPolicy};
use crate::select::{cold_cutoff, Cooling};

/// One extent of one frozen layer, as the policy sees it.
#[derive(Debug, Clone)]
pub struct HeldView<'a> {
    pub layer: u64,
    pub extent: u64,
    /// Some live volume still reads some of its blocks.
    pub live: bool,
    /// When the layer was frozen (the snapshot's time).
    pub frozen_ms: u64,
    /// The heat of that extent of the volume the layer belongs to.
    pub heat: Option<&'a ExtentHeat>,
}

impl HeldView<'_> {
    /// Since when the unit has gone untouched, for the cooling period.
    fn idle_since(&self, cooling: &Cooling) -> u64 {
        let touched = match (self.live, self.heat) {
            (true, Some(h)) => cooling.last_use(Some(h), 0),
            (false, Some(h)) => h.last_write_ms,
            (_, None) => 0,
        };
        touched.max(self.frozen_ms)
    }
}

/// The units to tier now (indices into `units`), snapshot-only ones first,
/// then the longest idle.
pub fn select_held(
    class: &ClassConfig,
    cooling: &Cooling,
    units: &[HeldView],
    now_ms: u64,
) -> Vec<usize> {
    let cutoff = cold_cutoff(class, cooling, now_ms);
    let mut chosen: Vec<usize> = (0..units.len())
        .filter(|&i| {
            let u = &units[i];
            match class.tiering_policy {
                TieringPolicy::None => false,
                TieringPolicy::All => true,
                TieringPolicy::SnapshotOnly => !u.live && u.idle_since(cooling) <= cutoff,
                TieringPolicy::Auto => !u.live || u.idle_since(cooling) <= cutoff,
            }
        })
        .collect();
    chosen.sort_by_key(|&i| {
        (
            units[i].live,
            units[i].idle_since(cooling),
            units[i].layer,
            units[i].extent,
        )
    });
    chosen
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DAY: u64 = 86_400_000;

    fn heat(last_access: u64, last_write: u64) -> ExtentHeat {
        ExtentHeat {
            extent: 0,
            reads: 1,
            writes: 1,
            read_bytes: 1,
            write_bytes: 1,
            sequential_reads: 0,
            random_reads: 1,
            last_access_ms: last_access,
            last_read_ms: last_access,
            last_write_ms: last_write,
            temperature: 0.0,
            last_warm_ms: last_access,
            warm_temperature: 0.0,
            sequential_ratio: None,
        }
    }

    fn class(p: TieringPolicy, days: u64) -> ClassConfig {
        ClassConfig {
            tiering_policy: p,
            cooling_period: Some(crate::class::CoolingPeriod::Fixed(Duration::from_millis(
                days * DAY,
            ))),
            ..Default::default()
        }
    }

    #[test]
    fn each_policy_tiers_what_it_promises() {
        // Snapshot at day 1. Extent 0 overwritten at day 3 (snapshot-only
        // since), extent 1 overwritten at day 9, extent 2 still read by the
        // live volume (last read day 2), extent 3 read by it at day 9.
        let h = [
            heat(3 * DAY, 3 * DAY),
            heat(9 * DAY, 9 * DAY),
            heat(2 * DAY, 0),
            heat(9 * DAY, 0),
        ];
        let units: Vec<HeldView> = (0..4)
            .map(|i| HeldView {
                layer: 7,
                extent: i,
                live: i >= 2,
                frozen_ms: DAY,
                heat: Some(&h[i as usize]),
            })
            .collect();
        let now = 10 * DAY;
        let pick = |p, days| -> Vec<u64> {
            {
                let c = class(p, days);
                select_held(&c, &Cooling::of_class(&c, true), &units, now)
            }
            .into_iter()
            .map(|i| units[i].extent)
            .collect()
        };
        // snapshot-only, 2-day cooling: only what has been snapshot-only for 2 days.
        assert_eq!(pick(TieringPolicy::SnapshotOnly, 2), vec![0]);
        // auto, 5 days: snapshot-only data at once, live data when cold.
        assert_eq!(pick(TieringPolicy::Auto, 5), vec![0, 1, 2]);
        assert_eq!(pick(TieringPolicy::All, 31), vec![0, 1, 2, 3]);
        assert!(pick(TieringPolicy::None, 2).is_empty());
        // A snapshot taken yesterday: its data has not cooled yet.
        let fresh = [HeldView {
            layer: 8,
            extent: 0,
            live: false,
            frozen_ms: 9 * DAY,
            heat: None,
        }];
        assert!({
            let c = class(TieringPolicy::SnapshotOnly, 2);
            select_held(&c, &Cooling::of_class(&c, true), &fresh, now)
        }
        .is_empty());
    }
}
