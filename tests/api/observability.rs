//! What an operator sees: GraphQL operations counted and timed by name,
//! type and outcome without letting clients mint series, the database
//! pool's use, and internal errors reported to Sentry without secrets.
//!
//! Each test reads the metrics of a server process of its own: the
//! recorder is process-wide, and the test binary runs many apps at once.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use spanglish::graphql::metrics::MAX_OPERATION_NAMES;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{Backend, ServerProcess, TestApp, error_code, on_both_databases};

on_both_databases!(
    operations_are_counted_by_name_type_and_outcome,
    client_chosen_names_never_multiply_the_series,
    client_chosen_methods_never_multiply_the_series,
    pool_gauges_describe_the_pool,
    internal_errors_reach_sentry_without_secrets,
);

const UPCOMING: &str = "query UpcomingEvents { events(first: 5) { edges { node { id } } } }";
const SIGN_IN: &str = "mutation SignIn($email: String!, $password: String!) { login(email: $email, password: $password) { accessToken } }";

/// One series of the Prometheus text format.
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            Series {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect()
}

/// `a="x",b="y \"quoted\""` into a map; quotes inside values are escaped.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// The sum of the series called `name` whose labels include `wanted`.
fn total(series: &[Series], name: &str, wanted: &[(&str, &str)]) -> f64 {
    series
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            wanted
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(app: &TestApp, server: &ServerProcess) -> Vec<Series> {
    let text = app
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metrics(&text)
}

/// Posts a GraphQL body (one operation or a batch) to the server process.
async fn post(app: &TestApp, server: &ServerProcess, token: Option<&str>, body: Value) -> Value {
    let mut request = app
        .client
        .post(format!("{}/graphql", server.base))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GraphQL answers 200, errors or not");
    response.json().await.unwrap()
}

fn quiet() -> Vec<(&'static str, String)> {
    vec![("BACKGROUND_JOBS", "false".to_string())]
}

async fn operations_are_counted_by_name_type_and_outcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let server = ServerProcess::start_with(&app, &quiet()).await;
    let member = app.register("Olga", "olga@example.org").await;

    // A named query alone, then again in a batch beside a named mutation
    // that fails: a batch counts each of its operations.
    let answer = post(&app, &server, None, json!({ "query": UPCOMING })).await;
    assert!(answer["errors"].is_null(), "{answer}");
    let batch = json!([
        { "query": UPCOMING },
        { "query": SIGN_IN, "variables": { "email": member.email, "password": "not the password" } },
    ]);
    let answers = post(&app, &server, None, batch).await;
    assert!(answers[0]["errors"].is_null(), "{answers}");
    assert_eq!(error_code(&answers[1]), "UNAUTHENTICATED", "{answers}");

    // Two operations without a name, and a document that does not parse.
    let anonymous = json!({ "query": "{ me { id } }" });
    post(&app, &server, Some(&member.token), anonymous.clone()).await;
    post(&app, &server, Some(&member.token), anonymous).await;
    let broken = post(&app, &server, None, json!({ "query": "query Broken {" })).await;
    assert_eq!(error_code(&broken), "GRAPHQL_VALIDATION_FAILED");

    let series = scrape(&app, &server).await;
    let count = |operation, kind, outcome| {
        total(
            &series,
            "graphql_operations_total",
            &[
                ("operation", operation),
                ("type", kind),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(count("UpcomingEvents", "query", "ok"), 2.0);
    assert_eq!(count("UpcomingEvents", "query", "error"), 0.0);
    assert_eq!(count("SignIn", "mutation", "error"), 1.0);
    assert_eq!(count("anonymous", "query", "ok"), 2.0);
    assert_eq!(count("anonymous", "unknown", "error"), 1.0);
    assert_eq!(total(&series, "graphql_operations_total", &[]), 6.0);

    let timed = [("operation", "UpcomingEvents"), ("type", "query")];
    assert_eq!(
        total(&series, "graphql_operation_duration_seconds_count", &timed),
        2.0
    );
    assert!(total(&series, "graphql_operation_duration_seconds_sum", &timed) > 0.0);
    let signed_in = [("operation", "SignIn"), ("type", "mutation")];
    assert_eq!(
        total(
            &series,
            "graphql_operation_duration_seconds_count",
            &signed_in
        ),
        1.0
    );
}

async fn client_chosen_names_never_multiply_the_series(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut settings = quiet();
    settings.push(("GRAPHQL_MAX_BATCH", "100".to_string()));
    let server = ServerProcess::start_with(&app, &settings).await;

    // A quote would break the exposition format; a long name is a cheap way
    // to bloat it. Neither becomes a label.
    let quoted = json!({ "query": "query Q { __typename }", "operationName": "a\"b" });
    post(&app, &server, None, quoted).await;
    let long = "L".repeat(100);
    let answer = post(
        &app,
        &server,
        None,
        json!({ "query": format!("query {long} {{ __typename }}") }),
    )
    .await;
    assert_eq!(answer["data"]["__typename"], "Query", "{answer}");

    // Three hundred distinct names, a hundred per batch.
    for chunk in 0..3 {
        let batch: Vec<Value> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| json!({ "query": format!("query Op{i} {{ __typename }}") }))
            .collect();
        post(&app, &server, None, Value::Array(batch)).await;
    }
    // A name admitted before the cap keeps its own series.
    post(
        &app,
        &server,
        None,
        json!({ "query": "query Op0 { __typename }" }),
    )
    .await;

    let series = scrape(&app, &server).await;
    let operations: Vec<&Series> = series
        .iter()
        .filter(|s| s.name == "graphql_operations_total")
        .collect();
    let named: HashSet<&str> = operations
        .iter()
        .map(|s| s.labels["operation"].as_str())
        .filter(|name| name.starts_with("Op"))
        .collect();
    let first: HashSet<String> = (0..MAX_OPERATION_NAMES).map(|i| format!("Op{i}")).collect();
    assert_eq!(named.len(), MAX_OPERATION_NAMES);
    assert!(named.iter().all(|name| first.contains(*name)));
    assert!(
        operations
            .iter()
            .all(|s| !s.labels["operation"].contains('"') && s.labels["operation"] != long),
    );

    let count = |operation, kind, outcome| {
        total(
            &series,
            "graphql_operations_total",
            &[
                ("operation", operation),
                ("type", kind),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(count("Op0", "query", "ok"), 2.0);
    // Op200 to Op299 and the long name; the quoted name also asked for an
    // operation the document lacks, so its type is unknown.
    assert_eq!(count("other", "query", "ok"), 101.0);
    assert_eq!(count("other", "unknown", "error"), 1.0);
    assert_eq!(total(&series, "graphql_operations_total", &[]), 303.0);
}

/// HTTP lets a client invent methods; each one must not become a label, or
/// anyone could grow the metrics without bound.
async fn client_chosen_methods_never_multiply_the_series(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let server = ServerProcess::start_with(&app, &quiet()).await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        for route in ["/graphql", "/healthz"] {
            let response = app
                .client
                .request(method.clone(), format!("{}{route}", server.base))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{route}");
        }
    }

    let series = scrape(&app, &server).await;
    let methods: HashSet<&str> = series
        .iter()
        .filter(|s| s.name.starts_with("http_request"))
        .filter_map(|s| s.labels.get("method").map(String::as_str))
        .collect();
    assert!(
        methods.iter().all(|m| !m.starts_with("BREW")),
        "{methods:?}"
    );
    assert_eq!(
        total(&series, "http_requests_total", &[("method", "other")]),
        40.0
    );
}

async fn pool_gauges_describe_the_pool(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut settings = quiet();
    settings.push(("DATABASE_MAX_CONNECTIONS", "7".to_string()));
    let server = ServerProcess::start_with(&app, &settings).await;
    post(&app, &server, None, json!({ "query": UPCOMING })).await;

    let series = scrape(&app, &server).await;
    let max = total(&series, "db_pool_max_connections", &[]);
    let idle = total(&series, "db_pool_connections", &[("state", "idle")]);
    let in_use = total(&series, "db_pool_connections", &[("state", "in_use")]);
    assert_eq!(max, 7.0);
    assert!(
        series
            .iter()
            .any(|s| s.name == "db_pool_connections" && s.labels["state"] == "in_use"),
        "the in_use series is there even at zero"
    );
    // The pool keeps at least one connection open, and never more than max.
    assert!(idle + in_use >= 1.0, "idle {idle}, in use {in_use}");
    assert!(
        idle + in_use <= max,
        "idle {idle}, in use {in_use}, max {max}"
    );
}

async fn internal_errors_reach_sentry_without_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sentry = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/42/envelope/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&sentry)
        .await;
    let key = "5e17e7c0ffee4badbeef5e17e7c0ffee";
    let mut settings = quiet();
    settings.push((
        "SENTRY_DSN",
        format!("http://{key}@{}/42", sentry.address()),
    ));
    settings.push(("RUST_LOG", "info".to_string()));
    let server = ServerProcess::start_capturing(&app, &settings).await;
    let member = app.register("Witness", "witness@example.org").await;

    // The database loses a table under the running server: signing in can
    // check the password but not store the session.
    app.state
        .db
        .execute_unprepared("ALTER TABLE refresh_tokens RENAME TO refresh_tokens_gone")
        .await
        .unwrap();
    let password = "correct horse battery";
    let variables = json!({ "email": member.email, "password": password });
    let answer = post(
        &app,
        &server,
        Some(&member.token),
        json!({ "query": SIGN_IN, "operationName": "SignIn", "variables": variables }),
    )
    .await;
    assert_eq!(error_code(&answer), "INTERNAL_SERVER_ERROR", "{answer}");
    assert_eq!(answer["errors"][0]["message"], "Internal server error");

    // The stand-in receives the error, with the release and the request's
    // operation, and nothing of the caller's secrets.
    let envelope = received_envelope(&sentry, "refresh_tokens").await;
    let release = format!("\"release\":\"spanglish@{}\"", env!("CARGO_PKG_VERSION"));
    assert!(envelope.contains(&release), "{envelope}");
    assert!(
        envelope.contains("\"environment\":\"development\""),
        "{envelope}"
    );
    assert!(envelope.contains("SignIn"), "{envelope}");
    assert!(!envelope.contains(&member.token), "{envelope}");
    assert!(!envelope.contains(password), "{envelope}");
    assert!(!envelope.contains(&member.email), "{envelope}");

    // The server's own logs show the error but never the DSN's key.
    let output = server.output();
    assert!(output.contains("unexpected error"), "{output}");
    assert!(!output.contains(key), "{output}");
}

/// The first envelope the Sentry stand-in received that mentions `needle`,
/// waiting for the client's background sender.
async fn received_envelope(sentry: &MockServer, needle: &str) -> String {
    for _ in 0..100 {
        let found = sentry
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|request| String::from_utf8_lossy(&request.body).into_owned())
            .find(|body| body.contains(needle));
        if let Some(body) = found {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no envelope mentioning {needle} reached the Sentry stand-in");
}
