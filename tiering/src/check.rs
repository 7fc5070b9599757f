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
                        "scans_warm": c.scans_warm(config.heat.scans_warm),
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

/// Why the data directory or a local-directory backend's root could not be
/// used, one line each (nothing is created to find out): a path that is not
/// a directory, or a directory this process cannot write, or cannot create.
pub fn local_problems(config: &Config) -> Vec<String> {
    let data_dir = &config.server.data_dir;
    let mut dirs = vec![("server.data_dir".to_string(), data_dir.clone())];
    for (name, b) in &config.backends {
        if let backends::BackendConfig::Fs(fs) = b {
            let root = fs.root.clone().unwrap_or_else(|| data_dir.join("objects"));
            dirs.push((format!("backends.{name}.root"), root));
        }
    }
    dirs.into_iter()
        .filter_map(|(what, dir)| {
            usable_dir(&dir)
                .err()
                .map(|why| format!("{what}: {} cannot be used: {why}", dir.display()))
        })
        .collect()
}

/// Whether `dir` is, or could be made as, a directory this process writes.
fn usable_dir(dir: &std::path::Path) -> Result<(), String> {
    let mut at = dir.to_path_buf();
    loop {
        match std::fs::metadata(&at) {
            Ok(m) if !m.is_dir() => {
                return Err(if at == dir {
                    "it is not a directory".into()
                } else {
                    format!("{} is not a directory", at.display())
                });
            }
            Ok(_) => {
                return writable(&at).map_err(|e| {
                    if at == dir {
                        format!("it is not writable ({e})")
                    } else {
                        format!(
                            "it does not exist and {} is not writable ({e})",
                            at.display()
                        )
                    }
                })
            }
            // Missing, or a path through a file (ENOTDIR): look further up.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p.to_path_buf(),
                    _ if at != std::path::Path::new(".") => at = std::path::PathBuf::from("."),
                    _ => return Err("the working directory is gone".into()),
                }
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access reads the NUL-terminated path it is given.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The configured name of a small configuration enum.
fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The configured name of a small configuration enum, as text.
pub fn name_of<T: serde::Serialize>(v: &T) -> String {
    value(v).as_str().unwrap_or_default().to_string()
}
