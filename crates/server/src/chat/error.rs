//! The domain's error: what went wrong, in terms a client can act on.
//!
//! Storage errors are folded in here; transports turn a [`ChatError`] into
//! the wire `{code, message}` (HTTP status or error ack). Details of
//! internal failures are logged where they happen and never sent.

use palaver_protocol::{ErrorBody, ErrorCode};

use super::MAX_GROUP_MEMBERS;
use crate::ids::{GroupId, PageError};
use crate::limits::Limited;
use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    InvalidPayload(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// Too many of something; `retry_after` is when the next one may pass
    /// (HTTP sends it as `Retry-After`).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// Storage is down or the server is saturated: nothing was stored,
    /// retrying is safe.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
}

impl ChatError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::InvalidPayload(_) => ErrorCode::InvalidPayload,
            ChatError::Unauthorized(_) => ErrorCode::Unauthorized,
            ChatError::Forbidden(_) => ErrorCode::Forbidden,
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::Conflict(_) => ErrorCode::Conflict,
            ChatError::TooLarge(_) => ErrorCode::TooLarge,
            ChatError::RateLimited { .. } => ErrorCode::RateLimited,
            ChatError::Unavailable(_) => ErrorCode::Unavailable,
            ChatError::Internal => ErrorCode::Internal,
        }
    }

    /// The wire form.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ChatError::InvalidPayload(msg.into())
    }

    /// `NotFound`: no user has this id (also one that is not an id: a
    /// path's number that is not positive).
    pub(crate) fn no_such_user(id: impl std::fmt::Display) -> Self {
        ChatError::NotFound(format!("user {id} does not exist"))
    }

    /// `NotFound`: no group has this id (or, as for users, it is not one).
    pub(crate) fn no_such_group(group: impl std::fmt::Display) -> Self {
        ChatError::NotFound(format!("group {group} does not exist"))
    }

    /// `Forbidden`: the caller is not a member of the group.
    pub(crate) fn not_a_member(group: GroupId) -> Self {
        ChatError::Forbidden(format!("you are not a member of group {group}"))
    }

    /// `NotFound`: the user named (an id, or a path's number that is not
    /// one) is not a member of the group.
    pub(crate) fn not_in_group(user: impl std::fmt::Display, group: GroupId) -> Self {
        ChatError::NotFound(format!("user {user} is not a member of group {group}"))
    }

    /// `TooLarge`: the group has [`MAX_GROUP_MEMBERS`] members already.
    pub(crate) fn group_full() -> Self {
        ChatError::TooLarge(format!("a group has at most {MAX_GROUP_MEMBERS} members"))
    }

    /// `Unauthorized`: the same answer for an unknown name and a wrong
    /// password.
    pub(crate) fn bad_credentials() -> Self {
        ChatError::Unauthorized("invalid username or password".into())
    }
}

impl From<PageError> for ChatError {
    fn from(e: PageError) -> Self {
        ChatError::invalid(e.to_string())
    }
}

impl From<Limited> for ChatError {
    fn from(e: Limited) -> Self {
        ChatError::RateLimited {
            message: e.message,
            retry_after: e.retry_after,
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ChatError::NotFound("not found".into()),
            StoreError::Conflict(m) => ChatError::Conflict(m),
            StoreError::Unavailable(e) | StoreError::Retryable(e) => {
                // Logged once per outage by the health watch (`lib.rs`).
                tracing::debug!(error = %e, "database unavailable");
                ChatError::Unavailable("storage unavailable, nothing was stored; retry".into())
            }
            StoreError::Other(e) => {
                tracing::error!(error = %e, "database error");
                ChatError::Internal
            }
        }
    }
}
