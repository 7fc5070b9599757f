//! The admin HTTP API: health, volumes and heat, as JSON.
//!
//! Every error is `{"error": {"code": ..., "kind": ..., "message": ...}}`
//! with a status that says whose fault it was (see `error`); handlers never
//! panic on input.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use heatmap::histogram_of;
use serde::{Deserialize, Serialize};
use serde_json::json;

use policy::units::parse_size;

use crate::config::DEFAULT_CLASS;
use crate::error::{ErrorKind, TierError};
use crate::volume::{CreateVolume, PatchVolume};

mod backups;
mod error;
mod scrape;
mod snapshots;
pub mod state;
mod ui;

pub use error::ApiError;
use error::{blocking, ApiResult};
pub use state::AppState;

/// A size given as a number of bytes or as text such as "10GiB".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeArg {
    Bytes(u64),
    Text(String),
}

impl SizeArg {
    fn bytes(&self, field: &str) -> ApiResult<u64> {
        match self {
            SizeArg::Bytes(n) => Ok(*n),
            SizeArg::Text(s) => parse_size(s)
                .map_err(|m| ApiError::bad_request("invalid_argument", format!("{field}: {m}"))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub name: String,
    pub size: SizeArg,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub extent_size: Option<SizeArg>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    pub size: Option<SizeArg>,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub record_trace: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    pub force: bool,
    /// Delete a volume whose snapshots have clones; the clones keep the
    /// data they share.
    #[serde(default)]
    pub keep_clones: bool,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeatOrder {
    #[default]
    Hottest,
    Coldest,
    Extent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatQuery {
    #[serde(default)]
    pub top: Option<usize>,
    #[serde(default)]
    pub order: HeatOrder,
}

#[derive(Debug, Serialize)]
pub struct HeatReport {
    pub volume: String,
    pub extent_size: u64,
    pub extents_total: u64,
    pub extents_tracked: usize,
    pub histogram: Vec<heatmap::HistogramBucket>,
    pub extents: Vec<heatmap::ExtentHeat>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn list_volumes(State(st): State<Arc<AppState>>) -> ApiResult<Response> {
    let v = blocking(move || {
        Ok(st
            .volumes
            .list()
            .iter()
            .map(|v| v.info())
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({ "volumes": v })).into_response())
}

async fn create_volume(
    State(st): State<Arc<AppState>>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    let req = CreateVolume {
        size: b.size.bytes("size")?,
        extent_size: b
            .extent_size
            .as_ref()
            .map(|e| e.bytes("extent_size"))
            .transpose()?,
        class: b.class.unwrap_or_else(|| DEFAULT_CLASS.to_string()),
        name: b.name,
    };
    let info = blocking(move || {
        let config = st.engine.config();
        Ok(st.volumes.create(req, &config)?.info())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn show_volume(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let info = blocking(move || {
        let vol = st.volumes.get(&name)?;
        let mut info = vol.info();
        info.bytes_inactive = vol.inactive_bytes().ok();
        info.cooling = vol.cooling_status();
        info.cost = vol.cost_now(info.bytes_local, info.bytes_remote);
        info.space = Some(st.volumes.space(&vol));
        Ok(info)
    })
    .await?;
    Ok(Json(info).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassQuery {
    /// Wait for the pass and return its report (default: start it and return 202).
    #[serde(default)]
    pub wait: bool,
}

async fn pass(
    st: Arc<AppState>,
    name: String,
    wait: bool,
    kind: &'static str,
) -> ApiResult<Response> {
    let vol = st.volumes.get(&name).map_err(ApiError::from)?;
    let dir = st.engine.config().server.data_dir.clone();
    let volumes = st.volumes.clone();
    let job = move || match kind {
        "promote" => crate::migrate::promote(&vol),
        _ => crate::migrate::tier_pass(&volumes, &vol, &dir),
    };
    // A tracked task either way: shutdown waits for the pass to stop
    // between extents, whether or not the caller waits for its report. A
    // caller who does not wait learns of a failure from the log (and from
    // the volume's last-pass status).
    let task = st.engine.tasks().spawn_blocking(move || {
        let r = job();
        if let (false, Err(e)) = (wait, &r) {
            tracing::warn!(volume = %name, error = %e, "{kind} pass failed");
        }
        r
    });
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(json!({"started": kind}))).into_response());
    }
    let report = task
        .await
        .map_err(|e| ApiError::internal("internal", format!("pass task failed: {e}")))??;
    Ok(Json(report).into_response())
}

async fn tier_volume(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<PassQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    pass(st, name, q.wait, "tier").await
}

async fn promote_volume(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<PassQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    pass(st, name, q.wait, "promote").await
}

#[derive(Debug, Serialize)]
pub struct ExtentEntry {
    pub extent: u64,
    pub state: crate::extent_map::ExtentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
}

/// Every extent that is not simply local: where its data lives.
async fn volume_extents(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let entries = blocking(move || {
        let vol = st.volumes.get(&name)?;
        let mut out = Vec::new();
        let n = vol.meta().extent_count();
        for e in 0..n {
            let state = vol.extent_state(e);
            if state == crate::extent_map::ExtentState::Local {
                continue;
            }
            let rec = vol.extent_record(e)?;
            let (backend, key, stored_size) = match rec.as_ref().and_then(|r| r.remote()) {
                Some(r) => (
                    Some(r.backend.clone()),
                    Some(r.key.clone()),
                    Some(r.stored_size()),
                ),
                _ => (None, None, None),
            };
            out.push(ExtentEntry {
                extent: e,
                state,
                backend,
                key,
                stored_size,
            });
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({ "extents": entries })).into_response())
}

async fn run_gc(State(st): State<Arc<AppState>>) -> ApiResult<Response> {
    let grace = st.engine.config().tiering.gc_grace.0;
    let now = st.heat.clock().now_ms();
    let report = crate::gc::collect(&st.engine, &st.volumes, now, grace).await?;
    Ok(Json(report).into_response())
}

async fn reload_config(State(st): State<Arc<AppState>>) -> ApiResult<Response> {
    st.reload().await?;
    Ok(Json(json!({"reloaded": true})).into_response())
}

async fn patch_volume(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<Json<PatchBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    let patch = PatchVolume {
        size: b.size.as_ref().map(|s| s.bytes("size")).transpose()?,
        class: b.class,
        record_trace: b.record_trace,
    };
    let info = blocking(move || {
        let config = st.engine.config();
        Ok(st.volumes.patch(&name, patch, &config)?.info())
    })
    .await?;
    Ok(Json(info).into_response())
}

async fn delete_volume(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    blocking(move || st.volumes.delete(&name, q.force, q.keep_clones)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn volume_heat(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<HeatQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    let report = blocking(move || {
        let vol = st.volumes.get(&name)?;
        let meta = vol.meta();
        let mut extents = st.heat.volume_extents(meta.id)?;
        let histogram = histogram_of(&extents);
        let tracked = extents.len();
        match q.order {
            HeatOrder::Hottest => extents.sort_by(|a, b| {
                b.temperature
                    .total_cmp(&a.temperature)
                    .then(a.extent.cmp(&b.extent))
            }),
            HeatOrder::Coldest => extents.sort_by(|a, b| {
                a.temperature
                    .total_cmp(&b.temperature)
                    .then(a.extent.cmp(&b.extent))
            }),
            HeatOrder::Extent => {}
        }
        if let Some(n) = q.top {
            extents.truncate(n);
        }
        Ok(HeatReport {
            volume: meta.name.clone(),
            extent_size: meta.extent_size,
            extents_total: meta.extent_count(),
            extents_tracked: tracked,
            histogram,
            extents,
        })
    })
    .await?;
    Ok(Json(report).into_response())
}

/// The Prometheus exposition: event metrics plus the state of every volume now.
async fn metrics(State(s): State<Arc<AppState>>) -> ApiResult<Response> {
    let text = blocking(move || {
        scrape::render(&s.registry, &s.volumes, &s.engine, &s.heat).map_err(TierError::Metrics)
    })
    .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Reads the admin API's bearer token (surrounding whitespace trimmed).
pub fn read_token(path: &std::path::Path) -> Result<String, TierError> {
    let text = std::fs::read_to_string(path).map_err(|source| TierError::Startup {
        context: format!("cannot read admin token file {}", path.display()),
        source,
    })?;
    let token = text.trim();
    if token.len() < 16 || token.chars().any(char::is_whitespace) {
        return Err(TierError::InvalidArgument(format!(
            "admin token file {}: the token must be one word of at least 16 characters",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// Equal in time independent of where the inputs first differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer TOKEN` header value; the scheme
/// is matched without regard to case, as RFC 7235 says.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Refuses requests without the bearer token, when one is configured. The
/// probes and the page itself (static, no data) stay open.
async fn require_token(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(want) = &st.admin_token else {
        return next.run(req).await;
    };
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/ui") {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if given.is_some_and(|t| same_secret(t.trim().as_bytes(), want.as_bytes())) {
        return next.run(req).await;
    }
    let mut r = ApiError::new(
        ErrorKind::Unauthorized,
        "unauthorized",
        "this API needs \"Authorization: Bearer TOKEN\" with the token in server.admin_token_file \
         (the CLI: --token-file or TIERD_TOKEN_FILE)"
            .into(),
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "not_found",
        "no such endpoint; see /v1/volumes".into(),
    )
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route(
            "/v1/volumes/{name}",
            get(show_volume).patch(patch_volume).delete(delete_volume),
        )
        .route(
            "/v1/volumes/{name}/snapshots",
            get(snapshots::list).post(snapshots::create),
        )
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}",
            axum::routing::delete(snapshots::delete),
        )
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}/clone",
            post(snapshots::clone),
        )
        .route("/v1/volumes/{name}/revert", post(snapshots::revert))
        .route("/v1/volumes/{name}/backups", post(backups::create))
        .route("/v1/backups", get(backups::list))
        .route(
            "/v1/backups/{volume}/{id}",
            axum::routing::delete(backups::delete),
        )
        .route("/v1/restore", post(backups::restore))
        .route("/v1/recover/scan", post(backups::scan))
        .route("/v1/volumes/{name}/heat", get(volume_heat))
        .route("/v1/volumes/{name}/extents", get(volume_extents))
        .route("/v1/volumes/{name}/map", get(ui::volume_map))
        .route("/ui", get(ui::page))
        .route("/v1/volumes/{name}/tier", post(tier_volume))
        .route("/v1/volumes/{name}/promote", post(promote_volume))
        .route("/v1/gc", post(run_gc))
        .route("/v1/config/reload", post(reload_config))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}
