//! The admin API's snapshot, clone and revert routes.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::{blocking, ApiResult};
use super::AppState;
use crate::error::TierError;
use crate::volume::CloneVolume;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneBody {
    pub name: String,
    #[serde(default)]
    pub class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertBody {
    pub snapshot: String,
    #[serde(default)]
    pub force: bool,
}

pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    Path(volume): Path<String>,
) -> ApiResult<Response> {
    let list = blocking(move || st.volumes.snapshot_list(&volume)).await?;
    Ok(Json(serde_json::json!({ "snapshots": list })).into_response())
}

pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    Path(volume): Path<String>,
    body: Result<Json<SnapshotBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    if b.name.starts_with(crate::backup::SNAPSHOT_PREFIX) {
        return Err(TierError::InvalidArgument(format!(
            "snapshot names starting with {:?} are reserved for backups",
            crate::backup::SNAPSHOT_PREFIX
        ))
        .into());
    }
    let info = blocking(move || st.volumes.snapshot_create(&volume, &b.name)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    Path((volume, snapshot)): Path<(String, String)>,
) -> ApiResult<Response> {
    blocking(move || st.volumes.snapshot_delete(&volume, &snapshot)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn clone(
    State(st): State<Arc<AppState>>,
    Path((volume, snapshot)): Path<(String, String)>,
    body: Result<Json<CloneBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    let req = CloneVolume {
        source: format!("{volume}@{snapshot}"),
        name: b.name,
        class: b.class,
    };
    let info = blocking(move || {
        let config = st.engine.config();
        Ok(st.volumes.clone_volume(req, &config)?.info())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

pub(super) async fn revert(
    State(st): State<Arc<AppState>>,
    Path(volume): Path<String>,
    body: Result<Json<RevertBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    let info =
        blocking(move || Ok(st.volumes.revert(&volume, &b.snapshot, b.force)?.info())).await?;
    Ok(Json(info).into_response())
}
