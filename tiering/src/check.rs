//! `tierd check`: what a configuration file means once loaded, for an operator
//! to read before deploying it (and for tests of shipped manifests).

use serde_json::json;

use crate::config::Config;

/// The classes, backends, warnings and skipped manifests of `config`, as a
/// table or as JSON.
pub fn describe(config: &Config, as_json: bool) -> String {
    if as_json {
        let classes: serde_json::Map<_, _> = config
            .classes
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    json!({
                        "tiering_policy": value(&c.tiering_policy),
                        "cooling_period": c.cooling_period.map(|d| d.to_string()),
                        "cooling_seconds": c.cooling().as_secs(),
                        "retrieval_policy": value(&c.retrieval_policy),
                        "backend": c.backend,
                        "compression": value(&c.compression),
                        "upload_tier": c.upload_tier,
                    }),
                )
            })
            .collect();
        let backends: serde_json::Map<_, _> = config
            .backends
            .iter()
            .map(|(n, b)| (n.clone(), json!({ "kind": b.kind() })))
            .collect();
        let out = json!({
            "classes": classes,
            "backends": backends,
            "warnings": config.warnings(),
            "notes": config.notes,
        });
        return format!("{out:#}\n");
    }
    let mut s = format!(
        "{:<16} {:<14} {:>10} {:<10} {:<12} {:<8}\n",
        "CLASS", "TIERING", "COOLING", "RETRIEVAL", "BACKEND", "COMPRESS"
    );
    for (name, c) in &config.classes {
        s += &format!(
            "{:<16} {:<14} {:>10} {:<10} {:<12} {:<8}\n",
            name,
            value(&c.tiering_policy).as_str().unwrap_or("?"),
            c.cooling_period
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            value(&c.retrieval_policy).as_str().unwrap_or("?"),
            c.backend.as_deref().unwrap_or("-"),
            value(&c.compression).as_str().unwrap_or("?"),
        );
    }
    for (name, b) in &config.backends {
        s += &format!("backend {name}: {}\n", b.kind());
    }
    for w in config.warnings() {
        s += &format!("warning: {w}\n");
    }
    for n in &config.notes {
        s += &format!("skipped: {n}\n");
    }
    s
}

/// The configured name of a small configuration enum.
fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The configured name of a small configuration enum, as text.
pub fn name_of<T: serde::Serialize>(v: &T) -> String {
    value(v).as_str().unwrap_or_default().to_string()
}
