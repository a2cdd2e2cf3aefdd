//! REST routes for door scanners: the public key that verifies check-in
//! codes offline, and a ticket's code as a QR image.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use qrcode::QrCode;
use qrcode::render::svg;
use serde_json::json;

use super::entity::TicketStatus;
use super::service;
use crate::accounts::service::resolve_viewer;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::graphql::pagination::parse_uuid;

/// The Ed25519 key as a JWK (RFC 8037), with the code format spelled out.
pub async fn public_key(State(state): State<AppState>) -> Response {
    let key = URL_SAFE_NO_PAD.encode(state.signer.public_key().as_bytes());
    let body = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "x": key,
        "codeFormat": "SPG1.<base64url(ticket id bytes ‖ event id bytes)>.<base64url(Ed25519 signature of \"spanglish-ticket-v1\" ‖ those 32 bytes)>",
    });
    (
        [(header::CACHE_CONTROL, "public, max-age=3600")],
        Json(body),
    )
        .into_response()
}

pub async fn qr_svg(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let caller = resolve_viewer(&state, &headers).await.user()?;
    let id = parse_uuid(&id).ok_or_else(|| AppError::bad_input("id", "not a valid id"))?;
    let ticket = service::get_visible(&state.db, caller, id).await?;
    let code = match (ticket.status, ticket.code) {
        (TicketStatus::Confirmed, Some(code)) => code,
        _ => {
            return Err(AppError::conflict(
                "only a confirmed ticket has a check-in code",
            ));
        }
    };

    let image = QrCode::new(code.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("QR encoding: {e}")))?
        .render::<svg::Color>()
        .min_dimensions(256, 256)
        .build();
    let headers = [
        (header::CONTENT_TYPE, "image/svg+xml"),
        (header::CACHE_CONTROL, "private, no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    Ok((headers, image).into_response())
}
