//! Liveness and readiness, for orchestrators and load balancers.

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::AppState;
use crate::db;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if db::ping(&state.db).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}
