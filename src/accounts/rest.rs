//! The REST mirror of sign-in, refresh and sign-out, for clients that would
//! rather not speak GraphQL for their session.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::ClientIp;
use super::service::{self, Session};
use crate::app::AppState;
use crate::error::{AppError, AppResult};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    refresh_token: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

impl From<Session> for TokenPair {
    fn from(s: Session) -> Self {
        Self {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            expires_in: s.expires_in,
        }
    }
}

/// Reads a JSON body, answering a malformed one in the API's error shape
/// rather than axum's plain text; one over the body limit stays a 413.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> AppResult<T> {
    body.map(|Json(body)| body).map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return AppError::body_too_large();
        }
        AppError::BadInput {
            message: format!(
                "the body must be JSON of the documented shape: {}",
                rejection.body_text()
            ),
            field: None,
        }
    })
}

pub async fn login(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> AppResult<Json<TokenPair>> {
    let body = json_body(body)?;
    state.limiter.attempt_from(ip.0)?;
    Ok(Json(
        service::login(&state, &body.email, &body.password, ip.0)
            .await?
            .into(),
    ))
}

pub async fn refresh(
    State(state): State<AppState>,
    body: Result<Json<RefreshBody>, JsonRejection>,
) -> AppResult<Json<TokenPair>> {
    let body = json_body(body)?;
    Ok(Json(
        service::refresh(&state, &body.refresh_token).await?.into(),
    ))
}

pub async fn logout(
    State(state): State<AppState>,
    body: Result<Json<RefreshBody>, JsonRejection>,
) -> AppResult<Response> {
    let body = json_body(body)?;
    service::logout(&state, &body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
