//! The `tierd` command line: `serve` runs the daemon; every other command is a
//! client of the admin API, printing tables for people or JSON for scripts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use policy::units::{format_size, parse_size};

mod backup;
pub mod simulate;
mod snapshot;

pub use backup::{BackupCommand, RecoverCommand, RestoreArgs};
pub use snapshot::SnapshotCommand;

use crate::error::ErrorKind;

#[derive(Debug, Parser)]
#[command(
    name = "tierd",
    version,
    about = "Data tiering for block volumes served over NBD"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (embedded defaults without --config).
    Serve {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file (with the StorageClass manifests it
    /// names) and print the classes it defines; exit 2 if it is invalid.
    Check {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay a block trace through tiering policies in simulated time and
    /// report what each would do and cost, beside the offline optimum.
    Simulate(simulate::SimulateArgs),
    /// Create, list, show, grow and delete volumes.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take, list and delete a volume's snapshots (read-only NBD exports
    /// named VOLUME@SNAPSHOT).
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Back volumes up to their bucket, list and delete backups (restore
    /// with `tierd volume restore`).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rebuild volumes from a bucket's objects alone (`recover scan`).
    Recover {
        #[command(subcommand)]
        command: RecoverCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a policy pass on a volume now (tier its cold extents).
    Tier {
        volume: String,
        /// Wait for the pass and print its report.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Bring every tiered extent of a volume back to the local tier.
    Promote {
        volume: String,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete objects no extent refers to any more.
    Gc {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask the daemon to reload its configuration file.
    Reload {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the heat of a volume's extents.
    Heat {
        volume: String,
        /// How many extents to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// List the coldest extents instead of the hottest.
        #[arg(long)]
        coldest: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        name: String,
        /// Size, such as 10GiB.
        #[arg(long, value_parser = parse_size_arg)]
        size: u64,
        /// Storage class (tiering policy).
        #[arg(long, default_value = "default")]
        class: String,
        /// Extent size: a power of two from 1MiB to 64MiB (default 4MiB).
        #[arg(long, value_parser = parse_size_arg)]
        extent_size: Option<u64>,
    },
    /// List volumes.
    List,
    /// Show one volume.
    Show { name: String },
    /// Grow a volume (shrinking is refused).
    Grow {
        name: String,
        #[arg(long, value_parser = parse_size_arg)]
        size: u64,
    },
    /// Change a volume's storage class.
    SetClass { name: String, class: String },
    /// Delete a volume, with its snapshots, and free its space.
    Delete {
        name: String,
        /// Delete even while NBD clients are connected (they are cut off).
        #[arg(long)]
        force: bool,
        /// Delete it even though clones were made from its snapshots: the
        /// clones keep the data they share with it.
        #[arg(long)]
        keep_clones: bool,
    },
    /// Make a writable volume from a snapshot at once, sharing its data.
    Clone {
        /// VOLUME@SNAPSHOT
        source: String,
        /// The new volume's name.
        name: String,
        /// The new volume's storage class (default: the origin's).
        #[arg(long)]
        class: Option<String>,
    },
    /// Make a volume from a backup in a bucket (any node, empty data
    /// directory or not): servable at once, data fetched on read. Without
    /// --as it takes the volume over: the node that had it is fenced.
    Restore(RestoreArgs),
    /// Roll a volume back to one of its snapshots.
    Revert {
        name: String,
        snapshot: String,
        /// Revert even while NBD clients are connected (they then read the
        /// reverted data).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Admin API of the daemon.
    #[arg(
        long,
        env = "TIERD_ENDPOINT",
        default_value = "http://127.0.0.1:9464",
        global = true
    )]
    pub endpoint: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// A file holding the admin API's bearer token (server.admin_token_file).
    #[arg(long, env = "TIERD_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// A failed client command: the message to print, and the kind of failure
/// (from the API's error body when the daemon answered), which gives the
/// exit code.
#[derive(Debug)]
pub struct ClientError(pub String, pub ErrorKind);

impl ClientError {
    fn new(message: String) -> Self {
        ClientError(message, ErrorKind::Internal)
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        let token = match &args.token_file {
            Some(path) => Some(
                crate::api::read_token(path).map_err(|e| ClientError(e.to_string(), e.kind()))?,
            ),
            None => None,
        };
        Ok(Self {
            http: reqwest::Client::new(),
            base: args.endpoint.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            ClientError(format!(
                "cannot reach tierd at {}: {e} (is `tierd serve` running? set --endpoint or TIERD_ENDPOINT)",
                self.base
            ), ErrorKind::Unavailable)
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::new(format!("reading the answer from {url}: {e}")))?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .map_err(|e| ClientError::new(format!("bad JSON from {url}: {e}")));
        }
        let body = serde_json::from_str::<Value>(&text).ok();
        let kind = body
            .as_ref()
            .and_then(|v| v["error"]["kind"].as_str())
            .and_then(ErrorKind::from_name)
            .unwrap_or(ErrorKind::Internal);
        let msg = body
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(ClientError(
            format!("{msg} (HTTP {})", status.as_u16()),
            kind,
        ))
    }
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub(crate) fn size_of(v: &Value) -> String {
    v.as_u64().map(format_size).unwrap_or_else(|| "-".into())
}

pub(crate) fn print_volume(v: &Value) {
    for (k, label) in [
        ("name", "name"),
        ("class", "class"),
        ("size", "size"),
        ("extent_size", "extent size"),
        ("extents", "extents"),
        ("extents_local", "  local"),
        ("extents_remote", "  remote"),
        ("extents_zero", "  zero"),
        ("extents_overlay", "  overlay"),
        ("bytes_local", "local"),
        ("bytes_remote", "remote"),
        ("bytes_inactive", "inactive"),
        ("bytes_fetched", "fetched"),
        ("rehydrations", "rehydrated"),
        ("integrity_errors", "integrity errors"),
        ("connections", "connections"),
        ("uid", "uid"),
        ("generation", "generation"),
        ("fenced", "fenced"),
    ] {
        if v[k].is_null() {
            continue;
        }
        let val = match k {
            "size" | "extent_size" | "bytes_local" | "bytes_remote" | "bytes_inactive"
            | "bytes_fetched" => size_of(&v[k]),
            _ => match &v[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        };
        println!("{label:<17} {val}");
    }
    if let Some(sp) = v["space"].as_object() {
        println!("held by volume    {}", size_of(&sp["bytes_owned"]));
        println!("shared            {}", size_of(&sp["bytes_shared"]));
        for s in sp["snapshots"].as_array().cloned().unwrap_or_default() {
            println!(
                "  snapshot {:<8} {} only it holds",
                s[0].as_str().unwrap_or("?"),
                size_of(&s[1])
            );
        }
    }
    print_cooling(&v["cooling"]);
    if let Some(c) = v["cost"].as_object() {
        let usd = |k: &str| c.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        println!(
            "cost/month        ${:.4} now, ${:.4} all local ({} prices)",
            usd("now"),
            usd("all_local"),
            c.get("price_tier").and_then(Value::as_str).unwrap_or("?")
        );
    }
    for s in v["status"].as_array().cloned().unwrap_or_default() {
        println!("status            {}", s.as_str().unwrap_or(""));
    }
}

/// The cooling lines of `volume show`: the period now and what it rests on.
fn print_cooling(c: &Value) {
    if c.is_null() {
        return;
    }
    let dur = |v: &Value| {
        v.as_u64()
            .map(|ms| policy::units::format_duration_approx(std::time::Duration::from_millis(ms)))
            .unwrap_or_else(|| "-".into())
    };
    let bands: Vec<String> = c["band_cooling_ms"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(dur)
        .collect();
    println!(
        "cooling           {} ({}; break-even {}; {} gaps seen)",
        dur(&c["cooling_ms"]),
        c["mode"].as_str().unwrap_or("?"),
        dur(&c["break_even_ms"]),
        c["gaps_observed"]
    );
    if c["mode"] == "auto" {
        println!("  by heat band    {}", bands.join(" / "));
        println!(
            "  thrash          {} back within the window, {} extents backed off",
            c["thrash"], c["extents_backed_off"]
        );
        if c["latency_factor"].as_u64().unwrap_or(1) > 1 {
            println!("  latency guard   x{}", c["latency_factor"]);
        }
    }
    if let Some(f) = c["cold_read_fraction"].as_f64() {
        println!("  cold reads      {:.1}% in the last hour", f * 100.0);
    }
    if !c["rehydrate_budget_left"].is_null() {
        println!(
            "  rehydration     {} left today, {} refused",
            size_of(&c["rehydrate_budget_left"]),
            c["rehydrations_refused"]
        );
    }
}

/// One line of progress: `tier    [##########          ]     12/24 extents`.
pub fn progress_bar(what: &str, done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    format!(
        "{what:<7} [{}{}] {done:>6}/{total} extents",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize)
    )
}

/// Prints a pass report: what it did, and why it stopped early or did
/// nothing when it did.
fn print_report(v: &Value) {
    let kind = v["kind"].as_str().unwrap_or("pass");
    if let Some(held) = v["held"].as_str() {
        if v["candidates"].as_u64().unwrap_or(0) == 0 {
            println!(
                "{kind} pass of {}: nothing done: {held}",
                v["volume"].as_str().unwrap_or("?")
            );
            return;
        }
    }
    println!(
        "{kind} pass of {}: {} candidates, {} tiered, {} zero, {} rehydrated, {} raced with writes, {} failed, {} uploaded in {:.1}s",
        v["volume"].as_str().unwrap_or("?"),
        v["candidates"],
        v["tiered"],
        v["zero"],
        v["rehydrated"],
        v["raced"],
        v["failed"],
        size_of(&v["bytes_uploaded"]),
        v["seconds"].as_f64().unwrap_or(0.0)
    );
    for e in v["errors"].as_array().cloned().unwrap_or_default() {
        println!("  error: {}", e.as_str().unwrap_or(""));
    }
    if let Some(why) = v["stopped"].as_str() {
        println!("  stopped early: {why}");
    }
}

/// A pass that failed for some extents, or stopped before trying them all,
/// is an error for the CLI's exit code (after its report is printed).
fn pass_outcome(v: &Value) -> Result<(), ClientError> {
    let failed = v["failed"].as_u64().unwrap_or(0);
    let volume = v["volume"].as_str().unwrap_or("?");
    let kind = v["kind"].as_str().unwrap_or("pass");
    match (failed, v["stopped"].as_str()) {
        (0, None) => Ok(()),
        (n, None) => Err(ClientError(
            format!("{kind} pass of {volume}: {n} extent(s) failed"),
            ErrorKind::Unavailable,
        )),
        (n, Some(why)) => Err(ClientError(
            format!("{kind} pass of {volume}: {n} extent(s) failed, stopped early: {why}"),
            ErrorKind::Unavailable,
        )),
    }
}

pub(crate) fn age(ms: u64) -> String {
    let now = clock::Clock::now_ms(&clock::SystemClock);
    if ms == 0 {
        return "never".into();
    }
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        7200..=172_799 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Runs a client command.
pub async fn run_client(command: Command) -> Result<(), ClientError> {
    use reqwest::Method;
    let command_kind = match &command {
        Command::Promote { .. } => "promote",
        _ => "other",
    };
    match command {
        Command::Serve { .. } | Command::Check { .. } | Command::Simulate(_) => {
            Err(ClientError::new("not a client command".into()))
        }
        Command::Volume { command, client } => {
            let c = Client::new(&client)?;
            match command {
                VolumeCommand::Create {
                    name,
                    size,
                    class,
                    extent_size,
                } => {
                    let mut body = serde_json::json!({"name": name, "size": size, "class": class});
                    if let Some(e) = extent_size {
                        body["extent_size"] = e.into();
                    }
                    let v = c.call(Method::POST, "/v1/volumes", Some(body)).await?;
                    if client.json {
                        print_json(&v)
                    } else {
                        println!("created volume {name}");
                        print_volume(&v);
                    }
                }
                VolumeCommand::List => {
                    let v = c.call(Method::GET, "/v1/volumes", None).await?;
                    if client.json {
                        print_json(&v);
                    } else {
                        let rows = v["volumes"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|v| {
                                vec![
                                    v["name"].as_str().unwrap_or("").to_string(),
                                    size_of(&v["size"]),
                                    v["class"].as_str().unwrap_or("").to_string(),
                                    size_of(&v["extent_size"]),
                                    size_of(&v["bytes_local"]),
                                    size_of(&v["bytes_remote"]),
                                    v["connections"].to_string(),
                                ]
                            })
                            .collect();
                        table(
                            &[
                                "NAME", "SIZE", "CLASS", "EXTENT", "LOCAL", "REMOTE", "CLIENTS",
                            ],
                            rows,
                        );
                    }
                }
                VolumeCommand::Show { name } => {
                    let v = c
                        .call(Method::GET, &format!("/v1/volumes/{name}"), None)
                        .await?;
                    if client.json {
                        print_json(&v)
                    } else {
                        print_volume(&v)
                    }
                }
                VolumeCommand::Grow { name, size } => {
                    let v = c
                        .call(
                            Method::PATCH,
                            &format!("/v1/volumes/{name}"),
                            Some(serde_json::json!({"size": size})),
                        )
                        .await?;
                    if client.json {
                        print_json(&v)
                    } else {
                        print_volume(&v)
                    }
                }
                VolumeCommand::SetClass { name, class } => {
                    let v = c
                        .call(
                            Method::PATCH,
                            &format!("/v1/volumes/{name}"),
                            Some(serde_json::json!({"class": class})),
                        )
                        .await?;
                    if client.json {
                        print_json(&v)
                    } else {
                        print_volume(&v)
                    }
                }
                VolumeCommand::Clone {
                    source,
                    name,
                    class,
                } => snapshot::clone(&c, client.json, &source, &name, class).await?,
                VolumeCommand::Revert {
                    name,
                    snapshot,
                    force,
                } => snapshot::revert(&c, client.json, &name, &snapshot, force).await?,
                VolumeCommand::Restore(args) => backup::restore(&c, client.json, args).await?,
                VolumeCommand::Delete {
                    name,
                    force,
                    keep_clones,
                } => {
                    c.call(
                        Method::DELETE,
                        &format!("/v1/volumes/{name}?force={force}&keep_clones={keep_clones}"),
                        None,
                    )
                    .await?;
                    if client.json {
                        print_json(&serde_json::json!({"deleted": name}))
                    } else {
                        println!("deleted volume {name}");
                    }
                }
            }
            Ok(())
        }
        Command::Snapshot { command, client } => {
            let c = Client::new(&client)?;
            snapshot::run(&c, client.json, command).await
        }
        Command::Backup { command, client } => {
            let c = Client::new(&client)?;
            backup::run(&c, client.json, command).await
        }
        Command::Recover { command, client } => {
            let c = Client::new(&client)?;
            backup::recover(&c, client.json, command).await
        }
        Command::Tier {
            volume,
            wait,
            client,
        }
        | Command::Promote {
            volume,
            wait,
            client,
        } => {
            let what = if matches!(command_kind, "promote") {
                "promote"
            } else {
                "tier"
            };
            let c = Client::new(&client)?;
            let path = format!("/v1/volumes/{volume}/{what}?wait={wait}");
            if !wait {
                let v = c.call(Method::POST, &path, None).await?;
                if client.json {
                    print_json(&v);
                } else {
                    println!("{what} pass of {volume} started; `tierd volume show {volume}` reports its outcome");
                }
                return Ok(());
            }
            // Wait for the pass while drawing its progress from the volume's status.
            let show_bar = !client.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let pass = c.call(Method::POST, &path, None);
            tokio::pin!(pass);
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
            let v = loop {
                tokio::select! {
                    r = &mut pass => break r?,
                    _ = tick.tick(), if show_bar => {
                        if let Ok(info) = c.call(Method::GET, &format!("/v1/volumes/{volume}"), None).await {
                            if let (Some(done), Some(total)) = (info["pass_progress"]["done"].as_u64(), info["pass_progress"]["total"].as_u64()) {
                                eprint!("\r{}", progress_bar(what, done, total));
                            }
                        }
                    }
                }
            };
            if show_bar {
                eprint!("\r{:79}\r", "");
            }
            if client.json {
                print_json(&v);
            } else {
                print_report(&v);
            }
            pass_outcome(&v)
        }
        Command::Gc { client } => {
            let v = Client::new(&client)?
                .call(Method::POST, "/v1/gc", None)
                .await?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "listed {} objects: {} referenced, {} too young, {} deleted, {} not ours",
                    v["listed"], v["referenced"], v["young"], v["deleted"], v["foreign"]
                );
            }
            Ok(())
        }
        Command::Reload { client } => {
            Client::new(&client)?
                .call(Method::POST, "/v1/config/reload", None)
                .await?;
            println!("configuration reloaded");
            Ok(())
        }
        Command::Heat {
            volume,
            top,
            coldest,
            client,
        } => {
            let c = Client::new(&client)?;
            let order = if coldest { "coldest" } else { "hottest" };
            let v = c
                .call(
                    Method::GET,
                    &format!("/v1/volumes/{volume}/heat?top={top}&order={order}"),
                    None,
                )
                .await?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            println!(
                "volume {}: {} of {} extents accessed (extent size {})",
                volume,
                v["extents_tracked"],
                v["extents_total"],
                size_of(&v["extent_size"])
            );
            let rows = v["extents"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    let seq = e["sequential_ratio"]
                        .as_f64()
                        .map(|r| format!("{:.0}%", r * 100.0))
                        .unwrap_or_else(|| "-".into());
                    vec![
                        e["extent"].to_string(),
                        format!("{:.3}", e["temperature"].as_f64().unwrap_or(0.0)),
                        e["reads"].to_string(),
                        e["writes"].to_string(),
                        size_of(&e["read_bytes"]),
                        size_of(&e["write_bytes"]),
                        seq,
                        age(e["last_access_ms"].as_u64().unwrap_or(0)),
                    ]
                })
                .collect();
            table(
                &[
                    "EXTENT",
                    "TEMP",
                    "READS",
                    "WRITES",
                    "READ",
                    "WRITTEN",
                    "SEQ",
                    "LAST ACCESS",
                ],
                rows,
            );
            let hist: Vec<String> = v["histogram"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|b| match b["le"].as_f64() {
                    Some(le) => format!("≤{le}: {}", b["extents"]),
                    None => format!(">: {}", b["extents"]),
                })
                .collect();
            println!("temperature histogram  {}", hist.join("  "));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_bar_fills_in_proportion() {
        assert_eq!(
            super::progress_bar("tier", 0, 10),
            format!("tier    [{}]      0/10 extents", " ".repeat(30))
        );
        assert!(super::progress_bar("tier", 5, 10).contains(&format!(
            "[{}{}]",
            "#".repeat(15),
            " ".repeat(15)
        )));
        assert!(super::progress_bar("promote", 3, 0).contains(&"#".repeat(30)));
    }
}
