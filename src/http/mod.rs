//! The HTTP surface: GraphQL, the thin REST routes, operations endpoints, and
//! the layers every request passes through (request id, tracing, CORS, body
//! limit, timeout, client address).

mod caching;
mod client_ip;
mod graphql;
mod health;
mod metrics;
mod persisted;
mod shared_answers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::accounts::rest as auth_rest;
use crate::app::AppState;
use crate::graphql::AppSchema;
use crate::media::rest as media_rest;
use crate::payments::webhooks;
use crate::playground;
use crate::tickets::rest as tickets_rest;

pub use client_ip::resolve_client_ip;
use shared_answers::SharedAnswers;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState, schema: AppSchema) -> Router {
    let config = state.config.clone();
    metrics::init();

    let api = Router::new()
        .route("/graphql", post(graphql::post).get(graphql::get))
        .route(playground::ASSET_ROUTE, get(playground::asset))
        .route("/api/auth/login", post(auth_rest::login))
        .route("/api/auth/refresh", post(auth_rest::refresh))
        .route("/api/auth/logout", post(auth_rest::logout))
        .route("/api/payments/webhook/stripe", post(webhooks::stripe))
        .route(
            "/api/payments/webhook/mercadopago",
            post(webhooks::mercadopago),
        )
        .route("/api/tickets/public-key", get(tickets_rest::public_key))
        .route("/api/tickets/{id}/qr.svg", get(tickets_rest::qr_svg))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/media/{id}", get(media_rest::file))
        .route("/api/media/{id}/thumbnail", get(media_rest::thumbnail))
        // Every route so far takes small bodies; uploads, added after this
        // layer, have their own larger limit.
        .layer(RequestBodyLimitLayer::new(config.request_body_limit_bytes))
        .layer(middleware::from_fn(too_large_as_json))
        .route(
            "/api/media/upload",
            post(media_rest::upload).layer(DefaultBodyLimit::max(upload_limit(&config))),
        )
        .layer(axum::Extension(schema))
        .layer(axum::Extension(persisted::PersistedQueries::default()))
        .layer(axum::Extension(Arc::new(SharedAnswers::new(
            Duration::from_millis(config.graphql_answer_cache_ms),
        ))))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            client_ip::middleware,
        ))
        .layer(middleware::from_fn(metrics::track))
        .fallback(not_found)
        .with_state(state);

    // Each `layer` call wraps the ones before it, so the list reads from
    // the innermost (panic guard) to the outermost (request id).
    api.layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_seconds),
        ))
        .layer(cors(&config.cors_origins))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(on_response),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The whole multipart body of an upload: the file's own limit plus room
/// for boundaries and small parts. The multipart reader enforces it as the
/// body streams in and answers 413 (as JSON) past it.
fn upload_limit(config: &crate::config::Config) -> usize {
    usize::try_from(config.media_max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(media_rest::MULTIPART_OVERHEAD)
}

/// Only the configured origins may call from a browser. No credentials are
/// allowed: the API authenticates by bearer token, never by cookie.
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// The body limit's own refusals are plain text: tower-http's for a declared
/// length, axum's extractors' for a body found too long as it streams in.
/// Clients read every other error as JSON with a code, so these answer the
/// same way, in GraphQL's shape on `/graphql`.
async fn too_large_as_json(
    request: Request<axum::body::Body>,
    next: middleware::Next,
) -> axum::response::Response {
    let on_graphql = request.uri().path() == "/graphql";
    let response = next.run(request).await;
    let plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || !plain_text {
        return response;
    }
    match on_graphql {
        true => graphql::body_too_large(),
        false => crate::error::AppError::body_too_large().into_response(),
    }
}

/// Unknown routes answer in the API's error shape too.
async fn not_found() -> axum::response::Response {
    crate::error::AppError::NotFound("Route").into_response()
}

/// The last line of defence: a bug that panics answers 500 with the
/// contract's code, is logged, and leaves the server running.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    // Sentry already has this panic, with its backtrace, from the panic
    // hook; this target keeps the log line from reporting it twice.
    tracing::error!(target: crate::telemetry::PANIC_TARGET, panic = detail, "a request panicked");
    let body = serde_json::json!({
        "errors": [{ "message": "Internal server error", "extensions": { "code": "INTERNAL_SERVER_ERROR" } }]
    });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

fn request_span<B>(request: &Request<B>) -> Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        graphql.operation = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn on_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_millis() as u64);
    tracing::info!("handled");
}
