//! The `tierd simulate` command: its arguments, and turning them into a run
//! and its outputs (table or JSON, and optionally a PNG chart).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use policy::units::{parse_duration, parse_size};
use sim::{chart, report, trace, Options, Policy};

use crate::config::Config;
use crate::error::{Result, TierError};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The trace: MSR Cambridge/SNIA CSV, blkparse text, or one recorded by tierd.
    #[arg(long)]
    pub trace: PathBuf,
    /// The trace's format (msr, blkparse, tierd); detected when omitted.
    #[arg(long)]
    pub format: Option<String>,
    /// A policy to simulate: a class of the configuration, or
    /// POLICY[:COOLING][/RETRIEVAL][+overlay] such as auto:7d/on-read or
    /// auto:auto/never+overlay (with write overlays). Repeat to compare.
    #[arg(long = "class", required = true)]
    pub classes: Vec<String>,
    /// Configuration with the classes, backends and [pricing]; embedded defaults without.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Extent size (default 4MiB).
    #[arg(long, default_value = "4MiB")]
    pub extent_size: String,
    /// Time between policy passes (default: the configuration's tiering.scan_interval).
    #[arg(long)]
    pub scan_interval: Option<String>,
    /// An extent brought back within this long of being tiered counts as thrash.
    #[arg(long, default_value = "7d")]
    pub thrash_window: String,
    /// Price every policy with this list of [pricing.tiers] instead of its backend's.
    #[arg(long)]
    pub pricing_tier: Option<String>,
    /// Time to first byte of a GET, for the cold-read estimate.
    #[arg(long, default_value = "30ms")]
    pub get_latency: String,
    /// Object-store bandwidth per GET, per second.
    #[arg(long, default_value = "100MiB")]
    pub bandwidth: String,
    /// Take a snapshot of every volume this often (as a class's
    /// snapshot_schedule would), so snapshot-only and auto are priced with
    /// the data snapshots hold.
    #[arg(long)]
    pub snapshot_every: Option<String>,
    /// Scheduled snapshots kept (with --snapshot-every).
    #[arg(long, default_value_t = policy::class::DEFAULT_SNAPSHOT_RETENTION)]
    pub snapshot_keep: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw local bytes over time per policy to this PNG file.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

/// The configuration's classes as policies the simulator can run, each
/// priced by its backend's kind and upload tier.
pub fn known_policies(config: &Config) -> std::collections::BTreeMap<String, Policy> {
    config
        .classes
        .iter()
        .map(|(name, class)| {
            let policy = Policy {
                name: name.clone(),
                class: class.clone(),
                price_tier: config.price_tier(class),
            };
            (name.clone(), policy)
        })
        .collect()
}

fn arg_err(flag: &str, e: impl std::fmt::Display) -> TierError {
    TierError::InvalidArgument(format!("--{flag}: {e}"))
}

/// Runs the simulation the arguments describe and returns what to print.
pub fn simulate(a: &SimulateArgs) -> Result<String> {
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::embedded(),
    };
    let extent_size = parse_size(&a.extent_size).map_err(|e| arg_err("extent-size", e))?;
    if !extent_size.is_power_of_two() || !(1 << 20..=64 << 20).contains(&extent_size) {
        return Err(arg_err("extent-size", "a power of two from 1MiB to 64MiB"));
    }
    let scan = match &a.scan_interval {
        Some(s) => parse_duration(s).map_err(|e| arg_err("scan-interval", e))?,
        None => config.tiering.scan_interval.0,
    };
    if scan < Duration::from_millis(1) {
        return Err(arg_err("scan-interval", "must be at least 1ms"));
    }
    let thrash = parse_duration(&a.thrash_window).map_err(|e| arg_err("thrash-window", e))?;
    let snapshots = match &a.snapshot_every {
        Some(s) => {
            let every = parse_duration(s).map_err(|e| arg_err("snapshot-every", e))?;
            if every < Duration::from_secs(1) {
                return Err(arg_err("snapshot-every", "must be at least 1s"));
            }
            if a.snapshot_keep == 0 {
                return Err(arg_err("snapshot-keep", "must be at least 1"));
            }
            Some(sim::snapshots::Schedule {
                every_ms: every.as_millis() as u64,
                keep: a.snapshot_keep,
            })
        }
        None => None,
    };
    let first_byte = parse_duration(&a.get_latency).map_err(|e| arg_err("get-latency", e))?;
    let bandwidth = parse_size(&a.bandwidth).map_err(|e| arg_err("bandwidth", e))?;
    let known = known_policies(&config);
    let mut policies: Vec<Policy> = a
        .classes
        .iter()
        .map(|c| sim::policy_from_arg(&known, c))
        .collect::<sim::Result<_>>()?;
    if let Some(t) = &a.pricing_tier {
        for p in &mut policies {
            p.price_tier = t.clone();
        }
    }
    let format = match a.format.as_deref() {
        None => trace::detect(&a.trace).map_err(sim::SimError::from),
        Some("msr") => Ok(trace::Format::Msr),
        Some("blkparse") => Ok(trace::Format::Blkparse),
        Some("tierd") => Ok(trace::Format::Tierd),
        Some(other) => {
            return Err(arg_err(
                "format",
                format!("{other:?} is not msr, blkparse or tierd"),
            ))
        }
    }?;
    // A trace tierd recorded (VOLUME.trace) is replayed with its rotated
    // predecessors (VOLUME.trace.1, ...), oldest first.
    let recorded = match (format, a.trace.file_name().and_then(|n| n.to_str())) {
        (trace::Format::Tierd, Some(name)) => name.strip_suffix(".trace").map(str::to_string),
        _ => None,
    };
    let mut reader = match recorded {
        Some(volume) => trace::read_recorded(
            a.trace.parent().unwrap_or(std::path::Path::new(".")),
            &volume,
        )
        .map_err(sim::SimError::from)?,
        None => trace::open(&a.trace, format).map_err(sim::SimError::from)?,
    };
    let o = Options {
        volume: sim::volume::VolumeParams {
            extent_size,
            frame_size: config.tiering.frame_size.bytes(),
            half_life_ms: config.heat.half_life.0.as_millis() as f64,
            readahead: config.tiering.readahead(),
            cache_entries: policy::access::cache_entries(config.tiering.cache_bytes()),
            thrash_window_ms: thrash.as_millis() as u64,
            gc_grace_ms: config.tiering.gc_grace.0.as_millis() as u64,
            latency: sim::volume::Latency {
                first_byte_ms: first_byte.as_secs_f64() * 1000.0,
                bytes_per_ms: bandwidth as f64 / 1000.0,
            },
            scans_warm: config.heat.scans_warm,
        },
        scan_interval_ms: scan.as_millis() as u64,
        bucket_ms: 3_600_000,
        pricing: config.pricing.clone(),
        local_capacity: None,
        snapshots,
    };
    let mut report = sim::run(&mut reader, &policies, &o)?;
    report.devices = reader.devices().to_vec();
    if let Some(path) = &a.chart {
        let series: Vec<(String, Vec<(f64, f64)>)> = report
            .policies
            .iter()
            .chain(&report.optimum)
            .filter(|p| !p.series.is_empty())
            .map(|p| (p.name.clone(), p.series.clone()))
            .collect();
        let title = format!(
            "local bytes over time: {}",
            a.trace
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        );
        chart::local_bytes_png(path, &title, &series).map_err(sim::SimError::from)?;
    }
    let trace_name = format!("{} ({})", a.trace.display(), format.name());
    if a.json {
        let mut v =
            serde_json::to_value(&report).map_err(|e| TierError::InvalidArgument(e.to_string()))?;
        v["trace"] = serde_json::Value::String(trace_name);
        return Ok(format!("{v:#}\n"));
    }
    Ok(report::table(&report, &trace_name))
}
