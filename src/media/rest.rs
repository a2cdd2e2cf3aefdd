//! `POST /api/media/upload` and the routes that serve stored files.
//!
//! The upload's size limit holds while the body streams in: the route's
//! `DefaultBodyLimit` makes the multipart reader stop with 413 once the
//! whole body passes `MEDIA_MAX_BYTES` plus `MULTIPART_OVERHEAD`, and the
//! `file` part is counted chunk by chunk against `MEDIA_MAX_BYTES` itself.
//! Nothing beyond the limit is ever buffered.

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::entity as media;
use super::service::{self, Upload};
use crate::accounts::Role;
use crate::accounts::service::resolve_viewer;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::graphql::pagination::parse_uuid;

/// Room for the multipart boundaries, part headers and a `relatedId` part
/// on top of the file itself.
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// A media's id never gets other bytes, so caches may keep it; a day bounds
/// how long a deleted picture lingers in shared caches.
const CACHE_CONTROL: &str = "public, max-age=86400";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaJson {
    id: Uuid,
    url: String,
    thumbnail_url: String,
    content_type: String,
    size: i64,
    width: Option<i32>,
    height: Option<i32>,
    related_id: Option<Uuid>,
    created_at: String,
}

impl MediaJson {
    fn new(state: &AppState, m: media::Model) -> Self {
        Self {
            url: service::url(state, m.id),
            thumbnail_url: service::thumbnail_url(state, m.id),
            id: m.id,
            content_type: m.content_type,
            size: m.size,
            width: m.width,
            height: m.height,
            related_id: m.related_id,
            created_at: m
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        }
    }
}

pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> AppResult<Response> {
    // Who is asking is settled before a byte of the body is read.
    let caller = resolve_viewer(&state, &headers)
        .await
        .require(Role::Organizer)?;
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| AppError::bad_input("file", format!("expected multipart/form-data: {e}")))?;

    let limit = state.config.media_max_bytes;
    let mut file = None;
    let mut related_id = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") => file = Some(read_limited(field, limit).await?),
            Some("relatedId") => related_id = Some(read_related_id(field).await?),
            // Unknown parts are skipped; reading the next field drains them
            // under the same body limit.
            _ => {}
        }
    }
    let bytes = file.ok_or_else(|| AppError::bad_input("file", "a part named file is required"))?;

    let created = service::upload(&state, caller, Upload { bytes, related_id }).await?;
    Ok((StatusCode::CREATED, Json(MediaJson::new(&state, created))).into_response())
}

async fn read_limited(mut field: Field<'_>, limit: u64) -> AppResult<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn read_related_id(field: Field<'_>) -> AppResult<Uuid> {
    let invalid = || AppError::bad_input("relatedId", "not a valid id");
    let raw = read_limited(field, 64).await.map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    parse_uuid(text.trim()).ok_or_else(invalid)
}

fn too_large(limit: u64) -> AppError {
    AppError::TooLarge(format!("the file is larger than {limit} bytes"))
}

/// The body limit surfaces as a multipart error whose status is 413.
fn multipart_error(err: MultipartError) -> AppError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge("the upload is larger than the limit".into())
    } else {
        AppError::bad_input(
            "file",
            format!("malformed multipart body: {}", err.body_text()),
        )
    }
}

pub async fn file(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Response> {
    serve(&state, &id, false).await
}

pub async fn thumbnail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AppResult<Response> {
    serve(&state, &id, true).await
}

/// Stored files are pictures we encoded ourselves; nosniff and a closed
/// content security policy still make sure no browser runs one as anything
/// else.
async fn serve(state: &AppState, id: &str, thumbnail: bool) -> AppResult<Response> {
    let id = parse_uuid(id).ok_or_else(|| AppError::bad_input("id", "not a valid id"))?;
    let (content_type, bytes) = service::read(state, id, thumbnail).await?;
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, CACHE_CONTROL.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox".to_string(),
        ),
    ];
    Ok((headers, Body::from(bytes)).into_response())
}
