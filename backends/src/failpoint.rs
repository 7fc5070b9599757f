//! Named points for the crash-safety tests (after TiKV's `fail_point!`),
//! here so that the backends (a kill mid-upload) and the daemon crate share
//! one set:
//! `TIERD_FAILPOINTS=name[:N][:pause=MS],...` makes the process abort, as a
//! `kill -9` would, the N-th time (default the first) it reaches `name`; with
//! `pause=MS` it sleeps there instead (a slow upload, for shutdown tests).
//! Unset, each check is one relaxed atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

struct Point {
    at: u64,
    pause: Option<Duration>,
    seen: AtomicU64,
}

fn armed() -> &'static HashMap<String, Point> {
    static ARMED: OnceLock<HashMap<String, Point>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var("TIERD_FAILPOINTS").unwrap_or_default();
        spec.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let mut parts = s.split(':');
                let name = parts.next().unwrap_or_default().to_string();
                let mut p = Point {
                    at: 1,
                    pause: None,
                    seen: AtomicU64::new(0),
                };
                for part in parts {
                    match part.strip_prefix("pause=") {
                        Some(ms) => p.pause = ms.parse().ok().map(Duration::from_millis),
                        None => p.at = part.parse().unwrap_or(1),
                    }
                }
                (name, p)
            })
            .collect()
    })
}

/// Aborts (or pauses) here if `name` is armed and its count is reached.
pub fn hit(name: &str) {
    let points = armed();
    if points.is_empty() {
        return;
    }
    if let Some(p) = points.get(name) {
        if p.seen.fetch_add(1, Ordering::SeqCst) + 1 == p.at {
            match p.pause {
                Some(d) => {
                    eprintln!("failpoint {name}: pausing {} ms", d.as_millis());
                    // A paused failpoint holds this very thread, as the
                    // crash tests need; it is off unless a test sets it.
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(d);
                }
                None => {
                    eprintln!("failpoint {name}: aborting");
                    std::process::abort();
                }
            }
        }
    }
}
