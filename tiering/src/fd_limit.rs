//! The daemon's open-file limit. Every layer of every volume keeps its local
//! tier file open, so the soft `RLIMIT_NOFILE` bounds how many layers a node
//! can hold: it is raised to the hard limit at start, and a create, snapshot,
//! clone or restore that would need more files than the limit leaves room for
//! is refused up front (a node that reached that state could not restart).
//!
//! Owns: raising the limit and the number of layer files it allows. Keeps:
//! [`RESERVED`] descriptors free for RocksDB (its `max_open_files`), NBD and
//! API connections, logs and traces.

/// Descriptors kept for everything but layer files: RocksDB's table cache
/// (`db::MAX_OPEN_FILES`), connections, logs, traces.
pub const RESERVED: u64 = 512;

fn get() -> Option<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0).then_some(r)
}

/// Raises the soft limit to the hard limit. Returns (before, now).
pub fn raise() -> std::io::Result<(u64, u64)> {
    let Some(r) = get() else {
        return Err(std::io::Error::last_os_error());
    };
    if r.rlim_cur >= r.rlim_max {
        return Ok((r.rlim_cur, r.rlim_cur));
    }
    let raised = libc::rlimit {
        rlim_cur: r.rlim_max,
        rlim_max: r.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// The soft limit now (u64::MAX when unlimited or unknown).
pub fn soft() -> u64 {
    match get() {
        Some(r) if r.rlim_cur != libc::RLIM_INFINITY => r.rlim_cur,
        _ => u64::MAX,
    }
}

/// Layer files the limit allows.
pub fn layer_files_allowed() -> u64 {
    soft().saturating_sub(RESERVED)
}
