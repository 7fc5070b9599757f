//! `tierd backup ...` and `tierd volume restore`: clients of the admin
//! API's backup and restore routes.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::{age, print_json, size_of, table, Client, ClientError};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back a volume up to its class's backend: a snapshot whose data and
    /// metadata all go to the bucket (incremental: only what changed since
    /// the last backup is uploaded).
    Create { volume: String },
    /// List the backups a backend holds (every configured backend by
    /// default), read from the bucket alone.
    List {
        /// Only this volume's.
        #[arg(long)]
        volume: Option<String>,
        #[arg(long)]
        backend: Option<String>,
    },
    /// Delete a backup from the bucket (its manifest; objects only it named
    /// are then collected by the node that owns the volume).
    Delete {
        volume: String,
        id: String,
        #[arg(long)]
        backend: Option<String>,
    },
}

/// `tierd volume restore`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backend holding the backups.
    #[arg(long)]
    pub backend: String,
    /// The volume to restore (its name in the bucket).
    #[arg(long, required_unless_present = "all")]
    pub volume: Option<String>,
    /// Which backup (default: the newest).
    #[arg(long)]
    pub backup: Option<String>,
    /// Restore as a new volume of this name: a copy, which does not take
    /// the original over.
    #[arg(long = "as")]
    pub as_name: Option<String>,
    /// Restore the newest backup of every volume the backend holds.
    #[arg(long, conflicts_with_all = ["volume", "backup", "as_name"])]
    pub all: bool,
    /// Put it in this class instead of the backup's.
    #[arg(long)]
    pub class: Option<String>,
}

pub(super) async fn run(c: &Client, json: bool, command: BackupCommand) -> Result<(), ClientError> {
    match command {
        BackupCommand::Create { volume } => {
            let v = c
                .call(Method::POST, &format!("/v1/volumes/{volume}/backups"), None)
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "backup {} of {volume} committed to backend {}: {} uploaded ({} objects, {} reused)",
                    v["id"].as_str().unwrap_or("?"),
                    v["backend"].as_str().unwrap_or("?"),
                    size_of(&v["bytes_uploaded"]),
                    v["objects_uploaded"].as_u64().unwrap_or(0),
                    v["objects_reused"].as_u64().unwrap_or(0),
                );
            }
        }
        BackupCommand::List { volume, backend } => {
            let mut q = Vec::new();
            if let Some(v) = volume {
                q.push(format!("volume={v}"));
            }
            if let Some(b) = backend {
                q.push(format!("backend={b}"));
            }
            let v = c
                .call(Method::GET, &format!("/v1/backups?{}", q.join("&")), None)
                .await?;
            if json {
                print_json(&v);
            } else {
                let rows = v["backups"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|b| {
                        vec![
                            b["volume"].as_str().unwrap_or("").to_string(),
                            b["id"].as_str().unwrap_or("").to_string(),
                            age(b["created_ms"].as_u64().unwrap_or(0)),
                            size_of(&b["size"]),
                            size_of(&b["bytes_uploaded"]),
                            b["backend"].as_str().unwrap_or("").to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["VOLUME", "BACKUP", "CREATED", "SIZE", "UPLOADED", "BACKEND"],
                    rows,
                );
                for e in v["errors"].as_array().cloned().unwrap_or_default() {
                    eprintln!("unreadable: {}", e.as_str().unwrap_or(""));
                }
            }
        }
        BackupCommand::Delete {
            volume,
            id,
            backend,
        } => {
            let q = backend.map(|b| format!("?backend={b}")).unwrap_or_default();
            c.call(
                Method::DELETE,
                &format!("/v1/backups/{volume}/{id}{q}"),
                None,
            )
            .await?;
            if json {
                print_json(&json!({ "deleted": id, "volume": volume }));
            } else {
                println!("deleted backup {id} of {volume}");
            }
        }
    }
    Ok(())
}

pub(super) async fn restore(c: &Client, json: bool, a: RestoreArgs) -> Result<(), ClientError> {
    let mut body = json!({ "backend": a.backend, "all": a.all });
    for (k, v) in [
        ("volume", a.volume),
        ("backup", a.backup),
        ("as", a.as_name),
        ("class", a.class),
    ] {
        if let Some(v) = v {
            body[k] = Value::String(v);
        }
    }
    let v = c.call(Method::POST, "/v1/restore", Some(body)).await?;
    if json {
        print_json(&v);
    } else {
        for r in v["restored"].as_array().cloned().unwrap_or_default() {
            println!(
                "restored {} from backup {} ({}, {} layers, {} extents in the bucket, generation {}); servable now",
                r["volume"].as_str().unwrap_or("?"),
                r["backup"].as_str().unwrap_or("?"),
                size_of(&r["size"]),
                r["layers"].as_u64().unwrap_or(0),
                r["extents_remote"].as_u64().unwrap_or(0),
                r["generation"].as_u64().unwrap_or(0),
            );
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum RecoverCommand {
    /// Rebuild volumes from the objects in a bucket when their manifests
    /// are lost: every object says which volume, layer and extent it holds.
    Scan {
        #[arg(long)]
        backend: String,
        /// Only this volume (the name its objects carry).
        #[arg(long)]
        volume: Option<String>,
        /// Rebuild it as a copy under this name.
        #[arg(long = "as")]
        as_name: Option<String>,
        /// The class to put it in (default: "default").
        #[arg(long)]
        class: Option<String>,
    },
}

pub(super) async fn recover(
    c: &Client,
    json: bool,
    cmd: RecoverCommand,
) -> Result<(), ClientError> {
    let RecoverCommand::Scan {
        backend,
        volume,
        as_name,
        class,
    } = cmd;
    let mut body = json!({ "backend": backend });
    for (k, v) in [("volume", volume), ("as", as_name), ("class", class)] {
        if let Some(v) = v {
            body[k] = Value::String(v);
        }
    }
    let v = c.call(Method::POST, "/v1/recover/scan", Some(body)).await?;
    if json {
        print_json(&v);
    } else {
        for r in v["rebuilt"].as_array().cloned().unwrap_or_default() {
            println!(
                "rebuilt {} ({}, {} layers, {} extents from {} objects, generation {})",
                r["volume"].as_str().unwrap_or("?"),
                size_of(&r["size"]),
                r["layers"].as_u64().unwrap_or(0),
                r["extents"].as_u64().unwrap_or(0),
                r["objects_listed"].as_u64().unwrap_or(0),
                r["generation"].as_u64().unwrap_or(0),
            );
            if let Some(n) = r["note"].as_str() {
                println!("  note: {n}");
            }
            for u in r["unreadable"].as_array().cloned().unwrap_or_default() {
                println!("  skipped: {}", u.as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}
