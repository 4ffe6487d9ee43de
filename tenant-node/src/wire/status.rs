//! The peer boundary's status map, both ways, in one place: our errors as
//! a peer hears them (`to_peer` for its calls, `outcome` for each envelope
//! it relays), and a peer's answers as our errors (`from_peer`). Storage
//! and internal errors never leave the node with their details.

use works_bridge::{BridgeError, HandlerError, Outcome};

use crate::error::Error;
use crate::ids::TenantId;

/// Our answer to a peer's call, as the bridge sends it.
pub fn to_peer(e: Error) -> HandlerError {
    match e {
        Error::Invalid { .. } => HandlerError::InvalidArgument(e.to_string()),
        Error::Unauthenticated(m) | Error::PermissionDenied(m) => HandlerError::PermissionDenied(m),
        Error::NotFound(_) => HandlerError::NotFound(e.to_string()),
        Error::AlreadyExists(m) | Error::FailedPrecondition(m) => {
            HandlerError::FailedPrecondition(m)
        }
        Error::ResourceExhausted(m) => HandlerError::ResourceExhausted(m),
        other => HandlerError::Internal(other.to_string()),
    }
}

/// What the peer hears of an envelope that was not stored: retry later on
/// a storage or internal error, refused for good otherwise.
pub fn outcome(peer: &TenantId, e: Error) -> Outcome {
    match e {
        e @ Error::Storage(_) => {
            tracing::warn!(peer = %peer, error = %e, "cannot store a relayed event");
            Outcome::Retry(not_stored_yet(&e))
        }
        Error::Internal(e) => {
            tracing::error!(peer = %peer, error = %e, "relayed event failed");
            Outcome::Retry(not_stored_yet(&Error::Internal(e)))
        }
        e => Outcome::Refused(e.to_string()),
    }
}

/// Why the peer should send an event again later: the sender's admin sees
/// it as the peer's last error.
pub fn not_stored_yet(e: &Error) -> String {
    if e.is_storage_full() {
        "the receiving node's storage is full".into()
    } else {
        "the receiving node could not store it yet".into()
    }
}

/// A bridge failure as this node's error, naming the peer.
pub fn from_peer(peer: &TenantId, error: BridgeError) -> Error {
    use tonic::Code;
    match error {
        BridgeError::Refused(status) => {
            let message = format!("{peer} refused: {}", status.message());
            match status.code() {
                Code::PermissionDenied | Code::Unauthenticated => Error::PermissionDenied(message),
                Code::NotFound => Error::NotFound(message),
                Code::AlreadyExists => Error::AlreadyExists(message),
                Code::ResourceExhausted => Error::ResourceExhausted(message),
                Code::InvalidArgument | Code::FailedPrecondition => {
                    Error::FailedPrecondition(message)
                }
                _ => Error::Unavailable(message),
            }
        }
        BridgeError::Handshake { .. } => {
            Error::FailedPrecondition(format!("cannot peer with {peer}: {error}"))
        }
        BridgeError::Unreachable { .. } | BridgeError::Endpoint(..) | BridgeError::NoAnswer(_) => {
            Error::Unavailable(format!("{peer}: {error}"))
        }
        BridgeError::Malformed(_) | BridgeError::Tls(_) => {
            Error::Internal(format!("{peer}: {error}"))
        }
    }
}
