//! The simulation report for people: one table row per policy and per
//! optimum, costs per month, and how far each policy is from the optimum of
//! its price list.

use super::{PolicyReport, Report};
use policy::units::{format_duration, format_size};

fn gib(bytes: f64) -> String {
    format_size(bytes.max(0.0) as u64)
}

/// Dollars, with cents for large sums and four significant digits for small ones.
fn dollars(x: f64) -> String {
    let x = if x.abs() < 1e-12 { 0.0 } else { x };
    if x.abs() >= 100.0 {
        format!("${x:.0}")
    } else if x.abs() >= 1.0 {
        format!("${x:.2}")
    } else if x == 0.0 {
        "$0".into()
    } else {
        let digits = (3 - x.abs().log10().floor() as i32).clamp(2, 9) as usize;
        format!("${x:.digits$}")
    }
}

/// A duration in days (hours below two days).
fn span(ms: u64) -> String {
    let h = ms as f64 / 3_600_000.0;
    if h >= 48.0 {
        format!("{:.1} days", h / 24.0)
    } else {
        format!("{h:.1} hours")
    }
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn row(p: &PolicyReport, optimum: Option<f64>) -> Vec<String> {
    let vs = match optimum {
        Some(o) if o > 0.0 => format!("{:+.0}%", (p.cost.total / o - 1.0) * 100.0),
        Some(_) => "-".into(),
        None => String::new(),
    };
    vec![
        p.name.clone(),
        p.description.clone(),
        p.local_peak_bytes.map(gib).unwrap_or_else(|| "-".into()),
        gib(p.local_mean_bytes),
        count(p.extents_tiered),
        count(p.rehydrations),
        count(p.thrash),
        count(p.puts),
        count(p.gets),
        gib((p.bytes_tiered + p.bytes_fetched) as f64),
        p.cold_read_ms
            .map(|m| format!("{m:.1} ms"))
            .unwrap_or_else(|| "-".into()),
        dollars(p.cost.total),
        vs,
    ]
}

/// The report as an aligned table with a header naming the trace.
pub fn table(r: &Report, trace: &str) -> String {
    let mut out = format!(
        "trace {trace}: {} events on {} device(s) over {}; extents of {}, a policy pass every {}\n\
         costs per 30-day month, list prices taken {}\n\n",
        count(r.events),
        r.devices.len(),
        span(r.duration_ms),
        format_size(r.extent_size),
        format_duration(std::time::Duration::from_millis(r.scan_interval_ms)),
        r.prices_taken,
    );
    let headers = [
        "POLICY",
        "BEHAVIOUR",
        "LOCAL PEAK",
        "LOCAL MEAN",
        "TIERED",
        "REHYDRATED",
        "THRASH",
        "PUT",
        "GET",
        "MOVED",
        "COLD READ",
        "COST/MONTH",
        "VS OPTIMUM",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for p in &r.policies {
        let opt = r
            .optimum
            .iter()
            .find(|o| o.price_tier == p.price_tier)
            .map(|o| o.cost.total);
        rows.push(row(p, opt));
    }
    for o in &r.optimum {
        rows.push(row(o, None));
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Names left, numbers right.
                if i < 2 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    out += &line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r);
    }
    out += "\ncost breakdown (per month):\n";
    for p in r.policies.iter().chain(&r.optimum) {
        let c = &p.cost;
        out += &format!(
            "  {:<w$}  local {}  remote {}  requests {}  retrieval {}  early deletion {}  ({})\n",
            p.name,
            dollars(c.local_storage),
            dollars(c.remote_storage),
            dollars(c.requests),
            dollars(c.retrieval),
            dollars(c.early_delete),
            p.price_tier,
            w = widths[0]
        );
    }
    let adaptive: Vec<&PolicyReport> = r
        .policies
        .iter()
        .filter(|p| !p.cooling_ms.is_empty())
        .collect();
    if !adaptive.is_empty() {
        out += "\ncooling period at the end (cooling_period = \"auto\"), per device:\n";
        for p in adaptive {
            let each: Vec<String> = p
                .cooling_ms
                .iter()
                .map(|&ms| {
                    policy::units::format_duration_approx(std::time::Duration::from_millis(ms))
                })
                .collect();
            out += &format!(
                "  {:<w$}  {}  ({} back within their class's thrash window)\n",
                p.name,
                each.join(", "),
                count(p.guard_thrash),
                w = widths[0]
            );
        }
    }
    if let Some(p) = r.policies.iter().find(|p| p.snapshots > 0) {
        out += &format!(
            "\nwith {} scheduled snapshots: LOCAL and the costs include what the snapshots alone hold; \
             the optimum places the volume's live data only\n",
            count(p.snapshots)
        );
    }
    if r.policies.iter().any(|p| {
        r.optimum
            .iter()
            .any(|o| o.price_tier == p.price_tier && p.cost.total < o.cost.total)
    }) {
        out += "\nthe optimum decides placement only; a policy below it had cold reads absorbed by the fetch cache\n";
    }
    out
}
