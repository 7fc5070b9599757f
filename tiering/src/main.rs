//! The `tierd` binary: parses the command line, loads configuration, sets up
//! logging and runs either the daemon or a client command.

use std::process::ExitCode;

use clap::Parser;
use tiering::cli::{run_client, Cli, Command};
use tiering::config::{Config, LogFormat, LogSettings};
use tiering::error::ErrorKind;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let cfg = match &config {
                Some(path) => match Config::load(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(ErrorKind::InvalidConfig.exit_code());
                    }
                },
                None => Config::embedded(),
            };
            init_logging(&cfg.log);
            match run_serve(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config, json } => match Config::load(&config) {
            Ok(c) => {
                let problems = tiering::check::local_problems(&c);
                if !problems.is_empty() {
                    for p in problems {
                        eprintln!("error: {}: {p}", config.display());
                    }
                    return ExitCode::from(ErrorKind::InvalidConfig.exit_code());
                }
                print!("{}", tiering::check::describe(&c, json));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(ErrorKind::InvalidConfig.exit_code())
            }
        },
        Command::Simulate(args) => match tiering::cli::simulate::simulate(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.kind().exit_code())
            }
        },
        command => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run_client(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", e.0);
                    ExitCode::from(e.1.exit_code())
                }
            }
        }
    }
}

/// Logs to stderr, as text or JSON lines; `TIERD_LOG` overrides the level.
fn init_logging(log: &LogSettings) {
    let filter = std::env::var("TIERD_LOG")
        .ok()
        .and_then(|v| tiering::config::log_filter(&v))
        .or_else(|| tiering::config::log_filter(log.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => fmt.json().flatten_event(true).init(),
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn run_serve(cfg: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(tiering::daemon::serve(cfg, path));
    // Everything durable is flushed by now; a blocking task still inside an
    // upload (after a second signal) is dropped, as a crash would, safely.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    r?;
    Ok(())
}
