//! `tierd serve`: opens the data directory, starts the NBD listeners, the
//! admin API and the background loops, and shuts them down in order on
//! SIGTERM/SIGINT.
//!
//! Every background loop is its own module with `run(deps, cancel)`, spawned
//! through the engine's [`crate::tasks::Tasks`], so one token stops them all
//! and shutdown waits for exactly what still runs. Shutdown order keeps data
//! safe: stop accepting, let connections finish their in-flight requests,
//! let passes finish the extents they are moving, flush heat, fdatasync
//! every volume, then exit. A second signal skips the waits (an upload not
//! yet committed is garbage; the local copy still rules).

pub mod backup_schedule;
mod gc_loop;
mod heat_flush;
mod policy_scan;
pub mod snapshot_schedule;
mod trace_flush;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use heatmap::{HeatConfig, HeatMap};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::api::state::build_backends;
use crate::api::{self, AppState};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Result, TierError};
use crate::nbd::NbdServer;
use crate::tasks::Tasks;
use crate::volume::Volumes;

/// How long connections, and then passes, get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn heat_config(c: &Config) -> HeatConfig {
    HeatConfig {
        half_life: c.heat.half_life.0,
        enabled: c.heat.enabled,
    }
}

fn startup(context: &str, e: impl std::fmt::Display) -> TierError {
    TierError::Startup {
        context: context.into(),
        source: std::io::Error::other(e.to_string()),
    }
}

pub async fn serve(config: Config, config_path: Option<std::path::PathBuf>) -> Result<()> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| TierError::Startup {
        context: format!("cannot create data directory {}", data_dir.display()),
        source,
    })?;
    // Every layer keeps its file open: take all the descriptors allowed.
    match crate::fd_limit::raise() {
        Ok((before, now)) if now > before => {
            tracing::info!(before, now, "raised the open-file limit (RLIMIT_NOFILE)")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE)"),
    }
    let heat_cfg = heat_config(&config);
    let db = crate::db::open(&data_dir.join("db"), &heat_cfg)?;
    if config.server.clock_speed != 1.0 {
        tracing::warn!(
            speed = config.server.clock_speed,
            "the clock runs faster than real time (server.clock_speed): for tests and demos only"
        );
    }
    let clock = clock::real(config.server.clock_speed);
    let heat = Arc::new(HeatMap::new(db.clone(), clock.clone(), &heat_cfg)?);
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    for n in &config.notes {
        tracing::info!("skipped: {n}");
    }
    let admin_token = match &config.server.admin_token_file {
        Some(path) => Some(crate::api::read_token(path)?),
        None => None,
    };
    let registry = prometheus::Registry::new();
    let backend_metrics = backends::BackendMetrics::register(&registry)
        .map_err(|e| startup("cannot register metrics", e))?;
    let tier_metrics = crate::metrics::TierMetrics::register(&registry)
        .map_err(|e| startup("cannot register metrics", e))?;
    let tasks = Tasks::new(tokio::runtime::Handle::current());
    let backend_env = backends::BuildEnv::new(backend_metrics)
        .with_clock(clock.clone())
        .with_cancel(tasks.token());
    let stores = build_backends(&config, &backend_env).await?;
    let engine = Arc::new(Engine::new(
        Arc::new(config.clone()),
        stores,
        tasks.clone(),
        tier_metrics.clone(),
        clock.clone(),
    ));
    let volumes = Arc::new(Volumes::open(
        db.clone(),
        heat.clone(),
        engine.clone(),
        clock.clone(),
        &data_dir,
    )?);
    let open = volumes.open_layer_files() as u64;
    let allowed = crate::fd_limit::layer_files_allowed();
    if open * 10 >= allowed * 9 {
        tracing::warn!(
            layer_files = open,
            allowed,
            "the volumes' layer files are near the open-file limit: new volumes, snapshots \
             and clones will be refused; raise RLIMIT_NOFILE"
        );
    }

    let shutdown = tasks.token();
    let budgets = crate::nbd::budget::Budgets::new(
        config.server.nbd_connection_buffer.bytes(),
        config.server.nbd_total_buffer.bytes(),
        engine.metrics.nbd_buffered.clone(),
    );
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            crate::nbd::tls::acceptor(cert, key, config.server.tls_client_ca_file.as_deref())
                .map_err(|e| startup("cannot set up NBD over TLS", e))?,
        ),
        _ => None,
    };
    let nbd = NbdServer::new(volumes.clone(), shutdown.clone(), budgets, tls);
    let mut listeners = Vec::new();
    if !config.server.nbd_listen.is_empty() {
        let addr = &config.server.nbd_listen;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| TierError::Bind {
                what: "listen for NBD",
                addr: addr.clone(),
                source,
            })?;
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "NBD listening on TCP");
        listeners.push(tokio::spawn(nbd.clone().serve_tcp(l)));
    }
    if let Some(path) = &config.server.nbd_socket {
        if path.exists() {
            // A socket left by an earlier run that did not exit cleanly.
            let _ = std::fs::remove_file(path);
        }
        let l = UnixListener::bind(path).map_err(|source| TierError::Bind {
            what: "listen for NBD",
            addr: path.display().to_string(),
            source,
        })?;
        tracing::info!(path = %path.display(), "NBD listening on unix socket");
        listeners.push(tokio::spawn(nbd.clone().serve_unix(l)));
    }

    let state = Arc::new(AppState {
        volumes: volumes.clone(),
        heat: heat.clone(),
        engine: engine.clone(),
        config_path,
        backend_env,
        registry: registry.clone(),
        admin_token,
        ready: Default::default(),
    });
    let http = TcpListener::bind(&config.server.http_listen)
        .await
        .map_err(|source| TierError::Bind {
            what: "listen for HTTP",
            addr: config.server.http_listen.clone(),
            source,
        })?;
    tracing::info!(addr = %config.server.http_listen, "admin API listening");
    let app = api::router(state.clone());
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        let r = axum::serve(http, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin API stopped");
        }
    });

    tasks.spawn(heat_flush::run(
        heat_flush::Deps {
            heat: heat.clone(),
            every: config.heat.flush_interval.0,
            duration: tier_metrics.heat_flush_duration.clone(),
        },
        shutdown.clone(),
    ));
    tasks.spawn(trace_flush::run(
        trace_flush::Deps {
            volumes: volumes.clone(),
            every: config.heat.flush_interval.0,
        },
        shutdown.clone(),
    ));
    tasks.spawn(policy_scan::run(
        policy_scan::Deps {
            volumes: volumes.clone(),
            engine: engine.clone(),
            data_dir: data_dir.clone(),
        },
        shutdown.clone(),
    ));
    tasks.spawn(snapshot_schedule::run(
        snapshot_schedule::Deps {
            volumes: volumes.clone(),
            engine: engine.clone(),
        },
        shutdown.clone(),
    ));
    tasks.spawn(backup_schedule::run(
        backup_schedule::Deps {
            volumes: volumes.clone(),
            engine: engine.clone(),
        },
        shutdown.clone(),
    ));
    tasks.spawn(gc_loop::run(
        gc_loop::Deps {
            volumes: volumes.clone(),
            engine: engine.clone(),
        },
        shutdown.clone(),
    ));
    let mut hup = signal(SignalKind::hangup()).map_err(|source| TierError::Startup {
        context: "cannot install SIGHUP handler".into(),
        source,
    })?;
    {
        let state = state.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        if let Err(e) = state.reload().await {
                            tracing::error!(error = %e, "SIGHUP: configuration refused; the previous one stays in force");
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
        });
    }

    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(data_dir = %data_dir.display(), volumes = volumes.list().len(), "tierd ready");

    let mut term = signal(SignalKind::terminate()).map_err(|source| TierError::Startup {
        context: "cannot install SIGTERM handler".into(),
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| TierError::Startup {
        context: "cannot install SIGINT handler".into(),
        source,
    })?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    state.ready.store(false, Ordering::SeqCst);
    tasks.cancel();

    // A second signal ends every wait below at once.
    let hurry = CancellationToken::new();
    {
        let hurry = hurry.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting now, without waiting for uploads in flight");
            hurry.cancel();
        });
    }
    for l in listeners {
        // Listeners end on the token; an error here is a listener that panicked.
        if let Err(e) = l.await {
            tracing::error!(error = %e, "NBD listener failed");
        }
    }
    let drained = tokio::select! {
        r = tokio::time::timeout(DRAIN_TIMEOUT, nbd.drained()) => r.is_ok(),
        _ = hurry.cancelled() => false,
    };
    if !drained {
        tracing::warn!("connections did not drain; stopping anyway");
    }
    // Passes, from the loop or the API, stop after the extents they are
    // moving now (each safe to stop between); read-ahead fetches end.
    tokio::select! {
        r = tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait()) => {
            if r.is_err() {
                tracing::warn!(running = tasks.running(), "a pass did not finish its uploads in time; stopping anyway");
            }
        }
        _ = hurry.cancelled() => {}
    }
    if let Err(e) = http_task.await {
        tracing::error!(error = %e, "admin API task failed");
    }
    let (heat, vols) = (heat.clone(), volumes.clone());
    let finish = tokio::task::spawn_blocking(move || -> Result<usize> {
        let n = heat.flush()?;
        vols.sync_all()?;
        Ok(n)
    })
    .await;
    match finish {
        Ok(Ok(n)) => tracing::info!(
            heat_extents_flushed = n,
            "heat flushed and volumes synced; bye"
        ),
        Ok(Err(e)) => return Err(e),
        Err(e) => tracing::error!(error = %e, "final flush task failed"),
    }
    db.flush().map_err(|source| TierError::Db {
        op: "flush memtables",
        source: source.into(),
    })?;
    Ok(())
}
