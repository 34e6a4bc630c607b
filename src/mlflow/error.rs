//! Errors at the MLflow boundary.

/// A failed MLflow call, typed so callers can tell "try again later" from "this is wrong".
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// Could not connect, or no answer within `request_timeout`.
    #[error("MLflow unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// MLflow answered with an error status.
    #[error("MLflow {endpoint} answered {status} {error_code}: {message}")]
    Api {
        endpoint: String,
        status: u16,
        error_code: String,
        message: String,
    },
    /// MLflow answered 2xx with a body we could not read.
    #[error("MLflow {endpoint} answered with an unreadable body: {reason}")]
    Decode { endpoint: String, reason: String },
    /// The client itself is misconfigured (tracking URI, certificate, credentials).
    #[error("MLflow client setup: {0}")]
    Setup(String),
}

impl MlflowError {
    /// Worth retrying: the network or an overloaded/restarting server, not the request, was
    /// at fault. A 500 is not: MLflow uses it for its own bugs, which a resend repeats.
    pub fn is_transient(&self) -> bool {
        match self {
            MlflowError::Unreachable { .. } => true,
            MlflowError::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            MlflowError::Decode { .. } | MlflowError::Setup(_) => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Api { status: 404, .. })
            || matches!(self, MlflowError::Api { error_code, .. } if error_code == "RESOURCE_DOES_NOT_EXIST")
    }
}
