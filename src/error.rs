//! The one error type of the service. Services return it; one conversion at
//! the GraphQL edge and one at the REST edge turn it into the contract's codes.
//! Unexpected failures are logged here, once, with their cause chain, and the
//! client sees only a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sea_orm::DbErr;

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("You are not allowed to do this")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    BadInput {
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<String>,
    },
    /// An upload over `MEDIA_MAX_BYTES`: 413 on REST, `BAD_USER_INPUT` in the body.
    #[error("{0}")]
    TooLarge(String),
    /// A file whose bytes are not an accepted image type: 415 on REST.
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("Sold out: no capacity left for this event")]
    SoldOut,
    #[error("Too many attempts; try again in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    #[error("The payment provider failed: {0}")]
    PaymentProvider(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Said of a body over `REQUEST_BODY_LIMIT_BYTES`, whichever layer finds it.
pub const BODY_TOO_LARGE: &str = "the request body is too large";

impl AppError {
    pub fn body_too_large() -> Self {
        AppError::TooLarge(BODY_TOO_LARGE.into())
    }

    pub fn bad_input(field: &str, message: impl Into<String>) -> Self {
        AppError::BadInput {
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        AppError::Conflict {
            message: message.into(),
            field: None,
        }
    }

    pub fn conflict_on(field: &str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            AppError::BadInput { field, .. } | AppError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadInput { .. } | AppError::TooLarge(_) | AppError::UnsupportedMedia(_) => {
                "BAD_USER_INPUT"
            }
            AppError::Conflict { .. } => "CONFLICT",
            AppError::SoldOut => "SOLD_OUT",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::PaymentProvider(_) => "PAYMENT_PROVIDER_ERROR",
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadInput { .. } => StatusCode::BAD_REQUEST,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Conflict { .. } | AppError::SoldOut => StatusCode::CONFLICT,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::PaymentProvider(_) => StatusCode::BAD_GATEWAY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may read. Internal detail never leaves the server.
    fn public_message(&self) -> String {
        match self {
            AppError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "unexpected error");
                "Internal server error".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        AppError::Internal(anyhow::Error::new(err).context("database"))
    }
}

impl AppError {
    /// Gives a GraphQL error raised from this error its contract code and
    /// extensions. Resolvers return `AppError` through `?`, which keeps it as
    /// the error's source; the GraphQL edge calls this on every response.
    pub fn apply_to(&self, error: &mut async_graphql::ServerError) {
        error.message = self.public_message();
        let ext = error.extensions.get_or_insert_with(Default::default);
        ext.set("code", self.code());
        if let Some(field) = self.field() {
            ext.set("field", field);
        }
        if let AppError::RateLimited { retry_after } = self {
            ext.set("retryAfter", *retry_after);
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = serde_json::json!({ "code": self.code(), "message": self.public_message() });
        if let Some(field) = self.field() {
            body["field"] = field.into();
        }
        if let AppError::RateLimited { retry_after } = &self {
            body["retryAfter"] = (*retry_after).into();
        }
        let mut response = (status, Json(body)).into_response();
        if let AppError::RateLimited { retry_after } = self
            && let Ok(value) = retry_after.to_string().parse()
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

/// Maps a violated named constraint to a domain error. Check-then-insert is a
/// race; the database is the one place that can say "taken" for certain.
pub fn unique_violation(err: &DbErr, constraint: &str, sqlite_columns: &str) -> bool {
    let message = match err.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) => message,
        _ => return false,
    };
    message.contains(constraint) || message.contains(sqlite_columns)
}
