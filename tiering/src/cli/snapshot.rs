//! `tierd snapshot ...`, `tierd volume clone` and `tierd volume revert`:
//! clients of the admin API's snapshot routes.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::{age, print_json, print_volume, size_of, table, Client, ClientError};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot: metadata only, crash-consistent (every write
    /// acknowledged before it returns is in it, nothing after).
    Create { volume: String, name: String },
    /// List a volume's snapshots, oldest first.
    List { volume: String },
    /// Delete a snapshot and free the data only it held.
    Delete { volume: String, name: String },
}

pub(super) async fn run(
    c: &Client,
    json: bool,
    command: SnapshotCommand,
) -> Result<(), ClientError> {
    match command {
        SnapshotCommand::Create { volume, name } => {
            let v = c
                .call(
                    Method::POST,
                    &format!("/v1/volumes/{volume}/snapshots"),
                    Some(json!({ "name": name })),
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "created snapshot {name} of {volume}; read-only export {}",
                    v["export"].as_str().unwrap_or("?")
                );
            }
        }
        SnapshotCommand::List { volume } => {
            let v = c
                .call(
                    Method::GET,
                    &format!("/v1/volumes/{volume}/snapshots"),
                    None,
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                let rows = v["snapshots"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|s| {
                        vec![
                            s["name"].as_str().unwrap_or("").to_string(),
                            age(s["created_ms"].as_u64().unwrap_or(0)),
                            size_of(&s["size"]),
                            size_of(&s["bytes_exclusive"]),
                            s["export"].as_str().unwrap_or("").to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["NAME", "CREATED", "SIZE", "ONLY IT HOLDS", "EXPORT"],
                    rows,
                );
            }
        }
        SnapshotCommand::Delete { volume, name } => {
            c.call(
                Method::DELETE,
                &format!("/v1/volumes/{volume}/snapshots/{name}"),
                None,
            )
            .await?;
            if json {
                print_json(&json!({ "deleted": format!("{volume}@{name}") }));
            } else {
                println!("deleted snapshot {name} of {volume}");
            }
        }
    }
    Ok(())
}

pub(super) async fn clone(
    c: &Client,
    json: bool,
    source: &str,
    name: &str,
    class: Option<String>,
) -> Result<(), ClientError> {
    let Some((volume, snapshot)) = source.split_once('@') else {
        return Err(ClientError(
            format!("clone source {source:?} is not VOLUME@SNAPSHOT"),
            crate::error::ErrorKind::InvalidInput,
        ));
    };
    let mut body = json!({ "name": name });
    if let Some(class) = class {
        body["class"] = Value::String(class);
    }
    let v = c
        .call(
            Method::POST,
            &format!("/v1/volumes/{volume}/snapshots/{snapshot}/clone"),
            Some(body),
        )
        .await?;
    if json {
        print_json(&v);
    } else {
        println!("created volume {name}, a clone of {source}");
        print_volume(&v);
    }
    Ok(())
}

pub(super) async fn revert(
    c: &Client,
    json: bool,
    volume: &str,
    snapshot: &str,
    force: bool,
) -> Result<(), ClientError> {
    let v = c
        .call(
            Method::POST,
            &format!("/v1/volumes/{volume}/revert"),
            Some(json!({ "snapshot": snapshot, "force": force })),
        )
        .await?;
    if json {
        print_json(&v);
    } else {
        println!("reverted {volume} to snapshot {snapshot}");
    }
    Ok(())
}
