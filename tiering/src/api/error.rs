//! The admin API's error body and status: every failure is
//! `{"error": {"code": ..., "kind": ..., "message": ...}}`; the HTTP status
//! and `kind` both come from the failure's [`ErrorKind`], the crate's one
//! mapping, so they cannot disagree.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{ErrorKind, TierError};

pub struct ApiError {
    /// Gives the status, and its name goes to the CLI as its exit code.
    kind: ErrorKind,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(kind: ErrorKind, code: &'static str, message: String) -> Self {
        Self {
            kind,
            code,
            message,
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: String) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }

    pub(crate) fn internal(code: &'static str, message: String) -> Self {
        Self::new(ErrorKind::Internal, code, message)
    }
}

impl From<TierError> for ApiError {
    fn from(e: TierError) -> Self {
        let kind = e.kind();
        // The specific code names the error; the kind (and so the status)
        // comes from the crate's one mapping.
        let code = match &e {
            TierError::VolumeNotFound(_) => "volume_not_found",
            TierError::VolumeExists(_) => "volume_exists",
            TierError::VolumeBusy { .. } => "volume_busy",
            TierError::InvalidName { .. } => "invalid_name",
            TierError::InvalidArgument(_) => "invalid_argument",
            TierError::UnknownClass { .. } => "unknown_class",
            TierError::Busy { .. } => "busy",
            TierError::Config(_) => "invalid_config",
            TierError::Backend(_) => "backend_error",
            _ => kind.as_str(),
        };
        if kind.http_status() >= 500 {
            tracing::error!(error = %e, "API request failed");
        }
        Self::new(kind, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::bad_request("invalid_json", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request("invalid_query", e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {
            "code": self.code,
            "kind": self.kind.as_str(),
            "message": self.message,
        }});
        (status, Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Runs metadata and RocksDB work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TierError> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(
            "internal",
            format!("request task failed: {e}"),
        )),
    }
}
