//! A volume's cooling tuner as the daemon runs it (`policy::cooling`): the
//! events it is fed on the I/O path and by passes, what it reports, the
//! monthly cost estimate from the same cost model as the simulator, and its
//! state kept in RocksDB across restarts.
//!
//! Invariant: the tuner sees the same events at the same points as the
//! simulator's volume (`sim::volume`): one read per read request (cold when
//! it touched a remote extent of the top layer), a return per extent of the
//! top layer made local again, a tier per extent of the top layer tiered, and
//! a pass with every extent's last use. Its state is saved after each pass,
//! so a restart loses at most one pass interval of it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use policy::cooling::{heat_at_use, Backoffs, Thresholds, TunerStatus};
use policy::cost::{monthly_cost, Cost, Usage};
use policy::select::Cooling;
use policy::{ClassConfig, Economics, Limits, Tuner};

use super::registry::Volumes;
use super::Volume;
use crate::db::{self, CF_META};
use crate::error::{Result, TierError};

fn key(id: u64) -> Vec<u8> {
    format!("tuner/{id:016x}").into_bytes()
}

/// What a volume's storage and requests cost a month at the current rate,
/// against keeping all of it local (US dollars, the simulator's model).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CostNow {
    pub now: f64,
    pub all_local: f64,
    /// `all_local - now`: what tiering saves a month.
    pub savings: f64,
    pub price_tier: String,
}

/// What a pass needs from the tuner: the volume's cooling period and each
/// extent's own (by its heat band, and its back-off).
pub(crate) struct PassCooling {
    pub base_ms: u64,
    pub thresholds: Thresholds,
    pub scans_warm: bool,
    /// How long a full overlay idles before a pass merges it.
    pub merge_ms: u64,
    pub limits: Limits,
    pub backoffs: Backoffs,
    /// Each extent's period by its heat band (extents without heat: the volume's).
    bands: HashMap<u64, u64>,
}

impl PassCooling {
    /// The cooling of extent `e`.
    pub fn of(&self, e: u64) -> u64 {
        let band = self.bands.get(&e).copied().unwrap_or(self.base_ms);
        self.backoffs.cooling_of(e, band, &self.limits)
    }

    /// As `policy::select` takes it, borrowing `per_extent` (`|e| self.of(e)`).
    pub fn view<'a>(&self, class: &ClassConfig, per_extent: &'a dyn Fn(u64) -> u64) -> Cooling<'a> {
        Cooling {
            base_ms: match class.tiering_policy {
                policy::TieringPolicy::All => 0,
                _ => self.base_ms,
            },
            floor_ms: match class.tiering_policy {
                policy::TieringPolicy::All => 0,
                _ => self.thresholds.floor_ms(),
            },
            scans_warm: self.scans_warm,
            merge_ms: self.merge_ms,
            per_extent: Some(per_extent),
        }
    }
}

/// An extent's temperature at its last use, scans counted as the class says.
fn heat_then(h: &heatmap::ExtentHeat, used: u64, now: u64, hl: f64, scans_warm: bool) -> f64 {
    let t = if scans_warm {
        h.temperature
    } else {
        h.warm_temperature
    };
    heat_at_use(t, used, now, hl)
}

impl Volume {
    /// The class's tuner limits and what one extent costs where.
    pub(crate) fn cooling_inputs(&self, class: &ClassConfig) -> (Limits, Option<Economics>) {
        let config = self.engine.config();
        let tier = config.price_tier(class);
        (
            Limits::of(class),
            Economics::of_class(&config.pricing, &tier, self.extent_size(), class),
        )
    }

    fn class_now(&self) -> Option<ClassConfig> {
        self.engine.class(&self.meta().class).ok()
    }

    /// A read request finished; `cold` if it touched a remote extent.
    pub(crate) fn note_read(&self, cold: bool) {
        if self.read_only {
            return;
        }
        let now = self.engine.clock().now_ms();
        self.tuner.lock().on_read(now, cold);
    }

    /// Extent `e` of the top layer was tiered.
    pub(crate) fn note_tiered(&self, e: u64, limits: &Limits) {
        let now = self.engine.clock().now_ms();
        self.tuner.lock().on_tiered(e, now, limits);
    }

    /// Extent `e` of the top layer is local again (read back, partly
    /// written, or overwritten whole).
    pub(crate) fn note_returned(&self, e: u64) {
        if self.read_only {
            return;
        }
        let Some(class) = self.class_now() else {
            return;
        };
        let now = self.engine.clock().now_ms();
        let thrash = self.tuner.lock().on_returned(e, now, &Limits::of(&class));
        if thrash {
            self.engine
                .metrics
                .cooling_thrash
                .with_label_values(&[&self.name()])
                .inc();
        }
    }

    /// A GET of `bytes` was made for this volume.
    pub(crate) fn note_fetch(&self, bytes: u64) {
        self.tuner.lock().on_fetch(bytes);
    }

    /// Whether a read may bring `bytes` back now (the class's daily budget).
    pub(crate) fn may_bring_back(&self, bytes: u64) -> bool {
        let Some(class) = self.class_now() else {
            return true;
        };
        if class.rehydrate_budget().is_none() {
            return true;
        }
        let now = self.engine.clock().now_ms();
        let ok = self
            .tuner
            .lock()
            .allow_bring_back(bytes, now, &Limits::of(&class));
        if !ok {
            self.engine
                .metrics
                .rehydrations_refused
                .with_label_values(&[&self.name()])
                .inc();
        }
        ok
    }

    /// A pass's view of cooling: feeds the tuner every extent's last use
    /// (as `heat` says, with scans counted as the class says) and returns the
    /// period it sets.
    pub(crate) fn tune(&self, class: &ClassConfig, heat: &[heatmap::ExtentHeat]) -> PassCooling {
        let config = self.engine.config();
        let scans_warm = class.scans_warm(config.heat.scans_warm);
        let hl = config.heat.half_life.0.as_millis() as f64;
        let (limits, econ) = self.cooling_inputs(class);
        let fixed = Cooling::of_class(class, scans_warm);
        let now = self.engine.clock().now_ms();
        let uses: Vec<(u64, u64, f64)> = heat
            .iter()
            .map(|h| {
                let used = fixed.last_use(Some(h), 0);
                (h.extent, used, heat_then(h, used, now, hl, scans_warm))
            })
            .collect();
        let mut t = self.tuner.lock();
        let thresholds = t.on_pass(now, uses.iter().copied(), &limits, econ.as_ref());
        let backoffs = t.backoffs();
        drop(t);
        let bands = if limits.adaptive {
            uses.iter()
                .map(|&(e, _, h)| (e, thresholds.for_heat(h)))
                .collect()
        } else {
            HashMap::new()
        };
        PassCooling {
            base_ms: thresholds.volume_ms,
            thresholds,
            scans_warm,
            merge_ms: policy::overlay::merge_ms(econ.as_ref()),
            limits,
            backoffs,
            bands,
        }
    }

    /// The volume's cooling period as the last pass set it (or the class's
    /// starting point), with nothing fed to the tuner.
    pub(crate) fn current_cooling(&self, class: &ClassConfig) -> PassCooling {
        let scans_warm = class.scans_warm(self.engine.config().heat.scans_warm);
        let (limits, econ) = self.cooling_inputs(class);
        let t = self.tuner.lock();
        let thresholds = t.thresholds(&limits, econ.as_ref());
        PassCooling {
            base_ms: thresholds.volume_ms,
            thresholds,
            scans_warm,
            merge_ms: policy::overlay::merge_ms(econ.as_ref()),
            limits,
            backoffs: t.backoffs(),
            bands: HashMap::new(),
        }
    }

    /// What `tierd volume show` says of the volume's cooling.
    pub fn cooling_status(&self) -> Option<TunerStatus> {
        let class = self.class_now()?;
        let (limits, econ) = self.cooling_inputs(&class);
        let now = self.engine.clock().now_ms();
        Some(self.tuner.lock().status(now, &limits, econ.as_ref()))
    }

    /// The monthly cost of the volume at the current rate: its local and
    /// remote bytes now, and the requests it made since its tuner started
    /// (averaged over at least a day) scaled to a month.
    pub fn cost_now(&self, local_bytes: u64, remote_bytes: u64) -> Option<CostNow> {
        let class = self.class_now()?;
        let config = self.engine.config();
        let tier = config.price_tier(&class);
        let now = self.engine.clock().now_ms();
        let r = self.tuner.lock().requests;
        // Requests are averaged over at least a day: a few PUTs in the
        // first minutes say nothing about a month.
        let duration_ms = now.saturating_sub(r.since_ms).max(86_400_000);
        let usage = Usage {
            duration_ms,
            local_byte_ms: local_bytes as f64 * duration_ms as f64,
            remote_byte_ms: remote_bytes as f64 * duration_ms as f64,
            puts: r.puts,
            gets: r.gets,
            bytes_retrieved: r.bytes_fetched,
            deleted_objects: Vec::new(),
        };
        let cost: Cost = monthly_cost(&config.pricing, &tier, &usage).ok()?;
        let all_local = (local_bytes + remote_bytes) as f64 / 1e9 * config.pricing.local_gb_month;
        Some(CostNow {
            now: cost.total,
            all_local,
            savings: all_local - cost.total,
            price_tier: tier,
        })
    }
}

impl Volumes {
    /// Gives `vol` the tuner state its last pass saved, if any. A record
    /// that cannot be read is logged and replaced: the tuner starts over
    /// from the break-even, which loses history, never data.
    pub(crate) fn load_tuner(&self, vol: &Volume) -> Result<()> {
        let cf = db::cf(&self.db, CF_META)?;
        let bytes = self
            .db
            .get_cf(cf, key(vol.id()))
            .map_err(|source| TierError::Db {
                op: "read cooling state",
                source: source.into(),
            })?;
        if let Some(b) = bytes {
            match serde_json::from_slice::<Tuner>(&b) {
                Ok(t) => *vol.tuner.lock() = t,
                Err(e) => {
                    tracing::warn!(volume = %vol.name(), error = %e, "cooling state unreadable; starting over from the break-even")
                }
            }
        }
        Ok(())
    }

    /// Saves `vol`'s tuner state (after a pass).
    pub(crate) fn save_tuner(&self, vol: &Arc<Volume>) -> Result<()> {
        let text =
            serde_json::to_vec(&*vol.tuner.lock()).map_err(|e| TierError::CorruptMetadata {
                key: String::from_utf8_lossy(&key(vol.id())).into_owned(),
                reason: format!("cannot encode: {e}"),
            })?;
        let cf = db::cf(&self.db, CF_META)?;
        self.db
            .put_cf(cf, key(vol.id()), text)
            .map_err(|source| TierError::Db {
                op: "write cooling state",
                source: source.into(),
            })
    }

    /// Drops a deleted volume's tuner state.
    pub(crate) fn delete_tuner(&self, batch: &mut rocksdb::WriteBatch, id: u64) -> Result<()> {
        batch.delete_cf(db::cf(&self.db, CF_META)?, key(id));
        Ok(())
    }
}
