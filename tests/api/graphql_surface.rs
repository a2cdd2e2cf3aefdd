//! The GraphQL surface is safe to expose: limits, error codes, CORS,
//! introspection and the playground.

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, error_code, on_both_databases};

async fn documents_that_do_not_parse_or_validate_are_rejected_with_a_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        error_code(&app.gql(None, "{ events { ", json!({})).await),
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert_eq!(
        error_code(&app.gql(None, "{ evnts { totalCount } }", json!({})).await),
        "GRAPHQL_VALIDATION_FAILED"
    );
    let answer = app
        .gql(None, "{ events(first: 101) { totalCount } }", json!({}))
        .await;
    assert_eq!(error_code(&answer), "BAD_USER_INPUT");
    assert_eq!(answer["errors"][0]["extensions"]["field"], "first");
}

async fn depth_is_limited_through_fragments(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.graphql_max_depth = 4).await;
    let shallow = "{ events { edges { node { id } } } }";
    assert!(app.gql(None, shallow, json!({})).await["errors"].is_null());

    let hidden = "query { ...A } fragment A on Query { events { ...B } } fragment B on EventConnection { edges { ...C } } fragment C on EventEdge { node { price { amount } } }";
    let answer = app.gql(None, hidden, json!({})).await;
    assert_eq!(error_code(&answer), "GRAPHQL_VALIDATION_FAILED", "{answer}");
}

async fn complexity_is_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.graphql_max_complexity = 20).await;
    let many: String = (0..25).map(|i| format!("f{i}: title ")).collect();
    let answer = app
        .gql(
            None,
            &format!("{{ events {{ edges {{ node {{ {many} }} }} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(error_code(&answer), "GRAPHQL_VALIDATION_FAILED", "{answer}");
}

async fn root_fields_are_capped_even_through_fragments(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.graphql_max_root_fields = 3).await;
    assert!(
        app.gql(
            None,
            "{ a: me { id } b: me { id } c: me { id } }",
            json!({})
        )
        .await["errors"]
            .is_null()
    );
    let answer = app
        .gql(
            None,
            "{ a: me { id } ...F } fragment F on Query { b: me { id } c: me { id } d: me { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&answer), "GRAPHQL_VALIDATION_FAILED", "{answer}");
}

async fn batches_are_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.graphql_max_batch = 2).await;
    let one = json!({ "query": "{ me { id } }" });
    let two: Value = app
        .client
        .post(app.url("/graphql"))
        .json(&json!([one, one]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(two.as_array().map(Vec::len), Some(2), "{two}");
    let three: Value = app
        .client
        .post(app.url("/graphql"))
        .json(&json!([one, one, one]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&three), "GRAPHQL_VALIDATION_FAILED", "{three}");
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.request_body_limit_bytes = 1024).await;
    let padding = "x".repeat(4096);
    let body = json!({ "query": format!("{{ me {{ id }} }} # {padding}") }).to_string();

    // Declared by Content-Length or found while the body streams in: the
    // same answer, in the API's shape (GraphQL's on /graphql).
    for route in [
        "/graphql",
        "/api/auth/login",
        "/api/payments/webhook/stripe",
    ] {
        let declared = app
            .client
            .post(app.url(route))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let declared = (
            declared.status().as_u16(),
            declared.json::<Value>().await.unwrap_or(Value::Null),
        );
        let streamed = post_chunked(&app, route, &body).await;
        for (status, answer) in [declared, streamed] {
            assert_eq!(status, 413, "{route}: {answer}");
            let code = match route {
                "/graphql" => error_code(&answer),
                _ => answer["code"].as_str().unwrap_or(""),
            };
            let expected = match route {
                "/graphql" => "GRAPHQL_VALIDATION_FAILED",
                _ => "BAD_USER_INPUT",
            };
            assert_eq!(code, expected, "{route}: {answer}");
        }
    }
}

/// A POST whose length is not declared (`Transfer-Encoding: chunked`), which
/// reqwest sends only for streams; written by hand. Answers the status and
/// the JSON body (`null` when it is not JSON).
async fn post_chunked(app: &TestApp, route: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST {route} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let json = match chunked {
        // One chunk: its size line, then the bytes.
        true => rest.split_once("\r\n").map_or("", |(_, r)| r),
        false => rest,
    };
    let json = json.split("\r\n").next().unwrap_or("");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

async fn production_hides_introspection_and_the_playground(backend: Backend) {
    let dev = TestApp::spawn(backend).await;
    assert!(
        dev.gql(None, "{ __schema { queryType { name } } }", json!({}))
            .await["errors"]
            .is_null()
    );
    let page = dev
        .client
        .get(dev.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no asset from the internet"
    );
    let script = dev
        .client
        .get(dev.url("/playground/assets/graphiql.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);

    let prod = TestApp::spawn_with(backend, |c| {
        c.app_env = spanglish::config::AppEnv::Production;
        c.public_url = Some("https://api.example.org".into());
    })
    .await;
    let answer = prod
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert!(answer["data"]["__schema"].is_null(), "{answer}");
    assert_ne!(
        prod.client
            .get(prod.url("/graphql"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn cors_allows_only_configured_origins_and_never_credentials(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.cors_origins = vec!["https://spanglish.example".into()]
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://spanglish.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://spanglish.example"
    );
    assert!(
        !allowed
            .headers()
            .contains_key("access-control-allow-credentials")
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

async fn internal_details_never_reach_the_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let answer = app
        .gql(None, "{ events(after: \"%%%\") { totalCount } }", json!({}))
        .await;
    assert_eq!(error_code(&answer), "BAD_USER_INPUT", "{answer}");
    let text = answer.to_string().to_lowercase();
    assert!(!text.contains("sql") && !text.contains("sqlx"), "{answer}");
}

on_both_databases!(
    documents_that_do_not_parse_or_validate_are_rejected_with_a_code,
    depth_is_limited_through_fragments,
    complexity_is_limited,
    root_fields_are_capped_even_through_fragments,
    batches_are_limited,
    oversized_bodies_are_refused,
    production_hides_introspection_and_the_playground,
    cors_allows_only_configured_origins_and_never_credentials,
    internal_details_never_reach_the_client,
);

mod hardening {
    use serde_json::{Value, json};

    use crate::support::{Backend, TestApp, error_code, error_field, on_both_databases};

    async fn bodies_that_are_not_graphql_requests_answer_with_a_code(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for body in [
            "{\"query\": \"{ me { id } \"",
            "",
            "42",
            "{\"query\": null}",
        ] {
            let response = app
                .client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{body}");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(
                error_code(&answer),
                "GRAPHQL_VALIDATION_FAILED",
                "{body}: {answer}"
            );
        }
        let rest = app
            .client
            .post(app.url("/api/auth/login"))
            .header("content-type", "application/json")
            .body("{\"email\":")
            .send()
            .await
            .unwrap();
        assert_eq!(rest.status(), 400);
        assert_eq!(
            rest.json::<Value>().await.unwrap()["code"],
            "BAD_USER_INPUT"
        );
    }

    async fn nul_characters_and_oversized_documents_are_refused(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.graphql_max_query_bytes = 2048).await;
        let search = "query($s: String) { events(filter: { search: $s }) { totalCount } }";
        let answer = app.gql(None, search, json!({ "s": "a\u{0}b" })).await;
        assert_eq!(error_code(&answer), "BAD_USER_INPUT", "{answer}");
        let literal = app
            .gql(
                None,
                "{ events(filter: { search: \"a\\u0000b\" }) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(error_code(&literal), "BAD_USER_INPUT", "{literal}");

        let huge = format!("{{ me {{ {} }} }}", "id ".repeat(1000));
        assert_eq!(
            error_code(&app.gql(None, &huge, json!({})).await),
            "GRAPHQL_VALIDATION_FAILED"
        );
    }

    async fn list_cost_grows_with_first(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.graphql_max_complexity = 500).await;
        let fields = "id slug title description location capacity";
        let small = format!("{{ events(first: 10) {{ edges {{ node {{ {fields} }} }} }} }}");
        assert!(app.gql(None, &small, json!({})).await["errors"].is_null());
        let large = format!("{{ events(first: 100) {{ edges {{ node {{ {fields} }} }} }} }}");
        assert_eq!(
            error_code(&app.gql(None, &large, json!({})).await),
            "GRAPHQL_VALIDATION_FAILED"
        );
    }

    async fn ids_are_hyphenated_uuids_and_odd_authorization_is_refused(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let query = "query($id: ID!) { event(id: $id) { id } }";
        for id in [
            "{0192a0f0-0000-7000-8000-000000000000}",
            "urn:uuid:0192a0f0-0000-7000-8000-000000000000",
            "0192a0f000007000800000000000000000",
        ] {
            let answer = app.gql(None, query, json!({ "id": id })).await;
            assert_eq!(error_code(&answer), "BAD_USER_INPUT", "{id}: {answer}");
            assert_eq!(error_field(&answer), "id");
        }
        for header in ["Token abc", "Basic YTpi", "Bearer"] {
            let answer: Value = app
                .client
                .post(app.url("/graphql"))
                .header("authorization", header)
                .json(&json!({ "query": "{ me { id } }" }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(error_code(&answer), "UNAUTHENTICATED", "{header}: {answer}");
        }
    }

    on_both_databases!(
        bodies_that_are_not_graphql_requests_answer_with_a_code,
        nul_characters_and_oversized_documents_are_refused,
        list_cost_grows_with_first,
        ids_are_hyphenated_uuids_and_odd_authorization_is_refused,
    );
}
