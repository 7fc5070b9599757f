//! The admin API's error body and status: every failure is
//! `{"error": {"code": ..., "kind": ..., "message": ...}}`, its status and
//! `kind` from [`ErrorKind`], the crate's one mapping.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{ErrorKind, TierError};

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    /// The [`ErrorKind`]'s name, which the CLI turns into its exit code.
    kind: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        kind: ErrorKind,
        message: String,
    ) -> Self {
        Self {
            status,
            code,
            kind: kind.as_str(),
            message,
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            kind: ErrorKind::InvalidInput.as_str(),
            message,
        }
    }

    pub(crate) fn internal(code: &'static str, message: String) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code,
            kind: ErrorKind::Internal.as_str(),
            message,
        }
    }
}

impl From<TierError> for ApiError {
    fn from(e: TierError) -> Self {
        let kind = e.kind();
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
        if status.is_server_error() {
            tracing::error!(error = %e, "API request failed");
        }
        Self {
            status,
            code,
            kind: kind.as_str(),
            message: e.to_string(),
        }
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
        let body =
            json!({"error": {"code": self.code, "kind": self.kind, "message": self.message}});
        (self.status, Json(body)).into_response()
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
