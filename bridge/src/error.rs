//! Errors of the bridge, and the one place they become gRPC statuses.

use std::borrow::Cow;

use tonic::{Code, Status};

/// The most characters of a caller's own input that a message quotes back.
/// An id or a text is quoted so the caller knows which one was refused; its
/// start is enough for that, and the whole of a 20,000-character id would
/// make the status larger than gRPC's 16 KiB header list.
pub const QUOTE_CHARS: usize = 64;

/// The longest status message (in bytes) either server sends. It travels in
/// the `grpc-message` header, percent-encoded (up to three times longer),
/// beside the others in a 16 KiB header list: 1,024 bytes leave room.
pub const MAX_STATUS_MESSAGE: usize = 1024;

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
        status(code, e.to_string())
    }
}

/// Input quoted in a message: as it is up to [`QUOTE_CHARS`] characters,
/// else its start, "…" and how long it was.
pub fn clip(input: &str) -> Cow<'_, str> {
    match input.char_indices().nth(QUOTE_CHARS) {
        None => Cow::Borrowed(input),
        Some((cut, _)) => Cow::Owned(format!(
            "{}… ({} characters)",
            &input[..cut],
            input.chars().count()
        )),
    }
}

/// A message cut to [`MAX_STATUS_MESSAGE`] bytes at a character boundary:
/// the last guard, for a message whose every quote was not clipped.
pub fn bounded_message(mut message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE {
        return message;
    }
    const MARK: &str = "… (cut)";
    let mut cut = MAX_STATUS_MESSAGE - MARK.len();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(MARK);
    message
}

/// A status whose message is bounded by [`bounded_message`].
pub fn status(code: Code, message: impl Into<String>) -> Status {
    Status::new(code, bounded_message(message.into()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole() {
        assert_eq!(clip("room-1"), "room-1");
        let exact = "é".repeat(QUOTE_CHARS);
        assert_eq!(clip(&exact), exact.as_str());
    }

    #[test]
    fn long_input_is_cut_at_a_character_with_its_length() {
        let long = "日".repeat(20_000);
        let clipped = clip(&long);
        assert_eq!(
            clipped,
            format!("{}… (20000 characters)", "日".repeat(QUOTE_CHARS))
        );
    }

    #[test]
    fn a_status_message_never_passes_the_bound() {
        assert_eq!(bounded_message("short".into()), "short");
        for filler in ["x", "é", "日", "🦀"] {
            let message = bounded_message(filler.repeat(5_000));
            assert!(message.len() <= MAX_STATUS_MESSAGE, "{}", message.len());
            assert!(message.ends_with("… (cut)"));
            assert!(message.starts_with(filler));
        }
        let status = status(Code::NotFound, "y".repeat(20_000));
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().len() <= MAX_STATUS_MESSAGE);
    }

    #[test]
    fn handler_errors_are_bounded_too() {
        let status = Status::from(HandlerError::InvalidArgument(format!(
            "invalid user: {}",
            "z".repeat(20_000)
        )));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("invalid user: zzz"));
        assert!(status.message().len() <= MAX_STATUS_MESSAGE);
    }
}
