//! The crate's one error type. Each variant is a class the caller acts on
//! differently, and carries the backend, the operation and the key.
//! [`ErrorKind`] names the classes without a context, for metrics labels and
//! for telling the fault-injecting wrapper what to fail with.

use std::fmt;

use thiserror::Error;

/// Where an error happened.
#[derive(Debug, Clone)]
pub struct ErrorContext {
    pub backend: String,
    pub op: &'static str,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backend {:?}: {} {:?}: {}",
            self.backend, self.op, self.key, self.message
        )
    }
}

/// The class of a [`BackendError`], without its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    PreconditionFailed,
    Throttled,
    Transient,
    Permanent,
}

impl ErrorKind {
    /// Every kind, in the order of their metrics labels.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::NotFound,
        ErrorKind::PreconditionFailed,
        ErrorKind::Throttled,
        ErrorKind::Transient,
        ErrorKind::Permanent,
    ];

    /// A short label for metrics (`result` label of the request counter).
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Transient)
    }
}

/// What went wrong talking to an object store.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The object (or bucket) does not exist.
    #[error("{0} (not found)")]
    NotFound(ErrorContext),
    /// A conditional request's condition did not hold.
    #[error("{0} (precondition failed)")]
    PreconditionFailed(ErrorContext),
    /// The service asked us to slow down; retried with backoff.
    #[error("{0} (throttled)")]
    Throttled(ErrorContext),
    /// Timeouts, 5xx answers, refused connections; retried with backoff.
    #[error("{0} (transient)")]
    Transient(ErrorContext),
    /// Authentication, bad requests, configuration: retrying cannot help.
    #[error("{0} (permanent)")]
    Permanent(ErrorContext),
}

impl BackendError {
    /// The error of class `kind` with this context.
    pub fn new(kind: ErrorKind, ctx: ErrorContext) -> Self {
        match kind {
            ErrorKind::NotFound => BackendError::NotFound(ctx),
            ErrorKind::PreconditionFailed => BackendError::PreconditionFailed(ctx),
            ErrorKind::Throttled => BackendError::Throttled(ctx),
            ErrorKind::Transient => BackendError::Transient(ctx),
            ErrorKind::Permanent => BackendError::Permanent(ctx),
        }
    }

    /// The class of this error.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            BackendError::NotFound(_) => ErrorKind::NotFound,
            BackendError::PreconditionFailed(_) => ErrorKind::PreconditionFailed,
            BackendError::Throttled(_) => ErrorKind::Throttled,
            BackendError::Transient(_) => ErrorKind::Transient,
            BackendError::Permanent(_) => ErrorKind::Permanent,
        }
    }

    /// The context, to change (e.g. to note how a retry ended).
    pub fn context_mut(&mut self) -> &mut ErrorContext {
        match self {
            BackendError::NotFound(c)
            | BackendError::PreconditionFailed(c)
            | BackendError::Throttled(c)
            | BackendError::Transient(c)
            | BackendError::Permanent(c) => c,
        }
    }

    pub fn context(&self) -> &ErrorContext {
        match self {
            BackendError::NotFound(c)
            | BackendError::PreconditionFailed(c)
            | BackendError::Throttled(c)
            | BackendError::Transient(c)
            | BackendError::Permanent(c) => c,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.error_kind().is_retryable()
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound(_))
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        self.error_kind().label()
    }

    /// Builds the variant an HTTP status implies.
    pub fn from_status(status: u16, ctx: ErrorContext) -> Self {
        match status {
            404 => BackendError::NotFound(ctx),
            412 => BackendError::PreconditionFailed(ctx),
            429 | 503 => BackendError::Throttled(ctx),
            408 | 500..=599 => BackendError::Transient(ctx),
            _ => BackendError::Permanent(ctx),
        }
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Shorthand for building contexts inside one backend.
pub(crate) fn ctx(
    backend: &str,
    op: &'static str,
    key: &str,
    message: impl Into<String>,
) -> ErrorContext {
    ErrorContext {
        backend: backend.to_string(),
        op,
        key: key.to_string(),
        message: message.into(),
    }
}

/// An error and its sources on one line: SDK top-level messages alone
/// ("dispatch failure") do not say what happened.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
