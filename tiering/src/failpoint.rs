//! Named crash points for the crash-safety tests (after TiKV's `fail_point!`):
//! `TIERD_FAILPOINTS=name[:N],...` makes the process abort, as a `kill -9`
//! would, the N-th time (default the first) it reaches `name`. Unset, each
//! check is one relaxed atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

fn armed() -> &'static HashMap<String, (u64, AtomicU64)> {
    static ARMED: OnceLock<HashMap<String, (u64, AtomicU64)>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var("TIERD_FAILPOINTS").unwrap_or_default();
        spec.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, n) = s.split_once(':').unwrap_or((s, "1"));
                (
                    name.to_string(),
                    (n.parse().unwrap_or(1), AtomicU64::new(0)),
                )
            })
            .collect()
    })
}

/// Aborts the process here if `name` is armed and its count is reached.
pub fn hit(name: &str) {
    let points = armed();
    if points.is_empty() {
        return;
    }
    if let Some((at, seen)) = points.get(name) {
        if seen.fetch_add(1, Ordering::SeqCst) + 1 == *at {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}
