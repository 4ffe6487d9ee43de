//! The one place where node errors become gRPC statuses.
//!
//! Callers get a precise code and a message they can act on; storage and
//! internal details are logged here and leave the node only as INTERNAL.

use tonic::{Code, Status};

use crate::error::Error;

/// What a caller sees when the node's disk (or database quota) is full.
pub const STORAGE_FULL: &str = "the node's storage is full: nothing was stored; try again once its administrator has freed space";

/// What a caller sees while the node's database cannot be reached (it is
/// restarting, say).
pub const STORAGE_UNREACHABLE: &str =
    "the node's storage cannot be reached just now: nothing was stored; try again in a moment";

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        if error.is_storage_full() {
            tracing::error!(error = %error, "storage full: a write was refused and rolled back");
            return Status::resource_exhausted(STORAGE_FULL);
        }
        if error.is_storage_unreachable() {
            tracing::warn!(error = %error, "storage unreachable: the call was not carried out");
            return Status::unavailable(STORAGE_UNREACHABLE);
        }
        let code = match &error {
            Error::Invalid { .. } => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Storage(_) | Error::Migration(_) | Error::Internal(_) => {
                tracing::error!(error = %error, "internal error");
                return Status::internal("internal error; the node's log has the details");
            }
        };
        tracing::info!(code = ?code, error = %error, "request refused");
        // Messages quote their input clipped at its source; this bounds
        // whatever a message still carries.
        works_bridge::error::status(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: Error, code: Code, message: &str) {
        let status = Status::from(error);
        assert_eq!(status.code(), code);
        assert_eq!(status.message(), message);
    }

    #[test]
    fn each_error_has_its_code() {
        check(
            Error::invalid("room_id", "is empty"),
            Code::InvalidArgument,
            "invalid room_id: is empty",
        );
        check(
            Error::Unauthenticated("token expired".into()),
            Code::Unauthenticated,
            "token expired",
        );
        check(
            Error::PermissionDenied("no".into()),
            Code::PermissionDenied,
            "no",
        );
        check(
            Error::NotFound("room X".into()),
            Code::NotFound,
            "room X not found",
        );
        check(
            Error::AlreadyExists("dup".into()),
            Code::AlreadyExists,
            "dup",
        );
        check(
            Error::FailedPrecondition("state".into()),
            Code::FailedPrecondition,
            "state",
        );
        check(
            Error::ResourceExhausted("big".into()),
            Code::ResourceExhausted,
            "big",
        );
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_says_to_try_again() {
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            check(
                Error::Storage(error),
                Code::Unavailable,
                STORAGE_UNREACHABLE,
            );
        }
    }

    #[test]
    fn internal_details_do_not_leave_the_node() {
        let status = Status::from(Error::Internal("secret path /var/db".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
        let status = Status::from(Error::Storage(sqlx::Error::RowNotFound));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("row"));
    }
}
