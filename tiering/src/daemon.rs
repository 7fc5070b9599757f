//! `tierd serve`: opens the data directory, starts the NBD listeners, the admin
//! API and the background tasks, and shuts them down in order on SIGTERM/SIGINT.
//!
//! Shutdown order keeps data safe: stop accepting, let connections finish their
//! in-flight requests, flush heat, fdatasync every volume, then exit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use heatmap::{Clock, HeatConfig, HeatMap, SystemClock};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Result, TierError};
use crate::nbd::NbdServer;
use crate::volume::Volumes;

/// How long connections get to finish in-flight requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn heat_config(c: &Config) -> HeatConfig {
    HeatConfig {
        half_life: c.heat.half_life.0,
        enabled: c.heat.enabled,
    }
}

/// Builds every configured backend. An fs backend without `root` keeps its
/// objects in `<data_dir>/objects`.
pub async fn build_backends(
    config: &Config,
    metrics: &backends::BackendMetrics,
) -> Result<BTreeMap<String, Arc<dyn backends::ObjectStore>>> {
    let mut out = BTreeMap::new();
    let default_root = config.server.data_dir.join("objects");
    for (name, b) in &config.backends {
        let store = backends::build(name, b, &default_root, metrics.clone()).await?;
        out.insert(name.clone(), store);
    }
    Ok(out)
}

/// Reloads the configuration file: on success the new classes and backends
/// apply from the next request and pass; on failure the old ones stay.
pub async fn reload(state: &AppState) -> Result<()> {
    let Some(path) = &state.config_path else {
        return Err(TierError::InvalidArgument(
            "tierd runs on its embedded defaults (no --config): there is nothing to reload".into(),
        ));
    };
    let new = Config::load(path)?;
    let old = state.engine.config();
    if new.server.data_dir != old.server.data_dir
        || new.server.nbd_listen != old.server.nbd_listen
        || new.server.http_listen != old.server.http_listen
        || new.server.nbd_socket != old.server.nbd_socket
    {
        return Err(TierError::InvalidArgument(
            "[server] settings cannot change on reload; restart tierd for those".into(),
        ));
    }
    for w in new.warnings() {
        tracing::warn!("{w}");
    }
    let stores = build_backends(&new, &state.backend_metrics).await?;
    state.engine.replace(Arc::new(new), stores);
    tracing::info!(path = %path.display(), "configuration reloaded");
    Ok(())
}

pub async fn serve(config: Config, config_path: Option<std::path::PathBuf>) -> Result<()> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| TierError::Startup {
        context: format!("cannot create data directory {}", data_dir.display()),
        source,
    })?;
    let heat_cfg = heat_config(&config);
    let db = crate::db::open(&data_dir.join("db"), &heat_cfg)?;
    let clock: Arc<dyn Clock> = if config.server.clock_speed == 1.0 {
        Arc::new(SystemClock)
    } else {
        tracing::warn!(
            speed = config.server.clock_speed,
            "the clock runs faster than real time (server.clock_speed): for tests and demos only"
        );
        Arc::new(heatmap::ScaledClock::new(config.server.clock_speed))
    };
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
    let backend_metrics =
        backends::BackendMetrics::register(&registry).map_err(|e| TierError::Startup {
            context: "cannot register metrics".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let tier_metrics =
        crate::metrics::TierMetrics::register(&registry).map_err(|e| TierError::Startup {
            context: "cannot register metrics".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let stores = build_backends(&config, &backend_metrics).await?;
    let engine = Arc::new(Engine::new(
        Arc::new(config.clone()),
        stores,
        tokio::runtime::Handle::current(),
        tier_metrics.clone(),
    ));
    let volumes = Arc::new(Volumes::open(
        db.clone(),
        heat.clone(),
        engine.clone(),
        clock.clone(),
        &data_dir,
    )?);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
    let nbd = NbdServer::new(volumes.clone(), shutdown_rx.clone(), drain_tx);

    let mut tasks = Vec::new();
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
        tasks.push(tokio::spawn(nbd.clone().serve_tcp(l)));
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
        tasks.push(tokio::spawn(nbd.clone().serve_unix(l)));
    }
    drop(nbd);

    let state = Arc::new(AppState {
        volumes: volumes.clone(),
        heat: heat.clone(),
        engine: engine.clone(),
        config_path,
        backend_metrics: backend_metrics.clone(),
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
    let mut http_shutdown = shutdown_rx.clone();
    let app = api::router(state.clone());
    let http_task = tokio::spawn(async move {
        let r = axum::serve(http, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.wait_for(|v| *v).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin API stopped");
        }
    });

    let flusher = {
        let heat = heat.clone();
        let every = config.heat.flush_interval.0;
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
                let heat = heat.clone();
                let timer = tier_metrics.heat_flush_duration.start_timer();
                let flushed = tokio::task::spawn_blocking(move || heat.flush()).await;
                timer.observe_duration();
                match flushed {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(extents = n, "heat flushed"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "heat flush failed; will retry"),
                    _ => {}
                }
            }
        })
    };

    let policy_loop = {
        let (volumes, engine, dir) = (volumes.clone(), engine.clone(), data_dir.clone());
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            loop {
                let every = engine.config().tiering.scan_interval.0;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
                for vol in volumes.list() {
                    let dir = dir.clone();
                    let name = vol.name();
                    match tokio::task::spawn_blocking(move || crate::migrate::run_pass(&vol, &dir))
                        .await
                    {
                        Ok(Ok(_)) | Ok(Err(TierError::Busy { .. })) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(volume = %name, error = %e, "policy pass failed")
                        }
                        Err(e) => {
                            tracing::error!(volume = %name, error = %e, "policy pass panicked")
                        }
                    }
                    if *stop.borrow() {
                        break;
                    }
                }
            }
        })
    };
    let gc_loop = {
        let (volumes, engine, clock) = (volumes.clone(), engine.clone(), clock.clone());
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            loop {
                let cfg = engine.config();
                tokio::select! {
                    _ = tokio::time::sleep(cfg.tiering.gc_interval.0) => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
                if let Err(e) =
                    crate::gc::collect(&engine, &volumes, clock.now_ms(), cfg.tiering.gc_grace.0)
                        .await
                {
                    tracing::warn!(error = %e, "garbage collection failed");
                }
            }
        })
    };
    let mut hup = signal(SignalKind::hangup()).map_err(|source| TierError::Startup {
        context: "cannot install SIGHUP handler".into(),
        source,
    })?;
    let reloader = {
        let state = state.clone();
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        if let Err(e) = reload(&state).await {
                            tracing::error!(error = %e, "SIGHUP: configuration refused; the previous one stays in force");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };

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
    let _ = shutdown_tx.send(true);
    engine.stop_passes();

    // A second signal ends every wait below at once. Skipping them is safe:
    // an upload not yet committed is garbage, the local copy still rules.
    let (hurry_tx, mut hurry) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting now, without waiting for uploads in flight");
        let _ = hurry_tx.send(true);
    });
    let mut hurried = hurry.clone();
    let drained = tokio::select! {
        r = tokio::time::timeout(DRAIN_TIMEOUT, drain_rx.recv()) => r.is_ok(),
        _ = hurried.wait_for(|v| *v) => false,
    };
    if !drained {
        tracing::warn!("connections did not drain; stopping anyway");
    }
    for t in tasks {
        t.abort();
    }
    let _ = flusher.await;
    let _ = reloader.await;
    // Passes, from the loop or the API, stop after the extents they are
    // moving now (each safe to stop between).
    let passes_done = async {
        let _ = policy_loop.await;
        while engine.passes_running() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = tokio::time::timeout(DRAIN_TIMEOUT, passes_done) => {
            if r.is_err() {
                tracing::warn!("a pass did not finish its uploads in time; stopping anyway");
            }
        }
        _ = hurry.wait_for(|v| *v) => {}
    }
    gc_loop.abort();
    let _ = http_task.await;
    let (heat, volumes) = (heat.clone(), volumes.clone());
    let finish = tokio::task::spawn_blocking(move || -> Result<usize> {
        let n = heat.flush()?;
        volumes.sync_all()?;
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
        source,
    })?;
    Ok(())
}
