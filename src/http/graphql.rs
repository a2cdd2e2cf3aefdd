//! The GraphQL endpoint: who is calling, per-request loaders, batch limits,
//! and the error codes of the contract on every error.

use async_graphql::{BatchRequest, BatchResponse, Request, Response, ServerError};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};

use crate::accounts::auth::{ClientIp, bearer};
use crate::accounts::service::resolve_viewer;
use crate::app::AppState;
use crate::error::AppError;
use crate::graphql::AppSchema;
use crate::graphql::loaders::Loaders;
use crate::playground;

pub async fn post(
    State(state): State<AppState>,
    Extension(schema): Extension<AppSchema>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    request: GraphQLBatchRequest,
) -> GraphQLResponse {
    let batch = request.into_inner();
    let size = match &batch {
        BatchRequest::Single(_) => 1,
        BatchRequest::Batch(requests) => requests.len(),
    };
    if size == 0 || size > state.config.graphql_max_batch {
        let message = format!(
            "a batch may hold 1 to {} operations",
            state.config.graphql_max_batch
        );
        return GraphQLResponse::from(validation_failure(message));
    }

    let viewer = resolve_viewer(&state, bearer(&headers)).await;
    let prepare = |request: Request| {
        record_operation(&request);
        request
            .data(viewer)
            .data(ip)
            .data(Loaders::new(&state.db, state.clock.now()))
    };
    let batch = match batch {
        BatchRequest::Single(request) => BatchRequest::Single(prepare(request)),
        BatchRequest::Batch(requests) => {
            BatchRequest::Batch(requests.into_iter().map(prepare).collect())
        }
    };

    let response = match schema.execute_batch(batch).await {
        BatchResponse::Single(response) => BatchResponse::Single(with_codes(response)),
        BatchResponse::Batch(responses) => {
            BatchResponse::Batch(responses.into_iter().map(with_codes).collect())
        }
    };
    GraphQLResponse::from(response)
}

/// `GET /graphql` opens the playground in a browser, where it is enabled.
pub async fn get(State(state): State<AppState>) -> HttpResponse {
    if state.config.playground_enabled() {
        return playground::page("/graphql");
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "use POST for GraphQL",
    )
        .into_response()
}

fn record_operation(request: &Request) {
    let name = request.operation_name.as_deref().unwrap_or("anonymous");
    tracing::Span::current().record("graphql.operation", name);
}

fn validation_failure(message: String) -> Response {
    with_codes(Response::from_errors(vec![ServerError::new(message, None)]))
}

/// Gives every error a contract code. Errors raised by the domain carry an
/// `AppError` that says which; the rest come from the GraphQL engine: a request-level
/// error (no path) is a document that failed to parse, validate or stay
/// within limits, and a field-level one is an argument that failed to parse.
fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        if let Some(source) = error.source.clone()
            && let Some(app_error) = source.downcast_ref::<AppError>()
        {
            app_error.apply_to(error);
            continue;
        }
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if error.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else if error.message.starts_with("Failed to parse")
            || error.message.starts_with("Invalid value")
        {
            "BAD_USER_INPUT"
        } else {
            // An error that skipped the domain's error type: say nothing of it.
            tracing::error!(error = %error.message, "uncoded resolver error");
            error.message = "Internal server error".into();
            "INTERNAL_SERVER_ERROR"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
    response
}
