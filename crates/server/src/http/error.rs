//! `ChatError` → HTTP status and `{"error": {code, message}}` body.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palaver_protocol::{ErrorCode, HttpError};

use crate::chat::ChatError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: ChatError,
}

impl ApiError {
    pub fn with_status(status: StatusCode, error: ChatError) -> Self {
        ApiError { status, error }
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        let status = match error.code() {
            ErrorCode::InvalidPayload => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, error }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(HttpError {
            error: self.error.body(),
        });
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}
