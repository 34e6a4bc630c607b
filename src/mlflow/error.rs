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
    /// The server has no webhooks API: MLflow before 3.3 answers its routes with a plain 404.
    #[error(
        "this MLflow server has no webhooks API ({endpoint} answered 404 Not Found): webhooks \
         need MLflow 3.3 or later with a database backend. Without them stagegate still finds \
         every candidate through its poll (poll.schedule), only later"
    )]
    NoWebhooksApi { endpoint: String },
    /// The client itself is misconfigured (tracking URI, certificate, credentials).
    #[error("MLflow client setup: {0}")]
    Setup(String),
    /// The write guard said no (the daemon's lease on the model is lost or unverifiable):
    /// nothing was sent.
    #[error("not written to MLflow ({endpoint}): {reason}")]
    Fenced { endpoint: String, reason: String },
}

impl MlflowError {
    /// Worth retrying: the network or an overloaded/restarting server, not the request, was
    /// at fault. A 500 is not: MLflow uses it for its own bugs, which a resend repeats.
    ///
    /// One 400 is: MLflow's tag upsert reads, then inserts, so two writers of the same tag at
    /// once (on a server with several workers) make the second fail with the database's
    /// unique-constraint error. A resend finds the row and updates it.
    pub fn is_transient(&self) -> bool {
        match self {
            MlflowError::Unreachable { .. } => true,
            MlflowError::Api {
                status: 400,
                message,
                ..
            } => lost_upsert_race(message),
            MlflowError::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            MlflowError::Decode { .. }
            | MlflowError::NoWebhooksApi { .. }
            | MlflowError::Setup(_)
            | MlflowError::Fenced { .. } => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Api { status: 404, .. })
            || matches!(self, MlflowError::Api { error_code, .. } if error_code == "RESOURCE_DOES_NOT_EXIST")
    }
}

/// The unique-constraint errors of SQLite, PostgreSQL and MySQL, as MLflow passes them on.
fn lost_upsert_race(message: &str) -> bool {
    [
        "UNIQUE constraint failed",
        "duplicate key value",
        "Duplicate entry",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str) -> MlflowError {
        MlflowError::Api {
            endpoint: "model-versions/set-tag".into(),
            status,
            error_code: "BAD_REQUEST".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_lost_tag_upsert_race_is_retried_and_other_bad_requests_are_not() {
        let race = "(sqlite3.IntegrityError) UNIQUE constraint failed: model_version_tags.workspace, \
                    model_version_tags.key, model_version_tags.name, model_version_tags.version";
        assert!(api(400, race).is_transient());
        assert!(api(400, "duplicate key value violates unique constraint").is_transient());
        assert!(!api(400, "Invalid value for parameter").is_transient());
        assert!(!api(500, race).is_transient());
    }
}
