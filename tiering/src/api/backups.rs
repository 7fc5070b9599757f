//! The admin API's backup and restore routes.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{blocking, ApiError, ApiResult};
use super::AppState;
use crate::backup::restore::RestoreRequest;
use crate::error::TierError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// One backend; every configured one when absent.
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub volume: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    pub backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    pub backend: String,
    #[serde(default)]
    pub volume: Option<String>,
    #[serde(default)]
    pub backup: Option<String>,
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub class: Option<String>,
}

/// The backends a request names, or every configured one.
fn backends(st: &AppState, one: Option<String>) -> Result<Vec<String>, TierError> {
    match one {
        Some(b) => {
            st.engine.backend(&b)?;
            Ok(vec![b])
        }
        None => Ok(st.engine.config().backends.keys().cloned().collect()),
    }
}

pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    Path(volume): Path<String>,
) -> ApiResult<Response> {
    let info = blocking(move || crate::backup::create(&st.volumes, &volume)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    let mut backups = Vec::new();
    let mut errors = Vec::new();
    for b in backends(&st, q.backend).map_err(ApiError::from)? {
        let store = st.engine.backend(&b).map_err(ApiError::from)?;
        for item in crate::backup::list(store.as_ref(), &b, q.volume.as_deref())
            .await
            .map_err(ApiError::from)?
        {
            match item {
                Ok(info) => backups.push(info),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    Ok(Json(json!({ "backups": backups, "errors": errors })).into_response())
}

pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    Path((volume, id)): Path<(String, String)>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    let mut last = None;
    for b in backends(&st, q.backend).map_err(ApiError::from)? {
        let store = st.engine.backend(&b).map_err(ApiError::from)?;
        match crate::backup::delete(store.as_ref(), &b, &volume, &id).await {
            Ok(()) => return Ok(StatusCode::NO_CONTENT.into_response()),
            Err(e @ TierError::BackupNotFound { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| TierError::InvalidArgument("no backend is configured".into()))
        .into())
}

pub(super) async fn restore(
    State(st): State<Arc<AppState>>,
    body: Result<Json<RestoreBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    let req = RestoreRequest {
        backend: b.backend,
        volume: b.volume,
        backup: b.backup,
        as_name: b.as_name,
        all: b.all,
        class: b.class,
    };
    let restored = blocking(move || crate::backup::restore::restore(&st.volumes, &req)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "restored": restored }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanBody {
    pub backend: String,
    #[serde(default)]
    pub volume: Option<String>,
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
}

pub(super) async fn scan(
    State(st): State<Arc<AppState>>,
    body: Result<Json<ScanBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    let req = crate::backup::scan::ScanRequest {
        backend: b.backend,
        volume: b.volume,
        as_name: b.as_name,
        class: b.class,
    };
    let rebuilt = blocking(move || crate::backup::scan::scan(&st.volumes, &req)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "rebuilt": rebuilt }))).into_response())
}
