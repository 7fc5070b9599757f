//! The heat-map page (`GET /ui`) and the compact extent map it draws
//! (`GET /v1/volumes/{name}/map`).
//!
//! The page is one static HTML file with its script inline, so it needs no
//! build step and no external assets; everything it shows comes from the same
//! API and `/metrics` an operator's tools use. The map groups extents into at
//! most `cells` cells, so a large volume still draws as a bounded grid.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{blocking, ApiResult};
use super::state::AppState;
use crate::extent_map::ExtentState;

const PAGE: &str = include_str!("ui.html");
const DEFAULT_CELLS: u64 = 4096;
const MAX_CELLS: u64 = 65536;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapQuery {
    cells: Option<u64>,
}

/// A volume's extents, `per_cell` to a cell. `states` has one letter per cell:
/// L local, R remote, Z zero (an all-zero extent with no object), M a cell
/// mixing local and remote extents. `temperature` is the hottest extent of the
/// cell, 0 for never accessed.
#[derive(Debug, Serialize)]
pub struct ExtentMap {
    pub volume: String,
    pub extents: u64,
    pub extent_size: u64,
    pub per_cell: u64,
    pub states: String,
    pub temperature: Vec<f64>,
}

pub async fn volume_map(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<MapQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    let map = blocking(move || {
        let vol = st.volumes.get(&name)?;
        let meta = vol.meta();
        let n = meta.extent_count();
        let cells = q.cells.unwrap_or(DEFAULT_CELLS).clamp(1, MAX_CELLS);
        let per_cell = n.div_ceil(cells).max(1);
        let count = n.div_ceil(per_cell) as usize;
        let mut states = vec![None::<u8>; count];
        for e in 0..n {
            let c = (e / per_cell) as usize;
            let s = match vol.extent_state(e) {
                ExtentState::Local => b'L',
                ExtentState::Remote | ExtentState::Overlay => b'R',
                ExtentState::Zero => b'Z',
            };
            states[c] = Some(match states[c] {
                None => s,
                Some(prev) if prev == s => s,
                // A zero extent next to either kind does not make a cell mixed.
                Some(b'Z') => s,
                Some(prev) if s == b'Z' => prev,
                Some(_) => b'M',
            });
        }
        let mut temperature = vec![0.0f64; count];
        for h in vol.heat().volume_extents(vol.id())? {
            if h.extent < n {
                let t = &mut temperature[(h.extent / per_cell) as usize];
                *t = t.max(h.temperature);
            }
        }
        Ok(ExtentMap {
            volume: meta.name.clone(),
            extents: n,
            extent_size: meta.extent_size,
            per_cell,
            states: states
                .into_iter()
                .map(|s| s.unwrap_or(b'L') as char)
                .collect(),
            temperature,
        })
    })
    .await?;
    Ok(Json(map).into_response())
}
