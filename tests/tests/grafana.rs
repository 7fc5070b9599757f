//! `deploy/grafana/tierd-dashboard.json`, checked against a running tierd:
//! every metric (and label) its queries use is one tierd exposes, used as its
//! type allows.

use std::collections::{BTreeMap, BTreeSet};

use tierd_e2e::backends::{spec, Kind};
use tierd_e2e::deploy::read;
use tierd_e2e::{free_port, random_bytes, run, Daemon};

const MIB: usize = 1 << 20;

/// Every `tierd_...` name in `text` (a whole word).
fn metric_names(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("tierd_").map(|p| p + i) {
        let mut end = at;
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        if at == 0 || !word(b[at - 1]) {
            out.insert(text[at..end].to_string());
        }
        i = end.max(at + 1);
    }
    out
}

/// Every string under a key named `key`, anywhere in `v`.
fn strings_at(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x {
                    serde_json::Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_at(x, key, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings_at(x, key, out)),
        _ => {}
    }
}

/// A scrape: metric family types, and every sample's name and labels.
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (n, ty) = t.split_once(' ').expect("TYPE line");
                types.insert(n.to_string(), ty.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, _) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let labels = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once("=\"").expect("label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            samples.push((name.to_string(), labels));
        }
        Scrape { types, samples }
    }

    /// The family type of a sample or family name (histogram parts included).
    fn type_of(&self, name: &str) -> Option<&str> {
        if let Some(t) = self.types.get(name) {
            return Some(t);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suf| {
            name.strip_suffix(suf)
                .and_then(|base| self.types.get(base))
                .filter(|t| *t == "histogram")
                .map(String::as_str)
        })
    }

    fn series(&self, name: &str) -> impl Iterator<Item = &BTreeMap<String, String>> {
        let name = name.to_string();
        self.samples
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, l)| l)
    }
}

/// Histograms tierd computes afresh at every scrape (tiering/src/metrics.rs,
/// `state`): their buckets are gauges, never rate()d.
const STATE_HISTOGRAMS: [&str; 1] = ["tierd_volume_extent_temperature"];

/// The function whose argument list directly encloses byte `at` of `expr`.
fn enclosing_function(expr: &str, at: usize) -> String {
    let b = expr.as_bytes();
    let mut depth = 0;
    let mut i = at;
    while i > 0 {
        i -= 1;
        match b[i] {
            b')' => depth += 1,
            b'(' if depth == 0 => {
                let head = expr[..i].trim_end();
                let start = head
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|p| p + 1)
                    .unwrap_or(0);
                return head[start..].to_string();
            }
            b'(' => depth -= 1,
            _ => {}
        }
    }
    String::new()
}

#[test]
fn grafana_dashboard_uses_only_what_tierd_exposes() {
    let text = read("deploy/grafana/tierd-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no ${n} variable"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    assert!(
        var("volume")["definition"].as_str().is_some_and(|d| d
            .starts_with("label_values(tierd_volume_bytes")
            && d.ends_with(", volume)")),
        "{}",
        var("volume")
    );
    // No data source hard-coded anywhere: every one is the variable.
    let mut uids = Vec::new();
    strings_at(&dash, "uid", &mut uids);
    for u in uids.iter().filter(|u| *u != "tierd-overview") {
        assert!(
            u == "${DS_PROMETHEUS}" || u == "-- Grafana --",
            "data source uid {u}"
        );
    }
    let mut exprs = Vec::new();
    strings_at(&dash, "expr", &mut exprs);
    strings_at(&dash, "definition", &mut exprs);
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let mut kinds = Vec::new();
    strings_at(&dash, "type", &mut kinds);
    assert!(kinds.iter().any(|k| k == "heatmap"), "a heatmap panel");

    let names = metric_names(&text);
    for must in [
        "tierd_volume_bytes",
        "tierd_volume_inactive_bytes",
        "tierd_extents",
        "tierd_volume_extent_temperature_bucket",
        "tierd_nbd_request_duration_seconds_bucket",
        "tierd_nbd_requests_total",
        "tierd_migrations_total",
        "tierd_migration_bytes_total",
        "tierd_backend_requests_total",
        "tierd_backend_request_duration_seconds_bucket",
        "tierd_integrity_errors_total",
        "tierd_gc_objects_deleted_total",
        "tierd_rehydration_cache_hits_total",
        "tierd_rehydration_cache_misses_total",
    ] {
        assert!(names.contains(must), "the dashboard does not show {must}");
    }

    // A daemon that has done everything the dashboard shows: class `c` tiers
    // to a local directory; class `d` to an S3 endpoint on a loopback port
    // nobody listens on, so backend errors and retries happen too.
    let fs = spec(Kind::Fs).expect("fs backend");
    let dead = free_port();
    let d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\nbreaker_failures = 1000\n{}\n\
         [backends.dead]\nkind = \"s3\"\nbucket = \"nobody\"\nendpoint = \"http://127.0.0.1:{dead}\"\n\
         path_style = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
         [backends.dead.limits]\ninitial_backoff = \"10ms\"\nmax_backoff = \"50ms\"\nmax_attempts = 3\n\
         attempt_timeout = \"2s\"\ndeadline = \"10s\"\n\
         [classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n\
         [classes.d]\nbackend = \"dead\"\ntiering_policy = \"all\"\n",
        fs.toml
    ));
    for (v, class) in [("v", "c"), ("w", "d")] {
        d.create_volume_in(v, "16MiB", Some("1MiB"), class);
        d.write_image(v, &random_bytes(4 * MIB, 11));
    }
    let (status, report) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tiered"], 4, "{report}");
    let (status, report) = d.post("/v1/volumes/w/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["tiered"].as_u64(), report["failed"].as_u64()),
        (Some(0), Some(4)),
        "the dead backend refuses every upload: {report}"
    );
    // A cold read (remote), a local write and read, garbage collection.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &d.uri("v"),
            "-c",
            "read 1M 4k",
            "-c",
            "write -P 0x5a 12M 64k",
            "-c",
            "read -P 0x5a 12M 64k",
        ],
    );
    let (status, gc) = d.post("/v1/gc");
    assert!(status < 300, "{status} {gc}");

    let body = reqwest::blocking::get(format!("{}/metrics", d.api()))
        .expect("GET /metrics")
        .text()
        .expect("metrics text");
    let scrape = Scrape::parse(&body);
    assert!(
        scrape
            .series("tierd_backend_requests_total")
            .any(|l| l.get("result").is_some_and(|r| r != "ok")),
        "the dead backend produced no failed attempts:\n{body}"
    );

    // Every name the dashboard uses is exposed (a histogram by its family
    // name or its _bucket/_sum/_count series).
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            scrape.series(n).next().is_none()
                && scrape.types.get(*n).map(String::as_str) != Some("histogram")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in a scrape of tierd: {missing:?}\n{body}"
    );

    // Each query uses its metrics as their type allows, with labels they have.
    for expr in &exprs {
        for name in metric_names(expr) {
            let ty = scrape
                .type_of(&name)
                .unwrap_or_else(|| panic!("{name}: no TYPE in the scrape"));
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|_| ty == "histogram"))
                .unwrap_or(&name);
            let occurrences = occurrences(expr, &name);
            assert!(!occurrences.is_empty(), "{name} in {expr}");
            for at in occurrences {
                let f = enclosing_function(expr, at);
                let rated = matches!(f.as_str(), "rate" | "irate" | "increase");
                let want_rate = match ty {
                    "counter" => true,
                    "histogram" => !STATE_HISTOGRAMS.contains(&base),
                    _ => false,
                };
                assert_eq!(
                    rated,
                    want_rate,
                    "{name} ({ty}) is {} in: {expr}",
                    if rated { "rated" } else { "not rated" }
                );
                // Label matchers: the labels exist on the series; `=` values occur.
                let labels_of: BTreeSet<&String> =
                    scrape.series(&name).flat_map(|l| l.keys()).collect();
                let Some(sel) = expr[at + name.len()..].strip_prefix('{') else {
                    continue;
                };
                let sel = &sel[..sel.find('}').expect("closing }")];
                for matcher in sel.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    let key_end = matcher.find(['=', '!']).expect("matcher");
                    let key = matcher[..key_end].trim();
                    if key == "instance" || key == "job" {
                        continue;
                    }
                    assert!(
                        labels_of.iter().any(|l| *l == key),
                        "{name} has no label {key} (has {labels_of:?}): {expr}"
                    );
                    if let Some(v) = matcher[key_end..].trim().strip_prefix("=\"") {
                        let v = v.trim_end_matches('"');
                        assert!(
                            scrape
                                .series(&name)
                                .any(|l| l.get(key).map(String::as_str) == Some(v)),
                            "no {name} series with {key}=\"{v}\": {expr}"
                        );
                    }
                }
            }
        }
        // Grouping labels exist on some metric of the query.
        let mut rest = expr.as_str();
        while let Some(p) = rest.find("by (") {
            let inner = &rest[p + 4..];
            let close = inner.find(')').expect("by (...)");
            for label in inner[..close].split(',').map(str::trim) {
                if label == "instance" || label == "job" {
                    continue;
                }
                let found = metric_names(expr)
                    .iter()
                    .any(|n| scrape.series(n).any(|l| l.contains_key(label)));
                assert!(found, "by ({label}): no metric of {expr} has it");
            }
            rest = &inner[close..];
        }
    }
}

/// Where `name` occurs in `expr` as a whole word.
fn occurrences(expr: &str, name: &str) -> Vec<usize> {
    let b = expr.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = expr[from..].find(name).map(|p| p + from) {
        let end = p + name.len();
        if (p == 0 || !word(b[p - 1])) && (end == b.len() || !word(b[end])) {
            out.push(p);
        }
        from = end;
    }
    out
}
