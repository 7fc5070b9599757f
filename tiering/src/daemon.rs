//! `tierd serve`: opens the data directory, starts the NBD listeners, the admin
//! API and the background tasks, and shuts them down in order on SIGTERM/SIGINT.
//!
//! Shutdown order keeps data safe: stop accepting, let connections finish their
//! in-flight requests, flush heat, fdatasync every volume, then exit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use heatmap::{Clock, HeatConfig, HeatMap, SystemClock};
use parking_lot::RwLock;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::api::{self, AppState};
use crate::config::Config;
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

pub async fn serve(config: Config) -> Result<()> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| TierError::Startup {
        context: format!("cannot create data directory {}", data_dir.display()),
        source,
    })?;
    let heat_cfg = heat_config(&config);
    let db = crate::db::open(&data_dir.join("db"), &heat_cfg)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let heat = Arc::new(HeatMap::new(db.clone(), clock.clone(), &heat_cfg)?);
    let volumes = Arc::new(Volumes::open(db.clone(), heat.clone(), clock, &data_dir)?);

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
        config: RwLock::new(Arc::new(config.clone())),
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
                match tokio::task::spawn_blocking(move || heat.flush()).await {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(extents = n, "heat flushed"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "heat flush failed; will retry"),
                    _ => {}
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

    // A second signal skips the drain; the heat flush and volume sync below still run.
    let drained = tokio::select! {
        r = tokio::time::timeout(DRAIN_TIMEOUT, drain_rx.recv()) => r.is_ok(),
        _ = term.recv() => false,
        _ = int.recv() => false,
    };
    if !drained {
        tracing::warn!("connections did not drain; stopping anyway");
    }
    for t in tasks {
        t.abort();
    }
    let _ = flusher.await;
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
