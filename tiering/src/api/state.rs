//! What every API handler shares: the volumes, heat, engine and metric
//! registry of the running daemon, and reloading its configuration.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use heatmap::HeatMap;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Result, TierError};
use crate::volume::Volumes;

pub struct AppState {
    pub volumes: Arc<Volumes>,
    pub heat: Arc<HeatMap>,
    pub engine: Arc<Engine>,
    /// The file the configuration came from (None: embedded defaults).
    pub config_path: Option<std::path::PathBuf>,
    /// What backends are built with (metrics, clock, shutdown token).
    pub backend_env: backends::BuildEnv,
    /// Every event metric (tiering and backends); state metrics are added per scrape.
    pub registry: prometheus::Registry,
    /// The bearer token every request but the probes must carry, if set.
    pub admin_token: Option<String>,
    pub ready: AtomicBool,
}

/// Builds every configured backend. An fs backend without `root` keeps its
/// objects in `<data_dir>/objects`.
pub async fn build_backends(
    config: &Config,
    env: &backends::BuildEnv,
) -> Result<BTreeMap<String, Arc<dyn backends::ObjectStore>>> {
    let mut out = BTreeMap::new();
    let default_root = config.server.data_dir.join("objects");
    for (name, b) in &config.backends {
        let store = backends::build_with(name, b, &default_root, env).await?;
        out.insert(name.clone(), store);
    }
    Ok(out)
}

impl AppState {
    /// Reloads the configuration file: on success the new classes and
    /// backends apply from the next request and pass; on failure the old
    /// ones stay.
    pub async fn reload(&self) -> Result<()> {
        let Some(path) = &self.config_path else {
            return Err(TierError::InvalidArgument(
                "tierd runs on its embedded defaults (no --config): there is nothing to reload"
                    .into(),
            ));
        };
        let new = Config::load(path)?;
        let old = self.engine.config();
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
        let stores = build_backends(&new, &self.backend_env).await?;
        self.engine.replace(Arc::new(new), stores);
        tracing::info!(path = %path.display(), "configuration reloaded");
        Ok(())
    }
}
