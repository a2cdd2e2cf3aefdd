//! The GraphQL endpoint: who is calling, per-request loaders, batch limits,
//! persisted queries, queries over GET, the caching headers, and the error
//! codes of the contract on every error.

use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use async_graphql::{
    BatchRequest, BatchResponse, ParseRequestError, Request, Response, ServerError,
};
use async_graphql_axum::GraphQLBatchRequest;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use serde::Deserialize;

use super::caching::{self, Policy};
use super::persisted::{PersistedQueries, Refused};
use super::shared_answers::{Lookup, SharedAnswers};
use crate::accounts::auth::{ClientIp, Viewer};
use crate::accounts::service::resolve_viewer;
use crate::app::AppState;
use crate::error::AppError;
use crate::graphql::AppSchema;
use crate::graphql::loaders::Loaders;
use crate::playground;

/// What every operation of one HTTP request shares.
struct Call<'a> {
    state: &'a AppState,
    schema: &'a AppSchema,
    persisted: &'a PersistedQueries,
    answers: &'a Arc<SharedAnswers>,
    ip: ClientIp,
    method: Method,
    headers: &'a HeaderMap,
}

pub async fn post(
    State(state): State<AppState>,
    Extension(schema): Extension<AppSchema>,
    Extension(persisted): Extension<PersistedQueries>,
    Extension(answers): Extension<Arc<SharedAnswers>>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    request: GraphQLBatchRequest<BodyRejection>,
) -> HttpResponse {
    let call = Call {
        state: &state,
        schema: &schema,
        persisted: &persisted,
        answers: &answers,
        ip,
        method: Method::POST,
        headers: &headers,
    };
    call.execute(request.into_inner()).await
}

/// The GraphQL-over-HTTP parameters of a GET: `variables` and `extensions`
/// are JSON in the query string.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// `GET /graphql?query=…` runs a query (never a mutation), so that a CDN can
/// cache public reads; without a query it opens the playground in a browser,
/// where the playground is enabled.
pub async fn get(
    State(state): State<AppState>,
    Extension(schema): Extension<AppSchema>,
    Extension(persisted): Extension<PersistedQueries>,
    Extension(answers): Extension<Arc<SharedAnswers>>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    uri: Uri,
) -> HttpResponse {
    let Ok(Query(params)) = Query::<GetParams>::try_from_uri(&uri) else {
        return bad_request("the query string is not a GraphQL request");
    };
    if params.query.is_none() && params.extensions.is_none() {
        return without_query(&state, &headers);
    }
    let request = match params.into_request() {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };

    let call = Call {
        state: &state,
        schema: &schema,
        persisted: &persisted,
        answers: &answers,
        ip,
        method: Method::GET,
        headers: &headers,
    };
    call.execute(BatchRequest::Single(request)).await
}

impl GetParams {
    fn into_request(self) -> Result<Request, String> {
        let variables = json_param(self.variables.as_deref(), "variables")?;
        let extensions = json_param(self.extensions.as_deref(), "extensions")?;
        let mut request = Request::new(self.query.unwrap_or_default())
            .variables(async_graphql::Variables::from_json(variables));
        request.operation_name = self.operation_name.filter(|name| !name.is_empty());
        if let serde_json::Value::Object(map) = extensions {
            for (key, value) in map {
                let value = async_graphql::Value::from_json(value)
                    .map_err(|_| "extensions is not valid JSON".to_string())?;
                request.extensions.insert(key, value);
            }
        }
        Ok(request)
    }
}

fn json_param(raw: Option<&str>, name: &str) -> Result<serde_json::Value, String> {
    match raw {
        None | Some("") => Ok(serde_json::Value::Null),
        Some(text) => match serde_json::from_str(text) {
            Ok(value @ (serde_json::Value::Object(_) | serde_json::Value::Null)) => Ok(value),
            _ => Err(format!("{name} must be a JSON object")),
        },
    }
}

/// A GET without a query: the playground for a browser, as before queries
/// over GET existed; otherwise a request error.
fn without_query(state: &AppState, headers: &HeaderMap) -> HttpResponse {
    if state.config.playground_enabled() && accepts_html(headers) {
        return playground::page("/graphql");
    }
    bad_request("send a query: GET /graphql?query=…, or POST it as JSON")
}

/// Browsers ask for `text/html`; a client that names no type, or any type,
/// gets the page as it always did.
fn accepts_html(headers: &HeaderMap) -> bool {
    match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(accept) => accept.contains("text/html") || accept.contains("*/*"),
    }
}

impl Call<'_> {
    async fn execute(&self, batch: BatchRequest) -> HttpResponse {
        if let Err((message, code)) = admit(self.state, &batch) {
            return self.answer(BatchResponse::Single(refusal(message, code)));
        }

        let viewer = resolve_viewer(self.state, self.headers).await;
        match batch {
            BatchRequest::Single(request) => self.single(viewer, request).await,
            BatchRequest::Batch(requests) => self.batch(viewer, requests).await,
        }
    }

    /// One operation. An anonymous query may be answered from, and then
    /// fill, the shared answers, or wait for the same query someone else is
    /// running; a write makes them all out of date.
    async fn single(&self, viewer: Viewer, mut request: Request) -> HttpResponse {
        let writes = match self.prepare(&mut request) {
            Ok(writes) => writes,
            Err(early) => return self.early(early),
        };
        if writes {
            let response = self.write(viewer, request).await;
            return self.answer(BatchResponse::Single(response));
        }

        let shared = match caching::anonymous(self.headers) {
            true => self.answers.lookup(&request),
            false => None,
        };
        let ticket = match shared {
            Some(Lookup::Kept(body)) => return self.send(body, true),
            Some(Lookup::Wait(pending)) => match pending.answer().await {
                Some(body) => return self.send(body, true),
                None => None,
            },
            Some(Lookup::Run(ticket)) => Some(ticket),
            None => None,
        };

        let response = self.run(viewer, request).await;
        let succeeded = response.errors.is_empty();
        let Some(body) = serialize(&BatchResponse::Single(response)) else {
            return AppError::Internal(anyhow::anyhow!("serializing a GraphQL response"))
                .into_response();
        };
        if let (true, Some(ticket)) = (succeeded, ticket) {
            ticket.store(body.clone());
        }
        self.send(body, succeeded)
    }

    /// Several operations, one after the other as the engine runs a batch;
    /// never shared.
    async fn batch(&self, viewer: Viewer, requests: Vec<Request>) -> HttpResponse {
        let mut responses = Vec::with_capacity(requests.len());
        for mut request in requests {
            let response = match self.prepare(&mut request) {
                Ok(false) => self.run(viewer, request).await,
                Ok(true) => self.write(viewer, request).await,
                Err(Early::Answer(response)) => *response,
                Err(Early::Refused(refused)) => return *refused,
            };
            responses.push(response);
        }
        self.answer(BatchResponse::Batch(responses))
    }

    /// Looks up a persisted document and refuses a write over GET. Says
    /// whether the operation writes.
    fn prepare(&self, request: &mut Request) -> Result<bool, Early> {
        if let Err(refused) = self.persisted.resolve(request) {
            return Err(Early::Answer(Box::new(persisted_refusal(refused))));
        }
        let writes = writes(request);
        if self.method == Method::GET && writes {
            return Err(Early::Refused(Box::new(mutation_over_get())));
        }
        Ok(writes)
    }

    fn early(&self, early: Early) -> HttpResponse {
        match early {
            Early::Answer(response) => self.answer(BatchResponse::Single(*response)),
            Early::Refused(refused) => *refused,
        }
    }

    /// Runs one operation with the caller and fresh loaders.
    async fn run(&self, viewer: Viewer, request: Request) -> Response {
        record_operation(&request);
        let request = request
            .data(viewer)
            .data(self.ip)
            .data(Loaders::new(&self.state.db, self.state.clock.now()));
        with_codes(self.schema.execute(request).await)
    }

    /// Runs a mutation. What it changed may change what anonymous callers
    /// see, so the shared answers go, unless it was refused outright: failed
    /// sign-ins must not keep emptying them. The shared answers go too when
    /// the mutation is cut off (a timeout, a client gone), since its commit
    /// may already be done.
    async fn write(&self, viewer: Viewer, request: Request) -> Response {
        let mut forget = ForgetOnDrop {
            answers: self.answers,
            armed: true,
        };
        let response = self.run(viewer, request).await;
        forget.armed = !refused_outright(&response);
        response
    }

    /// The JSON answer with its caching headers.
    fn answer(&self, response: BatchResponse) -> HttpResponse {
        let succeeded = match &response {
            BatchResponse::Single(one) => one.errors.is_empty(),
            BatchResponse::Batch(all) => all.iter().all(|one| one.errors.is_empty()),
        };
        match serialize(&response) {
            Some(body) => self.send(body, succeeded),
            None => AppError::Internal(anyhow::anyhow!("serializing a GraphQL response"))
                .into_response(),
        }
    }

    /// Public only for a GET whose every answer is free of errors (and,
    /// being a GET, a query).
    fn send(&self, body: Bytes, succeeded: bool) -> HttpResponse {
        let policy = Policy::decide(
            &self.method,
            self.headers,
            succeeded,
            self.state.config.graphql_cache_max_age,
        );
        caching::respond(policy, self.headers, StatusCode::OK, body)
    }
}

/// Drops the shared answers when it goes, unless disarmed.
struct ForgetOnDrop<'a> {
    answers: &'a SharedAnswers,
    armed: bool,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.answers.forget_all();
        }
    }
}

/// Nothing was done: there are errors, every root field is null, and every
/// error is about a root field itself (a refused login, a guard). An error
/// deeper down means a root field's resolver finished, and perhaps its
/// commit with it (a field of the booked ticket failing, say).
fn refused_outright(response: &Response) -> bool {
    let nothing_answered = match &response.data {
        async_graphql::Value::Object(fields) => fields
            .values()
            .all(|value| matches!(value, async_graphql::Value::Null)),
        _ => true,
    };
    !response.errors.is_empty()
        && nothing_answered
        && response.errors.iter().all(|error| error.path.len() <= 1)
}

/// What became of an operation before it could run.
enum Early {
    /// An answer in GraphQL's shape (a persisted-query miss, say).
    Answer(Box<Response>),
    /// An HTTP refusal (a mutation over GET).
    Refused(Box<HttpResponse>),
}

fn serialize(response: &BatchResponse) -> Option<Bytes> {
    match serde_json::to_vec(response) {
        Ok(body) => Some(Bytes::from(body)),
        Err(err) => {
            tracing::error!(error = %err, "serializing a GraphQL response");
            None
        }
    }
}

/// Whether the operation the request would run is a mutation (or anything
/// but a query). Every operation the request might select counts, so an
/// ambiguous document cannot slip one through; one that does not parse is
/// left to the engine, which reports it.
fn writes(request: &mut Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    document
        .operations
        .iter()
        .filter(|(op_name, _)| match (&name, op_name) {
            (Some(wanted), Some(op_name)) => op_name.as_str() == wanted,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .any(|(_, operation)| operation.node.ty != OperationType::Query)
}

/// GraphQL over HTTP: a GET must not run a mutation; 405 names the method
/// that may.
fn mutation_over_get() -> HttpResponse {
    let body = serde_json::json!({
        "errors": [{
            "message": "a mutation must be sent with POST",
            "extensions": { "code": "GRAPHQL_VALIDATION_FAILED" }
        }]
    });
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST"), (header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

/// Apollo clients recognise a miss by this message and this code, and then
/// send the document along with its hash.
fn persisted_refusal(refused: Refused) -> Response {
    match refused {
        Refused::NotFound => refusal("PersistedQueryNotFound".into(), "PERSISTED_QUERY_NOT_FOUND"),
        Refused::Invalid(message) => refusal(message.into(), "GRAPHQL_VALIDATION_FAILED"),
    }
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
        if too_large {
            return body_too_large();
        }
        bad_request("the body is not a GraphQL request: send JSON with a \"query\"")
    }
}

pub(super) fn body_too_large() -> HttpResponse {
    request_error(StatusCode::PAYLOAD_TOO_LARGE, crate::error::BODY_TOO_LARGE)
}

fn bad_request(message: &str) -> HttpResponse {
    request_error(StatusCode::BAD_REQUEST, message)
}

/// A request that is not GraphQL at all still answers in GraphQL's shape,
/// with a code, and is never cached.
fn request_error(status: StatusCode, message: &str) -> HttpResponse {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": "GRAPHQL_VALIDATION_FAILED" } }]
    });
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
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

#[cfg(test)]
mod tests {
    use async_graphql::{PathSegment, Value};

    use super::*;

    fn answer(data: serde_json::Value, error_paths: &[&[&str]]) -> Response {
        let mut response = Response::new(Value::from_json(data).unwrap());
        for path in error_paths {
            let mut error = ServerError::new("refused", None);
            error.path = path
                .iter()
                .map(|field| PathSegment::Field((*field).to_string()))
                .collect();
            response.errors.push(error);
        }
        response
    }

    #[test]
    fn only_a_mutation_refused_at_its_root_changed_nothing() {
        let refused_login = answer(serde_json::json!({ "login": null }), &[&["login"]]);
        assert!(refused_outright(&refused_login));
        let not_even_run = answer(serde_json::Value::Null, &[&[]]);
        assert!(refused_outright(&not_even_run));

        let booked = answer(serde_json::json!({ "bookTicket": { "id": "1" } }), &[]);
        assert!(!refused_outright(&booked));
        let answered_null = answer(serde_json::json!({ "logout": null }), &[]);
        assert!(!refused_outright(&answered_null));
        // The ticket was booked, then one of its non-null fields failed,
        // which nulls the whole root field.
        let booked_then_failed = answer(
            serde_json::json!({ "bookTicket": null }),
            &[&["bookTicket", "event"]],
        );
        assert!(!refused_outright(&booked_then_failed));
        let one_of_two = answer(serde_json::json!({ "a": null, "b": true }), &[&["a"]]);
        assert!(!refused_outright(&one_of_two));
    }
}
