//! The GraphQL endpoint: who is calling, per-request loaders, batch limits,
//! and the error codes of the contract on every error.

use async_graphql::{
    BatchRequest, BatchResponse, ParseRequestError, Request, Response, ServerError,
};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};

use crate::accounts::auth::ClientIp;
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
    request: GraphQLBatchRequest<BodyRejection>,
) -> GraphQLResponse {
    let batch = request.into_inner();
    if let Err((message, code)) = admit(&state, &batch) {
        return GraphQLResponse::from(refusal(message, code));
    }

    let viewer = resolve_viewer(&state, &headers).await;
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

/// Checks what is cheap to check before any parsing: the batch size, the
/// size of each document (a huge document costs CPU to parse even when it is
/// refused later), and NUL characters, which no text column can store.
fn admit(state: &AppState, batch: &BatchRequest) -> Result<(), (String, &'static str)> {
    let requests: Vec<&Request> = match batch {
        BatchRequest::Single(request) => vec![request],
        BatchRequest::Batch(requests) => requests.iter().collect(),
    };
    let max_batch = state.config.graphql_max_batch;
    if requests.is_empty() || requests.len() > max_batch {
        return Err((
            format!("a batch may hold 1 to {max_batch} operations"),
            "GRAPHQL_VALIDATION_FAILED",
        ));
    }

    let max_bytes = state.config.graphql_max_query_bytes;
    for request in requests {
        if request.query.len() > max_bytes {
            return Err((
                format!("a query may be at most {max_bytes} bytes"),
                "GRAPHQL_VALIDATION_FAILED",
            ));
        }
        let variables = serde_json::to_string(&request.variables).unwrap_or_default();
        if request.query.contains('\0')
            || request.query.to_ascii_lowercase().contains("\\u0000")
            || variables.contains("\\u0000")
        {
            return Err((
                "text may not contain NUL characters".into(),
                "BAD_USER_INPUT",
            ));
        }
    }
    Ok(())
}

fn refusal(message: String, code: &str) -> Response {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    Response::from_errors(vec![error])
}

/// A body that is not a GraphQL request at all (bad JSON, wrong content
/// type, too large) still answers in GraphQL's shape, with a code.
pub struct BodyRejection(ParseRequestError);

impl From<ParseRequestError> for BodyRejection {
    fn from(err: ParseRequestError) -> Self {
        Self(err)
    }
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> HttpResponse {
        let too_large = self.0.to_string().contains("length limit exceeded")
            || matches!(&self.0, ParseRequestError::PayloadTooLarge);
        let (status, message) = if too_large {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                "the body is not a GraphQL request: send JSON with a \"query\"",
            )
        };
        let body = serde_json::json!({
            "errors": [{ "message": message, "extensions": { "code": "GRAPHQL_VALIDATION_FAILED" } }]
        });
        (status, axum::Json(body)).into_response()
    }
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
        let field = argument_named(&error.message);
        let bad_argument = field.is_some()
            || error.message.starts_with("Failed to parse")
            || error.message.starts_with("Invalid value");
        let code = if bad_argument {
            if let Some(field) = field {
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("field", field);
            }
            "BAD_USER_INPUT"
        } else if error.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
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

/// The input at fault in an engine message such as `Invalid value for
/// argument "input.price.amount", …`, without the `input.` wrapper.
fn argument_named(message: &str) -> Option<String> {
    let rest = message.split_once("argument \"")?.1;
    let path = rest.split_once('"')?.0;
    Some(path.strip_prefix("input.").unwrap_or(path).to_string())
}
