//! The node's error type. Each variant says what went wrong in terms a caller
//! can act on; `grpc::status` maps them to gRPC codes in one place.

use crate::ids::IdError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed or out-of-range field in the request.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No valid credentials: missing, malformed, expired, revoked or forged.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but the current state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A size or rate limit was exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A peer node could not be reached or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// The storage layer failed; details are logged, never sent to callers.
    #[error("storage error: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A bug or an unexpected state; details are logged, never sent to callers.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// The node's own failure (storage, schema, a bug), as against a
    /// refusal of the request on its merits.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Error::Storage(_) | Error::Migration(_) | Error::Internal(_)
        )
    }

    /// Whether the database refused a write for want of space
    /// (`store::Fault::Full`).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Error::Storage(e) if crate::store::classify(e) == crate::store::Fault::Full)
    }

    /// Whether the database could not be reached (`store::Fault::Unreachable`).
    pub fn is_storage_unreachable(&self) -> bool {
        matches!(self, Error::Storage(e) if crate::store::classify(e) == crate::store::Fault::Unreachable)
    }

    /// Whether a unique constraint refused a row (`store::Fault::Duplicate`).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Error::Storage(e) if crate::store::classify(e) == crate::store::Fault::Duplicate)
    }

    /// Adapts an id parse error to the field it came from.
    pub fn bad_id(field: &'static str) -> impl FnOnce(IdError) -> Self {
        move |e| Error::invalid(field, e.to_string())
    }
}

impl From<works_certs::CertError> for Error {
    fn from(e: works_certs::CertError) -> Self {
        Error::Internal(format!("certificates: {e}"))
    }
}
