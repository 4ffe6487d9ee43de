//! Errors of the bridge, and the one place they become gRPC statuses.

use tonic::{Code, Status};

/// What a node's handler reports back through the bridge. Messages go to the
/// calling node, so they must not carry private details.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    /// Over a rate limit; the message says when to try again.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Logged on this node; the caller sees only INTERNAL.
    #[error("{0}")]
    Internal(String),
}

impl From<HandlerError> for Status {
    fn from(e: HandlerError) -> Status {
        let code = match &e {
            HandlerError::InvalidArgument(_) => Code::InvalidArgument,
            HandlerError::PermissionDenied(_) => Code::PermissionDenied,
            HandlerError::NotFound(_) => Code::NotFound,
            HandlerError::FailedPrecondition(_) => Code::FailedPrecondition,
            HandlerError::Unimplemented(_) => Code::Unimplemented,
            HandlerError::ResourceExhausted(_) => Code::ResourceExhausted,
            HandlerError::Internal(detail) => {
                tracing::error!(error = %detail, "bridge handler failed");
                return Status::internal("internal error on the peer node");
            }
        };
        tracing::info!(code = ?code, error = %e, "bridge request refused");
        Status::new(code, e.to_string())
    }
}

/// Why a call to a peer failed, precise enough for `peer test` to explain.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid peer endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("{endpoint} is unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("TLS handshake with {endpoint} failed: {reason}")]
    Handshake { endpoint: String, reason: String },
    #[error("the peer refused the call: {}: {}", code_name(.0.code()), .0.message())]
    Refused(Status),
    #[error("the peer sent a malformed answer: {0}")]
    Malformed(String),
    /// The peer took the call but did not answer in time.
    #[error("the peer did not answer: {0}")]
    NoAnswer(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// `PermissionDenied` → `permission denied`.
pub fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push(' ');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}
